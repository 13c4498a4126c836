"""Three ways to spend compute at ImageNet scale: smaller patches, a larger model, or S² scales (DeiT, 224²).

    patchscale sweep experiments/paper_s2.py data.data_dir=gs://BUCKET/tensorflow_datasets --dry-run

From DeiT-B at 224², p = 16: p = 8 (4× the tokens), DeiT-L at p = 16 (a larger model), and
S² with scales (1, 2) (`model.s2_scales`: the image at 448² cut into four 224² tiles plus the
whole image at 224², features merged and concatenated, mean pooling). DeiT recipe
(docs/recipes.md), mean pooling for every point so the heads compare. What it should show,
per Shi et al. 2024: more scales can match a larger model at similar compute; the
patchification study adds smaller patches as the third option. NOT RUN: validates and
dry-runs here only. The miniature is experiments/mnist_s2.py. Every point, DeiT-L included,
trains with the DeiT Ti/S/B recipe (--lr 5e-4 × batch/512 = 1e-3 at batch 1024), so the three
options share one recipe: DeiT-L here is not the study's Large recipe (paper_common.DEIT_LARGE).
"""

from .paper_common import deit_recipe, eval_crop_ratio, imagenet

POINTS = [
    {"model.size": "B", "model.patch_size": 16},
    {"model.size": "B", "model.patch_size": 8},
    {"model.size": "L", "model.patch_size": 16},
    {"model.size": "B", "model.patch_size": 16, "model.s2_scales": (1, 2), "data.image_size": 448},
]


def get_config(arg=None):
    del arg
    c = deit_recipe(imagenet(224))
    c.model.pool = "gap"
    return c


def get_sweep():
    # The eval view of the base size for every point (the S² input is 448² only to make its tiles):
    # crop ratio 0.875 at p = 16 and 224², so the comparison is not confounded by the view.
    return [{**point, "data.eval_crop_ratio": eval_crop_ratio(224, point["model.patch_size"])} for point in POINTS]
