"""`patchscale sweep --preflight` and the refusal of data that tfds.data_source cannot read.

A tiny TFDS dataset (8×8 RGB, 4 classes, a mask feature) is written in both file formats inside
the tests: `array_record`, which the pipeline reads, and TFDS's default `tfrecord`, which
`tfds.data_source` refuses.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from patchscale import config as config_lib
from patchscale import preflight
from patchscale.data import datasets
from patchscale.errors import UserError
from tests.conftest import REPO, run_cli, run_in_process, write_experiment

NAME = "preflight_tiny"
EIGHT_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}


def write_tiny(data_dir, file_format: str) -> str:
    import tensorflow_datasets as tfds

    features = tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(shape=(8, 8, 3), dtype=np.uint8),
        "label": tfds.features.ClassLabel(num_classes=4),
        "annotation": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
    })
    rng = np.random.default_rng(0)

    def examples(count):
        for i in range(count):
            yield i, {"image": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "label": i % 4,
                      "annotation": np.full((8, 8, 1), 1 + i % 3, np.uint8)}

    tfds.dataset_builders.store_as_tfds_dataset(
        name=NAME, version="1.0.0", features=features, data_dir=str(data_dir), file_format=file_format,
        split_datasets={"train": examples(16), "test": examples(8)}, disable_shuffling=True)
    return str(data_dir)


@pytest.fixture(scope="module")
def array_record_dir(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("array_record"), "array_record")


@pytest.fixture(scope="module")
def tfrecord_dir(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("tfrecord"), "tfrecord")


SETTINGS = {"model.size": "pico", "model.patch_size": 4, "train.batch_size": 8, "train.eval_batch_size": 8,
            "train.steps": 2, "train.warmup_epochs": 0.0, "train.log_every": 1, "data.name": NAME}


def tiny_config(data_dir, **extra):
    config = config_lib.load_config(str(REPO / "experiments" / "mnist_vit.py"), [])
    for key, value in {**SETTINGS, "data.data_dir": data_dir, **extra}.items():
        config_lib.set_value(config, key, value)
    return config


# ----------------------------------------------------------------------------- the format error
def test_a_tfrecord_dataset_is_refused_at_validation_with_the_command_that_converts_it(tfrecord_dir):
    with pytest.raises(UserError) as refused:
        config_lib.validate(tiny_config(tfrecord_dir))
    message = str(refused.value)
    version_dir = f"{tfrecord_dir}/{NAME}/1.0.0"
    assert "\n" not in message and "prepared as tfrecord" in message
    assert (f"tfds convert_format --dataset_version_dir={version_dir} --out_file_format=array_record"
            in message)


def test_the_format_error_stops_a_sweep_before_anything_compiles(tmp_path, capsys, tfrecord_dir):
    experiment = write_experiment(tmp_path / "tiny.py", {**SETTINGS, "data.data_dir": tfrecord_dir}, [{}])
    done = run_in_process(capsys, "sweep", experiment, "--results", tmp_path / "results")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "prepared as tfrecord" in done.stderr
    assert not (tmp_path / "results").exists()


def test_a_missing_split_names_the_splits_there(array_record_dir):
    with pytest.raises(UserError, match=r"data.eval_split='validation': dataset 'preflight_tiny' in .* has no split"
                                        r" 'validation' \(it has (train, test|test, train)\)"):
        config_lib.validate(tiny_config(array_record_dir, **{"data.eval_split": "validation"}))
    with pytest.raises(UserError, match="has no split 'valid'"):
        config_lib.validate(tiny_config(array_record_dir, **{"data.train_split": "train[:8]+valid"}))
    config_lib.validate(tiny_config(array_record_dir, **{"data.train_split": "train[:8]+test"}))


def test_a_copy_converted_in_place_is_readable(tmp_path, array_record_dir, tfrecord_dir):
    """What `tfds convert_format` leaves in the version directory (array_record shards beside the
    tfrecord ones, the format listed under alternativeFileFormats in dataset_info.json; TFDS 4.9.10,
    scripts/cli/convert_format_utils.py) is accepted and read, under the same data dir."""
    copy = tmp_path / "tfds"
    shutil.copytree(tfrecord_dir, copy)
    version = copy / NAME / "1.0.0"
    for shard in (pathlib.Path(array_record_dir) / NAME / "1.0.0").glob("*.array_record-*"):
        shutil.copy(shard, version / shard.name)
    info = json.loads((version / "dataset_info.json").read_text())
    (version / "dataset_info.json").write_text(json.dumps({**info, "alternativeFileFormats": ["array_record"]}))
    config_lib.validate(tiny_config(str(copy)))
    assert len(datasets.open_split(NAME, "test", str(copy))) == 8


@pytest.mark.heavy
def test_the_printed_convert_command_runs(tmp_path, tfrecord_dir):
    """The command in the error, run with the real `tfds` CLI on a copy; afterwards the data dir validates.

    TFDS 4.9.10's `tfds` command imports Apache Beam at start-up, which patchscale does not install.
    """
    pytest.importorskip("apache_beam")
    copy = tmp_path / "tfds"
    shutil.copytree(tfrecord_dir, copy)
    with pytest.raises(UserError) as refused:
        config_lib.validate(tiny_config(str(copy)))
    command = str(refused.value).split("convert it in place: ")[1].removesuffix(" (docs/data.md)").split()
    assert command[0] == "tfds"
    script = pathlib.Path(sys.executable).with_name("tfds")  # The `tfds` command installed with the package.
    done = subprocess.run([str(script), *command[1:], "--num_workers=1"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    datasets._describe_tfds.cache_clear()
    config_lib.validate(tiny_config(str(copy)))


# ----------------------------------------------------------------------------- single checks
def test_data_check_decodes_one_example_of_each_split(array_record_dir, tfrecord_dir):
    d = tiny_config(array_record_dir).data
    assert preflight.check_split(d, "train_split", "train") == (
        "16 examples; the first, 8×8×3, decodes to 8×8, label 0 of 4 classes")
    bad = preflight.attempt("data", "x", lambda: preflight.check_split(tiny_config(tfrecord_dir).data, "train_split",
                                                                       "train"))
    assert bad.status == "FAIL" and "tfds convert_format" in bad.detail
    missing = preflight.attempt("data", "x", lambda: preflight.check_split(d, "val_split", "validation"))
    assert missing.status == "FAIL" and missing.detail.startswith("data.val_split='validation': dataset")


def test_data_check_reads_the_mask_feature(array_record_dir):
    masked = {"data.mask_feature": "annotation", "data.mask_classes": 4, "model.head": "dense_linear",
              "data.image_size": 4}
    d = tiny_config(array_record_dir, **masked).data
    assert preflight.check_split(d, "eval_split", "test").endswith(
        "decodes to 4×4 with mask 'annotation', 100% of its pixels in classes 0..3")
    d = tiny_config(array_record_dir, **{**masked, "data.mask_offset": -10}).data
    status, detail = preflight.check_split(d, "eval_split", "test")
    assert status == "FAIL" and "data.mask_offset=-10" in detail
    other = tiny_config(array_record_dir, **{**masked, "data.mask_feature": "segmentation"}).data
    missing = preflight.attempt("data", "x", lambda: preflight.check_split(other, "eval_split", "test"))
    assert missing.status == "FAIL" and "no 'image' and 'segmentation' features" in missing.detail


def test_results_probe_leaves_nothing_behind(tmp_path):
    target = tmp_path / "new" / "results"
    assert preflight.probe_results(str(target)).startswith("wrote, read back and deleted .preflight-")
    assert not (tmp_path / "new").exists()  # The directories it made are gone again.
    target.mkdir(parents=True)
    preflight.probe_results(str(target))
    assert list(target.iterdir()) == []


def test_results_probe_fails_where_nothing_can_be_written(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    check = preflight.attempt("results", "x", lambda: preflight.probe_results(str(blocker / "results")))
    assert check.status == "FAIL" and check.detail.startswith(f"cannot write under {blocker}/results: ")
    if os.geteuid() != 0:  # Root writes into read-only directories anyway.
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        check = preflight.attempt("results", "x", lambda: preflight.probe_results(str(locked / "results")))
        assert check.status == "FAIL" and "Permission denied" in check.detail


def test_memory_budget_comes_from_the_environment_and_is_absent_on_cpu(monkeypatch):
    monkeypatch.delenv(preflight.MEMORY_ENV, raising=False)
    assert preflight.device_memory() is None  # CPUs report no limit: "not checked".
    monkeypatch.setenv(preflight.MEMORY_ENV, "2e9")
    assert preflight.device_memory() == 2_000_000_000
    monkeypatch.setenv(preflight.MEMORY_ENV, "lots")
    with pytest.raises(UserError, match="expected a number of bytes"):
        preflight.device_memory()


def test_memory_check_compares_the_compiled_step_with_the_budget(array_record_dir):
    config = tiny_config(array_record_dir)
    needed, _ = preflight.compiled_step_bytes(config)
    assert needed > 0
    assert preflight.check_memory(config, needed + 1).startswith("train step at batch 8 needs")
    status, detail = preflight.check_memory(config, needed - 1)
    assert status == "FAIL" and "lower train.batch_size" in detail
    status, detail = preflight.check_memory(config, None)
    assert status == "SKIP" and detail.endswith("not checked: the device reports no memory limit")


# ----------------------------------------------------------------------------- the command
def test_preflight_passes_a_correct_setup(tmp_path, capsys, array_record_dir):
    experiment = write_experiment(tmp_path / "tiny.py", {**SETTINGS, "data.data_dir": array_record_dir},
                                  [{"seed": 0}, {"seed": 1}])
    done = run_in_process(capsys, "sweep", experiment, "--results", tmp_path / "results", "--preflight")
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    statuses = [(line.split()[0], line.split()[1]) for line in lines[1:-1]]
    assert statuses == [("PASS", "results"), ("PASS", "mesh"), ("PASS", "data"), ("PASS", "data"),
                        ("PASS", "config"), ("SKIP", "memory")]  # Both seeds share one compiled step.
    assert "not checked" in lines[-2] and lines[-1].endswith("ready to sweep")
    assert not (tmp_path / "results").exists()  # Nothing is left behind.


def test_preflight_reports_every_problem_on_eight_devices(tmp_path, array_record_dir, tfrecord_dir):
    """A mesh that does not fit 8 devices, a step over the memory budget, unreadable data, a patch size
    that does not divide the input, a results path under a file: one FAIL line each, and exit code 1."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    experiment = write_experiment(tmp_path / "tiny.py", {**SETTINGS, "data.data_dir": array_record_dir}, [
        {"mesh.data": 8}, {"mesh.data": 3}, {"mesh.data": 8, "data.data_dir": tfrecord_dir},
        {"mesh.data": 8, "model.patch_size": 3}])
    done = run_cli("sweep", experiment, "--results", blocker / "results", "--preflight",
                   env_extra={**EIGHT_DEVICES, preflight.MEMORY_ENV: "1000"}, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "8 cpu devices" in lines[0]
    failures = [line for line in lines if line.startswith("FAIL")]
    assert [line.split()[1] for line in failures] == ["results", "mesh", "data", "data", "config", "memory"]
    assert "mesh {'data': 3, 'fsdp': 1, 'sequence': 1, 'tensor': 1} has 3 devices but 8 are available" in failures[1]
    assert "tfds convert_format" in failures[2] and "model.patch_size=3 does not divide" in failures[4]
    assert "more than the 1000 B a device has" in failures[5]
    assert "SKIP  config  2 runs: not checked: their data or mesh check failed" in lines
    assert lines[-1].endswith("fix the FAIL lines before starting the sweep") and not done.stderr.strip()
