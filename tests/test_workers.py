"""`patchscale sweep --workers N`: the queue, core pinning, stage order, failures, and a real sweep."""

import json
import os
import sys

import pytest

from patchscale import sweep
from patchscale.sweep import pinning, workers
from patchscale.errors import UserError
from tests.conftest import run_in_process, small_overrides, write_experiment

# A stand-in for a child run (patchscale.sweep.child): reads its pickled point from stdin like the
# real one, records when it ran and on which cores, then finishes the run (summary.json), fails
# it (exit 1), or exits with a user error (exit 2).
FAKE_RUN = '''
import json, os, pathlib, pickle, sys, time
from patchscale.sweep import pinning
pinning.pin_from_environment()  # As the child does first thing.
results, name = pathlib.Path(sys.argv[1]), sys.argv[-1]
assert pickle.load(sys.stdin.buffer).name == name
start = time.time()
time.sleep(0.3)
with open(results / "trace.jsonl", "a") as f:
    f.write(json.dumps({"name": name, "start": start, "end": time.time(),
                        "cores": sorted(os.sched_getaffinity(0))}) + "\\n")
if "fail" in name:
    sys.exit(1)
if "bad" in name:
    print("patchscale: error: data.data_dir=nowhere: no such directory")
    sys.exit(2)
run = results / "runs" / name
run.mkdir(parents=True, exist_ok=True)
(run / "summary.json").write_text(json.dumps({"test_loss": 0.5}))
'''


def points_of(tmp_path, items):
    path = write_experiment(tmp_path / "exp.py", {"model.size": "pico"}, items)
    return sweep.expand(str(path))


def fake_command(tmp_path):
    script = tmp_path / "fake_run.py"
    script.write_text(FAKE_RUN)
    return [sys.executable, str(script), str(tmp_path / "res")]


def trace(tmp_path) -> dict:
    lines = (tmp_path / "res" / "trace.jsonl").read_text().splitlines()
    return {r["name"]: r for r in map(json.loads, lines)}


def test_cores_are_split_into_contiguous_groups(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4})
    assert workers.core_groups(2) == [{0, 1, 2}, {3, 4}]
    assert workers.core_groups(5) == [{0}, {1}, {2}, {3}, {4}]
    with pytest.raises(UserError, match="may use only 5 CPU cores"):
        workers.core_groups(6)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to pin two workers")
def test_runs_overlap_on_their_own_cores_and_a_stage_waits_for_its_source(tmp_path):
    points = points_of(tmp_path, [{"model.patch_size": 16}, {"model.patch_size": 8},
                                  {"model.patch_size": 4, "train.init_from": {"model.patch_size": 16}}])
    first, second, stage = (p.name for p in points)
    outcome = workers.run(points, tmp_path / "res", fake_command(tmp_path), 2)
    assert outcome == {first: "finished", second: "finished", stage: "finished"}
    runs = trace(tmp_path)
    groups = workers.core_groups(2)
    assert runs[first]["start"] < runs[second]["end"] and runs[second]["start"] < runs[first]["end"]  # Together …
    assert {tuple(runs[first]["cores"]), tuple(runs[second]["cores"])} == {tuple(sorted(g)) for g in groups}
    assert runs[stage]["start"] >= runs[first]["end"]  # … and the stage only after its source.
    assert (tmp_path / "res" / "logs" / f"{stage}.log").exists()
    # A second sweep skips finished runs: nothing runs again.
    assert set(workers.run(points, tmp_path / "res", fake_command(tmp_path), 2).values()) == {"finished"}
    assert len(trace(tmp_path)) == 3


def test_a_failed_run_is_recorded_and_the_others_go_on_but_a_user_error_stops_the_queue(tmp_path):
    points = points_of(tmp_path, [{"model.patch_size": 16}, {"model.patch_size": 8}])
    # Rename the points so the fake run fails the first one.
    points = [sweep.Point("fail-" + points[0].name, points[0].overrides, points[0].config), points[1]]
    outcome = workers.run(points, tmp_path / "res", fake_command(tmp_path), 1)
    assert list(outcome.values()) == ["failed", "finished"]
    bad = [sweep.Point("bad-run", points[1].overrides, points[1].config),
           sweep.Point("never-run", points[1].overrides, points[1].config)]
    with pytest.raises(UserError, match="bad-run: data.data_dir=nowhere: no such directory"):
        workers.run(bad, tmp_path / "res", fake_command(tmp_path), 1)
    assert "never-run" not in trace(tmp_path)


def test_a_real_sweep_with_two_workers_trains_every_run(mnist_dir, tmp_path, capsys):
    settings = {k: v for k, v in (item.split("=", 1) for item in small_overrides(mnist_dir))}
    settings = {**settings, "train.steps": "6", "train.checkpoint_every": "100", "data.random_shift": "0"}
    path = write_experiment(tmp_path / "two.py", {k: _value(v) for k, v in settings.items()},
                            [{"model.patch_size": 16}, {"model.patch_size": 8}])
    done = run_in_process(capsys, "sweep", path, "--results", tmp_path / "res", "--workers", "2", "--no-analysis")
    assert done.returncode == 0, done.stdout + done.stderr
    names = [p.name for p in sweep.expand(str(path))]
    for name in names:
        summary = json.loads((tmp_path / "res" / "runs" / name / "summary.json").read_text())
        assert summary["steps"] == 6 and summary["test_examples"] == 1050
        assert f"{name}: finished" in done.stdout
    only = run_in_process(capsys, "sweep", path, "--results", tmp_path / "res", "--only", "nope")
    assert only.returncode == 2 and "--only 'nope': no run named nope" in only.stderr


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def test_a_child_that_cannot_pin_exits_with_a_user_error(tmp_path):
    """Exit 2 (one line) stops the queue: every other run would fail to pin the same way."""
    import subprocess

    done = subprocess.run([*workers.child_command(tmp_path / "res", "exp"), "some-run"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, pinning.CORES_ENV: "not-a-core"})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().startswith("patchscale: error: PATCHSCALE_CORES='not-a-core': cannot pin")
