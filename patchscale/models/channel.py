"""Channel mixers: the GELU MLP of ViT (and, later, SwiGLU)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from patchscale.models.initializers import trunc_normal_02


class Mlp(nnx.Module):
    def __init__(self, width: int, hidden: int, *, dtype, rngs: nnx.Rngs):
        dense = dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
                     kernel_init=trunc_normal_02, bias_init=nnx.initializers.zeros)
        self.fc1 = nnx.Linear(width, hidden, **dense)
        self.fc2 = nnx.Linear(hidden, width, **dense)

    def __call__(self, x: jax.Array) -> jax.Array:
        # Exact (erf) GELU, as in PyTorch's nn.GELU used by DeiT.
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))

    @staticmethod
    def flops_per_token(width: int, hidden: int) -> float:
        return 4.0 * width * hidden
