"""The reference augmentations on real photographs: crops, eval view, erasing, Mixup/CutMix, resume."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from patchscale import config as config_lib
from patchscale.data import augment, augment_batch, pipeline
from patchscale.defaults import base_config
from patchscale.errors import UserError
from tests import photos
from tests.conftest import DEFAULT_EXPERIMENT


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> str:
    """The photos at a quarter of their linear size (fast to augment), keeping distinct aspects."""
    return photos.write(str(tmp_path_factory.mktemp("photos")), scale=0.25)


def deit_augment(**changes) -> ml_collections.ConfigDict:
    a = base_config().augment
    a.crop, a.hflip, a.policy, a.random_erasing, a.repeats = "random_resized", 0.5, "rand-m9-mstd0.5-inc1", 0.25, 3
    a.mixup_alpha, a.cutmix_alpha = 0.8, 1.0
    a.update(changes)
    return a


def photo_data(photo_dir: str) -> ml_collections.ConfigDict:
    d = base_config().data
    d.name, d.data_dir, d.image_size, d.interpolation = photos.NAME, photo_dir, 32, "bicubic"
    return d


def test_random_resized_crop_boxes_keep_the_scale_and_aspect_ranges():
    rng = np.random.default_rng(0)
    height, width = 300, 451
    for _ in range(500):
        top, left, h, w = augment.random_resized_crop_box(height, width, rng)
        assert 0 <= top and top + h <= height and 0 <= left and left + w <= width
        # Rounding to whole pixels moves area and aspect by at most a pixel's worth.
        assert 0.08 * height * width - (h + w) <= h * w <= height * width
        assert 3 / 4 - 1 / min(h, w) <= w / h <= 4 / 3 + 1 / min(h, w)


def test_rand_augment_spec_is_parsed_like_timm_and_wrong_specs_are_refused():
    assert augment.RandAugment.parse("rand-m9-mstd0.5-inc1") == augment.RandAugment(9.0, 0.5, 2)
    assert augment.RandAugment.parse("rand-m7-n3-mstd0-inc1") == augment.RandAugment(7.0, 0.0, 3)
    assert augment.RandAugment.parse("rand-m9-mstd0.5") == augment.RandAugment(9.0, 0.5, 2)  # inc1 by default.
    for spec in ("rand-m9-inc0", "augmix-m5", "rand-x3-inc1"):
        with pytest.raises(ValueError):
            augment.RandAugment.parse(spec)


def test_eval_view_resizes_the_shorter_side_then_crops_the_centre():
    """A horizontal and a vertical ramp show which part of a 300×451 photo the 32² view keeps."""
    height, width = 300, 451
    ramp_x = np.broadcast_to(np.linspace(0, 255, width)[None, :, None], (height, width, 1)).astype(np.uint8)
    ramp_y = np.broadcast_to(np.linspace(0, 255, height)[:, None, None], (height, width, 1)).astype(np.uint8)
    view_x = pipeline._resize(ramp_x, 32, "bicubic", 0.875)[..., 0].astype(float)
    view_y = pipeline._resize(ramp_y, 32, "bicubic", 0.875)[..., 0].astype(float)
    assert view_x.shape == (32, 32)
    # Shorter side → ⌊32 / 0.875⌋ = 36 rows; the width keeps its aspect: 54 columns; crop 11…42 and 2…33.
    np.testing.assert_allclose(view_x[16, [0, 31]], 255 * (np.array([11, 42]) + 0.5) / 54, atol=3)
    np.testing.assert_allclose(view_y[[0, 31], 16], 255 * (np.array([2, 33]) + 0.5) / 36, atol=3)
    square = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(pipeline._resize(square, 32, "bicubic", 1.0), pipeline._resize(square, 32, "bicubic"))


def test_random_erasing_pastes_one_box_of_the_allowed_area_per_image():
    images = jnp.zeros((64, 32, 32, 3))
    erase = jax.jit(augment_batch.random_erasing, static_argnums=2)
    erased = np.asarray(erase(images, jax.random.key(0), 1.0))
    for image in erased:
        rows, cols = np.nonzero((image != 0).any(-1))
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert (image != 0).any(-1).sum() == h * w  # One solid rectangle.
        assert 0.02 * 1024 - (h + w) <= h * w <= 1024 / 3 + (h + w)
    # Normal noise in ImageNet mean/std units: pixel std ≈ 58, i.e. ≈ 0.45 in the model's [−1, 1] scale.
    assert abs(erased[erased != 0].std() - 0.45) < 0.05
    np.testing.assert_array_equal(erase(images, jax.random.key(0), 0.0), images)


_MIX = jax.jit(augment_batch.mix, static_argnums=(3, 4, 5))


def _mixed_pair(mixup_alpha, cutmix_alpha, seed):
    """Image 0 (all 0, label 0) mixed with image 7 (all 7, label 3): its pixels and λ from its target."""
    batch = 8
    images = jnp.broadcast_to(jnp.arange(batch, dtype=jnp.float32)[:, None, None, None], (batch, 16, 16, 1))
    targets = jax.nn.one_hot(jnp.arange(batch) % 4, 10) * 0.9 + 0.01  # Smoothed by 0.1.
    mixed, soft = _MIX(images, targets, jax.random.key(seed), mixup_alpha, cutmix_alpha, 0.5)
    np.testing.assert_allclose(np.asarray(soft).sum(-1), 1.0, rtol=1e-6)  # Label mass sums to one.
    lam = (float(soft[0, 0]) - 0.01) / 0.9
    np.testing.assert_allclose(float(soft[0, 3]), 0.01 + 0.9 * (1 - lam), atol=1e-6)
    return np.asarray(mixed[0, ..., 0]), lam


def _is_cutmix(pixels, lam) -> bool:
    return set(np.unique(pixels)) <= {0.0, 7.0} and abs((pixels == 0).mean() - lam) < 1e-6


def _is_mixup(pixels, lam) -> bool:
    return np.allclose(pixels, 7 * (1 - lam), atol=1e-5)


def test_mixup_mixes_every_pixel_by_lambda():
    lams = [lam for seed in range(10) for pixels, lam in [_mixed_pair(0.8, 0.0, seed)] if _is_mixup(pixels, lam)]
    assert len(lams) == 10 and len(set(np.round(lams, 6))) > 5  # λ ~ Beta(0.8, 0.8) varies.


def test_cutmix_lambda_is_the_area_each_image_keeps():
    assert all(_is_cutmix(*_mixed_pair(0.0, 1.0, seed)) for seed in range(10))


def test_batches_switch_between_mixup_and_cutmix():
    kinds = []
    for seed in range(20):
        pixels, lam = _mixed_pair(0.8, 1.0, seed)
        assert _is_cutmix(pixels, lam) or _is_mixup(pixels, lam)
        kinds.append(_is_cutmix(pixels, lam))
    assert 0 < sum(kinds) < 20


def test_deit_pipeline_on_photos_is_deterministic_repeats_and_resumes(photo_dir):
    data = photo_data(photo_dir)
    make = lambda: pipeline.train_iterator(data, 32, 12, 8, seed=3, augment_config=deit_augment())  # noqa: E731
    first = [next(it) for it in [make()] for _ in range(4)]
    again = make()
    np.testing.assert_array_equal(next(again)["image"], first[0]["image"])
    state = again.get_state()
    resumed = make()
    resumed.set_state(state)
    for expected in first[1:]:
        batch = next(resumed)
        np.testing.assert_array_equal(batch["image"], expected["image"])
        np.testing.assert_array_equal(batch["label"], expected["label"])
    batch = first[0]
    assert batch["image"].shape == (12, 32, 32, 3) and batch["image"].dtype == np.uint8
    labels = batch["label"].reshape(4, 3)
    assert (labels == labels[:, :1]).all()  # Repeated augmentation: each photo three times in a row…
    triple = batch["image"][:3].astype(int)
    assert np.abs(triple[0] - triple[1]).mean() > 5 and np.abs(triple[1] - triple[2]).mean() > 5  # …differently.


def test_three_augment_keeps_channels_and_changes_the_photo(photo_dir):
    a = deit_augment(policy="three_augment", color_jitter=0.3, repeats=1)
    batch = next(pipeline.train_iterator(photo_data(photo_dir), 32, 6, 2, seed=0, augment_config=a))
    plain = next(pipeline.train_iterator(photo_data(photo_dir), 32, 6, 2, seed=0, augment_config=base_config().augment))
    assert batch["image"].shape == plain["image"].shape == (6, 32, 32, 3)
    assert not np.array_equal(batch["image"], plain["image"])


@pytest.mark.parametrize("override,message", [
    ("augment.crop=center", "augment.crop"), ("augment.policy=rand-x9", "augment.policy"),
    ("augment.hflip=1.5", "augment.hflip"), ("augment.repeats=0", "augment.repeats"),
    ("augment.mixup_alpha=-1.0", "augment.mixup_alpha"), ("data.eval_crop_ratio=1.5", "data.eval_crop_ratio"),
    ("data.interpolation=nearest", "data.interpolation"), ("train.ema_decay=1.0", "train.ema_decay"),
])
def test_bad_augmentation_settings_are_refused_before_any_work(override, message):
    with pytest.raises(UserError, match=message):
        config_lib.load_config(str(DEFAULT_EXPERIMENT), [override])


def test_data_preview_writes_a_png_of_the_augmented_batch_and_the_eval_view(photo_dir, tmp_path, capsys):
    from PIL import Image

    from patchscale import cli
    from tests.conftest import REPO

    args = ["data", "preview", str(REPO / "experiments" / "paper_deit_b_64.py"), f"data.name={photos.NAME}",
            f"data.data_dir={photo_dir}", "data.eval_split=test", "data.image_size=32", "--count", "6"]
    assert cli.main([*args, "--out", str(tmp_path / "preview.png")]) == 0
    with Image.open(tmp_path / "preview.png") as image:
        assert image.format == "PNG" and image.width > 400 and image.height > 300
    assert cli.main([*args, "--out", str(tmp_path / "preview.jpg")]) == 2
    assert "ending in .png" in capsys.readouterr().err and not (tmp_path / "preview.jpg").exists()


@pytest.mark.parametrize("level", [0.0, 5.0, 10.0])
def test_every_rand_augment_op_runs_at_every_level_on_rgb_and_gray(level):
    rng = np.random.default_rng(0)
    photo = photos.load_photos((40, 30))[1]
    for image in (augment.to_pil(photo), augment.to_pil(photo[..., :1])):
        for name, op in augment.RAND_AUGMENT_OPS.items():
            out = op(image, level, rng)
            assert out.size == image.size and out.mode == image.mode, name
