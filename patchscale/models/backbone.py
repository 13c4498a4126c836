"""The plain backbone every token mixer plugs into.

image → patch embedding → CLS token (first or last) + position embedding → depth × pre-norm
block [x + drop_path(mixer(norm(x))), x + drop_path(channel(norm(x)))] → norm → pool (CLS or
mean) → head. DeiT is LayerNorm + GELU MLP + CLS first; Adventurer is RMSNorm + SwiGLU + CLS
last with the Mamba-2 mixer. Blocks can be rematerialised (`model.remat`) so the backward
pass keeps only each block's input, not its internals (for Mamba-2: the Q×Q chunk matrices).

Randomness (drop path) is an explicit `key` argument rather than module state, so the train
step derives it from the step number: a resumed run draws exactly the same masks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from patchscale.models import sizes
from patchscale.models.channel import CHANNEL_MIXERS
from patchscale.models.initializers import trunc_normal_02
from patchscale.models.mixers import registry
from patchscale.models.patchify import PatchEmbed, PositionEmbedding
from patchscale.partitioning import constrain

TOKENS = ("act_batch", "act_length", "act_embed")
_NORM_AXES = {"scale": ("embed",), "bias": ("embed",)}


def _norm_axes(*names: str) -> dict:
    return {f"{name}/{param}": axes for name in names for param, axes in _NORM_AXES.items()}

NORMS = {  # name → (class, epsilon): DeiT's LayerNorm and Adventurer's RMSNorm.
    "layernorm": (nnx.LayerNorm, 1e-6),
    "rmsnorm": (nnx.RMSNorm, 1e-5),
}
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def compute_dtype(name: str):
    """`auto` is float32 on CPU and bfloat16 on accelerators."""
    if name == "auto":
        return jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
    return DTYPES[name]


def drop_path(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Stochastic depth: zero a whole residual branch per example and rescale the survivors."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


class Block(nnx.Module):
    LOGICAL_AXES = _norm_axes("norm1", "norm2")

    def __init__(self, shape: sizes.Shape, model_config, *, layer: int, drop_path_rate: float, dtype,
                 rngs: nnx.Rngs):
        self.norm1 = make_norm(model_config.norm, shape.width, dtype, rngs)
        self.mixer = registry.get(model_config.mixer)(shape, model_config, layer=layer, dtype=dtype, rngs=rngs)
        self.norm2 = make_norm(model_config.norm, shape.width, dtype, rngs)
        self.channel = CHANNEL_MIXERS[model_config.channel_mixer](shape.width, shape.mlp_dim, dtype=dtype, rngs=rngs)
        self.drop_path_rate = drop_path_rate

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        k1, k2 = jax.random.split(key) if key is not None else (None, None)
        x = constrain(x + drop_path(self.mixer(self.norm1(x)), self.drop_path_rate, k1), TOKENS)
        return constrain(x + drop_path(self.channel(self.norm2(x)), self.drop_path_rate, k2), TOKENS)


def make_norm(name: str, width: int, dtype, rngs: nnx.Rngs) -> nnx.Module:
    cls, epsilon = NORMS[name]
    return cls(width, epsilon=epsilon, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)


def _apply_block(block: Block, x: jax.Array, key: jax.Array | None) -> jax.Array:
    return block(x, key)


class VisionBackbone(nnx.Module):
    LOGICAL_AXES = {"cls_token": (None, None, "embed"), "head/kernel": ("embed", None), **_norm_axes("norm")}

    def __init__(self, model_config, *, image_size: int, channels: int, num_classes: int, rngs: nnx.Rngs):
        shape = sizes.resolve(model_config)
        dtype = compute_dtype(model_config.dtype)
        self.pool = model_config.pool
        self.cls_first = model_config.cls_position == "first"
        grid = image_size // model_config.patch_size
        self.patch_embed = PatchEmbed(model_config.patch_size, channels, shape.width, dtype=dtype, rngs=rngs,
                                      init=model_config.patch_embed_init)
        self.cls_token = (nnx.Param(trunc_normal_02(rngs.params(), (1, 1, shape.width)))
                          if self.pool == "cls" else None)
        extra = int(self.pool == "cls")
        self.posemb = PositionEmbedding(model_config.posemb, grid, extra if self.cls_first else 0,
                                        extra if not self.cls_first else 0, shape.width, rngs=rngs)
        # Linear drop-path schedule 0 … rate over the blocks (the DeiT rule).
        rates = np.linspace(0.0, model_config.drop_path, shape.depth) if shape.depth > 1 else [model_config.drop_path]
        self.blocks = nnx.List([
            Block(shape, model_config, layer=i, drop_path_rate=float(rates[i]), dtype=dtype, rngs=rngs)
            for i in range(shape.depth)])
        self.norm = make_norm(model_config.norm, shape.width, dtype, rngs)
        policy = REMAT_POLICIES[model_config.remat]
        self.apply_block = _apply_block if model_config.remat == "none" else nnx.remat(_apply_block, policy=policy)
        self.head = nnx.Linear(shape.width, num_classes, dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
                               kernel_init=trunc_normal_02, bias_init=nnx.initializers.zeros)
        self.dtype = dtype
        # The residual stream's dtype: the reference (PyTorch autocast over float32 parameters)
        # keeps it float32 while matmuls run in bfloat16; "compute" keeps it in the compute dtype.
        self.residual_dtype = jnp.float32 if model_config.residual_dtype == "float32" else dtype

    def __call__(self, images: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """uint8 or float images (B, H, W, C) → float32 logits (B, classes)."""
        x = self.patch_embed(normalize(images).astype(self.dtype))
        if self.cls_token is not None:
            cls = jnp.broadcast_to(self.cls_token[...].astype(x.dtype), (x.shape[0], 1, x.shape[-1]))
            x = jnp.concatenate([cls, x] if self.cls_first else [x, cls], axis=1)
        x = constrain(self.posemb(x).astype(self.residual_dtype), TOKENS)
        keys = jax.random.split(key, len(self.blocks)) if key is not None else [None] * len(self.blocks)
        for block, block_key in zip(self.blocks, keys):
            x = self.apply_block(block, x, block_key)
        x = self.norm(x)
        if self.pool == "cls":
            pooled = x[:, 0] if self.cls_first else x[:, -1]
        else:
            pooled = x.mean(axis=1)
        return self.head(pooled).astype(jnp.float32)


def normalize(images: jax.Array) -> jax.Array:
    """uint8 pixels → float32 in [-1, 1]; float inputs are taken as already normalised."""
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 127.5 - 1.0
    return images.astype(jnp.float32)
