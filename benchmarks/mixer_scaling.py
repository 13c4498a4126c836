"""Train-step time per token and compiled activation memory vs sequence length, per token mixer.

    python benchmarks/mixer_scaling.py            # writes results/bench/mixer_scaling_<platform>.json

Adventurer-Ti (Mamba-2, width 256, 12 blocks, remat per block) next to a ViT of the same width
and depth (attention, 4 heads, MLP 1024, remat per block), at p = 1 on 3-channel images of
side 32, 48, 64, 96, 128 (1,024 … 16,384 tokens). Every step processes at least
--tokens-per-step tokens (batch = max(1, tokens_per_step / length)), so time per token is comparable across lengths.
Memory: XLA's `temp_size_in_bytes` of the compiled train step (activations and scratch, as
scheduled by this backend), and the bytes JAX saves for the backward pass (the residuals of
`jax.vjp` of the loss, parameters they reference included), which per-block remat reduces to
the block inputs whatever the backend's scheduler does.
Then one 224×224 image at p = 1 (50,176 tokens): compiled memory of the train step, and its time.
Lengths whose estimated step time exceeds --max-step-seconds are compiled (memory) but not run.
"""

from __future__ import annotations

import argparse
import os
import sys

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
    "vit-256x12": ["model.size=adv-Ti", "model.mixer=attention", "model.heads=4", "model.mlp_dim=1024"],
}


def make_program(model: str, image_size: int, batch: int, extra: list[str]) -> Program:
    c = base_config()
    config_lib.apply_overrides(c, MODELS[model] + ["model.patch_size=1", "model.remat=full",
                                                   f"train.batch_size={batch}", f"train.eval_batch_size={batch}",
                                                   *extra])
    # ImageNet's shapes (3 channels, 1000 classes) on synthetic batches: nothing is read.
    config_lib.apply_overrides(c, ["data.name=imagenet2012", f"data.image_size={image_size}"])
    return Program(RunSpec.from_config(c).with_steps(100, 1), partitioning.make_mesh(c.mesh))


def physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def saved_for_backward(program: Program, state, batch: int) -> int:
    """Bytes of the residuals `jax.vjp` keeps for the backward pass (shapes only, nothing runs)."""
    spec = program.batch_spec(batch)

    def backward_closure(params, frozen, images, labels):
        targets = jax.nn.one_hot(labels, program.spec.head_classes)
        loss = lambda p: program._loss(p, frozen, images, targets, None, jax.random.key(0))  # noqa: E731
        return jax.vjp(loss, params)[1]

    residuals = jax.eval_shape(backward_closure, state["params"], program.frozen, spec["image"], spec["label"])
    return int(sum(np.prod(leaf.shape) * leaf.dtype.itemsize for leaf in jax.tree.leaves(residuals)))


def measure(model: str, image_size: int, batch: int, repeats: int, max_step_seconds: float,
            flop_rate: float | None, extra: list[str]) -> dict:
    program = make_program(model, image_size, batch, extra)
    state = program.init_state()
    compiled = program.compile_train_step(state)
    tokens = flops.tokens_per_image(program.config.model, image_size)
    train_flops = batch * flops.train_flops_per_image(program.config.model, image_size, 3, 1000)
    row = {"model": model, "image_size": image_size, "tokens": tokens, "batch": batch,
           "train_flops_per_step": train_flops, **memory(compiled),
           "saved_for_backward_bytes": saved_for_backward(program, state, batch)}
    row["temp_bytes_per_image"] = row["temp_bytes"] / batch
    estimate = train_flops / flop_rate if flop_rate else None
    if estimate is not None and estimate > max_step_seconds:
        row["skipped_timing"] = f"estimated {estimate:.0f}s per step > --max-step-seconds"
        return row
    needed = row["temp_bytes"] + row["argument_bytes"] + row["output_bytes"]
    if needed > 0.8 * physical_memory():
        row["skipped_timing"] = f"needs {needed / 2**30:.1f} GiB, more than 80% of this host's memory"
        return row
    rng = np.random.default_rng(0)
    batch_data = partitioning.global_batch({"image": rng.integers(0, 256, (batch, image_size, image_size, 3), np.uint8),
                                        "label": rng.integers(0, 1000, batch).astype(np.int32)}, program.mesh)
    holder = {"state": state}

    def step():
        holder["state"], metrics = compiled(holder["state"], program.frozen, batch_data)
        jax.block_until_ready(metrics)

    step()  # Warm-up.
    timing = time_calls(step, repeats)
    row.update(timing)
    row["seconds_per_token"] = timing["median_s"] / (batch * tokens)
    row["achieved_flops_per_s"] = train_flops / timing["median_s"]
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[32, 48, 64, 96, 128])
    parser.add_argument("--tokens-per-step", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-step-seconds", type=float, default=60.0)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--full-image", type=int, default=224, help="side of the single-image p=1 run (0: skip)")
    parser.add_argument("--out", default=None)
    parser.add_argument("overrides", nargs="*", help="extra config overrides, e.g. model.mamba2.chunk_size=64")
    args = parser.parse_args()

    rows = []
    out = args.out or f"results/bench/mixer_scaling_{jax.default_backend()}.json"
    header = {"benchmark": "mixer_scaling", "command": " ".join(sys.argv), **environment()}
    for model in args.models:
        rate = None
        for side in args.sides:
            batch = max(1, args.tokens_per_step // (side * side))
            row = measure(model, side, batch, args.repeats, args.max_step_seconds, rate, args.overrides)
            rate = row.get("achieved_flops_per_s", rate)
            rows.append(row)
            print(format_row(row), flush=True)
            save(out, {**header, "rows": rows})  # After every row: a crash keeps what was measured.
        if args.full_image:
            row = measure(model, args.full_image, 1, 1, args.max_step_seconds * 10, rate, args.overrides)
            rows.append(row)
            print(format_row(row), flush=True)
            save(out, {**header, "rows": rows})


def format_row(row: dict) -> str:
    timing = (f"{row['median_s']:.2f}s/step  {row['seconds_per_token'] * 1e6:.1f} µs/token"
              f"  {row['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s" if "median_s" in row else row["skipped_timing"])
    return (f"{row['model']:>14}  {row['tokens']:>6} tokens  batch {row['batch']:>2}  "
            f"temp {row['temp_bytes'] / 2**20:8.1f} MiB ({row['temp_bytes_per_image'] / 2**20:8.1f} MiB/image)"
            f"  saved {row['saved_for_backward_bytes'] / 2**20:7.1f} MiB  {timing}")


if __name__ == "__main__":
    main()
