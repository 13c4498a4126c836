"""Named model shapes. A size only fills defaults: any width/depth/heads/MLP can be configured."""

from __future__ import annotations

import dataclasses

from patchscale.errors import UserError


@dataclasses.dataclass(frozen=True)
class Shape:
    width: int
    depth: int
    heads: int
    mlp_dim: int


# DeiT (REFERENCE.md) plus small shapes for tests and CPU runs.
SIZES = {
    "Ti": Shape(192, 12, 3, 768),
    "S": Shape(384, 12, 6, 1536),
    "B": Shape(768, 12, 12, 3072),
    "L": Shape(1024, 24, 16, 4096),
    "H": Shape(1280, 32, 16, 5120),
    "mu": Shape(64, 4, 4, 256),  # The CPU workhorse: ~0.2 M parameters.
    "pico": Shape(32, 2, 2, 64),  # Tests.
}


def resolve(model_config) -> Shape:
    """The size's shape with any explicitly configured dimension taking precedence."""
    if model_config.size not in SIZES:
        raise UserError(f"unknown model size {model_config.size!r}; known sizes: {', '.join(SIZES)}")
    base = SIZES[model_config.size]
    shape = Shape(**{f.name: model_config.get(f.name) or getattr(base, f.name) for f in dataclasses.fields(Shape)})
    if min(dataclasses.astuple(shape)) <= 0:
        raise UserError(f"model shape {shape} must have positive dimensions")
    if shape.width % shape.heads:
        raise UserError(f"model width {shape.width} is not divisible by {shape.heads} heads")
    return shape
