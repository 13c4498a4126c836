"""JAX's persistent compilation cache for `train` and `sweep`: compile each executable once per machine.

A sweep compiles the same train and eval steps for every seed of a point (the seed is a value
in the train state, not a constant of the program), and a rerun of a sweep compiles them all
again; with the cache a later compile is a file read. Executables are keyed by JAX on the
program, the compile options, the backend and the jaxlib version, so a stale entry is never used.

`PATCHSCALE_COMPILATION_CACHE` chooses the directory (default `$XDG_CACHE_HOME/patchscale/xla`,
i.e. ~/.cache/patchscale/xla); `off` disables it. Benchmarks never use it: they time compilation.
"""

from __future__ import annotations

import os
import pathlib

ENV = "PATCHSCALE_COMPILATION_CACHE"


def directory() -> pathlib.Path | None:
    """Where the cache lives, or None when it is turned off."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() in ("off", "0", "none", "false"):
        return None
    if value:
        return pathlib.Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "patchscale" / "xla"


def enable() -> pathlib.Path | None:
    """Point JAX at the cache (before the first compile); returns the directory used, if any."""
    import jax

    path = directory()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # A read-only home, say: run without the cache rather than fail.
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
