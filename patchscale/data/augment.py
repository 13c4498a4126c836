"""Per-example training augmentation on the host (PIL on uint8 images), as in the reference recipes.

The reference study used timm/torchvision on PIL images; these are written from their documented
semantics on PIL, so each op matches the reference's arithmetic (docs/data.md lists the
differences). Every random draw comes from the numpy Generator grain hands to `random_map`,
seeded by the pipeline seed and the element's index, so a resumed run replays the same crops.

* `RandomResizedCrop`: torchvision's algorithm (10 tries of area × log-uniform aspect, then a
  centre crop), resized to the input size.
* `RandAugment`: timm's `rand-mM-mstdS-inc1` (two ops per image, each applied with probability ½,
  magnitude ~ N(M, S) clipped to [0, 10], the "increasing" op set, fill = ImageNet mean pixel).
* `ThreeAugment` (DeiT III): one of grayscale, solarize, Gaussian blur σ ∈ [0.1, 2].
* `ColorJitter`: brightness, contrast, saturation factors in [1 − s, 1 + s], in random order.

Random erasing and Mixup/CutMix work on whole normalised batches on device (augment_batch.py).
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from patchscale.errors import UserError

INTERPOLATIONS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
FILL = (124, 116, 104)  # timm's geometric-op fill: the ImageNet mean pixel in [0, 255].
MAX_LEVEL = 10.0


def to_pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def to_array(image: Image.Image, channels: int) -> np.ndarray:
    array = np.asarray(image, np.uint8)
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[-1] != channels:  # Grayscale of an RGB image comes back with one channel.
        array = np.repeat(array, channels, axis=-1)
    return array


def _fill(image: Image.Image):
    return FILL[0] if image.mode == "L" else FILL


# ----------------------------------------------------------------------------- crops and flips

def random_resized_crop_box(height: int, width: int, rng: np.random.Generator, scale=(0.08, 1.0),
                            ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(top, left, h, w) of torchvision's RandomResizedCrop: 10 tries, then a centre crop."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


@dataclasses.dataclass(frozen=True)
class RandomResizedCrop:
    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    interpolation: str = "bicubic"

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        top, left, h, w = random_resized_crop_box(image.height, image.width, rng, self.scale, self.ratio)
        return image.resize((self.size, self.size), INTERPOLATIONS[self.interpolation],
                            box=(left, top, left + w, top + h))


def horizontal_flip(image: Image.Image, rng: np.random.Generator, p: float) -> Image.Image:
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.uniform() < p else image


# ----------------------------------------------------------------------------- RandAugment

def _signed(value: float, rng: np.random.Generator) -> float:
    return -value if rng.uniform() < 0.5 else value


def _enhance(kind):
    def op(image, level, rng):
        return kind(image).enhance(1.0 + _signed(level / MAX_LEVEL * 0.9, rng))
    return op


def _affine(matrix_of):
    def op(image, level, rng):
        return image.transform(image.size, Image.Transform.AFFINE, matrix_of(image, level, rng),
                               resample=Image.Resampling.BICUBIC, fillcolor=_fill(image))
    return op


def _posterize(image, level, rng):
    """Keep 4 − ⌊level·0.4⌋ bits; 0 bits (level 10) is a black image, as timm's op gave with the
    Pillow it was written for (newer Pillow refuses 0 bits)."""
    bits = 4 - int(level / MAX_LEVEL * 4)
    if bits <= 0:
        return image.point([0] * 256 * len(image.getbands()))
    return ImageOps.posterize(image, bits)


def _solarize_add(image, level, rng):
    add = int(level / MAX_LEVEL * 110)
    table = [min(255, v + add) if v < 128 else v for v in range(256)]
    return image.point(table * (len(image.getbands())))


RAND_AUGMENT_OPS = {  # timm's _RAND_INCREASING_TRANSFORMS; level ∈ [0, 10].
    "AutoContrast": lambda image, level, rng: ImageOps.autocontrast(image),
    "Equalize": lambda image, level, rng: ImageOps.equalize(image),
    "Invert": lambda image, level, rng: ImageOps.invert(image),
    "Rotate": lambda image, level, rng: image.rotate(_signed(level / MAX_LEVEL * 30.0, rng),
                                                     resample=Image.Resampling.BICUBIC, fillcolor=_fill(image)),
    "PosterizeIncreasing": _posterize,
    "SolarizeIncreasing": lambda image, level, rng: ImageOps.solarize(image, 256 - int(level / MAX_LEVEL * 256)),
    "SolarizeAdd": _solarize_add,
    "ColorIncreasing": _enhance(ImageEnhance.Color),
    "ContrastIncreasing": _enhance(ImageEnhance.Contrast),
    "BrightnessIncreasing": _enhance(ImageEnhance.Brightness),
    "SharpnessIncreasing": _enhance(ImageEnhance.Sharpness),
    "ShearX": _affine(lambda im, level, rng: (1, _signed(level / MAX_LEVEL * 0.3, rng), 0, 0, 1, 0)),
    "ShearY": _affine(lambda im, level, rng: (1, 0, 0, _signed(level / MAX_LEVEL * 0.3, rng), 1, 0)),
    "TranslateXRel": _affine(lambda im, level, rng: (1, 0, _signed(level / MAX_LEVEL * 0.45, rng) * im.width, 0, 1, 0)),
    "TranslateYRel": _affine(lambda im, level, rng: (1, 0, 0, 0, 1, _signed(level / MAX_LEVEL * 0.45, rng) * im.height)),
}


_OP_NAMES = tuple(RAND_AUGMENT_OPS)


@dataclasses.dataclass(frozen=True)
class RandAugment:
    """timm's RandAugment: `layers` ops drawn with replacement, each applied with probability ½."""

    magnitude: float = 9.0
    magnitude_std: float = 0.5
    layers: int = 2

    @classmethod
    def parse(cls, spec: str) -> "RandAugment":
        """`rand-m9-mstd0.5-inc1` (timm's syntax; only the increasing op set is offered)."""
        match = re.fullmatch(r"rand((?:-[a-z]+[0-9.]+)*)", spec)
        if not match:
            raise ValueError(f"RandAugment spec {spec!r}: expected e.g. rand-m9-mstd0.5-inc1")
        fields = dict(re.findall(r"-([a-z]+)([0-9.]+)", match.group(1)))
        unknown = set(fields) - {"m", "mstd", "n", "inc"}
        if unknown or fields.get("inc", "1") != "1":
            raise ValueError(f"RandAugment spec {spec!r}: supported fields are m, mstd, n and inc1")
        return cls(float(fields.get("m", 9)), float(fields.get("mstd", 0.5)), int(fields.get("n", 2)))

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        for index in rng.integers(0, len(_OP_NAMES), size=self.layers):
            if rng.uniform() >= 0.5:
                continue
            level = rng.normal(self.magnitude, self.magnitude_std) if self.magnitude_std > 0 else self.magnitude
            image = RAND_AUGMENT_OPS[_OP_NAMES[index]](image, float(np.clip(level, 0.0, MAX_LEVEL)), rng)
        return image


# ----------------------------------------------------------------------------- ThreeAugment, jitter

def three_augment(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """DeiT III: exactly one of grayscale (kept at the image's channel count), solarize, blur."""
    choice = int(rng.integers(0, 3))
    if choice == 0:
        return ImageOps.grayscale(image).convert(image.mode)
    if choice == 1:
        return ImageOps.solarize(image, 128)
    return image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.1, 2.0))))


def color_jitter(image: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    """torchvision ColorJitter(s, s, s): brightness, contrast, saturation in a random order."""
    kinds = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)
    for index in rng.permutation(3):
        image = kinds[index](image).enhance(float(rng.uniform(max(0.0, 1 - strength), 1 + strength)))
    return image


# ----------------------------------------------------------------------------- the train transform

@dataclasses.dataclass(frozen=True)
class TrainAugment:
    """The per-example part of `augment.*` (config keys in defaults.py), for grain's `random_map`."""

    image_size: int
    crop: str = "resize"  # resize (squash to the input size) | random_resized
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    interpolation: str = "bicubic"
    hflip: float = 0.0
    policy: str = "none"  # none | three_augment | a RandAugment spec such as rand-m9-mstd0.5-inc1
    color_jitter: float = 0.0

    def __post_init__(self):  # Parsed once here, not for every image.
        parsed = RandAugment.parse(self.policy) if self.policy not in ("none", "three_augment") else None
        object.__setattr__(self, "_rand_augment", parsed)

    def __call__(self, example, rng: np.random.Generator):
        raw = np.asarray(example["image"], np.uint8)
        if raw.ndim == 2:
            raw = raw[..., None]
        image = to_pil(raw)
        if self.crop == "random_resized":
            image = RandomResizedCrop(self.image_size, self.crop_scale, self.crop_ratio, self.interpolation)(image, rng)
        elif image.size != (self.image_size, self.image_size):
            image = image.resize((self.image_size, self.image_size), INTERPOLATIONS[self.interpolation])
        if self.hflip:
            image = horizontal_flip(image, rng, self.hflip)
        if self.policy == "three_augment":
            image = three_augment(image, rng)
        elif self._rand_augment is not None:
            image = self._rand_augment(image, rng)
        if self.color_jitter:
            image = color_jitter(image, rng, self.color_jitter)
        return {"image": to_array(image, raw.shape[-1]), "label": np.int32(example["label"])}


def is_active(augment_config) -> bool:
    """Whether `augment.*` asks for any per-example work beyond resizing."""
    a = augment_config
    return a.crop != "resize" or bool(a.hflip) or a.policy != "none" or bool(a.color_jitter)


def from_config(augment_config, image_size: int, interpolation: str) -> TrainAugment:
    a = augment_config
    return TrainAugment(image_size, a.crop, tuple(a.crop_scale), tuple(a.crop_ratio), interpolation,
                        a.hflip, a.policy, a.color_jitter)


def check(a, d) -> None:
    """`augment.*`, and the resize and shift settings of `data.*` that the training view uses."""
    if d.interpolation not in INTERPOLATIONS:
        raise UserError(f"data.interpolation={d.interpolation!r}: expected one of {', '.join(INTERPOLATIONS)}")
    if d.eval_crop_ratio is not None and not 0.0 < d.eval_crop_ratio <= 1.0:
        raise UserError(f"data.eval_crop_ratio={d.eval_crop_ratio}: expected a ratio in (0, 1] (or unset: squash)")
    if d.random_shift < 0:
        raise UserError(f"data.random_shift={d.random_shift}: must be >= 0")
    if a.crop not in ("resize", "random_resized"):
        raise UserError(f"augment.crop={a.crop!r}: expected resize or random_resized")
    low, high = a.crop_scale
    if not 0.0 < low <= high <= 1.0:
        raise UserError(f"augment.crop_scale={tuple(a.crop_scale)}: expected 0 < low <= high <= 1")
    low, high = a.crop_ratio
    if not 0.0 < low <= high:
        raise UserError(f"augment.crop_ratio={tuple(a.crop_ratio)}: expected 0 < low <= high")
    if a.policy not in ("none", "three_augment"):
        try:
            RandAugment.parse(a.policy)
        except ValueError as e:
            raise UserError(f"augment.policy: {e} (or none, three_augment)") from None
    for key in ("hflip", "random_erasing", "mixup_switch_prob"):
        if not 0.0 <= a[key] <= 1.0:
            raise UserError(f"augment.{key}={a[key]}: expected a probability in [0, 1]")
    for key in ("color_jitter", "mixup_alpha", "cutmix_alpha"):
        if a[key] < 0:
            raise UserError(f"augment.{key}={a[key]}: must be >= 0 (0 turns it off)")
    if a.color_jitter >= 1.0:
        raise UserError(f"augment.color_jitter={a.color_jitter}: expected a strength below 1")
    if not isinstance(a.repeats, int) or a.repeats < 1:
        raise UserError(f"augment.repeats={a.repeats}: expected a whole number >= 1 (1: no repeated augmentation)")
