"""The two layouts of the block parameters, and conversion between them (`model.scan_layers`).

Unrolled: `blocks/<i>/mixer/qkv/kernel` of shape S for each layer i. Scanned:
`layer_stack/mixer/qkv/kernel` of shape (depth, *S), layer i at index i. Both hold the same
numbers, so a run started in one layout can seed (`train.init_from`) a run in the other.
Trees here are flat: {path tuple: array or ShapeDtypeStruct}.
"""

from __future__ import annotations

import jax
import numpy as np

from patchscale.partitioning import LAYER_STACK

UNROLLED = "blocks"


def _layer(leaf, i: int):
    if isinstance(leaf, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype)
    return np.asarray(leaf)[i]


def unrolled(flat: dict) -> dict:
    """Every stacked entry split into one entry per layer; other entries unchanged."""
    out = {}
    for path, leaf in flat.items():
        if path[:1] != (LAYER_STACK,):
            out[path] = leaf
            continue
        for i in range(leaf.shape[0]):
            out[(UNROLLED, str(i)) + path[1:]] = _layer(leaf, i)
    return out


def stacked(flat: dict, like: dict) -> dict:
    """The entries of unrolled `flat` arranged like `like` (whose block entries may be stacked)."""
    out = {}
    for path, leaf in like.items():
        if path[:1] != (LAYER_STACK,):
            out[path] = flat[path]
            continue
        out[path] = np.stack([np.asarray(flat[(UNROLLED, str(i)) + path[1:]]) for i in range(leaf.shape[0])])
    return out
