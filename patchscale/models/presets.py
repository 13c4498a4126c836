"""Named sets of model settings that belong together, written once.

The Adventurer block (Wang et al. 2024, docs/reference.md) is not one key but five: the Mamba-2
token mixer, RMSNorm, a SwiGLU channel mixer, the class token last and a LeCun-normal patch
embedding. Experiments, benchmarks, tests and the analysis (which groups runs by what differs
beyond the block) all take the block from here.
"""

from __future__ import annotations

ADVENTURER_BLOCK = {"model.mixer": "mamba2", "model.norm": "rmsnorm", "model.channel_mixer": "swiglu",
                    "model.cls_position": "last", "model.patch_embed_init": "lecun_normal"}


def adventurer(config, size: str | None = None):
    """Switch a config to the Adventurer block (and to `size`, e.g. adv-mu, when given); returns it."""
    for key, value in ADVENTURER_BLOCK.items():
        config.model[key.split(".", 1)[1]] = value
    if size is not None:
        config.model.size = size
    return config


def adventurer_overrides(size: str | None = None) -> list[str]:
    """The block as command-line overrides (`key=value`), for benchmarks and subprocess tests."""
    return [f"{k}={v}" for k, v in ADVENTURER_BLOCK.items()] + ([f"model.size={size}"] if size else [])
