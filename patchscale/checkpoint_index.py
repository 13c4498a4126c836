"""What each checkpoint was saved with: a digest of its arrays and the metrics history it needs.

`<run>/checkpoint_index.json` maps each kept step to

* `digest`: integer checksums of every array of the train state, computed on the device
  (integer sums are exact in any order, so every mesh gets the same value). A restored step
  whose arrays give another digest (a flipped bit on disk) is refused like a step that does not
  read, and the run falls back to the step before.
* `log_steps`, `budget_steps`: the steps of the metrics records written before the save. A run
  resumes from step s only when metrics.jsonl still holds them, so no history is lost silently
  (a summary would otherwise drop every budget evaluated before s).
* `elapsed_s`, `segments`: the run's wall time up to the save, summed over the processes
  (segments) that trained it so far, each counted up to the checkpoint the next one resumed
  from (work lost to a kill is counted once, when it is redone). summary.json's `wall_time_s`
  and `wall_time_segments` continue them, so a resumed run reports its whole training time.
  They are absent where the time is not known: a step saved before they were recorded, and every
  step of a run that resumed from one.

Steps saved before this file existed have no entry and are restored unchecked.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from patchscale import results

INDEX = "checkpoint_index.json"


# ----------------------------------------------------------------------------- digests
def _words(x):
    """The array's bits as a flat uint32 vector."""
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32).ravel()
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
    return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32).ravel()


@jax.jit
def _checksums(leaves):
    """Per leaf: the plain sum of its words (any one flipped bit changes it) and a position-weighted one."""
    sums = []
    for x in leaves:
        w = _words(x)
        weights = jnp.arange(w.size, dtype=jnp.uint32) * jnp.uint32(2654435761) + jnp.uint32(1)
        sums.append(jnp.stack([jnp.sum(w, dtype=jnp.uint32), jnp.sum(w * weights, dtype=jnp.uint32)]))
    return jnp.stack(sums)


def digest(state) -> str:
    """A digest of the state's values and structure, the same on every process and mesh."""
    leaves, treedef = jax.tree.flatten(state)
    sums = _checksums(leaves)
    host = np.asarray(sums.addressable_data(0) if hasattr(sums, "addressable_data") else sums)
    shapes = repr([(tuple(x.shape), str(x.dtype)) for x in leaves]) + str(treedef)
    return hashlib.sha256(host.astype("<u4").tobytes() + shapes.encode()).hexdigest()[:32]


# ----------------------------------------------------------------------------- the index file
def _read(run_dir) -> dict:
    return results.read_json(epath.Path(run_dir) / INDEX) or {}


def entry(run_dir, step: int) -> dict | None:
    return _read(run_dir).get(str(step))


@dataclasses.dataclass(frozen=True)
class Elapsed:
    """Wall time of a run's segments; `segments` None: an earlier segment's time is not known."""

    seconds: float = 0.0
    segments: int | None = 0

    def plus(self, seconds: float) -> Elapsed:
        """With one more segment of `seconds` (only that one when the earlier time is not known)."""
        if self.segments is None:
            return Elapsed(seconds, None)
        return Elapsed(self.seconds + seconds, self.segments + 1)

    def summary(self) -> dict:
        return {"wall_time_s": self.seconds, "wall_time_segments": self.segments}


def elapsed(run_dir, step: int) -> Elapsed:
    """The wall time recorded with checkpoint `step`; unknown where none was (no entry, or no time in it)."""
    saved = entry(run_dir, step) or {}
    if "elapsed_s" not in saved:
        return Elapsed(0.0, None)
    return Elapsed(float(saved["elapsed_s"]), int(saved["segments"]))


def record(run_dir, step: int, state_digest: str, records: list[dict], kept_steps,
           wall: Elapsed | None = None) -> None:
    """Write the entry of a step about to be saved (before orbax writes it); drop entries of steps gone."""
    index = {k: v for k, v in _read(run_dir).items() if int(k) in set(kept_steps)}
    index[str(step)] = {"digest": state_digest,
                        "log_steps": sorted(r["step"] for r in records if "budget_steps" not in r),
                        "budget_steps": sorted(r["step"] for r in records if "budget_steps" in r)}
    if wall is not None and wall.segments is not None:
        index[str(step)].update(elapsed_s=wall.seconds, segments=wall.segments)
    results.write_json_atomic(epath.Path(run_dir) / INDEX, index)


def digest_mismatch(run_dir, step: int, state_digest: str) -> bool:
    saved = entry(run_dir, step)
    return saved is not None and saved.get("digest") != state_digest


def missing_history(run_dir, step: int, records: list[dict]) -> str | None:
    """None when metrics.jsonl holds every record written before checkpoint `step`; else what is missing."""
    saved = entry(run_dir, step)
    if saved is None:  # Saved before the index existed: only an empty history is known to be wrong.
        return None if records or step == 0 else "every record (the file is empty or missing)"
    present_log = collections.Counter(r["step"] for r in records if "budget_steps" not in r and r["step"] <= step)
    present_budget = collections.Counter(r["step"] for r in records if "budget_steps" in r and r["step"] <= step)
    lost_log = sorted((collections.Counter(saved["log_steps"]) - present_log).elements())
    lost_budget = sorted((collections.Counter(saved["budget_steps"]) - present_budget).elements())
    if not lost_log and not lost_budget:
        return None
    parts = []
    if lost_log:
        parts.append(f"the records of {_steps(lost_log)}")
    if lost_budget:
        parts.append(f"the budget evaluations branched at {_steps(lost_budget)}")
    return " and ".join(parts)


def _steps(steps: list[int]) -> str:
    shown = ", ".join(map(str, steps[:6]))
    return f"step{'s' if len(steps) > 1 else ''} {shown}" + (f" and {len(steps) - 6} more" if len(steps) > 6 else "")
