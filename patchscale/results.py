"""Run and results directories: their layout, their files, and safe reading and writing.

<results>/sweep.json        the experiment that owns the directory and all its run names
<results>/runs/<run>/       one run:
    config.json     the exact config of the run (written once it has compiled)
    point.json      the sweep point (experiment and overrides) that made it
    metrics.jsonl   one JSON object per logged step, evaluation and cooldown branch
    summary.json    written atomically once the run has finished: a summary that parses means "done"
    failed.json     the error of a run that crashed (the sweep skips it unless retrying)
    checkpoints/    orbax checkpoints of the train state and the data iterator

The training loop and the sweep write these files; the analysis (analysis/) only reads them.
Every write that replaces a file is atomic and durable (fsync before and after the rename),
and every read of a damaged file is a one-line `UserError` naming it.
"""

from __future__ import annotations

import json
import os
import sys
import uuid

from etils import epath

from patchscale.errors import UserError
from patchscale.progress import console

CONFIG = "config.json"
POINT = "point.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
FAILED = "failed.json"
CHECKPOINTS = "checkpoints"
SWEEP = "sweep.json"
RUNS = "runs"


def status(run_dir) -> str:
    """finished (a summary.json that parses) | failed (failed.json) | partial (checkpoints) | new."""
    run_dir = epath.Path(run_dir)
    if (run_dir / SUMMARY).exists() and read_summary(run_dir, warn=False) is not None:
        return "finished"
    if (run_dir / FAILED).exists():
        return "failed"
    if (run_dir / CHECKPOINTS).exists():
        return "partial"
    return "new"


# ----------------------------------------------------------------------------- writing
def is_local(path: epath.Path) -> bool:
    return "://" not in str(path)  # gs://, s3://: the object store makes each write whole.


def _fsync_dir(directory: epath.Path) -> None:
    fd = os.open(os.fspath(directory), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path, text: str) -> None:
    """Write a temporary sibling, fsync it, rename it over the target and fsync the directory.

    Readers never see half a file, and after a power cut the file is either the old or the new one.
    """
    path = epath.Path(path)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    if not is_local(path):
        tmp.write_text(text)
        tmp.replace(path)
        return
    try:
        with open(os.fspath(tmp), "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(os.fspath(tmp), os.fspath(path))
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def write_json_atomic(path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _metrics_lines(records) -> str:
    return "".join(json.dumps(record, sort_keys=True) + "\n" for record in records)


def append_metrics(run_dir, record: dict) -> None:
    """One line per record; a kill during the append leaves at most a partial last line (trimmed on read)."""
    with epath.Path(run_dir, METRICS).open("a") as f:
        f.write(_metrics_lines([record]))
        f.flush()


# ----------------------------------------------------------------------------- reading
def read_json(path, *, required: bool = False) -> dict | None:
    """The JSON object in `path`; None when it does not exist (a `UserError` if `required`)."""
    path = epath.Path(path)
    if not path.exists():
        if required:
            raise UserError(f"{path} does not exist")
        return None
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is damaged: not valid JSON ({getattr(e, 'msg', e)}); restore or delete it"
                        ) from None
    if not isinstance(value, dict):
        raise UserError(f"{path} is damaged: it does not hold a JSON object; restore or delete it")
    return value


def read_summary(run_dir, *, warn: bool = True) -> dict | None:
    """The summary of a finished run; None when there is none, or when it does not parse.

    A damaged summary (a disk error, a partial copy) makes the run unfinished: it resumes from
    its last checkpoint and writes the summary again, instead of being skipped as done.
    """
    path = epath.Path(run_dir) / SUMMARY
    try:
        return read_json(path)
    except UserError:
        if warn:
            console().log(f"patchscale: warning: {path} does not parse; the run counts as unfinished and"
                          " resumes from its last checkpoint", file=sys.stderr, flush=True)
        return None


def _parse_metrics(path: epath.Path) -> tuple[list[dict], bool]:
    """(records, whether a partial last line was dropped). A damaged line elsewhere is a UserError."""
    text = path.read_text()
    lines = text.split("\n")
    records = []
    trimmed = False
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "step" not in record:
                raise ValueError("not a metrics record")
            if not isinstance(record["step"], int) or isinstance(record["step"], bool):
                raise ValueError(f"its step {record['step']!r} is not an integer")
        except ValueError as e:
            if number == len(lines):  # The last line without its newline: an append cut off by a kill.
                trimmed = True
                continue
            raise UserError(f"{path} is damaged at line {number} ({e}); repair that line from a copy, or delete"
                            f" the run directory {path.parent} to train the run again") from None
        records.append(record)
    return records, trimmed


def read_metrics(run_dir) -> list[dict]:
    """Every complete record of metrics.jsonl ([] when there is none yet); a partial last line is skipped."""
    path = epath.Path(run_dir, METRICS)
    return _parse_metrics(path)[0] if path.exists() else []


def truncate_metrics(run_dir, last_step: int) -> None:
    """Keep the records up to the step a run resumes from (so no step appears twice) and drop a partial line."""
    path = epath.Path(run_dir, METRICS)
    if not path.exists():
        return
    records, trimmed = _parse_metrics(path)
    kept = [r for r in records if r["step"] <= last_step]
    if trimmed:
        console().log(f"patchscale: warning: {path} ended in a partial line (a kill during a write); dropped it",
              file=sys.stderr, flush=True)
    if trimmed or len(kept) < len(records):
        write_text_atomic(path, _metrics_lines(kept))


def merge_into_record(run_dir, step: int, extra: dict) -> None:
    """Add `extra` to the step's log record (not a branch record), or append it as a new record.

    A run preempted at an evaluation step logs the step and stops before evaluating; its resume
    evaluates and merges the result here, so the file ends as an uninterrupted run's would.
    """
    path = epath.Path(run_dir, METRICS)
    records = _parse_metrics(path)[0] if path.exists() else []
    for record in records:
        if record["step"] == step and "budget_steps" not in record:
            record.update(extra)
            break
    else:
        records.append({"step": step, **extra})
    write_text_atomic(path, _metrics_lines(records))

