"""The device mesh, and where every array lives on it: batches, parameters, optimizer state, activations.

The mesh always has the named axes `data`, `fsdp`, `sequence` and `tensor`; a single device
is simply a 1×1×1×1 mesh. Batches are split over `data` and `fsdp`.

Modules say what each dimension of a parameter or activation *means* (`embed`, `mlp`, `heads`,
…) and never name a mesh axis. A module declares its parameters' names in a class attribute
`LOGICAL_AXES = {"qkv/kernel": ("embed", "heads"), …}` (paths relative to the module) and
constrains activations with `constrain(x, ("act_batch", "act_length", "act_embed"))`.
The config's `mesh.rules` maps each name to mesh axes (MaxText's logical-axis rules, in
small): by default FSDP shards `embed`, tensor parallelism shards `mlp` and `heads`, the
batch is split over `data` and `fsdp`, and the token axis over `sequence`.

A dimension that its mesh axes do not divide is replicated rather than padded, and a
parameter nobody annotated is replicated: sharding changes where numbers live, never
what they are.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Any, Iterable

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from patchscale.errors import UserError
from patchscale.mesh_axes import AXES, DEFAULT_RULES  # noqa: F401 - DEFAULT_RULES: part of this module's API.
BATCH_AXES = ("data", "fsdp")
# A module attribute of this name holds parameters stacked along a leading layer axis (the
# scanned layout of models/backbone.py); their logical names gain a leading "layers".
LAYER_STACK = "layer_stack"


# ----------------------------------------------------------------------------- the mesh
def mesh_shape(mesh_config) -> dict[str, int]:
    """Resolve the configured axis sizes (one may be -1, meaning "all remaining devices")."""
    sizes = {axis: int(mesh_config.get(axis, 1)) for axis in AXES}
    count = jax.device_count()
    free = [axis for axis, size in sizes.items() if size == -1]
    if len(free) > 1 or any(size == 0 or size < -1 for size in sizes.values()):
        raise UserError(f"mesh {sizes}: sizes must be positive, with at most one -1")
    known = math.prod(size for size in sizes.values() if size != -1)
    if free:
        if count % known:
            raise UserError(f"mesh {sizes} does not fit the {count} available devices")
        sizes[free[0]] = count // known
    if math.prod(sizes.values()) != count:
        raise UserError(f"mesh {sizes} has {math.prod(sizes.values())} devices but {count} are available")
    return sizes


def make_mesh(mesh_config) -> Mesh:
    """`jax.make_mesh`: devices ordered by the physical topology (rings on TPU), axes in auto mode."""
    shape = mesh_shape(mesh_config)
    return jax.make_mesh(tuple(shape[a] for a in AXES), AXES, axis_types=(AxisType.Auto,) * len(AXES))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over the data-parallel axes, the rest replicated."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def global_batch(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assemble each host's slice of the batch into global arrays sharded over the batch axes."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}


# ----------------------------------------------------------------------------- logical axes

Logical = tuple[str | None, ...]

_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("patchscale_partitioning", default=None)


def parse_rules(rules_config) -> dict[str, tuple[str, ...]]:
    """`{"embed": "fsdp", "act_batch": "data,fsdp", "x": ""}` → name → tuple of mesh axes."""
    rules = {}
    for name, text in dict(rules_config).items():
        axes = tuple(a.strip() for a in str(text or "").split(",") if a.strip())
        unknown = [a for a in axes if a not in AXES]
        if unknown:
            raise UserError(f"mesh.rules.{name}={text!r}: unknown mesh axis {unknown[0]!r}; mesh axes are"
                            f" {', '.join(AXES)}")
        rules[name] = axes
    return rules


def spec(logical: Logical, shape: tuple[int, ...], rules: dict[str, tuple[str, ...]], mesh: Mesh) -> P:
    """PartitionSpec for an array whose dimensions have the given logical names.

    Each mesh axis is used at most once (first dimension wins) and a dimension that the product
    of its mesh axes does not divide is replicated.
    """
    used: set[str] = set()
    entries: list[Any] = []
    for name, size in zip(logical, shape):
        axes = tuple(a for a in rules.get(name, ()) if a not in used and mesh.shape[a] > 1) if name else ()
        if not axes or size % math.prod(mesh.shape[a] for a in axes):
            entries.append(None)
            continue
        used.update(axes)
        entries.append(axes[0] if len(axes) == 1 else axes)
    return P(*entries)


# ------------------------------------------------------------------ parameters and optimizer state
def path_names(path) -> tuple[str, ...]:
    """A pytree key path as plain strings: ("blocks", "0", "mixer", "qkv", "kernel", "value")."""
    def name(key) -> str:
        for attribute in ("key", "name", "idx"):
            if hasattr(key, attribute):
                return str(getattr(key, attribute))
        return str(key)
    return tuple(name(k) for k in path)


def param_logical_axes(model: nnx.Module) -> dict[tuple[str, ...], Logical]:
    """Full parameter path → logical names, from the LOGICAL_AXES of every module in `model`."""
    table: dict[tuple[str, ...], Logical] = {}
    for path, node in nnx.iter_graph(model):
        declared = getattr(type(node), "LOGICAL_AXES", None) if isinstance(node, nnx.Module) else None
        path = tuple(map(str, path))
        stacked = ("layers",) * stacked_axes(path)
        for relative, names in (declared or {}).items():
            table[path + tuple(relative.split("/"))] = stacked + tuple(names)
    return table


def stacked_axes(path: tuple[str, ...]) -> int:
    """How many leading layer axes a parameter at this path has (1 under LAYER_STACK, else 0)."""
    return int(LAYER_STACK in path)


def _lookup(table: dict[tuple[str, ...], Logical], path: tuple[str, ...]) -> Logical | None:
    """The entry whose parameter path ends `path` (optimizer moments nest the parameter tree)."""
    if path and path[-1] == "value":  # nnx.Variable's own leaf.
        path = path[:-1]
    for start in range(len(path)):
        if path[start:] in table:
            return table[path[start:]]
    return None


def tree_shardings(tree, table: dict[tuple[str, ...], Logical], rules, mesh: Mesh):
    """NamedSharding for every leaf of a parameter or optimizer-state tree (unannotated: replicated)."""
    def one(path, leaf):
        names = _lookup(table, path_names(path))
        shape = tuple(getattr(leaf, "shape", ()))
        if names is None or len(names) != len(shape):
            return NamedSharding(mesh, P())
        return NamedSharding(mesh, spec(names, shape, rules, mesh))

    return jax.tree_util.tree_map_with_path(one, tree)


# ------------------------------------------------------------------ activations
@contextlib.contextmanager
def activation_rules(mesh: Mesh, rules: dict[str, tuple[str, ...]]):
    """While tracing inside this context, `constrain` places activations on `mesh` by `rules`."""
    token = _ACTIVE.set((mesh, rules))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def split_count(logical: str) -> int:
    """Into how many pieces the active rules split a dimension named `logical` (1 outside a context)."""
    active = _ACTIVE.get()
    if active is None:
        return 1
    mesh, rules = active
    return math.prod(mesh.shape[a] for a in rules.get(logical, ()))


def constrain(x: jax.Array, logical: Iterable[str | None]) -> jax.Array:
    """Sharding constraint by logical names; a no-op outside `activation_rules` (tests, notebooks)."""
    active = _ACTIVE.get()
    if active is None:
        return x
    mesh, rules = active
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec(tuple(logical), x.shape, rules, mesh)))


def check(config) -> None:
    """The mesh fits the devices present, its rules name mesh axes, and the batches divide over its data axes."""
    t = config.train
    shape = mesh_shape(config.mesh)
    parse_rules(config.mesh.rules)
    batch_parallel = shape["data"] * shape["fsdp"]
    for key in ("batch_size", "eval_batch_size"):
        if t[key] % batch_parallel:
            raise UserError(
                f"train.{key}={t[key]} is not divisible by the {batch_parallel} data-parallel devices"
                f" of the mesh {shape}")
