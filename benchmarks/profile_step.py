"""Where the train step's time goes: per-op device time from a jax.profiler trace, grouped.

    python benchmarks/profile_step.py model.width=384 model.depth=4 model.heads=6 model.mlp_dim=1536 \\
        data.image_size=64 model.patch_size=8 train.batch_size=32 model.dtype=float32 [--out FILE]

Runs a few compiled train steps under `jax.profiler.trace`, reads the trace back with
`jax.profiler.ProfileData`, and sums event durations per op name over the XLA op lines (on
CPU: the client's worker threads, so the shares are of CPU time, not wall time).
Ops are grouped as matmul (dot/convolution/gemm custom calls), fusion (elementwise and
reductions fused by XLA), and other. Prints the top ops and the groups' shares; writes JSON.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import re
import sys
import tempfile

import jax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks.common import environment, save  # noqa: E402
from patchscale import bench  # noqa: E402
from patchscale.config import apply_overrides  # noqa: E402
from patchscale.defaults import base_config  # noqa: E402

MATMUL = re.compile(r"dot|convolution|gemm|matmul|onednn|ynn", re.IGNORECASE)  # ynn: XNNPACK dot fusions.
WRAPPER = re.compile(r"ThreadpoolListener|ThunkExecutor|end: ")  # Scheduling events, not ops.


def op_times(trace_dir: str) -> dict[str, float]:
    """Seconds per op name over the trace's XLA op lines (host lines of Python/runtime left out)."""
    files = list(pathlib.Path(trace_dir).rglob("*.xplane.pb"))
    data = jax.profiler.ProfileData.from_file(str(files[0]))
    totals: dict[str, float] = collections.defaultdict(float)
    for plane in data.planes:
        for line in plane.lines:
            # XLA:CPU runs its ops ("thunks") on the Eigen and client threads; accelerators have op lines.
            if not re.search(r"XLAEigen|XLAPjRtCpuClient|xla ops", line.name, re.IGNORECASE):
                continue
            for event in line.events:
                if not WRAPPER.match(event.name):
                    totals[event.name] += event.duration_ns * 1e-9
    return dict(totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", help="JSON file for the grouped times")
    args = parser.parse_args()
    config = base_config()
    apply_overrides(config, args.overrides)
    _, run_step, _ = bench.compiled_step(config)
    run_step()
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            for _ in range(args.steps):
                run_step()
        times = op_times(trace_dir)
    if not times:
        sys.exit("no XLA op events in the trace (this backend's profiler does not report ops)")
    total = sum(times.values())
    groups = collections.Counter()
    for name, seconds in times.items():
        kind = "matmul" if MATMUL.search(name) else "fusion" if "fusion" in name.lower() else "other"
        groups[kind] += seconds
    print(f"{total / args.steps * 1e3:.1f} ms of op time per step; " +
          ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in groups.most_common()))
    for name, seconds in sorted(times.items(), key=lambda kv: -kv[1])[:25]:
        print(f"  {100 * seconds / total:5.1f}%  {seconds / args.steps * 1e3:8.2f} ms  {name}")
    if args.out:
        save(args.out, {"command": " ".join(["python", "benchmarks/profile_step.py", *sys.argv[1:]]),
                        "overrides": args.overrides, "op_seconds_per_step": {k: v / args.steps for k, v in times.items()},
                        "groups_share": {k: v / total for k, v in groups.items()}, **environment()})


if __name__ == "__main__":
    main()
