"""Channel mixers: the GELU MLP of ViT/DeiT and the SwiGLU of Adventurer.

A config picks one with `model.channel_mixer`; each knows its FLOPs per token.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from patchscale.models.initializers import torch_default, trunc_normal_02
from patchscale.partitioning import constrain

HIDDEN = ("act_batch", "act_length", "act_mlp")


def exact_gelu(x: jax.Array) -> jax.Array:
    """x·Φ(x) in PyTorch's erf form; cheaper on XLA:CPU than jax.nn.gelu's erfc form (same function)."""
    return 0.5 * x * (1.0 + jax.lax.erf(x * (2.0**-0.5)))


class Mlp(nnx.Module):
    """fc → exact (erf) GELU → fc, as DeiT's PyTorch nn.GELU; timm's truncated-normal init."""

    LOGICAL_AXES = {"fc1/kernel": ("embed", "mlp"), "fc1/bias": ("mlp",),
                    "fc2/kernel": ("mlp", "embed"), "fc2/bias": ("embed",)}

    def __init__(self, width: int, hidden: int, *, dtype, rngs: nnx.Rngs):
        dense = dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
                     kernel_init=trunc_normal_02, bias_init=nnx.initializers.zeros)
        self.fc1 = nnx.Linear(width, hidden, **dense)
        self.fc2 = nnx.Linear(hidden, width, **dense)

    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = checkpoint_name(constrain(self.fc1(x), HIDDEN), "channel_hidden")
        return self.fc2(exact_gelu(hidden))

    @staticmethod
    def flops_per_token(width: int, hidden: int) -> float:
        return 4.0 * width * hidden


class SwiGLU(nnx.Module):
    """fc2(silu(gate(x)) · value(x)) with biases; PyTorch default init (the Adventurer reference).

    Gate and value are one matmul whose outputs interleave (gate₀, value₀, gate₁, …), so
    splitting them over the `tensor` mesh axis keeps each hidden unit's pair on one device.
    """

    LOGICAL_AXES = {"gate_value/kernel": ("embed", "mlp"), "gate_value/bias": ("mlp",),
                    "fc2/kernel": ("mlp", "embed"), "fc2/bias": ("embed",)}

    def __init__(self, width: int, hidden: int, *, dtype, rngs: nnx.Rngs):
        def dense(n_in, n_out):
            return nnx.Linear(n_in, n_out, dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
                              kernel_init=torch_default(n_in), bias_init=nnx.initializers.zeros)

        self.gate_value = dense(width, 2 * hidden)
        self.hidden = hidden
        self.fc2 = dense(hidden, width)

    def __call__(self, x: jax.Array) -> jax.Array:
        pairs = checkpoint_name(self.gate_value(x), "channel_hidden").reshape(*x.shape[:-1], self.hidden, 2)
        hidden = jax.nn.silu(pairs[..., 0]) * pairs[..., 1]
        return self.fc2(constrain(hidden, HIDDEN))

    @staticmethod
    def flops_per_token(width: int, hidden: int) -> float:
        return 6.0 * width * hidden


CHANNEL_MIXERS = {"mlp": Mlp, "swiglu": SwiGLU}
