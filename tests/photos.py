"""A tiny TFDS image-classification dataset of real photographs, for the augmentation tests.

The photographs ship inside scikit-image's wheel (skimage.data: no download). Each photo is its
own class; the train split holds every photo several times (augmentation makes the copies
differ), the test split each photo once. Images keep their own sizes (300×451 … 512×512), so
the pipeline's crops and resizes work on real, non-square pictures.
"""

from __future__ import annotations

import numpy as np

NAME = "patchscale_photos"
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina")
TRAIN_COPIES = 8


def load_photos(size: tuple[int, int] | None = None, scale: float | None = None) -> list[np.ndarray]:
    """The photos as uint8 RGB arrays, optionally resized to `size` = (width, height) or by `scale`."""
    import skimage.data
    from PIL import Image

    images = []
    for name in PHOTOS:
        image = np.asarray(getattr(skimage.data, name)(), np.uint8)[..., :3]
        target = size or (None if scale is None else
                          (round(image.shape[1] * scale), round(image.shape[0] * scale)))
        if target is not None:
            image = np.asarray(Image.fromarray(image).resize(target, Image.Resampling.BICUBIC))
        images.append(image)
    return images


def _store(name: str, data_dir: str, features: dict, example, description: str) -> str:
    """Write a TFDS dataset whose train split holds each photo TRAIN_COPIES times, test once."""
    import tensorflow_datasets as tfds

    count = len(PHOTOS)

    def examples(copies: int):
        for i in range(copies * count):
            yield i, example(i % count)

    image = tfds.features.Tensor(shape=(None, None, 3), dtype=np.uint8, encoding="zlib")
    tfds.dataset_builders.store_as_tfds_dataset(
        name=name, version="1.0.0", features=tfds.features.FeaturesDict({"image": image, **features}),
        data_dir=data_dir, split_datasets={"train": examples(TRAIN_COPIES), "test": examples(1)},
        file_format="array_record", disable_shuffling=True, description=description)
    return data_dir


def write(data_dir: str, size: tuple[int, int] | None = None, scale: float | None = None) -> str:
    """Write the dataset under `data_dir` (once); returns `data_dir`. `size` or `scale` resizes every photo."""
    import pathlib

    import tensorflow_datasets as tfds

    if (pathlib.Path(data_dir) / NAME).exists():
        return data_dir
    photos = load_photos(size, scale)
    return _store(NAME, data_dir, {"label": tfds.features.ClassLabel(num_classes=len(photos))},
                  lambda i: {"image": photos[i], "label": i}, "Sample photographs from scikit-image, one class each.")


SCENES = "patchscale_scenes"
SCENE_CLASSES = 3  # Stored mask values 1..3; 0 is "other" (unlabelled), as in ADE20k.


def scene_mask(photo: np.ndarray) -> np.ndarray:
    """The stored (H, W, 3) uint8 mask of a photo: 1 + its brightness tercile, 0 on the top eighth.

    Stored as RGB with the class repeated, as TFDS scene_parse150 stores ADE20k's annotations.
    """
    gray = photo.astype(np.float32).mean(axis=-1)
    mask = 1 + np.digitize(gray, [85.0, 170.0]).astype(np.uint8)
    mask[: photo.shape[0] // 8] = 0
    return np.repeat(mask[..., None], 3, axis=-1)


def write_scenes(data_dir: str, scale: float = 0.125) -> str:
    """A tiny segmentation dataset shaped like scene_parse150: "image" and "annotation", no label."""
    import pathlib

    import tensorflow_datasets as tfds

    if (pathlib.Path(data_dir) / SCENES).exists():
        return data_dir
    photos = load_photos(scale=scale)
    mask = tfds.features.Tensor(shape=(None, None, 3), dtype=np.uint8, encoding="zlib")
    return _store(SCENES, data_dir, {"annotation": mask},
                  lambda i: {"image": photos[i], "annotation": scene_mask(photos[i])},
                  "Sample photographs from scikit-image with brightness-tercile masks.")
