"""Adventurer's token mixer: Mamba-2 (mamba_ssm 2.0.4 `Mamba2`) with a heading average and flipping.

For the N patch tokens (+ CLS) of a block:

1. flip the patch tokens if this block flips (the CLS token keeps its place);
2. prepend the *heading average*, the mean of all tokens, so the first scanned token
   already summarises the image;
3. Mamba-2: in_proj → [z, x, B, C, dt]; causal depthwise conv (width 4, bias) + SiLU over
   x, B, C; dt = softplus(dt + dt_bias) in float32; y = SSD(x, dt, −exp(A_log), B, C) + D·x;
   gated RMSNorm rmsnorm(y · silu(z)); out_proj;
4. drop the output at the average's position and undo the flip.

Flipping: `flip="alternate"` flips every other block (n % 2 == 1, the authors' intended
rule, the default); `flip="released"` reproduces the released code (n // 2 == 1: only
blocks 2 and 3); `flip="none"` never flips. The flip is a per-layer input of `__call__`
(`per_layer`): a Python bool in the unrolled layout, a traced one under the layer scan.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from patchscale.models.initializers import torch_default
from patchscale.models.mixers.registry import register
from patchscale.models.sizes import Shape
from patchscale.ops import segments
from patchscale.ops.ssd import ssd_chunked
from patchscale.partitioning import constrain, split_count

HEADS = ("act_batch", "act_length", "act_heads", None)

FLIP_RULES = {
    "alternate": lambda layer: layer % 2 == 1,
    "released": lambda layer: layer // 2 == 1,
    "none": lambda layer: False,
}
RMS_EPS = 1e-5


def dims(shape: Shape, cfg) -> dict[str, int]:
    """Inner width, heads and the in_proj output split of a Mamba-2 layer."""
    d_inner = cfg.expand * shape.width
    if d_inner % cfg.headdim:
        raise ValueError(f"Mamba-2 inner width {d_inner} is not divisible by headdim {cfg.headdim}")
    heads = d_inner // cfg.headdim
    if heads % cfg.groups:
        raise ValueError(f"Mamba-2 heads {heads} are not divisible by groups {cfg.groups}")
    bc = cfg.groups * cfg.d_state
    return {"d_inner": d_inner, "heads": heads, "bc": bc, "conv_channels": d_inner + 2 * bc,
            "in_proj": 2 * d_inner + 2 * bc + heads}


# Automatic Q on GPUs and TPUs. Chosen for memory traffic (XLA writes the Q×Q blocks, whose bytes
# per token grow with Q, while the chunk states' shrink with 1/Q); with the matmul state passing
# it took Adventurer-S/4 on an H200 from 163.5 to 172.7 img/s against Q = 256 with the scan
# (docs/performance.md); the two changes were not measured apart.
ACCELERATOR_CHUNK = 64
MATMUL_MAX_CHUNKS = 128  # Above this many chunks the matmul state passing costs more than it saves.


def chunk_size(requested: int, d_state: int, headdim: int, length: int) -> int:
    """The SSD's chunk length Q for a sequence of `length` tokens: `requested`, or automatic if 0.

    Automatic (0): on CPU the next power of two ≥ max(d_state, headdim), measured fastest on
    this project's CPU (Q = 64 for Adventurer-Ti at 1k and 4k tokens, Q = 32 for the 32-wide
    MNIST model; results/bench/utilisation_mamba2-cpu.json); on accelerators ACCELERATOR_CHUNK.
    The reference CUDA kernels use 256, but they never write the Q×Q blocks to memory; here
    XLA does, and their traffic grows with Q. Never longer than the sequence.
    """
    q = requested
    if not q:
        q = 2 ** math.ceil(math.log2(max(d_state, headdim))) if jax.default_backend() == "cpu" else ACCELERATOR_CHUNK
    return max(1, min(q, length))


def state_passing(length: int, q: int, pieces: int) -> str:
    """How chunk states pass along the sequence (ops/ssd.py): by one matmul when the token axis is
    split over devices, or on an accelerator while the chunks are few (a `lax.scan` there is a
    loop of tiny kernels); by the sequential scan otherwise (CPU, very long unsegmented inputs)."""
    if pieces > 1:
        return "matmul"
    few = -(-length // q) <= MATMUL_MAX_CHUNKS
    return "matmul" if few and jax.default_backend() != "cpu" else "scan"


def _dt_bias_init(key, shape, dtype=jnp.float32, dt_min=1e-3, dt_max=1e-1, floor=1e-4):
    """dt ~ exp(U(log dt_min, log dt_max)) clamped at `floor`; store softplus⁻¹(dt) as the bias."""
    dt = jnp.exp(jax.random.uniform(key, shape, dtype, math.log(dt_min), math.log(dt_max)))
    dt = jnp.maximum(dt, floor)
    return dt + jnp.log(-jnp.expm1(-dt))


def _a_log_init(key, shape, dtype=jnp.float32):
    return jnp.log(jax.random.uniform(key, shape, dtype, 1.0, 16.0))


def causal_depthwise_conv(x: jax.Array, kernel: jax.Array, bias: jax.Array, history=None) -> jax.Array:
    """y_t = b + Σ_k kernel[k] · x_{t-(K-1)+k} per channel. x (B, L, C), kernel (K, C).

    Before the start: `history` (B, K-1, C), the inputs just before x, or zeros.
    """
    width = kernel.shape[0]
    if history is None:
        padded = jnp.pad(x, ((0, 0), (width - 1, 0), (0, 0)))
    else:
        padded = jnp.concatenate([history.astype(x.dtype), x], axis=1)
    length = x.shape[1]
    out = bias.astype(x.dtype)
    for k in range(width):
        out = out + padded[:, k:k + length] * kernel[k].astype(x.dtype)
    return out


class GatedRMSNorm(nnx.Module):
    """rmsnorm(y · silu(z)) · w over the whole inner width, statistics in float32."""

    LOGICAL_AXES = {"scale": ("heads",)}  # The inner width is laid out head by head.

    def __init__(self, width: int, *, dtype):
        self.scale = nnx.Param(jnp.ones((width,), jnp.float32))
        self.dtype = dtype

    def __call__(self, y: jax.Array, z: jax.Array) -> jax.Array:
        h = (y * jax.nn.silu(z)).astype(jnp.float32)
        h = h * jax.lax.rsqrt(jnp.mean(h * h, axis=-1, keepdims=True) + RMS_EPS)
        return (h * self.scale[...]).astype(self.dtype)


@register("mamba2")
class Mamba2(nnx.Module):
    causal = None  # The heading average lets every output see every token.
    # Tensor parallelism splits the SSD, the gated norm and out_proj by head; in_proj's fused
    # outputs (z, x, B, C, dt) are only FSDP-sharded.
    LOGICAL_AXES = {"in_proj/kernel": ("embed", None), "out_proj/kernel": ("heads", "embed"),
                    "dt_bias": ("heads",), "A_log": ("heads",), "D": ("heads",)}

    def __init__(self, shape: Shape, model_config, *, layer: int, dtype, rngs: nnx.Rngs):
        cfg = model_config.mamba2
        if cfg.flip not in FLIP_RULES:
            raise ValueError(f"model.mamba2.flip={cfg.flip!r}: expected one of {', '.join(FLIP_RULES)}")
        d = dims(shape, cfg)
        self.d_inner, self.heads, self.headdim = d["d_inner"], d["heads"], cfg.headdim
        self.groups, self.d_state, self.requested_chunk = cfg.groups, cfg.d_state, cfg.chunk_size
        self.segment = model_config.token_segment
        self.flip = FLIP_RULES[cfg.flip](layer)  # This layer's; the layer scan passes each layer's instead.
        self.heading_average = cfg.heading_average
        if not self.heading_average:
            self.causal = "backward" if self.flip else "forward"
        self.cls_last = model_config.pool == "cls" and model_config.cls_position == "last"
        self.cls_first = model_config.pool == "cls" and model_config.cls_position == "first"
        self.dtype = dtype
        width = shape.width

        self.in_proj = nnx.Linear(width, d["in_proj"], use_bias=False, dtype=dtype, param_dtype=jnp.float32,
                                  kernel_init=torch_default(width), rngs=rngs)
        conv_init = torch_default(cfg.conv_width)  # PyTorch Conv1d default with fan_in = kernel width.
        self.conv_kernel = nnx.Param(conv_init(rngs.params(), (cfg.conv_width, d["conv_channels"])))
        self.conv_bias = nnx.Param(conv_init(rngs.params(), (d["conv_channels"],)))
        self.dt_bias = nnx.Param(_dt_bias_init(rngs.params(), (self.heads,)))
        self.A_log = nnx.Param(_a_log_init(rngs.params(), (self.heads,)))
        self.D = nnx.Param(jnp.ones((self.heads,), jnp.float32))
        self.norm = GatedRMSNorm(self.d_inner, dtype=dtype)
        out_init = torch_default(self.d_inner)
        depth_scale = 1.0 / math.sqrt(shape.depth)  # The reference rescales out_proj by 1/√depth.
        self.out_proj = nnx.Linear(self.d_inner, width, use_bias=False, dtype=dtype, param_dtype=jnp.float32,
                                   kernel_init=lambda k, s, t=jnp.float32: out_init(k, s, t) * depth_scale,
                                   rngs=rngs)

    @staticmethod
    def per_layer(model_config, layer: int) -> dict:
        """What differs between layers: whether this one flips (registry.py)."""
        return {"flip": FLIP_RULES[model_config.mamba2.flip](layer)}

    def _reverse(self, x: jax.Array) -> jax.Array:
        """Reverse the patch tokens, leaving a CLS token at its end; its own inverse."""
        if self.cls_last:
            return jnp.concatenate([x[:, -2::-1], x[:, -1:]], axis=1)
        if self.cls_first:
            return jnp.concatenate([x[:, :1], x[:, :0:-1]], axis=1)
        return x[:, ::-1]

    def _reorder(self, x: jax.Array, flip: bool | jax.Array) -> jax.Array:
        if isinstance(flip, (bool, np.bool_)):
            return self._reverse(x) if flip else x
        return jax.lax.cond(flip, self._reverse, lambda a: a, x)

    def __call__(self, u: jax.Array, flip: bool | jax.Array | None = None) -> jax.Array:
        flip = self.flip if flip is None else flip
        u = self._reorder(u, flip)
        if self.heading_average:
            u = jnp.concatenate([u.mean(axis=1, keepdims=True, dtype=jnp.float32).astype(u.dtype), u], axis=1)
        y = self.mamba(u)
        if self.heading_average:
            y = y[:, 1:]
        return self._reorder(y, flip)

    def mamba(self, u: jax.Array) -> jax.Array:
        """The Mamba-2 layer itself: (B, L, width) → (B, L, width), causal in L.

        With `model.token_segment` set and a longer sequence, the tokens go through in segments
        (`_streamed`), which computes the same outputs with one segment's internals in memory.
        """
        b, length, _ = u.shape
        # With the token axis split over devices, chunk states pass by a matmul (no sequential
        # scan across devices) and the chunk count is padded to divide evenly.
        if segments.streams(length, self.segment):
            return self._streamed(u)
        pieces = split_count("act_length")
        y, _ = self._mix(u, None, chunk_multiple=pieces)
        return y

    def _mix(self, u: jax.Array, carry: dict | None, *, chunk_multiple=1):
        """Tokens u following the tokens summarised by `carry` (the last conv inputs and the SSM
        state; None at the start) → (outputs, carry after u; None when `carry` is None)."""
        b, length, _ = u.shape
        z, xbc, dt = jnp.split(checkpoint_name(self.in_proj(u), "mixer_in"), [self.d_inner, 2 * self.d_inner + 2 * self.groups * self.d_state],
                               axis=-1)
        history = None if carry is None else carry["conv"]
        conv_in = xbc
        xbc = jax.nn.silu(causal_depthwise_conv(xbc, self.conv_kernel[...], self.conv_bias[...], history))
        x, B, C = jnp.split(xbc, [self.d_inner, self.d_inner + self.groups * self.d_state], axis=-1)
        x = constrain(x.reshape(b, length, self.heads, self.headdim), HEADS)
        dt = jax.nn.softplus(dt.astype(jnp.float32) + self.dt_bias[...])
        A = -jnp.exp(self.A_log[...])
        q = chunk_size(self.requested_chunk, self.d_state, self.headdim, length)
        y = ssd_chunked(x, dt, A, B.reshape(b, length, self.groups, self.d_state),
                        C.reshape(b, length, self.groups, self.d_state), chunk_size=q,
                        state_passing=state_passing(length, q, chunk_multiple), chunk_multiple=chunk_multiple,
                        initial_state=None if carry is None else carry["ssm"])
        if carry is not None:
            y, state = y
            width = self.conv_kernel.shape[0] - 1
            carry = {"conv": jnp.concatenate([history, conv_in], axis=1)[:, -width:], "ssm": state}
        y = constrain(y + x * self.D[...].astype(x.dtype)[:, None], HEADS)
        y = self.norm(y.reshape(b, length, self.d_inner), z)
        return self.out_proj(y), carry

    def _streamed(self, u: jax.Array) -> jax.Array:
        """The layer over segments of `token_segment` tokens rounded up to a multiple of the SSD
        chunk (ops/segments.py), the SSM state and the last conv inputs carried from one
        segment to the next: one segment's in_proj outputs, conv activations and chunk
        matrices in memory at a time instead of the whole sequence's."""
        b = u.shape[0]
        q = chunk_size(self.requested_chunk, self.d_state, self.headdim, self.segment)
        carry = {"conv": jnp.zeros((b, self.conv_kernel.shape[0] - 1, self.conv_kernel.shape[1]), u.dtype),
                 "ssm": jnp.zeros((b, self.heads, self.headdim, self.d_state), jnp.float32)}

        def step(carry, piece):
            y, carry = self._mix(piece, carry)
            return carry, y

        return segments.over_segments(step, u, -(-self.segment // q) * q, carry)

    @staticmethod
    def flops_per_image(shape: Shape, tokens: int, model_config) -> float:
        """The per-token Mamba-2 count of docs/reference.md over the tokens plus the heading average; the
        chunked SSD terms count the padded length (a multiple of Q), which is what is computed."""
        cfg = model_config.mamba2
        d = dims(shape, cfg)
        n = tokens + int(cfg.heading_average)
        q = chunk_size(cfg.chunk_size, cfg.d_state, cfg.headdim, n)
        padded = -(-n // q) * q
        gn, d_inner = cfg.groups * cfg.d_state, d["d_inner"]
        dense = (2 * shape.width * d["in_proj"] + 2 * cfg.conv_width * d["conv_channels"]
                 + 2 * d_inner * shape.width)
        ssd = 2 * q * (gn + d_inner) + 4 * cfg.d_state * d_inner + 2 * cfg.d_state * d_inner / q
        return float(n * dense + padded * ssd)
