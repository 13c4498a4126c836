"""The model, optimizer and jitted steps of a run, without data or files.

`Program(spec, mesh)` is shared by the training loop (train.py), the benchmarks, the preflight
and the sweep's dry run. It is complete when constructed: graph, optimizer, learning rate,
partitioning rules and shardings, and the abstract train state (`state_spec`). `init_state()`
creates the state in place on the mesh; `compile(state)` compiles the train and eval steps ahead
of time with explicit shardings (the train state is donated) and returns them, so callers can
read their memory and cost analyses. Starting from another run's weights is init_from.py's job.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from patchscale import optimizer, partitioning, segmentation
from patchscale.data import augment_batch
from patchscale.models import build_model
from patchscale.models.backbone import normalize
from patchscale.run_spec import RunSpec

EMBEDDING_PARAMS = ("patch_embed", "posemb", "cls_token")
AUGMENT_STREAM = 0x5EED  # Folded into the step key for batch augmentation.


def step_key(seed, step):
    """The model's randomness (drop path) at `step`: a function of seed and step only, so resume replays it."""
    return jax.random.fold_in(jax.random.key(seed + 1), step)


def augment_key(key):
    """The batch augmentation's key, folded off the step's model key."""
    return jax.random.fold_in(key, AUGMENT_STREAM)


def param_counts(params) -> dict[str, int]:
    total = embedding = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        total += leaf.size
        if str(getattr(path[0], "key", path[0])) in EMBEDDING_PARAMS:
            embedding += leaf.size
    return {"params": total, "params_embedding": embedding, "params_non_embedding": total - embedding}


class Steps(NamedTuple):
    """The compiled steps of a Program and how long compiling them took."""

    train: Any  # (state, frozen, batch) → (state, metrics); the state is donated.
    eval: Any  # (params, frozen, batch with "mask") → sums (see Program._eval_step).
    compile_seconds: float


class Program:
    """The compiled computation of one run (see the module docstring); every attribute is set here."""

    def __init__(self, spec: RunSpec, mesh: jax.sharding.Mesh):
        self.spec, self.mesh, self.config = spec, mesh, spec.config
        c = self.config
        model = nnx.eval_shape(self._build)
        self.graphdef, params, frozen = nnx.split(model, nnx.Param, ...)
        self.tx = optimizer.make(c.train)
        self.lr = optimizer.schedule(c.train, spec.total_steps, spec.warmup_steps)
        # `end`: the last step of the trajectory this state is on (a cooldown branch ends earlier).
        # `seed`: a value, not a constant of the compiled step, so every seed of a sweep point runs
        # the same executable (and hits the persistent compilation cache).
        scalar = jax.ShapeDtypeStruct((), jnp.int32)
        state = {"step": scalar, "end": scalar, "seed": scalar,
                 "params": params, "opt": jax.eval_shape(self.tx.init, params)}
        if c.train.ema_decay:  # The EMA of the parameters: sharded like them, saved with them.
            state["ema"] = params
        self.rules = partitioning.parse_rules(c.mesh.rules)
        self.logical_axes = partitioning.param_logical_axes(model)
        self.state_sharding = partitioning.tree_shardings(state, self.logical_axes, self.rules, mesh)
        self.frozen_sharding = jax.tree.map(lambda _: partitioning.replicated(mesh), frozen)
        # The abstract train state (ShapeDtypeStructs with their shardings): enough to compile the
        # steps and read their cost and memory analyses without allocating anything.
        self.state_spec = self._abstract(state, self.state_sharding)
        # The model's non-trained variables (fixed position tables): constants, made once here.
        self.frozen = jax.jit(lambda: nnx.split(self._build(), nnx.Param, ...)[2],
                              out_shardings=self.frozen_sharding)()

    def _build(self):
        s = self.spec
        return build_model(self.config.model, image_size=s.image_size, channels=s.channels,
                           num_classes=s.head_classes, rngs=nnx.Rngs(self.config.seed))

    def init_state(self):
        """The initial train state, created in place on the mesh.

        Parameters and optimizer state are sharded by the logical-axis rules (`mesh.rules`) and
        created directly in place by a jitted initialiser, so no host ever holds a whole copy.
        """
        c = self.config

        def create():
            params = nnx.split(self._build(), nnx.Param, ...)[1]
            state = {"step": jnp.zeros((), jnp.int32), "end": jnp.asarray(self.spec.total_steps, jnp.int32),
                     "seed": jnp.asarray(c.seed, jnp.int32), "params": params, "opt": self.tx.init(params)}
            if c.train.ema_decay:
                state["ema"] = jax.tree.map(jnp.copy, params)
            return state

        return jax.jit(create, out_shardings=self.state_sharding)()

    @staticmethod
    def _abstract(tree, shardings):
        return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)

    # ------------------------------------------------------------- the steps (pure functions)
    def _loss(self, params, frozen, images, targets, weights, key):
        """Mean cross-entropy; with `weights` (0 for ignored pixels) the mean over the weighted targets."""
        with partitioning.activation_rules(self.mesh, self.rules):
            logits = nnx.merge(self.graphdef, params, frozen)(images, key)
        ce = optax.softmax_cross_entropy(logits, targets)
        if weights is None:
            return ce.mean()
        return (ce * weights).sum() / jnp.maximum(weights.sum(), 1.0)

    @property
    def dense(self) -> bool:
        return self.spec.dense

    def _pixel_labels(self, batch):
        """(B, H, W) pixel classes: the dataset's masks when it has them, else derived from the digits."""
        if "pixels" in batch:
            return batch["pixels"]
        return segmentation.pixel_labels(batch["image"], batch["label"], self.config.data.pixel_threshold)

    def _inputs(self, batch, key):
        """Images, (smoothed, possibly mixed) soft targets, and target weights (None: all count).

        Erasing and Mixup/CutMix when configured. With a dense head the targets are per pixel,
        (B, H, W, classes), and pixels labelled IGNORE get weight 0; batch augmentations that mix
        labels are refused for it by config validation."""
        hard = self._pixel_labels(batch) if self.dense else batch["label"]
        targets = optax.smooth_labels(jax.nn.one_hot(hard, self.spec.head_classes), self.config.train.label_smoothing)
        weights = (hard != segmentation.IGNORE).astype(jnp.float32) if "pixels" in batch else None
        if not augment_batch.is_active(self.config.augment):
            return batch["image"], targets, weights
        return *augment_batch.apply(normalize(batch["image"]), targets, key, self.config.augment), weights

    def _train_step(self, state, frozen, batch):
        # Per-step randomness from the step number: a resumed run draws the same drop-path masks
        # and the same batch augmentation (its key is folded off the model's).
        key = step_key(state["seed"], state["step"])
        images, targets, weights = self._inputs(batch, augment_key(key))
        loss, grads = jax.value_and_grad(self._loss)(state["params"], frozen, images, targets, weights, key)
        updates, opt = self.tx.update(grads, state["opt"], state["params"])
        lr = self.lr(state["step"], state["end"])
        updates = jax.tree.map(lambda u: (u * lr).astype(u.dtype), updates)
        params = optax.apply_updates(state["params"], updates)
        new_state = {"step": state["step"] + 1, "end": state["end"], "seed": state["seed"], "params": params,
                     "opt": opt}
        if "ema" in state:
            decay = self.config.train.ema_decay
            new_state["ema"] = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state["ema"], params)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "lr": lr}
        return new_state, metrics

    def _eval_step(self, params, frozen, batch):
        """Sums over the batch's real examples (`mask`): loss, correct predictions, and how many were
        counted (examples, or pixels with a dense head, which also counts TP/FP/FN per class for mIoU)."""
        with partitioning.activation_rules(self.mesh, self.rules):
            logits = nnx.merge(self.graphdef, params, frozen)(batch["image"])
        mask = batch["mask"]
        truth = self._pixel_labels(batch) if self.dense else batch["label"]
        weight = jnp.broadcast_to(mask.reshape(mask.shape + (1,) * (truth.ndim - 1)), truth.shape)
        weight = weight * (truth != segmentation.IGNORE)  # Unlabelled pixels count nowhere.
        truth = jnp.maximum(truth, 0)  # A valid index for the ignored ones (their weight is 0).
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, truth)  # No smoothing.
        predicted = jnp.argmax(logits, -1)
        out = {"loss_sum": (ce * weight).sum(), "correct": ((predicted == truth) * weight).sum(),
               "count": weight.sum(), "examples": mask.sum()}
        if self.dense:
            out.update(segmentation.confusion_counts(predicted, truth, weight, logits.shape[-1]))
        return out

    # ------------------------------------------------------------- compilation
    def batch_spec(self, batch_size: int, with_mask: bool = False):
        s, ch = self.spec.image_size, self.spec.channels
        data = partitioning.batch_sharding(self.mesh)
        spec = {"image": jax.ShapeDtypeStruct((batch_size, s, s, ch), jnp.uint8, sharding=data),
                "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32, sharding=data)}
        if self.config.data.mask_feature:
            spec["pixels"] = jax.ShapeDtypeStruct((batch_size, s, s), jnp.int32, sharding=data)
        if with_mask:
            spec["mask"] = jax.ShapeDtypeStruct((batch_size,), jnp.float32, sharding=data)
        return spec

    def compile_train_step(self, state=None):
        """The train step compiled for `state` (default: the abstract `state_spec`)."""
        data, replicated = partitioning.batch_sharding(self.mesh), partitioning.replicated(self.mesh)
        step = jax.jit(self._train_step, in_shardings=(self.state_sharding, self.frozen_sharding, data),
                       out_shardings=(self.state_sharding, replicated), donate_argnums=0)
        state = self.state_spec if state is None else state
        return step.lower(state, self.frozen, self.batch_spec(self.config.train.batch_size)).compile()

    def compile_eval_step(self, state=None):
        """The eval step compiled for `state`'s parameters (default: the abstract `state_spec`)."""
        data, replicated = partitioning.batch_sharding(self.mesh), partitioning.replicated(self.mesh)
        step = jax.jit(self._eval_step, in_shardings=(self.state_sharding["params"], self.frozen_sharding, data),
                       out_shardings=replicated)
        spec = self.batch_spec(self.config.train.eval_batch_size, with_mask=True)
        state = self.state_spec if state is None else state
        return step.lower(state["params"], self.frozen, spec).compile()

    def compile(self, state=None) -> Steps:
        """Both steps, compiled, and the seconds it took."""
        start = time.perf_counter()
        train, evaluate = self.compile_train_step(state), self.compile_eval_step(state)
        return Steps(train, evaluate, time.perf_counter() - start)
