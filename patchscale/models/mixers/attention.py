"""Multi-head self-attention (DeiT): fused qkv projection with bias, float32 softmax.

The fused projection's outputs are laid out head by head (q, k, v of head 0, then head 1, …),
so splitting them over the `tensor` mesh axis gives each device whole heads.

Implementations (`model.attention_impl`):

* `cudnn`: cuDNN's fused flash attention (GPU, 16-bit). cuDNN refuses many sequence lengths
  (every length with a class token: 197, 785, 3,137), so q, k and v are padded to a multiple
  of CUDNN_MULTIPLE tokens and the padding is masked by passing the true lengths
  (`query_seq_lengths`/`key_value_seq_lengths`); the padded rows are cut off again.
* `pallas`: JAX's Pallas flash-attention kernel for TPUs, padded to its block size the same
  way, the padding masked by segment ids (padding tokens see only padding).
* `xla`: JAX's dense `dot_product_attention` (logits and softmax in float32).
* `einsum`: dense attention as two head-batched einsums with a float32 softmax; on XLA:CPU
  faster than `xla`'s layout at the suite's short sequences (benchmarks/vs_pytorch.py).
* `chunked`: the long-sequence path for CPU (and float32 elsewhere): queries are taken
  `model.attention_chunk` at a time and each block is rematerialised in the backward pass, so
  memory grows as chunk × N instead of N² (at 224² and p = 1, N = 50,177). The block is shrunk
  further when needed so that no logits tensor reaches 2³¹ elements, past which XLA's int32
  indexing fails (one head at N = 50,176 has 2.5·10⁹ logits).

`auto` (the default, also when unset) picks per call from the backend, dtype and shape
(`choose_implementation`) and never a path that refuses the shape: `pallas` on TPUs; `cudnn` on
GPUs in 16 bits (head dimension ≤ 128, divisible by 8) from CUDNN_MIN_TOKENS tokens, below which
dense XLA attention was measured faster; otherwise dense attention (`einsum` on CPU, `xla`
elsewhere) while a batch's logits stay under DENSE_LOGITS_LIMIT elements, and above it `cudnn`
where it applies, else `chunked`. With the tokens split over `mesh.sequence` the fused kernels,
which need the whole sequence on each device, are not chosen.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from patchscale.models.initializers import trunc_normal_02
from patchscale.models.mixers.registry import register
from patchscale.partitioning import constrain, split_count
from patchscale.models.sizes import Shape


IMPLEMENTATIONS = (None, "auto", "xla", "einsum", "cudnn", "pallas", "chunked")
INDEX_LIMIT = 2**31 - 1  # Elements of one array that XLA's int32 indexing can address.
DENSE_LOGITS_LIMIT = 2**28  # auto: above this many logits (1 GiB in float32) use a memory-safe path.
CUDNN_MULTIPLE = 128  # cuDNN's flash attention takes these lengths (and refuses 197, 785, 3,137).
# auto on GPUs: below this many tokens dense XLA attention is used instead of the padded fused
# kernel (padding 17 tokens to 128 costs more than it saves): on an H200 cuDNN was 3.7× slower at
# 17 tokens, even at 65 and faster from 129 on (`attention` in results/bench/accelerator_h200_profile.json).
CUDNN_MIN_TOKENS = 128
PALLAS_BLOCK = 128  # The TPU flash kernel's default blocks (BlockSizes.get_default); lengths are padded to it.
GPU_BACKENDS = ("gpu", "cuda")


def dense_logits(batch: int, heads: int, tokens: int) -> int:
    """Elements of the (B, H, N, N) logits tensor that dense attention builds."""
    return batch * heads * tokens * tokens


def cudnn_accepts(dtype, head_dim: int) -> bool:
    """Whether cuDNN's flash attention takes these inputs once the length is padded (16-bit, head dim ≤ 128, ÷ 8)."""
    return jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16) and head_dim <= 128 and head_dim % 8 == 0


def choose_implementation(batch: int, heads: int, tokens: int, dtype, backend: str, head_dim: int = 64,
                          sequence_split: bool = False) -> str:
    """`auto`: the fused kernel where one exists (cuDNN on GPUs in 16 bits, Pallas flash on TPUs);
    else dense (einsum on CPU) while the logits are small, chunked when they are not.

    With the token axis split over devices (`mesh.sequence`) the kernels, which would need the
    whole sequence on each device, are not chosen: XLA partitions the dense and chunked paths.
    """
    if backend == "tpu" and not sequence_split:
        return "pallas"
    fused = backend in GPU_BACKENDS and cudnn_accepts(dtype, head_dim) and not sequence_split
    if fused and tokens >= CUDNN_MIN_TOKENS:
        return "cudnn"
    if dense_logits(batch, heads, tokens) <= DENSE_LOGITS_LIMIT:
        return "einsum" if backend == "cpu" else "xla"
    return "cudnn" if fused else "chunked"


def _pad_tokens(a: jax.Array, multiple: int) -> jax.Array:
    return jnp.pad(a, ((0, 0), (0, -a.shape[1] % multiple), (0, 0), (0, 0)))


def padded_attention(q: jax.Array, k: jax.Array, v: jax.Array, implementation: str = "cudnn",
                     multiple: int = CUDNN_MULTIPLE) -> jax.Array:
    """Attention (B, N, H, D) with the tokens padded to a multiple of `multiple` and the padding
    masked by the true lengths: a fused kernel that refuses N takes N + padding instead."""
    b, n = q.shape[:2]
    if n % multiple == 0:
        return jax.nn.dot_product_attention(q, k, v, implementation=implementation)
    lengths = jnp.full((b,), n, jnp.int32)
    y = jax.nn.dot_product_attention(_pad_tokens(q, multiple), _pad_tokens(k, multiple), _pad_tokens(v, multiple),
                                     query_seq_lengths=lengths, key_value_seq_lengths=lengths,
                                     implementation=implementation)
    return y[:, :n]


def pallas_attention(q: jax.Array, k: jax.Array, v: jax.Array, block: int = PALLAS_BLOCK) -> jax.Array:
    """JAX's Pallas flash attention for TPUs on (B, N, H, D), padded to `block`; padding tokens
    form their own segment, so real tokens never attend to them."""
    from jax.experimental.pallas.ops.tpu import flash_attention as flash

    b, n, _, d = q.shape
    total = n + (-n % block)
    heads_first = lambda a: jnp.swapaxes(_pad_tokens(a, block), 1, 2)  # noqa: E731 (B, H, N, D), the kernel's layout.
    segment = jnp.broadcast_to((jnp.arange(total) >= n).astype(jnp.int32), (b, total))
    y = flash.flash_attention(heads_first(q), heads_first(k), heads_first(v),
                              segment_ids=flash.SegmentIds(q=segment, kv=segment), sm_scale=d**-0.5)
    return jnp.swapaxes(y, 1, 2)[:, :n]


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


def attend(q: jax.Array, k: jax.Array, v: jax.Array, implementation: str, chunk: int) -> jax.Array:
    """Softmax attention (B, N, H, D) by the named implementation (not `auto`)."""
    if implementation == "chunked":
        return chunked_attention(q, k, v, chunk)
    if implementation == "einsum":
        return einsum_attention(q, k, v)
    if implementation == "cudnn":
        return padded_attention(q, k, v, "cudnn")
    if implementation == "pallas":
        return pallas_attention(q, k, v)
    return jax.nn.dot_product_attention(q, k, v, implementation="xla")


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
            implementation = choose_implementation(b, self.heads, n, q.dtype, jax.default_backend(), q.shape[-1],
                                                   sequence_split=split_count("act_length") > 1)
        y = attend(q, k, v, implementation, self.chunk)
        y = constrain(y, ("act_batch", "act_length", "act_heads", None))
        return self.out(y.reshape(b, n, d))

    @staticmethod
    def flops_per_image(shape: Shape, tokens: int, model_config) -> float:
        """qkv and output projections (8·N·D²) plus scores and weighted values (4·N²·D)."""
        del model_config
        return 8.0 * tokens * shape.width**2 + 4.0 * tokens**2 * shape.width
