"""The default experiment: test loss vs patch size on MNIST for attention (ViT) and Mamba-2 (Adventurer).

    patchscale sweep experiments/mnist_sweep.py

Patch sizes 16, 8, 4, 2, 1 at one input size, 16×16 (1 … 256 patch tokens), for a ViT and an
Adventurer, three seeds each: 30 runs, then fit.json and the plots in results/mnist_sweep/.
Budget: at most 45 minutes on a 2-core CPU (measured time in README.md).

Why these choices (throughputs measured on the 2-core CPU, float32, batch 32):

* Input 16×16 (the padded 32×32 digits resized): p = 1 then means 256 pixel tokens. At 32×32,
  p = 1 is 1,024 tokens and a single run would take longer than the whole budget.
* Models `pico` (ViT: width 32, depth 2, 2 heads, MLP 64) and `adv-pico` (Adventurer: width 32,
  depth 2, SwiGLU 80; Mamba-2 d_inner 64 in 2 heads of 32, d_state 16, chunk 32). d_state is
  scaled with the width (the reference's 64 is a third of Ti's 192). At p = 1 these train at
  ~116 (ViT) and ~140 (Adventurer) images/s; the p = 1 runs are two thirds of the sweep's time.
* Budget fixed in epochs, equal for every patch size: 3 epochs over the first 8,000 training
  images, batch 32 (750 steps), lr 2e-3 as in mnist_vit.py, random shifts of 1 pixel.
  Evaluation on the first 5,000 test images, at the end and halfway (step 375), so the
  ranking of patch sizes at half and full budget can be compared from metrics.jsonl.

This is a miniature: far fewer images than the study's 300 ImageNet epochs, and small
patches learn more slowly at first, so the measured loss-vs-patch curve says what happens at
this budget, not in the limit. Scale `data.train_examples` and `train.epochs` up (same
command, plus overrides) when you have the time.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from mnist_adventurer import adventurer  # noqa: E402

from patchscale.defaults import base_config  # noqa: E402

PATCH_SIZES = (16, 8, 4, 2, 1)
SEEDS = (0, 1, 2)


def get_config(arg=None):
    del arg
    c = base_config()
    c.model.size = "pico"
    c.model.mamba2.headdim = 32
    c.model.mamba2.d_state = 16
    c.model.mamba2.chunk_size = 32
    c.data.image_size = 16
    c.data.train_examples = 8000
    c.data.eval_examples = 5000
    c.data.random_shift = 1
    c.train.epochs = 3.0
    c.train.batch_size = 32
    c.train.learning_rate = 2e-3
    c.train.eval_every = 375
    return c


def _mixer_settings() -> list[dict]:
    """Attention as in the base config; Adventurer's block keys (norm, SwiGLU, CLS last, size)."""
    vit = {"model.mixer": "attention"}
    adv_config = adventurer(get_config(), size="adv-pico").model
    adv = {f"model.{key}": adv_config[key] for key in ("mixer", "size", "norm", "channel_mixer", "cls_position")}
    return [vit, adv]


def get_sweep():
    """Seed-major order: a sweep stopped early has whole loss-vs-patch curves for the first seeds."""
    return [{**mixer, "model.patch_size": p, "seed": seed}
            for seed in SEEDS for mixer in _mixer_settings() for p in PATCH_SIZES]
