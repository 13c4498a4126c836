"""What every figure module shares: a display-free pyplot, atomic PNG + SVG writes, the patch-size axis."""

from __future__ import annotations

from etils import epath


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # No display needed; deterministic output.
    import matplotlib.pyplot as plt

    return plt


def save(fig, out: epath.Path, name: str, dpi: int = 150) -> list[str]:
    """`name`.png and `name`.svg in `out`, each written to a temporary file and renamed into place."""
    written = []
    for ext in ("png", "svg"):
        path = out / f"{name}.{ext}"
        tmp = out / f".{name}.tmp.{ext}"
        fig.savefig(str(tmp), dpi=dpi, bbox_inches="tight")
        tmp.replace(path)
        written.append(str(path))
    return written


def patch_axis(ax, patch_sizes) -> None:
    """Log-2 patch-size axis, smaller patches (more tokens) to the right."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(patch_sizes))
    ax.set_xticklabels([str(p) for p in sorted(patch_sizes)])
    ax.invert_xaxis()
    ax.set_xlabel("patch size p (pixels; smaller = more tokens)")
    ax.grid(True, which="both", alpha=0.3)
