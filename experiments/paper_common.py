"""Shared pieces of the paper configs (ImageNet recipes of docs/recipes.md). Not an experiment itself."""

from patchscale.defaults import base_config
from patchscale.models import presets

PATCH_SIZES = [16, 8, 4, 2, 1]


def eval_crop_ratio(image_size: int, patch_size: int) -> float:
    """The study's eval view: crop ratio 0.875 (DeiT), 1.0 for patches below 16 or inputs above 224."""
    return 1.0 if patch_size < 16 or image_size > 224 else 0.875


def imagenet(image_size: int, data_dir: str | None = None):
    """Base config reading TFDS ImageNet from a data dir (e.g. gs://bucket/tensorflow_datasets).

    Bicubic resizes, the reference eval view (shorter side to size/ratio, centre crop; the
    ratio per patch size is set by `eval_view`), float32 residual stream, no gradient clipping.
    """
    c = base_config()
    c.data.name = "imagenet2012"
    c.data.data_dir = data_dir
    c.data.train_split = "train"
    c.data.eval_split = "validation"
    c.data.image_size = image_size
    c.data.worker_threads = 16
    c.train.eval_batch_size = 1000
    c.train.log_every = 100
    c.train.checkpoint_every = 2000
    c.train.eval_every = 10_000
    c.data.interpolation = "bicubic"
    c.data.eval_crop_ratio = eval_crop_ratio(image_size, c.model.patch_size)
    c.model.dtype = "auto"  # bfloat16 on accelerators.
    c.model.residual_dtype = "float32"  # As the reference's autocast.
    c.model.remat = "full"  # Small patches at 128²–224² need it.
    c.model.scan_layers = True  # One compiled block whatever the depth (models/backbone.py).
    c.train.grad_clip_norm = 0.0  # Neither DeiT nor Adventurer clips gradients.
    c.train.end_learning_rate = 1e-5
    return c


def eval_view(points: list[dict], image_size: int) -> list[dict]:
    """Each point with the study's eval crop ratio for its patch size (`eval_crop_ratio`)."""
    return [{**p, "data.eval_crop_ratio": eval_crop_ratio(p.get("data.image_size", image_size),
                                                         p["model.patch_size"])} for p in points]


def deit_augment(c):
    """DeiT: RandomResizedCrop (0.08–1, 3/4–4/3, bicubic), flip, RandAugment rand-m9-mstd0.5-inc1,
    random erasing 0.25, Mixup 0.8 / CutMix 1.0 (switch 0.5), repeated augmentation ×3."""
    a = c.augment
    a.crop, a.hflip, a.policy, a.random_erasing, a.repeats = "random_resized", 0.5, "rand-m9-mstd0.5-inc1", 0.25, 3
    a.mixup_alpha, a.cutmix_alpha, a.mixup_switch_prob = 0.8, 1.0, 0.5
    return c


def three_augment(c):
    """Adventurer stages 1–2: RandomResizedCrop + flip + ThreeAugment + colour jitter 0.3, no erasing,
    Mixup/CutMix, repeated augmentation ×3."""
    a = c.augment
    a.crop, a.hflip, a.policy, a.color_jitter, a.random_erasing, a.repeats = \
        "random_resized", 0.5, "three_augment", 0.3, 0.0, 3
    a.mixup_alpha, a.cutmix_alpha, a.mixup_switch_prob = 0.8, 1.0, 0.5
    return c


def deit_recipe(c, large: bool = False):
    """DeiT Ti/S/B: lr 1e-3 at batch 1024 (5e-4 per 512), wd 0.05, 300 epochs, 5 warm-up, drop path 0.1.
    L/H: lr 2e-4, wd 0.3, betas (0.9, 0.95), batch 4096, 200 epochs, 20 warm-up, drop path 0.2."""
    t = c.train
    if large:
        t.batch_size, t.learning_rate, t.weight_decay, t.b2 = 4096, 2e-4, 0.3, 0.95
        t.epochs, t.warmup_epochs, c.model.drop_path = 200.0, 20.0, 0.2
    else:
        t.batch_size, t.learning_rate, t.weight_decay = 1024, 1e-3, 0.05
        t.epochs, t.warmup_epochs, c.model.drop_path = 300.0, 5.0, 0.1
    t.label_smoothing = 0.1  # Folded into the Mixup/CutMix soft targets.
    return deit_augment(c)


def adventurer(c, size: str):
    """The Adventurer block (Mamba-2 mixer, RMSNorm, SwiGLU, CLS last, LeCun-normal patch embedding)
    with the released flip rule (blocks 2 and 3), which produced every published Adventurer number."""
    presets.adventurer(c, size)
    c.model.mamba2.flip = "released"
    return c


def adventurer_recipe(c, drop_path: float = 0.1):
    """Stage 1 (128²): lr 1e-3 at batch 1024, wd 0.05, 300 epochs, drop path 0.1, ThreeAugment,
    label smoothing 0 with Mixup/CutMix, EMA 0.99996 kept (the raw model is what is reported)."""
    t = c.train
    t.batch_size, t.learning_rate, t.weight_decay, t.epochs, t.warmup_epochs = 1024, 1e-3, 0.05, 300.0, 5.0
    t.label_smoothing = 0.0
    t.ema_decay = 0.99996
    c.model.drop_path = drop_path
    return three_augment(c)


# The later Adventurer stages, as overrides of the stage-1 config (docs/recipes.md, Adventurer).
ADVENTURER_STAGE_2 = {"data.image_size": 224, "train.epochs": 100.0, "model.drop_path": 0.4}
ADVENTURER_STAGE_3 = {"data.image_size": 224, "train.epochs": 20.0, "train.learning_rate": 1e-5,
                      "train.weight_decay": 0.1, "model.drop_path": 0.6, "augment.policy": "rand-m9-mstd0.5-inc1",
                      "augment.color_jitter": 0.0, "augment.random_erasing": 0.25, "augment.repeats": 1,
                      "train.label_smoothing": 0.1, "train.warmup_epochs": 0.0}
