"""The study's Adventurer-B patch sweeps on ImageNet at 128×128 and 224×224, p = 16 … 1 (up to 50,176 tokens).

    patchscale sweep experiments/paper_adventurer_b.py data.data_dir=gs://BUCKET/tensorflow_datasets --dry-run

What it should show: test loss falling smoothly down to p = 1 with a linear-time mixer, whose
cost grows ~4× per halving of p (attention's grows up to 16×).
NOT RUN: validates and dry-runs here only.

The study's three stages, per patch size, as one sweep whose stages depend on each other
(`train.init_from` names the previous stage's point; a stage runs once its source finished),
as the released commands (Patch_Scaling README; tests/released_recipes.py):
1. 128², 300 epochs, batch 1024, --lr 5e-4 × batch/512 = 1e-3, 5 warm-up epochs, ThreeAugment,
   Mixup/CutMix, no erasing, repeated augmentation, drop path 0.1;
2. 224², 100 epochs from stage 1 (position table resized to the 224² grid, class token kept
   last), same recipe, drop path 0.4;
3. 224², 20 epochs from stage 2, batch 512, lr 1e-5 absolute (--unscale-lr), 5 warm-up epochs,
   wd 0.1, drop path 0.6, RandAugment, no erasing, label smoothing 0.1, no repeated augmentation.
Released flip rule (blocks 2 and 3) and drop-path schedule (blocks 0 and 1 never drop), no
gradient clipping, float32 residual stream, EMA 0.99996 kept but the raw model evaluated, eval
crop ratio 0.875 at p = 16 and 1.0 below (the study's eval commands). docs/recipes.md has the details.
"""

from .paper_common import (ADVENTURER_STAGE_2, ADVENTURER_STAGE_3, PATCH_SIZES, adventurer,
                          adventurer_recipe, eval_view, imagenet)


def get_config(arg=None):
    del arg
    return adventurer_recipe(adventurer(imagenet(128), "adv-B"))


def get_sweep():
    points = []
    for p in PATCH_SIZES:
        stage1 = {"data.image_size": 128, "model.patch_size": p}
        stage2 = {**ADVENTURER_STAGE_2, "model.patch_size": p}
        stage3 = {**ADVENTURER_STAGE_3, "model.patch_size": p}
        points += [stage1, {**stage2, "train.init_from": stage1}, {**stage3, "train.init_from": stage2}]
    return eval_view(points, 128)
