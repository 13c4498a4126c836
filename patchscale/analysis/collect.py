"""Read a sweep's results directory back: one record per finished run, with clear errors.

Finished runs (summary.json) are returned; failed and unfinished ones, and the runs sweep.json
lists that have not started, are listed as warnings and left out, never silently. A summary
that does not parse, lacks a metric, or a run directory that belongs to another experiment is
an error naming the file.

Groups: runs share a fit when they differ only in patch size and seed. The group is defined
by every other key the sweep point overrides (point.json), plus mixer, model size and input
size; `Run.group_keys` holds those keys so tables can say what each group is.

Budgets: a run trained with several budgets (`train.budgets`, warmup-stable-decay with a
cooldown branch per budget) stores one entry per budget in summary.json's "budgets"; older
runs get one budget, the whole run. Baseline runs (`model.baseline`: linear, mlp) are
returned with `baseline` set; they are reference lines, never part of a patch-size fit.

Selection (`select`): which budget's test numbers stand for a run. `final` is the whole run.
`best_val` is early stopping over the budget grid: the budget with the lowest validation loss
(the test split is never looked at to choose). On a fixed, small training set, where long runs
overfit, this is the loss the model reaches on that data; `final` would rank patch sizes by how
fast they overfit. `auto` takes `best_val` when every run has validation losses at two or more
budgets, else `final`.
"""

from __future__ import annotations

import dataclasses
import json

from etils import epath

from patchscale import results
from patchscale.models import presets
from patchscale.errors import UserError

REQUIRED = ("test_loss", "test_accuracy", "patch_size", "tokens_per_image", "train_flops_total",
            "params", "params_non_embedding")
NOT_GROUPING = ("model.patch_size", "seed")  # Keys a fit runs over, never a reason to split runs.
METRICS = ("test_loss", "test_error")  # What `patchscale fit --metric` can fit.
SELECTIONS = ("auto", "final", "best_val")


@dataclasses.dataclass(frozen=True)
class Budget:
    """One training budget of a run: evaluated after its own learning-rate cooldown."""

    steps: int
    images_seen: int
    train_flops: float
    test_loss: float
    test_accuracy: float
    val_loss: float | None = None
    val_accuracy: float | None = None

    @property
    def test_error(self) -> float:
        return 1.0 - self.test_accuracy

    def metric(self, name: str) -> float:
        return getattr(self, name)


@dataclasses.dataclass(frozen=True)
class Run:
    name: str
    mixer: str
    size: str
    image_size: int
    patch_size: int
    seed: int
    test_loss: float
    test_accuracy: float
    train_flops: float
    tokens_per_image: int
    params: int
    group_keys: tuple[tuple[str, str], ...] = ()  # (key, value) pairs that define the group, sorted.
    baseline: str | None = None  # "linear" or "mlp" for baseline runs.
    budgets: tuple[Budget, ...] = ()  # Ascending; the last one is the whole run.
    selected_steps: int | None = None  # The budget whose test numbers these are (None: the whole run).

    @property
    def test_error(self) -> float:
        return 1.0 - self.test_accuracy

    def metric(self, name: str) -> float:
        return getattr(self, name)

    @property
    def group(self) -> str:
        """Runs that share a fit: everything but patch size and seed equal."""
        head = f"baseline-{self.baseline}" if self.baseline else f"{self.mixer}-{self.size}"
        extra = [f"{key.split('.')[-1]}={value}" for key, value in self.group_keys
                 if key not in ("model.mixer", "model.size", "data.image_size", "model.baseline")
                 and not _implied_by_mixer(key)]
        return "-".join([head, f"r{self.image_size}", *extra])


def _implied_by_mixer(key: str) -> bool:
    """Block keys an experiment sets together with the mixer (Adventurer's norm, SwiGLU, CLS last, init)."""
    return key in presets.ADVENTURER_BLOCK and key != "model.mixer"


def _budgets(summary: dict) -> tuple[Budget, ...]:
    entries = summary.get("budgets") or [{
        "steps": summary.get("steps", 0),
        "images_seen": summary.get("images_seen") or _images_seen(summary),
        "train_flops": summary["train_flops_total"], "test_loss": summary["test_loss"],
        "test_accuracy": summary["test_accuracy"], "val_loss": summary.get("val_loss"),
        "val_accuracy": summary.get("val_accuracy")}]
    out = [Budget(steps=int(e["steps"]), images_seen=int(e["images_seen"]), train_flops=float(e["train_flops"]),
                  test_loss=float(e["test_loss"]), test_accuracy=float(e["test_accuracy"]),
                  val_loss=None if e.get("val_loss") is None else float(e["val_loss"]),
                  val_accuracy=None if e.get("val_accuracy") is None else float(e["val_accuracy"]))
           for e in entries]
    return tuple(sorted(out, key=lambda b: b.steps))


def _images_seen(summary: dict) -> int:
    """Older summaries: steps × batch, recovered from the FLOP counts (0 when they are absent)."""
    per_image = summary.get("train_flops_per_image")
    return round(summary["train_flops_total"] / per_image) if per_image else 0


def _group_keys(overrides: dict, config: dict, summary: dict) -> tuple[tuple[str, str], ...]:
    keys = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in overrides.items() if k not in NOT_GROUPING}
    keys.setdefault("model.mixer", config["model"]["mixer"])
    keys.setdefault("model.size", config["model"]["size"])
    keys["data.image_size"] = str(summary["image_size"])
    return tuple(sorted(keys.items()))


def load(results_dir) -> tuple[list[Run], list[str]]:
    """(finished runs, warnings about the runs left out)."""
    root = epath.Path(results_dir)
    runs_dir = root / results.RUNS
    if not runs_dir.is_dir():
        raise UserError(f"{results_dir} has no runs/ directory: not a patchscale results directory")
    manifest = root / results.SWEEP
    sweep = (results.read_json(manifest) or {}) if manifest.exists() else {}
    experiment = sweep.get("experiment")
    finished, warnings = [], []
    for run_dir in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        point_file = run_dir / results.POINT
        point = results.read_json(point_file) if point_file.exists() else {}
        if experiment is not None and point_file.exists():
            owner = point.get("experiment")
            if owner != experiment:
                raise UserError(f"{run_dir} belongs to experiment {owner!r}, not {experiment!r}:"
                                " move it out of this results directory")
        if (run_dir / results.SUMMARY).exists():  # Damaged: an error here (a sweep resumes such a run instead).
            results.read_json(run_dir / results.SUMMARY)
        state = results.status(run_dir)
        if state == "failed":
            error = results.read_json(run_dir / results.FAILED).get("error", "unknown error")
            warnings.append(f"{run_dir.name}: failed ({error}); left out")
            continue
        if state != "finished":
            warnings.append(f"{run_dir.name}: {state}, not finished; left out")
            continue
        summary = results.read_json(run_dir / results.SUMMARY, required=True)
        missing = [key for key in REQUIRED if key not in summary]
        if missing:
            raise UserError(f"{run_dir / results.SUMMARY} lacks {', '.join(missing)}")
        config = results.read_json(run_dir / results.CONFIG, required=True)
        try:
            model = config["model"]
            baseline = model.get("baseline") or None
            finished.append(Run(
                name=run_dir.name, mixer=model["mixer"], size=model["size"], image_size=int(summary["image_size"]),
                patch_size=int(summary["patch_size"]), seed=int(config["seed"]),
                test_loss=float(summary["test_loss"]), test_accuracy=float(summary["test_accuracy"]),
                train_flops=float(summary["train_flops_total"]), tokens_per_image=int(summary["tokens_per_image"]),
                params=int(summary["params"]), group_keys=_group_keys(point.get("overrides") or {}, config, summary),
                baseline=None if baseline in (None, "none") else baseline, budgets=_budgets(summary)))
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{run_dir}: config.json or summary.json is malformed ({type(e).__name__}: {e})") from None
    names = sweep.get("runs") or []
    missing = [name for name in names if not (runs_dir / name).is_dir()]  # A sweep still running, or stopped.
    if not finished:
        left_out = len(warnings) + len(missing)
        raise UserError(f"{results_dir}: no finished runs to use" + (f" ({left_out} left out)" if left_out else ""))
    if missing:
        warnings.append(f"{len(missing)} of the sweep's {len(names)} runs not started ({', '.join(missing)}); left out")
    return finished, warnings


def select(runs: list[Run], how: str = "auto") -> tuple[list[Run], str]:
    """(runs with the chosen budget's test numbers, a sentence saying which) — see the module doc."""
    if how not in SELECTIONS:
        raise UserError(f"unknown selection {how!r}: choose one of {', '.join(SELECTIONS)}")
    has_val = all(len(r.budgets) >= 2 and all(b.val_loss is not None for b in r.budgets) for r in runs)
    if how == "auto":
        how = "best_val" if has_val else "final"
    if how == "final":
        return list(runs), "each run's test numbers at its whole budget"
    if not has_val:
        raise UserError("best_val selection needs validation losses at two or more budgets in every run"
                        " (data.val_split and train.budgets)")
    chosen = []
    for run in runs:
        best = min(run.budgets, key=lambda b: (b.val_loss, b.steps))
        chosen.append(dataclasses.replace(run, test_loss=best.test_loss, test_accuracy=best.test_accuracy,
                                          train_flops=best.train_flops, selected_steps=best.steps))
    return chosen, ("each run's test numbers at the budget with its lowest validation loss"
                    " (early stopping over the budget grid; the test split is not used to choose)")


def groups(runs: list[Run]) -> dict[str, list[Run]]:
    """Patch-size fits: group label → runs (baselines excluded)."""
    return _label([run for run in runs if run.baseline is None])


def baselines(runs: list[Run]) -> dict[str, list[Run]]:
    """Baseline label (e.g. 'baseline-linear-r8') → its runs (one per seed)."""
    return _label([run for run in runs if run.baseline is not None])


def _label(runs: list[Run]) -> dict[str, list[Run]]:
    """Short labels; where two settings share one (they differ in a key the short label hides),
    every defining key is spelled out, so a fit never pools different models."""
    by_setting: dict[tuple, list[Run]] = {}
    for run in runs:
        by_setting.setdefault((run.baseline, run.group_keys), []).append(run)
    short = [members[0].group for members in by_setting.values()]
    out: dict[str, list[Run]] = {}
    for label, ((_, keys), members) in zip(short, by_setting.items()):
        if short.count(label) > 1:
            label = "-".join(f"{k.split('.')[-1]}={v}" for k, v in keys)
        out[label] = members
    return out
