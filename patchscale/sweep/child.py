"""One run of a `--workers` sweep, in its own process: `python -m patchscale.sweep.child RESULTS EXPERIMENT NAME`.

The parent (workers.py) writes the pickled point (name, overrides, resolved config) to this
process's stdin, so nothing is re-read, re-expanded or re-validated here: the run is exactly the
one the parent expanded. It goes through `runner.run_point`, the serial sweep's path, and the
exit code tells the parent how it ended (0 finished, 1 failed, 2 user error, 74 environment
error, 75 preempted: the codes of `patchscale`).
"""

from __future__ import annotations

import pickle
import sys

from patchscale.errors import UserError
from patchscale.sweep import pinning


def main(argv: list[str] | None = None) -> int:
    try:
        pinning.pin_from_environment()  # First: before anything starts jax's threads.
    except UserError as e:  # Exit 2, like `patchscale`: the parent stops the queue.
        print(f"patchscale: error: {e}", file=sys.stderr)
        return 2
    # Imported after pinning, for that reason.
    from patchscale import cli, compile_cache
    from patchscale.sweep import runner

    results_dir, experiment, name = argv if argv is not None else sys.argv[1:]

    def run() -> int:
        point = pickle.load(sys.stdin.buffer)
        if point.name != name:
            raise UserError(f"the point on stdin is {point.name!r}, not {name!r}")
        compile_cache.enable()
        return 0 if runner.run_point(point, results_dir, experiment) == "finished" else 1

    return cli.guarded(run)


if __name__ == "__main__":
    sys.exit(main())
