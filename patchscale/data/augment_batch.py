"""Batch augmentation inside the jitted train step: random erasing, Mixup/CutMix, soft targets.

These need the normalised float image or mix pairs of examples, so they run on device on the
whole batch, with static shapes (boxes are masks built from iotas). The key comes from the step
number, so a resumed run draws the same boxes and mixing weights.

* Random erasing (timm `RandomErasing(p, mode="pixel", max_count=1)`): with probability p per
  image, one box of area fraction U(0.02, 1/3) and log-uniform aspect in [0.3, 3.3] (the first of
  10 tries that fits), filled with per-pixel, per-channel standard normal noise. timm erases
  after ImageNet's mean/std normalisation, so its N(0, 1) is pixel = 255·(mean + std·z) per
  channel; the noise here is that, expressed in the model's own input scale (pixel / 127.5 − 1,
  models/backbone.py: normalize): mean 2·mean_c − 1, std 2·std_c ≈ 0.45, not N(0, 1) in that
  scale (2.2× too loud). Images with other than three channels use the channel average of
  ImageNet's mean and std (0.449, 0.226) for every channel: patchscale's choice.
* Mixup / CutMix (timm `Mixup`, mode "batch"): one λ ~ Beta(α, α) per batch; each image mixes
  with the batch reversed. CutMix pastes a box of side ratio √(1 − λ) centred uniformly (clipped
  to the image) and sets λ to the pasted area's complement. With both enabled a batch uses
  CutMix with probability `mixup_switch_prob`. Targets are λ·y + (1 − λ)·y_reversed, each
  one-hot smoothed by the label smoothing first.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

ERASE_AREA = (0.02, 1 / 3)
ERASE_LOG_ASPECT = (math.log(0.3), math.log(1 / 0.3))
ERASE_TRIES = 10
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # timm's IMAGENET_DEFAULT_MEAN / STD, as fractions of 255.
IMAGENET_STD = (0.229, 0.224, 0.225)
# The model's input scale: input = pixel / INPUT_SCALE + INPUT_OFFSET (models/backbone.py: normalize,
# which tests/test_reference_pipeline.py checks against these two numbers).
INPUT_SCALE, INPUT_OFFSET = 127.5, -1.0


def erasing_noise(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel, in the model's input units, of N(0, 1) drawn in ImageNet mean/std units."""
    if channels == 3:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        mean, std = (sum(IMAGENET_MEAN) / 3,) * channels, (sum(IMAGENET_STD) / 3,) * channels
    return (tuple(255.0 * m / INPUT_SCALE + INPUT_OFFSET for m in mean),
            tuple(255.0 * s / INPUT_SCALE for s in std))


def is_active(augment_config) -> bool:
    a = augment_config
    return bool(a.random_erasing or a.mixup_alpha or a.cutmix_alpha)


def _box_mask(height: int, width: int, top, left, h, w) -> jax.Array:
    """(…, H, W) booleans: inside the box [top, top + h) × [left, left + w)."""
    rows = jnp.arange(height)[:, None]
    cols = jnp.arange(width)[None, :]
    top, left, h, w = (v[..., None, None] for v in (top, left, h, w))
    return (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)


def random_erasing(images: jax.Array, key: jax.Array, probability: float) -> jax.Array:
    """Erase at most one box per image of a normalised (B, H, W, C) batch (module doc)."""
    b, height, width, _ = images.shape
    k_apply, k_area, k_aspect, k_top, k_left, k_noise = jax.random.split(key, 6)
    area = height * width * jax.random.uniform(k_area, (b, ERASE_TRIES), minval=ERASE_AREA[0], maxval=ERASE_AREA[1])
    aspect = jnp.exp(jax.random.uniform(k_aspect, (b, ERASE_TRIES), minval=ERASE_LOG_ASPECT[0],
                                        maxval=ERASE_LOG_ASPECT[1]))
    h = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
    w = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
    fits = (h < height) & (w < width)
    first = jnp.argmax(fits, axis=1)  # The first try that fits (timm takes the first too).
    pick = lambda v: jnp.take_along_axis(v, first[:, None], axis=1)[:, 0]  # noqa: E731
    h, w = pick(h), pick(w)
    erase = (jax.random.uniform(k_apply, (b,)) < probability) & fits.any(axis=1)
    top = jnp.floor(jax.random.uniform(k_top, (b,)) * (height - h + 1)).astype(jnp.int32)
    left = jnp.floor(jax.random.uniform(k_left, (b,)) * (width - w + 1)).astype(jnp.int32)
    mask = _box_mask(height, width, top, left, h, w) & erase[:, None, None]
    mean, std = (jnp.asarray(v, images.dtype) for v in erasing_noise(images.shape[-1]))
    noise = mean + std * jax.random.normal(k_noise, images.shape, images.dtype)
    return jnp.where(mask[..., None], noise, images)


def cutmix_box(height: int, width: int, lam, key):
    """(top, left, h, w) of timm's `rand_bbox`: side ratio √(1 − λ), uniform centre, clipped."""
    ratio = jnp.sqrt(1.0 - lam)
    cut_h, cut_w = (height * ratio).astype(jnp.int32), (width * ratio).astype(jnp.int32)
    ky, kx = jax.random.split(key)
    cy = jax.random.randint(ky, (), 0, height)
    cx = jax.random.randint(kx, (), 0, width)
    top, bottom = jnp.clip(cy - cut_h // 2, 0, height), jnp.clip(cy + cut_h // 2, 0, height)
    left, right = jnp.clip(cx - cut_w // 2, 0, width), jnp.clip(cx + cut_w // 2, 0, width)
    return top, left, bottom - top, right - left


def mix(images: jax.Array, targets: jax.Array, key: jax.Array, mixup_alpha: float, cutmix_alpha: float,
        switch_prob: float) -> tuple[jax.Array, jax.Array]:
    """Mixup or CutMix of a batch with its reverse; returns mixed images and soft targets."""
    _, height, width, _ = images.shape
    k_switch, k_mixup, k_cutmix, k_box = jax.random.split(key, 4)
    if mixup_alpha and cutmix_alpha:
        use_cutmix = jax.random.uniform(k_switch) < switch_prob
    else:
        use_cutmix = jnp.asarray(bool(cutmix_alpha))
    lam_mixup = jax.random.beta(k_mixup, mixup_alpha, mixup_alpha) if mixup_alpha else jnp.float32(1.0)
    lam_cutmix = jax.random.beta(k_cutmix, cutmix_alpha, cutmix_alpha) if cutmix_alpha else jnp.float32(1.0)
    top, left, h, w = cutmix_box(height, width, lam_cutmix, k_box)
    box = _box_mask(height, width, top, left, h, w)
    reverse = images[::-1]
    cut = jnp.where(box[None, :, :, None], reverse, images)
    lam_cut = 1.0 - (h * w) / (height * width)
    mixed = lam_mixup * images + (1.0 - lam_mixup) * reverse
    out = jnp.where(use_cutmix, cut, mixed)
    lam = jnp.where(use_cutmix, lam_cut, lam_mixup).astype(targets.dtype)
    return out, lam * targets + (1.0 - lam) * targets[::-1]


def apply(images: jax.Array, targets: jax.Array, key: jax.Array, augment_config) -> tuple[jax.Array, jax.Array]:
    """Erasing, then Mixup/CutMix, as configured (`augment.*`); normalised images, soft targets."""
    a = augment_config
    k_erase, k_mix = jax.random.split(key)
    if a.random_erasing:
        images = random_erasing(images, k_erase, a.random_erasing)
    if a.mixup_alpha or a.cutmix_alpha:
        images, targets = mix(images, targets, k_mix, a.mixup_alpha, a.cutmix_alpha, a.mixup_switch_prob)
    return images, targets
