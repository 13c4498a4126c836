"""What produced a result: code commit, library versions, device, CPU and XLA flags.

A run is reproducible bit for bit only on the same software and the same kind of machine:
XLA:CPU picks kernels by the CPU's vector features (AVX-512 or not), so a rerun elsewhere can
differ in the last bits, which long training amplifies (docs/reproducibility.md). Every summary,
benchmark and fit records these facts so a difference can be traced to its cause.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "tensorflow-datasets", "numpy",
            "scipy", "ml-collections", "pillow")
CPU_FLAGS_OF_INTEREST = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_bf16", "amx_tile",
                         "asimd", "sve")


def git_commit() -> str:
    """The commit of the patchscale checkout in use (with `-dirty`), or 'unknown' for an installed copy."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def versions() -> dict[str, str]:
    """Installed version of every package whose numerics or file formats a result depends on."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["python"] = platform.python_version()
    return out


def cpu() -> dict[str, object]:
    """Host CPU model, core counts and the vector features XLA:CPU's kernels depend on."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:  # Not Linux: the model from platform is what there is.
        pass
    # The cores this process may run on (a `--workers` run is pinned to its share): XLA:CPU splits
    # its work over as many threads, and another split rounds float32 sums differently.
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model, "cores": os.cpu_count(), "cores_usable": usable, "machine": platform.machine(),
            "features": sorted(f for f in CPU_FLAGS_OF_INTEREST if f in flags)}


def host() -> dict[str, object]:
    """Commit, versions and CPU: enough for analyses that run no model (fits), without importing jax."""
    return {"git_commit": git_commit(), "versions": versions(), "cpu": cpu()}


def environment() -> dict[str, object]:
    """Everything above plus the device JAX runs on and the XLA flags in effect."""
    import jax

    device = jax.devices()[0]
    return {**host(), "backend": jax.default_backend(), "device_kind": device.device_kind,
            "device_count": jax.device_count(), "process_count": jax.process_count(),
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "hostname_hash": _host_id()}


def _host_id() -> str:
    """A short, non-identifying tag of the machine (so results from one box can be grouped)."""
    return hashlib.sha256(platform.node().encode()).hexdigest()[:8]
