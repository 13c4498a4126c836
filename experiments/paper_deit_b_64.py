"""The study's DeiT-B patch sweep on ImageNet at 64×64: p = 16, 8, 4, 2, 1 (16 … 4,096 tokens).

    patchscale sweep experiments/paper_deit_b_64.py data.data_dir=gs://BUCKET/tensorflow_datasets --dry-run
    patchscale sweep experiments/paper_deit_b_64.py data.data_dir=gs://BUCKET/tensorflow_datasets

What it should show: test loss falling smoothly as the patch shrinks, down to p = 1.
NOT RUN: this config validates and dry-runs here (CPU, no ImageNet), but it has never been
trained; it needs accelerators (300 epochs of ImageNet at 4,096 tokens per image) and TFDS
imagenet2012 prepared in the data dir. Recipe (docs/recipes.md): DeiT Ti/S/B with its full
augmentation (RandomResizedCrop, flip, RandAugment, random erasing, Mixup/CutMix, repeated
augmentation; --lr 5e-4 × batch/512 = 1e-3 at batch 1024), no gradient clipping, float32 residual
stream, bicubic eval view with crop ratio 0.875 at every patch size (the study's advice for 64²
inputs), so the field of view does not change along the sweep.
"""

from patchscale.sweep import product

from .paper_common import PATCH_SIZES, deit_recipe, eval_view, imagenet


def get_config(arg=None):
    del arg
    c = deit_recipe(imagenet(64))
    c.model.size = "B"
    return c


def get_sweep():
    return eval_view(product(**{"model.patch_size": PATCH_SIZES}), 64)
