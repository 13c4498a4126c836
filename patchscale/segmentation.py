"""Per-pixel tasks for the dense heads, and their metrics (per-pixel loss, pixel accuracy, mIoU).

Two sources of labels (used with a dense head, `model.head=dense_*`):

* A segmentation dataset's masks (`data.mask_feature`, e.g. ADE20k): read on the host, resized
  with the image by nearest neighbour; class = stored value + `data.mask_offset`, and values
  outside 0..`data.mask_classes`-1 become IGNORE, left out of the loss and of every metric.
* Derived from a classification dataset otherwise: a pixel whose intensity in the input
view (after resizing; the mean over channels) is at least `data.pixel_threshold` (0–255) is
foreground and takes its image's class + 1; every other pixel is background, class 0. On MNIST
(threshold 128) this is each digit's stroke labelled with the digit: 11 classes, computed on
the device from the very pixels the model sees, so every augmentation moves image and labels
together. Evaluation covers every pixel of every held-out image.

mIoU is the mean over classes of TP / (TP + FP + FN), counted over the whole split (not per
image), over the classes that occur in the labels or the predictions (union > 0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from patchscale.data import augment, augment_batch
from patchscale.errors import UserError
from patchscale.models import dense_heads

IGNORE = -1  # The pixel label of unlabelled pixels (ADE20k's "other").


def pixel_classes(num_classes: int) -> int:
    """Background plus one class per image class."""
    return num_classes + 1


def check(config) -> None:
    """A dense head's labels must move with its pixels: no photometric or label-mixing augmentation,
    and a segmentation dataset's masks (data.mask_feature) feed a dense head, unaugmented."""
    m, d, a = config.model, config.data, config.augment
    if dense_heads.is_dense(m.head):
        if augment_batch.is_active(a) or a.policy != "none" or a.color_jitter:
            raise UserError(f"model.head={m.head}: the pixel labels come from the pixels the model sees, so"
                            " photometric and batch augmentations (augment.policy, color_jitter, random erasing,"
                            " Mixup, CutMix) would relabel them; turn them off for the per-pixel task")
        if not 0 < d.pixel_threshold <= 255:
            raise UserError(f"data.pixel_threshold={d.pixel_threshold}: expected an intensity in 1..255")
    if not d.mask_feature:
        return
    if not dense_heads.is_dense(m.head):
        raise UserError(f"data.mask_feature={d.mask_feature!r} gives per-pixel labels: it needs a dense head"
                        " (model.head=dense_linear or dense_decoder)")
    if not isinstance(d.mask_classes, int) or d.mask_classes < 2:
        raise UserError(f"data.mask_classes={d.mask_classes!r}: set the number of pixel classes (>= 2) of"
                        f" {d.mask_feature!r} (ADE20k: 150)")
    if augment.is_active(a) or d.random_shift:
        raise UserError(f"data.mask_feature={d.mask_feature!r}: training augmentation (augment.*, data.random_shift)"
                        " would move the image without its mask; turn it off")


def head_classes(config, dataset_classes: int) -> int:
    """How many logits the model's head gives: the image classes, or per pixel the mask's or derived classes."""
    if not dense_heads.is_dense(config.model.head):
        return dataset_classes
    return config.data.mask_classes if config.data.mask_feature else pixel_classes(dataset_classes)


def mask_labels(mask: np.ndarray, offset: int, classes: int) -> np.ndarray:
    """A stored uint8 (H, W) mask → int32 pixel classes, IGNORE where the class is out of range."""
    labels = mask.astype(np.int32) + offset
    return np.where((labels >= 0) & (labels < classes), labels, IGNORE).astype(np.int32)


def pixel_labels(images: jax.Array, labels: jax.Array, threshold: int) -> jax.Array:
    """uint8 (B, H, W, C) and (B,) image classes → int32 (B, H, W) pixel classes."""
    intensity = images.astype(jnp.float32).mean(axis=-1)
    return jnp.where(intensity >= threshold, labels[:, None, None] + 1, 0).astype(jnp.int32)


def confusion_counts(predicted: jax.Array, truth: jax.Array, weight: jax.Array, classes: int) -> dict:
    """Per-class true positives, false positives and false negatives, each pixel counted with `weight`."""
    pred = jax.nn.one_hot(predicted, classes) * weight[..., None]
    true = jax.nn.one_hot(truth, classes)
    axes = tuple(range(pred.ndim - 1))
    tp = (pred * true).sum(axes)
    return {"tp": tp, "fp": pred.sum(axes) - tp, "fn": (true * weight[..., None]).sum(axes) - tp}


def mean_iou(tp, fp, fn) -> float:
    """Mean IoU over the classes with a non-empty union (nan when there is none)."""
    tp, fp, fn = (np.asarray(a, np.float64) for a in (tp, fp, fn))
    union = tp + fp + fn
    present = union > 0
    return float(np.mean(tp[present] / union[present])) if present.any() else float("nan")
