"""What a sweep's runs will cost: analytic FLOPs for the ETA, and the dry run's table.

`patchscale sweep --dry-run` prints, per run, parameters, tokens, training FLOPs, (unless
--no-compile) the compiled step's activation memory per image, and where the run stands in the
results directory; then what is left of the sweep, without training anything.
"""

from __future__ import annotations

import collections
from typing import Any

from etils import epath
from flax import nnx

from patchscale import partitioning, results
from patchscale.models import build_model
from patchscale.program import Program, param_counts
from patchscale.progress import format_duration
from patchscale.run_spec import RunSpec
from patchscale.sweep.points import Point


def run_cost(point: Point) -> float:
    """Analytic training FLOPs of a run (for the sweep ETA); 1.0 when the dataset is not known yet."""
    try:
        return RunSpec.from_config(point.config).train_flops_total
    except Exception:  # noqa: BLE001 - only the ETA depends on it; the run itself reports real errors.
        return 1.0


def cost_left(point: Point, results_dir) -> float:
    """Training FLOPs still to spend on a run about to train (new, partial, or failed and retried)."""
    try:
        spec = RunSpec.from_config(point.config)
    except Exception:  # noqa: BLE001 - as in run_cost.
        return 1.0
    run_dir = epath.Path(results_dir) / results.RUNS / point.name
    return _fraction_left(run_dir, spec.total_steps) * spec.train_flops_total


def estimate_remaining(durations: list[float], costs: list[float]) -> float | None:
    """Seconds left for runs len(durations): from the finished runs' durations and every run's FLOPs.

    A run costs a fixed overhead (compile, evaluation), taken as the shortest run so far, plus
    time in proportion to its training FLOPs: per-run averages would be far off in a patch sweep,
    where one p = 1 run costs more than all the p ≥ 4 runs together.
    """
    done, left = costs[:len(durations)], costs[len(durations):]
    overhead = min(durations)
    if sum(done) < 0.01 * sum(left):  # Only cheap runs (baselines) so far: no rate to extrapolate yet.
        return None
    seconds_per_flop = max(sum(durations) - overhead * len(durations), 0.0) / max(sum(done), 1e-30)
    return overhead * len(left) + seconds_per_flop * sum(left)


def describe_point(point: Point, compile_memory: bool = True) -> dict[str, Any]:
    """What a run will cost, without training: parameters, tokens, FLOPs and compiled memory."""
    c = point.config
    spec = RunSpec.from_config(c)
    model = nnx.eval_shape(lambda: build_model(c.model, image_size=spec.image_size, channels=spec.channels,
                                               num_classes=spec.head_classes, rngs=nnx.Rngs(0)))
    row = {"name": point.name, **param_counts(nnx.state(model, nnx.Param)),
           "tokens_per_image": spec.tokens_per_image, "steps": spec.total_steps,
           "train_flops_per_image": spec.train_flops_per_image, "train_flops_total": spec.train_flops_total}
    if compile_memory:
        mesh_shape = partitioning.mesh_shape(c.mesh)
        per_step = mesh_shape["data"] * mesh_shape["fsdp"]
        small = c.copy_and_resolve_references()
        small.train.batch_size = per_step  # The smallest batch the mesh takes: memory per image.
        program = Program(RunSpec.from_config(small), partitioning.make_mesh(c.mesh))
        analysis = program.compile_train_step().memory_analysis()  # Abstract state: no parameters are created.
        row["activation_bytes_per_image"] = analysis.temp_size_in_bytes / per_step
    return row


def _last_checkpoint(run_dir: epath.Path) -> int | None:
    directory = run_dir / results.CHECKPOINTS
    steps = [int(p.name) for p in directory.iterdir() if p.name.isdigit()] if directory.is_dir() else []
    return max(steps, default=None)


def _fraction_left(run_dir: epath.Path, total_steps: int) -> float:
    """Of a run's training, what comes after its last checkpoint (all of it without one)."""
    last = _last_checkpoint(run_dir)
    return max(1.0 - last / total_steps, 0.0) if last is not None and total_steps else 1.0


def run_state(run_dir: epath.Path, total_steps: int) -> tuple[str, float]:
    """(what the dry run says of a run, the fraction of its training left): finished, failed, partial, new.

    Finished and failed runs have nothing left (a failed one trains again only with --retry-failed).
    """
    state = results.status(run_dir)
    if state == "partial":
        last = _last_checkpoint(run_dir)
        shown = f"partial {last}/{total_steps}" if last is not None and total_steps else "partial"
        return shown, _fraction_left(run_dir, total_steps)
    return state, 1.0 if state == "new" else 0.0


def print_dry_run(points: list[Point], compile_memory: bool, rate_tflops: float, results_dir=None) -> None:
    """One line per run, then the projected cost of them all at an assumed rate, and what is left.

    The pace comes from finished runs whose wall_time_s covers the whole run: a summary with
    `wall_time_segments` null timed only its last segment and is left out of it.
    """
    total, left, finished = 0.0, [], []
    states = collections.Counter()
    runs = epath.Path(results_dir) / results.RUNS if results_dir else None
    header = (f"{'run':<40} {'params':>10} {'non-emb':>10} {'tokens':>7} {'train GFLOP/img':>16} {'act. MiB/img':>12}"
              f"  state")
    print(header)
    for point in points:
        row = describe_point(point, compile_memory)
        total += row["train_flops_total"]
        state, fraction = run_state(runs / point.name, row["steps"]) if runs else ("new", 1.0)
        states[state.split()[0]] += 1
        if fraction > 0:
            left.append(fraction * row["train_flops_total"])
        if state == "finished":
            summary = results.read_summary(runs / point.name, warn=False) or {}
            whole = "wall_time_segments" not in summary or summary["wall_time_segments"] is not None
            if summary.get("wall_time_s") and whole:
                finished.append((float(summary["wall_time_s"]), row["train_flops_total"]))
        memory = (f"{row['activation_bytes_per_image'] / 2**20:12.1f}" if "activation_bytes_per_image" in row
                  else f"{'-':>12}")
        print(f"{row['name']:<40} {row['params']:>10,} {row['params_non_embedding']:>10,} "
              f"{row['tokens_per_image']:>7} {row['train_flops_per_image'] / 1e9:>16.3f} {memory}  {state}", flush=True)
    hours = total / (rate_tflops * 1e12) / 3600
    print(f"projected cost: {total / 1e15:.3f} PFLOP of training, {hours:.2f} device-hours at an assumed"
          f" {rate_tflops:g} TFLOP/s achieved (--rate-tflops)")
    if states["new"] < len(points):
        print(_left_line(states, left, total, finished, results_dir, len(points)))


def _left_line(states, left: list[float], total: float, finished: list[tuple[float, float]], results_dir,
               count: int) -> str:
    """What is left of a sweep under way, and how long it takes at the pace of its finished runs."""
    counts = ", ".join(f"{states[k]} {k}" for k in ("finished", "partial", "failed", "new") if states[k])
    line = (f"in {results_dir}, of these {count} runs: {counts}; {sum(left):.3g} of {total:.3g} training FLOPs"
            " left (partial runs from their last checkpoint; failed runs not counted: they run again only with"
            " --retry-failed)")
    if finished and left:
        seconds = estimate_remaining([d for d, _ in finished], [c for _, c in finished] + left)
        if seconds is not None:
            line += (f"; about {format_duration(seconds)} one run at a time at the pace of the {len(finished)}"
                     " finished runs (their summary.json wall_time_s)")
    return line
