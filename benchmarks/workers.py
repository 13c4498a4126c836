"""Throughput of one run on every core vs one run per core (what `patchscale sweep --workers` buys).

    python benchmarks/workers.py      # writes results/bench/workers_cpu.json

For each model (the 16×16 study's ViT and Adventurer at p = 2 and p = 1, batch 128), `patchscale
bench` runs once on all of this process's cores, then as N processes at once, each pinned to its
own share of the cores the way a `--workers N` sweep pins its runs (PATCHSCALE_CORES). The
aggregate images/s of the N processes over the single process's is the sweep's speed-up when
it has N runs to give out. Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

from benchmarks.common import environment, save  # noqa: E402
from patchscale.sweep import pinning, workers  # noqa: E402
from patchscale.models import presets  # noqa: E402

EXPERIMENT = "experiments/mnist_sweep_16.py"
ADVENTURER = [f"{k}={v}" for k, v in {**presets.ADVENTURER_BLOCK, "model.size": "adv-mu"}.items()]
MODELS = {"attention": [], "mamba2": ADVENTURER}


def bench(overrides: list[str], out: str, steps: int, cores: set[int] | None) -> subprocess.Popen:
    env = dict(os.environ)
    if cores is not None:
        env[pinning.CORES_ENV] = ",".join(map(str, sorted(cores)))
    command = [sys.executable, "-m", "patchscale.cli", "bench", EXPERIMENT, *overrides, "--steps", str(steps),
               "--out", out]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure(overrides: list[str], steps: int, count: int, tmp: str) -> dict:
    single = f"{tmp}/single.json"
    if bench(overrides, single, steps, None).wait():
        raise SystemExit(f"bench failed: {overrides}")
    outs = [f"{tmp}/pinned{k}.json" for k in range(count)]
    procs = [bench(overrides, out, steps, cores) for out, cores in zip(outs, workers.core_groups(count))]
    if any(p.wait() for p in procs):
        raise SystemExit(f"pinned bench failed: {overrides}")
    one = json.load(open(single))["images_per_s"]
    each = [json.load(open(out))["images_per_s"] for out in outs]
    return {"one_process_images_per_s": one, "pinned_images_per_s": each,
            "pinned_total_images_per_s": sum(each), "speedup": sum(each) / one}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--patch-sizes", default="2,1")
    parser.add_argument("--out", default="results/bench/workers_cpu.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for p in map(int, args.patch_sizes.split(",")):
            for mixer, overrides in MODELS.items():
                row = {"mixer": mixer, "patch_size": p, **measure([*overrides, f"model.patch_size={p}"], args.steps,
                                                                  args.workers, tmp)}
                print(f"{mixer} p={p}: one process {row['one_process_images_per_s']:.0f} img/s; {args.workers}"
                      f" pinned {row['pinned_total_images_per_s']:.0f} img/s (x{row['speedup']:.2f})", flush=True)
                rows.append(row)
    save(args.out, {"benchmark": "workers", "command": "python benchmarks/workers.py", "experiment": EXPERIMENT,
                    "workers": args.workers, "steps": args.steps, "batch_size": 128, "rows": rows,
                    **environment()})


if __name__ == "__main__":
    main()
