"""Device mesh construction and the shardings of batches and parameters.

The mesh always has the named axes `data`, `fsdp`, `sequence` and `tensor`; a single device
is simply a 1×1×1×1 mesh. Batches are split over `data` and `fsdp`; where parameters,
optimizer state and activations go is decided by the logical-axis rules of partitioning.py.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from patchscale.errors import UserError

AXES = ("data", "fsdp", "sequence", "tensor")
BATCH_AXES = ("data", "fsdp")


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
    shape = mesh_shape(mesh_config)
    devices = np.asarray(jax.devices()).reshape([shape[a] for a in AXES])
    return Mesh(devices, AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over the data-parallel axes, the rest replicated."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def global_batch(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assemble each host's slice of the batch into global arrays sharded over the batch axes."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}
