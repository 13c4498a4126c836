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


def timm_trunc_normal(std: float):
    """timm's `trunc_normal_(std=std)`: N(0, std²) cut at ±2 *absolute*, so its std is `std`.

    (JAX's `truncated_normal(std)` cuts at ±2 std, which leaves a std of 0.88·std.)
    At std 0.02 the cut sits 100 std out and never binds; the clip is there for larger stds.
    """

    def init(key, shape, dtype=jnp.float32):
        return jnp.clip(std * jax.random.normal(key, shape, dtype), -2.0, 2.0)

    return init


trunc_normal_02 = timm_trunc_normal(0.02)

# Adventurer's patch embedding (timm `lecun_normal_`): a normal cut at ±2 std, scaled so the cut
# distribution has variance 1/fan_in (the pre-cut scale is 1.14/√fan_in).
lecun_normal = jax.nn.initializers.lecun_normal()

PATCH_EMBED_INITS = ("torch", "lecun_normal")


def patch_embed_init(name: str, fan_in: int):
    """`model.patch_embed_init`: torch (PyTorch conv default, DeiT) | lecun_normal (Adventurer)."""
    if name == "torch":
        return torch_default(fan_in)
    if name == "lecun_normal":
        return lecun_normal
    raise ValueError(f"unknown patch-embedding init {name!r}; expected one of {', '.join(PATCH_EMBED_INITS)}")
