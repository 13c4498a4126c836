"""The points of a sweep: expand an experiment into named runs, select a shard or some names.

An experiment file defines `get_config(arg=None)` and, optionally, `get_sweep()` returning a
list of override dicts (one per run; `product(...)` builds the usual Cartesian product).
Every run lives in `<results>/runs/<name>/`, where the name is built from the overrides that
make it differ (for example `attention-mu-p4-s0`). Importing this module imports no jax (an
experiment file imports `product` from here); expanding a sweep validates every point's config,
which does.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from typing import Any, Iterable

import ml_collections
from etils import epath

from patchscale import config as config_lib
from patchscale import results
from patchscale.errors import UserError
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


def only(points: list[Point], names: str | None) -> list[Point]:
    """The points named in `--only` (comma-separated run names), in sweep order."""
    if names is None:
        return points
    wanted = [n for n in names.split(",") if n]
    unknown = sorted(set(wanted) - {p.name for p in points})
    if unknown or not wanted:
        raise UserError(f"--only {names!r}: no run named {', '.join(unknown) or '(empty)'} in this sweep"
                        " (`patchscale sweep FILE --dry-run --no-compile` lists the names)")
    return [p for p in points if p.name in wanted]


def source_run(point: Point) -> str | None:
    """The run name a stage starts from ("@name" in train.init_from), if any."""
    value = point.config.train.init_from
    return value[1:] if isinstance(value, str) and value.startswith("@") else None


def keep_existing_names(points: list[Point], results_dir) -> list[Point]:
    """Points whose overrides match a run directory named under an earlier naming scheme keep that name.

    Run names are derived from the sweep (`_unique_names`); when that derivation changes, a
    partial sweep must still find its runs instead of starting them again under new names.
    Stage links (`train.init_from=@name`) follow the renaming.
    """
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
