"""Helpers shared by the benchmark scripts: environment facts, timing, compiled-memory readout."""

from __future__ import annotations

import datetime
import pathlib
import platform
import statistics
import time

import jax

from patchscale import results


def environment() -> dict:
    device = jax.devices()[0]
    return {
        "device_kind": device.device_kind, "platform": device.platform, "device_count": jax.device_count(),
        "cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
        "jax_version": jax.__version__, "git_commit": results.git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def memory(compiled) -> dict:
    """Bytes from XLA's memory analysis of a compiled executable (no execution needed)."""
    analysis = compiled.memory_analysis()
    return {
        "temp_bytes": int(analysis.temp_size_in_bytes),  # Activations and other scratch.
        "argument_bytes": int(analysis.argument_size_in_bytes),
        "output_bytes": int(analysis.output_size_in_bytes),
        "alias_bytes": int(analysis.alias_size_in_bytes),
    }


def time_calls(fn, repeats: int) -> dict:
    """Median and spread of `repeats` calls of `fn` (which must block until done)."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return {"median_s": statistics.median(seconds), "min_s": min(seconds), "max_s": max(seconds),
            "repeats": repeats}


def save(path: str, payload: dict) -> None:
    out = pathlib.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    results.write_json_atomic(out, payload)
