"""The grain input pipeline: seeded shuffling, per-host sharding, checkpointable iteration.

Training: the (optionally truncated) train split is shuffled with a new permutation every
epoch, repeated for as many epochs as the run needs, and strided across hosts so that each
process reads only its own examples; its iterator state is a single index, saved with every
checkpoint, so a resumed run sees exactly the batches the uninterrupted run would have seen.

Evaluation: the complete held-out split in order, in fixed-size batches; the last batch is
padded and carries a mask, so every example is counted exactly once and none is dropped.

Small datasets (`data.in_memory`): a split is read and resized once per process and served
from memory, so tiny models at small inputs are not held back by per-example decoding and
resizing; the batches are the same as those of the streaming path.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Iterator

import grain
import jax
import numpy as np
from PIL import Image

from patchscale import segmentation
from patchscale.data import augment, datasets
from patchscale.errors import UserError


def eval_view_geometry(height: int, width: int, size: int, crop_ratio: float) -> tuple[int, int, int, int]:
    """(resized height, resized width, crop top, crop left) of the reference evaluation view.

    The arithmetic of timm's/DeiT's eval transform, `Resize(int(size / crop_ratio))` then
    `CenterCrop(size)`, as torchvision computes it: the shorter side becomes
    s = ⌊size / crop_ratio⌋, the longer one int(s · long / short) (truncated, not rounded), and the
    crop starts at int(round((resized − size) / 2)) on each axis (Python's round: halves to even).
    """
    scaled = int(math.floor(size / crop_ratio))
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = scaled, int(scaled * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    return new_h, new_w, int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))


def _resize(image: np.ndarray, size: int, interpolation: str = "bilinear", crop_ratio: float | None = None
            ) -> np.ndarray:
    """One uint8 (H, W, C) image to size × size.

    Without `crop_ratio`: a square resize (identity when it already has the size). With it, the
    reference evaluation view (`eval_view_geometry`): the shorter side resized to
    ⌊size / crop_ratio⌋, then a centre crop, both rounded as torchvision rounds them.
    """
    h, w = image.shape[:2]
    if crop_ratio is None:
        if h == size and w == size:
            return image
        target, box = (size, size), None
    else:
        new_h, new_w, top, left = eval_view_geometry(h, w, size, crop_ratio)
        target, box = (new_w, new_h), (left, top, left + size, top + size)  # PIL sizes are (W, H).
    resample = Image.Resampling.NEAREST if interpolation == "nearest" else augment.INTERPOLATIONS[interpolation]
    channels = []
    for c in range(image.shape[-1]):
        plane = Image.fromarray(image[..., c]).resize(target, resample)
        channels.append(np.asarray(plane.crop(box) if box else plane))
    return np.stack(channels, axis=-1)


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """Example → (uint8 image of the model's input size, int32 label). Normalisation runs on device.

    With `mask_feature` (a segmentation dataset) the example's mask is resized with the same
    geometry by nearest neighbour into int32 "pixels" (segmentation.mask_labels), and the label
    is 0 (such datasets have no image class).
    """

    image_size: int
    interpolation: str = "bilinear"
    crop_ratio: float | None = None
    mask_feature: str | None = None
    mask_offset: int = 0
    mask_classes: int = 0

    def __call__(self, example):
        image = np.asarray(example["image"], np.uint8)
        if image.ndim == 2:
            image = image[..., None]
        out = {"image": _resize(image, self.image_size, self.interpolation, self.crop_ratio)}
        if self.mask_feature is None:
            return {**out, "label": np.int32(example["label"])}
        mask = np.asarray(example[self.mask_feature], np.uint8)
        if mask.shape[:2] != image.shape[:2]:
            raise UserError(f"data.mask_feature={self.mask_feature!r}: a mask of shape {mask.shape[:2]} belongs to"
                            f" an image of shape {image.shape[:2]}")
        plane = mask.reshape(mask.shape[:2] + (-1,))[..., :1]  # Masks stored as RGB repeat the class.
        resized = _resize(plane, self.image_size, "nearest", self.crop_ratio)[..., 0]
        return {**out, "label": np.int32(0),
                "pixels": segmentation.mask_labels(resized, self.mask_offset, self.mask_classes)}


def preprocess_for(data_config, image_size: int, crop_ratio: float | None = None) -> Preprocess:
    """The Preprocess of a data config (its interpolation and, for segmentation, its mask)."""
    d = data_config
    return Preprocess(image_size, d.interpolation, crop_ratio, d.mask_feature, d.mask_offset, d.mask_classes)


@dataclasses.dataclass(frozen=True)
class RandomShift:
    """Translate the image by up to `max_shift` pixels in each direction, filling with zeros.

    grain seeds the generator from the pipeline seed and the element's index, so the shift of
    every example is reproducible and a resumed run draws exactly the same ones.
    """

    max_shift: int

    def __call__(self, example, rng: np.random.Generator):
        dy, dx = rng.integers(-self.max_shift, self.max_shift + 1, size=2)
        image = example["image"]
        h, w = image.shape[:2]
        shifted = np.zeros_like(image)
        shifted[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            image[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
        return {**example, "image": shifted}


def _subset(source, limit: int | None) -> grain.MapDataset:
    ds = grain.MapDataset.source(source)
    if limit is not None:
        if limit > len(ds):
            raise UserError(f"asked for the first {limit} examples but the split has {len(ds)}")
        ds = ds[:limit]
    return ds


class ArraySource:
    """A random-access source over preprocessed arrays (what grain's MapDataset.source needs)."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays["label"])

    def __getitem__(self, index):
        return {k: v[index] for k, v in self.arrays.items()}


@functools.cache
def _cached_split(name: str, split: str, data_dir: str | None, limit: int | None,
                  preprocess: Preprocess) -> ArraySource:
    source = _subset(datasets.open_split(name, split, data_dir), limit)
    rows = [preprocess(source[i]) for i in range(len(source))]
    arrays = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    for array in arrays.values():
        array.setflags(write=False)
    return ArraySource(arrays)


def _source(data_config, split: str, limit: int | None, preprocess: Preprocess | None):
    """(dataset, whether its examples still need `preprocess`); raw examples when it is None."""
    d = data_config
    if d.in_memory and preprocess is not None:
        return grain.MapDataset.source(_cached_split(d.name, split, d.data_dir, limit, preprocess)), False
    return _subset(datasets.open_split(d.name, split, d.data_dir), limit), True


def _repeat_each(epochs: grain.MapDataset, length: int, repeats: int) -> grain.MapDataset:
    """Repeated augmentation (DeiT's RASampler) over `epochs`, a stream of per-epoch permutations.

    Epoch e of the result holds `length` examples: the first ⌈length / repeats⌉ of epoch e's own
    permutation, each `repeats` times in a row. So every epoch draws a fresh permutation and keeps
    len/repeats distinct examples, as the reference sampler does (it shuffles with the epoch as
    seed and keeps the first len/repeats of the repeated list). Each copy has its own index, so
    `random_map` augments it differently.
    """
    if repeats == 1:
        return epochs
    return grain.MapDataset.range(len(epochs)).map(
        lambda k: epochs[(k // length) * length + (k % length) // repeats])


def train_length(data_config) -> int:
    source = datasets.open_split(data_config.name, data_config.train_split, data_config.data_dir)
    return len(_subset(source, data_config.train_examples))


def train_iterator(data_config, image_size: int, global_batch: int, steps: int, seed: int, augment_config=None):
    """A checkpointable iterator of this host's share of `steps` global batches.

    With `augment_config` active (augment.*), examples are read raw and cropped, flipped and
    augmented per example (data/augment.py) instead of resized; `augment.repeats` > 1 is
    repeated augmentation.
    """
    augmenting = augment_config is not None and augment.is_active(augment_config)
    repeats = augment_config.repeats if augment_config is not None else 1
    preprocess = None if augmenting else preprocess_for(data_config, image_size)
    ds, needs_preprocess = _source(data_config, data_config.train_split, data_config.train_examples, preprocess)
    epochs = math.ceil(steps * global_batch / len(ds))
    host_batch = global_batch // jax.process_count()
    ds = _repeat_each(ds.shuffle(seed=seed).repeat(epochs), len(ds), repeats)[jax.process_index()::jax.process_count()]
    if augmenting:
        ds = ds.random_map(augment.from_config(augment_config, image_size, data_config.interpolation), seed=seed + 2)
    elif needs_preprocess:
        ds = ds.map(preprocess)
    if data_config.random_shift:
        ds = ds.random_map(RandomShift(data_config.random_shift), seed=seed + 1)
    ds = ds.batch(host_batch, drop_remainder=True)
    options = grain.ReadOptions(num_threads=data_config.worker_threads, prefetch_buffer_size=data_config.prefetch)
    return iter(ds.to_iter_dataset(options))


@dataclasses.dataclass(frozen=True)
class EvalSplit:
    """The held-out split in fixed global batches of `global_batch` with a validity mask."""

    data_config: object
    split: str
    image_size: int
    global_batch: int

    def __post_init__(self):
        d = self.data_config
        preprocess = preprocess_for(d, self.image_size, d.eval_crop_ratio)
        source, needs_preprocess = _source(d, self.split, d.eval_examples, preprocess)
        object.__setattr__(self, "_source", source)
        object.__setattr__(self, "_preprocess", preprocess if needs_preprocess else (lambda x: x))

    @property
    def num_examples(self) -> int:
        return len(self._source)

    @property
    def num_batches(self) -> int:
        return math.ceil(self.num_examples / self.global_batch)

    def batches(self) -> Iterator[dict[str, np.ndarray]]:
        """This host's part of each global batch: a contiguous block of the batch's indices."""
        host_batch = self.global_batch // jax.process_count()
        first = jax.process_index() * host_batch
        preprocess = self._preprocess
        last = self.num_examples - 1
        for b in range(self.num_batches):
            indices = b * self.global_batch + first + np.arange(host_batch)
            # Indices past the end repeat the last example; the mask removes them from every metric.
            rows = [preprocess(self._source[int(min(i, last))]) for i in indices]
            batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
            batch["mask"] = (indices <= last).astype(np.float32)
            yield batch
