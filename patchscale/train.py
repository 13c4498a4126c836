"""One training run, top to bottom: data, model, jitted step, loop, evaluation, summary.

The run directory makes the run resumable: rerunning the same command continues from the
newest checkpoint (train state + data-iterator state, and per-step randomness derived from
the step number), so an interrupted run ends with exactly the metrics of an uninterrupted one.
A run with a summary.json is finished and is not trained again.
"""

from __future__ import annotations

import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from etils import epath
from flax import nnx

from patchscale import checkpoint, optimizer, results, sharding
from patchscale.data import datasets, pipeline
from patchscale.errors import TrainingError, UserError
from patchscale.models.backbone import VisionBackbone
from patchscale.scaling import flops

EMBEDDING_PARAMS = ("patch_embed", "posemb", "cls_token")


def _fmt_time(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def param_counts(params) -> dict[str, int]:
    total = embedding = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        total += leaf.size
        if str(getattr(path[0], "key", path[0])) in EMBEDDING_PARAMS:
            embedding += leaf.size
    return {"params": total, "params_embedding": embedding, "params_non_embedding": total - embedding}


class Trainer:
    """Holds what the steps need; `run()` is the whole loop."""

    def __init__(self, config, workdir):
        self.config = config
        self.workdir = epath.Path(workdir)
        d, t = config.data, config.train
        self.info = datasets.describe(d.name, d.data_dir)
        self.image_size = d.image_size or self.info.image_size
        self.is_main = jax.process_index() == 0
        # Opening the sources is cheap (and prepares the embedded MNIST on first use); doing it
        # before the run directory exists keeps data errors from leaving a half-made run behind.
        self.num_train = pipeline.train_length(d)
        self.eval_split = pipeline.EvalSplit(d, d.eval_split, self.image_size, t.eval_batch_size)
        self.total_steps = t.steps or math.ceil(t.epochs * self.num_train / t.batch_size)
        self.warmup_steps = round(t.warmup_epochs * self.num_train / t.batch_size)
        self.mesh = sharding.make_mesh(config.mesh)

    # ----------------------------------------------------------------- model and steps
    def _build(self):
        c = self.config
        model = VisionBackbone(c.model, image_size=self.image_size, channels=self.info.channels,
                               num_classes=self.info.num_classes, rngs=nnx.Rngs(c.seed))
        self.graphdef, params, self.frozen = nnx.split(model, nnx.Param, ...)
        self.tx = optimizer.make(c.train, self.total_steps, self.warmup_steps)
        self.lr = optimizer.schedule(c.train, self.total_steps, self.warmup_steps)
        state = {"step": jnp.zeros((), jnp.int32), "params": params, "opt": self.tx.init(params)}
        replicated = sharding.replicated(self.mesh)
        self.state_sharding = jax.tree.map(lambda _: replicated, state)
        self.frozen = jax.device_put(self.frozen, jax.tree.map(lambda _: replicated, self.frozen))
        return jax.device_put(state, self.state_sharding)

    def _loss(self, params, frozen, images, labels, key):
        model = nnx.merge(self.graphdef, params, frozen)
        logits = model(images, key)
        targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), self.config.train.label_smoothing)
        return optax.softmax_cross_entropy(logits, targets).mean()

    def _train_step(self, state, frozen, batch):
        key = jax.random.fold_in(jax.random.key(self.config.seed + 1), state["step"])
        loss, grads = jax.value_and_grad(self._loss)(state["params"], frozen, batch["image"], batch["label"], key)
        updates, opt = self.tx.update(grads, state["opt"], state["params"])
        new_state = {"step": state["step"] + 1, "params": optax.apply_updates(state["params"], updates), "opt": opt}
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "lr": self.lr(state["step"])}
        return new_state, metrics

    def _eval_step(self, params, frozen, batch):
        logits = nnx.merge(self.graphdef, params, frozen)(batch["image"])
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])  # No smoothing.
        correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
        mask = batch["mask"]
        return {"loss_sum": (ce * mask).sum(), "correct": (correct * mask).sum(), "count": mask.sum()}

    def _compile(self, state):
        batch_sharding = sharding.batch_sharding(self.mesh)
        replicated = sharding.replicated(self.mesh)
        frozen_sharding = jax.tree.map(lambda _: replicated, self.frozen)
        gb, s, ch = self.config.train.batch_size, self.image_size, self.info.channels
        train_batch = {"image": jax.ShapeDtypeStruct((gb, s, s, ch), jnp.uint8, sharding=batch_sharding),
                       "label": jax.ShapeDtypeStruct((gb,), jnp.int32, sharding=batch_sharding)}
        eb = self.config.train.eval_batch_size
        eval_batch = {"image": jax.ShapeDtypeStruct((eb, s, s, ch), jnp.uint8, sharding=batch_sharding),
                      "label": jax.ShapeDtypeStruct((eb,), jnp.int32, sharding=batch_sharding),
                      "mask": jax.ShapeDtypeStruct((eb,), jnp.float32, sharding=batch_sharding)}
        start = time.perf_counter()
        train_step = jax.jit(self._train_step, in_shardings=(self.state_sharding, frozen_sharding, batch_sharding),
                             out_shardings=(self.state_sharding, replicated), donate_argnums=0)
        eval_step = jax.jit(self._eval_step, in_shardings=(self.state_sharding["params"], frozen_sharding,
                                                           batch_sharding), out_shardings=replicated)
        self.train_step = train_step.lower(state, self.frozen, train_batch).compile()
        self.eval_step = eval_step.lower(state["params"], self.frozen, eval_batch).compile()
        return time.perf_counter() - start

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, params) -> dict[str, float]:
        totals = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
        for batch in self.eval_split.batches():
            out = jax.device_get(self.eval_step(params, self.frozen, sharding.global_batch(batch, self.mesh)))
            for k in totals:
                totals[k] += float(out[k])
        if int(totals["count"]) != self.eval_split.num_examples:
            raise AssertionError(f"evaluated {totals['count']} examples, expected {self.eval_split.num_examples}")
        return {"test_loss": totals["loss_sum"] / totals["count"], "test_accuracy": totals["correct"] / totals["count"],
                "test_examples": int(totals["count"])}

    # ----------------------------------------------------------------- the loop
    def run(self) -> dict:
        c, t = self.config, self.config.train
        summary = results.read_json(self.workdir / results.SUMMARY)
        if summary is not None:
            print(f"patchscale: {self.workdir} has already finished (test loss {summary['test_loss']:.4f});"
                  " not training again", flush=True)
            return summary
        previous = results.read_json(self.workdir / results.CONFIG)
        if previous is not None and previous != json.loads(json.dumps(c.to_dict())):
            raise UserError(f"{self.workdir} holds a run with a different config; choose another --workdir")
        if self.is_main:
            self.workdir.mkdir(parents=True, exist_ok=True)
            results.write_json_atomic(self.workdir / results.CONFIG, c.to_dict())

        wall_start = time.time()
        state = self._build()
        compile_seconds = self._compile(state)
        gb = t.batch_size
        data = pipeline.train_iterator(c.data, self.image_size, gb, self.total_steps, c.seed)
        ckpt = checkpoint.manager(self.workdir / results.CHECKPOINTS, t.keep_checkpoints)
        abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                state, self.state_sharding)
        restored_step, restored = checkpoint.restore_latest(ckpt, abstract, data)
        if restored is not None:
            state = restored
            print(f"patchscale: resuming {self.workdir} from step {restored_step}", flush=True)
            if self.is_main:
                results.truncate_metrics(self.workdir, restored_step)
        start = int(state["step"])
        print(f"patchscale: {self.total_steps} steps of {gb} images ({self.num_train} training examples),"
              f" {flops.tokens_per_image(c.model, self.image_size)} tokens per image,"
              f" compiled in {compile_seconds:.1f}s", flush=True)

        pending: list[tuple[int, dict]] = []
        interval_start, interval_steps = time.perf_counter(), 0
        eval_metrics = None
        for step in range(start + 1, self.total_steps + 1):
            batch = sharding.global_batch(next(data), self.mesh)
            state, metrics = self.train_step(state, self.frozen, batch)
            pending.append((step, metrics))
            interval_steps += 1
            last = step == self.total_steps
            log_now = step % t.log_every == 0 or last
            eval_now = last or (t.eval_every and step % t.eval_every == 0)
            save_now = step % t.checkpoint_every == 0 or last
            if not (log_now or eval_now or save_now):
                continue
            losses = self._check_finite(pending)
            record = {"step": step}
            if log_now:
                elapsed = time.perf_counter() - interval_start
                host = jax.device_get(pending[-1][1])
                record.update(train_loss=float(np.mean(losses)), learning_rate=float(host["lr"]),
                              grad_norm=float(host["grad_norm"]), step_time_s=elapsed / interval_steps,
                              images_per_s=interval_steps * gb / elapsed)
            pending = []
            if eval_now:
                eval_metrics = self.evaluate(state["params"])
                record.update(eval_metrics)
            if self.is_main and len(record) > 1:
                results.append_metrics(self.workdir, record)
            if log_now:
                self._progress(step, record)
                interval_start, interval_steps = time.perf_counter(), 0
            if save_now:
                checkpoint.save(ckpt, step, state, data)

        if eval_metrics is None:  # Resumed after the last step's checkpoint: evaluate once more.
            eval_metrics = self.evaluate(state["params"])
        ckpt.wait_until_finished()
        ckpt.close()
        summary = self._summary(state, eval_metrics, wall_start, compile_seconds)
        if self.is_main:
            results.write_json_atomic(self.workdir / results.SUMMARY, summary)
        print(f"patchscale: done: test loss {summary['test_loss']:.4f}, test accuracy"
              f" {summary['test_accuracy']:.4f} on {summary['test_examples']} examples,"
              f" wall time {_fmt_time(summary['wall_time_s'])}", flush=True)
        return summary

    def _check_finite(self, pending) -> list[float]:
        losses = [float(v) for v in jax.device_get([m["loss"] for _, m in pending])]
        for (step, _), loss in zip(pending, losses):
            if not math.isfinite(loss):
                raise TrainingError(f"training loss is {loss} at step {step}; stopping"
                                    " (lower train.learning_rate or check the data)")
        return losses

    def _progress(self, step: int, record: dict) -> None:
        remaining = (self.total_steps - step) * record["step_time_s"]
        extra = f" | test loss {record['test_loss']:.4f} acc {record['test_accuracy']:.4f}" if "test_loss" in record else ""
        print(f"[train] step {step}/{self.total_steps} ({100 * step / self.total_steps:.0f}%)"
              f" | loss {record['train_loss']:.4f} | lr {record['learning_rate']:.2e}"
              f" | {record['images_per_s']:.0f} img/s{extra} | ETA {_fmt_time(remaining)}", flush=True)

    def _summary(self, state, eval_metrics, wall_start, compile_seconds) -> dict:
        m = self.config.model
        args = (m, self.image_size, self.info.channels, self.info.num_classes)
        device = jax.devices()[0]
        return {
            **eval_metrics,
            **param_counts(state["params"]),
            "steps": self.total_steps,
            "epochs": self.total_steps * self.config.train.batch_size / self.num_train,
            "train_examples": self.num_train,
            "image_size": self.image_size,
            "patch_size": m.patch_size,
            "tokens_per_image": flops.tokens_per_image(m, self.image_size),
            "forward_flops_per_image": flops.forward_flops_per_image(*args),
            "train_flops_per_image": flops.train_flops_per_image(*args),
            "wall_time_s": time.time() - wall_start,
            "compile_time_s": compile_seconds,
            "device_kind": device.device_kind,
            "device_count": jax.device_count(),
            "process_count": jax.process_count(),
            "jax_version": jax.__version__,
            "git_commit": results.git_commit(),
        }


def train(config, workdir) -> dict:
    return Trainer(config, workdir).run()
