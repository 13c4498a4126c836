"""Adventurer (Mamba-2 token mixer, RMSNorm, SwiGLU, CLS last) on the embedded MNIST at p = 4.

    patchscale train experiments/mnist_adventurer.py

The same data, schedule and command line as experiments/mnist_vit.py; only the block changes.
A 64-wide, 4-block Adventurer (size adv-mu: d_inner 128, 2 heads of 64, d_state 64).
Measured numbers are in README.md.
"""

from patchscale.defaults import base_config


def adventurer(config, size: str = "adv-mu"):
    """Switch a config to the Adventurer block of REFERENCE.md."""
    m = config.model
    m.size = size
    m.mixer = "mamba2"
    m.norm = "rmsnorm"
    m.channel_mixer = "swiglu"
    m.cls_position = "last"
    return config


def get_config(arg=None):
    del arg
    return adventurer(base_config())
