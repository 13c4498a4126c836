"""A sweep killed at random moments, with damaged files on top, ends with an uninterrupted sweep's results."""

import json
import random
import signal
import subprocess
import sys
import time

import pytest

from patchscale import results
from tests.conftest import REPO, write_experiment

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


@pytest.mark.heavy  # About two minutes: run with -m heavy.
def test_random_kills_and_damage_leave_the_results_unchanged(tmp_path, mnist_dir):
    exp = experiment(tmp_path, mnist_dir)
    reference = subprocess.run(sweep_command(exp, tmp_path / "reference"), cwd=REPO, capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr

    res = tmp_path / "killed"
    rng = random.Random(0)
    kills = 0
    # Kill after a random number of progress lines plus a random delay (mid-step, mid-write), at least
    # four times and until an unfinished run has two checkpoints to damage.
    while (kills < 4 or not damageable(res)) and kills < 10:
        proc = subprocess.Popen(sweep_command(exp, res), cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        wanted, seen = rng.randint(1, 4), 0
        for line in proc.stdout:
            seen += line.startswith("[train]")
            if seen == wanted:
                break
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is not None:
            break  # It finished on its own.
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    assert kills >= 3, "the sweep finished before it could be killed often enough"
    victims = damageable(res)
    assert victims, "no unfinished run with two checkpoints to damage"
    for run in victims:
        damage(run)
    final = subprocess.run(sweep_command(exp, res), cwd=REPO, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    assert "does not restore" in final.stderr and "partial line" in final.stderr
    assert outcome(res) == outcome(tmp_path / "reference")
    assert json.loads((res / results.SWEEP).read_text())["experiment"] == "kills"
