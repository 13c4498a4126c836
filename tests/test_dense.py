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
    model = VisionBackbone(m, image_size=16, channels=1, num_classes=10, rngs=nnx.Rngs(0))
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
