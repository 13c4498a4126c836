"""Adventurer (Mamba-2 token mixer, RMSNorm, SwiGLU, CLS last) on the embedded MNIST at p = 4.

    patchscale train experiments/mnist_adventurer.py

The same data, recipe and command line as experiments/mnist_vit.py; only the block changes.
A 64-wide, 4-block Adventurer (size adv-mu: d_inner 128, 2 heads of 64, d_state 64).
Measured numbers are in README.md.
"""

import importlib.util
import pathlib


def _mnist_vit_config():
    spec = importlib.util.spec_from_file_location("mnist_vit", pathlib.Path(__file__).with_name("mnist_vit.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def adventurer(config, size: str = "adv-mu"):
    """Switch a config to the Adventurer block of REFERENCE.md."""
    m = config.model
    m.size = size
    m.mixer = "mamba2"
    m.norm = "rmsnorm"
    m.channel_mixer = "swiglu"
    m.cls_position = "last"
    m.patch_embed_init = "lecun_normal"
    return config


def get_config(arg=None):
    del arg
    return adventurer(_mnist_vit_config())
