"""Every user error: one `patchscale: error:` line, exit code 2, no traceback, no run directory."""

import pytest

from tests.conftest import DEFAULT_EXPERIMENT, run_cli

CASES = {
    "patch size": (["model.patch_size=5"], "does not divide the input size 32"),
    "model size": (["model.size=XXL"], "unknown model size 'XXL'"),
    "dataset": (["data.name=no_such_dataset_xyz"], "unknown dataset 'no_such_dataset_xyz'"),
    "unknown key": (["train.no_such_key=1"], "unknown config key 'train.no_such_key'"),
    "unknown group": (["nope.batch_size=1"], "unknown config key 'nope'"),
    "wrong type": (["train.batch_size=many"], "expected a value of type int"),
    "float for int": (["train.batch_size=1.5"], "expected a value of type int"),
    "not key=value": (["train.batch_size"], "is not of the form key.path=value"),
    "mixer": (["model.mixer=nope"], "unknown token mixer 'nope'"),
    "mesh": (["mesh.data=3"], "mesh"),
    "mesh rule": (["mesh.rules.embed=fsdp,model"], "mesh.rules.embed='fsdp,model': unknown mesh axis 'model'"),
    "attention impl": (["model.attention_impl=flash"], "model.attention_impl='flash': expected one of"),
    "distributed flags": (["--coordinator", "localhost:1"], "--coordinator, --num-processes and --process-id go"),
}


def assert_user_error(done, message, run_dir):
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("patchscale: error: "), done.stderr
    assert message in lines[0]
    assert "Traceback" not in done.stderr
    assert not run_dir.exists()


@pytest.mark.parametrize("case", CASES)
def test_bad_override(case, tmp_path):
    overrides, message = CASES[case]
    run_dir = tmp_path / "run"
    done = run_cli("train", DEFAULT_EXPERIMENT, *overrides, "--workdir", run_dir)
    assert_user_error(done, message, run_dir)


def test_batch_not_divisible_by_data_parallel_devices(tmp_path):
    run_dir = tmp_path / "run"
    done = run_cli("train", DEFAULT_EXPERIMENT, "train.batch_size=12", "--workdir", run_dir,
                   env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
    assert_user_error(done, "train.batch_size=12 is not divisible by the 8 data-parallel devices", run_dir)


@pytest.mark.parametrize("content, message", [
    ("def get_config(:\n", "does not load: SyntaxError"),
    ("import no_such_module_xyz\n", "does not load: ModuleNotFoundError"),
    ("X = 1\n", "has no get_config()"),
    ("def get_config(arg=None):\n    return {'a': 1}\n", "must return an ml_collections.ConfigDict"),
])
def test_config_file_that_does_not_load(tmp_path, content, message):
    config = tmp_path / "broken.py"
    config.write_text(content)
    run_dir = tmp_path / "run"
    assert_user_error(run_cli("train", config, "--workdir", run_dir), message, run_dir)


def test_missing_config_file(tmp_path):
    run_dir = tmp_path / "run"
    assert_user_error(run_cli("train", tmp_path / "absent.py", "--workdir", run_dir), "does not exist", run_dir)


def test_unknown_verb_and_embedded_dataset(tmp_path):
    done = run_cli("fly")
    assert done.returncode == 2 and done.stderr.startswith("patchscale: error: ")
    assert_user_error(run_cli("data", "prepare", "imagenet"), "unknown embedded dataset", tmp_path / "none")


@pytest.mark.parametrize("override, message", [
    ("data.train_examples=60000", "data.train_examples=60000: must be between 1 and the split's 50000"),
    ("data.eval_examples=0", "data.eval_examples=0: must be between 1"),
    ("model.dtype=float8", "model.dtype='float8': expected one of"),
    ("model.mamba2.flip=sometimes", "model.mamba2.flip='sometimes'"),
    ("train.keep_checkpoints=0", "train.keep_checkpoints=0: must be positive"),
])
def test_more_bad_values(override, message, tmp_path):
    run_dir = tmp_path / "run"
    assert_user_error(run_cli("train", DEFAULT_EXPERIMENT, override, "--workdir", run_dir), message, run_dir)
