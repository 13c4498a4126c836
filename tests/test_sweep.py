"""Sweep expansion, run names, sharding and run status."""

import json

import pytest

from patchscale import sweep
from patchscale.errors import UserError

EXPERIMENT = '''
from patchscale.defaults import base_config
from patchscale.sweep import product


def get_config(arg=None):
    c = base_config()
    c.model.size = "pico"
    return c


def get_sweep():
    return product(**{"model.mixer": ["attention", "mamba2"], "model.patch_size": [16, 8, 4], "seed": [0, 1]})
'''


@pytest.fixture
def experiment(tmp_path):
    path = tmp_path / "exp.py"
    path.write_text(EXPERIMENT)
    return str(path)


def test_product_is_the_cartesian_product():
    points = sweep.product(a=[1, 2], b=["x", "y", "z"])
    assert len(points) == 6 and {"a": 2, "b": "z"} in points


def test_expand_names_and_validates_every_point(experiment):
    points = sweep.expand(experiment)
    assert len(points) == 12
    names = [p.name for p in points]
    assert names[0] == "attention-pico-p16-s0" and "mamba2-pico-p4-s1" in names
    assert len(set(names)) == 12
    assert points[-1].config.model.mixer == "mamba2" and points[-1].config.seed == 1


def test_cli_overrides_apply_to_every_point(experiment):
    points = sweep.expand(experiment, ["train.epochs=0.5"])
    assert all(p.config.train.epochs == 0.5 for p in points)


def test_invalid_point_is_reported_with_its_overrides(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text(EXPERIMENT.replace("[16, 8, 4]", "[16, 5]"))
    with pytest.raises(UserError, match="model.patch_size': 5.*does not divide"):
        sweep.expand(str(path))


def test_shards_partition_the_points_deterministically(experiment):
    points = sweep.expand(experiment)
    shards = [sweep.shard(points, i, 5) for i in range(5)]
    names = [p.name for s in shards for p in s]
    assert sorted(names) == sorted(p.name for p in points)
    assert [p.name for p in sweep.shard(sweep.expand(experiment), 2, 5)] == [p.name for p in shards[2]]


@pytest.mark.parametrize("text", ["3/3", "a/b", "1", "-1/2"])
def test_bad_shard_argument(text):
    with pytest.raises(UserError, match="--shard"):
        sweep.parse_shard(text)


def test_status_of_run_directories(tmp_path):
    run = tmp_path / "run"
    assert sweep.status(run) == "new"
    (run / "checkpoints").mkdir(parents=True)
    assert sweep.status(run) == "partial"
    (run / "failed.json").write_text(json.dumps({"error": "x"}))
    assert sweep.status(run) == "failed"
    (run / "summary.json").write_text("{}")
    assert sweep.status(run) == "finished"
