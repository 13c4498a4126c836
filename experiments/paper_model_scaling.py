"""Scaling model and patch size together on ImageNet at 224×224: DeiT and Adventurer Ti/S/B/L × p = 16 … 1.

    patchscale sweep experiments/paper_model_scaling.py data.data_dir=gs://BUCKET/tensorflow_datasets --dry-run

What it should show: at every model size, smaller patches lower the test loss; the gain does
not vanish as the model grows. NOT RUN: validates and dry-runs here only (the p = 1 points of
the Large models need a TPU pod or a multi-GPU cluster). Recipes: docs/recipes.md (DeiT L uses the
Large/Huge recipe: --lr 2e-4 × batch/512 = 1.6e-3 at batch 4096; Adventurer uses its 128²
pre-training recipe at 224², in one stage, with the released flip rule and drop-path schedule).
tests/released_recipes.py lists every value with its source.
"""

from patchscale.models import presets
from patchscale.sweep import product

from .paper_common import (ADVENTURER_RELEASED, DEIT_LARGE, PATCH_SIZES, adventurer_recipe, deit_recipe, eval_view,
                           imagenet)

ADVENTURER_BLOCK = {**presets.ADVENTURER_BLOCK, **ADVENTURER_RELEASED}


def get_config(arg=None):
    del arg
    return deit_recipe(imagenet(224))


def get_sweep():
    points = []
    for size in ("Ti", "S", "B", "L"):
        large = DEIT_LARGE if size == "L" else {}  # 1.6e-3 = 2e-4 × 4096/512 (paper_common.DEIT_LARGE).
        points += [{"model.size": size, **large, **p} for p in product(**{"model.patch_size": PATCH_SIZES})]
    recipe = adventurer_recipe(imagenet(224))
    adventurer_train = {f"train.{k}": recipe.train[k] for k in ("batch_size", "learning_rate", "weight_decay",
                                                                "epochs", "warmup_epochs", "label_smoothing",
                                                                "ema_decay")}
    adventurer_train.update({f"augment.{k}": recipe.augment[k] for k in ("policy", "color_jitter", "random_erasing")})
    for size in ("adv-Ti", "adv-S", "adv-B", "adv-L"):
        points += [{"model.size": size, **ADVENTURER_BLOCK, **adventurer_train, "model.drop_path": 0.1, **p}
                   for p in product(**{"model.patch_size": PATCH_SIZES})]
    return eval_view(points, 224)
