"""Logical-axis rules: specs, divisibility fallback, coverage of every model's parameters, chunked attention."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh, PartitionSpec as P

from patchscale import partitioning
from patchscale.config import apply_overrides
from patchscale.defaults import base_config
from patchscale.errors import UserError
from patchscale.models import presets
from patchscale.models.backbone import VisionBackbone
from patchscale.models.mixers.attention import chunked_attention


class FakeMesh:
    """Only `.shape` is read when building specs."""

    def __init__(self, **sizes):
        self.shape = {axis: sizes.get(axis, 1) for axis in partitioning.AXES}


RULES = partitioning.parse_rules(partitioning.DEFAULT_RULES)


def test_specs_follow_the_rules_and_skip_axes_of_size_one():
    mesh = FakeMesh(data=2, fsdp=2, tensor=2)
    assert partitioning.spec(("embed", "mlp"), (64, 256), RULES, mesh) == P("fsdp", "tensor")
    assert partitioning.spec(("act_batch", "act_length", "act_embed"), (8, 17, 64), RULES, mesh) == \
        P(("data", "fsdp"), None, None)
    assert partitioning.spec(("embed", "mlp"), (64, 256), RULES, FakeMesh(data=8)) == P(None, None)


def test_an_undividable_dimension_is_replicated_and_a_mesh_axis_is_used_once():
    mesh = FakeMesh(fsdp=4, tensor=2)
    assert partitioning.spec(("embed", "heads"), (30, 12), RULES, mesh) == P(None, "tensor")  # 30 % 4 != 0.
    rules = {"a": ("fsdp",), "b": ("fsdp",)}
    assert partitioning.spec(("a", "b"), (8, 8), rules, mesh) == P("fsdp", None)


def test_rule_strings_are_parsed_and_checked():
    assert partitioning.parse_rules({"x": "data, fsdp", "y": ""}) == {"x": ("data", "fsdp"), "y": ()}
    with pytest.raises(UserError, match="unknown mesh axis 'model'"):
        partitioning.parse_rules({"embed": "model"})


@pytest.mark.parametrize("overrides", [
    ["model.size=pico"],
    presets.adventurer_overrides("adv-pico") + ["model.mamba2.headdim=16"],
    ["model.size=pico", "model.mixer=linear_attention"],
])
def test_every_large_parameter_of_the_backbones_is_annotated(overrides):
    c = base_config()
    apply_overrides(c, overrides + ["model.patch_size=8"])
    model = nnx.eval_shape(lambda: VisionBackbone(c.model, image_size=32, channels=1, num_classes=10,
                                                  rngs=nnx.Rngs(0)))
    table = partitioning.param_logical_axes(model)
    params = nnx.state(model, nnx.Param)
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        names = partitioning.path_names(path)
        if leaf.ndim >= 1 and leaf.size >= 32 and "conv_kernel" not in names and "conv_bias" not in names:
            logical = partitioning._lookup(table, names)
            assert logical is not None and len(logical) == leaf.ndim, names


def test_shardings_cover_parameters_and_optimizer_moments_alike():
    """On an abstract 2 (fsdp) × 4 (tensor) mesh: each Adam moment is placed exactly like its parameter."""
    import optax
    from jax.sharding import AbstractMesh

    c = base_config()
    apply_overrides(c, ["model.size=pico", "model.patch_size=8"])
    model = nnx.eval_shape(lambda: VisionBackbone(c.model, image_size=32, channels=1, num_classes=10,
                                                  rngs=nnx.Rngs(0)))
    params = nnx.state(model, nnx.Param)
    mesh = AbstractMesh((1, 2, 1, 4), partitioning.AXES)
    table = partitioning.param_logical_axes(model)
    opt = jax.eval_shape(optax.adam(1e-3).init, params)
    shardings = partitioning.tree_shardings({"params": params, "opt": opt}, table, RULES, mesh)
    specs = lambda tree: [s.spec for s in jax.tree.leaves(tree, is_leaf=lambda x: hasattr(x, "spec"))]
    param_specs = specs(shardings["params"])
    adam = shardings["opt"][0]
    assert specs(adam.mu) == param_specs and specs(adam.nu) == param_specs
    qkv = shardings["params"]["blocks"][0]["mixer"]["qkv"]["kernel"].get_value().spec
    assert qkv == P("fsdp", "tensor")  # embed → fsdp, heads → tensor (DEFAULT_RULES).
    assert sum(s != P() for s in param_specs) >= 4 * len(model.blocks)  # Every block's matrices are split.


def test_chunked_attention_equals_full_attention_values_and_gradients():
    kq, kk, kv = jax.random.split(jax.random.key(0), 3)
    q, k, v = (jax.random.normal(key, (2, 37, 3, 8)) for key in (kq, kk, kv))

    def loss(fn, q, k, v):
        return (fn(q, k, v) ** 2).sum()

    full = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, implementation="xla")  # noqa: E731
    chunked = lambda q, k, v: chunked_attention(q, k, v, 8)  # noqa: E731  5 blocks, the last padded.
    np.testing.assert_allclose(chunked(q, k, v), full(q, k, v), rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.grad(loss, (1, 2, 3))(chunked, q, k, v), jax.grad(loss, (1, 2, 3))(full, q, k, v)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert jnp.array_equal(chunked_attention(q, k, v, 64), full(q, k, v))  # One block: the plain path.
