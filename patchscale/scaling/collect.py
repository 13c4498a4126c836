"""Read a sweep's results directory back: one record per finished run, with clear errors.

Finished runs (summary.json) are returned; failed and unfinished ones are listed as warnings
and left out, never silently. A summary that does not parse, lacks a metric, or a run
directory that belongs to another experiment is an error naming the file.
"""

from __future__ import annotations

import dataclasses
import json

from etils import epath

from patchscale import results, sweep
from patchscale.errors import UserError

REQUIRED = ("test_loss", "test_accuracy", "patch_size", "tokens_per_image", "train_flops_total",
            "params", "params_non_embedding")


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

    @property
    def group(self) -> str:
        """Runs that share a fit: same mixer, model size and input size."""
        return f"{self.mixer}-{self.size}-r{self.image_size}"


def _read(path: epath.Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e.msg if hasattr(e, 'msg') else e}); is it truncated?") from None
    if not isinstance(value, dict):
        raise UserError(f"{path} does not hold a JSON object")
    return value


def load(results_dir) -> tuple[list[Run], list[str]]:
    """(finished runs, warnings about the runs left out)."""
    root = epath.Path(results_dir)
    runs_dir = root / "runs"
    if not runs_dir.is_dir():
        raise UserError(f"{results_dir} has no runs/ directory: not a patchscale results directory")
    manifest = root / sweep.SWEEP
    experiment = _read(manifest).get("experiment") if manifest.exists() else None
    finished, warnings = [], []
    for run_dir in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        point_file = run_dir / sweep.POINT
        if experiment is not None and point_file.exists():
            owner = _read(point_file).get("experiment")
            if owner != experiment:
                raise UserError(f"{run_dir} belongs to experiment {owner!r}, not {experiment!r}:"
                                " move it out of this results directory")
        state = sweep.status(run_dir)
        if state == "failed":
            error = _read(run_dir / sweep.FAILED).get("error", "unknown error")
            warnings.append(f"{run_dir.name}: failed ({error}); left out")
            continue
        if state != "finished":
            warnings.append(f"{run_dir.name}: {state}, not finished; left out")
            continue
        summary = _read(run_dir / results.SUMMARY)
        missing = [key for key in REQUIRED if key not in summary]
        if missing:
            raise UserError(f"{run_dir / results.SUMMARY} lacks {', '.join(missing)}")
        config = _read(run_dir / results.CONFIG)
        try:
            model = config["model"]
            finished.append(Run(
                name=run_dir.name, mixer=model["mixer"], size=model["size"], image_size=int(summary["image_size"]),
                patch_size=int(summary["patch_size"]), seed=int(config["seed"]),
                test_loss=float(summary["test_loss"]), test_accuracy=float(summary["test_accuracy"]),
                train_flops=float(summary["train_flops_total"]), tokens_per_image=int(summary["tokens_per_image"]),
                params=int(summary["params"])))
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{run_dir}: config.json or summary.json is malformed ({type(e).__name__}: {e})") from None
    if not finished:
        raise UserError(f"{results_dir}: no finished runs to use" + (f" ({len(warnings)} left out)" if warnings else ""))
    return finished, warnings


def groups(runs: list[Run]) -> dict[str, list[Run]]:
    out: dict[str, list[Run]] = {}
    for run in runs:
        out.setdefault(run.group, []).append(run)
    return out
