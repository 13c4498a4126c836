"""Channel mixers: the GELU MLP of ViT/DeiT and the SwiGLU of Adventurer.

A config picks one with `model.channel_mixer`; each knows its FLOPs per token.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from patchscale.models.initializers import torch_default, trunc_normal_02


class Mlp(nnx.Module):
    """fc → exact (erf) GELU → fc, as DeiT's PyTorch nn.GELU; timm's truncated-normal init."""

    def __init__(self, width: int, hidden: int, *, dtype, rngs: nnx.Rngs):
        dense = dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
                     kernel_init=trunc_normal_02, bias_init=nnx.initializers.zeros)
        self.fc1 = nnx.Linear(width, hidden, **dense)
        self.fc2 = nnx.Linear(hidden, width, **dense)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))

    @staticmethod
    def flops_per_token(width: int, hidden: int) -> float:
        return 4.0 * width * hidden


class SwiGLU(nnx.Module):
    """fc2(silu(gate(x)) · value(x)) with biases; PyTorch default init (the Adventurer reference)."""

    def __init__(self, width: int, hidden: int, *, dtype, rngs: nnx.Rngs):
        def dense(n_in, n_out):
            return nnx.Linear(n_in, n_out, dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
                              kernel_init=torch_default(n_in), bias_init=nnx.initializers.zeros)

        self.gate_value = dense(width, 2 * hidden)  # Gate and value projections fused into one matmul.
        self.fc2 = dense(hidden, width)

    def __call__(self, x: jax.Array) -> jax.Array:
        gate, value = jnp.split(self.gate_value(x), 2, axis=-1)
        return self.fc2(jax.nn.silu(gate) * value)

    @staticmethod
    def flops_per_token(width: int, hidden: int) -> float:
        return 6.0 * width * hidden


CHANNEL_MIXERS = {"mlp": Mlp, "swiglu": SwiGLU}
