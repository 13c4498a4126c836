"""docs/layout.md, generated from the module docstrings so that the map of the code cannot drift from it.

    python -m patchscale.layout_reference > docs/layout.md

Every module and subpackage of `patchscale` is listed with the first line of its docstring (its
summary, which must therefore read well on its own), grouped by package. Sources are parsed, not
imported: listing the models does not start jax. `tests/test_docs.py` regenerates the file and
compares.
"""

from __future__ import annotations

import ast
import pathlib
import sys

PACKAGE = pathlib.Path(__file__).resolve().parent

PREAMBLE = """\
# Code layout

Generated from the module docstrings by `python -m patchscale.layout_reference > docs/layout.md`;
do not edit by hand (a module's summary is the first line of its docstring). Paths are relative
to the repository root; the README links here.

Outside the package: `experiments/` is a package of experiment files that build on each other
with relative imports (the `paper_*` ImageNet configs validate and dry-run but have not been
run); `docs/` holds the longer references (docs/cli.md, every command's options, is generated
from the parser by `python -m patchscale.cli_reference`); `benchmarks/` the benchmark scripts;
`results/` the small files of real runs with their provenance (docs/files.md, docs/results.md);
`scripts/` the tools around the package (`export_run.py` copies a run into results/,
`fit_coverage.py` measures the intervals' coverage, `tpu.py` runs a sweep on Cloud TPU VMs,
`device_sweep.sh` runs one on an accelerator machine without network, with the wheels of
`device_wheels.sh`);
`tests/` the test suite, its shared fixtures (`conftest.py`) and test oracles (`helpers.py`).

Inside, training (`train.py`, `program.py`, `run_spec.py`, `models/`) imports neither `analysis/`
nor `reporting/`, and `analysis/` never imports `reporting/` (tests/test_layering.py).
"""


def summary(path: pathlib.Path) -> str | None:
    """The first line of a module's docstring (None when it has none)."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    return doc.strip().splitlines()[0].strip() if doc and doc.strip() else None


def _section(package: pathlib.Path) -> list[str]:
    """One package's lines: its modules, then its subpackages, each with its summary."""
    title = package.relative_to(PACKAGE.parent).as_posix() + "/"
    lines = [f"## `{title}`", "", summary(package / "__init__.py") or "", ""]
    entries = sorted(p for p in package.iterdir() if p.suffix == ".py" and p.name != "__init__.py")
    entries += sorted(p for p in package.iterdir() if (p / "__init__.py").is_file())
    for path in entries:
        name, text = (path.name, summary(path)) if path.is_file() else (path.name + "/", summary(path / "__init__.py"))
        lines.append(f"- `{name}`: {text or '(no docstring)'}")
    return lines + [""]


def reference() -> str:
    lines = [PREAMBLE]
    packages = [PACKAGE] + sorted(p.parent for p in PACKAGE.rglob("__init__.py")
                                  if p.parent != PACKAGE and "__pycache__" not in p.parts)
    for package in packages:
        lines += _section(package)
    return "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(reference())
