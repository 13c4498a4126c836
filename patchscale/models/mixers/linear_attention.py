"""Non-causal linear attention with the elu + 1 feature map: the worked example of adding a mixer.

A deliberately simple mixer (Katharopoulos et al. 2020), written the way README.md ("Adding a
mixer") tells users to.

    y_i = φ(q_i)ᵀ Σ_j φ(k_j) v_jᵀ / (φ(q_i)ᵀ Σ_j φ(k_j))

Time and memory are linear in the number of tokens: the sums over j are computed once.
Parameters and activations carry logical axis names (partitioning.py) like every mixer, so
FSDP, tensor (head) and sequence parallelism apply to it without further code.
"""

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from patchscale.models.mixers.registry import register
from patchscale.partitioning import constrain


@register("linear_attention")
class LinearAttention(nnx.Module):
    causal = None  # Every output sees every token.
    LOGICAL_AXES = {"qkv/kernel": ("embed", "heads"), "qkv/bias": ("heads",),
                    "out/kernel": ("heads", "embed"), "out/bias": ("embed",)}

    def __init__(self, shape, model_config, *, layer, dtype, rngs):
        del model_config, layer
        self.heads = shape.heads
        self.qkv = nnx.Linear(shape.width, 3 * shape.width, dtype=dtype, rngs=rngs)
        self.out = nnx.Linear(shape.width, shape.width, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        b, n, d = x.shape
        # Head-major columns (head, q/k/v, dim), as in attention: a tensor split of the kernel splits heads.
        qkv = constrain(checkpoint_name(self.qkv(x), "mixer_in").reshape(b, n, self.heads, 3, d // self.heads),
                        ("act_batch", "act_length", "act_heads", None, None))
        q, k, v = (qkv[:, :, :, i] for i in range(3))
        # Sums over all tokens run in float32: they are long reductions.
        q, k, v = (a.astype(jnp.float32) for a in (q, k, v))
        q, k = jax.nn.elu(q) + 1, jax.nn.elu(k) + 1
        kv = jnp.einsum("bnhd,bnhe->bhde", k, v)
        numerator = jnp.einsum("bnhd,bhde->bnhe", q, kv)
        denominator = jnp.einsum("bnhd,bhd->bnh", q, k.sum(axis=1))
        y = constrain((numerator / (denominator[..., None] + 1e-6)).astype(x.dtype),
                      ("act_batch", "act_length", "act_heads", None))
        return self.out(y.reshape(b, n, d))

    @staticmethod
    def flops_per_image(shape, tokens, model_config):
        """qkv and output projections (8·N·D²), Σ k vᵀ and q·(Σ k vᵀ) (4·N·D²/heads), normaliser (4·N·D)."""
        del model_config
        d = shape.width
        return 8.0 * tokens * d**2 + 4.0 * tokens * d * (d // shape.heads) + 4.0 * tokens * d
