"""Adventurer specifics: the reference initialisation, flipping rules, CLS handling, remat, FLOPs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from patchscale import config as config_lib
from patchscale import optimizer
from patchscale.defaults import base_config
from patchscale.models import sizes
from patchscale.models.backbone import VisionBackbone
from patchscale.models.mixers import mamba2
from patchscale.models import flops
from tests.conftest import REPO


def adventurer_model_config(*overrides):
    c = config_lib.load_config(str(REPO / "experiments" / "mnist_adventurer.py"),
                               ["model.size=adv-pico", "model.mamba2.d_state=16", "model.mamba2.headdim=16",
                                "model.mamba2.chunk_size=8", *overrides])
    return c.model


def build(*overrides, image_size=32):
    return VisionBackbone(adventurer_model_config(*overrides), image_size=image_size, channels=1, num_classes=10,
                          rngs=nnx.Rngs(0))


def test_reference_sizes():
    assert sizes.SIZES["adv-Ti"] == sizes.Shape(256, 12, 4, 640)
    assert sizes.SIZES["adv-B"].mlp_dim == 1920 and sizes.SIZES["adv-L"].depth == 24
    c = base_config()
    d = mamba2.dims(sizes.SIZES["adv-B"], c.model.mamba2)
    assert d == {"d_inner": 1536, "heads": 24, "bc": 64, "conv_channels": 1664, "in_proj": 1536 * 2 + 128 + 24}


def test_reference_initialisation():
    c = base_config()
    c.model.size, c.model.mixer = "adv-S", "mamba2"
    m = mamba2.Mamba2(sizes.resolve(c.model), c.model, layer=0, dtype=jnp.float32, rngs=nnx.Rngs(0))
    A = np.exp(np.asarray(m.A_log[...]))
    assert A.min() >= 1.0 and A.max() <= 16.0
    dt = np.asarray(jax.nn.softplus(m.dt_bias[...]))
    assert dt.min() >= 1e-4 - 1e-9 and dt.max() <= 0.1 + 1e-6 and dt.min() < 0.01
    np.testing.assert_array_equal(m.D[...], 1.0)
    bound = 1 / np.sqrt(512)
    assert np.abs(m.in_proj.kernel[...]).max() <= bound
    out_bound = 1 / np.sqrt(1024) / np.sqrt(12)  # PyTorch default, rescaled by 1/√depth.
    assert np.abs(m.out_proj.kernel[...]).max() <= out_bound
    assert np.abs(m.out_proj.kernel[...]).max() > 0.9 * out_bound


@pytest.mark.parametrize("rule, flipped", [("alternate", [1, 3, 5, 7, 9, 11]), ("released", [2, 3]), ("none", [])])
def test_flip_rules(rule, flipped):
    assert [n for n in range(12) if mamba2.FLIP_RULES[rule](n)] == flipped


def test_flipping_reverses_patches_and_keeps_cls_last():
    m = adventurer_model_config()
    mixer = mamba2.Mamba2(sizes.resolve(m), m, layer=1, dtype=jnp.float32, rngs=nnx.Rngs(0))
    x = jnp.arange(5.0)[None, :, None]  # Four patch tokens and the CLS token last.
    assert mixer.flip is True and mamba2.Mamba2.per_layer(m, 1) == {"flip": True}
    np.testing.assert_array_equal(mixer._reorder(x, True)[0, :, 0], [3, 2, 1, 0, 4])
    np.testing.assert_array_equal(mixer._reorder(mixer._reorder(x, True), True), x)
    # Under the layer scan the flip is traced: the same reversal, or none.
    traced = jax.jit(mixer._reorder)
    np.testing.assert_array_equal(traced(x, jnp.asarray(True))[0, :, 0], [3, 2, 1, 0, 4])
    np.testing.assert_array_equal(traced(x, jnp.asarray(False)), x)


def test_heading_average_lets_the_first_token_see_the_whole_sequence():
    m = adventurer_model_config()
    mixer = mamba2.Mamba2(sizes.resolve(m), m, layer=0, dtype=jnp.float32, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 12, 32)), jnp.float32)
    y, y2 = mixer(x), mixer(x.at[:, -1].add(1.0))
    assert not np.allclose(y[:, 0], y2[:, 0])  # Without the average this would be causal.


@pytest.mark.parametrize("position, read, ignored", [("last", -1, slice(0, -1)), ("first", 0, slice(1, None))])
def test_head_reads_the_class_token_where_it_sits(position, read, ignored):
    """Perturbing every other token after the final norm leaves the logits alone; perturbing the CLS token does not."""
    model = build(f"model.cls_position={position}", "model.patch_size=8")
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 32, 32, 1)), jnp.uint8)
    forward = lambda m, x: m(x)  # noqa: E731
    reference = forward(model, images)
    norm = model.norm

    def perturbed(tokens):
        return lambda x: norm(x).at[:, tokens].add(10.0)

    model.norm = perturbed(ignored)
    np.testing.assert_array_equal(forward(model, images), reference)
    model.norm = perturbed(read)
    assert np.abs(np.asarray(forward(model, images) - reference)).max() > 0.1


@pytest.mark.parametrize("patch_size", [16, 1])  # 4 and 1,024 patch tokens (+ CLS).
def test_every_patch_size(patch_size):
    logits = build(f"model.patch_size={patch_size}")(jnp.ones((2, 32, 32, 1), jnp.uint8))
    assert logits.shape == (2, 10) and bool(jnp.all(jnp.isfinite(logits)))


@pytest.mark.heavy
def test_remat_gives_the_same_loss_and_gradients():
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 32, 32, 1)), jnp.uint8)

    def loss_and_grads(remat):
        model = build("model.patch_size=4", f"model.remat={remat}")
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        loss = lambda p: jnp.sum(nnx.merge(graphdef, p, rest)(images, jax.random.key(0)) ** 2)
        return jax.jit(jax.value_and_grad(loss))(params)

    (l0, g0), (l1, g1) = loss_and_grads("none"), loss_and_grads("full")
    np.testing.assert_allclose(l1, l0, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_no_weight_decay_on_one_dimensional_mamba_parameters():
    mask = nnx.to_pure_dict(optimizer.decay_mask(nnx.state(build(), nnx.Param)))
    mixer = mask["blocks"][0]["mixer"]
    assert mixer["in_proj"]["kernel"] and mixer["out_proj"]["kernel"]
    for name in ("A_log", "D", "dt_bias", "conv_bias"):
        assert not mixer[name], name
    assert not mixer["norm"]["scale"] and not mask["blocks"][0]["channel"]["gate_value"]["bias"]


def test_analytic_flops_count_the_swiglu_by_hand():
    """Two configs that differ only in the SwiGLU width isolate its term, derived by hand from the block.

    (The whole count is checked against XLA's in test_flops.py.)
    """
    def forward(*overrides):
        return flops.forward_flops_per_image(adventurer_model_config(*overrides), 32, 1, 10)

    # SwiGLU: three D×H matrices, 2 FLOPs per multiply-add, for each of the 65 tokens (64 patches +
    # CLS) in each block; 2 blocks of width 32; H from 80 to 96.
    assert forward("model.patch_size=4", "model.mlp_dim=96") - forward("model.patch_size=4", "model.mlp_dim=80") \
        == pytest.approx(2 * 65 * 3 * 2 * 32 * 16)
