"""Several runs of a sweep at once on one machine (`patchscale sweep --workers N`).

Small models leave cores idle: on this project's 2-core CPU two runs pinned one per core train
1.2–1.55× as many images per second together as one run on both cores (the 16×16 study's
models at p = 2 and 1; results/bench/workers_cpu.json), though each run alone takes longer.
This module holds the queue; each point runs in its own process (child.py) pinned to its share
of the CPU cores, which is handed the already-expanded point and runs it through the serial
sweep's `runner.run_point` (point.json, failed.json, checkpoints, resume).
A stage whose source run (train.init_from) is still queued or running waits for it. Each run's
output goes to <results>/logs/<name>.log; this process prints one line per start and end.

The parent holds the results directory's lock (its children never take it) and prepares the
embedded datasets before the first run starts, so no two runs prepare one at once.
A run that fails is recorded and the others go on; a user error (exit 2), an environment error
(exit 74: a full disk) or a preemption (exit 75) in any run stops the queue, and SIGTERM or
Ctrl-C is passed on to the running runs, which checkpoint before they exit.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time

from etils import epath

from patchscale import results
from patchscale.data import datasets
from patchscale.errors import Preempted, StorageError, UserError
from patchscale.progress import console, format_duration
from patchscale.sweep.pinning import CORES_ENV
from patchscale.sweep.points import source_run
from patchscale.sweep.runner import split_done

LOGS = "logs"
POLL_S = 1.0


def child_command(results_dir, experiment: str) -> list[str]:
    """The command line of a child run, without its run name (child.py reads the point from stdin)."""
    return [sys.executable, "-m", "patchscale.sweep.child", os.fspath(results_dir), experiment]


def prepare_data(points) -> None:
    """Prepare every embedded dataset the points read, once, before any worker starts."""
    wanted = {(p.config.data.name, p.config.data.data_dir) for p in points}
    for name, data_dir in sorted(wanted, key=str):
        if name in datasets.EMBEDDED:
            datasets.EMBEDDED[name].prepare(data_dir)


def core_groups(workers: int) -> list[set[int] | None]:
    """The CPU cores of each worker: this process's cores split into `workers` contiguous groups.

    None per worker where the platform cannot pin (no os.sched_setaffinity): runs then share all cores.
    """
    if workers < 1:
        raise UserError(f"--workers {workers}: expected at least 1")
    if not hasattr(os, "sched_setaffinity"):
        return [None] * workers
    cores = sorted(os.sched_getaffinity(0))
    if workers > len(cores):
        raise UserError(f"--workers {workers}: this process may use only {len(cores)} CPU cores")
    size, extra = divmod(len(cores), workers)
    groups, start = [], 0
    for k in range(workers):
        end = start + size + (k < extra)
        groups.append(set(cores[start:end]))
        start = end
    return groups


def _describe(cores: set[int] | None) -> str:
    return "all cores" if cores is None else "cores " + ",".join(map(str, sorted(cores)))


class _Running:
    """One child process: its point, cores, log file and start time.

    The child gets the point itself (name, overrides, resolved config) pickled on its stdin, so
    it neither re-imports the experiment nor re-validates the sweep: it trains what the parent
    expanded, exactly.
    """

    def __init__(self, point, command: list[str], cores: set[int] | None, results_dir: epath.Path):
        self.point, self.cores, self.started = point, cores, time.time()
        self.log = open(os.fspath(results_dir / LOGS / f"{point.name}.log"), "a")
        env = {**os.environ, "PATCHSCALE_PROGRESS": "plain"}
        if cores is not None:  # The child pins itself (pinning.pin_from_environment) before jax starts.
            env[CORES_ENV] = ",".join(map(str, sorted(cores)))
        self.process = subprocess.Popen([*command, point.name], stdin=subprocess.PIPE, stdout=self.log,
                                        stderr=subprocess.STDOUT, env=env)
        try:
            self.process.stdin.write(pickle.dumps(point))
            self.process.stdin.close()
        except BrokenPipeError:  # The child died before reading: its exit code says why.
            pass


def run(points, results_dir, command_prefix: list[str], workers: int, *, retry_failed: bool = False
        ) -> dict[str, str]:
    """Run the unfinished `points` with up to `workers` processes at once; returns name → final status.

    `command_prefix` is the child's command line without its run name (`child_command`).
    """
    results_dir = epath.Path(results_dir)
    groups = core_groups(workers)
    outcome, queue = split_done(points, results_dir, retry_failed)
    (results_dir / LOGS).mkdir(parents=True, exist_ok=True)
    running: dict[int, _Running] = {}  # Worker index → its run.
    total, started = len(queue), 0
    previous = signal.signal(signal.SIGTERM, _raise_preempted)
    try:
        while queue or running:
            for index, child in list(running.items()):
                code = child.process.poll()
                if code is not None:
                    del running[index]
                    child.log.close()
                    outcome[child.point.name] = _finished(child, code, results_dir)
            queued = {p.name for p in queue} | {c.point.name for c in running.values()}
            for point in list(queue):
                source = source_run(point)
                if source is not None and source in queued:
                    continue  # Its source stage has not finished yet.
                if source is not None and results.status(results_dir / results.RUNS / source) != "finished":
                    queue.remove(point)
                    outcome[point.name] = "waiting"
                    console().log(f"[sweep] {point.name}: waits for {source} (its train.init_from), which has"
                                  " not finished; run the sweep again once it has", flush=True)
                    continue
                free = [k for k in range(workers) if k not in running]
                if not free:
                    break
                queue.remove(point)
                started += 1
                log_path = results_dir / LOGS / f"{point.name}.log"
                running[free[0]] = _Running(point, command_prefix, groups[free[0]],
                                            results_dir)
                console().log(f"[sweep] run {started}/{total}: {point.name} on {_describe(groups[free[0]])}"
                              f" (output: {log_path})", flush=True)
            if running:
                time.sleep(POLL_S)
            elif queue:  # Everything left waits for a source that is neither running nor queued.
                for point in queue:
                    outcome[point.name] = "waiting"
                queue.clear()
    except (Preempted, KeyboardInterrupt, UserError, StorageError):
        _stop(running)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    done = sum(s == "finished" for s in outcome.values())
    console().log(f"[sweep] {done}/{len(points)} runs finished, {sum(s == 'failed' for s in outcome.values())}"
                  " failed", flush=True)
    return outcome


def _raise_preempted(signum, frame):
    raise Preempted("SIGTERM: the running runs were told to checkpoint and stop; rerun the sweep to resume")


def _finished(child: _Running, code: int, results_dir: epath.Path) -> str:
    """Report one child's end; a user error or a preemption stops the whole queue."""
    name = child.point.name
    took = format_duration(time.time() - child.started)
    if code == 2:
        raise UserError(f"{name}: {_last_line(results_dir / LOGS / f'{name}.log')}")
    if code == StorageError.EXIT_CODE:
        raise StorageError(f"{name}: {_last_line(results_dir / LOGS / f'{name}.log')}")
    if code == Preempted.EXIT_CODE:
        raise Preempted(f"{name} was preempted (checkpoint saved); rerun the sweep to resume")
    state = results.status(results_dir / results.RUNS / name)
    if code == 0 and state == "finished":
        summary = results.read_json(results_dir / results.RUNS / name / results.SUMMARY) or {}
        loss = summary.get("test_loss")
        console().log(f"[sweep] {name}: finished in {took}" + (f", test loss {loss:.4f}" if loss is not None else ""),
                      flush=True)
        return "finished"
    console().log(f"[sweep] {name}: failed after {took} (exit code {code}); see {results_dir / LOGS / f'{name}.log'}",
                  flush=True)
    return "failed"


def _last_line(path: epath.Path) -> str:
    lines = [line for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return lines[-1].removeprefix("patchscale: error: ") if lines else "the run exited with a user error"


def _stop(running: dict[int, _Running]) -> None:
    """SIGTERM every running child (each checkpoints and exits) and wait for them."""
    for child in running.values():
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    for child in running.values():
        try:
            child.process.wait(timeout=600)
        except subprocess.TimeoutExpired:
            child.process.kill()
        child.log.close()
