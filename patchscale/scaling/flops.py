"""Analytic forward FLOPs per image (a multiply-add counts 2), from REFERENCE.md.

For the ViT with N tokens, width D, depth L and MLP hidden M this is
L·(8·N·D² + 4·N·D·M + 4·N²·D) + 2·R²·C·D + 2·D·classes, i.e. the reference's
L·(24·N·D² + 4·N²·D) + … at M = 4D. Each token mixer and channel mixer supplies its own term.
"""

from __future__ import annotations

from patchscale.models import baselines, sizes
from patchscale.models.channel import CHANNEL_MIXERS
from patchscale.models.mixers import registry


def tokens_per_image(model_config, image_size: int) -> int:
    """Sequence length the mixers see: patches plus the CLS token when pooling on it (0: a pixel baseline)."""
    if model_config.baseline != "none":
        return 0
    grid = image_size // model_config.patch_size
    return grid * grid + int(model_config.pool == "cls")


def forward_flops_per_image(model_config, image_size: int, channels: int, num_classes: int) -> float:
    if model_config.baseline != "none":
        return baselines.forward_flops_per_image(model_config.baseline, model_config.baseline_hidden, image_size,
                                                 channels, num_classes)
    shape = sizes.resolve(model_config)
    tokens = tokens_per_image(model_config, image_size)
    mixer = registry.get(model_config.mixer).flops_per_image(shape, tokens, model_config)
    channel = tokens * CHANNEL_MIXERS[model_config.channel_mixer].flops_per_token(shape.width, shape.mlp_dim)
    patch_embed = 2.0 * image_size**2 * channels * shape.width  # Independent of the patch size.
    head = 2.0 * shape.width * num_classes
    return shape.depth * (mixer + channel) + patch_embed + head


def train_flops_per_image(model_config, image_size: int, channels: int, num_classes: int) -> float:
    """Forward + backward ≈ 3× forward."""
    return 3.0 * forward_flops_per_image(model_config, image_size, channels, num_classes)


def xla_flops(compiled) -> float | None:
    """FLOPs XLA's cost analysis counts for a compiled executable (None if the backend gives none)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # Older jax returns one dict per computation.
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        return None
    return float(analysis["flops"])
