"""Scale-out on 8 simulated CPU devices: data, FSDP and tensor meshes match one device, and shard as the rules say."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.heavy  # Minutes of subprocess runs: `python -m pytest -m heavy`.

MESHES = ["data=8", "fsdp=8", "data=2,fsdp=2,tensor=2"]


def run_worker(mixer: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, str(REPO / "tests" / "mesh_worker.py"), mixer, *args],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module", params=["attention", "mamba2", "mamba2-scanned"])
def mesh_runs(request):
    """(mixer, scanned, runs): the Adventurer also in the scanned layout (stacked parameters)."""
    mixer, _, layout = request.param.partition("-")
    return mixer, bool(layout), run_worker(mixer, *MESHES, *(["model.scan_layers=true"] if layout else []))


def test_every_mesh_matches_one_device(mesh_runs):
    _, _, runs = mesh_runs
    single = runs["single"]
    for mesh in MESHES:
        np.testing.assert_allclose(runs[mesh]["losses"], single["losses"], rtol=2e-5, err_msg=mesh)
        np.testing.assert_allclose(runs[mesh]["checksum"], single["checksum"], rtol=1e-5, err_msg=mesh)
    assert single["losses"][-1] != single["losses"][0]  # The steps really trained.


def test_parameters_and_moments_are_sharded_by_the_rules(mesh_runs):
    mixer, scanned, runs = mesh_runs
    for mesh in ["single", "data=8"]:  # Nothing to shard parameters over: replicated.
        assert not any("'" in spec for spec in runs[mesh]["specs"].values()), mesh  # No mesh axis named.
    fsdp, mixed = runs["fsdp=8"]["specs"], runs["data=2,fsdp=2,tensor=2"]["specs"]
    if mixer == "attention":
        expected_fsdp = {"qkv/kernel": "('fsdp', None)", "out/kernel": "(None, 'fsdp')",
                         "fc1/kernel": "('fsdp', None)", "patch_embed/proj/kernel": "(None, 'fsdp')",
                         "head/kernel": "('fsdp', None)"}
        expected_mixed = {"qkv/kernel": "('fsdp', 'tensor')", "out/kernel": "('tensor', 'fsdp')",
                          "fc1/kernel": "('fsdp', 'tensor')", "fc2/kernel": "('tensor', 'fsdp')"}
    else:
        expected_fsdp = {"in_proj/kernel": "('fsdp', None)", "out_proj/kernel": "(None, 'fsdp')",
                         "gate_value/kernel": "('fsdp', None)", "norm1/scale": "('fsdp',)"}
        expected_mixed = {"in_proj/kernel": "('fsdp', None)", "out_proj/kernel": "('tensor', 'fsdp')",
                          "mixer/D": "('tensor',)", "gate_value/kernel": "('fsdp', 'tensor')"}
    for specs, expected in [(fsdp, expected_fsdp), (mixed, expected_mixed)]:
        for suffix, spec in expected.items():
            if scanned and "patch_embed" not in suffix and "head" not in suffix:  # The layer axis: unsplit.
                spec = "(None, " + spec[1:].replace(",)", ")")
            for prefix in ("", "mu:"):  # Parameters and their AdamW moments alike.
                name = next(n for n in specs if n.endswith(suffix) and n.startswith(prefix) and
                            (prefix or not n.startswith("mu:")))
                assert specs[name] == f"P{spec}", (name, specs[name])


@pytest.mark.parametrize("mixer, extra", [
    ("attention", ["model.attention_impl=chunked", "model.attention_chunk=256"]),
    ("mamba2", ["model.mamba2.chunk_size=64"]),
])
def test_sequence_axis_at_thousands_of_tokens_matches_one_device(mixer, extra):
    # 48×48 at p = 1 with mean pooling: 2,304 tokens, split over 4 devices of the sequence axis.
    runs = run_worker(mixer, "data=2,sequence=4", "size=48", "batch=2", "model.patch_size=1", "model.pool=gap",
                      "model.posemb=sincos2d", *extra)
    np.testing.assert_allclose(runs["data=2,sequence=4"]["losses"], runs["single"]["losses"], rtol=2e-5)
