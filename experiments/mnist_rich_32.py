"""The native-resolution sweep: MNIST at its padded 32×32, p = 8, 4, 2, 1, data-rich, for an accelerator.

    patchscale sweep experiments/mnist_rich_32.py data.data_dir=DIR

The recipe of experiments/mnist_rich_16.py (all 50,000 training images, random translations,
2 / 4 / 8 / 16-epoch budgets by warmup-stable-decay, validation for early stopping and the
convergence verdict, the full test split) at the digits' own resolution: p = 8, 4, 2, 1 give
17, 65, 257 and 1,025 tokens (with CLS). Width 64 = 8²·1, so the p = 8 projection is not a
bottleneck; depth 2, both mixers, three seeds, linear and MLP baselines. The shift is ±2 pixels,
the same fraction of the image as ±1 at 16×16. One dtype for every patch size: `model.dtype=auto`
is bfloat16 on an accelerator and float32 on a CPU, so compare runs of one device only.

About 8.7·10¹⁵ training FLOPs in all (`--dry-run` prints them): for an accelerator (its duration on
one H200 is not measured yet; width-64 models use a small fraction of such a chip), days here.
On a machine without network it runs in one command, `scripts/device_sweep.sh
experiments/mnist_rich_32.py OUT`, given the prepared dataset in .data/ (`patchscale data
prepare mnist --data-dir .data` here, 24 MB) and the wheels of `scripts/device_wheels.sh .whl`;
the script stops the sweep in time to checkpoint and pack it (OUT/results.tgz), and resumes
from that file (OUT_PREVIOUS=...) on the next machine. NOT RUN yet: no accelerator has been
lent since it was written.
"""

from . import mnist_rich_16, mnist_limited

PATCH_SIZES = (8, 4, 2, 1)


def get_config(arg=None):
    c = mnist_rich_16.get_config(arg)
    c.data.image_size = 32
    c.data.random_shift = 2
    return c


def get_sweep():
    """The baselines, then every seed and mixer of a patch size before the next, cheapest first."""
    return mnist_limited.patch_major_sweep(PATCH_SIZES)
