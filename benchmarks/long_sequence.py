"""Memory, step time and compile time of one train step at the study's longest sequence, per block layout.

    python benchmarks/long_sequence.py                 # writes results/bench/long_sequence_<platform>.json
    python benchmarks/long_sequence.py --depth-only    # only the compile time vs depth rows
    python benchmarks/long_sequence.py --models deit-Ti --layouts scanned+segments --warmup 0 --repeats 1 \
        --no-depth --out results/bench/long_sequence_cpu_deit.json   # one timed DeiT-Ti step (~15 min here)

Rows (each a compiled train step of batch 1 on 3-channel images, float32 on CPU):

* 224², p = 1 (50,177 tokens), full remat per block: Adventurer-Ti (width 256, 12 blocks) and
  DeiT-Ti (width 192, 12 blocks, 3 heads, chunked attention), unrolled and scanned
  (`model.scan_layers`), with and without token segments (`model.token_segment`). Memory is
  XLA's `temp_size_in_bytes` (activations and scratch as this backend schedules them);
  variants whose memory fits are also run (--repeats steps after one warm-up).
* Compile time of the train step against depth (4, 12, 24 blocks), unrolled and scanned, for
  Adventurer-Ti at 32² and p = 4 (65 tokens): what the scan does to the program's size.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

from benchmarks.common import environment, memory, save, time_calls  # noqa: E402
from patchscale import config as config_lib, partitioning  # noqa: E402
from patchscale.defaults import base_config  # noqa: E402
from patchscale.models import presets  # noqa: E402
from patchscale.program import Program  # noqa: E402
from patchscale.run_spec import RunSpec  # noqa: E402
from patchscale.models import flops  # noqa: E402

MODELS = {
    "adventurer-Ti": presets.adventurer_overrides("adv-Ti"),
    "deit-Ti": ["model.size=Ti", "model.attention_impl=chunked", "model.attention_chunk=256"],
}
LAYOUTS = {
    "unrolled": ["model.scan_layers=false"],
    "scanned": ["model.scan_layers=true"],
    "scanned+segments": ["model.scan_layers=true", "model.token_segment=4096"],
}


def make_program(model: str, image_size: int, patch: int, extra: list[str]) -> Program:
    c = base_config()
    config_lib.apply_overrides(c, MODELS[model] + [f"model.patch_size={patch}", "model.remat=full",
                                                   "train.batch_size=1", "train.eval_batch_size=1", *extra])
    # ImageNet's shapes (3 channels, 1000 classes) on synthetic batches: nothing is read.
    config_lib.apply_overrides(c, ["data.name=imagenet2012", f"data.image_size={image_size}"])
    return Program(RunSpec.from_config(c).with_steps(100, 1), partitioning.make_mesh(c.mesh))


def physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def measure(model: str, layout: str, image_size: int, patch: int, repeats: int, run: bool, warmup: int = 1) -> dict:
    program = make_program(model, image_size, patch, LAYOUTS[layout])
    start = time.perf_counter()
    compiled = program.compile_train_step()  # For the abstract state: no parameters are created.
    row = {"model": model, "layout": layout, "image_size": image_size, "patch_size": patch,
           "tokens": flops.tokens_per_image(program.config.model, image_size),
           "overrides": MODELS[model] + LAYOUTS[layout], "compile_s": time.perf_counter() - start,
           **memory(compiled)}
    needed = row["temp_bytes"] + row["argument_bytes"] + row["output_bytes"]
    if not run:
        return row
    if needed > 0.8 * physical_memory():
        row["skipped_timing"] = f"needs {needed / 2**30:.1f} GiB, more than 80% of this host's memory"
        return row
    state = program.init_state()
    step = program.compile_train_step(state)
    rng = np.random.default_rng(0)
    batch = partitioning.global_batch({"image": rng.integers(0, 256, (1, image_size, image_size, 3), np.uint8),
                                       "label": rng.integers(0, 1000, 1).astype(np.int32)}, program.mesh)
    holder = {"state": state}

    def one_step():
        holder["state"], metrics = step(holder["state"], program.frozen, batch)
        row["loss"] = float(jax.block_until_ready(metrics)["loss"])

    for _ in range(warmup):  # The step is compiled ahead of time; this only warms allocations.
        one_step()
    row.update(time_calls(one_step, repeats), warmup=warmup)
    return row


def format_row(row: dict) -> str:
    timing = f"{row['median_s']:.1f} s/step" if "median_s" in row else row.get("skipped_timing", "not run")
    return (f"{row['model']:>14} {row['layout']:>17} {row['image_size']:>4}² p={row['patch_size']:<2}"
            f" {row.get('depth', ''):>3} temp {row['temp_bytes'] / 2**30:7.3f} GiB"
            f"  compile {row['compile_s']:6.1f} s  {timing}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="timed steps per variant that fits")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before them")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    parser.add_argument("--no-depth", action="store_true", help="skip the compile time vs depth rows")
    parser.add_argument("--no-run", action="store_true", help="compile only: memory and compile time")
    parser.add_argument("--depth-only", action="store_true")
    parser.add_argument("--depths", type=int, nargs="+", default=[4, 12, 24])
    parser.add_argument("--out", default=None)
    parser.add_argument("--append", action="store_true", help="add rows to --out instead of replacing it")
    args = parser.parse_args()
    out = args.out or f"results/bench/long_sequence_{jax.default_backend()}.json"
    payload = {"benchmark": "long_sequence", "command": " ".join(["python", *sys.argv]), **environment(),
               "rows": [], "depth_rows": []}
    if args.append and os.path.exists(out):  # Earlier invocations' rows, each with its own command.
        import json

        with open(out) as f:
            earlier = json.load(f)
        payload["rows"], payload["depth_rows"] = earlier["rows"], earlier["depth_rows"]
        payload["command"] = earlier["command"] + " ; " + payload["command"]
    if not args.depth_only:
        for model in args.models:
            for layout in args.layouts:
                # The unrolled 224² step does not fit this host (45 GiB for Adventurer-Ti): compile only.
                row = measure(model, layout, 224, 1, args.repeats, run=not args.no_run and layout != "unrolled",
                              warmup=args.warmup)
                payload["rows"].append(row)
                print(format_row(row), flush=True)
                save(out, payload)  # After every row: a crash keeps what was measured.
    for depth in [] if args.no_depth else args.depths:
        for layout in ("unrolled", "scanned"):
            MODELS["adventurer-Ti-depth"] = MODELS["adventurer-Ti"] + [f"model.depth={depth}"]
            row = {**measure("adventurer-Ti-depth", layout, 32, 4, 0, run=False), "depth": depth}
            payload["depth_rows"].append(row)
            print(format_row(row), flush=True)
            save(out, payload)


if __name__ == "__main__":
    main()
