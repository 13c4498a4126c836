"""Run-directory layout and atomic writes.

<run>/config.json      the exact config of the run (written when it starts)
<run>/metrics.jsonl    one JSON object per logged step (and per evaluation)
<run>/summary.json     written atomically once the run has finished: its presence means "done"
<run>/checkpoints/     orbax checkpoints of the train state and the data iterator
"""

from __future__ import annotations

import json
import os
import uuid

from etils import epath

CONFIG = "config.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"


def write_json_atomic(path, obj) -> None:
    """Write to a temporary sibling, then rename over the target: readers never see half a file."""
    path = epath.Path(path)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def read_json(path) -> dict | None:
    path = epath.Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def append_metrics(run_dir, record: dict) -> None:
    with epath.Path(run_dir, METRICS).open("a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def read_metrics(run_dir) -> list[dict]:
    """Every record of metrics.jsonl ([] when there is none yet)."""
    path = epath.Path(run_dir, METRICS)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(run_dir, last_step: int) -> None:
    """Drop records logged after the checkpoint a run resumes from, so no step appears twice."""
    path = epath.Path(run_dir, METRICS)
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["step"] <= last_step]
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text("".join(line + "\n" for line in kept))
    tmp.replace(path)


def git_commit() -> str:
    """The commit of the patchscale checkout in use (with `-dirty`), or 'unknown' for an installed copy."""
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")
