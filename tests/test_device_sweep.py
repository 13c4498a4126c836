"""scripts/device_sweep.sh refuses to start without the prepared dataset it must carry."""

import subprocess

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "device_sweep.sh"


@pytest.mark.skipif((REPO / ".data").exists(), reason="this checkout has a prepared .data/")
def test_without_the_carried_dataset_it_stops_with_one_line(tmp_path):
    done = subprocess.run(["bash", str(SCRIPT), "experiments/mnist_rich_32.py", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == ("device_sweep: no .data/ (prepare it: patchscale data prepare mnist"
                                   " --data-dir .data)")
    assert not (tmp_path / "out").exists()


def test_usage_is_stated():
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "usage: scripts/device_sweep.sh EXPERIMENT OUT" in done.stderr
