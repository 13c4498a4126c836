"""The Mamba-2 state-space duality (SSD) scan in pure JAX: chunked (fast) and sequential (reference).

Per head h, with state S (headdim × d_state) starting at zero:

    S_t = exp(dt_t · A_h) · S_{t-1} + dt_t · x_t B_tᵀ,        y_t = S_t C_t

Shapes: x (batch, length, heads, headdim); dt (batch, length, heads), already positive;
A (heads,), negative; B, C (batch, length, groups, d_state) with heads divisible by groups
(head h reads group h // (heads / groups)); y like x. The D skip term is not included.

`ssd_chunked` is the matmul form of the Mamba-2 paper: within chunks of Q tokens the outputs
come from a masked Q×Q decay matrix (quadratic in Q, linear in length); each chunk's final
state is passed to the next by a short `lax.scan`; each chunk then adds the contribution of
its incoming state. Cumulative sums of dt·A, decays and states are float32 whatever the
input dtype; the big matmuls run in the input dtype with float32 accumulation.

Passing states across chunks has two forms: `"scan"` (a sequential `lax.scan` over chunks, the
default) and `"matmul"`, which writes the same recurrence as a lower-triangular chunk×chunk
decay matrix times the chunk states. The matmul form has no sequential dependency: on an
accelerator it replaces a loop of tiny kernels (one launch per chunk and layer, which dominated
Adventurer's step at 50k tokens on an H200) by one product, and when the token axis is split
over the `sequence` mesh axis each device computes its own chunks and only the small per-chunk
states (heads × headdim × d_state each) travel between devices. Its cost grows with the
square of the chunk count, so it is meant for at most a few hundred chunks (`mamba2.py`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from patchscale.partitioning import constrain

F32 = jnp.float32


def _check_shapes(x, dt, A, B, C) -> tuple[int, int]:
    batch, length, heads, _ = x.shape
    groups = B.shape[2]
    if dt.shape != (batch, length, heads) or A.shape != (heads,):
        raise ValueError(f"dt {dt.shape} and A {A.shape} do not match x {x.shape}")
    if B.shape != C.shape or B.shape[:2] != (batch, length) or heads % groups:
        raise ValueError(f"B {B.shape} / C {C.shape} do not match x {x.shape} (heads divisible by groups)")
    return heads // groups, groups


def _pass_states(chunk_log_decay, chunk_states, form: str, initial=None):
    """The state entering each chunk: incoming[c] = Σ_{s<c} exp(Σ_{s<m<c} log_decay[m]) · states[s],
    plus the decayed `initial` state when given; returns (incoming, final state).

    chunk_log_decay (b, c, g, k) is each chunk's total dt·A; chunk_states (b, c, g, k, p, n).
    """
    if form == "matmul":
        # The initial state enters as a chunk before the first and the final state is what would
        # enter a chunk after the last, so both come out of the same lower-triangular product.
        batch = chunk_states.shape[0]
        zero_state = jnp.zeros_like(chunk_states[:, :1])
        first = zero_state if initial is None else initial[:, None].astype(chunk_states.dtype)
        states = jnp.concatenate([first, chunk_states, zero_state], axis=1)
        zero_decay = jnp.zeros((batch, 1) + chunk_log_decay.shape[2:], chunk_log_decay.dtype)
        log_decay = jnp.concatenate([zero_decay, chunk_log_decay, zero_decay], axis=1)
        incoming = _matmul_pass(log_decay, states)
        return incoming[:, 1:-1], incoming[:, -1]

    def carry(state, inputs):
        decay_c, new_c = inputs
        return decay_c[..., None, None] * state + new_c, state

    init = jnp.zeros_like(chunk_states[:, 0]) if initial is None else initial.astype(chunk_states.dtype)
    final, incoming = jax.lax.scan(carry, init, (jnp.moveaxis(jnp.exp(chunk_log_decay), 1, 0),
                                                 jnp.moveaxis(chunk_states, 1, 0)))
    return jnp.moveaxis(incoming, 0, 1), final


def _matmul_pass(chunk_log_decay, chunk_states):
    """incoming[t] = Σ_{s<t} exp(Σ_{s<m<t} log_decay[m]) · states[s] as one (c × c) product, no sequential scan."""
    # weights[t, s] = exp(Σ_{s<m<t} log_decay[m]) for s < t, else 0. The sums are built by a
    # masked cumulative sum (no differences of long cumulative sums, which lose precision).
    log_decay = jnp.moveaxis(chunk_log_decay, 1, -1)  # (b, g, k, c)
    c = log_decay.shape[-1]
    strictly_lower = jnp.tril(jnp.ones((c, c), bool), k=-1)
    rows = jnp.broadcast_to(log_decay[..., :, None], log_decay.shape + (c,))  # [i, j] = log_decay[i]
    inclusive = jnp.cumsum(jnp.where(strictly_lower, rows, 0.0), axis=-2)
    # inclusive[i, j] = Σ_{j<m≤i} log_decay[m]; the state entering chunk t needs row t-1.
    between = jnp.pad(inclusive, [(0, 0)] * 3 + [(1, 0), (0, 0)])[..., :-1, :]
    weights = jnp.where(strictly_lower, jnp.exp(jnp.where(strictly_lower, between, 0.0)), 0.0)
    return jnp.einsum("bgkts,bsgkpn->btgkpn", weights, chunk_states)


def ssd_sequential(x, dt, A, B, C):
    """Reference: the recurrence one token at a time with `lax.scan` (float32 state)."""
    per_group, _ = _check_shapes(x, dt, A, B, C)
    Bh = jnp.repeat(B, per_group, axis=2).astype(F32)  # (b, l, h, n)
    Ch = jnp.repeat(C, per_group, axis=2).astype(F32)
    dt32 = dt.astype(F32)

    def step(state, inputs):  # state (b, h, p, n)
        x_t, dt_t, B_t, C_t = inputs
        decay = jnp.exp(dt_t * A.astype(F32))  # (b, h)
        state = decay[..., None, None] * state + jnp.einsum("bh,bhp,bhn->bhpn", dt_t, x_t.astype(F32), B_t)
        return state, jnp.einsum("bhpn,bhn->bhp", state, C_t)

    batch, _, heads, headdim = x.shape
    init = jnp.zeros((batch, heads, headdim, B.shape[-1]), F32)
    seq_first = lambda a: jnp.moveaxis(a, 1, 0)
    _, y = jax.lax.scan(step, init, (seq_first(x), seq_first(dt32), seq_first(Bh), seq_first(Ch)))
    return jnp.moveaxis(y, 0, 1).astype(x.dtype)


def _segment_sums(a):
    """a (..., Q) → (..., Q, Q) with [i, j] = a[j+1] + … + a[i] for i ≥ j and -inf above the diagonal."""
    q = a.shape[-1]
    cumsum = jnp.cumsum(a, axis=-1)
    diff = cumsum[..., :, None] - cumsum[..., None, :]
    return jnp.where(jnp.tril(jnp.ones((q, q), bool)), diff, -jnp.inf)


STATE_PASSING = ("scan", "matmul")
CHUNKS = ("act_batch", "act_length")  # Leading axes of every chunked tensor: the token axis is the chunk axis.


def ssd_chunked(x, dt, A, B, C, *, chunk_size: int, state_passing: str = "scan", chunk_multiple: int = 1,
                initial_state=None):
    """The chunked SSD algorithm; any length (the tail chunk is padded with dt = 0, which is inert).

    `chunk_multiple` pads the number of chunks to a multiple (the size of the sequence mesh
    axis), so the chunk axis splits evenly over devices.

    With `initial_state` (batch, heads, headdim, d_state), the state left by earlier tokens,
    returns (y, final state) instead of y: a long sequence can then be processed one segment
    at a time (the streamed Mamba-2 layer).
    """
    if state_passing not in STATE_PASSING:
        raise ValueError(f"state_passing={state_passing!r}: expected one of {STATE_PASSING}")
    per_group, groups = _check_shapes(x, dt, A, B, C)
    batch, length, heads, headdim = x.shape
    q = chunk_size
    pad = -length % (q * chunk_multiple)
    if pad:  # dt = 0 means no decay and no input: padded steps leave the state unchanged.
        widths = lambda a: [(0, 0), (0, pad)] + [(0, 0)] * (a.ndim - 2)
        x, dt, B, C = (jnp.pad(a, widths(a)) for a in (x, dt, B, C))
    chunks = (length + pad) // q
    dtype = x.dtype

    # Chunked views; heads split as (groups, heads per group) so B and C are never repeated.
    def chunked(a, *shape):
        return constrain(a.reshape(batch, chunks, *shape), CHUNKS + (None,) * len(shape))

    xc = chunked(x, q, groups, per_group, headdim)
    Bc = chunked(B, q, groups, -1)
    Cc = chunked(C, q, groups, -1)
    dtc = chunked(dt.astype(F32), q, groups, per_group)
    a = dtc * A.astype(F32).reshape(groups, per_group)  # dt·A ≤ 0, (b, c, q, g, k)
    a = jnp.moveaxis(a, 2, -1)  # (b, c, g, k, q)
    a_cumsum = jnp.cumsum(a, axis=-1)
    xdt = (xc * dtc[..., None].astype(dtype))  # dt folded into x: (b, c, q, g, k, p)

    # 1. Within each chunk: y = (C Bᵀ ∘ decay) (dt·x). Every contraction is a plain batched
    #    matmul over one index: no intermediate larger than Q×Q per head is ever formed.
    decay = jnp.exp(_segment_sums(a))  # (b, c, g, k, q, q): [.., i, j] target i, source j
    scores = jnp.einsum("bcign,bcjgn->bcgij", Cc, Bc, preferred_element_type=F32)
    weights = (scores[:, :, :, None] * decay).astype(dtype)  # (b, c, g, k, i, j)
    y_diag = jnp.einsum("bcgkij,bcjgkp->bcigkp", weights, xdt, preferred_element_type=F32)

    # 2. Each chunk's final state from its own inputs.
    to_end = jnp.exp(a_cumsum[..., -1:] - a_cumsum)  # (b, c, g, k, q)
    x_to_end = xdt * jnp.moveaxis(to_end, -1, 2)[..., None].astype(dtype)  # (b, c, q, g, k, p)
    chunk_states = jnp.einsum("bcjgn,bcjgkp->bcgkpn", Bc, x_to_end, preferred_element_type=F32)

    # 3. Pass states across chunks (a linear recurrence over chunks, in float32).
    initial = None if initial_state is None else initial_state.reshape(batch, groups, per_group, headdim, -1)
    incoming, final = _pass_states(a_cumsum[..., -1], chunk_states, state_passing, initial)  # (b, c, g, k, p, n)

    # 4. Each position's output from the state entering its chunk, decayed to the position.
    from_start = jnp.exp(a_cumsum)  # (b, c, g, k, q)
    y_off = jnp.einsum("bcign,bcgkpn->bcigkp", Cc, incoming.astype(dtype), preferred_element_type=F32)
    y_off = y_off * jnp.moveaxis(from_start, -1, 2)[..., None]

    y = (y_diag + y_off).reshape(batch, chunks * q, heads, headdim)[:, :length].astype(x.dtype)
    if initial_state is None:
        return y
    return y, final.reshape(batch, heads, headdim, -1)
