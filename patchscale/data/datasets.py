"""What the pipeline needs to know about a dataset, and opening its TFDS splits.

`mnist` is the embedded default (see `mnist.py`), stored as the TFDS dataset
`patchscale_mnist`; every other name is a TFDS dataset read from the data dir: an image
classification dataset ("image" and "label"), or a segmentation dataset ("image" and a mask
feature named by `data.mask_feature`, e.g. scene_parse150's "annotation").
"""

from __future__ import annotations

import dataclasses
import functools

from patchscale.data import mnist
from patchscale.errors import UserError

EMBEDDED = {"mnist": mnist}
# Split sizes of common datasets, for sizing runs (steps, projected cost) before they are prepared.
KNOWN_SPLITS = {
    "imagenet2012": {"train": 1_281_167, "validation": 50_000},
    "imagenet_resized/64x64": {"train": 1_281_167, "validation": 50_000},
    "cifar10": {"train": 50_000, "test": 10_000},
    "scene_parse150": {"train": 20_210, "test": 2_000},  # ADE20k; its "test" split is ADE's validation set.
}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    tfds_name: str
    image_size: int | None  # None when images vary in size.
    channels: int
    num_classes: int  # Image classes; 0 for a segmentation dataset read with a mask feature.
    splits: dict[str, int]  # Split name → number of examples (empty if not prepared yet).


def describe(name: str, data_dir: str | None, mask_feature: str | None = None) -> DatasetInfo:
    """Shape facts about `name`, without reading any examples; `UserError` if unknown.

    With `mask_feature` the dataset is read for segmentation: it needs that feature instead of a label.
    """
    if name in EMBEDDED:
        if mask_feature:
            raise UserError(f"data.mask_feature={mask_feature!r}: the embedded {name!r} has no masks"
                            " (its dense task derives pixel labels from data.pixel_threshold)")
        return DatasetInfo(mnist.TFDS_NAME, mnist.PADDED_SIZE, 1, 10, dict(mnist.SPLITS))
    return _describe_tfds(name, data_dir, mask_feature)


@functools.cache
def _describe_tfds(name: str, data_dir: str | None, mask_feature: str | None) -> DatasetInfo:
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
    except Exception as e:  # TFDS raises several types for unknown names and broken dirs.
        raise UserError(f"unknown dataset {name!r}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    features = builder.info.features
    target = mask_feature or "label"
    if "image" not in features or target not in features:
        raise UserError(f"dataset {name!r} has no 'image' and {target!r} features"
                        f" (it has {', '.join(sorted(features.keys()))})")
    height, width, channels = features["image"].shape
    size = height if height == width and height is not None else None
    splits = {split: info.num_examples for split, info in builder.info.splits.items()} or KNOWN_SPLITS.get(name, {})
    return DatasetInfo(name, size, channels or 3, 0 if mask_feature else features["label"].num_classes, splits)


def open_split(name: str, split: str, data_dir: str | None):
    """A random-access TFDS data source for `split`, preparing the embedded dataset on first use."""
    import tensorflow_datasets as tfds

    tfds_name = name
    if name in EMBEDDED:
        tfds_name, data_dir = EMBEDDED[name].TFDS_NAME, EMBEDDED[name].prepare(data_dir)
    try:
        return tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=False)
    except Exception as e:
        raise UserError(f"dataset {name!r} split {split!r} cannot be read from data dir {data_dir}:"
                        f" {type(e).__name__}: {str(e).splitlines()[0]}") from None
