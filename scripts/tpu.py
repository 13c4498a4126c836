"""Create a Cloud TPU VM (or slice), install patchscale on every worker, and run a sweep on all of them.

    python scripts/tpu.py create  --name ps-v5e --zone us-west4-a --type v5litepod-16 [--spot]
    python scripts/tpu.py install --name ps-v5e --zone us-west4-a --repo GIT_URL --ref main
    python scripts/tpu.py sweep   --name ps-v5e --zone us-west4-a \\
        --experiment experiments/paper_deit_b_64.py --results gs://BUCKET/patchscale/paper_deit_b_64 \\
        -- data.data_dir=gs://BUCKET/tensorflow_datasets
    python scripts/tpu.py delete  --name ps-v5e --zone us-west4-a

Each verb prints the `gcloud` command it would run; add `--run` to run it. A slice runs one
process per worker (`--worker=all`) and `patchscale sweep --distributed` joins them into one
JAX job (the TPU runtime finds the coordinator). `sweep` first runs `patchscale sweep --preflight`
on every worker (data, results bucket, mesh, compiled memory; seconds to a minute) and starts the
sweep only if it passes; `--no-preflight` skips it. Results and checkpoints go to the gs:// path,
so a preempted slice (exit code 75 or a lost VM) resumes by running the `sweep` verb again,
after `create` + `install` for a lost one.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

DEFAULT_VERSION = "v2-alpha-tpuv5-lite"  # TPU software image; pick the one matching --type (gcloud docs).


def _ssh(args, remote: str) -> list[str]:
    return ["gcloud", "compute", "tpus", "tpu-vm", "ssh", args.name, f"--zone={args.zone}", "--worker=all",
            f"--command={remote}"]


def commands(args: argparse.Namespace) -> list[list[str]]:
    """The gcloud command lines for one verb (pure: tested without gcloud)."""
    if args.verb == "create":
        cmd = ["gcloud", "compute", "tpus", "tpu-vm", "create", args.name, f"--zone={args.zone}",
               f"--accelerator-type={args.type}", f"--version={args.version}"]
        return [cmd + (["--spot"] if args.spot else [])]
    if args.verb == "delete":
        return [["gcloud", "compute", "tpus", "tpu-vm", "delete", args.name, f"--zone={args.zone}", "--quiet"]]
    if args.verb == "install":
        remote = (f"set -e; [ -d patchscale ] || git clone {shlex.quote(args.repo)} patchscale; cd patchscale;"
                  f" git fetch -q origin; git checkout -q {shlex.quote(args.ref)};"
                  " python3 -m venv .venv; . .venv/bin/activate; pip install -q -e '.[tpu]'")
        return [_ssh(args, remote)]
    if args.verb == "sweep":
        if not args.results.startswith("gs://"):
            raise SystemExit(f"tpu.py: --results {args.results!r}: use a gs:// path, which every worker can reach")
        sweep = ["patchscale", "sweep", args.experiment, "--distributed", "--results", args.results, *args.overrides]
        steps = [sweep] if args.no_preflight else [sweep + ["--preflight"], sweep]
        return [_ssh(args, f"cd patchscale && . .venv/bin/activate && {shlex.join(step)}") for step in steps]
    raise SystemExit(f"tpu.py: unknown verb {args.verb!r}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("verb", choices=["create", "install", "sweep", "delete"])
    p.add_argument("--name", required=True, help="TPU VM name")
    p.add_argument("--zone", required=True, help="e.g. us-west4-a")
    p.add_argument("--type", default="v5litepod-8", help="accelerator type (create)")
    p.add_argument("--version", default=DEFAULT_VERSION, help="TPU software version (create)")
    p.add_argument("--spot", action="store_true", help="spot capacity: cheaper, preemptible (create)")
    p.add_argument("--repo", help="git URL of your patchscale repository (install)")
    p.add_argument("--ref", default="main", help="branch, tag or commit to install (install)")
    p.add_argument("--experiment", help="experiment file inside the repository (sweep)")
    p.add_argument("--results", help="gs:// results directory shared by all workers (sweep)")
    p.add_argument("--no-preflight", action="store_true",
                   help="start the sweep without first running `patchscale sweep --preflight` on every worker (sweep)")
    p.add_argument("--run", action="store_true", help="run the commands instead of printing them")
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    """Everything after `--` is config overrides for every run of the sweep."""
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser().parse_args(argv[:split])
    args.overrides = argv[split + 1:]
    return args


def main(argv=None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.verb == "sweep" and not (args.experiment and args.results):
        raise SystemExit("tpu.py: sweep needs --experiment and --results")
    if args.verb == "install" and not args.repo:
        raise SystemExit("tpu.py: install needs --repo (the git URL every worker clones)")
    for cmd in commands(args):
        print(shlex.join(cmd), flush=True)
        if args.run:
            done = subprocess.run(cmd)
            if done.returncode:
                return done.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
