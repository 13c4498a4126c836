"""Run a few train steps of a tiny model under several meshes of 8 simulated CPU devices.

    python tests/mesh_worker.py MIXER 'data=8' 'fsdp=8' 'data=2,fsdp=2,tensor=2' … [size=N batch=N model.k=v …]

Prints one JSON object: per mesh, the losses, the final parameters' checksum and the
PartitionSpecs of selected parameters and optimizer moments. The single-device reference
(a 1-device mesh in the same process) is always run first under the name "single".
Used by tests/test_scaleout.py in a subprocess, because XLA_FLAGS must be set before jax loads.
"""

import json
import math
import os
import sys

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

from patchscale import partitioning  # noqa: E402
from patchscale.config import apply_overrides  # noqa: E402
from patchscale.defaults import base_config  # noqa: E402
from patchscale.models import presets  # noqa: E402
from patchscale.partitioning import path_names  # noqa: E402
from patchscale.program import Program  # noqa: E402
from patchscale.run_spec import RunSpec  # noqa: E402

STEPS = 3
WATCHED = {  # Parameters whose sharding the test asserts on, by mixer.
    "attention": ["blocks/0/mixer/qkv/kernel", "blocks/0/mixer/out/kernel", "blocks/0/channel/fc1/kernel",
                  "blocks/0/channel/fc2/kernel", "patch_embed/proj/kernel", "head/kernel"],
    "mamba2": ["blocks/0/mixer/in_proj/kernel", "blocks/0/mixer/out_proj/kernel", "blocks/0/mixer/D",
               "blocks/0/channel/gate_value/kernel", "blocks/0/norm1/scale"],
}


def config(mixer: str, batch: int, extra: list[str]):
    c = base_config()
    common = ["model.patch_size=8", "model.dtype=float32", f"train.batch_size={batch}", "train.learning_rate=3e-3",
              "model.drop_path=0.1"]
    if mixer == "attention":
        apply_overrides(c, common + ["model.size=pico"] + extra)
    else:
        apply_overrides(c, common + presets.adventurer_overrides("adv-pico") + [
                                     "model.mamba2.headdim=16", "model.mamba2.d_state=16",
                                     "model.mamba2.chunk_size=8"] + extra)
    return c


def _leaf(tree, path: str):
    for part in path.split("/"):
        tree = tree[int(part) if part.isdigit() else part]
    return tree


def _moment_spec(opt_state, name: str) -> str:
    """PartitionSpec of AdamW's first moment of parameter `name` (wherever optax nests it)."""
    want = tuple(name.split("/"))
    for path, leaf in jax.tree_util.tree_flatten_with_path(opt_state)[0]:
        keys = path_names(path)
        keys = keys[:-1] if keys[-1] == "value" else keys
        if "mu" in keys and keys[-len(want):] == want:
            return str(leaf.sharding.spec)
    raise KeyError(f"no first moment for {name}")


def run(mixer: str, mesh_text: str, extra: list[str], size: int, batch: int) -> dict:
    sizes = {axis: 1 for axis in partitioning.AXES}
    if mesh_text != "single":
        sizes.update({k: int(v) for k, v in (item.split("=") for item in mesh_text.split(","))})
    devices = np.asarray(jax.devices()[:math.prod(sizes.values())]).reshape([sizes[a] for a in partitioning.AXES])
    mesh = Mesh(devices, partitioning.AXES)
    c = config(mixer, batch, extra)
    c.data.image_size = size
    program = Program(RunSpec.from_config(c).with_steps(10, 1), mesh)
    state = program.init_state()
    train_step = program.compile_train_step(state)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(STEPS):
        images = {"image": rng.integers(0, 256, (batch, size, size, 1), dtype=np.uint8),
                  "label": rng.integers(0, 10, batch).astype(np.int32)}
        state, metrics = train_step(state, program.frozen, partitioning.global_batch(images, mesh))
        losses.append(float(metrics["loss"]))
    params = jax.device_get(state["params"])
    # In the scanned layout block 0's parameters are a slice of layer_stack's, whose sharding is watched.
    watched = [name.replace("blocks/0/", partitioning.LAYER_STACK + "/") if program.config.model.scan_layers
               else name for name in WATCHED[mixer]]
    specs = {name: str(_leaf(state["params"], name).get_value().sharding.spec) for name in watched}
    specs.update({"mu:" + name: _moment_spec(state["opt"], name) for name in watched})
    return {"losses": losses, "specs": specs,
            "checksum": float(sum(np.abs(np.asarray(x, np.float64)).sum() for x in jax.tree.leaves(params)))}


def main(argv: list[str]) -> None:
    mixer, rest = argv[0], argv[1:]
    settings = {"size": 32, "batch": 16}
    settings.update({a.split("=")[0]: int(a.split("=")[1]) for a in rest if a.split("=")[0] in settings})
    extra = [a for a in rest if a.startswith("model.")]
    meshes = [a for a in rest if a not in extra and a.split("=")[0] not in settings]
    print(json.dumps({mesh: run(mixer, mesh, extra, **settings) for mesh in ["single", *meshes]}))


if __name__ == "__main__":
    main(sys.argv[1:])
