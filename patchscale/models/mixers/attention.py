"""Multi-head self-attention (DeiT): fused qkv projection with bias, float32 softmax.

Attention goes through `jax.nn.dot_product_attention`, so accelerators can pick cuDNN or
flash kernels (`model.attention_impl`); XLA's own path computes logits and softmax in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from patchscale.models.initializers import trunc_normal_02
from patchscale.models.mixers.registry import register
from patchscale.models.sizes import Shape


@register("attention")
class Attention(nnx.Module):
    causal = None

    def __init__(self, shape: Shape, model_config, *, layer: int, dtype, rngs: nnx.Rngs):
        del layer
        width, self.heads = shape.width, shape.heads
        self.implementation = model_config.attention_impl or None
        dense = dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
                     kernel_init=trunc_normal_02, bias_init=nnx.initializers.zeros)
        self.qkv = nnx.Linear(width, 3 * width, **dense)
        self.out = nnx.Linear(width, width, **dense)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, n, d = x.shape
        q, k, v = jnp.split(self.qkv(x).reshape(b, n, 3 * self.heads, d // self.heads), 3, axis=2)
        y = jax.nn.dot_product_attention(q, k, v, implementation=self.implementation)
        return self.out(y.reshape(b, n, d))

    @staticmethod
    def flops_per_image(shape: Shape, tokens: int, model_config) -> float:
        """qkv and output projections (8·N·D²) plus scores and weighted values (4·N²·D)."""
        del model_config
        return 8.0 * tokens * shape.width**2 + 4.0 * tokens**2 * shape.width
