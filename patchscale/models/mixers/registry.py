"""The token-mixer registry: a config names a mixer (`model.mixer=attention`), this finds it.

A token mixer is an `nnx.Module` class that

* is constructed as `Mixer(shape, model_config, *, layer, dtype, rngs)`, where `shape` is the
  resolved `sizes.Shape` (width, depth, heads, mlp_dim) and `layer` the block index (for
  mixers that alternate direction, say);
* maps tokens (batch, length, width) → (batch, length, width) in `__call__(x)`;
* if its forward pass differs between layers (a direction, say), has a static
  `per_layer(model_config, layer) -> dict` of keyword arguments for `__call__`: the backbone
  passes them as Python values in the unrolled layout and as traced scalars under the layer
  scan (`model.scan_layers`), so `__call__` must accept both (Mamba-2's `flip` uses `lax.cond`);
* has an attribute `causal` (None, or "forward"/"backward" when outputs never depend on
  later/earlier tokens), used by the conformance tests;
* has a static `flops_per_image(shape, tokens, model_config)` giving its forward FLOPs for one
  image, used for compute accounting.
"""

from __future__ import annotations

from typing import Callable

from patchscale.errors import UserError

_MIXERS: dict[str, type] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator: `@register("my_mixer")` makes `model.mixer=my_mixer` select the class."""

    def add(cls: type) -> type:
        if name in _MIXERS and _MIXERS[name] is not cls:
            raise ValueError(f"a token mixer named {name!r} is already registered")
        _MIXERS[name] = cls
        return cls

    return add


def get(name: str) -> type:
    if name not in _MIXERS:
        raise UserError(f"unknown token mixer {name!r}; registered mixers: {', '.join(sorted(_MIXERS))}")
    return _MIXERS[name]


def names() -> list[str]:
    return sorted(_MIXERS)
