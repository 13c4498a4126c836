"""Orbax checkpoints of the train state together with the grain iterator state.

Both are saved in one step directory, so a restored run continues with exactly the batches
the uninterrupted run would have drawn. Orbax finalises a step directory only after all of
it is written; a save cut off by SIGKILL leaves a temporary directory that restore ignores.
A finalised step that is damaged afterwards (a disk error, a partial copy) is skipped: the
run resumes from the newest step that restores, and the damaged ones are deleted so that the
run can save those steps again.
"""

from __future__ import annotations

import sys

import grain
import jax
import orbax.checkpoint as ocp
from etils import epath

from patchscale.errors import UserError
from patchscale.progress import console


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


def restore_latest(mngr: ocp.CheckpointManager, abstract_state, data_iterator):
    """(step, state) of the newest readable checkpoint, restoring `data_iterator` in place; (None, None) if none.

    Every process tries the same steps in the same order and fails on the same damaged files
    (they share the directory), so all of them settle on the same step.
    """
    steps = sorted(mngr.all_steps(), reverse=True)
    damaged: list[tuple[int, str]] = []
    for step in steps:
        try:
            state = _restore(mngr, step, abstract_state, data_iterator)
        except Exception as e:  # noqa: BLE001 - any failure to read a step means "try the one before".
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
            console().log(f"patchscale: warning: checkpoint step {step} in {mngr.directory} does not restore"
                  f" ({reason}); trying an older one", file=sys.stderr, flush=True)
            damaged.append((step, reason))
            continue
        _delete(mngr, [s for s, _ in damaged])
        return step, state
    if damaged:
        step, reason = damaged[0]
        raise UserError(f"no checkpoint in {mngr.directory} restores (newest, step {step}: {reason});"
                        " delete the directory to start the run over")
    return None, None


def _delete(mngr: ocp.CheckpointManager, steps: list[int]) -> None:
    """Remove damaged steps (newer than the one restored), so saving those steps again succeeds."""
    for step in steps:
        if jax.process_index() == 0:
            console().log(f"patchscale: warning: deleting damaged checkpoint step {step}", file=sys.stderr, flush=True)
        mngr.delete(step)
    if steps:
        mngr.reload()
