"""Initialisers used by the reference implementations (timm / PyTorch defaults)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def torch_default(fan_in: int):
    """PyTorch's default for Linear and Conv weights: U(±1/√fan_in)."""
    bound = 1.0 / np.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


trunc_normal_02 = jax.nn.initializers.truncated_normal(0.02)
