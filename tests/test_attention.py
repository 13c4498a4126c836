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
    (1, 3, 50_177, jnp.float32, "cpu", "chunked"),  # ViT-Ti at 224², p = 1: 7.6e9 logits.
    (256, 12, 1_025, jnp.bfloat16, "cpu", "chunked"),  # Short sequences, but 3.2e9 logits in one batch.
    # GPUs in 16 bits: the padded cuDNN kernel from CUDNN_MIN_TOKENS on (197, 785, 3,137 included).
    (256, 6, 197, jnp.bfloat16, "gpu", "cudnn"),
    (64, 6, 785, jnp.float16, "cuda", "cudnn"),
    (16, 6, 3_137, jnp.bfloat16, "gpu", "cudnn"),
    (1, 3, 50_177, jnp.bfloat16, "gpu", "cudnn"),
    (256, 6, 17, jnp.bfloat16, "gpu", "xla"),  # Short: padding 17 to 128 costs more than it saves.
    (1, 3, 50_177, jnp.float32, "gpu", "chunked"),  # cuDNN's flash attention takes 16-bit inputs only.
    (64, 3, 257, jnp.float32, "gpu", "xla"),
    (64, 3, 257, jnp.bfloat16, "rocm", "xla"),  # No cuDNN there.
    # TPUs: the Pallas flash kernel at every length and dtype.
    (256, 6, 17, jnp.float32, "tpu", "pallas"),
    (1, 3, 50_177, jnp.bfloat16, "tpu", "pallas"),
])
def test_auto_picks_per_backend_and_dtype(batch, heads, tokens, dtype, backend, expected):
    assert attention.choose_implementation(batch, heads, tokens, dtype, backend) == expected


def test_auto_leaves_a_split_token_axis_to_the_partitioned_paths():
    assert attention.choose_implementation(4, 6, 785, jnp.bfloat16, "gpu", sequence_split=True) == "xla"
    assert attention.choose_implementation(1, 3, 50_177, jnp.bfloat16, "gpu", sequence_split=True) == "chunked"
    assert attention.choose_implementation(4, 6, 785, jnp.bfloat16, "tpu", sequence_split=True) == "xla"


@pytest.mark.parametrize("head_dim", [4, 100, 256])
def test_auto_never_picks_cudnn_for_a_head_dim_it_refuses(head_dim):
    assert attention.choose_implementation(1, 6, 3_137, jnp.bfloat16, "gpu", head_dim) == "xla"
    assert attention.choose_implementation(1, 6, 50_177, jnp.bfloat16, "gpu", head_dim) == "chunked"


@pytest.mark.parametrize("backend", ["cpu", "gpu", "cuda", "rocm", "tpu", "METAL"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_auto_always_names_an_implementation_that_exists(backend, dtype):
    for tokens in (2, 17, 127, 128, 197, 785, 3_137, 12_545, 50_177):
        chosen = attention.choose_implementation(4, 6, tokens, dtype, backend)
        assert chosen in attention.IMPLEMENTATIONS and chosen not in (None, "auto")
        if chosen == "cudnn":
            assert backend in attention.GPU_BACKENDS and jnp.dtype(dtype).itemsize == 2
        if chosen == "pallas":
            assert backend == "tpu"
        if chosen in ("xla", "einsum"):
            assert attention.dense_logits(4, 6, tokens) <= attention.DENSE_LOGITS_LIMIT


def _qkv(batch, tokens, heads=2, head_dim=8, seed=0):
    keys = jax.random.split(jax.random.key(seed), 4)
    q, k, v = (jax.random.normal(key, (batch, tokens, heads, head_dim)) for key in keys[:3])
    return q, k, v, jax.random.normal(keys[3], (batch, tokens, heads, head_dim))


def _out_and_grads(fn, q, k, v, cotangent):
    out = fn(q, k, v)
    grads = jax.grad(lambda q, k, v: (fn(q, k, v) * cotangent).sum(), argnums=(0, 1, 2))(q, k, v)
    return (out, *grads)


@pytest.mark.parametrize("tokens, batch", [(17, 3), (197, 2), (785, 1), (3_137, 1)])
def test_padded_masked_attention_equals_unpadded_dense_attention(tokens, batch):
    """The cuDNN path's padding and length masking, run through XLA's kernel (no GPU here): outputs
    and gradients equal dense attention on the unpadded sequence, and no padding leaks in."""
    q, k, v, cotangent = _qkv(batch, tokens)
    dense = jax.jit(lambda q, k, v: jax.nn.dot_product_attention(q, k, v, implementation="xla"))
    padded = jax.jit(lambda q, k, v: attention.padded_attention(q, k, v, "xla"))
    assert tokens % attention.CUDNN_MULTIPLE  # Every case is really padded.
    for got, want in zip(_out_and_grads(padded, q, k, v, cotangent), _out_and_grads(dense, q, k, v, cotangent)):
        assert got.shape == want.shape and bool(jnp.isfinite(got).all())
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


def test_the_tpu_flash_kernel_in_interpret_mode_equals_dense_attention():
    """The Pallas TPU kernel, padded to its block with the padding in its own segment, run by
    Pallas's TPU interpreter on this CPU."""
    from jax.experimental.pallas import tpu as pltpu

    q, k, v, cotangent = _qkv(1, 150, heads=2, head_dim=128, seed=1)  # 150 → 256: two blocks, one padded.
    dense = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, implementation="xla")  # noqa: E731
    with pltpu.force_tpu_interpret_mode():
        got = _out_and_grads(attention.pallas_attention, q, k, v, cotangent)
    for a, b in zip(got, _out_and_grads(dense, q, k, v, cotangent)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


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
