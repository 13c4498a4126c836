"""What a run records about the machine: enough to tell which reruns should match bit for bit."""

import json
import os
import subprocess
import sys

import pytest

from patchscale import provenance


def test_the_cpu_block_names_the_model_the_cores_and_the_cores_this_process_may_use():
    cpu = provenance.cpu()
    assert set(cpu) == {"model", "cores", "cores_usable", "machine", "features"}
    assert 1 <= cpu["cores_usable"] <= cpu["cores"]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="pinning needs Linux")
def test_a_pinned_process_records_the_cores_it_was_pinned_to():
    # A `--workers` run is pinned to its share of the cores, which changes XLA:CPU's float32 sums.
    code = ("import json, os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))});"
            " from patchscale import provenance; print(json.dumps(provenance.cpu()))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    cpu = json.loads(done.stdout)
    assert cpu["cores_usable"] == 1 and cpu["cores"] == os.cpu_count()
