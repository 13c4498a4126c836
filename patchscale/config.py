"""Load experiment configs, apply `key.path=value` overrides and validate them cheaply.

Everything here runs before any model is built or compiled, so user errors surface in
milliseconds as a `UserError` and no run directory is written.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import pathlib
import re
import sys
from typing import Any, Sequence

import ml_collections
from ml_collections.config_dict import FieldReference

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
    from patchscale.defaults import base_config

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
    import json

    from patchscale.defaults import base_config

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


def _validate_masks(config) -> None:
    """A segmentation dataset's masks (data.mask_feature) feed a dense head, unaugmented."""
    d = config.data
    if not d.mask_feature:
        return
    from patchscale.data import augment
    from patchscale.models import dense_heads

    if not dense_heads.is_dense(config.model.head):
        raise UserError(f"data.mask_feature={d.mask_feature!r} gives per-pixel labels: it needs a dense head"
                        " (model.head=dense_linear or dense_decoder)")
    if not isinstance(d.mask_classes, int) or d.mask_classes < 2:
        raise UserError(f"data.mask_classes={d.mask_classes!r}: set the number of pixel classes (>= 2) of"
                        f" {d.mask_feature!r} (ADE20k: 150)")
    if augment.is_active(config.augment) or d.random_shift:
        raise UserError(f"data.mask_feature={d.mask_feature!r}: training augmentation (augment.*, data.random_shift)"
                        " would move the image without its mask; turn it off")


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
    """Apply `a.b.c=value` strings; the key must exist and the value must have its type."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UserError(f"override {item!r} is not of the form key.path=value")
        node, leaf = _resolve_key(config, key)
        set_value(config, key, _parse_value(text, _field_type(node, leaf), key))


def _check_fused_attention(m) -> None:
    """A forced fused kernel must exist here: cuDNN on a GPU in 16 bits, Pallas flash on a TPU."""
    import jax
    import jax.numpy as jnp

    from patchscale.models import backbone, sizes
    from patchscale.models.mixers import attention

    backend = jax.default_backend()
    if m.attention_impl == "pallas" and backend != "tpu":
        raise UserError(f"model.attention_impl=pallas: the Pallas flash kernel needs a TPU (this backend is"
                        f" {backend}); use auto")
    if m.attention_impl == "cudnn":
        shape = sizes.resolve(m)
        dtype = backbone.compute_dtype(m.dtype)
        if backend not in attention.GPU_BACKENDS:
            raise UserError(f"model.attention_impl=cudnn: cuDNN attention needs an NVIDIA GPU (this backend is"
                            f" {backend}); use auto")
        if not attention.cudnn_accepts(dtype, shape.width // shape.heads):
            raise UserError(f"model.attention_impl=cudnn: cuDNN attention takes bfloat16/float16 and a head"
                            f" dimension ≤ 128 divisible by 8 (here {jnp.dtype(dtype).name},"
                            f" {shape.width // shape.heads}); use auto")


def validate(config: ml_collections.ConfigDict) -> None:
    """Cheap semantic checks that need neither data nor compilation."""
    # Local imports keep `load_module` light; none of these compiles anything.
    from patchscale.data import augment_batch, datasets
    from patchscale import optimizer
    from patchscale.models import backbone, baselines, channel, dense_heads, initializers, sizes
    from patchscale.models.mixers import attention, mamba2, registry

    m, d, t = config.model, config.data, config.train
    if not isinstance(config.seed, int) or not 0 <= config.seed < 2**31 - 1:
        raise UserError(f"seed={config.seed!r}: expected an integer in [0, 2**31 - 1)")  # An int32 in the state.
    shape = sizes.resolve(m)  # Raises on unknown sizes or inconsistent shapes.
    registry.get(m.mixer)
    choices = {"pool": ("cls", "gap"), "cls_position": ("first", "last"),
               "posemb": ("learned", "sincos2d", "none"), "norm": tuple(backbone.NORMS),
               "channel_mixer": tuple(channel.CHANNEL_MIXERS), "remat": tuple(backbone.REMAT_POLICIES),
               "dtype": ("auto", *backbone.DTYPES), "patch_embed_init": initializers.PATCH_EMBED_INITS,
               "residual_dtype": ("float32", "compute"), "head": dense_heads.HEADS,
               "drop_path_schedule": backbone.DROP_PATH_SCHEDULES}
    for key, allowed in choices.items():
        if m[key] not in allowed:
            raise UserError(f"model.{key}={m[key]!r}: expected one of {', '.join(allowed)}")
    if m.attention_impl not in attention.IMPLEMENTATIONS:
        raise UserError(f"model.attention_impl={m.attention_impl!r}: expected one of"
                        f" {', '.join(str(i) for i in attention.IMPLEMENTATIONS)}")
    if m.mixer == "attention" and m.attention_impl in ("cudnn", "pallas"):
        _check_fused_attention(m)
    if m.token_segment < 0:
        raise UserError(f"model.token_segment={m.token_segment}: must be >= 0 (0 = off)")
    if m.mamba2.chunk_size < 0:
        raise UserError(f"model.mamba2.chunk_size={m.mamba2.chunk_size}: must be >= 0 (0 = automatic)")
    if m.attention_chunk <= 0:
        raise UserError(f"model.attention_chunk={m.attention_chunk}: must be positive")
    if m.mamba2.flip not in mamba2.FLIP_RULES:
        raise UserError(f"model.mamba2.flip={m.mamba2.flip!r}: expected one of {', '.join(mamba2.FLIP_RULES)}")
    if m.baseline not in baselines.BASELINES:
        raise UserError(f"model.baseline={m.baseline!r}: expected one of {', '.join(baselines.BASELINES)}")
    if m.baseline_hidden <= 0:
        raise UserError(f"model.baseline_hidden={m.baseline_hidden}: must be positive")
    if m.mixer == "mamba2":
        try:
            mamba2.dims(shape, m.mamba2)
        except ValueError as e:
            raise UserError(f"model.mamba2: {e}") from None
    if m.posemb == "sincos2d" and shape.width % 4:
        raise UserError(f"model.posemb=sincos2d needs a width divisible by 4 (sin and cos per axis), got {shape.width}")
    if dense_heads.is_dense(m.head):
        if m.s2_scales or m.extend_tokens != 1 or m.baseline != "none":
            raise UserError(f"model.head={m.head} maps each patch token to its own pixels: it cannot be combined"
                            " with model.s2_scales, model.extend_tokens or a pixel baseline")
        if m.head == "dense_decoder" and m.patch_size & (m.patch_size - 1):
            raise UserError(f"model.head=dense_decoder upsamples in steps of 2: model.patch_size={m.patch_size}"
                            " must be a power of two")
        if m.decoder_width <= 0:
            raise UserError(f"model.decoder_width={m.decoder_width}: must be positive")
        a = config.augment
        if augment_batch.is_active(a) or a.policy != "none" or a.color_jitter:
            raise UserError(f"model.head={m.head}: the pixel labels come from the pixels the model sees, so"
                            " photometric and batch augmentations (augment.policy, color_jitter, random erasing,"
                            " Mixup, CutMix) would relabel them; turn them off for the per-pixel task")
        if not 0 < config.data.pixel_threshold <= 255:
            raise UserError(f"data.pixel_threshold={config.data.pixel_threshold}: expected an intensity in 1..255")
    if m.baseline != "none" and (m.s2_scales or m.extend_tokens != 1):
        raise UserError(f"model.baseline={m.baseline} is a pixel baseline: model.s2_scales and model.extend_tokens"
                        " do not apply to it")
    if not isinstance(m.extend_tokens, int) or m.extend_tokens < 1:
        raise UserError(f"model.extend_tokens={m.extend_tokens!r}: expected a whole factor >= 1 (1 turns it off)")
    if not 0.0 <= m.drop_path < 1.0:
        raise UserError(f"model.drop_path={m.drop_path}: expected a rate in [0, 1)")

    _validate_masks(config)
    info = datasets.describe(d.name, d.data_dir, d.mask_feature)  # Raises on unknown datasets.
    datasets.check_readable(d.name, info, {f"data.{key}": d[key] for key in ("train_split", "eval_split", "val_split")
                                           if d[key] is not None}, d.data_dir)  # Format and splits, before compiling.
    if d.image_size is not None and d.image_size <= 0:  # 0 would silently mean "the dataset's own size".
        raise UserError(f"data.image_size={d.image_size}: must be positive (leave it unset for the dataset's size)")
    size = d.image_size or info.image_size
    if size is None:
        raise UserError(f"data.image_size must be set: dataset {d.name!r} has images of varying size")
    scales = tuple(m.s2_scales)
    if scales:
        if any(not isinstance(k, int) or k < 1 for k in scales) or list(scales) != sorted(set(scales)):
            raise UserError(f"model.s2_scales={scales}: expected increasing whole scales, e.g. (1, 2)")
        if m.pool != "gap":
            raise UserError("model.s2_scales needs model.pool=gap (features are pooled over the merged patch grid)")
        if size % scales[-1]:
            raise UserError(f"model.s2_scales={scales}: the input size {size} is not a multiple of the largest scale")
    base = size // scales[-1] if scales else size  # The backbone's own input size.
    if not 1 <= m.patch_size <= base or base % m.patch_size:
        where = f"the S² base size {base}" if scales else f"the input size {base} (data.image_size)"
        raise UserError(f"model.patch_size={m.patch_size} does not divide {where};"
                        f" choose one of {[p for p in range(1, base + 1) if base % p == 0]}")
    if m.mixer == "attention" and m.attention_impl in ("xla", "einsum"):
        from patchscale.models import flops

        tokens = flops.sequence_length(m, size)
        if attention.dense_logits(1, 1, tokens) > attention.INDEX_LIMIT:
            raise UserError(f"model.attention_impl={m.attention_impl}: one head's {tokens}×{tokens} logits exceed XLA's int32"
                            " indexing; use auto or chunked")
    for key in ("train_examples", "eval_examples"):
        available = info.splits.get(d[key.replace("examples", "split")])
        if d[key] is not None and (d[key] <= 0 or (available and d[key] > available)):
            raise UserError(f"data.{key}={d[key]}: must be between 1 and the split's {available} examples")
    if d.random_shift < 0:
        raise UserError(f"data.random_shift={d.random_shift}: must be >= 0")
    _validate_augment(config.augment, d)
    if not 0.0 <= t.ema_decay < 1.0:
        raise UserError(f"train.ema_decay={t.ema_decay}: expected a decay in [0, 1) (0 turns the EMA off)")

    for key in ("batch_size", "eval_batch_size", "steps", "log_every", "checkpoint_every", "keep_checkpoints"):
        if t[key] is not None and t[key] <= 0:
            raise UserError(f"train.{key}={t[key]}: must be positive")
    if t.steps is None and (t.epochs is None or t.epochs <= 0):
        raise UserError("set train.steps or a positive train.epochs")
    if t.eval_every < 0 or t.warmup_epochs < 0:
        raise UserError("train.eval_every and train.warmup_epochs must be >= 0 (eval_every=0: only at the end)")

    _validate_schedule(t, d.train_examples or info.splits.get(d.train_split), optimizer)
    validate_mesh(config)


def validate_mesh(config: ml_collections.ConfigDict) -> None:
    """The mesh fits the devices present, its rules name mesh axes, and the batches divide over its data axes."""
    from patchscale import partitioning

    t = config.train
    mesh_shape = partitioning.mesh_shape(config.mesh)
    partitioning.parse_rules(config.mesh.rules)
    batch_parallel = mesh_shape["data"] * mesh_shape["fsdp"]
    for key in ("batch_size", "eval_batch_size"):
        if t[key] % batch_parallel:
            raise UserError(
                f"train.{key}={t[key]} is not divisible by the {batch_parallel} data-parallel devices"
                f" of the mesh {mesh_shape}")


def _validate_augment(a, d) -> None:
    """`augment.*` and the resize settings of `data.*`."""
    from patchscale.data import augment

    if d.interpolation not in augment.INTERPOLATIONS:
        raise UserError(f"data.interpolation={d.interpolation!r}: expected one of {', '.join(augment.INTERPOLATIONS)}")
    if d.eval_crop_ratio is not None and not 0.0 < d.eval_crop_ratio <= 1.0:
        raise UserError(f"data.eval_crop_ratio={d.eval_crop_ratio}: expected a ratio in (0, 1] (or unset: squash)")
    if a.crop not in ("resize", "random_resized"):
        raise UserError(f"augment.crop={a.crop!r}: expected resize or random_resized")
    low, high = a.crop_scale
    if not 0.0 < low <= high <= 1.0:
        raise UserError(f"augment.crop_scale={tuple(a.crop_scale)}: expected 0 < low <= high <= 1")
    low, high = a.crop_ratio
    if not 0.0 < low <= high:
        raise UserError(f"augment.crop_ratio={tuple(a.crop_ratio)}: expected 0 < low <= high")
    if a.policy not in ("none", "three_augment"):
        try:
            augment.RandAugment.parse(a.policy)
        except ValueError as e:
            raise UserError(f"augment.policy: {e} (or none, three_augment)") from None
    for key in ("hflip", "random_erasing", "mixup_switch_prob"):
        if not 0.0 <= a[key] <= 1.0:
            raise UserError(f"augment.{key}={a[key]}: expected a probability in [0, 1]")
    for key in ("color_jitter", "mixup_alpha", "cutmix_alpha"):
        if a[key] < 0:
            raise UserError(f"augment.{key}={a[key]}: must be >= 0 (0 turns it off)")
    if a.color_jitter >= 1.0:
        raise UserError(f"augment.color_jitter={a.color_jitter}: expected a strength below 1")
    if not isinstance(a.repeats, int) or a.repeats < 1:
        raise UserError(f"augment.repeats={a.repeats}: expected a whole number >= 1 (1: no repeated augmentation)")


def _validate_schedule(t, num_train: int | None, optimizer) -> None:
    """Schedule names, and budgets whose cooldown branches start after the warmup."""
    if t.schedule not in optimizer.SCHEDULES:
        raise UserError(f"train.schedule={t.schedule!r}: expected one of {', '.join(optimizer.SCHEDULES)}")
    if not 0.0 < t.cooldown_fraction <= 1.0:
        raise UserError(f"train.cooldown_fraction={t.cooldown_fraction}: expected a fraction in (0, 1]")
    if t.grad_clip_norm is not None and t.grad_clip_norm < 0:
        raise UserError(f"train.grad_clip_norm={t.grad_clip_norm}: must be >= 0 (0 turns clipping off)")
    budgets = tuple(t.budgets)
    if not budgets:
        return
    if t.schedule != "wsd":
        raise UserError("train.budgets needs train.schedule=wsd (cooldown branches from a constant learning rate)")
    if any(not isinstance(b, (int, float)) or not 0.0 < b < 1.0 for b in budgets) or list(budgets) != sorted(set(budgets)):
        raise UserError(f"train.budgets={budgets}: expected increasing fractions of the run, each in (0, 1)")
    if num_train:
        warmup = optimizer.warmup_steps(t, num_train)
        for start, end in optimizer.cooldown_branches(t, optimizer.total_steps(t, num_train)).items():
            if start < warmup:
                raise UserError(f"train.budgets: the budget of {end} steps would start its cooldown at step {start},"
                                f" inside the {warmup}-step warmup; use larger budgets or less warmup")
