"""Patch embedding for any patch size that divides the input, and position embeddings.

The embedding is a p×p stride-p convolution written as reshape + dense layer: identical
numbers (tests compare it with `lax.conv`), and at p = 1 it is exactly the per-pixel dense
layer channels → width without a 1×1 convolution's overheads.

`model.extend_tokens = f` is the study's "by extending" control (its Table 5): the grid of
patch embeddings is interpolated bilinearly to f× as many tokens per side, so the mixers see
the sequence length of patch size p/f without any new pixels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from patchscale.models.initializers import patch_embed_init, trunc_normal_02


def patches(images: jax.Array, p: int) -> jax.Array:
    """(B, H, W, C) → (B, H/p · W/p, p·p·C) in raster order, each patch flattened (row, col, channel)."""
    b, h, w, c = images.shape
    x = images.reshape(b, h // p, p, w // p, p, c)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def token_grid(model_config, image_size: int) -> int:
    """Tokens per side the mixers see: the patch grid, times the `extend_tokens` factor."""
    return image_size // model_config.patch_size * model_config.extend_tokens


def extend_grid(tokens: jax.Array, factor: int) -> jax.Array:
    """(B, g·g, D) patch embeddings in raster order → (B, (f·g)², D), bilinear on the 2-D grid.

    Half-pixel centres (`jax.image.resize`): the new samples sit at the centres of the f×f
    sub-cells of each patch, so a linear field over the image is reproduced exactly away from
    the border, where the edge values are held. Factor 1 returns the input unchanged.
    """
    if factor == 1:
        return tokens
    b, n, d = tokens.shape
    g = int(round(n ** 0.5))
    grid = tokens.reshape(b, g, g, d)
    out = jax.image.resize(grid.astype(jnp.float32), (b, g * factor, g * factor, d), method="bilinear")
    return out.astype(tokens.dtype).reshape(b, g * g * factor * factor, d)


class PatchEmbed(nnx.Module):
    LOGICAL_AXES = {"proj/kernel": (None, "embed"), "proj/bias": ("embed",)}

    def __init__(self, patch_size: int, channels: int, width: int, *, dtype, rngs: nnx.Rngs, init: str = "torch"):
        self.patch_size = patch_size
        fan_in = patch_size * patch_size * channels
        # DeiT keeps PyTorch's default conv init for the patch embedding; Adventurer uses LeCun normal.
        self.proj = nnx.Linear(fan_in, width, dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
                               kernel_init=patch_embed_init(init, fan_in), bias_init=nnx.initializers.zeros)

    def __call__(self, images: jax.Array) -> jax.Array:
        return self.proj(patches(images, self.patch_size))


def sincos_2d(grid: int, width: int, temperature: float = 10_000.0) -> np.ndarray:
    """Fixed 2-D sine-cosine position table of shape (grid·grid, width) (MoCo v3 / big_vision)."""
    if width % 4:
        raise ValueError(f"sincos2d position embeddings need a width divisible by 4, got {width}")
    y, x = np.mgrid[:grid, :grid]
    omega = 1.0 / temperature ** (np.arange(width // 4) / (width // 4 - 1 or 1))
    y = y.reshape(-1)[:, None] * omega[None]
    x = x.reshape(-1)[:, None] * omega[None]
    return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1).astype(np.float32)


class PositionEmbedding(nnx.Module):
    """Learned (truncated normal, std 0.02) or fixed sin-cos table over all tokens.

    `before` and `after` count the extra tokens (CLS) placed before or after the patches; the
    sin-cos table gives them zero vectors.
    """

    LOGICAL_AXES = {"table": (None, "embed")}

    def __init__(self, kind: str, grid: int, before: int, after: int, width: int, *, rngs: nnx.Rngs):
        self.kind = kind
        n = grid * grid + before + after
        if kind == "learned":
            self.table = nnx.Param(trunc_normal_02(rngs.params(), (n, width)))
        elif kind == "sincos2d":
            fixed = np.zeros((n, width), np.float32)
            fixed[before:before + grid * grid] = sincos_2d(grid, width)
            self.table = nnx.Variable(jnp.asarray(fixed))  # Not a Param: never trained or decayed.
        else:
            self.table = None

    def __call__(self, tokens: jax.Array) -> jax.Array:
        if self.table is None:
            return tokens
        return tokens + self.table[...].astype(tokens.dtype)
