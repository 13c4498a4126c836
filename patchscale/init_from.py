"""Start a run from another run's weights (`train.init_from`): multi-stage training.

The reference recipes train in stages (Adventurer: 128² → 224² → fine-tune), and a patch-size
sweep can warm-start p = 2 from p = 4. Parameters of the newest checkpoint of the source run are
copied into the new model; two kinds may change shape on the way:

* the learned position table, when the token grid changes: the grid rows are resized as a 2-D
  image (bicubic) and the class token's row is kept apart, wherever it sits (first for DeiT,
  last for Adventurer; the released Adventurer code assumed first and shifted its grid by one);
* the patch embedding, when the patch size changes: FlexiViT's pseudo-inverse resize, so that a
  resized patch gives the new kernel the same response the old kernel gave the original patch.

Everything else must keep its shape; the block layout (`model.scan_layers`) may differ. A
head of another kind or width (a dense head started from a classification run, as the study
fine-tunes segmentation; an S² head over more scales) keeps its own fresh initialisation and
the source's head is dropped (`keeps_own_head`). The optimizer state, step and schedule start afresh.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from patchscale import results
from patchscale.models import multiscale, stacking
from patchscale.models.patchify import token_grid
from patchscale.errors import UserError


def start_from(program, state, value: str, workdir):
    """`state` with the parameters (and EMA) of the run `value` names (`@name`: a sibling of `workdir`),
    adapted to `program`'s model and placed with its shardings; the optimizer state starts afresh."""
    spec = program.spec
    source_config, source_params = load_source(resolve(value, workdir))
    params = adapt(source_params, source_config, state["params"], spec.config, spec.image_size, spec.channels)
    params = jax.device_put(params, program.state_sharding["params"])
    if keeps_own_head(source_config["model"], spec.config.model):  # Already in place, sharded.
        params = {**params, "head": state["params"]["head"]}
    state = {**state, "params": params}
    if "ema" in state:
        state["ema"] = jax.tree.map(jnp.copy, params)
    return state


def resolve(value: str, workdir) -> epath.Path:
    """`@name` is the run `name` beside this run's directory (a stage of the same sweep); else a path."""
    if value.startswith("@"):
        return epath.Path(workdir).parent / value[1:]
    return epath.Path(value)


def load_source(run_dir) -> tuple[dict, dict]:
    """(config dict, parameter tree as numpy) of the newest checkpoint of `run_dir`."""
    run_dir = epath.Path(run_dir)
    config = results.read_json(run_dir / results.CONFIG)
    if config is None:
        raise UserError(f"train.init_from={run_dir}: no {results.CONFIG} there (not a run directory)")
    mngr = ocp.CheckpointManager((run_dir / results.CHECKPOINTS).absolute(), item_names=("state", "data"))
    try:
        step = mngr.latest_step()
        if step is None:
            raise UserError(f"train.init_from={run_dir}: the run has no checkpoint to start from")
        state = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore())).state
    finally:
        mngr.close()
    return config, jax.tree.map(np.asarray, state["params"])


def interpolate_posemb(table: np.ndarray, grid_from: int, grid_to: int, before: int, after: int) -> np.ndarray:
    """Resize the grid rows of a (before + grid² + after, D) table to grid_to², keeping the extras."""
    if grid_from == grid_to:
        return table
    width = table.shape[-1]
    grid = table[before:before + grid_from * grid_from].reshape(grid_from, grid_from, width)
    resized = jax.image.resize(jnp.asarray(grid, jnp.float32), (grid_to, grid_to, width), "bicubic")
    resized = np.asarray(resized, table.dtype).reshape(grid_to * grid_to, width)
    return np.concatenate([table[:before], resized, table[before + grid_from * grid_from:]], axis=0)


def _resize_matrix(size_from: int, size_to: int) -> np.ndarray:
    """(size_to², size_from²) matrix of the bilinear resize of a size_from² plane to size_to²."""
    basis = np.eye(size_from * size_from, dtype=np.float32).reshape(-1, size_from, size_from)
    resized = jax.vmap(lambda x: jax.image.resize(x, (size_to, size_to), "bilinear"))(jnp.asarray(basis))
    return np.asarray(resized).reshape(size_from * size_from, size_to * size_to).T


def resample_patch_kernel(kernel: np.ndarray, patch_from: int, patch_to: int, channels: int) -> np.ndarray:
    """FlexiViT's pseudo-inverse resize of a (p²·C, D) patch kernel (rows in (y, x, c) order).

    With B the resize operator (patch x → resized patch Bx), the new kernel solves
    ⟨Bx, w'⟩ = ⟨x, w⟩ for all x in the least-squares sense: w' = pinv(Bᵀ) w. Upsampling keeps
    every response exactly; downsampling keeps the part the smaller patch can still see.
    """
    if patch_from == patch_to:
        return kernel
    width = kernel.shape[-1]
    resize = _resize_matrix(patch_from, patch_to)  # (q², p²)
    inverse = np.linalg.pinv(resize.T)  # (q², p²)
    w = kernel.reshape(patch_from * patch_from, channels, width)
    out = np.einsum("qp,pcd->qcd", inverse, w)
    return out.reshape(patch_to * patch_to * channels, width).astype(kernel.dtype)


def _extras(model_config: dict) -> tuple[int, int]:
    """Rows of the position table before and after the patch grid (the class token)."""
    extra = int(model_config["pool"] == "cls")
    first = model_config["cls_position"] == "first"
    return (extra, 0) if first else (0, extra)


def keeps_own_head(source_model: dict, target_model) -> bool:
    """Whether the target's head is not the source's: another head type (a dense head from a
    classifier) or another S² scale count (a wider head). It then keeps its own initialisation."""
    return (target_model.head != source_model.get("head", "classify")
            or len(target_model.s2_scales) != len(source_model.get("s2_scales", ()) or ()))


def adapt(source_params: dict, source_config: dict, target_abstract: dict, target_config, image_size: int,
          channels: int) -> dict:
    """The source parameters reshaped into the target's tree (module doc); raises on any other mismatch."""
    src_model = source_config["model"]
    src_size = source_config["data"]["image_size"] or image_size
    src_patch, dst_patch = src_model["patch_size"], target_config.model.patch_size
    # Matched layer by layer, so either run may use either block layout (models/stacking.py).
    flat_src = stacking.unrolled(dict(_flatten(source_params)))
    target = {path: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype) for path, leaf in _flatten(target_abstract)}
    out = {}
    fresh_head = keeps_own_head(src_model, target_config.model)
    for path, abstract in stacking.unrolled(target).items():
        name = "/".join(path)
        if fresh_head and path[0] == "head":  # A placeholder: the caller keeps the target's own head.
            out[path] = np.zeros(abstract.shape, abstract.dtype)
            continue
        if path not in flat_src:
            raise UserError(f"train.init_from: the source run has no parameter {name}")
        value = flat_src[path]
        if name.startswith("posemb/table") and value.shape != abstract.shape:
            before, after = _extras(src_model)
            if _extras(target_config.model.to_dict()) != (before, after):
                raise UserError("train.init_from: the source and target place the class token differently")
            src_base = multiscale.base_size(src_size, src_model.get("s2_scales", ()))
            dst_base = multiscale.base_size(image_size, target_config.model.s2_scales)
            value = interpolate_posemb(value, src_base // src_patch * src_model.get("extend_tokens", 1),
                                       token_grid(target_config.model, dst_base), before, after)
        elif name.startswith("patch_embed/proj/kernel") and value.shape != abstract.shape:
            value = resample_patch_kernel(value, src_patch, dst_patch, channels)
        if value.shape != abstract.shape:
            raise UserError(f"train.init_from: parameter {name} has shape {value.shape} in the source run and"
                            f" {abstract.shape} here; only the position table and the patch embedding may change")
        out[path] = np.asarray(value, abstract.dtype)
    out = stacking.stacked(out, target)
    return _unflatten(target_abstract, out)


def _key(entry) -> str:
    return str(getattr(entry, "key", getattr(entry, "name", getattr(entry, "idx", entry))))


def _flatten(tree):
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(tuple(_key(k) for k in path if _key(k) != "value"), leaf) for path, leaf in leaves]


def _unflatten(like, values: dict):
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(like)
    ordered = [values[tuple(_key(k) for k in path if _key(k) != "value")] for path, _ in leaves_with_path]
    return jax.tree_util.tree_unflatten(treedef, ordered)

