"""Long sequences a segment at a time: the shared mechanism behind `model.token_segment`.

A per-token computation (the channel mixer) or a causal one that summarises what it has seen
in a small carry (the Mamba-2 layer: SSM state and last conv inputs) can run over a sequence
in pieces of `segment` tokens, each piece rematerialised. The backward pass then keeps one
carry per piece and recomputes one piece's internals at a time, instead of holding the
internals of the whole sequence. The tail is padded; its outputs are dropped, which is exact
for per-token and causal computations.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from patchscale.partitioning import split_count


def streams(length: int, segment: int) -> bool:
    """Whether a sequence of `length` tokens goes through in segments: segments are on, the
    sequence is longer than one, and the token axis is not split over devices (a scan over
    segments would gather it)."""
    return bool(segment) and length > segment and split_count("act_length") == 1


def over_segments(step: Callable, x: jax.Array, segment: int, carry: Any = ()) -> jax.Array:
    """`step(carry, piece) -> (carry, out)` over the `segment`-token pieces of x (B, L, D), each
    rematerialised; the outputs (B, segment, D') are put back together as (B, L, D')."""
    b, length, width = x.shape
    pad = -length % segment
    pieces = jnp.moveaxis(jnp.pad(x, ((0, 0), (0, pad), (0, 0))).reshape(b, -1, segment, width), 1, 0)
    _, out = jax.lax.scan(jax.checkpoint(step, prevent_cse=False), carry, pieces)
    return jnp.moveaxis(out, 0, 1).reshape(b, -1, out.shape[-1])[:, :length]
