#!/usr/bin/env bash
# One command for a sweep on an accelerator machine without network (issue 27: experiments/mnist_rich_32.py).
#
#   scripts/device_sweep.sh EXPERIMENT OUT [key=value ...]
#
# Needs, in the repository root (both ignored by git: `echo /.whl/ >> .git/info/exclude`, same for /.data/):
#   .whl/   the wheels the machine lacks (scripts/device_wheels.sh .whl)
#   .data/  the prepared embedded MNIST (`patchscale data prepare mnist --data-dir .data`, 24 MB)
#   and optionally OUT_PREVIOUS=path/to/results.tgz: an earlier call's results, to resume from.
# Writes to OUT: results.tgz (every run's small files and checkpoints, fit.json, plots, report),
# sweep.log, and fit.txt (the table). The sweep gets SWEEP_SECONDS (default 480) and is then sent
# SIGTERM, so its runs checkpoint and the results are packed before the call's own limit; the
# same command given that results.tgz (OUT_PREVIOUS) skips finished runs and resumes partial ones.
set -uo pipefail
experiment=${1:?usage: scripts/device_sweep.sh EXPERIMENT OUT [key=value ...]}
out=${2:?usage: scripts/device_sweep.sh EXPERIMENT OUT [key=value ...]}
shift 2
cd "$(dirname "$0")/.."
[ -d .data ] || { echo "device_sweep: no .data/ (prepare it: patchscale data prepare mnist --data-dir .data)" >&2; exit 2; }
mkdir -p "$out"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "device_sweep: installing .whl/ failed" >&2; exit 2; }
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
work=$(mktemp -d)
if [ -n "${OUT_PREVIOUS:-}" ]; then
    tar xzf "$OUT_PREVIOUS" -C "$work" || { echo "device_sweep: cannot read $OUT_PREVIOUS" >&2; exit 2; }
fi
export PYTHONUNBUFFERED=1 PATCHSCALE_PROGRESS=plain
timeout --signal=TERM --kill-after=60 "${SWEEP_SECONDS:-480}" \
    python3 -m patchscale.cli sweep "$experiment" "data.data_dir=$PWD/.data" --results "$work/results" "$@" \
    2>&1 | tee "$out/sweep.log"
status=${PIPESTATUS[0]}
if [ -f "$work/results/fit.json" ]; then
    python3 -m patchscale.cli fit "$work/results" > "$out/fit.txt" 2>&1
fi
[ -d "$work/results" ] && tar czf "$out/results.tgz" --exclude=tensorboard -C "$work" results
echo "device_sweep: sweep exit code $status; results in $out/results.tgz"
exit "$status"
