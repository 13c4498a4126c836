"""Decoder-free dense prediction (the study's Table 2 and Figure 2) on a per-pixel task from the digits.

    patchscale sweep experiments/mnist_dense.py

Each pixel of the 16×16 input at least as bright as `data.pixel_threshold` (128 of 255) is
labelled with its digit's class, every other pixel is background (11 classes;
patchscale/segmentation.py; the labels are computed from the pixels the model sees, so the ±1
px shifts move image and labels together). The default study's ViT and data-rich recipe cut at
4 epochs (experiments/mnist_sweep.py's `recipe(epochs=4)`: all 50,000 images, 1/2/4-epoch
budgets) at patch sizes 8, 4, 2 with two heads: `dense_linear` (one linear layer from each token
to its p×p pixels' logits, the study's decoder-free head) and `dense_decoder` (a small conv decoder,
0.08–0.15 M parameters at these patch sizes). Per-pixel cross-entropy and pixel accuracy over every pixel of
the 10,000 test images, and mIoU (summary.json: test_miou). What the study reports: the
decoder's advantage shrinks as the patch shrinks, until the linear head matches it at p = 1.

Groups: each head is its own patch-size group. Cost here: about 1 hour (18 runs; the six at
p = 2, 64 tokens, take most of it). IN PROGRESS since 2026-12-08, in the background, resumably:
results/mnist_dense/provenance.json says which runs have finished; no fit until all 18 have. Fine-tuning from a classification run (`train.init_from`), as the
study does on ADE20k, is left to the accelerator config; the miniature trains from scratch.
"""

from . import mnist_limited, mnist_sweep

PATCH_SIZES = (8, 4, 2)
HEADS = ("dense_linear", "dense_decoder")


def get_config(arg=None):
    c = mnist_sweep.recipe(arg, epochs=4.0)  # 16×16, data-rich.
    c.model.pool = "gap"  # No class token: every token is a patch of pixels.
    c.model.head = "dense_linear"
    return c


def get_sweep():
    return [{"model.head": head, "model.patch_size": p, "seed": seed}
            for p in PATCH_SIZES for head in HEADS for seed in mnist_limited.SEEDS]
