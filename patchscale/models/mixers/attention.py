"""Multi-head self-attention (DeiT): fused qkv projection with bias, float32 softmax.

Attention goes through `jax.nn.dot_product_attention`, so accelerators can pick cuDNN or
flash kernels (`model.attention_impl`); XLA's own path computes logits and softmax in float32.
The fused projection's outputs are laid out head by head (q, k, v of head 0, then head 1, …),
so splitting them over the `tensor` mesh axis gives each device whole heads.

`model.attention_impl=chunked` is the long-sequence path for CPU and TPU: queries are taken
`model.attention_chunk` at a time and each block is rematerialised in the backward pass, so
memory grows as chunk × N instead of N² (at 224² and p = 1, N = 50,177). The block is
shrunk further when needed so that no logits tensor reaches 2³¹ elements, past which XLA's
int32 indexing fails (one head at N = 50,176 has 2.5·10⁹ logits).

`model.attention_impl=einsum` is dense attention written as two head-batched einsums with a
float32 softmax; on XLA:CPU it is faster than `jax.nn.dot_product_attention`'s layout at the
suite's short sequences (benchmarks/vs_pytorch.py).

`auto` (the default, also when unset) uses dense attention while the logits are small (the
einsum path on CPU, JAX's own choice elsewhere) and switches to a memory-safe path when they
are not (`choose_implementation`): cuDNN's fused flash kernel on GPUs for bfloat16/float16
inputs, the chunked path otherwise (CPU, TPU, float32).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from patchscale.models.initializers import trunc_normal_02
from patchscale.models.mixers.registry import register
from patchscale.partitioning import constrain
from patchscale.models.sizes import Shape


IMPLEMENTATIONS = (None, "auto", "xla", "einsum", "cudnn", "chunked")
INDEX_LIMIT = 2**31 - 1  # Elements of one array that XLA's int32 indexing can address.
DENSE_LOGITS_LIMIT = 2**28  # auto: above this many logits (1 GiB in float32) use a memory-safe path.


def dense_logits(batch: int, heads: int, tokens: int) -> int:
    """Elements of the (B, H, N, N) logits tensor that dense attention builds."""
    return batch * heads * tokens * tokens


def choose_implementation(batch: int, heads: int, tokens: int, dtype, backend: str) -> str | None:
    """`auto`: dense for small logits (einsum on CPU, else JAX's choice); else cuDNN flash on GPU in 16 bits, or chunked."""
    if dense_logits(batch, heads, tokens) <= DENSE_LOGITS_LIMIT:
        return "einsum" if backend == "cpu" else None
    if backend in ("gpu", "cuda") and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16):
        return "cudnn"
    return "chunked"


def safe_chunk(batch: int, heads: int, tokens: int, chunk: int) -> int:
    """The query block size, shrunk so that one block's (B, H, chunk, N) logits stay addressable."""
    return max(1, min(chunk, INDEX_LIMIT // max(1, batch * heads * tokens)))


def einsum_attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """Dense softmax attention (B, N, H, D) as head-batched einsums; logits and softmax in float32."""
    logits = jnp.einsum("bnhd,bmhd->bhnm", q * q.shape[-1] ** -0.5, k, preferred_element_type=jnp.float32)
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum("bhnm,bmhd->bnhd", weights, v)


def chunked_attention(q: jax.Array, k: jax.Array, v: jax.Array, chunk: int) -> jax.Array:
    """Softmax attention for `chunk` queries at a time (B, N, H, D): never an N×N score matrix."""
    b, n, h, d = q.shape
    chunk = safe_chunk(b, h, n, chunk)
    if n <= chunk:
        return jax.nn.dot_product_attention(q, k, v, implementation="xla")
    pad = -n % chunk
    blocks = jnp.pad(q, ((0, 0), (0, pad), (0, 0), (0, 0))).reshape(b, (n + pad) // chunk, chunk, h, d)

    @jax.checkpoint  # The backward pass recomputes one block's probabilities instead of storing all.
    def attend(block):
        return jax.nn.dot_product_attention(block, k, v, implementation="xla")

    out = jax.lax.map(attend, jnp.moveaxis(blocks, 1, 0))
    return jnp.moveaxis(out, 0, 1).reshape(b, n + pad, h, d)[:, :n]


@register("attention")
class Attention(nnx.Module):
    causal = None
    LOGICAL_AXES = {"qkv/kernel": ("embed", "heads"), "qkv/bias": ("heads",),
                    "out/kernel": ("heads", "embed"), "out/bias": ("embed",)}

    def __init__(self, shape: Shape, model_config, *, layer: int, dtype, rngs: nnx.Rngs):
        del layer
        width, self.heads = shape.width, shape.heads
        self.implementation = model_config.attention_impl or "auto"
        self.chunk = model_config.attention_chunk
        dense = dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
                     kernel_init=trunc_normal_02, bias_init=nnx.initializers.zeros)
        self.qkv = nnx.Linear(width, 3 * width, **dense)
        self.out = nnx.Linear(width, width, **dense)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, n, d = x.shape
        qkv = checkpoint_name(self.qkv(x), "mixer_in").reshape(b, n, self.heads, 3, d // self.heads)
        qkv = constrain(qkv, ("act_batch", "act_length", "act_heads", None, None))
        q, k, v = jnp.unstack(qkv, axis=3)  # Its gradient is one stack, not three padded slices summed.
        implementation = self.implementation
        if implementation == "auto":  # Decided at trace time, from the shapes of this call.
            implementation = choose_implementation(b, self.heads, n, q.dtype, jax.default_backend())
        if implementation == "chunked":
            y = chunked_attention(q, k, v, self.chunk)
        elif implementation == "einsum":
            y = einsum_attention(q, k, v)
        else:
            y = jax.nn.dot_product_attention(q, k, v, implementation=implementation)
        y = constrain(y, ("act_batch", "act_length", "act_heads", None))
        return self.out(y.reshape(b, n, d))

    @staticmethod
    def flops_per_image(shape: Shape, tokens: int, model_config) -> float:
        """qkv and output projections (8·N·D²) plus scores and weighted values (4·N²·D)."""
        del model_config
        return 8.0 * tokens * shape.width**2 + 4.0 * tokens**2 * shape.width
