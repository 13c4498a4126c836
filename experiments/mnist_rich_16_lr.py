"""The learning-rate check of the data-rich 16×16 study: is 3·10⁻³ as good at p = 2 as at p = 8?

    patchscale sweep experiments/mnist_rich_16_lr.py

Both mixers at p = 8 and p = 2 (5 and 65 tokens), learning rates 1·10⁻³ and 3·10⁻³, seed 0,
the recipe of experiments/mnist_rich_16.py at a short budget (evaluated after 2 and 4 epochs).
If one rate is best at both patch sizes, a patch-size effect in the main study cannot be a
learning-rate mismatch; if the best rate differs by patch size, the main study should use each
size's best rate. Compare the groups' validation losses (`patchscale fit results/mnist_rich_16_lr`
lists them by group). About an hour on this project's 2-core CPU, most of it at p = 2.
"""

from . import mnist_rich_16, mnist_limited

LEARNING_RATES = (1e-3, 3e-3)


def get_config(arg=None):
    c = mnist_rich_16.get_config(arg)
    c.train.epochs = 4.0
    c.train.budgets = (0.5,)  # 2 and 4 epochs.
    return c


def get_sweep():
    return [{**mixer, "model.patch_size": p, "train.learning_rate": lr, "seed": 0}
            for p in (8, 2) for mixer in mnist_limited.mixer_settings() for lr in LEARNING_RATES]
