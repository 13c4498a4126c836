"""Test oracles: independent readings of what a run or a results directory holds.

Written apart from the package code they check, so a test compares two readings, not one
function with itself; no package code uses them.
"""

from __future__ import annotations

import struct

from etils import epath

from patchscale import events, results


def read_events(run_dir) -> list[tuple[str, int, float]]:
    """(tag, step, value) of every scalar in a run's TensorBoard event files, in file order."""
    from tensorboardX.proto import event_pb2

    out = []
    for path in sorted((epath.Path(run_dir) / events.EVENTS).glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset + 12 <= len(data):  # TFRecord: length, its CRC, the record, its CRC.
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    out.append((value.tag, int(event.step), float(value.simple_value)))
    return out


def summary_count(results_dir) -> int:
    """How many run directories have a summary.json (what the report page's run count must say)."""
    runs = epath.Path(results_dir) / results.RUNS
    if not runs.exists():
        return 0
    return sum((d / results.SUMMARY).exists() for d in runs.iterdir() if d.is_dir())
