"""Load experiment configs, apply `key.path=value` overrides and validate them cheaply.

Everything here runs before any model is built or compiled, so user errors surface in
milliseconds as a `UserError` and no run directory is written.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import json
import pathlib
import re
import sys
from typing import Any, Sequence

import ml_collections
from ml_collections.config_dict import FieldReference

from patchscale.defaults import base_config
from patchscale.errors import UserError


def split_arg(path: str) -> tuple[str, str | None]:
    """`experiments/x.py:arg` → ("experiments/x.py", "arg"); a plain path has no argument."""
    head, sep, arg = path.rpartition(":")
    if sep and head.endswith(".py"):
        return head, arg
    return path, None


def experiment_name(path: str) -> str:
    """The experiment's name for default result directories: the file's stem (and its argument)."""
    file, arg = split_arg(path)
    stem = pathlib.Path(file).stem
    # One path component whatever ARG holds: `x.py:/../../y` must not move the results elsewhere.
    return f"{stem}_{re.sub(r'[^A-Za-z0-9=._+-]', '_', arg)}" if arg else stem


def load_module(path: str):
    """Import an experiment file (`experiments/X.py`, or `experiments/X.py:arg`) as a module."""
    file = pathlib.Path(split_arg(path)[0])
    if not file.is_file():
        raise UserError(f"config file {str(file)!r} does not exist")
    try:
        module = _import_from_package(file) if (file.parent / "__init__.py").is_file() else _import_file(file)
    except UserError:
        raise
    except Exception as e:  # Any failure while importing is the user's config failing to load.
        raise UserError(f"config file {str(file)!r} does not load: {type(e).__name__}: {e}") from None
    if not hasattr(module, "get_config"):
        raise UserError(f"config file {str(file)!r} has no get_config() function")
    return module


def _import_file(file: pathlib.Path):
    """A stand-alone experiment file, imported under a private name."""
    spec = importlib.util.spec_from_file_location(f"patchscale_experiment_{file.stem}", file)
    if spec is None or spec.loader is None:
        raise UserError(f"config file {str(file)!r} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _import_from_package(file: pathlib.Path):
    """An experiment inside a package (a folder with __init__.py, like experiments/), so experiments
    can build on each other with relative imports (`from .mnist_sweep import get_config`)."""
    package_dir = file.parent.resolve()
    root, package = str(package_dir.parent), package_dir.name
    loaded = sys.modules.get(package)
    if loaded is not None and pathlib.Path(getattr(loaded, "__file__", "") or "").parent != package_dir:
        raise UserError(f"config file {str(file)!r}: another package named {package!r} is already imported"
                        f" (from {loaded.__file__}); rename one of the folders")
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module(f"{package}.{file.stem}")


def experiment_config(module, path: str) -> ml_collections.ConfigDict:
    """`get_config(arg)` of a loaded experiment, checked against the keys of the base config."""
    arg = split_arg(path)[1]
    try:
        config = module.get_config() if arg is None else module.get_config(arg)
    except Exception as e:
        raise UserError(f"config file {path!r}: get_config({'' if arg is None else repr(arg)}) failed:"
                        f" {type(e).__name__}: {e}") from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise UserError(f"config file {path!r}: get_config() must return an ml_collections.ConfigDict")
    check_keys(config, path)
    return config


def load_config(path: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """`get_config()` of the experiment file, with overrides applied and the result validated."""
    config = experiment_config(load_module(path), path)
    apply_overrides(config, overrides)
    validate(config)
    return config


OPEN_GROUPS = ("mesh.rules.",)  # Logical-axis rules: any axis name (partitioning.parse_rules checks them).


def check_keys(config: ml_collections.ConfigDict, path: str) -> None:
    """A key the base config does not have is a typo: a one-line error naming it and the nearest key.

    Without this, `c.train.learnig_rate = 1e-3` in an experiment file would add a key that
    nothing reads and train with the default rate.
    """
    known = [key for key, _ in _leaves(base_config().to_dict())]
    for key, _ in _leaves(config.to_dict()):
        if key in known or key.startswith(OPEN_GROUPS) or any(k.startswith(key + ".") for k in known):
            continue
        near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise UserError(f"config file {path!r} sets {key!r}, which is not a config key{hint}")


# Settings that cannot change what a run computes: a run may resume with them changed.
RESUME_NEUTRAL = {"data.data_dir", "data.worker_threads", "data.prefetch", "data.in_memory",
                  "train.log_every", "train.eval_every", "train.checkpoint_every", "train.keep_checkpoints"}


def check_resumable(previous: dict, current: dict, run_dir) -> None:
    """Refuse to resume a run under a config that would change its results, naming the keys that differ.

    A key the stored config lacks but that is at its default now was added to the suite after
    the run started; the default is what the run computed with, so it does not count.
    """
    before, after, default = (dict(_leaves(json.loads(json.dumps(tree))))
                              for tree in (previous, current, base_config().to_dict()))
    added = {k for k in after if k not in before and k in default and after[k] == default[k]}
    differ = sorted(k for k in set(before) | set(after)
                    if before.get(k, "<unset>") != after.get(k, "<unset>") and k not in RESUME_NEUTRAL | added)
    if differ:
        shown = ", ".join(f"{k} ({before.get(k, '<unset>')!r} → {after.get(k, '<unset>')!r})" for k in differ[:4])
        more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
        raise UserError(f"{run_dir} holds a run with a different config: {shown}{more}; choose another"
                        " --workdir (or results directory) or restore those settings")


def _leaves(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _field_type(parent: ml_collections.ConfigDict, key: str) -> type | None:
    """The declared type of a field, including typed placeholders that currently hold None."""
    field = parent._fields[key]  # pylint: disable=protected-access
    if isinstance(field, FieldReference):
        return field.get_type()
    return None if field is None else type(field)


def _parse_value(text: str, target: type | None, key: str) -> Any:
    if text == "None":  # Resets an optional (placeholder) setting.
        return None
    if target is str:
        return text
    if target is bool:
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise UserError(f"override {key}={text!r}: expected a boolean (true/false)")
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # A bare word: keep it as a string; set_value checks the type.


def _resolve_key(config: ml_collections.ConfigDict, key: str) -> tuple[ml_collections.ConfigDict, str]:
    """The ConfigDict holding `key` and the leaf name; `UserError` if the key does not exist."""
    *parents, leaf = key.split(".")
    node = config
    for i, part in enumerate(parents):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            raise UserError(f"override {key}: unknown config key {'.'.join(parents[: i + 1])!r}")
        node = node[part]
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
        raise UserError(f"override {key}: unknown config key {key!r}")
    if isinstance(node[leaf], ml_collections.ConfigDict):
        raise UserError(f"override {key}: {key!r} is a group of settings, not a value")
    return node, leaf


def set_value(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
    """Set an existing key to a value of its type (ints are accepted for floats)."""
    node, leaf = _resolve_key(config, key)
    target = _field_type(node, leaf)
    if target is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if target is tuple and isinstance(value, list):
        value = tuple(value)
    if not (value is None or target is None or (isinstance(value, target)
                                                 and not (target is int and isinstance(value, bool)))):
        raise UserError(f"override {key}={value!r}: expected a value of type {target.__name__}")
    with config.ignore_type():
        node[leaf] = value


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
    """Apply `a.b.c=value` strings; the key must exist and the value must have its type."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UserError(f"override {item!r} is not of the form key.path=value")
        node, leaf = _resolve_key(config, key)
        set_value(config, key, _parse_value(text, _field_type(node, leaf), key))


def validate(config: ml_collections.ConfigDict) -> None:
    """Cheap semantic checks that need neither data nor compilation: each subsystem's own `check`.

    The order is the one a user fixes things in: the model, its task, the data, the input size,
    augmentation, optimization, the loop, the mesh. The subsystems are imported here, not at the
    top, so that loading an experiment file does not import jax.
    """
    from patchscale import optimizer, partitioning, segmentation, train
    from patchscale.data import augment, datasets
    from patchscale.models import validation as model_validation

    if not isinstance(config.seed, int) or not 0 <= config.seed < 2**31 - 1:
        raise UserError(f"seed={config.seed!r}: expected an integer in [0, 2**31 - 1)")  # An int32 in the state.
    model_validation.check(config.model)
    segmentation.check(config)
    d = config.data
    info = datasets.check(d)
    model_validation.check_input(config.model, d.image_size or info.image_size)
    augment.check(config.augment, d)
    optimizer.check(config.train, d.train_examples or info.splits.get(d.train_split))
    train.check(config.train)
    partitioning.check(config)
