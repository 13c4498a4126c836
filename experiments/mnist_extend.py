"""Sequence length without new information (the study's Table 5): "by extending" against "by scaling".

    patchscale sweep experiments/mnist_extend.py

At the data-limited study's 8×8 input and recipe (experiments/mnist_limited.py: 5,000 images, 64
epochs, budgets, baselines, convergence criterion), each mixer sees 4 and 16 patch tokens in
two ways:

* by scaling: smaller patches, p = 8, 4, 2 (1, 4, 16 tokens): more tokens *and* more pixels
  per token position;
* by extending (`model.extend_tokens`): a larger patch whose grid of embeddings is interpolated
  bilinearly to the token count of the smaller patch, p = 8 at 2× (4 tokens), p = 8 at 4× and
  p = 4 at 2× (16 tokens): the sequence of a smaller patch, no new pixels.

What the study reports: extending the sequence of a p = 16 DeiT/Adventurer helps a little, far
less than patch scaling at the same length, i.e. the gain of small patches is mostly new
information, not sequence length. How to read the results: `patchscale fit` groups runs by
everything but patch size and seed, so each extension factor is its own group; compare
`tokens_per_image` rows across groups (the fit table's per-patch-size means with intervals).

Cost here (per-run times of the default and 16×16 studies at the same token counts): about 1 h
for the ViT and 2 h for the Adventurer, 3 seeds each, plus 6 baseline runs. NOT RUN yet.
"""

from . import mnist_limited

SCALING = ((8, 1), (4, 1), (2, 1))  # (patch size, extend factor)
EXTENDING = ((8, 2), (8, 4), (4, 2))


def get_config(arg=None):
    return mnist_limited.get_config(arg)


def get_sweep():
    """Baselines, then by scaling and by extending, cheapest first, both mixers, every seed."""
    baselines = [point for point in mnist_limited.get_sweep() if "model.baseline" in point]
    runs = [{**mixer, "model.patch_size": p, "model.extend_tokens": f, "seed": seed}
            for p, f in SCALING + EXTENDING for seed in mnist_limited.SEEDS for mixer in mnist_limited._mixer_settings()]
    return baselines + runs
