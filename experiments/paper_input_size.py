"""Input size at a fixed sequence length at ImageNet scale: DeiT-B with a 16×16 token grid at 64², 128², 224².

    patchscale sweep experiments/paper_input_size.py data.data_dir=gs://BUCKET/tensorflow_datasets --dry-run

The study's Figure 4 question: at 256 patch tokens, does a larger input (with a larger patch:
p = 4, 8, 14) lower the loss by itself? DeiT-B with the DeiT recipe (docs/recipes.md). What it
should show: at a fixed token count the input size matters little; the token count does.
Eval view per point (paper_common.eval_crop_ratio): 0.875 at 64², 1.0 at 128²/p8 and 224²/p14,
so the field of view is not the same across this sweep (docs/recipes.md, Evaluation).
NOT RUN: validates and dry-runs here only. The miniature is experiments/mnist_input_size.py.
"""

from .paper_common import deit_recipe, eval_view, imagenet

SIZES = [(64, 4), (128, 8), (224, 14)]  # (input size, patch size): a 16×16 grid each.


def get_config(arg=None):
    del arg
    c = deit_recipe(imagenet(224))
    c.model.size = "B"
    return c


def get_sweep():
    points = []
    for size, patch in SIZES:
        points += eval_view([{"data.image_size": size, "model.patch_size": patch}], size)
    return points
