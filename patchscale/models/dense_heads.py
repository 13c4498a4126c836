"""Dense-prediction heads: per-pixel logits from the patch tokens (the study's Table 2 and Figure 2).

`model.head` picks one:

* `dense_linear`, the study's decoder-free head: one linear layer maps every patch token to the
  p×p×K logits of its own pixels, which are put back in place on the pixel grid. At p = 1 it is
  a per-pixel linear classifier on the backbone's features; at large p it must paint p² pixels
  from one vector, which is what smaller patches relieve.
* `dense_decoder`, a small convolutional decoder for comparison: the token grid projected to
  `model.decoder_width` channels, then log2(p) steps of (2× bilinear upsampling, 3×3 conv,
  GELU) up to the pixel grid, one more 3×3 conv and GELU, and a per-pixel linear classifier
  (for a 64-wide backbone and 11 classes: 0.04 M parameters at p = 1 and 0.19 M at p = 16 with
  the default `model.decoder_width=64`; 0.16–0.75 M at 128).

Both take the final norm's token grid (B, g², D) without the class token and return float32
logits (B, g·p, g·p, K).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from patchscale.models.channel import exact_gelu
from patchscale.models.initializers import trunc_normal_02

HEADS = ("classify", "dense_linear", "dense_decoder")


def is_dense(head: str) -> bool:
    return head.startswith("dense")


def pixels_from_patches(logits: jax.Array, p: int) -> jax.Array:
    """(B, g², p·p·K), each token's logits in (row, col, class) order → (B, g·p, g·p, K) in place."""
    b, n, features = logits.shape
    g, k = int(round(n ** 0.5)), features // (p * p)
    x = logits.reshape(b, g, g, p, p, k).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, g * p, g * p, k)


class LinearDenseHead(nnx.Module):
    LOGICAL_AXES = {"proj/kernel": ("embed", None)}

    def __init__(self, width: int, patch_size: int, classes: int, *, dtype, rngs: nnx.Rngs):
        self.patch_size = patch_size
        self.proj = nnx.Linear(width, patch_size * patch_size * classes, dtype=dtype, param_dtype=jnp.float32,
                               rngs=rngs, kernel_init=trunc_normal_02, bias_init=nnx.initializers.zeros)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        return pixels_from_patches(self.proj(tokens), self.patch_size).astype(jnp.float32)


class DecoderHead(nnx.Module):
    LOGICAL_AXES = {"proj/kernel": ("embed", None)}

    def __init__(self, width: int, patch_size: int, classes: int, hidden: int, *, dtype, rngs: nnx.Rngs):
        common = dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        self.proj = nnx.Linear(width, hidden, kernel_init=trunc_normal_02, bias_init=nnx.initializers.zeros, **common)
        self.ups = nnx.List([nnx.Conv(hidden, hidden, (3, 3), padding="SAME", **common)
                             for _ in range(int(math.log2(patch_size)))])
        self.refine = nnx.Conv(hidden, hidden, (3, 3), padding="SAME", **common)
        self.classify = nnx.Linear(hidden, classes, kernel_init=trunc_normal_02, bias_init=nnx.initializers.zeros,
                                   **common)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        b, n, _ = tokens.shape
        g = int(round(n ** 0.5))
        x = self.proj(tokens).reshape(b, g, g, -1)
        for conv in self.ups:
            side = x.shape[1] * 2
            x = jax.image.resize(x, (b, side, side, x.shape[-1]), method="linear")
            x = exact_gelu(conv(x))
        x = exact_gelu(self.refine(x))
        return self.classify(x).astype(jnp.float32)


def build(head: str, width: int, patch_size: int, classes: int, hidden: int, *, dtype, rngs: nnx.Rngs):
    if head == "dense_linear":
        return LinearDenseHead(width, patch_size, classes, dtype=dtype, rngs=rngs)
    return DecoderHead(width, patch_size, classes, hidden, dtype=dtype, rngs=rngs)


def flops_per_image(head: str, width: int, patch_size: int, classes: int, hidden: int, image_size: int) -> float:
    """Forward FLOPs of the head per image (multiply-add = 2; resizes and activations not counted)."""
    tokens = (image_size // patch_size) ** 2
    if head == "dense_linear":
        return 2.0 * tokens * width * patch_size * patch_size * classes
    conv = 2.0 * 9 * hidden * hidden
    sides = [image_size // patch_size * 2 ** (i + 1) for i in range(int(math.log2(patch_size)))]
    return (2.0 * tokens * width * hidden + sum(conv * s * s for s in sides) + conv * image_size ** 2
            + 2.0 * image_size ** 2 * hidden * classes)
