"""Conformance suite: every registered token mixer must pass these (new mixers get them for free)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from patchscale import config as config_lib
from patchscale import train
from patchscale.defaults import base_config
from patchscale.models import sizes
from patchscale.models.mixers import registry
from tests.conftest import DEFAULT_EXPERIMENT, small_overrides

MIXERS = registry.names()
# The longest checks run on the Mamba-2 mixer only on request (`-m heavy`); test_adventurer covers it too.
MIXERS_LIGHT = [pytest.param(m, marks=pytest.mark.heavy) if m == "mamba2" else m for m in MIXERS]
LENGTH, WIDTH = 37, 64


def model_config(mixer, **mamba2):
    c = base_config()
    overrides = ["model.size=pico", "model.width=64", "model.heads=4", f"model.mixer={mixer}",
                 "model.mamba2.d_state=16", "model.mamba2.headdim=32", "model.mamba2.chunk_size=8"]
    config_lib.apply_overrides(c, overrides + [f"model.mamba2.{k}={v}" for k, v in mamba2.items()])
    return c.model


def make_mixer(mixer, layer=0, dtype=jnp.float32, **mamba2):
    m = model_config(mixer, **mamba2)
    return registry.get(mixer)(sizes.resolve(m), m, layer=layer, dtype=dtype, rngs=nnx.Rngs(0))


def tokens(batch=3, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(batch, LENGTH, WIDTH)), jnp.float32)


def test_the_builtin_mixers_are_registered():
    assert {"attention", "mamba2", "linear_attention"} <= set(MIXERS)


@pytest.mark.parametrize("mixer", MIXERS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_output_shape_and_dtype(mixer, dtype):
    y = make_mixer(mixer, dtype=dtype)(tokens().astype(dtype))
    assert y.shape == (3, LENGTH, WIDTH) and y.dtype == dtype
    assert bool(jnp.all(jnp.isfinite(y.astype(jnp.float32))))


@pytest.mark.parametrize("mixer", MIXERS_LIGHT)
def test_gradients_are_finite_and_reach_every_parameter(mixer):
    module = make_mixer(mixer)
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    loss = lambda p, x: jnp.sum(nnx.merge(graphdef, p, rest)(x) ** 2)
    grads_params, grads_x = jax.grad(loss, argnums=(0, 1))(params, tokens())
    leaves = jax.tree.leaves(grads_params)
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert all(float(jnp.abs(g).max()) > 0 for g in leaves), "a parameter gets no gradient"
    assert bool(jnp.all(jnp.isfinite(grads_x)))


@pytest.mark.parametrize("mixer", MIXERS)
def test_deterministic_and_jit_consistent(mixer):
    module = make_mixer(mixer)
    x = tokens()
    eager = module(x)
    np.testing.assert_array_equal(eager, module(x))
    jitted = nnx.jit(lambda m, v: m(v))(module, x)
    np.testing.assert_allclose(jitted, eager, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("mixer", MIXERS)
def test_examples_in_a_batch_are_independent(mixer):
    module = make_mixer(mixer)
    x = tokens()
    y = module(x)
    y2 = module(x.at[1].set(5.0 * x[1] + 1.0))
    np.testing.assert_allclose(y2[0], y[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y2[2], y[2], rtol=1e-6, atol=1e-6)
    assert not np.allclose(y2[1], y[1])


CAUSAL_VARIANTS = [(m, {}, 0) for m in MIXERS] + [
    ("mamba2", {"heading_average": False, "flip": "none"}, 0),
    ("mamba2", {"heading_average": False}, 1),  # Flipped block: causal from the end.
]


@pytest.mark.parametrize("mixer, options, layer", CAUSAL_VARIANTS)
def test_no_information_flows_against_the_claimed_causal_direction(mixer, options, layer):
    module = make_mixer(mixer, layer=layer, **options)
    if module.causal is None:
        pytest.skip(f"{mixer} {options} does not claim to be causal")
    # With pool=cls and cls_position=first the first token stays put; test the patch tokens.
    x = tokens()
    t = LENGTH // 2
    if module.causal == "forward":
        changed, protected = x.at[:, t:].add(3.0), slice(0, t)
    else:
        changed, protected = x.at[:, 1:t].add(3.0), slice(t, LENGTH)
    y, y2 = module(x), module(changed)
    np.testing.assert_allclose(y2[:, protected], y[:, protected], rtol=1e-6, atol=1e-6)
    assert not np.allclose(y2, y)


@pytest.mark.parametrize("mixer", MIXERS_LIGHT)
def test_trains_inside_the_jitted_sharded_train_step(mixer, mnist_dir, tmp_path):
    overrides = small_overrides(mnist_dir, **{"model.mixer": mixer, "model.width": 64, "model.heads": 2,
                                              "model.mamba2.d_state": 16, "model.patch_size": 8})
    c = config_lib.load_config(str(DEFAULT_EXPERIMENT), overrides)
    trainer = train.Trainer(c, tmp_path)
    state = trainer.program.init_state()
    steps = trainer.program.compile(state)
    rng = np.random.default_rng(0)
    batch = {"image": rng.integers(0, 256, (64, 32, 32, 1)).astype(np.uint8),
             "label": rng.integers(0, 10, 64).astype(np.int32)}
    losses = []
    for _ in range(5):  # Overfit one batch: the loss must go down.
        state, metrics = steps.train(state, trainer.program.frozen, train.partitioning.global_batch(batch, trainer.mesh))
        losses.append(float(metrics["loss"]))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert int(state["step"]) == 5


def test_the_documented_example_mixer_works(monkeypatch):
    import re
    import types

    from tests.conftest import REPO

    readme = (REPO / "docs" / "mixers.md").read_text()
    code = re.search(r"```python\n# patchscale/models/mixers/mean_pool.py\n(.*?)```", readme, re.S).group(1)
    monkeypatch.setattr(registry, "_MIXERS", dict(registry._MIXERS))  # Keep the global registry clean.
    exec(compile(code, "docs/mixers.md", "exec"), types.ModuleType("mean_pool").__dict__)
    module = make_mixer("mean_pool")
    y = module(tokens())
    assert y.shape == (3, LENGTH, WIDTH) and bool(jnp.all(jnp.isfinite(y)))
    m = model_config("mean_pool")
    assert registry.get("mean_pool").flops_per_image(sizes.resolve(m), LENGTH, m) > 0
