"""Analytic FLOPs against XLA's cost analysis of the compiled forward pass, for both mixers, p = 16 … 1.

At DeiT-S width (384) the analytic matmul counts agree with XLA within ~3%; the remainder is
elementwise work (exact GELU, norms, softmax, SSD decays), whose share grows as 1/width (at
width 128 it reaches ~7%), so the check uses a realistic width with one block.
"""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from patchscale import config as config_lib
from patchscale.models.backbone import VisionBackbone
from patchscale.models import flops
from tests.conftest import REPO

EXPERIMENTS = {"attention": "mnist_vit.py", "mamba2": "mnist_adventurer.py"}


def xla_forward_flops(model_config, image_size, batch=2):
    model = VisionBackbone(model_config, image_size=image_size, channels=3, num_classes=10, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    images = jax.ShapeDtypeStruct((batch, image_size, image_size, 3), jnp.uint8)
    return flops.xla_flops(forward.lower(state, images).compile()) / batch


@pytest.mark.parametrize("mixer", list(EXPERIMENTS))
@pytest.mark.parametrize("patch_size", [16, 8, 4, 2, 1])
def test_analytic_forward_flops_match_xla_within_5_percent(mixer, patch_size):
    size = "mu" if mixer == "attention" else "adv-mu"
    c = config_lib.load_config(str(REPO / "experiments" / EXPERIMENTS[mixer]),
                               [f"model.size={size}", "model.width=384", "model.heads=6", "model.depth=1",
                                "model.mlp_dim=" + ("1536" if mixer == "attention" else "960"),
                                f"model.patch_size={patch_size}", "model.dtype=float32"])
    analytic = flops.forward_flops_per_image(c.model, 32, 3, 10)
    measured = xla_forward_flops(c.model, 32)
    assert measured == pytest.approx(analytic, rel=0.05), (analytic, measured)
