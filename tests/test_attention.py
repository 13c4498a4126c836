"""Attention that is safe at any length: the `auto` switch, the int32 guard, and every path agreeing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from patchscale import config as config_lib
from patchscale.defaults import base_config
from patchscale.errors import UserError
from patchscale.models import sizes
from patchscale.models.mixers import attention
from tests.conftest import DEFAULT_EXPERIMENT


@pytest.mark.parametrize("batch, heads, tokens, dtype, backend, expected", [
    (64, 3, 257, jnp.float32, "cpu", "einsum"),  # 12.7M logits: dense is fine; head-batched einsums on CPU.
    (64, 3, 257, jnp.bfloat16, "gpu", None),  # Dense elsewhere: JAX chooses.
    (1, 3, 50_177, jnp.float32, "cpu", "chunked"),  # ViT-Ti at 224², p = 1: 7.6e9 logits.
    (1, 3, 50_177, jnp.bfloat16, "gpu", "cudnn"),  # The fused flash kernel.
    (1, 3, 50_177, jnp.float32, "gpu", "chunked"),  # cuDNN's flash attention takes 16-bit inputs only.
    (1, 3, 50_177, jnp.bfloat16, "tpu", "chunked"),
    (256, 12, 1_025, jnp.bfloat16, "cpu", "chunked"),  # Short sequences, but 3.2e9 logits in one batch.
])
def test_auto_switches_to_a_memory_safe_path_when_logits_are_large(batch, heads, tokens, dtype, backend, expected):
    assert attention.choose_implementation(batch, heads, tokens, dtype, backend) == expected


def test_chunks_shrink_so_no_logits_block_passes_the_int32_range():
    assert attention.safe_chunk(1, 3, 50_177, 1024) == 1024
    chunk = attention.safe_chunk(64, 12, 50_177, 1024)
    assert chunk == (2**31 - 1) // (64 * 12 * 50_177) == 55
    assert 64 * 12 * chunk * 50_177 <= 2**31 - 1 < 64 * 12 * (chunk + 1) * 50_177
    assert attention.safe_chunk(10**6, 16, 10**6, 1024) == 1  # Never zero.


def _mixer(implementation, chunk=8):
    c = base_config()
    c.model.size, c.model.attention_impl, c.model.attention_chunk = "pico", implementation, chunk
    return attention.Attention(sizes.resolve(c.model), c.model, layer=0, dtype=jnp.float32, rngs=nnx.Rngs(0))


def test_every_path_gives_the_same_outputs_and_gradients(monkeypatch):
    x = jax.random.normal(jax.random.key(1), (2, 37, 32))

    def value_and_grad(implementation):
        graphdef, params = nnx.split(_mixer(implementation))
        loss = lambda p: (nnx.merge(graphdef, p)(x) ** 2).sum()  # noqa: E731
        return jax.jit(jax.value_and_grad(loss))(params)

    reference = value_and_grad("xla")
    paths = [None, "auto", "einsum", "chunked"] + (["cudnn"] if jax.default_backend() == "gpu" else [])
    monkeypatch.setattr(attention, "DENSE_LOGITS_LIMIT", 0)  # auto now takes its memory-safe path.
    paths.append("auto")
    for implementation in paths:
        loss, grads = value_and_grad(implementation)
        np.testing.assert_allclose(loss, reference[0], rtol=1e-5)
        for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(reference[1])):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_auto_at_a_long_sequence_builds_no_n_by_n_tensor(monkeypatch):
    """Above the limit the compiled forward and backward hold no (…, N, N) array; below it they do."""
    n = 640
    x = jax.ShapeDtypeStruct((1, n, 32), jnp.float32)

    def hlo(implementation):
        graphdef, params = nnx.split(_mixer(implementation, chunk=64))
        loss = lambda p, x: (nnx.merge(graphdef, p)(x) ** 2).sum()  # noqa: E731
        return jax.jit(jax.grad(loss)).lower(params, x).as_text()

    square = f"{n}x{n}x"
    assert square in hlo("auto").replace(",", "x")  # Small: dense logits (JAX's choice on CPU).
    monkeypatch.setattr(attention, "DENSE_LOGITS_LIMIT", n * n - 1)
    assert square not in hlo("auto").replace(",", "x")


@pytest.mark.parametrize("dense", ["xla", "einsum"])
def test_forcing_dense_attention_past_the_int32_range_is_refused(dense):
    overrides = ["model.size=Ti", "model.patch_size=1", "data.image_size=224", f"model.attention_impl={dense}"]
    with pytest.raises(UserError, match=f"attention_impl={dense}: one head's 50177×50177 logits exceed XLA's"
                                        " int32 indexing; use auto or chunked"):
        config_lib.load_config(str(DEFAULT_EXPERIMENT), overrides)
    config_lib.load_config(str(DEFAULT_EXPERIMENT), overrides[:-1] + ["model.attention_impl=auto"])
