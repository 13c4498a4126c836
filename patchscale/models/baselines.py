"""Reference models on the same input: a linear classifier and a one-hidden-layer MLP on raw pixels.

They go through the same trainer, data path and evaluation as the backbones, so a patch-size
run can be compared with them on equal terms; a run worse than the linear classifier is
under-trained by definition. Selected with `model.baseline` (linear | mlp; `none` builds the
backbone), with `model.baseline_hidden` units in the MLP.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from patchscale.models.backbone import normalize

BASELINES = ("none", "linear", "mlp")


class PixelBaseline(nnx.Module):
    """Flattened pixels → [Linear → GELU] → Linear: softmax regression (`linear`) or an MLP (`mlp`)."""

    def __init__(self, kind: str, hidden: int, *, image_size: int, channels: int, num_classes: int,
                 rngs: nnx.Rngs):
        inputs = image_size * image_size * channels
        dense = dict(param_dtype=jnp.float32, rngs=rngs, bias_init=nnx.initializers.zeros)
        self.hidden = nnx.Linear(inputs, hidden, **dense) if kind == "mlp" else None
        self.head = nnx.Linear(hidden if kind == "mlp" else inputs, num_classes, **dense)

    def __call__(self, images: jax.Array, key: jax.Array | None = None) -> jax.Array:
        del key  # No stochastic layers.
        x = normalize(images).reshape(images.shape[0], -1)
        if self.hidden is not None:
            x = jax.nn.gelu(self.hidden(x))
        return self.head(x).astype(jnp.float32)


def forward_flops_per_image(kind: str, hidden: int, image_size: int, channels: int, num_classes: int) -> float:
    inputs = image_size * image_size * channels
    if kind == "linear":
        return 2.0 * inputs * num_classes
    return 2.0 * inputs * hidden + 2.0 * hidden * num_classes
