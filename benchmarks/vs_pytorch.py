"""The ViT train step in JAX (this suite's compiled step) against PyTorch eager, on identical shapes.

    pip install torch          # optional benchmark extra: `pip install -e '.[bench]'`
    python benchmarks/vs_pytorch.py [--only NAME ...] [--rounds 5] [--steps 3] [--out FILE]

Both sides train the same network on the same synthetic batch in one process: patch embedding
(convolution), learned position table, pre-norm blocks (LayerNorm ε 1e-6, attention with a
fused qkv projection, GELU MLP 4×), final norm, mean pooling, linear head; cross-entropy with
label smoothing 0.1, gradient clipping at norm 1, AdamW (β 0.9/0.999, weight decay 0.05 on
matrices only). The parameter counts are checked equal before timing. PyTorch runs eagerly
with its defaults (`torch.get_num_threads()` threads, SDPA attention); JAX runs
`Program.compile_train_step`, i.e. exactly what `patchscale train` runs (float32).

Rounds alternate the two sides (JAX `--steps` steps, then PyTorch `--steps` steps, and so on)
so that a slower stretch of a shared machine hits both; the reported time is the median step
of each side over all rounds, and `speedup` is PyTorch's median over JAX's (> 1: JAX faster).
Small differences the comparison leaves in favour of PyTorch: its batch arrives as normalised
float32 (JAX's step also converts the uint8 images), and its learning rate is constant (JAX
evaluates the schedule in the step).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import environment, save  # noqa: E402
from patchscale import bench  # noqa: E402
from patchscale.config import apply_overrides  # noqa: E402
from patchscale.defaults import base_config  # noqa: E402

# name → (width, heads, image size, patch size, batch); depth 4, MLP 4×, MNIST's 1 channel and 10 classes.
SHAPES = {
    "w384-64px-p16-b32": (384, 6, 64, 16, 32),
    "w384-64px-p8-b32": (384, 6, 64, 8, 32),
    "w384-64px-p4-b32": (384, 6, 64, 4, 32),
    "w128-32px-p8-b64": (128, 4, 32, 8, 64),
    "w128-32px-p4-b64": (128, 4, 32, 4, 64),
}
DEPTH, CHANNELS, CLASSES = 4, 1, 10


def jax_overrides(width: int, heads: int, image: int, patch: int, batch: int, extra: list[str]) -> list[str]:
    return [f"model.width={width}", f"model.depth={DEPTH}", f"model.heads={heads}", f"model.mlp_dim={4 * width}",
            f"data.image_size={image}", f"model.patch_size={patch}", f"train.batch_size={batch}",
            "model.pool=gap", "model.posemb=learned", "model.dtype=float32", *extra]


def torch_step(width: int, heads: int, image: int, patch: int, batch: int):
    """(one PyTorch train step, parameter count) for the same ViT, eager."""
    import torch
    from torch import nn
    import torch.nn.functional as F

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(width, eps=1e-6), nn.LayerNorm(width, eps=1e-6)
            self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
            self.fc1, self.fc2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

        def forward(self, x):
            b, n, d = x.shape
            q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
            y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
            x = x + self.proj(y)
            return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))

    class ViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Conv2d(CHANNELS, width, patch, patch)
            self.pos = nn.Parameter(torch.randn(1, (image // patch) ** 2, width) * 0.02)
            self.blocks = nn.Sequential(*[Block() for _ in range(DEPTH)])
            self.norm, self.head = nn.LayerNorm(width, eps=1e-6), nn.Linear(width, CLASSES)

        def forward(self, images):
            x = self.embed(images).flatten(2).transpose(1, 2) + self.pos
            return self.head(self.norm(self.blocks(x)).mean(dim=1))

    torch.manual_seed(0)
    model = ViT()
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.999))
    images = torch.randn(batch, CHANNELS, image, image)
    labels = torch.randint(0, CLASSES, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), labels, label_smoothing=0.1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    return step, sum(p.numel() for p in model.parameters())


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(name: str, shape: tuple, rounds: int, steps: int, extra: list[str]) -> dict:
    import torch

    overrides = jax_overrides(*shape, extra)
    config = base_config()
    apply_overrides(config, overrides)
    compiled, jax_one, facts = bench.compiled_step(config)
    jax_params = facts["params"]
    torch_one, torch_params = torch_step(*shape)
    if jax_params != torch_params:
        raise SystemExit(f"{name}: parameter counts differ (JAX {jax_params:,}, PyTorch {torch_params:,})")
    for _ in range(2):  # Warm-up: first calls allocate and (PyTorch) pick kernels.
        jax_one()
        torch_one()
    jax_s, torch_s = [], []
    for _ in range(rounds):
        jax_s += [timed(jax_one) for _ in range(steps)]
        torch_s += [timed(torch_one) for _ in range(steps)]
    jax_median, torch_median = statistics.median(jax_s), statistics.median(torch_s)
    width, heads, image, patch, batch = shape
    return {"name": name, "width": width, "depth": DEPTH, "heads": heads, "image_size": image, "patch_size": patch,
            "batch_size": batch, "tokens": (image // patch) ** 2, "params": jax_params, "jax_overrides": overrides,
            "jax_step_median_s": jax_median, "torch_step_median_s": torch_median,
            "jax_step_s": jax_s, "torch_step_s": torch_s, "speedup": torch_median / jax_median,
            "jax_compile_s": facts["compile_s"], "torch_threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=SHAPES, help="shapes to run (default: all)")
    parser.add_argument("--rounds", type=int, default=5, help="alternations of the two sides")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per side per round")
    parser.add_argument("--jax", nargs="*", default=[], metavar="KEY=VALUE", help="extra overrides for the JAX side")
    parser.add_argument("--out", default="results/bench/vs_pytorch_cpu.json")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        raise SystemExit("vs_pytorch: PyTorch is not installed (pip install -e '.[bench]')") from None
    rows = []
    for name, shape in SHAPES.items():
        if args.only and name not in args.only:
            continue
        row = compare(name, shape, args.rounds, args.steps, args.jax)
        rows.append(row)
        print(f"{name}: {row['tokens']} tokens, JAX {row['jax_step_median_s'] * 1e3:.1f} ms, "
              f"PyTorch {row['torch_step_median_s'] * 1e3:.1f} ms → {row['speedup']:.2f}×", flush=True)
        save(args.out, {"command": " ".join(["python", "benchmarks/vs_pytorch.py", *sys.argv[1:]]),
                        "torch_version": torch.__version__, **environment(), "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
