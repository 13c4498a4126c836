"""Decoder-free dense prediction at ADE20k scale (the study's Table 2): DeiT-S classifiers, then segmentation.

    patchscale sweep experiments/paper_dense.py data.data_dir=gs://BUCKET/tensorflow_datasets --dry-run

Two stages in one sweep, as the study fine-tunes segmentation from its classification runs:

1. DeiT-S on ImageNet at 224², p = 16, 8, 4, with mean pooling (no class token, so every token
   is a patch of pixels for the dense head), the DeiT recipe (docs/recipes.md).
2. ADE20k (TFDS `scene_parse150`: 20,210 training images, its "test" split is ADE's 2,000-image
   validation set) from each classifier (`train.init_from`), with both heads: `dense_linear`
   (one linear layer from each token to its p×p pixels' 150 logits) and `dense_decoder` (a small
   convolutional decoder). The recipe of REFERENCE.md: AdamW lr 5e-5, weight decay 0.01, batch
   16, 160k iterations (1,500 warm-up, as mmsegmentation), no label smoothing. Labels: the
   annotation's first channel minus 1, so ADE's "other" (0) is ignored in the loss and in mIoU
   (`data.mask_offset=-1`, segmentation.py). mIoU and per-pixel cross-entropy over every
   labelled pixel of the validation images.

Departures from the study's segmentation setup, stated so results are read correctly: images
and masks are squashed to 224² (the study, like mmsegmentation, crops 512² from rescaled
images and evaluates at full resolution with a sliding window); no training augmentation
(random rescale, crop, flip and photometric distortion would have to move the masks, which
the pipeline refuses); our `dense_decoder` is a small convolutional upsampler, not UperNet.

What it should show, per the study: the linear head's gap to the decoder shrinks as the patch
shrinks. NOT RUN: validates and dry-runs here only. The miniature is experiments/mnist_dense.py.
"""

from .paper_common import deit_recipe, eval_crop_ratio, imagenet

PATCH_SIZES = (16, 8, 4)
HEADS = ("dense_linear", "dense_decoder")
ADE_TRAIN = 20_210
BATCH = 16

ADE20K = {
    "data.name": "scene_parse150", "data.train_split": "train", "data.eval_split": "test",
    "data.mask_feature": "annotation", "data.mask_classes": 150, "data.mask_offset": -1,
    "data.interpolation": "bilinear", "data.eval_crop_ratio": None,
    # lr 5e-5 absolute at batch 16 (REFERENCE.md's segmentation recipe; no batch scaling).
    "train.steps": 160_000, "train.batch_size": BATCH, "train.learning_rate": 5e-5, "train.weight_decay": 0.01,
    "train.warmup_epochs": 1_500 * BATCH / ADE_TRAIN, "train.end_learning_rate": 0.0, "train.label_smoothing": 0.0,
    "train.eval_batch_size": 100, "train.eval_every": 16_000, "train.checkpoint_every": 4_000,
    # No augmentation: the masks would have to move with the images (see the docstring).
    "augment.crop": "resize", "augment.hflip": 0.0, "augment.policy": "none", "augment.random_erasing": 0.0,
    "augment.repeats": 1, "augment.mixup_alpha": 0.0, "augment.cutmix_alpha": 0.0,
}


def get_config(arg=None):
    del arg
    c = deit_recipe(imagenet(224))
    c.model.size = "S"
    c.model.pool = "gap"
    return c


def get_sweep():
    classifiers = [{"model.head": "classify", "model.patch_size": p, "data.eval_crop_ratio": eval_crop_ratio(224, p)}
                   for p in PATCH_SIZES]
    segmenters = [{**ADE20K, "model.head": head, "model.patch_size": p,
                   "train.init_from": {"model.head": "classify", "model.patch_size": p}}
                  for p in PATCH_SIZES for head in HEADS]
    return classifiers + segmenters
