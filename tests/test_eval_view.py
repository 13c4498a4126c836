"""The evaluation view's arithmetic, against torchvision's (Resize(int) then CenterCrop), without torch.

timm's and DeiT's eval transform is `Resize(floor(size / crop_ratio))` + `CenterCrop(size)`.
The reference below is written from torchvision's `_compute_resized_output_size` (shorter side
to the requested size, the longer side `int(requested * long / short)`) and `center_crop`
(offsets `int(round((image - crop) / 2.0))`), independently of patchscale/data/pipeline.py.
"""

import math

import numpy as np
import pytest
from PIL import Image

from patchscale.data import pipeline

# Common ImageNet shapes, (height, width).
SHAPES = [(375, 500), (500, 375), (333, 500), (500, 333), (400, 500), (500, 400), (480, 640), (640, 480),
          (500, 500), (600, 800), (768, 1024), (281, 500), (500, 281), (225, 300), (334, 500), (500, 334)]
VIEWS = [(224, 0.875), (224, 1.0), (128, 0.875), (128, 1.0), (64, 0.875), (64, 1.0), (32, 0.875)]


def torchvision_view(height: int, width: int, size: int, crop_pct: float) -> tuple[int, int, int, int]:
    """(resized h, resized w, top, left) as timm's eval transform computes them through torchvision."""
    scale_size = int(math.floor(size / crop_pct))  # timm: transforms_imagenet_eval
    # torchvision.transforms.functional._compute_resized_output_size(image_size=(h, w), size=[scale_size])
    if width <= height:
        short, long = width, height
    else:
        short, long = height, width
    new_short, new_long = scale_size, int(scale_size * long / short)
    if width <= height:
        new_w, new_h = new_short, new_long
    else:
        new_w, new_h = new_long, new_short
    # torchvision.transforms.functional.center_crop(img, [size, size])
    crop_top = int(round((new_h - size) / 2.0))
    crop_left = int(round((new_w - size) / 2.0))
    return new_h, new_w, crop_top, crop_left


@pytest.mark.parametrize("size,crop_pct", VIEWS)
def test_eval_view_geometry_is_torchvisions_on_common_imagenet_shapes(size, crop_pct):
    for height, width in SHAPES:
        assert pipeline.eval_view_geometry(height, width, size, crop_pct) == \
            torchvision_view(height, width, size, crop_pct), (height, width)


def test_the_old_rounding_differed_on_a_share_of_the_shapes():
    """Why this matters: rounding the longer side and flooring the offsets moved the view by a pixel."""
    def rounded(height, width, size, crop_pct):
        scaled = math.floor(size / crop_pct)
        w, h = (scaled, round(scaled * height / width)) if width <= height else (round(scaled * width / height), scaled)
        return h, w, (h - size) // 2, (w - size) // 2

    moved = sum(rounded(h, w, 224, 1.0) != torchvision_view(h, w, 224, 1.0) for h, w in SHAPES)
    assert moved == 11


@pytest.mark.parametrize("height,width", [(375, 500), (500, 281), (333, 500)])
def test_the_pipeline_cuts_exactly_that_view(height, width):
    """`_resize` = a bicubic resize to the torchvision size, then the crop at torchvision's offsets."""
    image = np.random.default_rng(height + width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    size, crop_pct = 64, 0.875
    new_h, new_w, top, left = torchvision_view(height, width, size, crop_pct)
    planes = [np.asarray(Image.fromarray(image[..., c]).resize((new_w, new_h), Image.Resampling.BICUBIC))
              for c in range(3)]
    want = np.stack(planes, axis=-1)[top:top + size, left:left + size]
    np.testing.assert_array_equal(pipeline._resize(image, size, "bicubic", crop_pct), want)


def test_a_shorter_side_already_at_the_size_is_not_resampled():
    """torchvision returns the image unchanged when the resize is the identity; so does the pipeline."""
    image = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    np.testing.assert_array_equal(pipeline._resize(image, 64, "bicubic", 1.0), image[:, 8:72])
