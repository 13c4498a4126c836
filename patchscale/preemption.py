"""Notice SIGTERM (what TPU VMs and cloud schedulers send before preemption) between train steps.

The signal handler only sets a flag; the training loop asks `requested(step)` after every step
and, when it says yes, saves a checkpoint and stops with `Preempted` (exit code 75). With
several processes all of them must stop at the same step, so the flags are combined across
processes; where JAX's distributed runtime has its own preemption notice (TPU VMs), orbax's
`reached_preemption` is consulted as well.
"""

from __future__ import annotations

import signal
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils


class PreemptionWatch:
    def __init__(self, checkpoint_manager=None):
        self._flag = threading.Event()
        self._manager = checkpoint_manager
        self._previous = None

    def __enter__(self) -> "PreemptionWatch":
        if threading.current_thread() is threading.main_thread():  # Signals reach the main thread only.
            self._previous = signal.signal(signal.SIGTERM, lambda signum, frame: self._flag.set())
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def requested(self, step: int) -> bool:
        local = self._flag.is_set()
        if jax.process_count() > 1:
            local = bool(np.any(multihost_utils.process_allgather(np.asarray(local))))
        if not local and self._manager is not None and hasattr(self._manager, "reached_preemption"):
            local = bool(self._manager.reached_preemption(step))
        return local
