"""Patch scaling against parameter scaling (the study's Figure 3) on MNIST at 16×16.

    patchscale sweep experiments/mnist_patch_vs_params.py

ViTs of three sizes (width 32 depth 2, width 64 depth 2, width 128 depth 4; 4 heads, MLP 4×)
at patch sizes 16, 8, 4, 2 (1 to 64 patch tokens), the default study's data-rich recipe
otherwise, cut at 4 epochs (experiments/mnist_sweep.py's `recipe(epochs=4)`: all 50,000 images
with ±1 px shifts, 1/2/4-epoch budgets), three seeds. Each model size is its own patch-size group in
`patchscale fit`; `patchscale plot DIR` puts every group's loss and accuracy against training FLOPs and against parameters on
shared axes (groups_vs_compute.png), and `patchscale fit DIR` lists every cell by FLOPs, so
the two ways of spending compute meet on one axis. What the study reports: at equal
compute, shrinking the patch is competitive with growing the model.

Cost here: the p = 2 runs (65 tokens) dominate: about 6 minutes each for the 64-wide model
(results/mnist_rich_16_lr) and several times that for the 128-wide, 4-deep one, so roughly 3
hours in all. NOT RUN yet; `--shard` splits it across machines.
"""

from . import mnist_limited, mnist_sweep

PATCH_SIZES = (16, 8, 4, 2)
MODELS = ({"model.width": 32, "model.depth": 2, "model.heads": 4, "model.mlp_dim": 128},
          {"model.width": 64, "model.depth": 2, "model.heads": 4, "model.mlp_dim": 256},
          {"model.width": 128, "model.depth": 4, "model.heads": 4, "model.mlp_dim": 512})


def get_config(arg=None):
    return mnist_sweep.recipe(arg, epochs=4.0)  # The default study's data-rich recipe at 16×16, 4 epochs.


def get_sweep():
    baselines = mnist_limited.baseline_points()
    runs = [{"model.mixer": "attention", **model, "model.patch_size": p, "seed": seed}
            for p in PATCH_SIZES for model in MODELS for seed in mnist_limited.SEEDS]
    return baselines + runs
