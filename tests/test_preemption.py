"""SIGTERM (preemption): a run saves a checkpoint and exits 75; rerunning resumes; a sweep loses no finished run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from patchscale.results import read_metrics
from tests.conftest import DEFAULT_EXPERIMENT, REPO, run_cli, small_overrides

PREEMPTED = 75


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "patchscale.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env=dict(os.environ))


def wait_for(path, timeout=300.0):
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def long_run(mnist_dir, **extra):
    # Many short steps, logged every step, periodic checkpoints far apart: a SIGTERM lands mid-run.
    return small_overrides(mnist_dir, **{"train.steps": 600, "train.log_every": 1, "train.checkpoint_every": 1000,
                                         **extra})


@pytest.mark.heavy  # CI time; run with -m heavy.
def test_sigterm_saves_a_checkpoint_and_the_rerun_resumes(tmp_path, mnist_dir):
    run_dir = tmp_path / "run"
    proc = start("train", DEFAULT_EXPERIMENT, *long_run(mnist_dir), "--workdir", run_dir)
    wait_for(run_dir / "metrics.jsonl")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == PREEMPTED, err[-2000:]
    assert "preempted: SIGTERM at step" in err and "run the same command again" in err
    assert not (run_dir / "summary.json").exists()
    step = int(err.split("SIGTERM at step ")[1].split("/")[0])
    assert (run_dir / "checkpoints" / str(step)).is_dir() and step < 600  # Saved on the spot, not periodically.

    again = run_cli("train", DEFAULT_EXPERIMENT, *long_run(mnist_dir), "--workdir", run_dir)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming {run_dir} from step {step}" in again.stdout
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 600

    # Every step's record, the preempted step's included, as in an uninterrupted run.
    reference = run_cli("train", DEFAULT_EXPERIMENT, *long_run(mnist_dir), "--workdir", tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr[-2000:]
    strip = lambda rs: [(r["step"], r.get("train_loss"), r.get("test_loss")) for r in rs]  # noqa: E731
    assert strip(read_metrics(run_dir)) == strip(read_metrics(tmp_path / "reference"))


@pytest.mark.heavy
def test_sigterm_stops_a_sweep_without_touching_finished_runs(tmp_path, mnist_dir):
    experiment = tmp_path / "two.py"
    overrides = dict(item.split("=", 1) for item in long_run(mnist_dir))
    experiment.write_text(f'''
from patchscale.config import apply_overrides
from patchscale.defaults import base_config


def get_config(arg=None):
    c = base_config()
    apply_overrides(c, {[f"{k}={v}" for k, v in overrides.items()]!r})
    return c


def get_sweep():
    return [{{"model.patch_size": 16, "train.steps": 20}}, {{"model.patch_size": 8}}]
''')
    results = tmp_path / "res"
    first, second = results / "runs" / "attention-pico-p16-s0", results / "runs" / "attention-pico-p8-s0"
    proc = start("sweep", experiment, "--results", results)
    wait_for(second / "metrics.jsonl")
    finished = (first / "summary.json").read_text()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == PREEMPTED, err[-2000:]
    assert not (second / "failed.json").exists() and not (second / "summary.json").exists()
    assert (first / "summary.json").read_text() == finished
    assert list((second / "checkpoints").iterdir())  # The interrupted run keeps its progress.


def test_a_sigterm_during_the_last_evaluation_finishes_the_run_and_still_stops(tmp_path, mnist_dir, capsys,
                                                                                monkeypatch):
    """A sweep must stop on a SIGTERM that lands after the last step's check (the final evaluation)."""
    from patchscale import train
    from tests.conftest import run_in_process

    evaluate = train.Trainer.evaluate

    def evaluate_then_signal(self, params):
        os.kill(os.getpid(), signal.SIGTERM)  # Lands in the final evaluation, after every step's check.
        return evaluate(self, params)

    monkeypatch.setattr(train.Trainer, "evaluate", evaluate_then_signal)
    run_dir = tmp_path / "run"
    done = run_in_process(capsys, "train", DEFAULT_EXPERIMENT, *small_overrides(mnist_dir, **{"train.steps": 4}),
                          "--workdir", run_dir)
    assert done.returncode == PREEMPTED and "the run finished (summary written)" in done.stderr
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 4
