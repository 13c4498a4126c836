"""The standard benchmark set: model-FLOP utilisation of the train step (see `patchscale bench`).

    python benchmarks/utilisation.py --set cpu          # → results/bench/utilisation_cpu.json
    python benchmarks/utilisation.py --set mamba2-cpu   # chunk sizes × lengths for Adventurer
    python benchmarks/utilisation.py --set mamba2-cpu-segments  # 1k vs 16k tokens, scanned, ± token segments
    python benchmarks/utilisation.py --set gpu          # ViT-B/16 and Adventurer-B at 224², bf16

Each row is one `patchscale.bench.bench` result (compile time, step time median/min/max,
images/s, tokens/s, analytic FLOPs, achieved FLOP/s, utilisation of the matmul peak measured
in the same process and of the vendor peak, compiled memory). Rows are written as they finish.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import save  # noqa: E402
from patchscale import bench  # noqa: E402
from patchscale.config import apply_overrides  # noqa: E402
from patchscale.defaults import base_config  # noqa: E402
from patchscale.models import presets  # noqa: E402

ADVENTURER = presets.adventurer_overrides()


def _vit_384(depth: int, patch: int) -> list[str]:
    return ["model.width=384", f"model.depth={depth}", "model.heads=6", "model.mlp_dim=1536", "data.image_size=64",
            f"model.patch_size={patch}", "train.batch_size=32", "model.dtype=float32"]


def _vit_128(patch: int) -> list[str]:  # MNIST at its own 32×32.
    return ["model.width=128", "model.depth=4", "model.heads=4", "model.mlp_dim=512", f"model.patch_size={patch}",
            "train.batch_size=32", "model.dtype=float32"]


def _adventurer_ti(side: int, chunk: int, batch: int) -> list[str]:
    return ADVENTURER + ["model.size=adv-Ti", "model.patch_size=1", f"data.image_size={side}", "model.remat=full",
                         f"model.mamba2.chunk_size={chunk}", f"train.batch_size={batch}", "model.dtype=float32"]


SETS = {
    "cpu": {f"vit384-d{d}-p{p}": _vit_384(d, p) for d in (4, 12) for p in (16, 8, 4)}
    | {f"vit128-mnist-p{p}": _vit_128(p) for p in (16, 8, 4)},
    "mamba2-cpu": {f"adv-Ti-{side * side}tok-Q{q}": _adventurer_ti(side, q, 1)
                   for side in (32, 64, 128) for q in (64, 128, 256)},
    # Per-token cost of the scanned, segmented layout (issue 13: 16k within 1.3× of 1k per token).
    "mamba2-cpu-segments": {f"adv-Ti-{side * side}tok-Q64-{name}": _adventurer_ti(side, 64, 1) + extra
                            for side in (32, 128)
                            for name, extra in (("scan", ["model.scan_layers=true"]),
                                                ("scan-seg1024", ["model.scan_layers=true",
                                                                  "model.token_segment=1024"]))},
    "gpu": {
        **{f"vit-B-224-p{p}": ["model.size=B", "data.image_size=224", f"model.patch_size={p}", "train.batch_size=64",
                               "model.dtype=bfloat16"] for p in (16, 4, 2)},
        **{f"adv-B-224-p{p}": ADVENTURER + ["model.size=adv-B", "data.image_size=224", f"model.patch_size={p}",
                                            "train.batch_size=16", "model.dtype=bfloat16", "model.remat=full"]
           for p in (16, 4, 2)},
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=SETS, default="cpu")
    parser.add_argument("--only", nargs="*", help="names of rows to run (default: all of the set)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", help="default results/bench/utilisation_<set>.json")
    args = parser.parse_args()
    out = args.out or f"results/bench/utilisation_{args.set}.json"
    rows = []
    for name, overrides in SETS[args.set].items():
        if args.only and name not in args.only:
            continue
        config = base_config()
        apply_overrides(config, overrides)
        row = {"name": name, "overrides": overrides, **bench.bench(config, steps=args.steps, warmup=args.warmup)}
        rows.append(row)
        print(f"{name}: {bench.format_row(row)}", flush=True)
        save(out, {"command": " ".join(["python", "benchmarks/utilisation.py", *sys.argv[1:]]), "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
