"""Run a sweep's points one after another in this process, and the bookkeeping around them.

A run is finished when its summary.json parses (skipped; refused if its config.json differs
from the sweep's in a key that changes results), failed when its failed.json exists (skipped
unless --retry-failed; the error is in the file), partial when it has checkpoints (resumed),
or new. `sweep` (the CLI verb) takes the results directory's lock, writes the manifest
(sweep.json), and runs the points here or, with `--workers`, in child processes (workers.py).
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback

import jax
from etils import epath

from patchscale import config as config_lib
from patchscale import locking, results, storage, train
from patchscale.errors import Preempted, StorageError, UserError
from patchscale.progress import bar, console, format_duration
from patchscale.sweep import cost
from patchscale.sweep.points import Point, source_run


def lock(results_dir, index: int = 0, count: int = 1):
    """The results directory's lock (one per shard), held by process 0 while the sweep runs."""
    if jax.process_index() != 0:
        return contextlib.nullcontext()
    name = locking.LOCK if count == 1 else f"{locking.LOCK}-shard-{index}-of-{count}"
    return locking.hold(os.fspath(results_dir), "sweep's results directory", name=name)


def write_manifest(results_dir, experiment: str, points: list[Point]) -> None:
    """Record which experiment owns this results directory (fit and plot check it)."""
    path = epath.Path(results_dir) / results.SWEEP
    existing = results.read_json(path)
    if existing is not None and existing.get("experiment") != experiment:
        raise UserError(f"{results_dir} holds results of experiment {existing.get('experiment')!r},"
                        f" not {experiment!r}; use --results to choose another directory")
    if jax.process_index() != 0:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    results.write_json_atomic(path, {"experiment": experiment, "runs": [p.name for p in points]})


def check_configs(points: list[Point], results_dir) -> None:
    """Refuse a sweep over run directories that hold another config, before anything is written.

    Command-line overrides do not change run names, so `sweep X train.steps=500` over finished
    60-step runs would otherwise report them done and fit the old results.
    """
    for point in points:
        run_dir = epath.Path(results_dir) / results.RUNS / point.name
        previous = results.read_json(run_dir / results.CONFIG)
        if previous is not None:
            config_lib.check_resumable(previous, point.config.to_dict(), run_dir)


def run(points: list[Point], results_dir, experiment: str, *, retry_failed: bool = False) -> dict[str, str]:
    """Run every point not finished (and not failed, unless retrying); returns name → final status.

    A run that raises (a non-finite loss, a crash) is recorded in its failed.json and the sweep
    goes on; a user error (bad data dir, say) or an environment error (a full disk) stops the
    sweep, since it would fail every run, and marks nothing failed.
    """
    results_dir = epath.Path(results_dir)
    outcome, todo = split_done(points, results_dir, retry_failed)
    costs = [cost.cost_left(point, results_dir) for point in todo]  # Durations time this process's part only.
    durations: list[float] = []
    for k, point in enumerate(todo, 1):
        source = source_run(point)
        if source is not None and results.status(results_dir / results.RUNS / source) != "finished":
            console().log(f"[sweep] {point.name}: waits for {source} (its train.init_from), which has not finished;"
                  " run the sweep again once it has", flush=True)
            outcome[point.name] = "waiting"
            costs.pop(len(durations))  # Not run: out of the ETA.
            continue
        remaining = cost.estimate_remaining(durations, costs) if durations else None
        eta = f", sweep ETA {format_duration(remaining)}" if remaining is not None else ""
        if console().live:
            console().log(f"[sweep] run {k}/{len(todo)}: {point.name}")
            console().update("sweep", f"[sweep] {bar(k - 1, len(todo))} runs{eta or ', ETA after the first run'}")
        else:
            console().log(f"[sweep] run {k}/{len(todo)}: {point.name}{eta}", flush=True)
        started = time.time()
        outcome[point.name] = run_point(point, results_dir, experiment)
        durations.append(time.time() - started)
    console().clear("sweep")
    done = sum(s == "finished" for s in outcome.values())
    console().log(f"[sweep] {done}/{len(points)} runs finished, {sum(s == 'failed' for s in outcome.values())} failed",
          flush=True)
    return outcome


def run_point(point: Point, results_dir, experiment: str) -> str:
    """Train one point under its run's lock; "finished" or "failed" (recorded in its failed.json).

    The one code path of a run in a sweep, serial or in a `--workers` child (child.py).
    User, environment and preemption errors propagate: they would fail every run.
    """
    run_dir = epath.Path(results_dir) / results.RUNS / point.name
    is_main = jax.process_index() == 0  # Every process trains; only the first writes files.
    try:
        with train.run_lock(run_dir):
            if is_main:
                (run_dir / results.FAILED).unlink(missing_ok=True)
                results.write_json_atomic(run_dir / results.POINT, {"experiment": experiment, "name": point.name,
                                                                    "overrides": point.overrides})
            train.train_locked(point.config, run_dir)
        return "finished"
    except (UserError, Preempted, StorageError):  # Bad input, a full disk: every run would fail; stop.
        raise
    except Exception as e:  # noqa: BLE001 - a non-finite loss (TrainingError) or any crash: recorded, not fatal.
        problem = storage.environment_error(e)
        if problem is not None:
            raise problem from None
        if is_main:
            results.write_json_atomic(run_dir / results.FAILED, {
                "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(),
                "overrides": point.overrides, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        console().log(f"[sweep] {point.name} failed: {type(e).__name__}: {e}", flush=True)
        return "failed"


def split_done(points: list[Point], results_dir, retry_failed: bool) -> tuple[dict[str, str], list[Point]]:
    """(name → status of the runs to skip, the points still to run).

    Skipped: finished runs, and failed ones unless retrying."""
    results_dir = epath.Path(results_dir)
    outcome: dict[str, str] = {}
    todo = []
    for point in points:
        state = results.status(results_dir / results.RUNS / point.name)
        if state == "finished" or (state == "failed" and not retry_failed):
            outcome[point.name] = state
            console().log(f"[sweep] {point.name}: {state}, skipped", flush=True)
        else:
            todo.append(point)
    return outcome, todo


def unfinished(points: list[Point], results_dir) -> list[str]:
    """Names of the points that have neither finished nor failed (other shards, waiting stages)."""
    return [p.name for p in points
            if results.status(epath.Path(results_dir) / results.RUNS / p.name) not in ("finished", "failed")]
