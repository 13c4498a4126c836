"""Helpers shared by the benchmark scripts (timing, compiled memory and environment live in patchscale.bench)."""

from __future__ import annotations

import pathlib

from patchscale import results
from patchscale.bench import environment, memory, time_calls

__all__ = ["environment", "memory", "save", "time_calls"]


def save(path: str, payload: dict) -> None:
    out = pathlib.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    results.write_json_atomic(out, payload)
