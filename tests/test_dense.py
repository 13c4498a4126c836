"""Decoder-free dense prediction: pixel reassembly, the MNIST-derived pixel labels, mIoU, and a run end to end."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from patchscale import segmentation
from patchscale.models import dense_heads
from patchscale.models.backbone import VisionBackbone
from tests.conftest import DEFAULT_EXPERIMENT, run_in_process, small_overrides
from tests.test_models import model_config


@pytest.mark.parametrize("p", [1, 2, 4])
def test_each_token_paints_its_own_pixels(p):
    g, k, side = 3, 2, 3 * p
    # The pattern each token should paint: pixel (y, x) of class c holds 1000·c + side·y + x.
    target = np.arange(side * side, dtype=np.float32).reshape(side, side)
    target = np.stack([target, 1000 + target], axis=-1)
    tokens = np.zeros((1, g * g, p * p * k), np.float32)
    for row in range(g):
        for col in range(g):
            tokens[0, row * g + col] = target[row * p:(row + 1) * p, col * p:(col + 1) * p].reshape(-1)
    pixels = np.asarray(dense_heads.pixels_from_patches(jnp.asarray(tokens), p))
    np.testing.assert_array_equal(pixels[0], target)


def test_pixel_labels_take_the_digit_above_the_threshold_and_background_below():
    images = np.zeros((2, 2, 2, 1), np.uint8)
    images[0, 0, 0], images[0, 1, 1], images[1, 0, 1] = 128, 127, 255
    labels = segmentation.pixel_labels(jnp.asarray(images), jnp.asarray([3, 0]), 128)
    np.testing.assert_array_equal(labels, [[[4, 0], [0, 0]], [[0, 1], [0, 0]]])


def test_mean_iou_on_a_hand_computed_case():
    truth = jnp.asarray([[0, 0, 1, 1], [2, 2, 2, 0]])
    predicted = jnp.asarray([[0, 1, 1, 1], [2, 2, 0, 0]])
    weight = jnp.asarray([[1, 1, 1, 1], [1, 1, 1, 0]], jnp.float32)  # The last pixel is padding.
    counts = segmentation.confusion_counts(predicted, truth, weight, 4)
    # Class 0: TP 1 (0,0), FP 1 (1,2), FN 1 (0,1) → 1/3. Class 1: TP 2, FP 1 → 2/3.
    # Class 2: TP 2, FN 1 → 2/3. Class 3: never seen nor predicted, left out.
    np.testing.assert_array_equal(counts["tp"], [1, 2, 2, 0])
    np.testing.assert_array_equal(counts["fp"], [1, 1, 0, 0])
    np.testing.assert_array_equal(counts["fn"], [1, 0, 1, 0])
    assert segmentation.mean_iou(**counts) == pytest.approx((1 / 3 + 2 / 3 + 2 / 3) / 3)


@pytest.mark.parametrize("head", ["dense_linear", "dense_decoder"])
def test_dense_heads_give_logits_per_pixel(head):
    m = model_config(patch_size=4, pool="gap", head=head)
    classes = segmentation.pixel_classes(10)  # The head's outputs: background + 10 digits.
    model = VisionBackbone(m, image_size=16, channels=1, num_classes=classes, rngs=nnx.Rngs(0))
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 16, 16, 1)), jnp.uint8)
    assert model(images, jax.random.key(0)).shape == (2, 16, 16, 11)


def test_a_dense_run_reports_per_pixel_metrics_and_miou(mnist_dir, tmp_path, capsys):
    run_dir = tmp_path / "seg"
    done = run_in_process(capsys, "train", DEFAULT_EXPERIMENT,
                          *small_overrides(mnist_dir, **{"model.head": "dense_linear", "model.pool": "gap",
                                                         "model.patch_size": 8, "data.image_size": 16,
                                                         "data.random_shift": 0, "train.steps": 30}),
                          "--workdir", run_dir)
    assert done.returncode == 0, done.err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["test_examples"] == 1050 and summary["test_pixels"] == 1050 * 16 * 16  # Every pixel.
    # 30 steps teach little beyond "background" (the mIoU arithmetic is checked by hand above);
    # here the numbers must be the per-pixel ones, in range, and carried into the budgets.
    assert 0.0 < summary["test_miou"] < 1.0 and 0.5 < summary["test_accuracy"] < 1.0
    assert summary["test_loss"] < 2.0  # Per pixel: far below an 11-way guess (2.4 nats).
    assert summary["budgets"][-1]["test_miou"] == summary["test_miou"]


# ----------------------------------------------------------------- segmentation datasets (ADE20k-shaped)
def test_masks_are_resized_by_nearest_neighbour_and_out_of_range_classes_are_ignored():
    from patchscale.data import pipeline

    # Stored values 0 ("other"), 1, 2 and 9 in 2×2 blocks of a 4×4 mask (RGB, as scene_parse150 stores it).
    stored = np.kron(np.asarray([[0, 1], [2, 9]], np.uint8), np.ones((2, 2), np.uint8))
    example = {"image": np.zeros((4, 4, 3), np.uint8), "annotation": np.repeat(stored[..., None], 3, axis=-1)}
    out = pipeline.Preprocess(2, mask_feature="annotation", mask_offset=-1, mask_classes=3)(example)
    # Each block is one output pixel; 0 - 1 and 9 - 1 fall outside 0..2 and are ignored.
    np.testing.assert_array_equal(out["pixels"], [[segmentation.IGNORE, 0], [1, segmentation.IGNORE]])
    assert out["pixels"].dtype == np.int32 and out["image"].shape == (2, 2, 3) and out["label"] == 0
    same = pipeline.Preprocess(4, mask_feature="annotation", mask_classes=10)(example)
    np.testing.assert_array_equal(same["pixels"], stored)  # Identity at its own size, offset 0.


def test_a_mask_of_another_shape_than_its_image_is_refused():
    from patchscale.data import pipeline
    from patchscale.errors import UserError

    example = {"image": np.zeros((4, 4, 3), np.uint8), "annotation": np.zeros((4, 5, 1), np.uint8)}
    with pytest.raises(UserError, match="a mask of shape"):
        pipeline.Preprocess(2, mask_feature="annotation", mask_classes=3)(example)


def test_a_dense_run_on_a_segmentation_dataset_learns_from_its_masks_and_ignores_unlabelled_pixels(
        tmp_path, capsys):
    from PIL import Image

    from tests import photos

    data_dir = photos.write_scenes(str(tmp_path / "scenes"))
    size = 16
    # The labelled pixels of the test split, counted independently of the pipeline.
    labelled = 0
    for photo in photos.load_photos(scale=0.125):
        plane = Image.fromarray(photos.scene_mask(photo)[..., 0]).resize((size, size), Image.Resampling.NEAREST)
        labelled += int((np.asarray(plane) > 0).sum())
    run_dir = tmp_path / "seg"
    overrides = {"data.name": photos.SCENES, "data.data_dir": data_dir, "data.image_size": size,
                 "data.mask_feature": "annotation", "data.mask_classes": photos.SCENE_CLASSES, "data.mask_offset": -1,
                 "data.random_shift": 0, "model.head": "dense_linear", "model.pool": "gap", "model.size": "pico",
                 "model.patch_size": 4, "train.batch_size": 8, "train.eval_batch_size": 4, "train.steps": 40,
                 "train.warmup_epochs": 0.0, "train.learning_rate": 3e-3, "train.log_every": 10}
    done = run_in_process(capsys, "train", DEFAULT_EXPERIMENT, *[f"{k}={v}" for k, v in overrides.items()],
                          "--workdir", run_dir)
    assert done.returncode == 0, done.err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["test_examples"] == len(photos.PHOTOS)
    assert summary["test_pixels"] == labelled < len(photos.PHOTOS) * size * size  # Only labelled pixels.
    # Brightness terciles are learnable from the pixels: 40 steps beat a 3-way guess (1.10 nats).
    assert summary["test_loss"] < 1.0 and 0.0 < summary["test_miou"] <= 1.0
