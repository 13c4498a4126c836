"""The plain backbone every token mixer plugs into.

image → patch embedding → CLS token (first or last) + position embedding → depth × pre-norm
block [x + drop_path(mixer(norm(x))), x + drop_path(channel(norm(x)))] → norm → pool (CLS or
mean) → head. DeiT is LayerNorm + GELU MLP + CLS first; Adventurer is RMSNorm + SwiGLU + CLS
last with the Mamba-2 mixer.

Two layouts of the blocks, the same numbers (`model.scan_layers`):

* unrolled (the default): `blocks/<i>/…`, one traced copy of the block per layer;
* scanned: `layer_stack/…`, every block parameter stacked along a leading layer axis and the
  blocks run by `jax.lax.scan`, so the program holds one block whatever the depth: compile
  time stops growing with depth and XLA stops allocating every layer's buffers at once. What
  differs between layers (the drop-path rate, a mixer's direction) enters the scan as data.
  The stacked parameters are the unrolled ones stacked, so both layouts start from the same
  initialisation (`models/stacking.py` converts between them).

Blocks can be rematerialised (`model.remat`, REMAT_POLICIES) so the backward pass keeps only
each block's input (`full`), also its matmul outputs (`dots`), or the activations the modules
tag by name (`names`, see SAVED_NAMES), not all of its internals (for Mamba-2: the Q×Q chunk
matrices).

Randomness (drop path) is an explicit `key` argument rather than module state, so the train
step derives it from the step number: a resumed run draws exactly the same masks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from patchscale.models import dense_heads, multiscale, sizes
from patchscale.models.channel import CHANNEL_MIXERS
from patchscale.models.initializers import trunc_normal_02
from patchscale.models.mixers import registry
from patchscale.models.patchify import PatchEmbed, PositionEmbedding, extend_grid, token_grid
from patchscale.ops import segments
from patchscale.partitioning import LAYER_STACK, constrain

TOKENS = ("act_batch", "act_length", "act_embed")
_NORM_AXES = {"scale": ("embed",), "bias": ("embed",)}


def _norm_axes(*names: str) -> dict:
    return {f"{name}/{param}": axes for name in names for param, axes in _NORM_AXES.items()}

NORMS = {  # name → (class, epsilon): DeiT's LayerNorm and Adventurer's RMSNorm.
    "layernorm": (nnx.LayerNorm, 1e-6),
    "rmsnorm": (nnx.RMSNorm, 1e-5),
}
# Activations tagged with `checkpoint_name` that the `names` policy keeps: the outputs of the
# wide input projections (attention's qkv, Mamba-2's in_proj, the channel mixer's hidden layer),
# so the backward pass recomputes only the cheap elementwise work and the token mixing itself.
SAVED_NAMES = ("mixer_in", "channel_hidden")
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "names": jax.checkpoint_policies.save_only_these_names(*SAVED_NAMES),
}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def compute_dtype(name: str):
    """`auto` is float32 on CPU and bfloat16 on accelerators."""
    if name == "auto":
        return jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
    return DTYPES[name]


DROP_PATH_SCHEDULES = ("linear", "released")


def drop_path_rates(rate: float, depth: int, schedule: str = "linear") -> list[float]:
    """Per-block drop-path rates (`model.drop_path_schedule`).

    linear: linspace(0, rate, depth), DeiT's (timm's) rule and the intended Adventurer one.
    released: the released Adventurer code's `([0] + linspace(0, rate, depth))[:depth]`, off by one:
    blocks 0 and 1 never drop and the last block gets rate·(depth − 2)/(depth − 1), so the mean is
    rate/2 − rate/depth (0.25 at rate 0.6 and depth 12, against 0.30 for linear).
    """
    if schedule not in DROP_PATH_SCHEDULES:
        raise ValueError(f"drop-path schedule {schedule!r}: expected one of {', '.join(DROP_PATH_SCHEDULES)}")
    if depth == 1:
        return [0.0 if schedule == "released" else float(rate)]
    linear = [float(r) for r in np.linspace(0.0, rate, depth)]
    return linear if schedule == "linear" else ([0.0] + linear)[:depth]


def drop_path(x: jax.Array, rate: float | jax.Array, key: jax.Array | None) -> jax.Array:
    """Stochastic depth: zero a whole residual branch per example and rescale the survivors.

    `rate` is a Python float in the unrolled layout and a traced scalar under the layer scan.
    """
    if key is None or (isinstance(rate, (int, float)) and rate == 0.0):
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
        self.mixer_options = tuple(mixer_options(model_config, layer).items())
        # Under `full` remat the block's backward pass recomputes the mixer and the channel
        # mixer one at a time, so only one of them holds its internals at any moment.
        self.remat_parts = model_config.remat == "full"
        self.token_segment = model_config.token_segment

    def __call__(self, x: jax.Array, key: jax.Array | None = None, *, rate=None, options=None) -> jax.Array:
        """`rate` and `options` (the mixer's per-layer keywords) default to this layer's own;
        the layer scan passes them as traced values."""
        rate = self.drop_path_rate if rate is None else rate
        options = dict(self.mixer_options) if options is None else options
        k1, k2 = jax.random.split(key) if key is not None else (None, None)
        call = _rematerialised if self.remat_parts else _call
        x = constrain(x + drop_path(call(self.mixer, self.norm1(x), options), rate, k1), TOKENS)
        h = self.norm2(x)
        if segments.streams(h.shape[1], self.token_segment):  # Per token: no carry between pieces.
            h = segments.over_segments(lambda carry, piece: (carry, self.channel(piece)), h, self.token_segment)
        else:
            h = call(self.channel, h, {})
        return constrain(x + drop_path(h, rate, k2), TOKENS)


def _call(module: nnx.Module, x: jax.Array, options: dict) -> jax.Array:
    return module(x, **options)


_rematerialised = nnx.remat(_call, policy=jax.checkpoint_policies.nothing_saveable)


def mixer_options(model_config, layer: int) -> dict:
    """The keywords the mixer's `__call__` takes for this layer (registry.py: `per_layer`)."""
    per_layer = getattr(registry.get(model_config.mixer), "per_layer", None)
    return per_layer(model_config, layer) if per_layer else {}


def make_norm(name: str, width: int, dtype, rngs: nnx.Rngs) -> nnx.Module:
    cls, epsilon = NORMS[name]
    return cls(width, epsilon=epsilon, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)


def _apply_block(block: Block, x: jax.Array, key: jax.Array | None) -> jax.Array:
    return block(x, key)


def stack_blocks(blocks: list[Block]) -> Block:
    """One Block whose parameters are the given blocks' stacked along a new leading axis.

    Its own static attributes (rate, mixer options) are block 0's and are never used: the scan
    passes each layer's.
    """
    graphdef, first = nnx.split(blocks[0])
    states = [first] + [nnx.split(block)[1] for block in blocks[1:]]
    return nnx.merge(graphdef, jax.tree.map(lambda *leaves: jnp.stack(leaves), *states))


class VisionBackbone(nnx.Module):
    LOGICAL_AXES = {"cls_token": (None, None, "embed"), "head/kernel": ("embed", None), **_norm_axes("norm")}

    def __init__(self, model_config, *, image_size: int, channels: int, num_classes: int, rngs: nnx.Rngs):
        shape = sizes.resolve(model_config)
        dtype = compute_dtype(model_config.dtype)
        self.pool = model_config.pool
        self.cls_first = model_config.cls_position == "first"
        # S² (multiscale.py): the blocks see base-sized tiles; the head sees every scale's features.
        self.s2_scales = tuple(model_config.s2_scales)
        self.base_size = multiscale.base_size(image_size, self.s2_scales)
        grid = token_grid(model_config, self.base_size)
        self.extend_tokens = model_config.extend_tokens
        self.patch_embed = PatchEmbed(model_config.patch_size, channels, shape.width, dtype=dtype, rngs=rngs,
                                      init=model_config.patch_embed_init)
        self.cls_token = (nnx.Param(trunc_normal_02(rngs.params(), (1, 1, shape.width)))
                          if self.pool == "cls" else None)
        extra = int(self.pool == "cls")
        self.posemb = PositionEmbedding(model_config.posemb, grid, extra if self.cls_first else 0,
                                        extra if not self.cls_first else 0, shape.width, rngs=rngs)
        rates = drop_path_rates(model_config.drop_path, shape.depth, model_config.drop_path_schedule)
        blocks = [Block(shape, model_config, layer=i, drop_path_rate=float(rates[i]), dtype=dtype, rngs=rngs)
                  for i in range(shape.depth)]
        self.depth = shape.depth
        self.remat_policy = REMAT_POLICIES[model_config.remat]
        self.remat = model_config.remat != "none"
        if model_config.scan_layers:
            self.blocks = None
            setattr(self, LAYER_STACK, stack_blocks(blocks))
            # Per-layer values the scan feeds in: drop-path rates (None when all are zero) and
            # the mixer's options as (name, per-layer values) pairs.
            self.layer_rates = tuple(float(r) for r in rates) if model_config.drop_path else None
            options = [dict(block.mixer_options) for block in blocks]
            self.layer_options = tuple((name, tuple(o[name] for o in options)) for name in options[0])
        else:
            self.blocks = nnx.List(blocks)
        self.norm = make_norm(model_config.norm, shape.width, dtype, rngs)
        self.apply_block = (nnx.remat(_apply_block, policy=self.remat_policy) if self.remat and self.blocks is not None
                            else _apply_block)
        self.dense = dense_heads.is_dense(model_config.head)
        if self.dense:  # Per-pixel logits over the pixel classes (segmentation.head_classes).
            self.head = dense_heads.build(model_config.head, shape.width, model_config.patch_size,
                                          num_classes, model_config.decoder_width,
                                          dtype=dtype, rngs=rngs)
        else:
            self.head = nnx.Linear(shape.width * max(1, len(self.s2_scales)), num_classes, dtype=dtype,
                                   param_dtype=jnp.float32, rngs=rngs, kernel_init=trunc_normal_02,
                                   bias_init=nnx.initializers.zeros)
        self.dtype = dtype
        # The residual stream's dtype: the reference (PyTorch autocast over float32 parameters)
        # keeps it float32 while matmuls run in bfloat16; "compute" keeps it in the compute dtype.
        self.residual_dtype = jnp.float32 if model_config.residual_dtype == "float32" else dtype

    def __call__(self, images: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """uint8 or float images (B, H, W, C) → float32 logits (B, classes), or (B, H, W, pixel classes)
        with a dense head."""
        if self.dense:
            return self.head(self.tokens(images, key))
        if self.s2_scales:
            pooled = multiscale.features(self.tokens, normalize(images), self.base_size, self.s2_scales,
                                         key).mean(axis=1)
        else:
            x = self.tokens(images, key, keep_cls=True)
            if self.pool == "cls":
                pooled = x[:, 0] if self.cls_first else x[:, -1]
            else:
                pooled = x.mean(axis=1)
        return self.head(pooled).astype(jnp.float32)

    def tokens(self, images: jax.Array, key: jax.Array | None = None, keep_cls: bool = False) -> jax.Array:
        """Images → the final norm's output per token (B, N, D); the class token only with `keep_cls`."""
        x = extend_grid(self.patch_embed(normalize(images).astype(self.dtype)), self.extend_tokens)
        if self.cls_token is not None:
            cls = jnp.broadcast_to(self.cls_token[...].astype(x.dtype), (x.shape[0], 1, x.shape[-1]))
            x = jnp.concatenate([cls, x] if self.cls_first else [x, cls], axis=1)
        x = constrain(self.posemb(x).astype(self.residual_dtype), TOKENS)
        if self.blocks is None:
            x = self._scan_blocks(x, key)
        else:
            keys = jax.random.split(key, self.depth) if key is not None else [None] * self.depth
            for block, block_key in zip(self.blocks, keys):
                x = self.apply_block(block, x, block_key)
        x = self.norm(x)
        if self.cls_token is None or keep_cls:
            return x
        return x[:, 1:] if self.cls_first else x[:, :-1]

    def _scan_blocks(self, x: jax.Array, key: jax.Array | None) -> jax.Array:
        """The blocks as one `lax.scan` over the stacked parameters and the per-layer inputs."""
        graphdef, state = nnx.split(getattr(self, LAYER_STACK))
        per_layer = {"state": state,
                     "options": {name: jnp.asarray(values) for name, values in self.layer_options}}
        if key is not None:
            per_layer["key"] = jax.random.split(key, self.depth)
            if self.layer_rates is not None:
                per_layer["rate"] = jnp.asarray(self.layer_rates, jnp.float32)

        def body(x, layer):
            block = nnx.merge(graphdef, layer["state"])
            return block(x, layer.get("key"), rate=layer.get("rate", 0.0), options=layer["options"]), None

        if self.remat:
            body = jax.checkpoint(body, policy=self.remat_policy, prevent_cse=False)
        x, _ = jax.lax.scan(body, x, per_layer)
        return x


def normalize(images: jax.Array) -> jax.Array:
    """uint8 pixels → float32 in [-1, 1]; float inputs are taken as already normalised."""
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 127.5 - 1.0
    return images.astype(jnp.float32)
