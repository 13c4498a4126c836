"""AdamW with linear warmup, cosine decay and global-norm clipping; no decay on 1-D and embedding params."""

from __future__ import annotations

import jax
import optax

from patchscale.partitioning import path_names

# Parameters under these names are never decayed, whatever their rank.
NO_DECAY = frozenset({"posemb", "cls_token"})


def schedule(train_config, total_steps: int, warmup_steps: int) -> optax.Schedule:
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=train_config.learning_rate, warmup_steps=warmup_steps,
        decay_steps=max(total_steps, warmup_steps + 1), end_value=train_config.end_learning_rate)


def decay_mask(params):
    """True for weight matrices; False for biases, norm scales, position embeddings and CLS token."""

    def decays(path, leaf) -> bool:
        return leaf.ndim >= 2 and not set(path_names(path)) & NO_DECAY

    return jax.tree_util.tree_map_with_path(decays, params)


def make(train_config, total_steps: int, warmup_steps: int) -> optax.GradientTransformation:
    lr = schedule(train_config, total_steps, warmup_steps)
    return optax.chain(
        optax.clip_by_global_norm(train_config.grad_clip_norm),
        optax.adamw(lr, b1=train_config.b1, b2=train_config.b2, weight_decay=train_config.weight_decay,
                    mask=decay_mask),
    )
