"""The default study: test loss vs patch size on MNIST at 8×8 for attention (ViT) and Mamba-2 (Adventurer).

    patchscale sweep experiments/mnist_sweep.py

Patch sizes 8, 4, 2, 1 at an 8×8 input (1 … 64 patch tokens, plus CLS) for a ViT, 8, 4, 2 for an
Adventurer, three seeds each, every run evaluated at three training budgets (¼, ½ and all of
the run, each after its own cooldown), plus a linear and a one-hidden-layer MLP baseline on the
same pixels through the same trainer (8 epochs at their own learning rates): 27 runs, then fit.json, the plots and the convergence verdicts in
results/mnist_sweep/. It should show whether test loss falls as the patch shrinks once every
group is converged (doubling the budget improves validation loss by < 5% and keeps the ranking
of patch sizes), and where the compute-optimal patch size p*(C) lies.

Choices, and why:

* Input 8×8 (the padded 32×32 digits resized): p = 1 is 65 tokens, affordable on 2 CPU cores.
  The 16 → 1 range at 16×16 is experiments/mnist_sweep_16.py (hours).
* Width 64 = p²·C at p = 8, so the largest patch's projection is not a dimensional bottleneck;
  depth 2 (ViT: 4 heads, MLP 256; Adventurer: SwiGLU 160, d_inner 128 in 4 heads of 32, d_state 16).
* Adventurer at p = 1 is left out of the default: its train step measured 125–146 images/s
  here (batch 128, 65 tokens; `patchscale bench experiments/mnist_sweep.py model.mixer=mamba2 …`,
  machine shared with other work), so three seeds would take about half of the 45-minute budget
  on their own. The 16×16 study (experiments/mnist_sweep_16.py) runs both mixers at every size.
* One recipe for every patch size and mixer: 2 epochs of all 50,000 training images, batch 128, AdamW
  lr 3e-3, warmup ¼ epoch, warmup-stable-decay with a 20% linear cooldown, no label smoothing
  (its floor would dominate a converged test loss), no augmentation (1 px is an eighth of the image).
* Validation on the 10,000-image validation split (the convergence criterion), test on all
  10,000 test images (the fitted metric); the data is held in memory, resized once.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from mnist_adventurer import adventurer  # noqa: E402

from patchscale.defaults import base_config  # noqa: E402

PATCH_SIZES = (8, 4, 2, 1)
ADVENTURER_PATCH_SIZES = (8, 4, 2)  # p = 1 does not fit the 45-minute budget (see the docstring).
SEEDS = (0, 1, 2)
# Baselines are trained to convergence with their own learning rate, so that "below the linear
# baseline" means under-trained (the models' 3e-3 leaves softmax regression far from its optimum:
# validation loss 1.49 → 1.04 → 0.73 at ½, 1, 2 epochs; with 0.1 it is 0.448 → 0.436 at 1, 2 epochs).
BASELINES = {"linear": {"train.learning_rate": 0.1, "train.epochs": 8.0},
             "mlp": {"train.learning_rate": 0.01, "train.epochs": 8.0}}


def get_config(arg=None):
    del arg
    c = base_config()
    c.model.size = "mu"
    c.model.depth = 2
    c.model.mamba2.headdim = 32
    c.model.mamba2.d_state = 16
    c.model.baseline_hidden = 256
    c.data.image_size = 8
    c.data.val_split = "validation"
    c.data.in_memory = True
    c.train.batch_size = 128
    c.train.epochs = 2.0
    c.train.learning_rate = 3e-3
    c.train.warmup_epochs = 0.25
    c.train.label_smoothing = 0.0
    c.train.schedule = "wsd"
    c.train.cooldown_fraction = 0.2
    c.train.budgets = (0.25, 0.5)
    c.train.log_every = 100
    c.train.checkpoint_every = 400
    return c


def _mixer_settings() -> list[dict]:
    """Attention as in the base config; Adventurer's block keys (norm, SwiGLU, CLS last, size)."""
    vit = {"model.mixer": "attention"}
    adv_config = adventurer(get_config(), size="adv-mu").model
    adv = {f"model.{key}": adv_config[key]
           for key in ("mixer", "size", "norm", "channel_mixer", "cls_position", "patch_embed_init")}
    return [vit, adv]


def get_sweep():
    """Seed-major order (a sweep stopped early has whole curves); the cheap baselines first."""
    baselines = [{"model.baseline": kind, **recipe, "seed": seed} for seed in SEEDS for kind, recipe in BASELINES.items()]
    vit, adv = _mixer_settings()
    runs = [{**mixer, "model.patch_size": p, "seed": seed}
            for seed in SEEDS for mixer, sizes in ((vit, PATCH_SIZES), (adv, ADVENTURER_PATCH_SIZES)) for p in sizes]
    return baselines + runs
