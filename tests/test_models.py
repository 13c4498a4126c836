"""Model shapes at every patch size, the patch embedding as a strided convolution, init details."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from patchscale import config as config_lib
from patchscale import optimizer
from patchscale.defaults import base_config
from patchscale.models import patchify, sizes
from patchscale.models.backbone import VisionBackbone
from patchscale.models import flops
from tests.conftest import DEFAULT_EXPERIMENT


def model_config(**overrides):
    c = config_lib.load_module(str(DEFAULT_EXPERIMENT)).get_config()
    config_lib.apply_overrides(c, ["model.size=pico", *[f"model.{k}={v}" for k, v in overrides.items()]])
    return c.model


@pytest.mark.parametrize("patch_size, pool", [(16, "cls"), (4, "cls"), (1, "cls"), (2, "gap")])
def test_logits_shape_at_every_patch_size(patch_size, pool):
    m = model_config(patch_size=patch_size, pool=pool)
    model = VisionBackbone(m, image_size=32, channels=1, num_classes=10, rngs=nnx.Rngs(0))
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (3, 32, 32, 1)), jnp.uint8)
    logits = model(images, jax.random.key(1))
    assert logits.shape == (3, 10) and logits.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(logits)))
    tokens = (32 // patch_size) ** 2 + (pool == "cls")
    assert model.posemb.table[...].shape == (tokens, 32)
    assert flops.tokens_per_image(m, 32) == tokens


@pytest.mark.parametrize("patch_size", [16, 4, 2, 1])
def test_patch_embedding_equals_strided_convolution(patch_size):
    rng = np.random.default_rng(patch_size)
    images = jnp.asarray(rng.normal(size=(2, 16, 16, 3)), jnp.float32)
    embed = patchify.PatchEmbed(patch_size, 3, 8, dtype=jnp.float32, rngs=nnx.Rngs(0))
    embed.proj.bias[...] = jnp.asarray(rng.normal(size=8), jnp.float32)
    kernel = embed.proj.kernel[...].reshape(patch_size, patch_size, 3, 8)  # HWIO
    conv = jax.lax.conv_general_dilated(images, kernel, (patch_size, patch_size), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    conv = conv + embed.proj.bias[...]
    expected = conv.reshape(2, -1, 8)  # Raster order of the output grid.
    np.testing.assert_allclose(embed(images), expected, rtol=1e-5, atol=1e-5)


def test_sincos_posemb_is_fixed_and_distinct():
    table = patchify.sincos_2d(4, 16)
    assert table.shape == (16, 16)
    assert len({tuple(np.round(row, 6)) for row in table}) == 16
    m = model_config(posemb="sincos2d")
    model = VisionBackbone(m, image_size=32, channels=1, num_classes=10, rngs=nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    assert "posemb" not in params  # Not trainable.


def test_weight_decay_mask_spares_biases_norms_and_embeddings():
    model = VisionBackbone(model_config(), image_size=32, channels=1, num_classes=10, rngs=nnx.Rngs(0))
    mask = nnx.to_pure_dict(optimizer.decay_mask(nnx.state(model, nnx.Param)))
    assert mask["blocks"][0]["mixer"]["qkv"]["kernel"]
    assert mask["patch_embed"]["proj"]["kernel"] and mask["head"]["kernel"]
    assert not mask["blocks"][0]["mixer"]["qkv"]["bias"]
    assert not mask["blocks"][0]["norm1"]["scale"]
    assert not mask["posemb"]["table"] and not mask["cls_token"]


def test_deit_sizes_and_analytic_flops_match_reference_formula():
    assert sizes.SIZES["B"] == sizes.Shape(768, 12, 12, 3072)
    m = model_config(patch_size=16)
    with m.ignore_type():
        m.size = "B"
    n, d, depth = 14 * 14 + 1, 768, 12
    expected = depth * (24 * n * d**2 + 4 * n**2 * d) + 2 * 224**2 * 3 * d + 2 * d * 1000
    assert flops.forward_flops_per_image(m, 224, 3, 1000) == pytest.approx(expected)


def test_init_statistics_match_the_reference_implementations():
    """timm's trunc_normal_(std=.02) has std 0.0200 (not JAX's 0.0176); LeCun normal has std 1/√fan_in.

    timm's `lecun_normal_` samples N(0, 1) cut at ±2, scaled by 1.14/√fan_in, so that the cut
    distribution's std is exactly 1/√fan_in; PyTorch's conv default U(±1/√fan_in) has 1/√(3·fan_in).
    """
    from patchscale.models import initializers

    key = jax.random.key(0)
    draws = np.asarray(initializers.trunc_normal_02(key, (400, 1000)))
    assert abs(draws.std() / 0.02 - 1) < 0.01 and abs(draws).max() < 2.0

    fan_in = 48  # A 4×4 patch of three channels.
    lecun = np.asarray(initializers.patch_embed_init("lecun_normal", fan_in)(key, (fan_in, 8000)))
    torch = np.asarray(initializers.patch_embed_init("torch", fan_in)(key, (fan_in, 8000)))
    np.testing.assert_allclose(lecun.std() * np.sqrt(fan_in), 1.0, rtol=0.01)
    assert abs(lecun).max() <= 2.0 * 1.14 / np.sqrt(fan_in)  # Cut at ±2 of the pre-cut scale.
    np.testing.assert_allclose(torch.std() * np.sqrt(3 * fan_in), 1.0, rtol=0.01)

    for init, expected_std in (("torch", 1 / np.sqrt(3 * 16)), ("lecun_normal", 1 / np.sqrt(16))):
        m = model_config(patch_size=4, width=256, patch_embed_init=init)
        model = VisionBackbone(m, image_size=32, channels=1, num_classes=10, rngs=nnx.Rngs(0))
        np.testing.assert_allclose(np.asarray(model.patch_embed.proj.kernel[...]).std(), expected_std, rtol=0.05)
    qkv = np.asarray(model.blocks[0].mixer.qkv.kernel[...])
    np.testing.assert_allclose(qkv.std(), 0.02, rtol=0.05)


@pytest.mark.parametrize("residual,expected", [("float32", jnp.float32), ("compute", jnp.bfloat16)])
def test_residual_stream_stays_float32_under_bfloat16_compute(residual, expected, monkeypatch):
    from patchscale.models import backbone

    seen = []
    original = backbone.Block.__call__

    def recording(self, x, key=None):
        seen.append(x.dtype)
        out = original(self, x, key)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(backbone.Block, "__call__", recording)
    m = model_config(patch_size=8, dtype="bfloat16", residual_dtype=residual)
    model = VisionBackbone(m, image_size=32, channels=1, num_classes=10, rngs=nnx.Rngs(0))
    model(jnp.zeros((2, 32, 32, 1), jnp.uint8))
    assert seen and all(dtype == expected for dtype in seen)


def test_grad_clip_norm_zero_turns_clipping_off_instead_of_zeroing_updates():
    """With clipping off the updates are AdamW's; with it on they differ (a large, then a small gradient)."""
    import optax

    c = config_lib.load_module(str(DEFAULT_EXPERIMENT)).get_config()
    params = {"w": jnp.ones((4, 4)), "b": jnp.zeros((4,))}
    steps = [{"w": jnp.full((4, 4), 50.0), "b": jnp.arange(4.0)}, {"w": jnp.full((4, 4), 0.01), "b": jnp.ones(4)}]

    def second_update(tx):
        state = tx.init(params)
        for grads in steps:
            updates, state = tx.update(grads, state, params)
        return updates

    expected = second_update(optax.adamw(1.0, b1=c.train.b1, b2=c.train.b2, weight_decay=c.train.weight_decay,
                                         mask=optimizer.decay_mask))
    for clip, same in ((0.0, True), (1.0, False)):
        c.train.grad_clip_norm = clip
        updates = second_update(optimizer.make(c.train))
        assert float(jnp.abs(updates["w"]).max()) > 0.1  # Never zeroed.
        assert all(np.allclose(updates[k], expected[k], rtol=1e-5) for k in params) == same


@pytest.mark.heavy  # Three model builds and traces (~20 s); run with -m heavy.
def test_remat_policies_keep_less_and_change_no_number():
    """full keeps the least for the backward pass, dots more, none everything; losses and gradients agree."""
    import contextlib
    import io

    from jax.ad_checkpoint import print_saved_residuals

    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 32, 32, 1)), jnp.uint8)
    results, saved = {}, {}
    for remat in ("none", "full", "dots"):
        c = base_config()
        c.model.size, c.model.patch_size, c.model.remat, c.model.drop_path = "pico", 8, remat, 0.1
        model = VisionBackbone(c.model, image_size=32, channels=1, num_classes=10, rngs=nnx.Rngs(0))
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        loss = lambda p: jnp.sum(nnx.merge(graphdef, p, rest)(images, jax.random.key(0)) ** 2)  # noqa: E731
        results[remat] = jax.jit(jax.value_and_grad(loss))(params)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            print_saved_residuals(loss, params)
        saved[remat] = printed.getvalue()
    assert len(saved["none"].splitlines()) > len(saved["dots"].splitlines()) > len(saved["full"].splitlines())
    for remat in ("full", "dots"):
        np.testing.assert_allclose(results[remat][0], results["none"][0], rtol=1e-6)
        for a, b in zip(jax.tree.leaves(results[remat][1]), jax.tree.leaves(results["none"][1])):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_exact_gelu_is_jax_gelu_in_value_and_gradient():
    """The erf form (PyTorch's, faster on CPU) is the same function as jax.nn.gelu(approximate=False).

    Below x ≈ -5 the erf form cancels (1 + erf → tiny), like PyTorch's: absolute error < 1e-6.
    """
    from patchscale.models.channel import exact_gelu

    x = jnp.linspace(-8.0, 8.0, 4001)
    np.testing.assert_allclose(exact_gelu(x), jax.nn.gelu(x, approximate=False), rtol=1e-6, atol=1e-6)
    grad = jax.vmap(jax.grad(exact_gelu))(x)
    np.testing.assert_allclose(grad, jax.vmap(jax.grad(lambda t: jax.nn.gelu(t, approximate=False)))(x), atol=1e-6)
    assert not np.allclose(exact_gelu(x), jax.nn.gelu(x, approximate=True), atol=1e-5)  # The tanh form differs.
