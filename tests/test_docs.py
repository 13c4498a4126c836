"""docs/cli.md is what the parser says today."""

import re
import sys

import pytest

from patchscale import cli_reference
from tests.conftest import REPO


def test_cli_reference_matches_the_parser():
    committed = (REPO / "docs" / "cli.md").read_text()
    version = re.search(r"\(Python (\d+)\.(\d+)\)", committed)
    if (int(version[1]), int(version[2])) != sys.version_info[:2]:
        pytest.skip(f"docs/cli.md was generated on Python {version[1]}.{version[2]} (argparse's layout differs)")
    assert committed == cli_reference.reference(), "regenerate: python -m patchscale.cli_reference > docs/cli.md"
