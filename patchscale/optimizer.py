"""AdamW with a learning-rate schedule, optional global-norm clipping; no decay on 1-D and embedding params.

Schedules (`train.schedule`):

* cosine: linear warmup, cosine decay to `end_learning_rate` at the last step;
* wsd (warmup-stable-decay): linear warmup, constant peak, then a linear cooldown to
  `end_learning_rate` over the last `cooldown_fraction` of the trajectory. The trajectory's
  last step (`end`) is an argument, so one run can branch off short cooldowns from its
  stable phase and evaluate several training budgets, each with its own anneal.

The learning rate multiplies AdamW's update in the train step (`lr(step, end)`), rather than
living in the optimizer state, so a cooldown branch needs no second optimizer.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from patchscale.errors import UserError
from patchscale.partitioning import path_names, stacked_axes

# Parameters under these names are never decayed, whatever their rank.
NO_DECAY = frozenset({"posemb", "cls_token"})
SCHEDULES = ("cosine", "wsd")


def total_steps(train_config, num_examples: int) -> int:
    """`train.steps` when set, else enough steps for `train.epochs` passes over the examples."""
    return train_config.steps or math.ceil(train_config.epochs * num_examples / train_config.batch_size)


def warmup_steps(train_config, num_examples: int) -> int:
    """`train.warmup_epochs` in steps."""
    return round(train_config.warmup_epochs * num_examples / train_config.batch_size)


def cooldown_steps(train_config, end: int) -> int:
    """Length of the cooldown of a WSD trajectory that ends at step `end` (at least one step)."""
    return max(1, round(train_config.cooldown_fraction * end))


def cooldown_branches(train_config, total_steps: int) -> dict[int, int]:
    """WSD budgets (`train.budgets`) as step where a cooldown branch leaves the run → its last step."""
    out = {}
    for fraction in train_config.budgets:
        end = round(fraction * total_steps)
        out[end - cooldown_steps(train_config, end)] = end
    return out


def schedule(train_config, total_steps: int, warmup_steps: int):
    """lr(step, end): the learning rate applied at `step` (0-based) of a trajectory ending at `end`."""
    t = train_config
    peak, final = t.learning_rate, t.end_learning_rate
    warm = lambda step: peak * step / max(warmup_steps, 1)  # noqa: E731

    if t.schedule == "cosine":
        cosine = optax.warmup_cosine_decay_schedule(
            init_value=0.0, peak_value=peak, warmup_steps=warmup_steps,
            decay_steps=max(total_steps, warmup_steps + 1), end_value=final)
        return lambda step, end=None: cosine(step)

    def wsd(step, end=total_steps):
        step = jnp.asarray(step, jnp.float32)
        end = jnp.asarray(end, jnp.float32)
        length = jnp.maximum(1.0, jnp.round(t.cooldown_fraction * end))
        start = end - length
        decay = peak + (final - peak) * jnp.clip((step - start) / length, 0.0, 1.0)
        return jnp.where(step < warmup_steps, warm(step), jnp.where(step < start, peak, decay))

    return wsd


def decay_mask(params):
    """True for weight matrices; False for biases, norm scales, position embeddings and CLS token."""

    def decays(path, leaf) -> bool:
        names = path_names(path)  # A stacked (scanned) parameter's layer axis does not count.
        return leaf.ndim - stacked_axes(names) >= 2 and not set(names) & NO_DECAY

    return jax.tree_util.tree_map_with_path(decays, params)


def make(train_config) -> optax.GradientTransformation:
    """AdamW at unit learning rate: the step scales its update by the schedule's rate."""
    parts = []
    if train_config.grad_clip_norm:
        parts.append(optax.clip_by_global_norm(train_config.grad_clip_norm))
    parts.append(optax.adamw(1.0, b1=train_config.b1, b2=train_config.b2, weight_decay=train_config.weight_decay,
                             mask=decay_mask))
    return optax.chain(*parts)


def check(t, num_train: int | None) -> None:
    """`train.*` of the optimization: batch size, length, warmup, schedule, budgets, clipping and EMA.

    `num_train` (training examples, None when not known yet) lets the budgets be checked against
    the warmup in steps.
    """
    for key in ("batch_size", "steps"):
        if t[key] is not None and t[key] <= 0:
            raise UserError(f"train.{key}={t[key]}: must be positive")
    if t.steps is None and (t.epochs is None or t.epochs <= 0):
        raise UserError("set train.steps or a positive train.epochs")
    if t.warmup_epochs < 0:
        raise UserError(f"train.warmup_epochs={t.warmup_epochs}: must be >= 0")
    if not 0.0 <= t.ema_decay < 1.0:
        raise UserError(f"train.ema_decay={t.ema_decay}: expected a decay in [0, 1) (0 turns the EMA off)")
    if t.schedule not in SCHEDULES:
        raise UserError(f"train.schedule={t.schedule!r}: expected one of {', '.join(SCHEDULES)}")
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
        warmup = warmup_steps(t, num_train)
        for start, end in cooldown_branches(t, total_steps(t, num_train)).items():
            if start < warmup:
                raise UserError(f"train.budgets: the budget of {end} steps would start its cooldown at step {start},"
                                f" inside the {warmup}-step warmup; use larger budgets or less warmup")
