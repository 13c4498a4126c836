"""Orbax checkpoints of the train state together with the grain iterator state.

Both are saved in one step directory, so a restored run continues with exactly the batches
the uninterrupted run would have drawn. Orbax finalises a step directory only after all of
it is written; a save cut off by SIGKILL leaves a temporary directory that restore ignores.
"""

from __future__ import annotations

import grain
import orbax.checkpoint as ocp
from etils import epath


def manager(directory, keep: int) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    return ocp.CheckpointManager(epath.Path(directory).absolute(), options=options,
                                 item_names=("state", "data"))


def save(mngr: ocp.CheckpointManager, step: int, state, data_iterator) -> None:
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                            data=grain.checkpoint.CheckpointSave(data_iterator)),
              force=True)


def restore_latest(mngr: ocp.CheckpointManager, abstract_state, data_iterator):
    """(step, state) of the newest checkpoint, restoring `data_iterator` in place; (None, None) if none."""
    step = mngr.latest_step()
    if step is None:
        return None, None
    restored = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=grain.checkpoint.CheckpointRestore(data_iterator)))
    return step, restored.state
