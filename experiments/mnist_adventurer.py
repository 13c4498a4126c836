"""Adventurer (Mamba-2 token mixer, RMSNorm, SwiGLU, CLS last) on the embedded MNIST at p = 4.

    patchscale train experiments/mnist_adventurer.py

The same data, recipe and command line as experiments/mnist_vit.py; only the block changes.
A 64-wide, 4-block Adventurer (size adv-mu: d_inner 128, 2 heads of 64, d_state 64).
Measured numbers are in README.md.
"""

import importlib.util
import pathlib

from patchscale.models.presets import adventurer


def _mnist_vit_config():
    spec = importlib.util.spec_from_file_location("mnist_vit", pathlib.Path(__file__).with_name("mnist_vit.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def get_config(arg=None):
    del arg
    return adventurer(_mnist_vit_config(), size="adv-mu")
