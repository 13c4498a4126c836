"""Shared pieces of the paper configs (ImageNet recipes of REFERENCE.md). Not an experiment itself."""

from patchscale.defaults import base_config

PATCH_SIZES = [16, 8, 4, 2, 1]


def imagenet(image_size: int, data_dir: str | None = None):
    """Base config reading TFDS ImageNet from a data dir (e.g. gs://bucket/tensorflow_datasets).

    Images are resized (squashed) to image_size × image_size; the study's RandomResizedCrop,
    RandAugment, Mixup/CutMix and EMA are not implemented in patchscale yet.
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
    c.model.dtype = "auto"  # bfloat16 on accelerators.
    c.model.remat = "full"  # Small patches at 128²–224² need it.
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
    t.label_smoothing = 0.1
    t.end_learning_rate = 1e-5
    return c


def adventurer(c, size: str):
    """The Adventurer block (Mamba-2 mixer, RMSNorm, SwiGLU, CLS last) at an Adventurer size."""
    m = c.model
    m.size, m.mixer, m.norm, m.channel_mixer, m.cls_position = size, "mamba2", "rmsnorm", "swiglu", "last"
    m.patch_embed_init = "lecun_normal"
    return c


def adventurer_recipe(c, drop_path: float = 0.1):
    """Pre-training at 128²: lr 1e-3 at batch 1024, wd 0.05, 300 epochs, drop path 0.1."""
    t = c.train
    t.batch_size, t.learning_rate, t.weight_decay, t.epochs, t.warmup_epochs = 1024, 1e-3, 0.05, 300.0, 5.0
    t.label_smoothing = 0.1
    c.model.drop_path = drop_path
    return c
