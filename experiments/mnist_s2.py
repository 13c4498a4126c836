"""Three ways to spend compute on an image: smaller patches, a larger model, or more scales (S²).

    patchscale sweep experiments/mnist_s2.py

From the data-limited study's ViT at 8×8 and p = 4 (experiments/mnist_limited.py, same recipe, mean
pooling so that S² can pool its merged grids), spend 4–10× the training FLOPs three ways
(measured per run in results/mnist_s2/fit.json):

* smaller patches: p = 2 (16 instead of 4 tokens);
* a larger model: width 128 instead of 64 (MLP and heads scaled with it);
* more scales (`model.s2_scales=(1, 2)`, Shi et al. 2024): the digits at 16×16 cut into four
  8×8 tiles plus the whole digit at 8×8, through the same backbone, features merged and
  concatenated (5× the tokens, no new backbone parameters). It sees 16×16 pixels, which is
  part of what S² buys; the plain model at 16×16 and p = 4 (16 tokens) is in the sweep too.

Each way is its own group; `patchscale plot DIR` draws them on shared axes of training FLOPs
and parameters (groups_vs_compute.png) and `patchscale fit DIR` lists every cell by FLOPs.
Cost here: about 1 hour (15 runs at 4–20 tokens, 3 seeds) plus 6 baseline runs. Run once:
results/mnist_s2 (provenance.json says how); its reading is in docs/results.md.
"""

from . import mnist_limited

POINTS = (
    {"model.patch_size": 4},
    {"model.patch_size": 2},
    {"model.patch_size": 4, "model.width": 128, "model.mlp_dim": 512},  # 4 heads, as the 64-wide model.
    {"model.patch_size": 4, "model.s2_scales": (1, 2), "data.image_size": 16},
    {"model.patch_size": 4, "data.image_size": 16},
)


def get_config(arg=None):
    c = mnist_limited.get_config(arg)
    c.model.pool = "gap"
    return c


def get_sweep():
    baselines = mnist_limited.baseline_points()
    return baselines + [{"model.mixer": "attention", **point, "seed": seed}
                        for point in POINTS for seed in mnist_limited.SEEDS]
