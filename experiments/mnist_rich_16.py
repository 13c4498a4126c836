"""The 16×16 study in the data-rich regime: all 50,000 training images with random shifts, both mixers.

    patchscale sweep experiments/mnist_rich_16.py

Patch sizes 16, 8, 4, 2 at a 16×16 input (1 … 64 patch tokens), the models and baselines of the
5,000-image study (experiments/mnist_sweep_16.py, kept as the data-limited contrast), but trained
on every training image with a random translation of up to ±1 pixel (`data.random_shift=1`),
so that no model can memorise the training set. Each run is evaluated after 2, 4, 8 and 16
epochs (warmup-stable-decay with a cooldown branch for each budget) on the 10,000 validation
images (early stopping and the convergence verdict) and the 10,000 test images (the fitted
metric). The learning rate (3·10⁻³) is checked against 1·10⁻³ at p = 8 and p = 2 by
experiments/mnist_rich_16_lr.py.

Cost on this project's 2-core CPU (rates of the 16×16 ViT scaled to 16 epochs of 50,000 images
plus the cooldown branches, ≈ 940k images per run): about 2 / 4 / 11 / 39 minutes per ViT run
at p = 16 / 8 / 4 / 2, Adventurer slower; points are ordered cheapest patch size first, so a
sweep stopped early has whole groups. Run it resumably in the background: the same command
skips finished runs and resumes a partial one from its checkpoint. p = 1 (257 tokens, 5–6
hours per run here) belongs on an accelerator.
"""

from . import mnist_limited, mnist_sweep_16

PATCH_SIZES = (16, 8, 4, 2)


def get_config(arg=None):
    c = mnist_sweep_16.get_config(arg)
    c.data.train_examples = None  # All 50,000.
    c.data.random_shift = 1
    c.train.epochs = 16.0
    c.train.warmup_epochs = 0.5  # 195 steps: well before the first (2-epoch) budget's cooldown.
    c.train.budgets = (0.125, 0.25, 0.5)  # 2, 4, 8 and 16 epochs.
    c.train.checkpoint_every = 1000
    return c


def get_sweep():
    """The baselines, then every seed and mixer of a patch size before the next, cheapest first."""
    return mnist_limited.patch_major_sweep(PATCH_SIZES)
