"""The 16 → 1 study: test loss vs patch size on MNIST at 16×16, attention (ViT) and Mamba-2 (Adventurer).

    patchscale sweep experiments/mnist_sweep_16.py

Patch sizes 16, 8, 4, 2, 1 at a 16×16 input (1 … 256 patch tokens), with the recipe, models,
budgets, baselines and convergence criterion of the data-limited study (experiments/mnist_limited.py),
which it extends: it separates "more input information" from "more tokens", since this
study's p = 2 and the 8×8 study's p = 1 both see 65 tokens but this one sees 4× the pixels.

Cost on this project's 2-core CPU (measured per-run rates of the data-limited 8×8 study, scaled by tokens):
about an hour for p = 16, 8, 4 of both mixers and all seeds; about 3 more hours for p = 2; p = 1
(257 tokens) about 15 hours more. Points are ordered cheapest patch size first (all seeds and both
mixers of a size before the next size), so a sweep stopped early has whole groups of the larger
patches. Run it resumably: a stopped sweep skips finished runs and resumes partial ones from their
checkpoints when the same command is run again.

Width 64 (as in the 8×8 study) equals p²·C at p = 8; at p = 16 the 256-pixel patch is
projected to 64 dimensions, a 4× bottleneck that a width-256 model would avoid at ~16× the
cost per token. Read p = 16 with that in mind (the fit can be repeated without it).
"""

from . import mnist_limited

PATCH_SIZES = (16, 8, 4, 2, 1)


def get_config(arg=None):
    c = mnist_limited.get_config(arg)
    c.data.image_size = 16
    return c


def get_sweep():
    """The 8×8 study's points with the 16×16 patch sizes, cheapest patch size first."""
    return mnist_limited.patch_major_sweep(PATCH_SIZES)
