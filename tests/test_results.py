"""Run directories that survive damage: atomic writes, partial metrics lines, broken JSON and checkpoints."""

import json

import grain
import jax.numpy as jnp
import numpy as np
import pytest

from patchscale import checkpoint, results
from patchscale.errors import UserError


def test_status_of_run_directories(tmp_path):
    run = tmp_path / "run"
    assert results.status(run) == "new"
    (run / "checkpoints").mkdir(parents=True)
    assert results.status(run) == "partial"
    (run / "failed.json").write_text(json.dumps({"error": "x"}))
    assert results.status(run) == "failed"
    (run / "summary.json").write_text("{}")
    assert results.status(run) == "finished"


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "x.json"
    results.write_json_atomic(path, {"a": 1})
    results.write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


@pytest.mark.parametrize("text, problem", [('{"test_loss": 0.3', "not valid JSON"), ("[1, 2]", "JSON object"),
                                           ("\xff\xfe", "not valid JSON")])
def test_damaged_json_is_a_one_line_error_naming_the_file(tmp_path, text, problem):
    path = tmp_path / "summary.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(UserError, match=problem) as e:
        results.read_json(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_missing_required_json_names_the_file(tmp_path):
    assert results.read_json(tmp_path / "none.json") is None
    with pytest.raises(UserError, match="none.json does not exist"):
        results.read_json(tmp_path / "none.json", required=True)


def _metrics(tmp_path, text):
    (tmp_path / results.METRICS).write_text(text)
    return tmp_path


def test_partial_last_metrics_line_is_skipped_then_trimmed(tmp_path, capsys):
    run = _metrics(tmp_path, '{"step": 10, "train_loss": 1.0}\n{"step": 20, "train_loss": 0.9}\n{"step": 30, "tr')
    assert [r["step"] for r in results.read_metrics(run)] == [10, 20]
    results.truncate_metrics(run, 20)
    assert "partial line" in capsys.readouterr().err
    assert (run / results.METRICS).read_text() == '{"step": 10, "train_loss": 1.0}\n{"step": 20, "train_loss": 0.9}\n'
    results.append_metrics(run, {"step": 30})  # Appends start on a fresh line.
    assert [r["step"] for r in results.read_metrics(run)] == [10, 20, 30]


def test_truncate_drops_steps_after_the_checkpoint_and_everything_when_starting_over(tmp_path):
    run = _metrics(tmp_path, "".join(json.dumps({"step": s}) + "\n" for s in (10, 20, 30)))
    results.truncate_metrics(run, 20)
    assert [r["step"] for r in results.read_metrics(run)] == [10, 20]
    results.truncate_metrics(run, 0)
    assert results.read_metrics(run) == []


def test_damaged_metrics_line_in_the_middle_is_an_error(tmp_path):
    run = _metrics(tmp_path, '{"step": 10}\n{"ste\n{"step": 30}\n')
    with pytest.raises(UserError, match="damaged at line 2"):
        results.read_metrics(run)


# ----------------------------------------------------------------------------- checkpoints
def _iterator():
    return grain.MapDataset.range(100).batch(4).to_iter_dataset().__iter__()


def _state(value: float):
    return {"step": jnp.asarray(int(value), jnp.int32), "w": jnp.full((3, 4), value, jnp.float32)}


def _save_steps(directory, steps):
    mngr = checkpoint.manager(directory, keep=3)
    data = _iterator()
    for step in steps:
        next(data)
        checkpoint.save(mngr, step, _state(step), data)
    mngr.wait_until_finished()
    mngr.close()


def _damage(directory, step):
    """Overwrite every file of the step's train state with garbage (a disk error, a bad copy)."""
    for path in (directory / str(step) / "state").rglob("*"):
        if path.is_file():
            path.write_bytes(b"\0garbage")


def _restore(directory):
    mngr = checkpoint.manager(directory, keep=3)
    data = _iterator()
    abstract = {"step": jnp.zeros((), jnp.int32), "w": jnp.zeros((3, 4), jnp.float32)}
    try:
        step, state = checkpoint.restore_latest(mngr, abstract, data)
        return step, state, data, mngr
    except BaseException:
        mngr.close()
        raise


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    directory = tmp_path / "checkpoints"
    _save_steps(directory, [1, 2])
    _damage(directory, 2)
    step, state, data, mngr = _restore(directory)
    assert step == 1 and float(state["w"][0, 0]) == 1.0
    assert next(data).tolist() == [4, 5, 6, 7]  # The iterator resumed where step 1 left it.
    assert "step 2" in capsys.readouterr().err
    assert mngr.all_steps() == [1]  # The damaged step is gone, so it can be saved again.
    checkpoint.save(mngr, 2, _state(2.0), data)
    mngr.wait_until_finished()
    mngr.close()
    assert _restore(directory)[0] == 2


def test_no_readable_checkpoint_is_a_one_line_error(tmp_path):
    directory = tmp_path / "checkpoints"
    _save_steps(directory, [1, 2])
    _damage(directory, 1)
    _damage(directory, 2)
    with pytest.raises(UserError, match="no checkpoint in .* restores") as e:
        _restore(directory)
    assert "\n" not in str(e.value)


def test_no_checkpoint_at_all_starts_over(tmp_path):
    step, state, _, mngr = _restore(tmp_path / "checkpoints")
    mngr.close()
    assert (step, state) == (None, None)


def test_an_evaluation_after_resume_merges_into_its_steps_log_record(tmp_path):
    run = _metrics(tmp_path, '{"step": 10, "train_loss": 1.0}\n{"budget_steps": 20, "step": 10}\n')
    results.merge_into_record(run, 10, {"test_loss": 0.5})
    assert results.read_metrics(run) == [{"step": 10, "train_loss": 1.0, "test_loss": 0.5},
                                         {"budget_steps": 20, "step": 10}]
    results.merge_into_record(run, 12, {"test_loss": 0.4})  # No log record there: appended.
    assert results.read_metrics(run)[-1] == {"step": 12, "test_loss": 0.4}
