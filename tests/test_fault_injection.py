"""Faults with real training: kills (at random and inside checkpoint writes), damaged files, two processes
on one run, lost metrics, a flipped checkpoint bit, a full disk. All in the heavy tier (-m heavy)."""

import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time

import pytest

from patchscale import results
from tests.conftest import DEFAULT_EXPERIMENT, REPO, run_cli, small_overrides, train_until_then_kill, write_experiment

TIMING = ("step_time_s", "images_per_s")  # Wall-clock fields: the only ones allowed to differ.


def experiment(tmp_path, mnist_dir):
    settings = {"model.size": "pico", "model.patch_size": 16, "model.drop_path": 0.1, "data.data_dir": mnist_dir,
                "data.train_examples": 512, "data.eval_examples": 200, "data.random_shift": 2,
                "train.batch_size": 32, "train.eval_batch_size": 100, "train.steps": 40, "train.schedule": "wsd",
                "train.budgets": (0.5,), "train.warmup_epochs": 0.25, "train.log_every": 5, "train.eval_every": 10,
                "train.checkpoint_every": 5}
    return write_experiment(tmp_path / "kills.py", settings, [{"model.mixer": "attention", "seed": s} for s in (0, 1)])


def sweep_command(exp, res):
    return [sys.executable, "-m", "patchscale.cli", "sweep", str(exp), "--results", str(res), "--no-analysis"]


def outcome(res) -> dict:
    """Per run: the summary's results and every metrics record, without wall-clock fields."""
    out = {}
    for run in sorted((res / results.RUNS).iterdir()):
        summary = results.read_json(run / results.SUMMARY, required=True)
        records = [{k: v for k, v in r.items() if k not in TIMING} for r in results.read_metrics(run)]
        out[run.name] = {"test_loss": summary["test_loss"], "test_accuracy": summary["test_accuracy"],
                         "budgets": summary["budgets"], "metrics": records}
    return out


def checkpointed_steps(run) -> list[int]:
    directory = run / results.CHECKPOINTS
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if directory.is_dir() else []


def damageable(res) -> list:
    """Unfinished runs with two finalised checkpoints: the newest can be damaged and the older restored."""
    runs = res / results.RUNS
    return [run for run in runs.iterdir() if results.status(run) == "partial"
            and len(checkpointed_steps(run)) >= 2] if runs.is_dir() else []


def damage(run) -> None:
    """A partial metrics line and a garbage newest checkpoint."""
    with open(run / results.METRICS, "a") as f:
        f.write('{"step": 99, "train_lo')
    for path in (run / results.CHECKPOINTS / str(checkpointed_steps(run)[-1]) / "state").rglob("*"):
        if path.is_file():
            path.write_bytes(b"\0garbage")


def writing_checkpoint(res) -> bool:
    """Whether orbax is writing a checkpoint of some run right now (its temporary step directory exists)."""
    return any("tmp" in p.name for p in res.glob(f"{results.RUNS}/*/{results.CHECKPOINTS}/*"))


def kill_once(exp, res, rng, inside_write: bool) -> bool:
    """Start the sweep and SIGKILL it; False when it finished before it could be killed.

    At random: after a random number of progress lines plus a random delay (mid-step, mid-write).
    Inside a write: the moment a checkpoint's temporary directory appears.
    """
    proc = subprocess.Popen(sweep_command(exp, res), cwd=REPO, stdout=subprocess.DEVNULL if inside_write else
                            subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if inside_write:
        while proc.poll() is None and not writing_checkpoint(res):
            time.sleep(0.001)
    else:
        wanted, seen = rng.randint(1, 4), 0
        for line in proc.stdout:
            seen += line.startswith("[train]")
            if seen == wanted:
                break
        time.sleep(rng.uniform(0.0, 0.3))
    if proc.poll() is not None:
        proc.communicate()
        return False
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return True


@pytest.mark.heavy  # About two minutes: run with -m heavy.
def test_random_kills_and_damage_leave_the_results_unchanged(tmp_path, mnist_dir):
    exp = experiment(tmp_path, mnist_dir)
    reference = subprocess.run(sweep_command(exp, tmp_path / "reference"), cwd=REPO, capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr

    rng = random.Random(0)
    # At least four kills, every other one inside a checkpoint write, until an unfinished run has two
    # checkpoints to damage. A sweep that outruns its kills (a fast machine) is started over, not failed.
    for attempt in range(3):
        res = tmp_path / f"killed{attempt}"
        kills = 0
        while (kills < 4 or not damageable(res)) and kills < 10:
            if not kill_once(exp, res, rng, inside_write=kills % 2 == 1):
                break
            kills += 1
        if kills >= 3 and damageable(res):
            break
    else:
        pytest.fail("the sweep finished before it could be killed often enough, three times")
    victims = damageable(res)
    for run in victims:
        damage(run)
    final = subprocess.run(sweep_command(exp, res), cwd=REPO, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    assert "does not restore" in final.stderr and "partial line" in final.stderr
    assert outcome(res) == outcome(tmp_path / "reference")
    assert json.loads((res / results.SWEEP).read_text())["experiment"] == "kills"


def train_command(overrides, run_dir) -> list[str]:
    return [sys.executable, "-m", "patchscale.cli", "train", str(DEFAULT_EXPERIMENT), *overrides,
            "--workdir", str(run_dir)]


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.startswith("patchscale: error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.heavy
def test_two_processes_on_one_run_train_it_once(tmp_path, mnist_dir):
    run_dir = tmp_path / "run"
    overrides = small_overrides(mnist_dir)
    first = subprocess.Popen(train_command(overrides, run_dir), cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env={**os.environ, "PATCHSCALE_PROGRESS": "plain"})
    for line in first.stdout:
        if line.startswith("[train]"):
            break
    first.send_signal(signal.SIGSTOP)  # Paused mid-run, holding the lock: no race with the second's start-up.
    try:
        second = run_cli("train", DEFAULT_EXPERIMENT, *overrides, "--workdir", run_dir)
    finally:
        first.send_signal(signal.SIGCONT)
    first.communicate()
    assert first.returncode == 0
    assert second.returncode == 2 and f"in use by process {first.pid} on host" in error_line(second.stderr)
    steps = [r["step"] for r in results.read_metrics(run_dir) if "budget_steps" not in r]
    assert steps == [10, 20, 30, 40, 50, 60]
    assert not (run_dir / results.FAILED).exists() and not (run_dir / ".lock").exists()


@pytest.mark.heavy
def test_lost_metrics_are_refused_and_a_flipped_checkpoint_bit_falls_back(tmp_path, mnist_dir):
    overrides = small_overrides(mnist_dir)  # 60 steps, logged every 10, checkpoints every 20, two kept.
    reference = run_cli("train", DEFAULT_EXPERIMENT, *overrides, "--workdir", tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr
    killed = tmp_path / "killed"
    train_until_then_kill(overrides, killed, killed / results.CHECKPOINTS / "40")

    for how in ("emptied", "deleted"):
        run_dir = shutil.copytree(killed, tmp_path / how)
        if how == "emptied":
            (run_dir / results.METRICS).write_text("")
        else:
            (run_dir / results.METRICS).unlink()
        resumed = run_cli("train", DEFAULT_EXPERIMENT, *overrides, "--workdir", run_dir)
        line = error_line(resumed.stderr)
        assert resumed.returncode == 2 and "lacks the records of steps 10, 20, 30, 40" in line, line
        assert f"delete {run_dir / results.CHECKPOINTS}" in line
        assert not (run_dir / results.SUMMARY).exists()

    run_dir = shutil.copytree(killed, tmp_path / "flipped")
    flip_a_stored_bit(run_dir / results.CHECKPOINTS / "40")
    resumed = run_cli("train", DEFAULT_EXPERIMENT, *overrides, "--workdir", run_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert "checkpoint step 40" in resumed.stderr and "resuming" in resumed.stdout + resumed.stderr
    assert "from step 20" in resumed.stdout + resumed.stderr
    ours, theirs = (results.read_json(d / results.SUMMARY) for d in (run_dir, tmp_path / "reference"))
    assert (ours["test_loss"], ours["budgets"]) == (theirs["test_loss"], theirs["budgets"])


def flip_a_stored_bit(step_dir) -> None:
    """Flip one bit of the largest array file of the step's train state (stored uncompressed)."""
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and "metadata" not in p.name]
    target = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))


@pytest.mark.heavy
def test_a_full_disk_stops_the_sweep_with_one_line_and_marks_nothing_failed(tmp_path, mnist_dir):
    exp = experiment(tmp_path, mnist_dir)
    res = tmp_path / "res"
    limit = 64 * 1024  # Bytes per file (ulimit -f): the checkpoints are larger, the JSON files smaller.

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run(sweep_command(exp, res), cwd=REPO, capture_output=True, text=True, preexec_fn=small_files,
                          env={**os.environ, "PATCHSCALE_COMPILATION_CACHE": "off"})
    line = error_line(done.stderr)
    assert done.returncode == 74 and "EFBIG" in line, done.stderr
    assert not list(res.rglob(results.FAILED))
    assert len(list((res / results.RUNS).iterdir())) == 1  # Stopped at the first run.


@pytest.mark.heavy
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_results_directory_is_one_line(tmp_path, mnist_dir):
    exp = experiment(tmp_path, mnist_dir)
    res = tmp_path / "res"
    res.mkdir()
    res.chmod(0o555)
    try:
        done = subprocess.run(sweep_command(exp, res), cwd=REPO, capture_output=True, text=True)
    finally:
        res.chmod(0o755)
    assert done.returncode == 74 and "EACCES" in error_line(done.stderr)
