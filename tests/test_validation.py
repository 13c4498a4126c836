"""Each subsystem checks its own config keys; config.validate composes the checks; loading stays light."""

import json
import re
import subprocess
import sys

import jax
import pytest

from patchscale import config as config_lib
from patchscale import optimizer, partitioning, segmentation, train
from patchscale.data import augment, datasets
from patchscale.errors import UserError
from patchscale.models import validation as model_validation
from tests.conftest import DEFAULT_EXPERIMENT, REPO

DEVICES = jax.device_count()
HEAVY = ("jax", "flax", "optax", "orbax", "tensorflow", "tensorflow_datasets", "grain", "matplotlib", "scipy")


def test_loading_an_experiment_imports_nothing_heavy():
    """Reading a config file (what `sweep` does for every point, and workers once each) needs no jax."""
    files = [str(f) for f in sorted((REPO / "experiments").glob("*.py")) if f.name not in ("__init__.py", "paper_common.py")]
    code = (f"import json, sys\nfrom patchscale import config\nfor f in {files!r}:\n"
            "    config.experiment_config(config.load_module(f), f)\n"
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def _config(*overrides):
    c = config_lib.experiment_config(config_lib.load_module(str(DEFAULT_EXPERIMENT)), str(DEFAULT_EXPERIMENT))
    config_lib.apply_overrides(c, list(overrides))
    return c


@pytest.mark.parametrize("check, overrides, message", [
    (lambda c: model_validation.check(c.model), ["model.pool=max"], "model.pool='max': expected one of cls, gap"),
    (lambda c: model_validation.check_input(c.model, 32), ["model.patch_size=5"], "model.patch_size=5 does not divide"),
    (lambda c: segmentation.check(c), ["data.mask_feature=mask"], "it needs a dense head"),
    (lambda c: datasets.check(c.data), ["data.train_examples=60001"], "data.train_examples=60001: must be between 1"),
    (lambda c: augment.check(c.augment, c.data), ["data.random_shift=-1"], "data.random_shift=-1: must be >= 0"),
    (lambda c: optimizer.check(c.train, 1000), ["train.schedule=cosine", "train.ema_decay=1.0"],
     "train.ema_decay=1.0: expected a decay in [0, 1)"),
    (lambda c: train.check(c.train), ["train.eval_every=-1"], "train.eval_every=-1: must be >= 0"),
    (lambda c: partitioning.check(c), [f"mesh.data={DEVICES + 1}"], f"has {DEVICES + 1} devices but {DEVICES} are"),
])
def test_each_subsystem_checks_its_own_keys(check, overrides, message):
    c = _config(*overrides)
    with pytest.raises(UserError, match=re.escape(message)):
        check(c)
    with pytest.raises(UserError, match=re.escape(message)):
        config_lib.validate(c)  # The composition reaches every subsystem's check.


def test_budgets_are_checked_against_the_warmup_in_steps():
    c = _config("train.schedule=wsd", "train.warmup_epochs=1.0", "train.epochs=2", "train.batch_size=100")
    c.train.budgets = (0.25,)  # Ends at step 5 of 20 with 1,000 examples: its cooldown starts inside the warmup.
    optimizer.check(c.train, None)  # Without the dataset's size there is nothing to compare.
    with pytest.raises(UserError, match="inside the 10-step warmup"):
        optimizer.check(c.train, 1000)
