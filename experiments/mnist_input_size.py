"""Input size at a fixed sequence length (the study's Figure 4): upsample past the native resolution.

    patchscale sweep experiments/mnist_input_size.py

The ViT of the data-limited study (experiments/mnist_limited.py, same recipe) at inputs of 16, 32 and
64 pixels with patches of 4, 8 and 16: always a 4×4 grid (16 tokens + CLS). MNIST's digits are
28 pixels (padded to 32), so 64 px only upsamples: no new information, while the patch
embedding grows from 16 to 256 inputs per token. What the study reports: at a fixed number
of tokens a larger input (larger patch) does not lower the loss by itself. Upsampling holds the
information fixed, so this design cannot separate token count from input size. The linear and MLP baselines run at every input size (the same pixels).

Groups: `data.image_size` is part of the group, so each input size is its own group with one
patch size; `patchscale fit` prints them side by side "at equal tokens per image". Run here in
53 minutes (results/mnist_input_size/, docs/results.md): all three groups converged; test loss
0.214 / 0.266 / 0.256 at 16 / 32 / 64 px, so upsampling with a larger patch does not help.
"""

from . import mnist_limited

SIZES = ((16, 4), (32, 8), (64, 16))  # (input size, patch size): a 4×4 grid each.


def get_config(arg=None):
    return mnist_limited.get_config(arg)


def get_sweep():
    points = []
    for size, patch in SIZES:
        points += [{"model.baseline": kind, **recipe, "data.image_size": size, "seed": seed}
                   for seed in mnist_limited.SEEDS for kind, recipe in mnist_limited.BASELINES.items()]
        points += [{"model.mixer": "attention", "data.image_size": size, "model.patch_size": patch, "seed": seed}
                   for seed in mnist_limited.SEEDS]
    return points
