"""TensorBoard event files of a run: a view of its metrics.jsonl, written by process 0.

Local run directories only: tensorboardX cannot write to gs:// and the like; the run says so.

`tensorboard --logdir results/X` shows every run's training curves (train loss, learning rate,
gradient norm, images/s), its evaluations (test and validation loss, accuracy, mIoU) at their
steps, each cooldown branch's evaluation at its budget's last step (tags `budget/…`), and the
run's config as text. metrics.jsonl stays the record of truth: when a run starts or resumes,
its event directory is rewritten from the records kept in metrics.jsonl (which the resume has
truncated to the restored checkpoint), so a resumed run shows each step exactly once.
Written with tensorboardX (protobuf only; no TensorFlow import).
"""

from __future__ import annotations

import json
import shutil

from etils import epath
from tensorboardX import SummaryWriter

EVENTS = "tensorboard"  # The directory inside a run directory.
# metrics.jsonl key → TensorBoard tag; other numeric keys are written under "other/".
TAGS = {"train_loss": "train/loss", "learning_rate": "train/learning_rate", "grad_norm": "train/grad_norm",
        "images_per_s": "train/images_per_s", "step_time_s": "train/step_time_s",
        "test_loss": "test/loss", "test_accuracy": "test/accuracy", "test_miou": "test/miou",
        "val_loss": "val/loss", "val_accuracy": "val/accuracy", "val_miou": "val/miou",
        "cooldown_train_loss": "train/cooldown_loss"}
SKIP = ("step", "budget_steps", "images_seen", "train_flops", "test_examples", "val_examples", "test_pixels",
        "val_pixels")


def scalars(record: dict) -> tuple[int, dict[str, float]]:
    """(the step to plot at, tag → value) for one metrics record; branch records go under budget/."""
    if "budget_steps" in record:
        values = {f"budget/{key}": float(v) for key, v in record.items()
                  if key not in SKIP and isinstance(v, (int, float))}
        return int(record["budget_steps"]), values
    values = {TAGS.get(key, f"other/{key}"): float(v) for key, v in record.items()
              if key not in SKIP and isinstance(v, (int, float)) and not isinstance(v, bool)}
    return int(record["step"]), values


class EventLog:
    """Rewrites the run's event directory from `records`, then appends as the run goes."""

    def __init__(self, run_dir, config: dict, records: list[dict]):
        directory = epath.Path(run_dir) / EVENTS
        if directory.exists():
            shutil.rmtree(directory)
        self.writer = SummaryWriter(str(directory), flush_secs=30)
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=2, sort_keys=True) + "\n```", 0)
        for record in records:
            self.write(record)
        self.writer.flush()

    def write(self, record: dict) -> None:
        step, values = scalars(record)
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        self.writer.close()
