"""The chunked SSD kernel against the sequential recurrence: values and gradients, float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from patchscale.ops.ssd import ssd_chunked, ssd_sequential


def inputs(batch=2, length=40, heads=4, headdim=8, groups=1, state=16, seed=0, dtype=jnp.float32):
    r = np.random.default_rng(seed)
    x = jnp.asarray(r.normal(size=(batch, length, heads, headdim)), dtype)
    dt = jax.nn.softplus(jnp.asarray(r.normal(size=(batch, length, heads)) - 2.0, jnp.float32))
    A = -jnp.asarray(r.uniform(1, 16, heads), jnp.float32)
    B = jnp.asarray(r.normal(size=(batch, length, groups, state)), dtype)
    C = jnp.asarray(r.normal(size=(batch, length, groups, state)), dtype)
    return x, dt, A, B, C


def rel_err(a, b):
    return float(jnp.linalg.norm((a - b).ravel()) / jnp.linalg.norm(b.ravel()))


@pytest.mark.parametrize("length, chunk, groups", [(64, 16, 1), (50, 16, 1), (7, 16, 1), (45, 8, 2), (33, 32, 4)])
def test_chunked_matches_sequential(length, chunk, groups):
    args = inputs(length=length, groups=groups)
    expected = jax.jit(ssd_sequential)(*args)  # Compiled: eager dispatch of every op is the slow part.
    actual = jax.jit(lambda *a: ssd_chunked(*a, chunk_size=chunk))(*args)
    assert actual.shape == args[0].shape and actual.dtype == jnp.float32
    assert rel_err(actual, expected) < 1e-5


@pytest.mark.parametrize("length, chunk, multiple", [(64, 16, 1), (50, 8, 4), (7, 16, 2)])
def test_matmul_state_passing_matches_sequential(length, chunk, multiple):
    # The sequence-parallel form: chunk states combined by a chunk×chunk decay matrix, the chunk
    # count padded to a multiple of the devices on the sequence axis.
    args = inputs(length=length, groups=2, seed=3)
    actual = jax.jit(lambda *a: ssd_chunked(*a, chunk_size=chunk, state_passing="matmul",
                                            chunk_multiple=multiple))(*args)
    assert rel_err(actual, jax.jit(ssd_sequential)(*args)) < 1e-5


@pytest.mark.parametrize("length, chunk, groups, passing", [
    pytest.param(48, 16, 1, "scan", marks=pytest.mark.heavy), (37, 8, 2, "scan"), (37, 8, 2, "matmul")])
def test_gradients_match_sequential(length, chunk, groups, passing):
    args = inputs(length=length, groups=groups, seed=1)
    weights = jnp.asarray(np.random.default_rng(2).normal(size=args[0].shape), jnp.float32)
    loss = lambda fn: (lambda *a: jnp.sum(fn(*a) * weights))
    expected = jax.jit(jax.grad(loss(ssd_sequential), argnums=(0, 1, 2, 3, 4)))(*args)
    actual = jax.jit(jax.grad(loss(lambda *a: ssd_chunked(*a, chunk_size=chunk, state_passing=passing)),
                              argnums=(0, 1, 2, 3, 4)))(*args)
    for name, g_actual, g_expected in zip("x dt A B C".split(), actual, expected):
        assert bool(jnp.all(jnp.isfinite(g_actual))), name
        assert rel_err(g_actual, g_expected) < 1e-5, name


def test_outputs_are_causal():
    x, dt, A, B, C = inputs(length=32)
    y = ssd_chunked(x, dt, A, B, C, chunk_size=8)
    x2 = x.at[:, 20:].set(100.0)
    y2 = ssd_chunked(x2, dt, A, B, C, chunk_size=8)
    np.testing.assert_array_equal(y[:, :20], y2[:, :20])
    assert not np.allclose(y[:, 20:], y2[:, 20:])


def test_bfloat16_inputs_keep_float32_state_and_close_values():
    args32 = inputs(length=64, groups=2)
    args16 = tuple(a.astype(jnp.bfloat16) if i in (0, 3, 4) else a for i, a in enumerate(args32))
    y16 = ssd_chunked(*args16, chunk_size=16)
    assert y16.dtype == jnp.bfloat16
    assert rel_err(y16.astype(jnp.float32), ssd_sequential(*args32)) < 3e-2


def test_shape_errors_are_clear():
    x, dt, A, B, C = inputs(heads=4, groups=1)
    with pytest.raises(ValueError, match="heads divisible by groups"):
        ssd_chunked(x, dt, A, jnp.concatenate([B] * 3, 2), jnp.concatenate([C] * 3, 2), chunk_size=8)


@pytest.mark.parametrize("passing", ["scan", "matmul"])
def test_segments_with_carried_state_equal_the_whole_sequence(passing):
    """Splitting the sequence and passing the final state on gives the whole sequence's outputs
    and final state, whichever form passes states between chunks."""
    x, dt, A, B, C = inputs(length=40, groups=2)

    @jax.jit
    def by_pieces(x, dt, A, B, C):
        state = jnp.zeros((2, 4, 8, 16), jnp.float32)
        pieces = []
        for start, stop in ((0, 16), (16, 29), (29, 40)):  # Uneven pieces: the padded tail chunk is inert.
            y, state = ssd_chunked(x[:, start:stop], dt[:, start:stop], A, B[:, start:stop], C[:, start:stop],
                                   chunk_size=8, state_passing=passing, initial_state=state)
            pieces.append(y)
        return jnp.concatenate(pieces, axis=1), state

    pieces, state = by_pieces(x, dt, A, B, C)
    assert rel_err(pieces, jax.jit(lambda *a: ssd_chunked(*a, chunk_size=8))(x, dt, A, B, C)) < 1e-5
    # The final state equals the whole sequence's (scan form, from a zero initial state).
    whole, whole_state = jax.jit(lambda *a: ssd_chunked(*a, chunk_size=8, initial_state=jnp.zeros_like(state)))(
        x, dt, A, B, C)
    assert rel_err(state, whole_state) < 1e-5 and float(jnp.abs(state).max()) > 0


def test_the_accelerator_state_passing_gives_the_cpu_layer_outputs(monkeypatch):
    """On GPUs and TPUs the Mamba-2 layer passes chunk states by matmul (also across token segments);
    its outputs and gradients equal the scan form's, whole and streamed."""
    from flax import nnx

    from patchscale.models import sizes
    from patchscale.models.mixers import mamba2
    from tests.test_mixers import model_config

    u = jax.random.normal(jax.random.key(3), (2, 37, 64))

    def value_and_grad(segment):
        m = model_config("mamba2")
        m.token_segment = segment
        layer = mamba2.Mamba2(sizes.resolve(m), m, layer=1, dtype=jnp.float32, rngs=nnx.Rngs(0))
        graphdef, params = nnx.split(layer)
        loss = lambda p: (nnx.merge(graphdef, p)(u) ** 2).mean()  # noqa: E731
        return jax.jit(jax.value_and_grad(loss))(params)

    assert mamba2.state_passing(37, 8, 1) == "scan"  # This CPU.
    reference = value_and_grad(0)
    monkeypatch.setattr(mamba2.jax, "default_backend", lambda: "gpu")
    assert mamba2.state_passing(37, 8, 1) == "matmul"
    assert mamba2.state_passing(8 * (mamba2.MATMUL_MAX_CHUNKS + 1), 8, 1) == "scan"
    assert mamba2.chunk_size(0, 16, 32, 1000) == mamba2.ACCELERATOR_CHUNK
    for segment in (0, 16):
        loss, grads = value_and_grad(segment)
        np.testing.assert_allclose(loss, reference[0], rtol=1e-5)
        for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(reference[1])):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
