"""Shared pieces of the paper configs (ImageNet recipes of docs/recipes.md). Not an experiment itself.

Every learning rate is written with its convention: `scaled_lr(flag, batch)` is the rate the
released scripts train with for `--lr flag` at that global batch (DeiT's and Adventurer's main.py
multiply it by batch / 512 unless `--unscale-lr` is given); a bare number is absolute. The
values and their sources are transcribed in tests/released_recipes.py, which
tests/test_recipes.py compares with every paper config, stage by stage.
"""

from patchscale.defaults import base_config
from patchscale.models import presets

PATCH_SIZES = [16, 8, 4, 2, 1]
LR_BATCH = 512  # The released scripts: lr = --lr × global batch / 512 (unless --unscale-lr).


def scaled_lr(flag: float, batch: int) -> float:
    """The rate of `--lr flag` at global batch `batch` under the released scripts' rule (× batch / 512)."""
    return flag * batch / LR_BATCH


def eval_crop_ratio(image_size: int, patch_size: int) -> float:
    """The study's eval view. At 64² inputs 0.875 for every patch size (the study's advice for small
    inputs, Patch_Scaling README), so the field of view does not change along a 64² patch sweep;
    otherwise DeiT's 0.875, and 1.0 for patches below 16 or inputs above 224 (the study's eval commands)."""
    if image_size <= 64:
        return 0.875
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
    c.train.end_learning_rate = 1e-5  # Absolute: the scripts' --min-lr default (not scaled).
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


# DeiT Large/Huge (REFERENCE.md: the study's L/H recipe, MAE's ViT-L values): --lr 2e-4 scaled by the
# global batch like every other DeiT rate, 1.6e-3 at batch 4096; wd 0.3, betas (0.9, 0.95),
# 200 epochs, 20 warm-up, drop path 0.2.
DEIT_LARGE = {"train.batch_size": 4096, "train.learning_rate": scaled_lr(2e-4, 4096), "train.weight_decay": 0.3,
              "train.b2": 0.95, "train.epochs": 200.0, "train.warmup_epochs": 20.0, "model.drop_path": 0.2}


def deit_recipe(c, large: bool = False):
    """DeiT Ti/S/B: --lr 5e-4 × batch/512 = 1e-3 at batch 1024, wd 0.05, 300 epochs, 5 warm-up,
    drop path 0.1 (DeiT main.py defaults; README_deit.md trains at 4 × 256 or 16 × 64).
    L/H: `DEIT_LARGE`."""
    t = c.train
    t.batch_size, t.learning_rate, t.weight_decay = 1024, scaled_lr(5e-4, 1024), 0.05  # 1e-3, scaled.
    t.epochs, t.warmup_epochs, c.model.drop_path = 300.0, 5.0, 0.1
    if large:
        for key, value in DEIT_LARGE.items():
            section, name = key.split(".")
            c[section][name] = value
    t.label_smoothing = 0.1  # Folded into the Mixup/CutMix soft targets.
    return deit_augment(c)


def adventurer(c, size: str):
    """The Adventurer block (Mamba-2 mixer, RMSNorm, SwiGLU, CLS last, LeCun-normal patch embedding)
    with the released flip rule (blocks 2 and 3) and the released drop-path schedule (off by one:
    blocks 0 and 1 never drop), which produced every published Adventurer number."""
    presets.adventurer(c, size)
    c.model.mamba2.flip = "released"
    c.model.drop_path_schedule = "released"
    return c


ADVENTURER_RELEASED = {"model.mamba2.flip": "released", "model.drop_path_schedule": "released"}


def adventurer_recipe(c, drop_path: float = 0.1):
    """Stage 1 (128²): --lr 5e-4 × batch/512 = 1e-3 at batch 1024 (8 × 128), wd 0.05, 300 epochs,
    5 warm-up, drop path 0.1, ThreeAugment, no erasing, label smoothing 0 with Mixup/CutMix, EMA
    0.99996 kept (the raw model is what is reported). Patch_Scaling README, stage one."""
    t = c.train
    t.batch_size, t.learning_rate, t.weight_decay = 1024, scaled_lr(5e-4, 1024), 0.05  # 1e-3, scaled.
    t.epochs, t.warmup_epochs = 300.0, 5.0
    t.label_smoothing = 0.0
    t.ema_decay = 0.99996
    c.model.drop_path = drop_path
    return three_augment(c)


# The later Adventurer stages, as overrides of the stage-1 config (Patch_Scaling README, stages two
# and three; docs/recipes.md). Stage 2: as stage 1 at 224² for 100 epochs, drop path 0.4.
ADVENTURER_STAGE_2 = {"data.image_size": 224, "train.epochs": 100.0, "model.drop_path": 0.4}
# Stage 3: 8 × 64 = batch 512, --lr 1e-5 with --unscale-lr (absolute), 5 warm-up epochs (main.py
# default), wd 0.1, drop path 0.6, RandAugment, --reprob 0.0, smoothing 0.1, no repeated augmentation.
ADVENTURER_STAGE_3 = {"data.image_size": 224, "train.epochs": 20.0, "train.batch_size": 512,
                      "train.learning_rate": 1e-5, "train.warmup_epochs": 5.0, "train.weight_decay": 0.1,
                      "model.drop_path": 0.6, "augment.policy": "rand-m9-mstd0.5-inc1", "augment.color_jitter": 0.0,
                      "augment.random_erasing": 0.0, "augment.repeats": 1, "train.label_smoothing": 0.1}
