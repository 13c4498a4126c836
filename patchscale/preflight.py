"""`patchscale sweep CONFIG --preflight`: check a sweep's setup in seconds, before a slice is paid for.

Run it where the sweep will run (scripts/tpu.py runs it on every worker first). For every
distinct setup of the sweep it prints one line per check, PASS, FAIL with the reason, or SKIP
where a check cannot apply, and exits with 1 if anything failed:

* results: a probe file is written, read back and deleted under the results path (local or gs://);
* mesh: the mesh axes multiply to the devices present and the batches divide over the data axes;
* data: every split the config names opens through tfds.data_source and one example decodes,
  through the run's own preprocessing, to the image size, channels, classes and mask it expects;
* config: every run's settings validate (the checks `patchscale sweep` makes before anything);
* memory: one train step per distinct model shape is compiled (for the abstract state: no
  parameters are created, no step runs) and its per-device
  memory is compared with the device's. CPUs report no memory limit, so there it is "not
  checked"; PATCHSCALE_DEVICE_MEMORY (bytes per device) sets the budget instead.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from typing import Callable, Iterator

import jax
import numpy as np
from etils import epath

from patchscale import config as config_lib
from patchscale import partitioning, sweep
from patchscale.data import datasets, pipeline
from patchscale.errors import UserError
from patchscale.program import Program
from patchscale.run_spec import RunSpec

MEMORY_ENV = "PATCHSCALE_DEVICE_MEMORY"
DATA_KEYS = ("name", "data_dir", "mask_feature", "mask_offset", "mask_classes", "image_size", "interpolation")
# What changes the compiled train step's memory: the model, the mesh, batch augmentations, the
# input's shape and classes, the batch, and the state it carries (EMA).
SHAPE_DATA_KEYS = ("name", "data_dir", "image_size", "mask_feature", "mask_classes")
SHAPE_TRAIN_KEYS = ("batch_size", "ema_decay", "grad_clip_norm")


@dataclasses.dataclass(frozen=True)
class Check:
    kind: str  # results, mesh, data, config or memory.
    subject: str  # What was checked: a path, a mesh, a dataset split, run names.
    status: str  # PASS, FAIL or SKIP (not checked).
    detail: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.kind:<7} {self.subject}: {self.detail}"


def attempt(kind: str, subject: str, check: Callable[[], str | tuple[str, str]]) -> Check:
    """Run one check: its detail on success, its one-line reason on failure (never a traceback).

    A check returns its detail, or (status, detail) when it decides the status itself (SKIP, FAIL).
    """
    try:
        outcome = check()
    except UserError as e:
        return Check(kind, subject, "FAIL", str(e))
    except Exception as e:  # noqa: BLE001 - any failure is this check's verdict, reported on one line.
        return Check(kind, subject, "FAIL", f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}")
    status, detail = outcome if isinstance(outcome, tuple) else ("PASS", outcome)
    return Check(kind, subject, status, detail)


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def _size(n: float) -> str:
    """Bytes for people: 1000 B, 412.5 KiB, 15.8 GiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:.0f} B"


def _names(points) -> str:
    names = [p.name for p in points]
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


# ----------------------------------------------------------------------------- results
def probe_results(results_dir: str) -> str:
    """Write, read back and delete a probe file; directories it had to create are removed again."""
    root = epath.Path(results_dir)
    created = []  # Local directories this probe creates, deepest first (object stores have none).
    node = root
    while not node.exists() and node != node.parent:
        created.append(node)
        node = node.parent
    probe = root / f".preflight-{socket.gethostname()}-{os.getpid()}"
    token = f"patchscale preflight {time.time()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe.write_text(token)
        if probe.read_text() != token:
            raise UserError(f"the probe file {probe} read back differently")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write under {results_dir}: {type(e).__name__}: {e.strerror or e}") from None
    finally:
        for directory in created:
            try:
                directory.rmdir()
            except Exception:  # noqa: BLE001 - not empty, or an object store without directories: leave it.
                break
    return f"wrote, read back and deleted {probe.name}"


# ----------------------------------------------------------------------------- mesh
def check_mesh(config) -> str:
    partitioning.check(config)
    shape = partitioning.mesh_shape(config.mesh)
    t = config.train
    return (f"{'×'.join(str(shape[a]) for a in partitioning.AXES)} ({', '.join(partitioning.AXES)}) on"
            f" {_count(jax.device_count(), jax.default_backend() + ' device')}; batches {t.batch_size} and"
            f" {t.eval_batch_size} divide over {_count(shape['data'] * shape['fsdp'], 'data-parallel device')}")


# ----------------------------------------------------------------------------- data
def check_split(data_config, key: str, split: str) -> str | tuple[str, str]:
    """Open `split` (the value of `data.<key>`) and decode its first example through the run's preprocessing."""
    d = data_config
    info = datasets.describe(d.name, d.data_dir, d.mask_feature)
    datasets.check_readable(d.name, info, {f"data.{key}": split}, d.data_dir)
    size = d.image_size or info.image_size
    if size is None:
        raise UserError(f"data.image_size must be set: dataset {d.name!r} has images of varying size")
    source = datasets.open_split(d.name, split, d.data_dir)
    if len(source) == 0:
        raise UserError(f"split {split!r} is empty")
    example = source[0]
    image = np.asarray(example["image"])
    channels = image.shape[-1] if image.ndim == 3 else 1
    if image.ndim not in (2, 3) or channels != info.channels:
        raise UserError(f"its first image has shape {image.shape}; the dataset declares {info.channels} channels")
    if d.image_size is None and image.shape[:2] != (size, size):
        raise UserError(f"its first image is {image.shape[0]}×{image.shape[1]}, not the declared {size}×{size};"
                        " set data.image_size")
    out = pipeline.preprocess_for(d, size)(example)
    if out["image"].shape != (size, size, channels):
        raise UserError(f"preprocessing gave an image of shape {out['image'].shape}, expected {(size, size, channels)}")
    first = f"{image.shape[0]}×{image.shape[1]}×{channels}"
    seen = f"{len(source):,} examples; the first, {first}, decodes to {size}×{size}"
    if d.mask_feature:
        labelled = float(np.mean(out["pixels"] >= 0))
        detail = f"{seen} with mask {d.mask_feature!r}, {labelled:.0%} of its pixels in classes 0..{d.mask_classes - 1}"
        if labelled == 0.0:
            return "FAIL", (f"{detail}: no pixel has a class; check data.mask_offset={d.mask_offset} and"
                            f" data.mask_classes={d.mask_classes}")
        return detail
    label = int(example["label"])
    if not 0 <= label < info.num_classes:
        raise UserError(f"its first label is {label}, outside the dataset's {info.num_classes} classes")
    return f"{seen}, label {label} of {info.num_classes} classes"


def _splits(data_config) -> dict[str, str]:
    """Split → the config key naming it (the first, when several keys name one split)."""
    d = data_config
    splits: dict[str, str] = {}
    for key in ("train_split", "eval_split", "val_split"):
        if d[key] is not None:
            splits.setdefault(d[key], key)
    return splits


# ----------------------------------------------------------------------------- memory
def device_memory() -> int | None:
    """Bytes of memory per device: PATCHSCALE_DEVICE_MEMORY, else what the first local device reports."""
    override = os.environ.get(MEMORY_ENV)
    if override:
        try:
            return int(float(override))
        except ValueError:
            raise UserError(f"{MEMORY_ENV}={override!r}: expected a number of bytes") from None
    stats = jax.local_devices()[0].memory_stats() or {}
    return stats.get("bytes_limit")


def compiled_step_bytes(config) -> tuple[int, float]:
    """(bytes per device, compile seconds) of one train step compiled for the abstract state (no step runs)."""
    program = Program(RunSpec.from_config(config), partitioning.make_mesh(config.mesh))
    start = time.perf_counter()
    analysis = program.compile_train_step().memory_analysis()  # Abstract state: no parameters are created.
    seconds = time.perf_counter() - start
    needed = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes + analysis.temp_size_in_bytes
              - analysis.alias_size_in_bytes + analysis.generated_code_size_in_bytes)
    return int(needed), seconds


def check_memory(config, limit: int | None) -> str | tuple[str, str]:
    needed, seconds = compiled_step_bytes(config)
    what = f"train step at batch {config.train.batch_size} needs {_size(needed)} per device"
    if limit is None:
        return "SKIP", f"{what} (compiled in {seconds:.1f}s); not checked: the device reports no memory limit"
    if needed > limit:
        return "FAIL", (f"{what}, more than the {_size(limit)} a device has; lower train.batch_size,"
                        " set model.remat, or shard the state with mesh.fsdp")
    return f"{what} of {_size(limit)} ({needed / limit:.0%}; compiled in {seconds:.1f}s)"


# ----------------------------------------------------------------------------- all checks
def _mesh_key(config) -> str:
    return json.dumps([config.mesh.to_dict(), config.train.batch_size, config.train.eval_batch_size],
                      sort_keys=True, default=str)


def _data_key(config, split: str) -> str:
    return json.dumps([{k: config.data[k] for k in DATA_KEYS}, split], sort_keys=True, default=str)


def _shape_key(config) -> str:
    c = config
    return json.dumps([c.model.to_dict(), c.mesh.to_dict(), c.augment.to_dict(),
                       {k: c.data[k] for k in SHAPE_DATA_KEYS}, {k: c.train[k] for k in SHAPE_TRAIN_KEYS}],
                      sort_keys=True, default=str)


def _config_checks(points, ready: list) -> Iterator[Check]:
    """Validate the points whose data and mesh passed (the others' lines already say what is wrong)."""
    failures: dict[str, list] = {}
    for point in points:
        check = attempt("config", point.name, lambda: config_lib.validate(point.config) or "")
        if check.status == "PASS":
            ready.append(point)
        else:
            failures.setdefault(check.detail, []).append(point)
    for reason, failed in failures.items():  # One line per distinct reason, naming its runs.
        yield Check("config", _names(failed), "FAIL", reason)
    if ready:
        yield Check("config", _count(len(ready), "run"), "PASS", "every setting validates")


def checks(points, results_dir: str) -> Iterator[Check]:
    """Every check of the sweep's points, in order, each as soon as it is done."""
    yield attempt("results", str(results_dir), lambda: probe_results(str(results_dir)))
    mesh_ok: dict[str, bool] = {}
    for point in points:
        key = _mesh_key(point.config)
        if key not in mesh_ok:
            subject = ", ".join(f"{axis}={point.config.mesh[axis]}" for axis in ("data", "fsdp", "sequence", "tensor"))
            result = attempt("mesh", subject, lambda: check_mesh(point.config))
            mesh_ok[key] = result.status == "PASS"
            yield result
    data_ok: dict[str, bool] = {}
    for point, (split, split_key) in [(p, item) for p in points for item in _splits(p.config.data).items()]:
        key = _data_key(point.config, split)
        if key not in data_ok:
            d = point.config.data
            subject = (f"{d.name} {split}" + (f" at {d.image_size}²" if d.image_size else "")
                       + (f" in {d.data_dir}" if d.data_dir else ""))
            result = attempt("data", subject, lambda: check_split(d, split_key, split))
            data_ok[key] = result.status == "PASS"
            yield result
    checkable = [p for p in points if mesh_ok[_mesh_key(p.config)]
                 and all(data_ok[_data_key(p.config, s)] for s in _splits(p.config.data))]
    if len(checkable) < len(points):
        yield Check("config", _count(len(points) - len(checkable), "run"), "SKIP",
                    "not checked: their data or mesh check failed")
    ready: list = []
    yield from _config_checks(checkable, ready)
    if not ready:
        yield Check("memory", _count(len(points), "run"), "SKIP", "not checked: no run passed the checks before it")
        return
    limit = device_memory()
    groups: dict[str, list] = {}
    for point in ready:
        groups.setdefault(_shape_key(point.config), []).append(point)
    for group in groups.values():
        yield attempt("memory", _names(group), lambda: check_memory(group[0].config, limit))


def run(points, results_dir: str) -> int:
    """Print one line per check and a closing count; 1 if any check failed, else 0."""
    prefix = f"[worker {jax.process_index()}] " if jax.process_count() > 1 else ""
    start = time.perf_counter()
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    for check in checks(points, results_dir):
        counts[check.status] += 1
        print(prefix + check.line(), flush=True)
    verdict = "ready to sweep" if not counts["FAIL"] else "fix the FAIL lines before starting the sweep"
    print(f"{prefix}[preflight] {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} not checked"
          f" in {time.perf_counter() - start:.0f}s: {verdict}", flush=True)
    return 1 if counts["FAIL"] else 0


def main(config_path: str, overrides, results_dir: str, select: Callable[[list], list]) -> int:
    """`patchscale sweep CONFIG --preflight`: the sweep's points (as `select` keeps them), checked."""
    points = select(sweep.expand(config_path, overrides, validate=False))
    print(f"[preflight] {config_path}: {_count(len(points), 'run')} on"
          f" {_count(jax.device_count(), jax.default_backend() + ' device')}"
          f" ({_count(jax.process_count(), 'process', 'processes')}) → {results_dir}", flush=True)
    return run(points, results_dir)
