"""S² multi-scale features (model.s2_scales): tile order, merge order, shapes, and the plain model at one scale."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from patchscale.models import multiscale
from patchscale.models.backbone import VisionBackbone
from patchscale.models import flops
from tests.test_models import model_config


def test_tiles_are_cut_in_raster_order_of_the_tile_grid():
    base, scale = 4, 3
    image = np.arange(2 * 12 * 12 * 1, dtype=np.float32).reshape(2, 12, 12, 1)
    tiles = np.asarray(multiscale.views(jnp.asarray(image), base, scale))  # Already at scale × base: no resize.
    assert tiles.shape == (2 * 9, 4, 4, 1)
    for b in range(2):
        for r in range(scale):
            for c in range(scale):
                np.testing.assert_array_equal(tiles[b * 9 + r * 3 + c], image[b, 4 * r:4 * r + 4, 4 * c:4 * c + 4])


def test_a_smaller_scale_sees_the_image_resized():
    # A linear ramp (each pixel's value is its centre's coordinate) keeps its values at the new
    # pixel centres under a symmetric filter, away from the border.
    ramp = np.broadcast_to(np.arange(16, dtype=np.float32) + 0.5, (16, 16))
    image = jnp.asarray(np.stack([ramp, ramp.T], -1)[None])
    small = np.asarray(multiscale.views(image, 4, 1))[0]  # 16 px → 4 px.
    centres = 4 * (np.arange(4) + 0.5)
    np.testing.assert_allclose(small[1:3, 1:3, 0], np.broadcast_to(centres[1:3], (2, 2)), atol=1e-4)
    np.testing.assert_allclose(small[1:3, 1:3, 1], np.broadcast_to(centres[1:3, None], (2, 2)), atol=1e-4)


def test_merge_stitches_the_tiles_back_and_pools_to_the_base_grid():
    g, scale, d = 3, 2, 2
    field = np.random.default_rng(1).normal(size=(1, scale * g, scale * g, d)).astype(np.float32)
    # The tokens each tile's backbone would emit if it were the identity on this token grid.
    tiles = field.reshape(1, scale, g, scale, g, d).transpose(0, 1, 3, 2, 4, 5).reshape(scale * scale, g * g, d)
    merged = np.asarray(multiscale.merge(jnp.asarray(tiles), scale)).reshape(g, g, d)
    expected = field[0].reshape(g, scale, g, scale, d).mean(axis=(1, 3))
    np.testing.assert_allclose(merged, expected, rtol=1e-6)
    np.testing.assert_array_equal(multiscale.merge(jnp.asarray(tiles[:1]), 1), tiles[:1])


def test_one_scale_is_the_plain_model_and_two_scales_widen_only_the_head():
    images = jnp.asarray(np.random.default_rng(2).integers(0, 256, (2, 16, 16, 1)), jnp.uint8)
    plain_config = model_config(patch_size=4, pool="gap")
    plain = VisionBackbone(plain_config, image_size=16, channels=1, num_classes=10, rngs=nnx.Rngs(0))
    one = VisionBackbone(model_config(patch_size=4, pool="gap", s2_scales=(1,)), image_size=16, channels=1,
                         num_classes=10, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(one(images), plain(images), rtol=1e-6, atol=1e-6)

    two_config = model_config(patch_size=4, pool="gap", s2_scales=(1, 2))
    two = VisionBackbone(two_config, image_size=16, channels=1, num_classes=10, rngs=nnx.Rngs(0))
    assert two.posemb.table[...].shape == (4, 32)  # The base tile (8 px) has a 2×2 grid.
    assert two.head.kernel[...].shape == (64, 10)
    shapes = lambda m: {k: v.shape for k, v in nnx.to_flat_state(nnx.state(m, nnx.Param))  # noqa: E731
                        if k[0] not in ("head", "posemb")}
    assert shapes(two) == shapes(plain)  # No new backbone parameters.
    assert two(images, jax.random.key(0)).shape == (2, 10)
    feats = multiscale.features(two.tokens, images.astype(jnp.float32) / 127.5 - 1, 8, (1, 2), None)
    assert feats.shape == (2, 4, 64)
    assert flops.tokens_per_image(two_config, 16) == (1 + 4) * 4
    assert flops.sequence_length(two_config, 16) == 4
