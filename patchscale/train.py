"""One training run, top to bottom: data, model, jitted step, loop, evaluation, summary.

The run directory makes the run resumable: rerunning the same command continues from the
newest checkpoint (train state + data-iterator state, and per-step randomness derived from
the step number), so an interrupted run ends with exactly the metrics of an uninterrupted one.
A run with a summary.json is finished and is not trained again. Process 0 holds the run's lock
(locking.py) from before the data is opened until the summary is written, so no run is trained
by two processes at once.
"""

from __future__ import annotations

import contextlib
import math
import time

import jax
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from patchscale import (checkpoint, checkpoint_index, events, init_from, locking, partitioning, preemption,
                        provenance, results, segmentation)
from patchscale import config as config_lib
from patchscale.data import pipeline
from patchscale.errors import Preempted, TrainingError, UserError
from patchscale.program import Program, param_counts
from patchscale.models import flops
from patchscale.progress import console, format_duration
from patchscale.run_spec import RunSpec


def check(t) -> None:
    """`train.*` of the loop itself: evaluation batch, logging, evaluation and checkpoint cadence."""
    for key in ("eval_batch_size", "log_every", "checkpoint_every", "keep_checkpoints"):
        if t[key] is not None and t[key] <= 0:
            raise UserError(f"train.{key}={t[key]}: must be positive")
    if t.eval_every < 0:
        raise UserError(f"train.eval_every={t.eval_every}: must be >= 0 (0: evaluate only at the end)")


class Trainer:
    """Holds what the steps need; `run()` is the whole loop."""

    def __init__(self, config, workdir):
        self.config = config
        self.workdir = epath.Path(workdir)
        d, t = config.data, config.train
        self.is_main = jax.process_index() == 0
        self.events = None  # events.EventLog of process 0, opened when the run starts or resumes.
        self.restored_step = None  # The checkpoint this segment resumed from (named if the loss turns NaN).
        self.segment_start = time.time()
        # Wall time of the segments before this one; process 0 reads it (the index is its file), and
        # the others' summaries, never written, time their own segment.
        self.earlier = checkpoint_index.Elapsed()
        self.steps = None  # program.Steps, compiled when the run starts.
        # Opening the sources is cheap (and prepares the embedded MNIST on first use); doing it
        # before the run directory exists keeps data errors from leaving a half-made run behind.
        self.spec = RunSpec.from_config(config, train_examples=pipeline.train_length(d))
        self.image_size, self.total_steps = self.spec.image_size, self.spec.total_steps
        self.branches = self.spec.cooldown_branches  # Branch start → its last step.
        self.eval_splits = {"test": pipeline.EvalSplit(d, d.eval_split, self.image_size, t.eval_batch_size)}
        if d.val_split is not None:
            self.eval_splits["val"] = pipeline.EvalSplit(d, d.val_split, self.image_size, t.eval_batch_size)
        self.program = Program(self.spec, partitioning.make_mesh(config.mesh))
        self.mesh = self.program.mesh

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, params) -> dict[str, float]:
        """Loss and accuracy on the test split (and the validation split when configured)."""
        out = {}
        for prefix, split in self.eval_splits.items():
            totals = {}
            for batch in split.batches():
                batch = partitioning.global_batch(batch, self.mesh)
                step_out = jax.device_get(self.steps.eval(params, self.program.frozen, batch))
                for k, v in step_out.items():  # float64 sums: up to millions of pixels per split.
                    totals[k] = totals.get(k, 0.0) + np.asarray(v, np.float64)
            if int(totals["examples"]) != split.num_examples:
                raise AssertionError(f"evaluated {totals['examples']} examples, expected {split.num_examples}")
            # With a dense head, loss and accuracy are per pixel, over every pixel of the split.
            out.update({f"{prefix}_loss": float(totals["loss_sum"] / totals["count"]),
                        f"{prefix}_accuracy": float(totals["correct"] / totals["count"]),
                        f"{prefix}_examples": int(totals["examples"])})
            if "tp" in totals:
                out[f"{prefix}_miou"] = segmentation.mean_iou(totals["tp"], totals["fp"], totals["fn"])
                out[f"{prefix}_pixels"] = int(totals["count"])
        return out

    # ----------------------------------------------------------------- the loop
    def run(self) -> dict:
        """Train (or resume) the run; `train()` has checked that it is not finished and its config fits."""
        c, t = self.config, self.config.train
        self.segment_start = time.time()
        state = self.program.init_state()  # A model that cannot be built fails here, before any file is written.
        if t.init_from:
            state = init_from.start_from(self.program, state, t.init_from, self.workdir)
        self.steps = self.program.compile(state)
        compile_seconds = self.steps.compile_seconds
        if self.is_main:
            self.workdir.mkdir(parents=True, exist_ok=True)
            results.write_json_atomic(self.workdir / results.CONFIG, c.to_dict())
        gb = t.batch_size
        data = pipeline.train_iterator(c.data, self.image_size, gb, self.total_steps, c.seed, c.augment)
        ckpt = checkpoint.manager(self.workdir / results.CHECKPOINTS, t.keep_checkpoints)
        try:
            restored_step, restored = checkpoint.restore_latest(ckpt, self.program.state_spec, data,
                                                                verify=self._verify)
            if restored is not None:
                state = restored
                self.restored_step = restored_step
                self._check_history(restored_step)
                if self.is_main:
                    self.earlier = checkpoint_index.elapsed(self.workdir, restored_step)
                console().log(f"patchscale: resuming {self.workdir} from step {restored_step}", flush=True)
            if self.is_main:  # Records after the checkpoint (or all, when starting over) would repeat.
                results.truncate_metrics(self.workdir, restored_step or 0)
                if results.is_local(self.workdir):  # tensorboardX writes local files only.
                    self.events = events.EventLog(self.workdir, c.to_dict(), results.read_metrics(self.workdir))
                else:
                    console().log(f"patchscale: no TensorBoard events for {self.workdir} (not a local path)", flush=True)
            start = int(state["step"])
            console().log(f"patchscale: {self.total_steps} steps of {gb} images ({self.spec.train_examples} training examples),"
                  f" {self.spec.tokens_per_image} tokens per image,"
                  f" compiled in {compile_seconds:.1f}s", flush=True)

            with preemption.PreemptionWatch(ckpt) as watch:
                state, eval_metrics = self._loop(state, start, data, ckpt, watch)
                # A SIGTERM during the last step or its evaluation finished the run; it still stops a sweep.
                late_sigterm = watch.requested(self.total_steps)
            if eval_metrics is None:  # Resumed after the last step's checkpoint: evaluate once more.
                eval_metrics = self.evaluate(state["params"])
            if "ema" in state:  # The reference reports the raw model; the EMA's numbers come alongside.
                eval_metrics = {**eval_metrics, **{f"ema_{k}": v for k, v in self.evaluate(state["ema"]).items()}}
            ckpt.wait_until_finished()
        finally:
            ckpt.close()  # Also on errors: orbax's background threads must not outlive the run.
            if self.events is not None:
                self.events.close()
        summary = self._summary(state, eval_metrics, compile_seconds)
        if self.is_main:
            results.write_json_atomic(self.workdir / results.SUMMARY, summary)
        console().clear("run")
        console().log(f"patchscale: done: test loss {summary['test_loss']:.4f}, test accuracy"
              f" {summary['test_accuracy']:.4f} on {summary['test_examples']} examples,"
              f" wall time {format_duration(summary['wall_time_s'])}", flush=True)
        if late_sigterm:
            raise Preempted(f"SIGTERM during the last step of {self.workdir}: the run finished (summary written);"
                            " stopping")
        return summary

    def _agree(self, value: bool) -> bool:
        """Process 0's verdict, on every process (each must take the same path through the run)."""
        if jax.process_count() == 1:
            return value
        return bool(np.asarray(multihost_utils.broadcast_one_to_all(np.asarray(value, np.int32))))

    def _verify(self, step: int, state) -> str | None:
        """Why a restored step is wrong: its arrays differ from the digest written when it was saved."""
        state_digest = checkpoint_index.digest(state)
        wrong = self.is_main and checkpoint_index.digest_mismatch(self.workdir, step, state_digest)
        return "its arrays differ from the digest written when it was saved" if self._agree(wrong) else None

    def _check_history(self, step: int) -> None:
        """Resuming from `step` needs the metrics records written before it; refuse when they are gone."""
        missing = None
        if self.is_main:
            missing = checkpoint_index.missing_history(self.workdir, step, results.read_metrics(self.workdir))
        if self._agree(missing is not None):
            raise UserError(f"{self.workdir / results.METRICS} lacks {missing or 'records'} written before checkpoint"
                            f" step {step}, so resuming would lose them; put back the missing lines (from a copy),"
                            f" or delete {self.workdir / results.CHECKPOINTS} to train the run again from the start")

    def _save(self, ckpt, step: int, state, data) -> None:
        """Record the step's digest and metrics history (checkpoint_index.py), then save it."""
        state_digest = checkpoint_index.digest(state)
        if self.is_main:
            checkpoint_index.record(self.workdir, step, state_digest, results.read_metrics(self.workdir),
                                    kept_steps=ckpt.all_steps(), wall=self._elapsed())
        checkpoint.save(ckpt, step, state, data)

    def _elapsed(self) -> checkpoint_index.Elapsed:
        """The run's wall time so far: the earlier segments' (up to the checkpoint resumed from) and this one's."""
        return self.earlier.plus(time.time() - self.segment_start)

    def _resume_facts(self, start: int) -> tuple[set[int], bool]:
        """(cooldown branches already evaluated, whether step `start` was evaluated) when resuming at `start`.

        Process 0 reads its metrics file once and tells the others, so every process does the same
        work even when the run directory is not shared (a mismatch would hang the collectives).
        """
        branches = sorted(self.branches)
        flags = np.zeros(len(branches) + 1, np.int32)
        if self.is_main:
            records = results.read_metrics(self.workdir)
            logged = {r["step"] for r in records if "budget_steps" in r and r["step"] <= start}
            evaluated = any(r["step"] == start and "test_loss" in r and "budget_steps" not in r for r in records)
            flags = np.asarray([b in logged for b in branches] + [evaluated], np.int32)
        if jax.process_count() > 1:
            flags = multihost_utils.broadcast_one_to_all(flags)
        flags = np.asarray(flags)
        return {b for b, flag in zip(branches, flags) if flag}, bool(flags[-1])

    def _loop(self, state, start: int, data, ckpt, watch):
        """Steps start+1 … total; returns (state, last evaluation or None). Raises Preempted on SIGTERM."""
        t, gb = self.config.train, self.config.train.batch_size
        pending: list[tuple[int, dict]] = []
        done_branches, evaluated = self._resume_facts(start)
        if start in self.branches and start not in done_branches:
            # Stopped between the checkpoint at a branch's start and the branch's record: the
            # restored state and data iterator are where the branch began, so train it now.
            self._cooldown_branch(state, start, data)
        if t.eval_every and start % t.eval_every == 0 and 0 < start < self.total_steps and not evaluated:
            evaluation = self.evaluate(state["params"])  # Skipped by a SIGTERM at that step.
            if self.is_main:
                results.merge_into_record(self.workdir, start, evaluation)
                if self.events is not None:
                    self.events.write({"step": start, **evaluation})
            self._progress(start, {"step": start, **evaluation})
        interval_start, interval_steps = time.perf_counter(), 0
        eval_metrics = None
        for step in range(start + 1, self.total_steps + 1):
            batch = partitioning.global_batch(next(data), self.mesh)
            state, metrics = self.steps.train(state, self.program.frozen, batch)
            pending.append((step, metrics))
            interval_steps += 1
            last = step == self.total_steps
            # SIGTERM: finish this step's bookkeeping (its log record, a checkpoint) and stop before
            # anything slow (evaluation, a cooldown branch); the resume does those first.
            preempt = not last and watch.requested(step)
            log_now = step % t.log_every == 0 or last or step in self.branches
            eval_now = (last or (t.eval_every and step % t.eval_every == 0)) and not preempt
            save_now = step % t.checkpoint_every == 0 or last or preempt
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
            if preempt:
                self._log(step, record)
                self._save(ckpt, step, state, data)
                ckpt.wait_until_finished()
                raise Preempted(f"SIGTERM at step {step}/{self.total_steps}: checkpoint saved in {self.workdir};"
                                " run the same command again to resume")
            if eval_now:
                eval_metrics = self.evaluate(state["params"])
                record.update(eval_metrics)
            self._log(step, record)
            if save_now:
                self._save(ckpt, step, state, data)
            if step in self.branches and step not in done_branches:
                self._cooldown_branch(state, step, data)
            if log_now:
                interval_start, interval_steps = time.perf_counter(), 0
            else:
                interval_start += time.perf_counter() - paused
        return state, eval_metrics

    def _log(self, step: int, record: dict) -> None:
        """Append a record (process 0) and print its progress line; a bare {"step": …} is neither."""
        if len(record) > 1:
            self._append(record)
            self._progress(step, record)

    def _append(self, record: dict) -> None:
        """metrics.jsonl and the TensorBoard events, from process 0 only."""
        if self.is_main:
            results.append_metrics(self.workdir, record)
            if self.events is not None:
                self.events.write(record)

    def _cooldown_branch(self, state, start: int, data) -> None:
        """Anneal a copy of the state from `start` to its budget's end, evaluate it, and rewind the data.

        The branch sees the batches the main trajectory would see next (the iterator's state is
        restored afterwards), so budget b's loss is that of a run stopped at b with its own anneal.
        Its record carries the branch's first step, so a resume before it trains it again.
        """
        end = self.branches[start]
        gb = self.config.train.batch_size
        data_state = data.get_state()
        branch = jax.tree.map(lambda x: x.copy(), state)  # The step donates its input: never the main state.
        branch["end"] = jax.device_put(np.asarray(end, np.int32), branch["end"].sharding)
        began = time.perf_counter()
        pending = []
        for _ in range(start + 1, end + 1):
            branch, metrics = self.steps.train(branch, self.program.frozen,
                                                      partitioning.global_batch(next(data), self.mesh))
            pending.append((int(start), metrics))
        losses = self._check_finite(pending)
        data.set_state(data_state)
        record = {"step": start, "budget_steps": end, "images_seen": end * gb,
                  "train_flops": self.spec.train_flops_per_image * end * gb,
                  "cooldown_train_loss": float(np.mean(losses[-max(1, len(losses) // 5):])),
                  **self.evaluate(branch["params"])}
        del branch
        self._append(record)
        line = (f"[train] budget {end}/{self.total_steps} steps: cooldown from step {start} in"
                f" {format_duration(time.perf_counter() - began)} | test loss {record['test_loss']:.4f}"
                f" acc {record['test_accuracy']:.4f}")
        if "val_loss" in record:
            line += f" | val loss {record['val_loss']:.4f}"
        console().log(line)

    def _budgets(self, eval_metrics) -> list[dict]:
        """Every budget's evaluation: the cooldown branches' records, then the whole run."""
        keys = ("test_loss", "test_accuracy", "val_loss", "val_accuracy", "test_miou", "val_miou")
        branches = {r["budget_steps"]: r for r in results.read_metrics(self.workdir) if "budget_steps" in r}
        gb = self.config.train.batch_size
        out = [{"steps": end, "images_seen": r["images_seen"], "train_flops": r["train_flops"],
                **{k: r[k] for k in keys if k in r}} for end, r in sorted(branches.items())]
        out.append({"steps": self.total_steps, "images_seen": self.total_steps * gb,
                    "train_flops": self.spec.train_flops_per_image * self.total_steps * gb,
                    **{k: eval_metrics[k] for k in keys if k in eval_metrics}})
        return out

    def _check_finite(self, pending) -> list[float]:
        losses = [float(v) for v in jax.device_get([m["loss"] for _, m in pending])]
        for (step, _), loss in zip(pending, losses):
            if not math.isfinite(loss):
                cause = "lower train.learning_rate or check the data"
                if self.restored_step:
                    cause += (f"; or checkpoint step {self.restored_step} that this run resumed from is damaged:"
                              f" delete {self.workdir / results.CHECKPOINTS / str(self.restored_step)} to resume"
                              " from the step before")
                raise TrainingError(f"training loss is {loss} at step {step}; stopping ({cause})")
        return losses

    def _progress(self, step: int, record: dict) -> None:
        line = f"[train] step {step}/{self.total_steps} ({100 * step / self.total_steps:.0f}%)"
        if "train_loss" in record:
            remaining = (self.total_steps - step) * record["step_time_s"]
            line += (f" | loss {record['train_loss']:.4f} | lr {record['learning_rate']:.2e}"
                     f" | {record['images_per_s']:.0f} img/s | ETA {format_duration(remaining)}")
        if "test_loss" in record:
            line += f" | test loss {record['test_loss']:.4f} acc {record['test_accuracy']:.4f}"
        console().update("run", line)

    def _xla_flops(self) -> dict[str, float]:
        """XLA's own counts from the compiled steps, next to the analytic ones (for checking them)."""
        train = flops.xla_flops(self.steps.train)
        forward = flops.xla_flops(self.steps.eval)
        out = {}
        if train is not None:
            out["xla_train_step_flops_per_image"] = train / self.config.train.batch_size
        if forward is not None:
            out["xla_forward_flops_per_image"] = forward / self.config.train.eval_batch_size
        return out

    def _summary(self, state, eval_metrics, compile_seconds) -> dict:
        m = self.config.model
        args = (m, self.image_size, self.spec.channels, self.spec.head_classes)
        device = jax.devices()[0]
        return {
            **eval_metrics,
            **param_counts(state["params"]),
            "steps": self.total_steps,
            "images_seen": self.total_steps * self.config.train.batch_size,
            "budgets": self._budgets(eval_metrics),
            "epochs": self.total_steps * self.config.train.batch_size / self.spec.train_examples,
            "train_examples": self.spec.train_examples,
            "image_size": self.image_size,
            "patch_size": m.patch_size,
            "tokens_per_image": self.spec.tokens_per_image,
            "forward_flops_per_image": flops.forward_flops_per_image(*args),
            "train_flops_per_image": self.spec.train_flops_per_image,
            "train_flops_total": self.spec.train_flops_total,
            **self._xla_flops(),
            **self._elapsed().summary(),
            "compile_time_s": compile_seconds,
            "device_kind": device.device_kind,
            "device_count": jax.device_count(),
            "process_count": jax.process_count(),
            "jax_version": jax.__version__,
            "git_commit": provenance.git_commit(),
            "environment": provenance.environment(),
        }


def finished_summary(config, workdir, *, quiet: bool = False) -> dict | None:
    """The summary of a finished run; None for a run to start or resume (a UserError if its config differs).

    A finished run is refused like a resumed one when its stored config differs in a key that
    changes results (config.check_resumable). Checked before any data is opened or model built,
    so a wrong directory fails in milliseconds.
    """
    workdir = epath.Path(workdir)
    summary = results.read_summary(workdir, warn=not quiet)
    previous = results.read_json(workdir / results.CONFIG)
    if previous is not None:
        config_lib.check_resumable(previous, config.to_dict(), workdir)
    if summary is not None:
        console().log(f"patchscale: {workdir} has already finished (test loss {summary.get('test_loss', float('nan')):.4f});"
              " not training again", flush=True)
    return summary


@contextlib.contextmanager
def run_lock(workdir):
    """The run's exclusive lock, taken by process 0 (the others follow its collectives)."""
    if jax.process_index() != 0:
        yield
        return
    with locking.hold(workdir, "run"):
        yield


def train(config, workdir) -> dict:
    summary = finished_summary(config, workdir)
    if summary is not None:
        return summary
    with run_lock(workdir):
        return train_locked(config, workdir)


def train_locked(config, workdir) -> dict:
    """Train under the run's lock, checking again first: another process may have finished it meanwhile."""
    summary = finished_summary(config, workdir, quiet=True)
    return summary if summary is not None else Trainer(config, workdir).run()
