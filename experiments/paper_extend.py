"""Sequence length without new information at ImageNet scale: DeiT-B at 64², by extending vs by scaling.

    patchscale sweep experiments/paper_extend.py data.data_dir=gs://BUCKET/tensorflow_datasets --dry-run

The study's Table 5 contrast in the setting of its 64² DeiT-B patch sweep
(experiments/paper_deit_b_64.py, same recipe): p = 16 with its grid of embeddings interpolated
to the token count of p = 8, 4, 2 (`model.extend_tokens` 2, 4, 8), next to p = 16, 8, 4, 2 by
scaling. (Our reference notes do not record the exact setting of the study's Table 5; this is
the closest of the study's own settings.) What it should show: extending helps far less than
scaling at the same length. NOT RUN: validates and dry-runs here only; needs accelerators and
TFDS imagenet2012. The miniature is experiments/mnist_extend.py.
"""

from .paper_common import eval_view
from .paper_deit_b_64 import get_config  # noqa: F401 - the same base config.

SCALING = [(16, 1), (8, 1), (4, 1), (2, 1)]  # (patch size, extend factor)
EXTENDING = [(16, 2), (16, 4), (16, 8)]


def get_sweep():
    return eval_view([{"model.patch_size": p, "model.extend_tokens": f} for p, f in SCALING + EXTENDING], 64)
