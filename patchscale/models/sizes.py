"""Named model shapes. A size only fills defaults: any width/depth/heads/MLP can be configured."""

from __future__ import annotations

import dataclasses

from patchscale.errors import UserError


@dataclasses.dataclass(frozen=True)
class Shape:
    width: int
    depth: int
    heads: int  # Attention heads (Mamba-2 derives its heads from width, expand and headdim).
    mlp_dim: int


def _adventurer(width: int, depth: int) -> Shape:
    """Adventurer: SwiGLU hidden 2.5×width; heads listed for attention-mixer comparisons (64-dim)."""
    return Shape(width, depth, max(width // 64, 1), int(2.5 * width))


SIZES = {
    # DeiT (docs/reference.md).
    "Ti": Shape(192, 12, 3, 768),
    "S": Shape(384, 12, 6, 1536),
    "B": Shape(768, 12, 12, 3072),
    "L": Shape(1024, 24, 16, 4096),
    "H": Shape(1280, 32, 16, 5120),
    # Adventurer (docs/reference.md).
    "adv-Ti": _adventurer(256, 12),
    "adv-S": _adventurer(512, 12),
    "adv-B": _adventurer(768, 12),
    "adv-L": _adventurer(1024, 24),
    # Small shapes for CPU runs and tests.
    "mu": Shape(64, 4, 4, 256),  # ~0.2 M parameters: the CPU workhorse.
    "adv-mu": Shape(64, 4, 1, 160),
    "pico": Shape(32, 2, 2, 64),
    "adv-pico": Shape(32, 2, 1, 80),
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
