"""Two local processes run one training job through jax.distributed on localhost, like two hosts."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from tests.conftest import DEFAULT_EXPERIMENT, REPO, run_cli, small_overrides

pytestmark = pytest.mark.heavy  # Minutes of subprocess runs: `python -m pytest -m heavy`.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def overrides(mnist_dir):
    # No random shifts or drop path: those are drawn per example position, and the two
    # processes assemble the same examples in a different order within the global batch.
    return small_overrides(mnist_dir, **{"train.steps": 12, "train.checkpoint_every": 6, "train.log_every": 3,
                                         "data.random_shift": 0, "model.drop_path": 0.0, "train.batch_size": 64,
                                         "train.eval_batch_size": 100, "data.eval_examples": 300})


def run_two_processes(workdir, mnist_dir) -> list[subprocess.CompletedProcess]:
    port = free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen([sys.executable, "-m", "patchscale.cli", "train", str(DEFAULT_EXPERIMENT),
                               *overrides(mnist_dir), "--workdir", str(workdir), "--coordinator",
                               f"localhost:{port}", "--num-processes", "2", "--process-id", str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
             for i in range(2)]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def train_losses(workdir) -> list[float]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["train_loss"] for line in lines if "train_loss" in json.loads(line)]


def test_two_processes_match_one_and_resume_from_their_checkpoint(tmp_path, mnist_dir):
    single = run_cli("train", DEFAULT_EXPERIMENT, *overrides(mnist_dir), "--workdir", tmp_path / "single")
    assert single.returncode == 0, single.stderr
    reference = json.loads((tmp_path / "single" / "summary.json").read_text())

    pair = tmp_path / "pair"
    for proc in run_two_processes(pair, mnist_dir):
        assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((pair / "summary.json").read_text())
    assert summary["device_count"] == 2 and summary["process_count"] == 2
    np.testing.assert_allclose(summary["test_loss"], reference["test_loss"], rtol=1e-4)
    np.testing.assert_allclose(train_losses(pair), train_losses(tmp_path / "single"), rtol=1e-4)

    # Damage the newest checkpoint and the metrics file: both processes must fall back to the
    # step-6 checkpoint together (a disagreement would hang their collectives) and resume.
    (pair / "summary.json").unlink()
    for path in (pair / "checkpoints" / "12" / "state").rglob("*"):
        if path.is_file():
            path.write_bytes(b"\0garbage")
    with open(pair / "metrics.jsonl", "a") as f:
        f.write('{"step": 13, "train_lo')
    again = run_two_processes(pair, mnist_dir)
    assert all(p.returncode == 0 for p in again), again[0].stderr[-3000:]
    for proc in again:
        assert "resuming" in proc.stdout and "from step 6" in proc.stdout
        assert "checkpoint step 12" in proc.stderr and "does not restore" in proc.stderr
    assert "partial line" in again[0].stderr
    np.testing.assert_allclose(train_losses(pair), train_losses(tmp_path / "single"), rtol=1e-4)
    resumed = json.loads((pair / "summary.json").read_text())
    np.testing.assert_allclose(resumed["test_loss"], summary["test_loss"], rtol=1e-6)
