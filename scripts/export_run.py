"""Copy a finished run's small files into results/ with a provenance record (no checkpoints).

    python scripts/export_run.py RUN_DIR DEST --command "patchscale train …" [--note "…"]

Writes DEST/config.json, DEST/summary.json, DEST/metrics.csv (metrics.jsonl as CSV) and
DEST/provenance.json (command, commit, device, date, wall time, notes).
"""

import argparse
import csv
import datetime
import json
import pathlib
import shutil
import sys

from patchscale import results
from patchscale.errors import UserError


def main():
    try:
        export(parse_args())
    except UserError as e:  # A damaged summary or metrics line: one line, as the CLI reports it.
        sys.exit(f"export_run: error: {e}")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=pathlib.Path)
    parser.add_argument("dest", type=pathlib.Path)
    parser.add_argument("--command", required=True, help="the exact command that produced the run")
    parser.add_argument("--note", default="", help="conditions worth knowing (e.g. a shared CPU)")
    return parser.parse_args()


def export(args) -> None:
    summary_file = args.run_dir / "summary.json"
    if not summary_file.exists():
        raise UserError(f"{summary_file} does not exist: the run has not finished")
    summary = results.read_json(summary_file, required=True)
    args.dest.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "summary.json"):
        shutil.copyfile(args.run_dir / name, args.dest / name)
    rows = results.read_metrics(args.run_dir)  # A partial last line (a kill during a write) is dropped.
    keys = sorted({k for row in rows for k in row}, key=lambda k: (k != "step", k))
    with open(args.dest / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    provenance = {"command": args.command, "git_commit": summary["git_commit"],
                  "device": f"{summary['device_kind']} x{summary['device_count']}",
                  "date": datetime.date.today().isoformat(), "training_wall_time_s": summary["wall_time_s"],
                  "note": args.note}
    (args.dest / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(f"exported {args.run_dir} → {args.dest}")


if __name__ == "__main__":
    main()
