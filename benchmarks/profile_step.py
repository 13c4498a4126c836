"""Where the train step's time goes: per-op device time from a jax.profiler trace, grouped.

    python benchmarks/profile_step.py model.width=384 model.depth=4 model.heads=6 model.mlp_dim=1536 \\
        data.image_size=64 model.patch_size=8 train.batch_size=32 model.dtype=float32 [--out FILE]

Runs a few compiled train steps under `jax.profiler.trace`, reads the trace back with
`jax.profiler.ProfileData`, and sums event durations per op name over the XLA op lines: on
CPU the client's worker threads (so the shares are of CPU time, not wall time); on GPUs and
TPUs the device's "XLA Ops" line (HLO ops: fusions, cuBLAS/cuDNN custom calls) and, apart,
its stream lines (kernels). Each top op keeps its HLO category and the JAX source operation it
came from (`tf_op`) when the profiler records them, so a fusion can be traced back to code.
Ops are grouped as matmul (dot/convolution/gemm custom calls), attention (cuDNN fused
attention), fusion (elementwise and reductions fused by XLA), and other.
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

MATMUL = re.compile(r"dot|convolution|gemm|matmul|onednn|ynn|cublas", re.IGNORECASE)  # ynn: XNNPACK dot fusions.
ATTENTION = re.compile(r"fmha|flash|attention|cudnn", re.IGNORECASE)
WRAPPER = re.compile(r"ThreadpoolListener|ThunkExecutor|end: ")  # Scheduling events, not ops.
CPU_OP_LINES = re.compile(r"XLAEigen|XLAPjRtCpuClient", re.IGNORECASE)
KEPT_STATS = ("hlo_op", "hlo_category", "tf_op", "long_name", "kernel_details")


def group(name: str, stats: dict) -> str:
    text = f"{name} {stats.get('hlo_category', '')} {stats.get('long_name', '')[:200]}"
    if ATTENTION.search(text):
        return "attention"
    if MATMUL.search(text):
        return "matmul"
    return "fusion" if "fusion" in text.lower() else "other"


def read_trace(trace_dir: str) -> dict[str, dict]:
    """line kind ("ops", "kernels") → {op name: {"seconds", "count", "stats"}} over the trace."""
    files = list(pathlib.Path(trace_dir).rglob("*.xplane.pb"))
    data = jax.profiler.ProfileData.from_file(str(files[0]))
    out: dict[str, dict] = {"ops": {}, "kernels": {}}
    for plane in data.planes:
        device = plane.name.startswith("/device:")
        for line in plane.lines:
            if device:
                kind = "ops" if line.name.lower() == "xla ops" else "kernels" if "stream" in line.name.lower() else None
            else:
                kind = "ops" if CPU_OP_LINES.search(line.name) else None
            if kind is None:
                continue
            for event in line.events:
                if WRAPPER.match(event.name):
                    continue
                entry = out[kind].setdefault(event.name, {"seconds": 0.0, "count": 0, "stats": None})
                entry["seconds"] += event.duration_ns * 1e-9
                entry["count"] += 1
                if entry["stats"] is None:
                    stats = dict(event.stats)
                    entry["stats"] = {k: str(stats[k])[:400] for k in KEPT_STATS if k in stats}
    return out


def summarise(entries: dict, steps: int, top: int) -> dict:
    """Per-step milliseconds: the total, the groups' shares, the top ops with their stats."""
    total = sum(e["seconds"] for e in entries.values()) or float("nan")
    groups = collections.Counter()
    for name, e in entries.items():
        groups[group(name, e["stats"] or {})] += e["seconds"]
    ranked = sorted(entries.items(), key=lambda kv: -kv[1]["seconds"])[:top]
    return {"ms_per_step": 1e3 * total / steps,
            "groups_share": {k: v / total for k, v in groups.most_common()},
            "top": [{"name": name, "ms_per_step": 1e3 * e["seconds"] / steps, "share": e["seconds"] / total,
                     "calls_per_step": e["count"] / steps, **(e["stats"] or {})} for name, e in ranked]}


def profile(run_step, steps: int = 3, top: int = 40) -> dict:
    """Trace `steps` calls of `run_step` (already compiled and warmed up) and summarise them."""
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            for _ in range(steps):
                run_step()
        lines = read_trace(trace_dir)
    return {kind: summarise(entries, steps, top) for kind, entries in lines.items() if entries}


def print_summary(summary: dict, top: int = 25) -> None:
    for kind, s in summary.items():
        print(f"{kind}: {s['ms_per_step']:.2f} ms per step; " +
              ", ".join(f"{k} {100 * v:.1f}%" for k, v in s["groups_share"].items()))
        for op in s["top"][:top]:
            source = (op.get("tf_op") or op.get("long_name") or "")[-110:]
            print(f"  {100 * op['share']:5.1f}%  {op['ms_per_step']:8.3f} ms  x{op['calls_per_step']:<5g} "
                  f"{op['name'][:60]}  {source}")


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
    summary = profile(run_step, args.steps)
    if not summary:
        sys.exit("no XLA op events in the trace (this backend's profiler does not report ops)")
    print_summary(summary)
    if args.out:
        save(args.out, {"command": " ".join(["python", "benchmarks/profile_step.py", *sys.argv[1:]]),
                        "overrides": args.overrides, **summary, **environment()})


if __name__ == "__main__":
    main()
