"""No run trained twice, no finished run reused under another config, no silent loss (issue 29).

Fast cases: no model is compiled (training is replaced where a case needs a run to fail).
The slow ones, with real training, kills and full disks, are in test_fault_injection.py (-m heavy).
"""

import errno
import json
import os
import socket
import subprocess
import sys
import types

import jax.numpy as jnp
import numpy as np
import pytest

from patchscale import checkpoint, checkpoint_index, cli, locking, results, storage, sweep, train
from patchscale.sweep import child, workers
from patchscale import config as config_lib
from patchscale.errors import StorageError, TrainingError, UserError
from tests.conftest import DEFAULT_EXPERIMENT, REPO, write_experiment
from tests.test_results import _iterator, _restore, _state


def experiment(tmp_path, mnist_dir):
    settings = {"model.size": "pico", "model.patch_size": 16, "data.data_dir": mnist_dir, "train.steps": 60,
                "data.train_examples": 512, "data.eval_examples": 200, "train.batch_size": 32}
    return write_experiment(tmp_path / "safety.py", settings, [{"seed": s} for s in (0, 1)])


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("patchscale: error: "), err
    return lines[0]


def finish(run_dir, config, summary=None):
    """A run directory as a finished run leaves it."""
    run_dir.mkdir(parents=True)
    results.write_json_atomic(run_dir / results.CONFIG, config.to_dict())
    results.write_json_atomic(run_dir / results.SUMMARY, summary or {"test_loss": 0.5, "test_accuracy": 0.9})


@pytest.fixture
def failing_trainer(monkeypatch):
    """Replace training by an error chosen per test (nothing is compiled)."""
    raised = {}

    class Trainer:
        def __init__(self, config, workdir):
            raised.setdefault("runs", []).append(str(workdir))

        def run(self):
            raise raised["error"]

    monkeypatch.setattr(train, "Trainer", Trainer)
    return raised


# ----------------------------------------------------------------------------- locks
def test_train_on_a_locked_run_is_refused_before_anything_is_built(tmp_path, capsys, mnist_dir):
    run_dir = tmp_path / "run"
    with locking.hold(run_dir, "run"):
        code = cli.main(["train", str(DEFAULT_EXPERIMENT), f"data.data_dir={mnist_dir}", "--workdir", str(run_dir)])
        line = one_error_line(capsys.readouterr().err)
        assert code == 2 and f"in use by process {os.getpid()} on host {socket.gethostname()}" in line
        assert [p.name for p in run_dir.iterdir()] == [locking.LOCK]  # No config.json, no checkpoints.


def test_sweep_on_a_locked_results_directory_is_refused(tmp_path, capsys, mnist_dir):
    res = tmp_path / "res"
    with locking.hold(res, "sweep's results directory"):
        code = cli.main(["sweep", str(experiment(tmp_path, mnist_dir)), "--results", str(res)])
        assert code == 2 and f"in use by process {os.getpid()}" in one_error_line(capsys.readouterr().err)
    assert not res.exists()  # No sweep.json written.


def test_a_workers_run_works_under_its_parents_sweep_lock(tmp_path, monkeypatch, mnist_dir, failing_trainer):
    """The child of a `--workers` sweep trains the point it is handed while the parent holds the lock."""
    import io
    import pickle

    res = tmp_path / "res"
    failing_trainer["error"] = RuntimeError("crash")
    point = next(p for p in sweep.expand(str(experiment(tmp_path, mnist_dir))) if p.name == "attention-pico-p16-s0")
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(pickle.dumps(point))))
    with locking.hold(res, "sweep's results directory"):
        code = child.main([str(res), "exp", point.name])
    assert code == 1 and results.status(res / "runs" / point.name) == "failed"
    assert json.loads((res / "runs" / point.name / results.POINT).read_text())["overrides"] == point.overrides


def test_a_child_refuses_a_point_that_is_not_the_one_named(tmp_path, monkeypatch, mnist_dir, capsys):
    import io
    import pickle

    point = sweep.expand(str(experiment(tmp_path, mnist_dir)))[0]
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(pickle.dumps(point))))
    assert child.main([str(tmp_path / "res"), "exp", "another-run"]) == 2
    assert f"the point on stdin is {point.name!r}, not 'another-run'" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "res").exists()


# ----------------------------------------------------------------------------- config fingerprints
def test_a_finished_run_under_another_config_is_refused_by_train(tmp_path, capsys, mnist_dir):
    run_dir = tmp_path / "run"
    finish(run_dir, config_lib.load_config(str(DEFAULT_EXPERIMENT), [f"data.data_dir={mnist_dir}"]))
    code = cli.main(["train", str(DEFAULT_EXPERIMENT), f"data.data_dir={mnist_dir}", "train.learning_rate=1e6",
                     "--workdir", str(run_dir)])
    assert code == 2 and "train.learning_rate (0.002 → 1000000.0)" in one_error_line(capsys.readouterr().err)
    # Settings that cannot change the results are not a different config: still finished.
    assert cli.main(["train", str(DEFAULT_EXPERIMENT), f"data.data_dir={mnist_dir}", "train.log_every=3",
                     "data.worker_threads=3",
                     "--workdir", str(run_dir)]) == 0
    assert "has already finished" in capsys.readouterr().out


def test_a_sweep_over_finished_runs_under_another_config_is_refused(tmp_path, capsys, mnist_dir):
    exp = experiment(tmp_path, mnist_dir)
    res = tmp_path / "res"
    for point in sweep.expand(str(exp)):
        finish(res / "runs" / point.name, point.config)
    code = cli.main(["sweep", str(exp), "--results", str(res), "train.steps=500", "train.learning_rate=1e6"])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2 and "train.learning_rate" in line and "train.steps (60 → 500)" in line
    assert not (res / results.SWEEP).exists()  # Refused before anything was written or fitted.


def test_an_unparsable_summary_makes_the_run_unfinished(tmp_path, capsys):
    run_dir = tmp_path / "run"
    config = config_lib.load_config(str(DEFAULT_EXPERIMENT))
    finish(run_dir, config)
    (run_dir / results.SUMMARY).write_text('{"test_loss": 0.')
    (run_dir / results.CHECKPOINTS).mkdir()
    assert results.status(run_dir) == "partial"
    assert train.finished_summary(config, run_dir) is None
    assert "does not parse; the run counts as unfinished" in capsys.readouterr().err


# ----------------------------------------------------------------------------- history and digests
def test_resuming_needs_the_records_written_before_the_checkpoint(tmp_path):
    records = [{"step": 5, "train_loss": 1.0}, {"step": 10, "train_loss": 0.9},
               {"step": 10, "budget_steps": 20, "test_loss": 0.8}, {"step": 15, "train_loss": 0.7}]
    checkpoint_index.record(tmp_path, 15, "d", records, kept_steps=[])
    assert checkpoint_index.missing_history(tmp_path, 15, records) is None
    assert checkpoint_index.missing_history(tmp_path, 15, records + [{"step": 20}]) is None  # Later: truncated.
    lost = checkpoint_index.missing_history(tmp_path, 15, [records[0], records[3]])
    assert lost == "the records of step 10 and the budget evaluations branched at step 10"
    assert "steps 5, 10, 15" in checkpoint_index.missing_history(tmp_path, 15, [])
    # A step saved before the index existed: only an empty history is known to be incomplete.
    assert checkpoint_index.missing_history(tmp_path, 30, [records[0]]) is None
    assert checkpoint_index.missing_history(tmp_path, 30, []) is not None


def test_the_index_keeps_only_the_steps_still_kept(tmp_path):
    for step in (5, 10, 15):
        checkpoint_index.record(tmp_path, step, f"d{step}", [], kept_steps=[step - 5])
    assert sorted(json.loads((tmp_path / checkpoint_index.INDEX).read_text())) == ["10", "15"]


def test_the_wall_time_continues_across_segments_and_says_when_an_earlier_one_is_unknown(tmp_path):
    first = checkpoint_index.Elapsed().plus(100.0)
    checkpoint_index.record(tmp_path, 10, "d", [], kept_steps=[], wall=first)
    resumed = checkpoint_index.elapsed(tmp_path, 10)
    assert resumed == checkpoint_index.Elapsed(100.0, 1)
    assert resumed.plus(50.0).summary() == {"wall_time_s": 150.0, "wall_time_segments": 2}
    # A step saved before the wall time was recorded: the summary has this segment's time only.
    unknown = checkpoint_index.elapsed(tmp_path, 30)
    assert unknown.plus(50.0).summary() == {"wall_time_s": 50.0, "wall_time_segments": None}
    checkpoint_index.record(tmp_path, 40, "d", [], kept_steps=[10], wall=unknown.plus(50.0))
    assert checkpoint_index.elapsed(tmp_path, 40).segments is None  # Stays unknown at later saves.


def test_the_digest_sees_one_flipped_bit():
    state = {"w": jnp.asarray(np.linspace(0.1, 2.3, 12, dtype=np.float32).reshape(3, 4)),
             "step": jnp.asarray(7, jnp.int32), "h": jnp.ones(5, jnp.bfloat16)}
    flipped = np.asarray(state["w"]).copy()
    flipped.view(np.uint32)[1, 2] ^= 1  # The lowest mantissa bit of one weight.
    assert checkpoint_index.digest(state) == checkpoint_index.digest(dict(state))
    assert checkpoint_index.digest(state) != checkpoint_index.digest({**state, "w": jnp.asarray(flipped)})
    swapped = np.asarray(state["w"])[::-1].copy()  # Same values, other places.
    assert checkpoint_index.digest(state) != checkpoint_index.digest({**state, "w": jnp.asarray(swapped)})


def test_a_checkpoint_that_differs_from_its_digest_falls_back_to_the_step_before(tmp_path, capsys):
    directory = tmp_path / "checkpoints"
    mngr = checkpoint.manager(directory, keep=3)
    data = _iterator()
    for step in (1, 2):
        next(data)
        checkpoint_index.record(tmp_path, step, checkpoint_index.digest(_state(step)), [], kept_steps=[1, 2])
        checkpoint.save(mngr, step, _state(step), data)
    mngr.wait_until_finished()
    mngr.delete(2)  # Step 2 now holds other values than the ones its digest was written from.
    checkpoint.save(mngr, 2, _state(2.5), data)
    mngr.wait_until_finished()
    mngr.close()

    def verify(step, state):
        wrong = checkpoint_index.digest_mismatch(tmp_path, step, checkpoint_index.digest(state))
        return "digest mismatch" if wrong else None

    mngr = checkpoint.manager(directory, keep=3)
    abstract = {"step": jnp.zeros((), jnp.int32), "w": jnp.zeros((3, 4), jnp.float32)}
    step, state = checkpoint.restore_latest(mngr, abstract, _iterator(), verify=verify)
    assert step == 1 and float(state["w"][0, 0]) == 1.0 and mngr.all_steps() == [1]
    mngr.close()
    err = capsys.readouterr().err
    assert "checkpoint step 2" in err and "digest mismatch" in err and "trying an older one" in err


def test_a_non_finite_loss_after_a_restore_names_the_checkpoint(tmp_path):
    trainer = types.SimpleNamespace(restored_step=40, workdir=tmp_path)
    with pytest.raises(TrainingError, match="or checkpoint step 40 that this run resumed from is damaged") as e:
        train.Trainer._check_finite(trainer, [(41, {"loss": jnp.asarray(np.nan)})])
    assert str(tmp_path / "checkpoints" / "40") in str(e.value)
    trainer.restored_step = None
    with pytest.raises(TrainingError) as e:
        train.Trainer._check_finite(trainer, [(3, {"loss": jnp.asarray(np.inf)})])
    assert "checkpoint" not in str(e.value)


def test_restore_messages_carry_no_object_reprs():
    error = ValueError("cannot read <bound method PyCapsule.read of <tensorstore.Spec object at 0x7f3a>> here")
    assert checkpoint._reason(error) == "ValueError: cannot read … here"
    try:  # Orbax's wrapper around tensorstore's error: the cause is what to show.
        try:
            raise ValueError('OUT_OF_RANGE: Error reading "w/0.0" in OCDBT database')
        except ValueError as cause:
            raise Exception("Encountered error while reading array index: (slice(0, 64, 1),). See full TensorStore"
                            " details: <bound method pybind11_detail.spec of TensorStore({\n  'x': 1}>") from cause
    except Exception as e:
        assert checkpoint._reason(e) == 'ValueError: OUT_OF_RANGE: Error reading "w/0.0" in OCDBT database'
    wrapper = Exception("Encountered error. See full TensorStore details: <bound method pybind11_x.spec of"
                        " TensorStore({")
    assert checkpoint._reason(wrapper) == "Exception: Encountered error. …"


def test_the_damaged_line_message_no_longer_suggests_deleting_the_file(tmp_path):
    (tmp_path / results.METRICS).write_text('{"step": 10}\n{"ste\n{"step": 30}\n')
    with pytest.raises(UserError, match="damaged at line 2") as e:
        results.read_metrics(tmp_path)
    assert "restore or delete it" not in str(e.value) and "repair that line" in str(e.value)


# ----------------------------------------------------------------------------- environment errors
@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device", "/r/x"),
                                   OSError(errno.EROFS, "Read-only file system", "/r/x"),
                                   OSError(errno.EACCES, "Permission denied", "/r/x"),
                                   OSError(errno.EFBIG, "File too large", "/r/x")])
def test_environment_errors_are_one_line(error):
    problem = storage.environment_error(error)
    assert isinstance(problem, StorageError) and "/r/x" in str(problem) and "\n" not in str(problem)
    assert errno.errorcode[error.errno] in str(problem)


def test_wrapped_environment_errors_are_recognised_by_their_text():
    wrapped = ValueError("Error writing local file \"/r/ocdbt/d/x\": [OS error 28: No space left on device]\nmore")
    assert "ENOSPC" in str(storage.environment_error(wrapped))
    try:
        try:
            raise OSError(errno.EROFS, "Read-only file system")
        except OSError as e:
            raise RuntimeError("orbax: save failed") from e
    except RuntimeError as e:
        assert "EROFS" in str(storage.environment_error(e))
    assert storage.environment_error(ValueError("not an OS problem")) is None


def test_a_workdir_that_is_a_file_is_refused_before_compiling(tmp_path, capsys, mnist_dir):
    workdir = tmp_path / "file"
    workdir.write_text("x")
    code = cli.main(["train", str(DEFAULT_EXPERIMENT), f"data.data_dir={mnist_dir}", "--workdir", str(workdir)])
    assert code == StorageError.EXIT_CODE and "is a file, not a directory" in one_error_line(capsys.readouterr().err)


def test_a_results_path_that_is_a_file_is_one_line(tmp_path, capsys, mnist_dir):
    res = tmp_path / "res"
    res.write_text("x")
    code = cli.main(["sweep", str(experiment(tmp_path, mnist_dir)), "--results", str(res)])
    assert code == StorageError.EXIT_CODE and "is a file, not a directory" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device", "/r/m"),
                                   RuntimeError("tensorstore: [OS error 30: Read-only file system]")])
def test_an_environment_error_stops_the_sweep_and_marks_nothing_failed(tmp_path, capsys, mnist_dir, failing_trainer,
                                                                       error):
    failing_trainer["error"] = error
    res = tmp_path / "res"
    code = cli.main(["sweep", str(experiment(tmp_path, mnist_dir)), "--results", str(res)])
    line = one_error_line(capsys.readouterr().err)
    assert code == StorageError.EXIT_CODE and "cannot use the storage" in line
    assert len(failing_trainer["runs"]) == 1  # Stopped at the first run.
    assert not list(res.rglob(results.FAILED))


def test_a_crash_is_still_recorded_and_every_run_failing_is_not_called_done(tmp_path, capsys, mnist_dir,
                                                                              failing_trainer):
    failing_trainer["error"] = RuntimeError("a bug")
    res = tmp_path / "res"
    assert cli.main(["sweep", str(experiment(tmp_path, mnist_dir)), "--results", str(res)]) == 1
    out = capsys.readouterr().out
    assert len(list(res.rglob(results.FAILED))) == 2
    assert "every run is done" not in out and "no run of the sweep finished" in out


def test_a_storage_error_in_a_workers_run_stops_the_queue(tmp_path):
    log = tmp_path / workers.LOGS / "a.log"
    log.parent.mkdir()
    log.write_text("patchscale: error: cannot use the storage: /x: no space left on the device (ENOSPC); fix\n")
    child = types.SimpleNamespace(point=types.SimpleNamespace(name="a"), started=0.0)
    with pytest.raises(StorageError, match="a: cannot use the storage"):
        workers._finished(child, StorageError.EXIT_CODE, tmp_path)


# ----------------------------------------------------------------------------- smaller items
def test_data_is_prepared_once_per_dataset(monkeypatch):
    from patchscale.data import datasets

    calls = []
    monkeypatch.setitem(datasets.EMBEDDED, "fake", types.SimpleNamespace(prepare=calls.append))
    data = [types.SimpleNamespace(name="fake", data_dir="/a"), types.SimpleNamespace(name="fake", data_dir="/a"),
            types.SimpleNamespace(name="fake", data_dir="/b"), types.SimpleNamespace(name="cifar10", data_dir="/a")]
    workers.prepare_data([types.SimpleNamespace(config=types.SimpleNamespace(data=d)) for d in data])
    assert calls == ["/a", "/b"]


def test_data_is_prepared_before_the_workers_start(tmp_path, monkeypatch, mnist_dir):
    calls = []
    monkeypatch.setattr(workers, "core_groups", lambda n: [None] * n)
    monkeypatch.setattr(workers, "prepare_data", lambda points: calls.append(("prepare", len(points))))

    def run(points, *args, **kwargs):
        calls.append(("workers", len(points)))
        return {p.name: "finished" for p in points}

    monkeypatch.setattr(workers, "run", run)
    assert cli.main(["sweep", str(experiment(tmp_path, mnist_dir)), "--results", str(tmp_path / "res"),
                     "--workers", "2", "--no-analysis"]) == 0
    assert calls == [("prepare", 2), ("workers", 2)]


def test_more_workers_than_cores_writes_nothing(tmp_path, capsys, mnist_dir):
    res = tmp_path / "res"
    code = cli.main(["sweep", str(experiment(tmp_path, mnist_dir)), "--results", str(res), "--workers", "4096"])
    assert code == 2 and "--workers 4096" in one_error_line(capsys.readouterr().err)
    assert not res.exists()


def test_an_argument_after_the_colon_cannot_move_the_results_directory():
    assert config_lib.experiment_name("experiments/x.py:/../../etc") == "x__.._.._etc"
    assert "/" not in config_lib.experiment_name("x.py:a/b")


def test_an_exception_in_get_sweep_is_one_line(tmp_path, capsys):
    exp = tmp_path / "broken_sweep.py"
    exp.write_text("from patchscale.defaults import base_config\n\ndef get_config(arg=None):\n"
                   "    return base_config()\n\ndef get_sweep():\n    return 1 / 0\n")
    code = cli.main(["sweep", str(exp), "--results", str(tmp_path / "res")])
    assert code == 2 and "get_sweep() failed: ZeroDivisionError" in one_error_line(capsys.readouterr().err)


def test_a_non_integer_step_is_a_damaged_line(tmp_path):
    (tmp_path / results.METRICS).write_text('{"step": "ten"}\n{"step": 20}\n')
    with pytest.raises(UserError, match="line 1 .*step 'ten' is not an integer"):
        results.read_metrics(tmp_path)


def test_export_run_drops_a_partial_last_metrics_line(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    summary = {"git_commit": "abc", "device_kind": "cpu", "device_count": 1, "wall_time_s": 1.0}
    (run / results.SUMMARY).write_text(json.dumps(summary))
    (run / results.CONFIG).write_text("{}")
    (run / results.METRICS).write_text('{"step": 10, "train_loss": 1.0}\n{"step": 20, "tr')
    done = subprocess.run([sys.executable, "scripts/export_run.py", str(run), str(tmp_path / "out"), "--command", "x"],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "metrics.csv").read_text().splitlines() == ["step,train_loss", "10,1.0"]


def test_orbax_records_and_closed_loop_callbacks_stay_off_stderr():
    import logging

    def passes(path):
        record = logging.makeLogRecord({"name": "absl", "pathname": path, "msg": "m", "levelno": logging.ERROR})
        return all(f.filter(record) for f in logging.getLogger("absl").filters)

    assert not passes("/venv/site-packages/orbax/checkpoint/_src/checkpointers/async_checkpointer.py")
    assert passes("/venv/site-packages/tensorflow_datasets/core/x.py")
    orbax_code = compile("raise ValueError('OUT_OF_RANGE')", "/venv/site-packages/orbax/checkpoint/x.py", "exec")
    try:
        exec(orbax_code)
    except ValueError:
        record = logging.makeLogRecord({"name": "asyncio", "pathname": "/py/asyncio/base_events.py", "msg": "never",
                                        "exc_info": sys.exc_info()})
    assert not all(f.filter(record) for f in logging.getLogger("asyncio").filters)
    try:
        asyncio_loop_closed()
    except RuntimeError as e:
        assert checkpoint._closed_loop_callback(RuntimeError, e.__traceback__.tb_next.tb_next)
        assert not checkpoint._closed_loop_callback(RuntimeError, e.__traceback__)  # Raised from our code: kept.


def asyncio_loop_closed():
    import asyncio

    loop = asyncio.new_event_loop()
    loop.close()
    loop.call_soon_threadsafe(print)


def test_a_zero_image_size_is_refused(tmp_path, capsys):
    code = cli.main(["train", str(DEFAULT_EXPERIMENT), "data.image_size=0", "--workdir", str(tmp_path / "run")])
    assert code == 2 and "data.image_size=0: must be positive" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()
