"""The model, optimizer and jitted steps of a run, without data or files.

`Program` is shared by the training loop (train.py) and the benchmarks: it builds the
train state, compiles the train and eval steps ahead of time with explicit shardings on the
mesh (the train state is donated), and exposes the compiled executables so callers can read
their memory and cost analyses.
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from patchscale import optimizer, partitioning, segmentation
from patchscale.data import augment_batch
from patchscale.models import build_model, dense_heads
from patchscale.models.backbone import normalize

EMBEDDING_PARAMS = ("patch_embed", "posemb", "cls_token")
AUGMENT_STREAM = 0x5EED  # Folded into the step key for batch augmentation.


def step_key(seed, step):
    """The model's randomness (drop path) at `step`: a function of seed and step only, so resume replays it."""
    return jax.random.fold_in(jax.random.key(seed + 1), step)


def augment_key(key):
    """The batch augmentation's key, folded off the step's model key."""
    return jax.random.fold_in(key, AUGMENT_STREAM)


def total_steps(train_config, num_examples: int) -> int:
    """`train.steps` when set, else enough steps for `train.epochs` passes over the examples."""
    return train_config.steps or math.ceil(train_config.epochs * num_examples / train_config.batch_size)


def warmup_steps(train_config, num_examples: int) -> int:
    """`train.warmup_epochs` in steps."""
    return round(train_config.warmup_epochs * num_examples / train_config.batch_size)


def param_counts(params) -> dict[str, int]:
    total = embedding = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        total += leaf.size
        if str(getattr(path[0], "key", path[0])) in EMBEDDING_PARAMS:
            embedding += leaf.size
    return {"params": total, "params_embedding": embedding, "params_non_embedding": total - embedding}


@dataclasses.dataclass
class Program:
    config: object
    image_size: int
    channels: int
    num_classes: int  # The head's outputs: image classes, or pixel classes (segmentation.head_classes).
    total_steps: int
    warmup_steps: int
    mesh: jax.sharding.Mesh
    workdir: str | None = None  # The run's directory: `train.init_from=@name` names a sibling run.

    def init_state(self, abstract: bool = False):
        """Build the model and optimizer; returns the train state placed on the mesh.

        Parameters and optimizer state are sharded by the logical-axis rules (`mesh.rules`) and
        created directly in place by a jitted initialiser, so no host ever holds a whole copy.
        With `abstract=True` nothing is allocated: the state is ShapeDtypeStructs with their
        shardings, enough to compile the steps and read their cost and memory analyses.
        """
        c = self.config

        def build():
            return build_model(c.model, image_size=self.image_size, channels=self.channels,
                               num_classes=self.num_classes, rngs=nnx.Rngs(c.seed))

        model = nnx.eval_shape(build)
        self.graphdef, params, frozen = nnx.split(model, nnx.Param, ...)
        self.tx = optimizer.make(c.train)
        self.lr = optimizer.schedule(c.train, self.total_steps, self.warmup_steps)
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
        self.state_sharding = partitioning.tree_shardings(state, self.logical_axes, self.rules, self.mesh)
        self.frozen_sharding = jax.tree.map(lambda _: partitioning.replicated(self.mesh), frozen)
        if abstract:
            self.frozen = self._abstract(frozen, self.frozen_sharding)
            return self._abstract(state, self.state_sharding)

        def create():
            _, params, frozen = nnx.split(build(), nnx.Param, ...)
            state = {"step": jnp.zeros((), jnp.int32), "end": jnp.asarray(self.total_steps, jnp.int32),
                     "seed": jnp.asarray(c.seed, jnp.int32), "params": params, "opt": self.tx.init(params)}
            if c.train.ema_decay:
                state["ema"] = jax.tree.map(jnp.copy, params)
            return state, frozen

        state, self.frozen = jax.jit(create, out_shardings=(self.state_sharding, self.frozen_sharding))()
        if c.train.init_from:
            state = self._start_from(state, c.train.init_from)
        return state

    def _start_from(self, state, run_dir: str):
        """Parameters (and EMA) from another run's newest checkpoint, adapted to this model (init_from.py)."""
        from patchscale import init_from

        source_config, source_params = init_from.load_source(init_from.resolve(run_dir, self.workdir or "."))
        params = init_from.adapt(source_params, source_config, state["params"], self.config, self.image_size,
                                 self.channels)
        params = jax.device_put(params, self.state_sharding["params"])
        if init_from.keeps_own_head(source_config["model"], self.config.model):  # Already in place, sharded.
            params = {**params, "head": state["params"]["head"]}
        state = {**state, "params": params}
        if "ema" in state:
            state["ema"] = jax.tree.map(jnp.copy, params)
        return state

    @staticmethod
    def _abstract(tree, shardings):
        return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)

    def abstract_state(self, state):
        return self._abstract(state, self.state_sharding)

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
        """A per-pixel head: targets and metrics per pixel (segmentation.py)."""
        return dense_heads.is_dense(self.config.model.head)

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
        targets = optax.smooth_labels(jax.nn.one_hot(hard, self.num_classes), self.config.train.label_smoothing)
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
        s, ch = self.image_size, self.channels
        data = partitioning.batch_sharding(self.mesh)
        spec = {"image": jax.ShapeDtypeStruct((batch_size, s, s, ch), jnp.uint8, sharding=data),
                "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32, sharding=data)}
        if self.config.data.mask_feature:
            spec["pixels"] = jax.ShapeDtypeStruct((batch_size, s, s), jnp.int32, sharding=data)
        if with_mask:
            spec["mask"] = jax.ShapeDtypeStruct((batch_size,), jnp.float32, sharding=data)
        return spec

    def compile_train_step(self, state):
        data, replicated = partitioning.batch_sharding(self.mesh), partitioning.replicated(self.mesh)
        step = jax.jit(self._train_step, in_shardings=(self.state_sharding, self.frozen_sharding, data),
                       out_shardings=(self.state_sharding, replicated), donate_argnums=0)
        self.train_step = step.lower(state, self.frozen, self.batch_spec(self.config.train.batch_size)).compile()
        return self.train_step

    def compile_eval_step(self, state):
        data, replicated = partitioning.batch_sharding(self.mesh), partitioning.replicated(self.mesh)
        step = jax.jit(self._eval_step, in_shardings=(self.state_sharding["params"], self.frozen_sharding, data),
                       out_shardings=replicated)
        spec = self.batch_spec(self.config.train.eval_batch_size, with_mask=True)
        self.eval_step = step.lower(state["params"], self.frozen, spec).compile()
        return self.eval_step

    def compile(self, state) -> float:
        """Compile both steps; returns the seconds it took."""
        start = time.perf_counter()
        self.compile_train_step(state)
        self.compile_eval_step(state)
        return time.perf_counter() - start
