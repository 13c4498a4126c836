"""The scanned block layout (`model.scan_layers`): the same numbers as the unrolled one, a stacked
parameter layout the optimizer and the sharding rules understand, and a program whose size does
not grow with depth."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from patchscale import optimizer, partitioning
from patchscale.config import apply_overrides
from patchscale.defaults import base_config
from patchscale.models import presets, stacking
from patchscale.models.backbone import VisionBackbone

IMAGES = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 32, 32, 1)), jnp.uint8)
ADVENTURER = presets.adventurer_overrides("adv-pico") + ["model.mamba2.headdim=16", "model.mamba2.d_state=16",
                                                         "model.mamba2.chunk_size=8"]


def build(overrides, scan: bool, *, abstract=False):
    c = base_config()
    apply_overrides(c, ["model.size=pico", "model.patch_size=8", "model.dtype=float32", *overrides,
                        f"model.scan_layers={scan}"])
    make = lambda: VisionBackbone(c.model, image_size=32, channels=1, num_classes=10, rngs=nnx.Rngs(0))  # noqa: E731
    return nnx.eval_shape(make) if abstract else make()


def flat(tree, leaf=np.asarray) -> dict:
    leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "spec"))[0]
    return {tuple(n for n in partitioning.path_names(p) if n != "value"): leaf(x) for p, x in leaves}


def logits_loss_and_grads(model):
    """Eval logits, and a training loss (drop path on) with its gradients, from one compiled call."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    loss = lambda p: jnp.sum(nnx.merge(graphdef, p, rest)(IMAGES, jax.random.key(3)) ** 2)  # noqa: E731

    @jax.jit
    def run(p):
        return nnx.merge(graphdef, p, rest)(IMAGES), jax.value_and_grad(loss)(p)

    logits, (value, grads) = run(params)
    return np.asarray(logits), float(value), flat(grads)


@pytest.mark.parametrize("overrides, scanned_only", [
    # Drop path at every depth, and the projections-only remat policy.
    (["model.depth=3", "model.drop_path=0.2", "model.remat=names"], []),
    # The released flip rule (block 2 only at depth 3: no period) with the class token last, full
    # remat; the scanned model also streams its tokens in segments of 5, padded (the Mamba-2
    # layer's 18 with the heading average, its state and conv inputs carried; the channel mixer's 17).
    (ADVENTURER + ["model.mamba2.flip=released", "model.depth=3", "model.drop_path=0.1", "model.remat=full"],
     ["model.token_segment=5"]),
], ids=["deit", "adventurer-released-flip-segments"])
def test_scanned_and_unrolled_blocks_give_the_same_logits_loss_and_gradients(overrides, scanned_only):
    unrolled, scanned = build(overrides, False), build(overrides + scanned_only, True)
    # Same initialisation: the stacked parameters are the unrolled ones, layer by layer.
    assert stacking.unrolled(flat(nnx.state(scanned, nnx.Param))).keys() == flat(nnx.state(unrolled, nnx.Param)).keys()
    for path, value in stacking.unrolled(flat(nnx.state(scanned, nnx.Param))).items():
        np.testing.assert_array_equal(value, flat(nnx.state(unrolled, nnx.Param))[path], err_msg=str(path))
    (logits_u, loss_u, grads_u), (logits_s, loss_s, grads_s) = map(logits_loss_and_grads, (unrolled, scanned))
    np.testing.assert_allclose(logits_s, logits_u, rtol=1e-5, atol=1e-6)
    assert loss_u > 0 and abs(loss_s - loss_u) <= 1e-5 * loss_u
    grads_s = stacking.unrolled(grads_s)
    assert grads_s.keys() == grads_u.keys()
    for path, grad in grads_u.items():
        np.testing.assert_allclose(grads_s[path], grad, rtol=2e-4, atol=1e-6, err_msg=str(path))
    last = str(max(int(p[1]) for p in grads_u if p[0] == "blocks"))
    assert any(np.abs(g).max() > 0 for p, g in grads_u.items() if p[:2] == ("blocks", last))  # The last block learns.


def test_a_different_flip_per_layer_really_changes_the_scanned_output():
    """The per-layer flip enters the scan as data: flipping no block gives other logits than alternating."""
    def logits(rule):
        graphdef, state = nnx.split(build(ADVENTURER + [f"model.mamba2.flip={rule}"], True))
        return jax.jit(lambda s: nnx.merge(graphdef, s)(IMAGES))(state)

    outputs = {rule: logits(rule) for rule in ("none", "alternate")}
    assert float(jnp.abs(outputs["none"] - outputs["alternate"]).max()) > 1e-4


@pytest.mark.parametrize("overrides", [[], ADVENTURER], ids=["deit", "adventurer"])
def test_stacked_parameters_decay_and_shard_like_their_unrolled_layers(overrides):
    scanned, unrolled = build(overrides, True, abstract=True), build(overrides, False, abstract=True)
    masks = [flat(optimizer.decay_mask(nnx.state(m, nnx.Param))) for m in (scanned, unrolled)]
    for path, decays in masks[0].items():  # Same decision as block 0's parameter of the same name.
        same = ("blocks", "0") + path[1:] if path[0] == partitioning.LAYER_STACK else path
        assert bool(decays) == bool(masks[1][same]), path
    tables = [partitioning.param_logical_axes(m) for m in (scanned, unrolled)]
    stacked = {path: names for path, names in tables[0].items() if path[0] == partitioning.LAYER_STACK}
    assert len(stacked) >= 4
    for path, names in stacked.items():
        assert names == ("layers",) + tables[1][("blocks", "0") + path[1:]], path
    mesh = jax.sharding.AbstractMesh((1, 2, 1, 4), partitioning.AXES)
    rules = partitioning.parse_rules(partitioning.DEFAULT_RULES)
    def placement(sharding) -> tuple:  # Trailing unsplit dimensions dropped: P() == P(None).
        entries = list(sharding.spec)
        while entries and entries[-1] is None:
            entries.pop()
        return tuple(entries)

    specs = [flat(partitioning.tree_shardings(nnx.state(m, nnx.Param), table, rules, mesh), placement)
             for m, table in zip((scanned, unrolled), tables)]
    assert sum(bool(spec) for spec in specs[0].values()) >= 4
    for path, spec in specs[0].items():
        if path[0] == partitioning.LAYER_STACK:  # Every layer on every device; the rest split as unrolled.
            unrolled_spec = specs[1][("blocks", "0") + path[1:]]
            assert spec == ((None, *unrolled_spec) if unrolled_spec else ()), path


def test_the_scanned_program_does_not_grow_with_depth():
    """Compile time follows program size: the scanned forward has as many operations at depth 8 as at 2."""
    def operations(depth: int, scan: bool) -> int:
        model = build([f"model.depth={depth}"], scan, abstract=True)
        graphdef, state = nnx.split(model)
        jaxpr = jax.make_jaxpr(lambda s: nnx.merge(graphdef, s)(IMAGES))(state)
        return len(str(jaxpr).splitlines())

    assert operations(8, True) == operations(2, True)
    assert operations(8, False) > 3 * operations(2, False)  # What the scan saves.


def test_layouts_convert_both_ways():
    scanned = flat(nnx.state(build(ADVENTURER, True), nnx.Param))
    unrolled = stacking.unrolled(scanned)
    assert not any(path[0] == partitioning.LAYER_STACK for path in unrolled)
    back = stacking.stacked(unrolled, scanned)
    assert back.keys() == scanned.keys()
    for path, value in scanned.items():
        np.testing.assert_array_equal(back[path], value)


def test_init_from_moves_weights_between_the_layouts():
    """A run may start from a checkpoint of the other layout: the weights land layer by layer."""
    from patchscale import init_from

    c = base_config()
    apply_overrides(c, ["model.size=pico", "model.patch_size=8", *ADVENTURER, "model.scan_layers=true"])
    unrolled = nnx.to_pure_dict(nnx.state(build(ADVENTURER, False), nnx.Param))
    target = nnx.state(build(ADVENTURER, True, abstract=True), nnx.Param)
    source_config = {"model": {"patch_size": 8, "pool": "cls", "cls_position": "last"}, "data": {"image_size": 32}}
    adapted = init_from.adapt(jax.tree.map(np.asarray, unrolled), source_config, target, c, 32, 1)
    moved = stacking.unrolled(flat(adapted))
    assert moved.keys() == flat(unrolled).keys()
    for path, value in flat(unrolled).items():
        np.testing.assert_array_equal(moved[path], value, err_msg=str(path))
