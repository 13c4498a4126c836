"""Which packages may import which: analysis never draws or formats, training never analyses.

Each check imports the modules in a fresh interpreter and looks at what came with them, so an
import added anywhere down the chain (not only a direct one) is caught.
"""

import json
import pkgutil
import subprocess
import sys

import patchscale.analysis
import patchscale.models


def _loaded_by(modules: list[str]) -> list[str]:
    """Every module a fresh interpreter holds after importing `modules`."""
    code = ("import importlib, json, sys\n"
            f"for name in {modules!r}:\n    importlib.import_module(name)\n"
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def _package_modules(package) -> list[str]:
    return [package.__name__] + [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]


def _under(loaded: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [m for m in loaded if m in prefixes or m.startswith(tuple(p + "." for p in prefixes))]


def test_analysis_imports_neither_reporting_nor_matplotlib():
    modules = _package_modules(patchscale.analysis)
    assert "patchscale.analysis.fit" in modules and "patchscale.analysis.laws" in modules
    loaded = _loaded_by(modules)
    assert "patchscale.analysis.fit" in loaded
    assert _under(loaded, ("patchscale.reporting", "matplotlib")) == []


def test_training_imports_neither_analysis_nor_reporting():
    modules = ["patchscale.train", "patchscale.program", "patchscale.run_spec", *_package_modules(patchscale.models)]
    loaded = _loaded_by(modules)
    assert "patchscale.train" in loaded and "patchscale.models.flops" in loaded
    assert _under(loaded, ("patchscale.analysis", "patchscale.reporting")) == []
