"""The train step on an accelerator, side by side with timm (PyTorch) on the same device, in one run.

    python benchmarks/accelerator.py [--only NAME ...] [--no-peer] [--no-peer-compile] \\
        [--profile NAME ...] [--attention] [--deadline-s 450] [--out FILE]

Cases (224² inputs, MNIST's 1 channel and 10 classes, bf16 compute, synthetic batches already
on the device): DeiT-S at p = 16, 8, 4 and DeiT-Ti at p = 2 (the ViT cases), Adventurer-S at
p = 16, 8, 4 and Adventurer-Ti at p = 1 (50,177 tokens, scanned blocks, full remat, token
segments of 4,096). Each patchscale case is `patchscale.bench.bench` (median of --steps steps
after --warmup, utilisation of the matmul peak measured once in this process). Each ViT case
is then run by the peer when torch and timm are importable (never a dependency of the
package): timm's `VisionTransformer` of the same width, depth, heads and class token, bf16
autocast, fused AdamW (weight decay 0.05), gradient clipping at 1, label smoothing 0.1,
PyTorch's SDPA attention, eagerly and under `torch.compile` (the model; the optimizer step
stays eager), timed the same way with the device synchronised after every step.

Every row is written to the JSON as soon as it is measured; a case that fails records its
error and the run goes on. `--profile NAME` adds a per-op breakdown of that patchscale case
(benchmarks/profile_step.py) to its row; `--attention` times attention alone, forward and
backward, dense XLA against the padded cuDNN kernel over a range of lengths (the evidence for
`attention.CUDNN_MIN_TOKENS`); `--check-attention` compares the padded cuDNN kernel's outputs and
gradients with dense XLA attention on the device. `--deadline-s` skips the cases that would start after it.
The default output is results/bench/accelerator_<device>.json.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import statistics
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # The peer shares the device.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks import profile_step  # noqa: E402
from benchmarks.common import environment, save  # noqa: E402
from patchscale import bench  # noqa: E402
from patchscale.config import apply_overrides  # noqa: E402
from patchscale.defaults import base_config  # noqa: E402
from patchscale.models import presets, sizes  # noqa: E402
from patchscale.models.mixers import attention  # noqa: E402

IMAGE = 224


def _vit(size: str, patch: int, batch: int) -> list[str]:
    return [f"model.size={size}", f"data.image_size={IMAGE}", f"model.patch_size={patch}",
            f"train.batch_size={batch}", "model.dtype=bfloat16"]


def _adventurer(size: str, patch: int, batch: int, *extra: str) -> list[str]:
    return presets.adventurer_overrides(size) + [f"data.image_size={IMAGE}", f"model.patch_size={patch}",
                                                 f"train.batch_size={batch}", "model.dtype=bfloat16", *extra]


CASES = {
    "deit-S-p16": _vit("S", 16, 256),
    "deit-S-p8": _vit("S", 8, 64),
    "deit-S-p4": _vit("S", 4, 16),
    "deit-Ti-p2": _vit("Ti", 2, 4),
    "adv-S-p16": _adventurer("adv-S", 16, 256),
    "adv-S-p8": _adventurer("adv-S", 8, 64),
    "adv-S-p4": _adventurer("adv-S", 4, 16),
    "adv-Ti-p1": _adventurer("adv-Ti", 1, 8, "model.scan_layers=true", "model.remat=full",
                             "model.token_segment=4096"),
}
ATTENTION_LENGTHS = (17, 65, 129, 197, 257, 785, 3137, 12545)
ATTENTION_TOKENS_PER_BATCH = 50_000  # Batch × length held about constant across lengths.


def device_slug() -> str:
    """'NVIDIA H200' → 'h200', 'TPU v5 lite' → 'tpu_v5_lite': the file name's device part."""
    kind = jax.devices()[0].device_kind.lower().replace("nvidia", "")
    return re.sub(r"[^a-z0-9]+", "_", kind).strip("_") or jax.default_backend()


def config_for(overrides: list[str]):
    config = base_config()
    apply_overrides(config, overrides)
    return config


def run_patchscale(name: str, overrides: list[str], args, peak: dict) -> dict:
    config = config_for(overrides)
    prepared = bench.compiled_step(config)
    row = bench.bench(config, steps=args.steps, warmup=args.warmup, peak=peak, feed=False, prepared=prepared)
    if name in args.profile:
        row["profile"] = profile_step.profile(prepared[1], steps=3)
        profile_step.print_summary(row["profile"], top=20)
        if args.hlo_dir:  # The optimised program, to read what each profiled fusion holds.
            Path(args.hlo_dir).mkdir(parents=True, exist_ok=True)
            (Path(args.hlo_dir) / f"{name}.hlo.txt").write_text(prepared[0].as_text())
    return row


def timm_step(config, compiled: bool):
    """(one timm train step that synchronises, parameter count) for the ViT of `config`."""
    import timm.models.vision_transformer as vt
    import torch
    import torch.nn.functional as F

    shape = sizes.resolve(config.model)
    torch.manual_seed(0)
    model = vt.VisionTransformer(img_size=IMAGE, patch_size=config.model.patch_size, in_chans=1, num_classes=10,
                                 embed_dim=shape.width, depth=shape.depth, num_heads=shape.heads,
                                 mlp_ratio=shape.mlp_dim / shape.width, class_token=True,
                                 global_pool="token").cuda()
    forward = torch.compile(model) if compiled else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05, fused=True)
    batch = config.train.batch_size
    images = torch.randn(batch, 1, IMAGE, IMAGE, device="cuda")
    labels = torch.randint(0, 10, (batch,), device="cuda")

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(forward(images), labels, label_smoothing=0.1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        torch.cuda.synchronize()

    return step, sum(p.numel() for p in model.parameters())


def run_peer(name: str, overrides: list[str], compiled: bool, args, peak: dict) -> dict:
    import torch

    config = config_for(overrides)
    start = time.perf_counter()
    step, params = timm_step(config, compiled)
    for _ in range(args.warmup):
        step()  # The first call of the compiled model compiles it.
    setup_s = time.perf_counter() - start
    timing = bench.time_calls(step, args.steps)
    batch = config.train.batch_size
    from patchscale.models import flops

    flops_per_step = flops.train_flops_per_image(config.model, IMAGE, 1, 10) * batch
    seconds = timing["median_s"]
    row = {"params": params, "compile_s": setup_s, **{f"step_{k}": v for k, v in timing.items()},
           "images_per_s": batch / seconds, "model_flops_per_step": flops_per_step,
           "utilisation_measured_peak": bench.utilisation(flops_per_step, seconds, peak["flops_per_s"]),
           "temp_bytes": torch.cuda.max_memory_allocated(), "torch_version": torch.__version__}
    del step
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return row


def attention_rows(repeats: int = 20) -> list[dict]:
    """Attention alone (6 heads × 64, bf16), forward + backward: dense XLA vs the padded cuDNN kernel."""
    rows = []
    for n in ATTENTION_LENGTHS:
        batch = max(1, ATTENTION_TOKENS_PER_BATCH // n)
        keys = jax.random.split(jax.random.key(n), 3)
        q, k, v = (jax.random.normal(key, (batch, n, 6, 64), jnp.bfloat16) for key in keys)
        row = {"tokens": n, "batch": batch}
        for impl in ("xla", "cudnn"):
            try:
                if impl == "xla" and attention.dense_logits(batch, 6, n) > attention.INDEX_LIMIT:
                    raise ValueError("dense logits past the int32 range")
                loss = lambda q, k, v, impl=impl: attention.attend(q, k, v, impl, 1024).astype(jnp.float32).sum()  # noqa: E731
                grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
                jax.block_until_ready(grad(q, k, v))
                row[f"{impl}_ms"] = 1e3 * bench.time_calls(lambda: jax.block_until_ready(grad(q, k, v)),
                                                           repeats)["median_s"]
            except Exception as e:  # A refused shape is a result too.
                row[f"{impl}_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        rows.append(row)
        print(f"attention N={n} batch {batch}: xla {row.get('xla_ms', float('nan')):.3f} ms,"
              f" cudnn {row.get('cudnn_ms', float('nan')):.3f} ms", flush=True)
    return rows


def attention_agreement(lengths=(17, 197, 785, 3137)) -> list[dict]:
    """The padded cuDNN kernel against dense XLA attention on this device (bf16, batch 2, 6 × 64):
    relative error of the outputs and of the gradients of q, k, v."""
    rows = []
    for n in lengths:
        q, k, v = (jax.random.normal(key, (2, n, 6, 64), jnp.bfloat16) for key in jax.random.split(jax.random.key(n), 3))
        cotangent = jax.random.normal(jax.random.key(n + 1), (2, n, 6, 64), jnp.float32)
        results = {}
        for impl in ("xla", "cudnn"):
            loss = lambda q, k, v, impl=impl: (attention.attend(q, k, v, impl, 1024) * cotangent).sum()  # noqa: E731
            out = jax.jit(lambda q, k, v, impl=impl: attention.attend(q, k, v, impl, 1024))(q, k, v)
            results[impl] = (out, *jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v))
        rel = [float(jnp.linalg.norm((a.astype(jnp.float32) - b.astype(jnp.float32)).ravel())
                     / jnp.linalg.norm(b.astype(jnp.float32).ravel())) for a, b in zip(results["cudnn"], results["xla"])]
        rows.append({"tokens": n, "rel_err_out": rel[0], "rel_err_dq": rel[1], "rel_err_dk": rel[2],
                     "rel_err_dv": rel[3]})
        print(f"cudnn vs xla at N={n}: relative error out {rel[0]:.1e}, dq {rel[1]:.1e}, dk {rel[2]:.1e},"
              f" dv {rel[3]:.1e}", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    """Side by side: patchscale and the peer per case, with patchscale ÷ the faster peer."""
    by = {(r["case"], r["side"]): r for r in rows}
    lines = ["| case | patchscale img/s (of peak) | timm eager | timm compiled | ÷ best PyTorch |",
             "|---|---:|---:|---:|---:|"]

    def cell(row):
        if row is None:
            return "—"
        if "error" in row:
            return "error"
        util = row.get("utilisation_measured_peak")
        return f"{row['images_per_s']:,.1f}" + (f" ({100 * util:.0f}%)" if util else "")

    for case in dict.fromkeys(r["case"] for r in rows):
        ours, eager, compiled = (by.get((case, s)) for s in ("patchscale", "timm-eager", "timm-compiled"))
        peers = [r["images_per_s"] for r in (eager, compiled) if r and "error" not in r]
        ratio = (f"{ours['images_per_s'] / max(peers):.2f}" if peers and ours and "error" not in ours else "—")
        lines.append(f"| {case} | {cell(ours)} | {cell(eager)} | {cell(compiled)} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=CASES, help="cases to run (default: all)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-peer", action="store_true", help="skip timm")
    parser.add_argument("--no-peer-compile", action="store_true", help="timm eagerly only")
    parser.add_argument("--profile", nargs="*", default=[], help="cases (or CASE+OVERRIDES variants) to profile by op")
    parser.add_argument("--hlo-dir", help="write each profiled case's optimised HLO here")
    parser.add_argument("--attention", action="store_true", help="also time attention alone, XLA vs cuDNN")
    parser.add_argument("--check-attention", action="store_true",
                        help="also compare the padded cuDNN kernel with dense XLA attention (outputs, gradients)")
    parser.add_argument("--variant", nargs=2, action="append", default=[], metavar=("CASE", "OVERRIDES"),
                        help="also run CASE with extra comma-separated overrides (patchscale only)")
    parser.add_argument("--deadline-s", type=float, default=450.0, help="start no case after this many seconds")
    parser.add_argument("--out", help="default results/bench/accelerator_<device>.json")
    args = parser.parse_args()
    begin = time.perf_counter()
    out = args.out or f"results/bench/accelerator_{device_slug()}.json"
    try:
        import timm  # noqa: F401
        import torch
        peer = not args.no_peer and torch.cuda.is_available()
    except ImportError:
        peer = False
    peak = bench.matmul_peak(jnp.bfloat16)
    print(f"{jax.devices()[0].device_kind}: measured bf16 matmul peak {peak['flops_per_s'] / 1e12:.0f} TFLOP/s",
          flush=True)
    record = {"command": " ".join(["python", "benchmarks/accelerator.py", *sys.argv[1:]]), "matmul": peak,
              **environment(), "rows": []}
    if args.attention:
        record["attention"] = attention_rows()
        save(out, record)
    if args.check_attention:
        try:
            record["attention_agreement"] = attention_agreement()
        except Exception as e:  # Recorded; the timings still run.
            record["attention_agreement"] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
        save(out, record)

    cases = [(name, CASES[name], name) for name in (args.only or CASES)]  # --only: in the order given.
    cases += [(f"{case}+{extra}", CASES[case] + extra.split(","), case) for case, extra in args.variant]
    for label, overrides, base in cases:
        sides = [("patchscale", None)]
        if peer and base.startswith("deit"):
            sides += [("timm-eager", False)] + ([] if args.no_peer_compile else [("timm-compiled", True)])
        for side, compiled in sides:
            row = {"case": label, "side": side, "overrides": overrides}
            if time.perf_counter() - begin > args.deadline_s:
                row["error"] = f"skipped: past the {args.deadline_s:.0f} s deadline"
            else:
                try:
                    if side == "patchscale":
                        row.update(run_patchscale(label, overrides, args, peak))
                    else:
                        row.update(run_peer(label, overrides, compiled, args, peak))
                except Exception as e:  # Record it and go on to the next case.
                    row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:500] if str(e) else ''}"
                    row["traceback"] = traceback.format_exc()[-3000:]
            gc.collect()
            record["rows"].append(row)
            record["elapsed_s"] = time.perf_counter() - begin
            save(out, record)
            if "error" in row:
                print(f"{label} [{side}]: {row['error']}", flush=True)
            else:
                util = row.get("utilisation_measured_peak")
                print(f"{label} [{side}]: {row['images_per_s']:,.1f} img/s, step {1e3 * row['step_median_s']:.2f} ms,"
                      f" {100 * (util or 0):.1f}% of peak, compile {row['compile_s']:.1f} s,"
                      f" temp {row.get('temp_bytes', 0) / 2**30:.2f} GiB", flush=True)
    record["table"] = table(record["rows"])
    save(out, record)
    print(record["table"])
    print(f"wrote {out} in {time.perf_counter() - begin:.0f} s")


if __name__ == "__main__":
    main()
