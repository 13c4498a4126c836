"""One small ViT (DeiT layout, 64 wide, 4 deep) on the embedded MNIST (real digits, 32×32) at p = 4.

    patchscale train experiments/mnist_vit.py

Expected on a 2-core CPU: test accuracy ≥ 98% after 6 epochs (measured numbers in README.md).
Every key of patchscale/defaults.py can be overridden, e.g. `model.patch_size=8 train.epochs=2`.
"""

from patchscale.defaults import base_config


def get_config(arg=None):
    del arg
    return base_config()  # The defaults are this experiment: size mu, attention, p = 4, 6 epochs.
