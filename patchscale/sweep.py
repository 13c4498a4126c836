"""Sweeps: expand an experiment into named runs, split them across hosts, run what is not done.

An experiment file defines `get_config(arg=None)` and, optionally, `get_sweep()` returning a
list of override dicts (one per run; `product(...)` builds the usual Cartesian product).
Every run lives in `<results>/runs/<name>/`, where the name is built from the overrides that
make it differ (for example `attention-mu-p4-s0`). A run is

* finished when its summary.json parses (skipped; refused if its config.json differs from the
  sweep's in a key that changes results),
* failed when its failed.json exists (skipped unless --retry-failed; the error is in the file),
* partial when it has checkpoints (resumed), or new.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from typing import Any, Iterable

import ml_collections

from patchscale import config as config_lib
from patchscale.errors import Preempted, UserError
from patchscale.models import sizes

SHORT_NAMES = {"model.mixer": "", "model.size": "", "model.patch_size": "p", "seed": "s",
               "data.image_size": "r", "model.width": "w", "model.depth": "d"}
SHAPE_KEYS = ("model.width", "model.depth", "model.heads", "model.mlp_dim")
NAME_ORDER = ["model.mixer", "model.size", "model.width", "model.depth", "data.image_size", "model.patch_size"]


def product(**axes: Iterable[Any]) -> list[dict[str, Any]]:
    """`product(**{"model.patch_size": [16, 8], "seed": [0, 1]})` → four override dicts."""
    keys = list(axes)
    return [dict(zip(keys, values)) for values in itertools.product(*(list(axes[k]) for k in keys))]


@dataclasses.dataclass
class Point:
    name: str
    overrides: dict[str, Any]
    config: ml_collections.ConfigDict


def run_name(config: ml_collections.ConfigDict, varying: Iterable[str]) -> str:
    """Readable and unique within a sweep: mixer, size and patch size always, other varying keys after.

    A pixel baseline is named by its kind (`baseline-linear-s0`): mixer and patch size do not apply.
    """
    if config.model.baseline != "none":  # Only its hidden width among the model keys applies to it.
        keys = {k for k in varying if not k.startswith("model.") or k == "model.baseline_hidden"}
        return _join(config, ["baseline", config.model.baseline], keys | {"seed"})
    return _join(config, [], set(varying) | {"model.mixer", "model.size", "model.patch_size", "seed"})


def _name_rank(key: str) -> tuple:
    return NAME_ORDER.index(key) if key in NAME_ORDER else len(NAME_ORDER), key == "seed", key


def _join(config, parts: list[str], keys: set[str]) -> str:
    ordered = sorted(keys, key=_name_rank)
    for key in ordered:
        value = _get(config, key)
        if value is None and key in SHAPE_KEYS:  # Not set: the named size's own dimension.
            value = getattr(sizes.resolve(config.model), key.split(".")[-1])
        if isinstance(value, (tuple, list)):  # (1, 2) → 1x2; () → none.
            value = "x".join(map(str, value)) or "none"
        prefix = SHORT_NAMES.get(key, key.split(".")[-1] + "=")
        parts.append(f"{prefix}{value}")
    return re.sub(r"[^A-Za-z0-9=._+-]", "_", "-".join(parts))


def _get(config, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


INIT_FROM = "train.init_from"


def expand(path: str, cli_overrides: Iterable[str] = (), validate: bool = True) -> list[Point]:
    """All runs of the experiment, validated (unless the preflight checks them itself), in sweep order."""
    module = config_lib.load_module(path)
    try:
        sweep = module.get_sweep() if hasattr(module, "get_sweep") else [{}]
    except Exception as e:  # The user's code failing: one line, like get_config().
        raise UserError(f"{path}: get_sweep() failed: {type(e).__name__}: {e}") from None
    if not isinstance(sweep, list) or not all(isinstance(item, dict) for item in sweep) or not sweep:
        raise UserError(f"{path}: get_sweep() must return a non-empty list of override dicts")
    configs = []
    for item in sweep:
        config = config_lib.experiment_config(module, path)
        try:
            for key, value in item.items():
                if key == INIT_FROM and isinstance(value, dict):
                    continue  # An earlier point of this sweep: resolved below, once names exist.
                config_lib.set_value(config, key, value)
            config_lib.apply_overrides(config, cli_overrides)
            if validate:
                config_lib.validate(config)
        except UserError as e:
            raise UserError(f"{path}: sweep point {item}: {e}") from None
        configs.append(config)
    names = _unique_names(configs, sweep)
    if len(set(names)) < len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise UserError(f"{path}: several sweep points have the same settings (run name {duplicate!r})")
    _link_stages(path, sweep, configs, names)
    return [Point(name, item, config) for name, item, config in zip(names, sweep, configs)]


def _link_stages(path: str, sweep: list[dict], configs, names: list[str]) -> None:
    """`"train.init_from": {overrides}` names the earlier point with those overrides: "@<its run name>".

    Multi-stage recipes are one sweep: a later stage starts from the checkpoint of the run it names
    (a sibling directory under runs/, so the results directory can move). `run` skips a stage whose
    source has not finished yet.
    """
    for i, item in enumerate(sweep):
        wanted = item.get(INIT_FROM)
        if not isinstance(wanted, dict):
            continue
        matches = [j for j in range(i) if all(sweep[j].get(k) == v for k, v in wanted.items())]
        if len(matches) != 1:
            found = "no earlier point" if not matches else f"{len(matches)} earlier points"
            raise UserError(f"{path}: sweep point {item}: {INIT_FROM}={wanted} matches {found}; it must match"
                            " exactly one point listed before it")
        configs[i].train.init_from = "@" + names[matches[0]]


def _unique_names(configs, sweep) -> list[str]:
    """Names from mixer, size, patch size and seed, plus as few varying keys as make them unique."""
    varying = sorted({key for item in sweep for key in item if len({repr(_get(c, key)) for c in configs}) > 1})
    chosen: list[str] = []
    names = [run_name(c, chosen) for c in configs]
    while len(set(names)) < len(names) and len(chosen) < len(varying):
        # Greedy: the key that tells the most runs apart; on a tie the one NAME_ORDER lists first.
        candidates = sorted((key for key in varying if key not in chosen), key=_name_rank)
        best = max(candidates, key=lambda key: len({run_name(c, chosen + [key]) for c in configs}))
        chosen.append(best)
        names = [run_name(c, chosen) for c in configs]
    return names


def parse_shard(text: str | None) -> tuple[int, int]:
    if text is None:
        return 0, 1
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise UserError(f"--shard {text!r}: expected I/N with 0 <= I < N, e.g. 0/4")
    return int(match[1]), int(match[2])


def shard(points: list[Point], index: int, count: int) -> list[Point]:
    """A deterministic 1/count of the points: every count-th, starting at index."""
    return points[index::count]


def write_manifest(results_dir, experiment: str, points: list[Point]) -> None:
    """Record which experiment owns this results directory (fit and plot check it)."""
    import jax
    from etils import epath

    from patchscale import results

    path = epath.Path(results_dir) / results.SWEEP
    existing = results.read_json(path)
    if existing is not None and existing.get("experiment") != experiment:
        raise UserError(f"{results_dir} holds results of experiment {existing.get('experiment')!r},"
                        f" not {experiment!r}; use --results to choose another directory")
    if jax.process_index() != 0:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    results.write_json_atomic(path, {"experiment": experiment, "runs": [p.name for p in points]})


def keep_existing_names(points: list[Point], results_dir) -> list[Point]:
    """Points whose overrides match a run directory named under an earlier naming scheme keep that name.

    Run names are derived from the sweep (`_unique_names`); when that derivation changes, a
    partial sweep must still find its runs instead of starting them again under new names.
    Stage links (`train.init_from=@name`) follow the renaming.
    """
    from etils import epath

    from patchscale import results

    runs = epath.Path(results_dir) / results.RUNS
    if not runs.exists():
        return points
    key = lambda overrides: json.dumps(overrides, sort_keys=True, default=str)  # noqa: E731 - tuples as lists
    existing = {}
    for run_dir in runs.iterdir():
        point = results.read_json(run_dir / results.POINT) if run_dir.is_dir() else None
        if point and "overrides" in point:
            existing[key(point["overrides"])] = run_dir.name
    renamed = {p.name: existing[key(p.overrides)] for p in points
               if existing.get(key(p.overrides), p.name) != p.name and not (runs / p.name).exists()}
    for new, old in renamed.items():
        print(f"[sweep] {new}: found as {old} (named by an earlier version), kept under that name", flush=True)
    out = []
    for p in points:
        link = p.config.train.init_from
        if isinstance(link, str) and link.startswith("@") and link[1:] in renamed:
            p.config.train.init_from = "@" + renamed[link[1:]]
        out.append(dataclasses.replace(p, name=renamed.get(p.name, p.name)))
    return out


def check_configs(points: list[Point], results_dir) -> None:
    """Refuse a sweep over run directories that hold another config, before anything is written.

    Command-line overrides do not change run names, so `sweep X train.steps=500` over finished
    60-step runs would otherwise report them done and fit the old results.
    """
    from etils import epath

    from patchscale import results

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
    import time
    import traceback

    import jax

    from etils import epath

    from patchscale import results, storage, train
    from patchscale.errors import StorageError
    from patchscale.progress import bar, console, format_duration

    results_dir = epath.Path(results_dir)
    is_main = jax.process_index() == 0  # Every process trains; only the first writes files.
    outcome, todo = split_done(points, results_dir, retry_failed)
    costs = [_cost(point) for point in todo]
    durations: list[float] = []
    for k, point in enumerate(todo, 1):
        run_dir = results_dir / results.RUNS / point.name
        source = source_run(point)
        if source is not None and results.status(results_dir / results.RUNS / source) != "finished":
            console().log(f"[sweep] {point.name}: waits for {source} (its train.init_from), which has not finished;"
                  " run the sweep again once it has", flush=True)
            outcome[point.name] = "waiting"
            costs.pop(len(durations))  # Not run: out of the ETA.
            continue
        remaining = estimate_remaining(durations, costs) if durations else None
        eta = f", sweep ETA {format_duration(remaining)}" if remaining is not None else ""
        if console().live:
            console().log(f"[sweep] run {k}/{len(todo)}: {point.name}")
            console().update("sweep", f"[sweep] {bar(k - 1, len(todo))} runs{eta or ', ETA after the first run'}")
        else:
            console().log(f"[sweep] run {k}/{len(todo)}: {point.name}{eta}", flush=True)
        started = time.time()
        try:
            with train.run_lock(run_dir):
                if is_main:
                    (run_dir / results.FAILED).unlink(missing_ok=True)
                    results.write_json_atomic(run_dir / results.POINT, {"experiment": experiment, "name": point.name,
                                                                        "overrides": point.overrides})
                train.train_locked(point.config, run_dir)
            outcome[point.name] = "finished"
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
            outcome[point.name] = "failed"
            console().log(f"[sweep] {point.name} failed: {type(e).__name__}: {e}", flush=True)
        durations.append(time.time() - started)
    console().clear("sweep")
    done = sum(s == "finished" for s in outcome.values())
    console().log(f"[sweep] {done}/{len(points)} runs finished, {sum(s == 'failed' for s in outcome.values())} failed",
          flush=True)
    return outcome


def split_done(points: list[Point], results_dir, retry_failed: bool) -> tuple[dict[str, str], list[Point]]:
    """(name → status of the runs to skip, the points still to run).

    Skipped: finished runs, and failed ones unless retrying."""
    from etils import epath

    from patchscale import results
    from patchscale.progress import console

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


def source_run(point: Point) -> str | None:
    """The run name a stage starts from ("@name" in train.init_from), if any."""
    value = point.config.train.init_from
    return value[1:] if isinstance(value, str) and value.startswith("@") else None


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


def _cost(point: Point) -> float:
    """Analytic training FLOPs of a run (for the sweep ETA); 1.0 when the dataset is not known yet."""
    from patchscale.run_spec import RunSpec

    try:
        return RunSpec.from_config(point.config).train_flops_total
    except Exception:  # noqa: BLE001 - only the ETA depends on it; the run itself reports real errors.
        return 1.0


def describe_point(point: Point, compile_memory: bool = True) -> dict[str, Any]:
    """What a run will cost, without training: parameters, tokens, FLOPs and compiled memory."""
    from flax import nnx

    from patchscale import partitioning
    from patchscale.models import build_model
    from patchscale.program import Program, param_counts
    from patchscale.run_spec import RunSpec

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
        analysis = program.compile_train_step().memory_analysis()  # Abstract state: nothing allocated.
        row["activation_bytes_per_image"] = analysis.temp_size_in_bytes / per_step
    return row
