"""Sequence length without new information (the study's Table 5): "by extending" against "by scaling".

    patchscale sweep experiments/mnist_extend.py

At the default study's 16×16 input and data-rich recipe cut at 4 epochs (experiments/mnist_sweep.py's
`recipe(epochs=4)`: all 50,000 images with ±1 px shifts, 1/2/4-epoch budgets, baselines,
convergence verdict), each mixer sees
4 and 16 patch tokens in two ways:

* by scaling: smaller patches, p = 16, 8, 4 (1, 4, 16 tokens): more tokens *and* more pixels
  per token position;
* by extending (`model.extend_tokens`): a larger patch whose grid of embeddings is interpolated
  bilinearly to the token count of the smaller patch, p = 16 at 2× (4 tokens), p = 16 at 4× and
  p = 8 at 2× (16 tokens): the sequence of a smaller patch, no new pixels.

What the study reports: extending the sequence of a p = 16 DeiT/Adventurer helps a little, far
less than patch scaling at the same length, i.e. the gain of small patches is mostly new
information, not sequence length. How to read the results: `patchscale fit` groups runs by
everything but patch size and seed, so each extension factor is its own group; compare
`tokens_per_image` rows across groups (the fit table's per-patch-size means with intervals).

Cost here: 42 runs, 35 minutes of summed wall time on this project's 2-core CPU (shared).
Run on 2026-12-07: results/mnist_extend (provenance.json; docs/results.md has the reading).
"""

from . import mnist_limited, mnist_sweep

SCALING = ((16, 1), (8, 1), (4, 1))  # (patch size, extend factor)
EXTENDING = ((16, 2), (16, 4), (8, 2))


def get_config(arg=None):
    return mnist_sweep.recipe(arg, epochs=4.0)


def get_sweep():
    """Baselines, then by scaling and by extending, cheapest first, both mixers, every seed."""
    baselines = mnist_limited.baseline_points()
    runs = [{**mixer, "model.patch_size": p, "model.extend_tokens": f, "seed": seed}
            for p, f in SCALING + EXTENDING for seed in mnist_limited.SEEDS for mixer in mnist_limited.mixer_settings()]
    return baselines + runs
