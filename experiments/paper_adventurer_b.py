"""The study's Adventurer-B patch sweeps on ImageNet at 128×128 and 224×224, p = 16 … 1 (up to 50,176 tokens).

    patchscale sweep experiments/paper_adventurer_b.py data.data_dir=gs://BUCKET/tensorflow_datasets --dry-run

What it should show: test loss falling smoothly down to p = 1 with a linear-time mixer, whose
cost grows ~4× per halving of p (attention's grows up to 16×).
NOT RUN: validates and dry-runs here only. The study pre-trains at 128² (300 epochs), then
trains at 224² (100 epochs, drop path 0.4) and fine-tunes; patchscale cannot yet start a run
from another run's weights, so the 224² points here train from scratch with the 224² stage's
drop path and 300 epochs. Recipe: REFERENCE.md (Adventurer).
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from paper_common import PATCH_SIZES, adventurer, adventurer_recipe, imagenet  # noqa: E402

from patchscale.sweep import product  # noqa: E402


def get_config(arg=None):
    del arg
    return adventurer_recipe(adventurer(imagenet(128), "adv-B"))


def get_sweep():
    return (product(**{"data.image_size": [128], "model.patch_size": PATCH_SIZES})
            + product(**{"data.image_size": [224], "model.patch_size": PATCH_SIZES, "model.drop_path": [0.4]}))
