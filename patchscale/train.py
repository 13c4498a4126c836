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
import numpy as np
from etils import epath

from patchscale import checkpoint, preemption, results, sharding
from patchscale.data import datasets, pipeline
from patchscale.errors import Preempted, TrainingError, UserError
from patchscale.program import Program, param_counts, total_steps
from patchscale.progress import format_duration
from patchscale.scaling import flops

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
        self.total_steps = total_steps(t, self.num_train)
        self.warmup_steps = round(t.warmup_epochs * self.num_train / t.batch_size)
        self.program = Program(config, self.image_size, self.info.channels, self.info.num_classes,
                               self.total_steps, self.warmup_steps, sharding.make_mesh(config.mesh))
        self.mesh = self.program.mesh

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, params) -> dict[str, float]:
        totals = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
        for batch in self.eval_split.batches():
            batch = sharding.global_batch(batch, self.mesh)
            out = jax.device_get(self.program.eval_step(params, self.program.frozen, batch))
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
        state = self.program.init_state()
        compile_seconds = self.program.compile(state)
        gb = t.batch_size
        data = pipeline.train_iterator(c.data, self.image_size, gb, self.total_steps, c.seed)
        ckpt = checkpoint.manager(self.workdir / results.CHECKPOINTS, t.keep_checkpoints)
        restored_step, restored = checkpoint.restore_latest(ckpt, self.program.abstract_state(state), data)
        if restored is not None:
            state = restored
            print(f"patchscale: resuming {self.workdir} from step {restored_step}", flush=True)
            if self.is_main:
                results.truncate_metrics(self.workdir, restored_step)
        start = int(state["step"])
        print(f"patchscale: {self.total_steps} steps of {gb} images ({self.num_train} training examples),"
              f" {flops.tokens_per_image(c.model, self.image_size)} tokens per image,"
              f" compiled in {compile_seconds:.1f}s", flush=True)

        with preemption.PreemptionWatch(ckpt) as watch:
            state, eval_metrics = self._loop(state, start, data, ckpt, watch)
        if eval_metrics is None:  # Resumed after the last step's checkpoint: evaluate once more.
            eval_metrics = self.evaluate(state["params"])
        ckpt.wait_until_finished()
        ckpt.close()
        summary = self._summary(state, eval_metrics, wall_start, compile_seconds)
        if self.is_main:
            results.write_json_atomic(self.workdir / results.SUMMARY, summary)
        print(f"patchscale: done: test loss {summary['test_loss']:.4f}, test accuracy"
              f" {summary['test_accuracy']:.4f} on {summary['test_examples']} examples,"
              f" wall time {format_duration(summary['wall_time_s'])}", flush=True)
        return summary

    def _loop(self, state, start: int, data, ckpt, watch):
        """Steps start+1 … total; returns (state, last evaluation or None). Raises Preempted on SIGTERM."""
        t, gb = self.config.train, self.config.train.batch_size
        pending: list[tuple[int, dict]] = []
        interval_start, interval_steps = time.perf_counter(), 0
        eval_metrics = None
        for step in range(start + 1, self.total_steps + 1):
            batch = sharding.global_batch(next(data), self.mesh)
            state, metrics = self.program.train_step(state, self.program.frozen, batch)
            pending.append((step, metrics))
            interval_steps += 1
            last = step == self.total_steps
            if not last and watch.requested(step):
                self._check_finite(pending)
                checkpoint.save(ckpt, step, state, data)
                ckpt.wait_until_finished()
                raise Preempted(f"SIGTERM at step {step}/{self.total_steps}: checkpoint saved in {self.workdir};"
                                " run the same command again to resume")
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
            paused = time.perf_counter()  # Evaluation and checkpointing do not count as step time.
            if eval_now:
                eval_metrics = self.evaluate(state["params"])
                record.update(eval_metrics)
            if len(record) > 1:
                if self.is_main:
                    results.append_metrics(self.workdir, record)
                self._progress(step, record)
            if save_now:
                checkpoint.save(ckpt, step, state, data)
            if log_now:
                interval_start, interval_steps = time.perf_counter(), 0
            else:
                interval_start += time.perf_counter() - paused
        return state, eval_metrics

    def _check_finite(self, pending) -> list[float]:
        losses = [float(v) for v in jax.device_get([m["loss"] for _, m in pending])]
        for (step, _), loss in zip(pending, losses):
            if not math.isfinite(loss):
                raise TrainingError(f"training loss is {loss} at step {step}; stopping"
                                    " (lower train.learning_rate or check the data)")
        return losses

    def _progress(self, step: int, record: dict) -> None:
        line = f"[train] step {step}/{self.total_steps} ({100 * step / self.total_steps:.0f}%)"
        if "train_loss" in record:
            remaining = (self.total_steps - step) * record["step_time_s"]
            line += (f" | loss {record['train_loss']:.4f} | lr {record['learning_rate']:.2e}"
                     f" | {record['images_per_s']:.0f} img/s | ETA {format_duration(remaining)}")
        if "test_loss" in record:
            line += f" | test loss {record['test_loss']:.4f} acc {record['test_accuracy']:.4f}"
        print(line, flush=True)

    def _xla_flops(self) -> dict[str, float]:
        """XLA's own counts from the compiled steps, next to the analytic ones (for checking them)."""
        train = flops.xla_flops(self.program.train_step)
        forward = flops.xla_flops(self.program.eval_step)
        out = {}
        if train is not None:
            out["xla_train_step_flops_per_image"] = train / self.config.train.batch_size
        if forward is not None:
            out["xla_forward_flops_per_image"] = forward / self.config.train.eval_batch_size
        return out

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
            "train_flops_total": flops.train_flops_per_image(*args) * self.total_steps * self.config.train.batch_size,
            **self._xla_flops(),
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
