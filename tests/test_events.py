"""TensorBoard events as a view of metrics.jsonl: tags, budget records, and a resume that writes each step once."""

from patchscale import events
from tests.helpers import read_events

CONFIG = {"model": {"patch_size": 4}}


def records(steps):
    return [{"step": s, "train_loss": 1.0 / s, "learning_rate": 1e-3, "grad_norm": 0.5, "images_per_s": 100.0}
            for s in steps]


def test_a_resume_rewrites_the_events_so_every_step_appears_once(tmp_path):
    first = events.EventLog(tmp_path, CONFIG, [])
    for record in records([10, 20, 30, 40]):  # The killed run got to step 40 ...
        first.write(record)
    first.close()
    kept = records([10, 20])  # ... but resumes from the checkpoint at 20 (metrics truncated to it).
    second = events.EventLog(tmp_path, CONFIG, kept)
    for record in records([30, 40, 50]):
        second.write(record)
    second.close()
    losses = [(step, value) for tag, step, value in read_events(tmp_path) if tag == "train/loss"]
    assert [step for step, _ in losses] == [10, 20, 30, 40, 50]
    assert abs(losses[0][1] - 0.1) < 1e-7


def test_evaluations_and_budgets_get_their_own_tags():
    step, values = events.scalars({"step": 100, "test_loss": 0.3, "test_accuracy": 0.9, "test_examples": 10_000,
                                   "val_miou": 0.5})
    assert step == 100 and values == {"test/loss": 0.3, "test/accuracy": 0.9, "val/miou": 0.5}
    step, values = events.scalars({"step": 100, "budget_steps": 125, "images_seen": 16_000, "train_flops": 1e12,
                                   "test_loss": 0.4, "cooldown_train_loss": 0.2})
    assert step == 125 and values == {"budget/test_loss": 0.4, "budget/cooldown_train_loss": 0.2}
