"""Every user error: one `patchscale: error:` line, exit code 2, no traceback, no run directory.

The cases run `cli.main` in this process (importing jax once, not once per case); two cases
run the installed command in a subprocess, where the device count is set before jax starts.
"""

import json

import pytest

from patchscale import cli, config as config_lib
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
    "mesh": (["mesh.data=3"], "mesh {'data': 3, 'fsdp': 1, 'sequence': 1, 'tensor': 1} has 3 devices but 1 are"),
    "mesh rule": (["mesh.rules.embed=fsdp,model"], "mesh.rules.embed='fsdp,model': unknown mesh axis 'model'"),
    "attention impl": (["model.attention_impl=flash"], "model.attention_impl='flash': expected one of"),
    "cudnn on a cpu": (["model.attention_impl=cudnn"], "model.attention_impl=cudnn: cuDNN attention needs an NVIDIA GPU"
                                                       " (this backend is cpu); use auto"),
    "pallas on a cpu": (["model.attention_impl=pallas"], "model.attention_impl=pallas: the Pallas flash kernel needs a"
                                                         " TPU (this backend is cpu); use auto"),
    "distributed flags": (["--coordinator", "localhost:1"], "--coordinator, --num-processes and --process-id go"),
    "sincos width": (["model.posemb=sincos2d", "model.width=66", "model.heads=3"],
                     "model.posemb=sincos2d needs a width divisible by 4"),
    "train examples": (["data.train_examples=60000"], "data.train_examples=60000: must be between 1 and the split's"
                                                      " 50000"),
    "eval examples": (["data.eval_examples=0"], "data.eval_examples=0: must be between 1"),
    "dtype": (["model.dtype=float8"], "model.dtype='float8': expected one of"),
    "flip": (["model.mamba2.flip=sometimes"], "model.mamba2.flip='sometimes'"),
    "keep checkpoints": (["train.keep_checkpoints=0"], "train.keep_checkpoints=0: must be positive"),
    "extend tokens": (["model.extend_tokens=0"], "model.extend_tokens=0: expected a whole factor >= 1"),
    "head": (["model.head=mask"], "model.head='mask': expected one of"),
    "dense with s2": (["model.head=dense_linear", "model.pool=gap", "model.s2_scales=(1,2)"], "cannot be combined"),
    "dense with mixup": (["model.head=dense_decoder", "augment.mixup_alpha=0.8"], "batch augmentations"),
    "dense with a policy": (["model.head=dense_linear", "augment.policy=three_augment"], "would relabel them"),
    "mask without a dense head": (["data.mask_feature=annotation", "data.mask_classes=150"], "it needs a dense head"),
    "mask classes": (["data.mask_feature=annotation", "model.head=dense_linear", "model.pool=gap"],
                     "data.mask_classes=0: set the number of pixel classes"),
    "mask with augmentation": (["data.mask_feature=annotation", "data.mask_classes=150", "model.head=dense_linear",
                                "model.pool=gap", "data.random_shift=2"], "would move the image without its mask"),
    "mask on mnist": (["data.mask_feature=annotation", "data.mask_classes=150", "model.head=dense_linear",
                       "model.pool=gap", "data.random_shift=0"], "the embedded 'mnist' has no masks"),
    "baseline with s2": (["model.baseline=linear", "model.extend_tokens=2"], "do not apply to it"),
    "s2 pooling": (["model.s2_scales=(1,2)"], "model.s2_scales needs model.pool=gap"),
    "s2 base": (["model.s2_scales=(1,3)", "model.pool=gap"], "not a multiple of the largest scale"),
    "s2 patch": (["model.s2_scales=(1,4)", "model.pool=gap", "model.patch_size=16"],
                 "model.patch_size=16 does not divide the S² base size 8"),
}


def assert_user_error(capsys, argv, message, run_dir):
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("patchscale: error: "), err
    assert message in lines[0], lines[0]
    assert not run_dir.exists()


@pytest.mark.parametrize("case", CASES)
def test_bad_override(case, tmp_path, capsys):
    overrides, message = CASES[case]
    run_dir = tmp_path / "run"
    assert_user_error(capsys, ["train", DEFAULT_EXPERIMENT, *overrides, "--workdir", run_dir], message, run_dir)


def test_the_installed_command_reports_one_line(tmp_path):
    """The console entry point itself, with 8 simulated devices set before jax starts."""
    run_dir = tmp_path / "run"
    done = run_cli("train", DEFAULT_EXPERIMENT, "train.batch_size=12", "--workdir", run_dir,
                   env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip() == ("patchscale: error: train.batch_size=12 is not divisible by the 8 data-parallel"
                                   " devices of the mesh {'data': 8, 'fsdp': 1, 'sequence': 1, 'tensor': 1}")
    assert not run_dir.exists()


@pytest.mark.parametrize("content, message", [
    ("def get_config(:\n", "does not load: SyntaxError"),
    ("import no_such_module_xyz\n", "does not load: ModuleNotFoundError"),
    ("X = 1\n", "has no get_config()"),
    ("def get_config(arg=None):\n    return {'a': 1}\n", "must return an ml_collections.ConfigDict"),
    ("from patchscale.defaults import base_config\n\ndef get_config(arg=None):\n    c = base_config()\n"
     "    c.train.learnig_rate = 1e-3\n    return c\n",
     "sets 'train.learnig_rate', which is not a config key; did you mean 'train.learning_rate'?"),
    ("from patchscale.defaults import base_config\n\ndef get_config(arg=None):\n    c = base_config()\n"
     "    c.trian = base_config().train\n    return c\n", "sets 'trian.b1', which is not a config key; did you mean 'train.b1'?"),
])
def test_config_file_that_does_not_load(tmp_path, capsys, content, message):
    config = tmp_path / "broken.py"
    config.write_text(content)
    run_dir = tmp_path / "run"
    assert_user_error(capsys, ["train", config, "--workdir", run_dir], message, run_dir)


def test_config_argument_after_a_colon(tmp_path, capsys):
    config = tmp_path / "sized.py"
    config.write_text("from patchscale.defaults import base_config\n\ndef get_config(arg=None):\n"
                      "    c = base_config()\n    c.model.size = arg or 'mu'\n    return c\n")
    assert cli.main(["config", f"{config}:pico"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["size"] == "pico"
    assert config_lib.experiment_name(f"{config}:pico") == "sized_pico"
    assert_user_error(capsys, ["config", f"{config}:XXL"], "unknown model size 'XXL'", tmp_path / "none")
    no_arg = tmp_path / "plain.py"
    no_arg.write_text("from patchscale.defaults import base_config\n\ndef get_config():\n    return base_config()\n")
    assert_user_error(capsys, ["config", f"{no_arg}:x"], "get_config('x') failed: TypeError", tmp_path / "none")


def test_config_prints_the_resolved_config_of_a_sweep_point(capsys):
    experiment = str(DEFAULT_EXPERIMENT.parent / "mnist_sweep.py")
    assert cli.main(["config", experiment, "--point", "mamba2-adv-mu-p4-s2", "train.log_every=7"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert (config["model"]["mixer"], config["model"]["patch_size"], config["seed"]) == ("mamba2", 4, 2)
    assert config["train"]["log_every"] == 7 and config["model"]["norm"] == "rmsnorm"
    assert_user_error(capsys, ["config", experiment, "--point", "mamba2-adv-mu-p4-s9"],
                      "did you mean 'mamba2-adv-mu-p4-s2'?", DEFAULT_EXPERIMENT.parent / "none")


def test_missing_config_file(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert_user_error(capsys, ["train", tmp_path / "absent.py", "--workdir", run_dir], "does not exist", run_dir)


def test_unknown_verb_and_embedded_dataset(tmp_path, capsys):
    assert_user_error(capsys, ["fly"], "invalid choice: 'fly'", tmp_path / "none")
    assert_user_error(capsys, ["data", "prepare", "imagenet"], "unknown embedded dataset", tmp_path / "none")


def test_resume_under_a_different_config_names_the_keys(tmp_path, capsys):
    """A run directory refuses a config that would change its results, before anything is built."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    earlier = config_lib.load_config(str(DEFAULT_EXPERIMENT), ["train.learning_rate=0.01"]).to_dict()
    (run_dir / "config.json").write_text(json.dumps(earlier))
    code = cli.main(["train", str(DEFAULT_EXPERIMENT), "--workdir", str(run_dir), "train.log_every=7"])
    err = capsys.readouterr().err
    assert code == 2 and "train.learning_rate (0.01 → 0.002)" in err and "log_every" not in err, err
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json"]


def test_resume_ignores_settings_that_cannot_change_results():
    earlier = config_lib.load_config(str(DEFAULT_EXPERIMENT)).to_dict()
    moved = config_lib.load_config(str(DEFAULT_EXPERIMENT), [
        "data.data_dir=/elsewhere", "data.worker_threads=8", "train.log_every=1", "train.checkpoint_every=7"])
    config_lib.check_resumable(earlier, moved.to_dict(), "run")  # No error.
    changed = config_lib.load_config(str(DEFAULT_EXPERIMENT), ["model.patch_size=8", "seed=3"])
    with pytest.raises(config_lib.UserError, match=r"model.patch_size \(4 → 8\), seed \(0 → 3\)"):
        config_lib.check_resumable(earlier, changed.to_dict(), "run")
