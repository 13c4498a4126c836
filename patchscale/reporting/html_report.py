"""`patchscale report DIR`: one self-contained HTML page of a sweep, written next to fit.json.

Everything is inlined (figures as base64 PNG, text as HTML): the page opens from a laptop's
disk, a bucket or an e-mail with no network. It shows:

* the run count (finished, failed, unfinished) and where the page came from;
* the fit table of `patchscale fit` (laws with intervals and diagnostics, convergence
  verdicts, the compute view with p*(C)), from fit.json (refitted if it is missing);
* the sweep's figures (loss and accuracy vs patch size, the compute views);
* learning curves per group: train loss and evaluated test loss against the step for every
  run of the group overlaid (failed and unfinished runs dashed and named so; groups without a
  law claim marked as not converged), baselines as their own panel;
* every run's config, summary and provenance in a collapsed block, opened on demand.
"""

from __future__ import annotations

import base64
import datetime
import html
import io

from etils import epath

from patchscale import provenance, results
from patchscale.analysis import collect
from patchscale.analysis import fit as fit_verb
from patchscale.reporting import figures, fit_table, plots

REPORT_FILE = "report.html"
STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:12px}img{max-width:100%;border:1px solid #ddd}
details{margin:.3em 0}summary{cursor:pointer}.failed{color:#b00}.limited{color:#a60}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"""


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _image(data: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _run_dirs(root: epath.Path) -> list[epath.Path]:
    runs = root / results.RUNS
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.exists() else []


def _curves(group: str, run_dirs: list[epath.Path], limited: bool) -> str:
    """Train and test loss vs step, every run of the group overlaid; failed and unfinished dashed."""
    plt = figures.pyplot()
    fig, (train_ax, test_ax) = plt.subplots(1, 2, figsize=(11, 3.6))
    for run_dir in run_dirs:
        records = [r for r in results.read_metrics(run_dir) if "budget_steps" not in r]
        state = results.status(run_dir)
        style = dict(linestyle="-" if state == "finished" else "--", linewidth=1)
        label = run_dir.name + ("" if state == "finished" else f" ({state})")
        train = [(r["step"], r["train_loss"]) for r in records if "train_loss" in r]
        test = [(r["step"], r["test_loss"]) for r in records if "test_loss" in r]
        if train:
            train_ax.plot(*zip(*train), label=label, **style)
        if test:
            test_ax.plot(*zip(*test), marker="o", markersize=3, label=label, **style)
    for ax, name in ((train_ax, "train loss"), (test_ax, "test loss (evaluations)")):
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
    train_ax.legend(fontsize=6)
    fig.suptitle(group + (" (not converged: no claim about the law)" if limited else ""), fontsize=10)
    data = _png(fig)
    plt.close(fig)
    return _image(data, f"learning curves of {group}")


def _group_of(run_dir: epath.Path, finished: dict[str, str]) -> str:
    """The fit group of a finished run; failed and unfinished runs are grouped by their name's stem."""
    if run_dir.name in finished:
        return finished[run_dir.name]
    stem = run_dir.name.rsplit("-s", 1)[0]
    return f"not finished: {stem}"


def _run_details(run_dir: epath.Path) -> str:
    parts = []
    for name in (results.CONFIG, results.SUMMARY, results.FAILED, results.POINT):
        path = run_dir / name
        if path.exists():
            parts.append(f"<p>{name}</p><pre>{html.escape(path.read_text())}</pre>")
    state = results.status(run_dir)
    css = ' class="failed"' if state == "failed" else ""
    return (f'<details class="run"><summary{css}>{html.escape(run_dir.name)} ({state})</summary>'
            + "".join(parts) + "</details>")


def write_report(results_dir, out=None) -> str:
    """Write the page (atomically) and return its path."""
    root = epath.Path(results_dir)
    runs, warnings = collect.load(results_dir)
    fit_file = root / fit_verb.FIT_FILE
    payload = results.read_json(fit_file) if fit_file.exists() else fit_verb.fit_results(results_dir)
    figure_files = sorted(root.glob("*.png"))
    if not figure_files and runs:
        plots.plot_results(results_dir)
        figure_files = sorted(root.glob("*.png"))
    run_dirs = _run_dirs(root)
    states = {d.name: results.status(d) for d in run_dirs}
    finished = {r.name: ("baselines" if r.baseline else r.group) for r in runs}
    by_group: dict[str, list[epath.Path]] = {}
    for run_dir in run_dirs:
        by_group.setdefault(_group_of(run_dir, finished), []).append(run_dir)
    claims = {group: entry.get("law_claim", True) for group, entry in payload.get("fits", {}).items()}

    count = sum(state == "finished" for state in states.values())
    failed = [name for name, state in states.items() if state == "failed"]
    sweep = results.read_json(root / "sweep.json") or {}
    title = sweep.get("experiment") or root.name
    body = [f"<h1>{html.escape(title)}: patch-size sweep report</h1>",
            f'<p>Runs: <span id="run-count">{count}</span> finished, {len(failed)} failed,'
            f" {len(states) - count - len(failed)} unfinished. Generated"
            f" {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')} at commit"
            f" {html.escape(provenance.git_commit() or 'unknown')} by <code>patchscale report"
            f" {html.escape(str(results_dir))}</code>.</p>"]
    if failed:
        body.append('<p class="failed">Failed: ' + ", ".join(html.escape(n) for n in failed) + "</p>")
    body += [f"<p class='limited'>{html.escape(w)}</p>" for w in warnings]
    body += ["<h2>Fits</h2>", f"<pre>{html.escape(fit_table.table(payload))}</pre>", "<h2>Figures</h2>"]
    body += [_image(base64.b64encode(path.read_bytes()).decode("ascii"), path.stem) for path in figure_files]
    body.append("<h2>Learning curves</h2>")
    for group, members in sorted(by_group.items()):
        body.append(_curves(group, members, not claims.get(group, True)))
    body.append("<h2>Runs</h2>")
    body += [_run_details(run_dir) for run_dir in run_dirs]
    page = ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)} report</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    path = epath.Path(out) if out else root / REPORT_FILE
    results.write_text_atomic(path, page)
    return str(path)
