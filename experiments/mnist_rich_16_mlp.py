"""The MLP baseline of the data-rich 16×16 study at the rate the 4-epoch check chose, over 16 epochs.

    patchscale sweep experiments/mnist_rich_16_mlp.py

experiments/mnist_rich_16.py trains its MLP baseline at 1·10⁻², the 5,000-image study's rate;
the 4-epoch learning-rate check of the default study (experiments/mnist_sweep.py) found 3·10⁻³
better on all 50,000 images. So that "every run beats the MLP" is not a claim against a
mistuned baseline, this trains the same MLP (one hidden layer of 256) with the study's recipe
and budgets (2, 4, 8, 16 epochs) at 3·10⁻³ for the three seeds and at 1·10⁻³ for seed 0 (a
smaller rate may pay off over a longer run). About 6 minutes per run on this 2-core CPU while a
sweep ran beside it (results/mnist_rich_16_mlp).
"""

from . import mnist_limited, mnist_rich_16

RATE = 3e-3
CHECK = {0: 1e-3}  # Seed → an extra rate to compare with.


def get_config(arg=None):
    return mnist_rich_16.get_config(arg)


def get_sweep():
    return [{"model.baseline": "mlp", "train.learning_rate": lr, "seed": seed}
            for seed in mnist_limited.SEEDS for lr in sorted({RATE, CHECK.get(seed, RATE)})]
