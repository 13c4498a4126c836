"""What the pipeline needs to know about a dataset, and opening its TFDS splits.

`mnist` is the embedded default (see `mnist.py`), stored as the TFDS dataset
`patchscale_mnist`; every other name is a TFDS dataset read from the data dir.
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
}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    tfds_name: str
    image_size: int | None  # None when images vary in size.
    channels: int
    num_classes: int
    splits: dict[str, int]  # Split name → number of examples (empty if not prepared yet).


def describe(name: str, data_dir: str | None) -> DatasetInfo:
    """Shape facts about `name`, without reading any examples; `UserError` if unknown."""
    if name in EMBEDDED:
        return DatasetInfo(mnist.TFDS_NAME, mnist.PADDED_SIZE, 1, 10, dict(mnist.SPLITS))
    return _describe_tfds(name, data_dir)


@functools.cache
def _describe_tfds(name: str, data_dir: str | None) -> DatasetInfo:
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
    except Exception as e:  # TFDS raises several types for unknown names and broken dirs.
        raise UserError(f"unknown dataset {name!r}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise UserError(f"dataset {name!r} has no 'image' and 'label' features")
    height, width, channels = features["image"].shape
    size = height if height == width and height is not None else None
    splits = {split: info.num_examples for split, info in builder.info.splits.items()} or KNOWN_SPLITS.get(name, {})
    return DatasetInfo(name, size, channels or 3, features["label"].num_classes, splits)


def open_split(name: str, split: str, data_dir: str | None):
    """A random-access TFDS data source for `split`, preparing the embedded dataset on first use."""
    import tensorflow_datasets as tfds

    info = describe(name, data_dir)
    if name in EMBEDDED:
        data_dir = EMBEDDED[name].prepare(data_dir)
    try:
        return tfds.data_source(info.tfds_name, split=split, data_dir=data_dir, download=False)
    except Exception as e:
        raise UserError(f"dataset {name!r} split {split!r} cannot be read from data dir {data_dir}:"
                        f" {type(e).__name__}: {str(e).splitlines()[0]}") from None
