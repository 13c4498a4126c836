"""Pin a process to CPU cores before jax starts its threads (`sweep --workers`, benchmarks/workers.py).

Kept free of heavy imports: the process must pin itself first thing, since a parent that
pinned it between fork and exec (`preexec_fn`) would fork a process already running threads.
"""

from __future__ import annotations

import os

from patchscale.errors import UserError

CORES_ENV = "PATCHSCALE_CORES"  # The cores a worker's run is pinned to, e.g. "0,1".


def pin_from_environment() -> None:
    """Pin this process to the cores in PATCHSCALE_CORES (set by a `--workers` sweep for its runs)."""
    value = os.environ.get(CORES_ENV)
    if value and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {int(core) for core in value.split(",")})
        except (ValueError, OSError) as e:
            raise UserError(f"{CORES_ENV}={value!r}: cannot pin to these cores ({e})") from None
