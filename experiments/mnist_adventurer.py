"""Adventurer (Mamba-2 token mixer, RMSNorm, SwiGLU, CLS last) on the embedded MNIST at p = 4.

    patchscale train experiments/mnist_adventurer.py

The same data, recipe and command line as experiments/mnist_vit.py; only the block changes.
A 64-wide, 4-block Adventurer (size adv-mu: d_inner 128, 2 heads of 64, d_state 64).
Measured numbers are in docs/results.md (files in results/mnist_adventurer_reference/).
"""

from patchscale.models.presets import adventurer

from . import mnist_vit


def get_config(arg=None):
    del arg
    return adventurer(mnist_vit.get_config(), size="adv-mu")
