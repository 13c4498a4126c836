"""docs/cli.md, generated from the argument parser so that the reference cannot drift from the code.

    python -m patchscale.cli_reference > docs/cli.md

`tests/test_docs.py` regenerates it and compares (on the Python version named in the file:
argparse's layout changes between versions).
"""

from __future__ import annotations

import argparse
import os
import sys

from patchscale import cli

WIDTH = "100"  # Help text is wrapped to this many columns.


def _subcommands(parser: argparse.ArgumentParser, prefix: str):
    """(full command, parser) for the parser and every sub-command under it, depth first."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subcommands(sub, f"{prefix} {name}")


def reference() -> str:
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parser = cli.build_parser()
        parser.prog = "patchscale"
        lines = ["# Command-line reference", "",
                 "Generated from the parser by `python -m patchscale.cli_reference > docs/cli.md`"
                 f" (Python {sys.version_info.major}.{sys.version_info.minor}); do not edit by hand.", ""]
        for command, sub in _subcommands(parser, "patchscale"):
            lines += [f"## `{command}`", "", "```text", sub.format_help().rstrip(), "```", ""]
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(reference())
