"""Sweeps: an experiment's points, run serially or by several worker processes, with their bookkeeping.

* points.py: expand an experiment file into named runs (`product`, `expand`), shards, `--only`;
* runner.py: the results directory's lock and manifest, and the serial runner (`run`, `run_point`);
* workers.py and child.py: `--workers N`, each run in a child process pinned to its cores (pinning.py);
* cost.py: FLOPs for the ETA and `--dry-run`'s table.

`patchscale sweep` (cli.py) is a thin verb over these. Experiment files import `product` from here.
"""

from patchscale.sweep.points import Point, expand, product, run_name

__all__ = ["Point", "expand", "product", "run_name"]
