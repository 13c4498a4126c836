"""What the pipeline needs to know about a dataset, and opening its TFDS splits.

`mnist` is the embedded default (see `mnist.py`), stored as the TFDS dataset
`patchscale_mnist`; every other name is a TFDS dataset read from the data dir: an image
classification dataset ("image" and "label"), or a segmentation dataset ("image" and a mask
feature named by `data.mask_feature`, e.g. scene_parse150's "annotation").

Splits are read through `tfds.data_source`, which needs random-access shards (TFDS's
`array_record` format). A dataset prepared in TFDS's default `tfrecord` format, or one without a
split the config names, is refused when the config is validated, with the command that fixes it
(docs/data.md), rather than when a run first opens the split.
"""

from __future__ import annotations

import dataclasses
import functools
import re

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
    location: str | None = None  # The prepared dataset's version directory; None when not prepared.
    unreadable: str | None = None  # Why tfds.data_source cannot read the prepared files (None: it can).


def check(d) -> DatasetInfo:
    """`data.*` against the dataset's metadata (no examples read); returns the metadata.

    The dataset must exist and be readable in its prepared format with the named splits, the
    input size must be known, and subsets must fit inside their splits.
    """
    info = describe(d.name, d.data_dir, d.mask_feature)  # Raises on unknown datasets.
    check_readable(d.name, info, {f"data.{key}": d[key] for key in ("train_split", "eval_split", "val_split")
                                  if d[key] is not None}, d.data_dir)  # Format and splits, before compiling.
    if d.image_size is not None and d.image_size <= 0:  # 0 would silently mean "the dataset's own size".
        raise UserError(f"data.image_size={d.image_size}: must be positive (leave it unset for the dataset's size)")
    if (d.image_size or info.image_size) is None:
        raise UserError(f"data.image_size must be set: dataset {d.name!r} has images of varying size")
    for key in ("train_examples", "eval_examples"):
        available = info.splits.get(d[key.replace("examples", "split")])
        if d[key] is not None and (d[key] <= 0 or (available and d[key] > available)):
            raise UserError(f"data.{key}={d[key]}: must be between 1 and the split's {available} examples")
    return info


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
    builder = _builder(name, data_dir)
    features = builder.info.features
    target = mask_feature or "label"
    if "image" not in features or target not in features:
        raise UserError(f"dataset {name!r} has no 'image' and {target!r} features"
                        f" (it has {', '.join(sorted(features.keys()))})")
    height, width, channels = features["image"].shape
    size = height if height == width and height is not None else None
    splits = {split: info.num_examples for split, info in builder.info.splits.items()} or KNOWN_SPLITS.get(name, {})
    prepared = builder.is_prepared()
    return DatasetInfo(name, size, channels or 3, 0 if mask_feature else features["label"].num_classes, splits,
                       str(builder.data_dir) if prepared else None, format_problem(name, builder) if prepared else None)


def _builder(name: str, data_dir: str | None):
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=data_dir, try_gcs=False)
    except Exception as e:  # TFDS raises several types for unknown names and broken dirs.
        raise UserError(f"unknown dataset {name!r}: {type(e).__name__}: {str(e).splitlines()[0]}") from None


def build_command(name: str, data_dir: str | None) -> str:
    """The `tfds build` line that prepares `name` in the format the pipeline reads (docs/data.md)."""
    where = f" --data_dir={data_dir}" if data_dir else ""
    return f"tfds build {name}{where} --file_format=array_record"


def format_problem(name: str, builder) -> str | None:
    """Why tfds.data_source cannot read a prepared dataset, with the command that fixes it; None if it can.

    TFDS writes `tfrecord` shards by default, and most shared ImageNet copies are such builds;
    `tfds convert_format` adds `array_record` shards beside them and records them in
    dataset_info.json, after which the same directory is readable.
    """
    from tensorflow_datasets.core import file_adapters

    available = builder.info.available_file_formats()
    if available & file_adapters.FileFormat.with_random_access():
        return None
    formats = "/".join(sorted(f.value for f in available)) or "an unrecorded format"
    return (f"dataset {name!r} in {builder.data_dir} is prepared as {formats}, which tfds.data_source cannot read"
            f" (it needs array_record); convert it in place: tfds convert_format"
            f" --dataset_version_dir={builder.data_dir} --out_file_format=array_record (docs/data.md)")


def split_base_names(spec: str) -> list[str]:
    """The split names in a TFDS split spec: "train[:90%]+validation" → ["train", "validation"]."""
    return [re.sub(r"\[.*\]$", "", part.strip()) for part in spec.split("+")]


def check_readable(name: str, info: DatasetInfo, split_keys: dict[str, str], data_dir: str | None) -> None:
    """`UserError` when the prepared data cannot serve the configured splits (config key → split spec).

    Metadata only, so it runs at validation time, before anything compiles. A dataset not
    prepared yet passes unless KNOWN_SPLITS says it lacks a split: dry runs size such runs.
    """
    if info.unreadable:
        raise UserError(info.unreadable)
    for key, spec in split_keys.items():
        missing = [s for s in split_base_names(spec) if info.splits and s not in info.splits]
        if missing:
            where = f" in {info.location}" if info.location else ""
            rebuild = "" if name in EMBEDDED else f", or prepare it with that split: {build_command(name, data_dir)}"
            raise UserError(f"{key}={spec!r}: dataset {name!r}{where} has no split {missing[0]!r} (it has"
                            f" {', '.join(info.splits)}); name one of those{rebuild}")


def open_split(name: str, split: str, data_dir: str | None):
    """A random-access TFDS data source for `split`, preparing the embedded dataset on first use."""
    import tensorflow_datasets as tfds

    tfds_name = name
    if name in EMBEDDED:
        tfds_name, data_dir = EMBEDDED[name].TFDS_NAME, EMBEDDED[name].prepare(data_dir)
    else:
        builder = _builder(name, data_dir)
        if not builder.is_prepared():
            raise UserError(f"dataset {name!r} is not prepared in {builder.data_dir}; prepare it:"
                            f" {build_command(name, data_dir)} (docs/data.md)")
        problem = format_problem(name, builder)
        if problem:
            raise UserError(problem)
    try:
        return tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=False)
    except Exception as e:
        raise UserError(f"dataset {name!r} split {split!r} cannot be read from data dir {data_dir}:"
                        f" {type(e).__name__}: {str(e).splitlines()[0]}") from None
