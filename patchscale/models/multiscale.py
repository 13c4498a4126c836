"""S² multi-scale features: one backbone run on the image at several scales, no new backbone parameters.

After Shi et al. 2024, "When Do We Not Need Larger Vision Models?" (`model.s2_scales`). The
input (`data.image_size`) is the largest scale; the backbone's own size is the base, input /
largest scale. Scale s sees the image resized to s × base, cut into s² base-sized sub-images
that run through the backbone as one batch; their token grids are stitched back into one
(s·g)² grid and average-pooled to the base grid g². The scales' grids are then concatenated
along the channels, so the classifier head sees (number of scales) × width features per token.
A third way, next to smaller patches and larger models, of spending compute on an image.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def base_size(image_size: int, scales) -> int:
    """The backbone's own input size: the largest scale is the input itself."""
    return image_size // max(scales) if scales else image_size


def views(images: jax.Array, base: int, scale: int) -> jax.Array:
    """(B, R, R, C) float → (B·s², base, base, C): the image at s × base, cut into s×s tiles.

    Tiles are ordered image-major, then row, then column (raster order of the tile grid).
    """
    b, _, _, c = images.shape
    side = scale * base
    if images.shape[1] != side:
        images = jax.image.resize(images, (b, side, side, c), method="linear", antialias=True)
    tiles = images.reshape(b, scale, base, scale, base, c).transpose(0, 1, 3, 2, 4, 5)
    return tiles.reshape(b * scale * scale, base, base, c)


def merge(tokens: jax.Array, scale: int) -> jax.Array:
    """(B·s², g², D) tile tokens → (B, g², D): stitched into the (s·g)² grid, then s×s average-pooled."""
    n, length, d = tokens.shape
    b, g = n // (scale * scale), int(round(length ** 0.5))
    grid = tokens.reshape(b, scale, scale, g, g, d).transpose(0, 1, 3, 2, 4, 5).reshape(b, scale * g, scale * g, d)
    if scale == 1:
        return grid.reshape(b, g * g, d)
    pooled = grid.reshape(b, g, scale, g, scale, d).mean(axis=(2, 4))
    return pooled.reshape(b, g * g, d)


def features(tokens_of, images: jax.Array, base: int, scales, key: jax.Array | None) -> jax.Array:
    """(B, g², D·len(scales)): `tokens_of(images, key)` → (n, g², D) run at every scale, concatenated."""
    per_scale = []
    for scale in scales:
        scale_key = jax.random.fold_in(key, scale) if key is not None else None
        per_scale.append(merge(tokens_of(views(images, base, scale), scale_key), scale))
    return jnp.concatenate(per_scale, axis=-1)
