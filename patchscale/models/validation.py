"""The model config's allowed values, checked before anything is built.

`check` needs only `config.model`; `check_input` also needs the input size (known once the
dataset is described). Both raise `UserError` with one line naming the key and what it takes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from patchscale.errors import UserError
from patchscale.models import backbone, baselines, channel, dense_heads, flops, initializers, sizes
from patchscale.models.mixers import attention, mamba2, registry

CHOICES = {"pool": ("cls", "gap"), "cls_position": ("first", "last"),
           "posemb": ("learned", "sincos2d", "none"), "norm": tuple(backbone.NORMS),
           "channel_mixer": tuple(channel.CHANNEL_MIXERS), "remat": tuple(backbone.REMAT_POLICIES),
           "dtype": ("auto", *backbone.DTYPES), "patch_embed_init": initializers.PATCH_EMBED_INITS,
           "residual_dtype": ("float32", "compute"), "head": dense_heads.HEADS,
           "drop_path_schedule": backbone.DROP_PATH_SCHEDULES}


def check(m) -> None:
    """Names, ranges and combinations of `model.*` that hold whatever the input."""
    shape = sizes.resolve(m)  # Raises on unknown sizes or inconsistent shapes.
    registry.get(m.mixer)
    for key, allowed in CHOICES.items():
        if m[key] not in allowed:
            raise UserError(f"model.{key}={m[key]!r}: expected one of {', '.join(allowed)}")
    if m.attention_impl not in attention.IMPLEMENTATIONS:
        raise UserError(f"model.attention_impl={m.attention_impl!r}: expected one of"
                        f" {', '.join(str(i) for i in attention.IMPLEMENTATIONS)}")
    if m.mixer == "attention" and m.attention_impl in ("cudnn", "pallas"):
        _check_fused_attention(m)
    if m.token_segment < 0:
        raise UserError(f"model.token_segment={m.token_segment}: must be >= 0 (0 = off)")
    if m.mamba2.chunk_size < 0:
        raise UserError(f"model.mamba2.chunk_size={m.mamba2.chunk_size}: must be >= 0 (0 = automatic)")
    if m.attention_chunk <= 0:
        raise UserError(f"model.attention_chunk={m.attention_chunk}: must be positive")
    if m.mamba2.flip not in mamba2.FLIP_RULES:
        raise UserError(f"model.mamba2.flip={m.mamba2.flip!r}: expected one of {', '.join(mamba2.FLIP_RULES)}")
    if m.baseline not in baselines.BASELINES:
        raise UserError(f"model.baseline={m.baseline!r}: expected one of {', '.join(baselines.BASELINES)}")
    if m.baseline_hidden <= 0:
        raise UserError(f"model.baseline_hidden={m.baseline_hidden}: must be positive")
    if m.mixer == "mamba2":
        try:
            mamba2.dims(shape, m.mamba2)
        except ValueError as e:
            raise UserError(f"model.mamba2: {e}") from None
    if m.posemb == "sincos2d" and shape.width % 4:
        raise UserError(f"model.posemb=sincos2d needs a width divisible by 4 (sin and cos per axis), got {shape.width}")
    if dense_heads.is_dense(m.head):
        if m.s2_scales or m.extend_tokens != 1 or m.baseline != "none":
            raise UserError(f"model.head={m.head} maps each patch token to its own pixels: it cannot be combined"
                            " with model.s2_scales, model.extend_tokens or a pixel baseline")
        if m.head == "dense_decoder" and m.patch_size & (m.patch_size - 1):
            raise UserError(f"model.head=dense_decoder upsamples in steps of 2: model.patch_size={m.patch_size}"
                            " must be a power of two")
        if m.decoder_width <= 0:
            raise UserError(f"model.decoder_width={m.decoder_width}: must be positive")
    if m.baseline != "none" and (m.s2_scales or m.extend_tokens != 1):
        raise UserError(f"model.baseline={m.baseline} is a pixel baseline: model.s2_scales and model.extend_tokens"
                        " do not apply to it")
    if not isinstance(m.extend_tokens, int) or m.extend_tokens < 1:
        raise UserError(f"model.extend_tokens={m.extend_tokens!r}: expected a whole factor >= 1 (1 turns it off)")
    if not 0.0 <= m.drop_path < 1.0:
        raise UserError(f"model.drop_path={m.drop_path}: expected a rate in [0, 1)")


def check_input(m, size: int) -> None:
    """What the input size decides: S² scales, the patch size, and dense attention's logits."""
    scales = tuple(m.s2_scales)
    if scales:
        if any(not isinstance(k, int) or k < 1 for k in scales) or list(scales) != sorted(set(scales)):
            raise UserError(f"model.s2_scales={scales}: expected increasing whole scales, e.g. (1, 2)")
        if m.pool != "gap":
            raise UserError("model.s2_scales needs model.pool=gap (features are pooled over the merged patch grid)")
        if size % scales[-1]:
            raise UserError(f"model.s2_scales={scales}: the input size {size} is not a multiple of the largest scale")
    base = size // scales[-1] if scales else size  # The backbone's own input size.
    if not 1 <= m.patch_size <= base or base % m.patch_size:
        where = f"the S² base size {base}" if scales else f"the input size {base} (data.image_size)"
        raise UserError(f"model.patch_size={m.patch_size} does not divide {where};"
                        f" choose one of {[p for p in range(1, base + 1) if base % p == 0]}")
    if m.mixer == "attention" and m.attention_impl in ("xla", "einsum"):
        tokens = flops.sequence_length(m, size)
        if attention.dense_logits(1, 1, tokens) > attention.INDEX_LIMIT:
            raise UserError(f"model.attention_impl={m.attention_impl}: one head's {tokens}×{tokens} logits exceed"
                            " XLA's int32 indexing; use auto or chunked")


def _check_fused_attention(m) -> None:
    """A forced fused kernel must exist here: cuDNN on a GPU in 16 bits, Pallas flash on a TPU."""
    backend = jax.default_backend()
    if m.attention_impl == "pallas" and backend != "tpu":
        raise UserError(f"model.attention_impl=pallas: the Pallas flash kernel needs a TPU (this backend is"
                        f" {backend}); use auto")
    if m.attention_impl == "cudnn":
        shape = sizes.resolve(m)
        dtype = backbone.compute_dtype(m.dtype)
        if backend not in attention.GPU_BACKENDS:
            raise UserError(f"model.attention_impl=cudnn: cuDNN attention needs an NVIDIA GPU (this backend is"
                            f" {backend}); use auto")
        if not attention.cudnn_accepts(dtype, shape.width // shape.heads):
            raise UserError(f"model.attention_impl=cudnn: cuDNN attention takes bfloat16/float16 and a head"
                            f" dimension ≤ 128 divisible by 8 (here {jnp.dtype(dtype).name},"
                            f" {shape.width // shape.heads}); use auto")
