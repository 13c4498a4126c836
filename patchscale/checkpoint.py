"""Orbax checkpoints of the train state together with the grain iterator state.

Both are saved in one step directory, so a restored run continues with exactly the batches
the uninterrupted run would have drawn. Orbax finalises a step directory only after all of
it is written; a save cut off by SIGKILL leaves a temporary directory that restore ignores.
A finalised step that is damaged afterwards (a disk error, a partial copy) is skipped: the
run resumes from the newest step that restores, and the damaged ones are deleted so that the
run can save those steps again. A step that reads but whose arrays differ from the digest
written when it was saved (checkpoint_index.py) is treated the same way.
"""

from __future__ import annotations

import logging
import re
import sys

import grain
import jax
import orbax.checkpoint as ocp
from etils import epath

from patchscale.errors import UserError
from patchscale.progress import console


class _WithoutOrbaxRecords(logging.Filter):
    """Orbax logs through absl, with tracebacks, what it also raises (a failed background save, a
    damaged step), and its event loop logs the same errors again ("exception was never
    retrieved"); the run reports them itself, in one line, so these records stay off stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _in_orbax(record.pathname):
            return False
        tb = record.exc_info[2] if record.exc_info else None
        while tb is not None:
            if _in_orbax(tb.tb_frame.f_code.co_filename):
                return False
            tb = tb.tb_next
        return True


def _in_orbax(path: str) -> bool:
    return "/orbax/" in path.replace("\\", "/")


for _name in ("absl", "asyncio"):
    logging.getLogger(_name).addFilter(_WithoutOrbaxRecords())


def _without_closed_loop_callbacks(previous):
    """After a failed save orbax closes its event loop while tensorstore still completes the other
    writes; each completion calls into the closed loop from C++ and prints a traceback. Only
    those (a traceback that starts in `call_soon_threadsafe`) are dropped."""

    def hook(kind, value, tb):
        if not _closed_loop_callback(kind, tb):
            previous(kind, value, tb)

    return hook


def _without_closed_loop_unraisables(previous):
    def hook(unraisable):
        if not _closed_loop_callback(unraisable.exc_type, unraisable.exc_traceback):
            previous(unraisable)

    return hook


def _closed_loop_callback(kind, tb) -> bool:
    return kind is RuntimeError and tb is not None and tb.tb_frame.f_code.co_name == "call_soon_threadsafe"


sys.excepthook = _without_closed_loop_callbacks(sys.excepthook)
sys.unraisablehook = _without_closed_loop_unraisables(sys.unraisablehook)


def manager(directory, keep: int) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    return ocp.CheckpointManager(epath.Path(directory).absolute(), options=options,
                                 item_names=("state", "data"))


def save(mngr: ocp.CheckpointManager, step: int, state, data_iterator) -> None:
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                            data=grain.checkpoint.CheckpointSave(data_iterator)),
              force=True)


def _restore(mngr, step: int, abstract_state, data_iterator):
    restored = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=grain.checkpoint.CheckpointRestore(data_iterator)))
    return restored.state


def restore_latest(mngr: ocp.CheckpointManager, abstract_state, data_iterator, verify=None):
    """(step, state) of the newest readable checkpoint, restoring `data_iterator` in place; (None, None) if none.

    `verify(step, state)` returns why a step that read is still wrong (None when it is right).

    Every process tries the same steps in the same order and fails on the same damaged files
    (they share the directory), so all of them settle on the same step.
    """
    steps = sorted(mngr.all_steps(), reverse=True)
    damaged: list[tuple[int, str]] = []
    for step in steps:
        try:
            state = _restore(mngr, step, abstract_state, data_iterator)
        except Exception as e:  # noqa: BLE001 - any failure to read a step means "try the one before".
            reason = _reason(e)
            console().log(f"patchscale: warning: checkpoint step {step} in {mngr.directory} does not restore"
                  f" ({reason}); trying an older one", file=sys.stderr, flush=True)
            damaged.append((step, reason))
            continue
        wrong = verify(step, state) if verify is not None else None
        if wrong is not None:
            console().log(f"patchscale: warning: checkpoint step {step} in {mngr.directory} is damaged ({wrong});"
                          " trying an older one", file=sys.stderr, flush=True)
            damaged.append((step, wrong))
            continue
        _delete(mngr, [s for s, _ in damaged])
        return step, state
    if damaged:
        step, reason = damaged[0]
        raise UserError(f"no checkpoint in {mngr.directory} restores (newest, step {step}: {reason});"
                        " delete the directory to start the run over")
    return None, None


def _reason(e: Exception) -> str:
    """The first line of the innermost cause, without object reprs (`<bound method … of TensorStore(…`).

    Orbax wraps tensorstore's error ("OUT_OF_RANGE: Error reading … in OCDBT database …") in one
    whose first line ends in a pybind11 repr that says nothing.
    """
    while e.__cause__ is not None:
        e = e.__cause__
    text = str(e).splitlines()[0] if str(e) else ""
    pattern = r"<[^<>]*(?: at 0x[0-9a-fA-F]+|bound method|built-in method)[^<>]*>"
    while re.search(pattern, text):  # Innermost first: reprs nest (`<bound method … of <… at 0x…>>`).
        text = re.sub(pattern, "…", text)
    text = re.sub(r"(?:See full \w+ details: )?<(?:bound|built-in) method.*$", "…", text)  # Cut off unclosed.
    return f"{type(e).__name__}: {text}"[:300]


def _delete(mngr: ocp.CheckpointManager, steps: list[int]) -> None:
    """Remove damaged steps (newer than the one restored), so saving those steps again succeeds."""
    for step in steps:
        if jax.process_index() == 0:
            console().log(f"patchscale: warning: deleting damaged checkpoint step {step}", file=sys.stderr, flush=True)
        mngr.delete(step)
    if steps:
        mngr.reload()
