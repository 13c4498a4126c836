"""scripts/tpu.py: the gcloud command lines it generates, and the patchscale command it runs remotely."""

import importlib.util
import shlex

import pytest

from patchscale import cli
from tests.conftest import REPO


@pytest.fixture(scope="module")
def tpu():
    spec = importlib.util.spec_from_file_location("tpu", REPO / "scripts" / "tpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lines(tpu, *argv):
    return tpu.commands(tpu.parse(list(argv)))


def test_create_and_delete(tpu):
    (create,) = lines(tpu, "create", "--name", "ps", "--zone", "us-west4-a", "--type", "v5litepod-16", "--spot")
    assert create[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "ps"]
    assert "--accelerator-type=v5litepod-16" in create and "--spot" in create and "--zone=us-west4-a" in create
    (delete,) = lines(tpu, "delete", "--name", "ps", "--zone", "z")
    assert delete[4:6] == ["delete", "ps"]


def test_install_runs_on_every_worker_with_the_tpu_extra(tpu):
    (ssh,) = lines(tpu, "install", "--name", "ps", "--zone", "z", "--repo", "https://example.org/p.git", "--ref", "abc")
    assert "--worker=all" in ssh
    remote = ssh[-1].removeprefix("--command=")
    assert "git checkout -q abc" in remote and "pip install -q -e '.[tpu]'" in remote


def remote_patchscale(ssh):
    """The `patchscale ...` command a `gcloud ... ssh` line runs on every worker, parsed by the real CLI."""
    assert "--worker=all" in ssh
    remote = ssh[-1].removeprefix("--command=")
    patchscale = shlex.split(remote.split("&& ")[-1])
    assert patchscale[0] == "patchscale"
    return cli.parse_args(patchscale[1:])


def test_sweep_command_is_a_valid_distributed_patchscale_sweep_after_a_preflight(tpu):
    preflight, sweep = lines(tpu, "sweep", "--name", "ps", "--zone", "z", "--experiment",
                             "experiments/paper_deit_b_64.py", "--results", "gs://b/r", "--",
                             "data.data_dir=gs://b/tfds", "train.epochs=1")
    for args in map(remote_patchscale, (preflight, sweep)):
        assert args.distributed and args.results == "gs://b/r" and args.config == "experiments/paper_deit_b_64.py"
        assert args.overrides == ["data.data_dir=gs://b/tfds", "train.epochs=1"]
    assert remote_patchscale(preflight).preflight and not remote_patchscale(sweep).preflight


def test_no_preflight_runs_the_sweep_alone(tpu):
    (sweep,) = lines(tpu, "sweep", "--name", "ps", "--zone", "z", "--experiment", "e.py", "--results", "gs://b/r",
                     "--no-preflight")
    assert not remote_patchscale(sweep).preflight


def test_sweep_refuses_a_local_results_path(tpu):
    with pytest.raises(SystemExit, match="gs://"):
        lines(tpu, "sweep", "--name", "ps", "--zone", "z", "--experiment", "e.py", "--results", "results/x")
