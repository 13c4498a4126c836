"""The committed studies are reproducible from their stored files: refitting gives the committed fit.json."""

import json
import shutil

import pytest

from patchscale.scaling import report
from tests.conftest import REPO

STUDIES = ["mnist_sweep_reference", "mnist_input_size"]


def _numbers(payload):
    """Everything fit.json says about the science (not when or where it was computed)."""
    return {k: v for k, v in payload.items() if k not in ("date", "git_commit", "environment")}


@pytest.mark.parametrize("study", STUDIES)
def test_refit_of_committed_results_reproduces_their_fit_json(study, tmp_path):
    committed = REPO / "results" / study
    copy = tmp_path / study
    shutil.copytree(committed, copy, ignore=shutil.ignore_patterns("*.png", "*.svg"))
    stored = json.loads((committed / report.FIT_FILE).read_text())
    refit = report.fit_results(copy, metric=stored["metric"], budget=stored["budget"])
    assert refit["selection"] == stored["selection"]
    assert_same(json.loads(json.dumps(_numbers(report.json_safe(refit)))), _numbers(stored))


def assert_same(new, old, where="fit.json"):
    """Equal structure and text; numbers equal to 1e-9 relative (float summation order aside)."""
    if isinstance(old, dict):
        assert isinstance(new, dict) and sorted(new) == sorted(old), where
        for key in old:
            assert_same(new[key], old[key], f"{where}.{key}")
    elif isinstance(old, list):
        assert isinstance(new, list) and len(new) == len(old), where
        for i, (a, b) in enumerate(zip(new, old)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(old, float) and not isinstance(new, bool):
        assert new == pytest.approx(old, rel=1e-9, abs=1e-12), where
    else:
        assert new == old, where
