"""docs/cli.md and docs/layout.md are what the parser and the module docstrings say today."""

import ast
import re
import sys

import pytest

from patchscale import cli_reference, layout_reference
from tests.conftest import REPO


def test_cli_reference_matches_the_parser():
    committed = (REPO / "docs" / "cli.md").read_text()
    version = re.search(r"\(Python (\d+)\.(\d+)\)", committed)
    if (int(version[1]), int(version[2])) != sys.version_info[:2]:
        pytest.skip(f"docs/cli.md was generated on Python {version[1]}.{version[2]} (argparse's layout differs)")
    assert committed == cli_reference.reference(), "regenerate: python -m patchscale.cli_reference > docs/cli.md"


def test_layout_matches_the_module_docstrings():
    committed = (REPO / "docs" / "layout.md").read_text()
    assert committed == layout_reference.reference(), "regenerate: python -m patchscale.layout_reference > docs/layout.md"


def test_every_module_has_a_docstring_whose_first_line_is_a_summary():
    """docs/layout.md shows each first line alone: it must exist and end a sentence."""
    modules = sorted(p for p in (REPO / "patchscale").rglob("*.py") if "__pycache__" not in p.parts)
    assert REPO / "patchscale" / "analysis" / "fit.py" in modules
    docs = {p.relative_to(REPO).as_posix(): ast.get_docstring(ast.parse(p.read_text(encoding="utf-8"))) for p in modules}
    assert [name for name, doc in docs.items() if not doc] == []
    assert [name for name, doc in docs.items() if not doc.splitlines()[0].rstrip().endswith((".", "?"))] == []
