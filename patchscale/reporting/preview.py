"""`patchscale data preview CONFIG`: a PNG of what the model sees, so a recipe can be checked by eye.

Top: one training batch after every augmentation of the config, the per-example ones on the host
and the on-device ones of the first train step (random erasing, Mixup/CutMix), each tile titled
with its soft target's largest classes. Bottom: the first held-out images in the evaluation view.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import optax
from etils import epath

from patchscale.data import augment_batch, pipeline
from patchscale.models.backbone import normalize
from patchscale.program import augment_key, step_key
from patchscale.reporting import figures
from patchscale.run_spec import RunSpec


def _to_pixels(images) -> np.ndarray:
    """Normalised [-1, 1] floats (or uint8) → uint8 for display; noise outside the range is clipped."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    return np.clip((images + 1.0) * 127.5, 0, 255).astype(np.uint8)


def _target_text(target: np.ndarray) -> str:
    top = np.argsort(target)[::-1][:2]
    parts = [f"{int(k)}:{target[k]:.2f}" for k in top if target[k] >= 0.05]
    return " ".join(parts)


def training_view(config, image_size: int, num_classes: int, count: int):
    """(uint8 images, soft targets) of the first `count` examples of the first training batch."""
    batch = next(pipeline.train_iterator(config.data, image_size, count, 1, config.seed, config.augment))
    targets = optax.smooth_labels(jax.nn.one_hot(batch["label"], num_classes), config.train.label_smoothing)
    images = batch["image"]
    if augment_batch.is_active(config.augment):
        key = augment_key(step_key(config.seed, 0))  # What the first train step draws.
        images, targets = augment_batch.apply(normalize(images), targets, key, config.augment)
    return _to_pixels(images), np.asarray(targets)


def write(config, out, count: int = 16) -> str:
    """Draw the preview of `config` into `out` (a .png path, written atomically); returns it."""
    d, spec = config.data, RunSpec.from_config(config)
    size = spec.image_size
    # The image's class labels as the train step smooths and mixes them (a dense head's per-pixel
    # targets are derived from these labels and the pixels: segmentation.pixel_labels).
    train_images, targets = training_view(config, size, spec.dataset.num_classes, count)
    split = pipeline.EvalSplit(d, d.eval_split, size, count)
    eval_batch = next(split.batches())
    eval_images = eval_batch["image"][: int(eval_batch["mask"].sum())]

    plt = figures.pyplot()
    cols = min(8, count)
    rows_train, rows_eval = math.ceil(len(train_images) / cols), math.ceil(len(eval_images) / cols)
    fig, axes = plt.subplots(rows_train + rows_eval, cols, figsize=(1.6 * cols, 1.8 * (rows_train + rows_eval)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    tiles = [(train_images[i], _target_text(targets[i])) for i in range(len(train_images))]
    tiles += [(None, None)] * (rows_train * cols - len(tiles))
    tiles += [(eval_images[i], f"label {int(eval_batch['label'][i])}") for i in range(len(eval_images))]
    for ax, (image, title) in zip(axes.flat, tiles):
        if image is None:
            continue
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None,
                  vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(title, fontsize=7)
    fig.suptitle(f"{d.name} at {size}²: training batch (rows 1–{rows_train}, after every augmentation;"
                 f" titles: class:target mass) and evaluation view (rows {rows_train + 1}–)", fontsize=8)
    out = epath.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp.png"
    fig.savefig(str(tmp), dpi=120, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(out)
    return str(out)
