"""Start JAX's multi-controller runtime: one process per host, all running the same command.

On TPU VMs (and SLURM, Open MPI, Kubernetes) `--distributed` lets `jax.distributed.initialize`
find the coordinator by itself; elsewhere `--coordinator HOST:PORT --num-processes N
--process-id I` name it. Every process then sees all devices of the job, reads its own
shard of the data, and joins every checkpoint; only process 0 writes metrics and results.
Initialisation must come before anything touches a JAX backend.
"""

from __future__ import annotations

import argparse
import re

from patchscale.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("multi-host (one process per host, same command on every host)")
    group.add_argument("--distributed", action="store_true",
                       help="initialise JAX's distributed runtime, detecting the cluster (TPU VM, SLURM, …)")
    group.add_argument("--coordinator", help="HOST:PORT of process 0's coordinator (explicit clusters)")
    group.add_argument("--num-processes", type=int, help="number of processes in the job (with --coordinator)")
    group.add_argument("--process-id", type=int, help="this process's index 0 … N-1 (with --coordinator)")


def initialize(args: argparse.Namespace) -> None:
    """Call `jax.distributed.initialize` as the flags ask; do nothing without them."""
    explicit = [args.coordinator, args.num_processes, args.process_id]
    if not args.distributed and all(v is None for v in explicit):
        return
    if any(v is not None for v in explicit):
        if any(v is None for v in explicit):
            raise UserError("--coordinator, --num-processes and --process-id go together")
        if not re.fullmatch(r"[^:\s]+:\d+", args.coordinator):
            raise UserError(f"--coordinator {args.coordinator!r}: expected HOST:PORT")
        if args.num_processes < 1 or not 0 <= args.process_id < args.num_processes:
            raise UserError(f"--process-id {args.process_id} must be in 0 … {args.num_processes - 1}")
    import jax

    try:
        jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.num_processes,
                                   process_id=args.process_id)
    except (RuntimeError, ValueError) as e:
        raise UserError(f"could not start the distributed runtime: {str(e).splitlines()[0]}") from None
