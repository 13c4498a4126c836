"""The data-rich 16×16 study extended to 32 epochs, because at 16 it is still falling.

    patchscale sweep experiments/mnist_rich_16_long.py

experiments/mnist_rich_16.py with the budget grid doubled: each run is evaluated after 2, 4, 8,
16 and 32 epochs (warmup-stable-decay, one cooldown branch per budget, the same warm-up), so its
first four budgets repeat the 16-epoch study's schedule and the fifth tells whether the minimum
is reached. Issue 27 asks for it when the verdict says "still falling": in every finished run of
the 16-epoch study, validation loss fell 20–54% from 8 to 16 epochs (relative to the 16-epoch
value; results/mnist_rich_16/runs/*/metrics.jsonl and summary.json), the MLP 1–11%.

Cost: twice the 16-epoch study's (whose checkpoints were not kept, so it cannot be continued):
its fastest p = 2 runs took 31 minutes (ViT, shared CPU) and 33 (Adventurer, idle CPU) here, so
about an hour per p = 2 run and some 9 hours in all on this project's CPU; minutes on an accelerator
(`scripts/device_sweep.sh experiments/mnist_rich_16_long.py OUT`). Run here 2026-12-07/08
(results/mnist_rich_16_long, docs/results.md): still budget-limited at 32 epochs, and p = 2 is
level with p = 4 where at 16 epochs it was behind.
"""

from . import mnist_rich_16

get_sweep = mnist_rich_16.get_sweep


def get_config(arg=None):
    c = mnist_rich_16.get_config(arg)
    c.train.epochs = 32.0
    c.train.budgets = (0.0625, 0.125, 0.25, 0.5)  # 2, 4, 8 and 16 epochs, besides the whole run.
    return c
