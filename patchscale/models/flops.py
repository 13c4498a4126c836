"""Analytic forward FLOPs per image (a multiply-add counts 2), from docs/reference.md.

For the ViT with N tokens, width D, depth L and MLP hidden M this is
L·(8·N·D² + 4·N·D·M + 4·N²·D) + 2·R²·C·D + 2·D·classes, i.e. the reference's
L·(24·N·D² + 4·N²·D) + … at M = 4D. Each token mixer and channel mixer supplies its own term.
"""

from __future__ import annotations

import re

from patchscale.models import baselines, dense_heads, multiscale, sizes
from patchscale.models.channel import CHANNEL_MIXERS
from patchscale.models.mixers import registry
from patchscale.models.patchify import token_grid


def sequence_length(model_config, image_size: int) -> int:
    """Tokens in one sequence the mixers see: patches (times `extend_tokens`²) plus the CLS token when
    pooling on it; with S² scales, of one base-sized tile."""
    grid = token_grid(model_config, multiscale.base_size(image_size, model_config.s2_scales))
    return grid * grid + int(model_config.pool == "cls")


def tokens_per_image(model_config, image_size: int) -> int:
    """Tokens the mixers process per image (0: a pixel baseline); with S², summed over every scale's tiles."""
    if model_config.baseline != "none":
        return 0
    return sum(s * s for s in model_config.s2_scales or (1,)) * sequence_length(model_config, image_size)


def forward_flops_per_image(model_config, image_size: int, channels: int, num_classes: int) -> float:
    if model_config.baseline != "none":
        return baselines.forward_flops_per_image(model_config.baseline, model_config.baseline_hidden, image_size,
                                                 channels, num_classes)
    shape = sizes.resolve(model_config)
    base = multiscale.base_size(image_size, model_config.s2_scales)
    tokens = sequence_length(model_config, image_size)
    mixer = registry.get(model_config.mixer).flops_per_image(shape, tokens, model_config)
    channel = tokens * CHANNEL_MIXERS[model_config.channel_mixer].flops_per_token(shape.width, shape.mlp_dim)
    patch_embed = 2.0 * base**2 * channels * shape.width  # Independent of the patch size.
    # Bilinear token-grid extension (model.extend_tokens): 4 multiply-adds per new token and channel.
    extended = 8.0 * (tokens - int(model_config.pool == "cls")) * shape.width if model_config.extend_tokens > 1 else 0.0
    tiles = sum(s * s for s in model_config.s2_scales or (1,))  # S²: every scale's tiles through the backbone.
    if dense_heads.is_dense(model_config.head):
        head = dense_heads.flops_per_image(model_config.head, shape.width, model_config.patch_size,
                                           num_classes, model_config.decoder_width, base)
    else:
        head = 2.0 * shape.width * max(1, len(model_config.s2_scales)) * num_classes
    return tiles * (shape.depth * (mixer + channel) + patch_embed + extended) + head


def train_flops_per_image(model_config, image_size: int, channels: int, num_classes: int) -> float:
    """Forward + backward ≈ 3× forward."""
    return 3.0 * forward_flops_per_image(model_config, image_size, channels, num_classes)


# Custom calls that do arithmetic XLA's cost analysis cannot see (cuBLAS/cuDNN/Triton on GPUs,
# Pallas/Mosaic kernels on TPUs): with any of them in a program its count is only a lower bound.
_OPAQUE_CALL = re.compile(r'custom_call_target="([^"]*(?:cublas|cudnn|gemm|triton|mosaic|fmha|pallas)[^"]*)"',
                          re.IGNORECASE)


def opaque_calls(compiled) -> list[str]:
    """The distinct custom-call targets of a compiled executable whose FLOPs XLA does not count."""
    try:
        text = compiled.as_text()
    except Exception:  # Some backends cannot print an executable: say nothing rather than fail.
        return []
    return sorted(set(_OPAQUE_CALL.findall(text or "")))


def xla_flops(compiled) -> float | None:
    """FLOPs XLA's cost analysis counts for a compiled executable, or None when the backend gives
    none or the program holds library/kernel calls it does not count (`opaque_calls`)."""
    if opaque_calls(compiled):
        return None
    return xla_flops_counted(compiled)


def xla_flops_counted(compiled) -> float | None:
    """What the cost analysis reports, whatever it leaves out (a lower bound with opaque calls)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # Older jax returns one dict per computation.
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        return None
    return float(analysis["flops"])
