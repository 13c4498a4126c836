"""Scaling model and patch size together on ImageNet at 224×224: DeiT and Adventurer Ti/S/B/L × p = 16 … 1.

    patchscale sweep experiments/paper_model_scaling.py data.data_dir=gs://BUCKET/tensorflow_datasets --dry-run

What it should show: at every model size, smaller patches lower the test loss; the gain does
not vanish as the model grows. NOT RUN: validates and dry-runs here only (the p = 1 points of
the Large models need a TPU pod or a multi-GPU cluster). Recipes: docs/recipes.md (DeiT L uses the
Large/Huge recipe; Adventurer uses its 128² pre-training recipe at 224²).
"""

from patchscale.models import presets
from patchscale.sweep import product

from .paper_common import PATCH_SIZES, adventurer_recipe, deit_recipe, eval_view, imagenet

ADVENTURER_BLOCK = {**presets.ADVENTURER_BLOCK, "model.mamba2.flip": "released"}


def get_config(arg=None):
    del arg
    return deit_recipe(imagenet(224))


def get_sweep():
    points = []
    for size in ("Ti", "S", "B", "L"):
        large = {"train.batch_size": 4096, "train.learning_rate": 2e-4, "train.weight_decay": 0.3, "train.b2": 0.95,
                 "train.epochs": 200.0, "train.warmup_epochs": 20.0, "model.drop_path": 0.2} if size == "L" else {}
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
