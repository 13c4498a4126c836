"""`patchscale report`: a self-contained HTML page, opened in headless Chromium.

Chromium comes from the Debian packages: installed here when absent (as root with apt-get),
the browser test skipped with the reason only where that is impossible. The screenshot is
kept in .test-artifacts/ (not tracked).
"""

import os
import shutil
import subprocess

import pytest

from tests.conftest import REPO, run_in_process
from tests.helpers import summary_count

CHECK = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.type)), true);
for (const level of ['error', 'warn']) {
  const original = console[level];
  console[level] = (...args) => { window.__errors.push(args.join(' ')); original(...args); };
}
window.addEventListener('load', () => {
  const images = [...document.images];
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0));
  Object.assign(document.body.dataset, {images: images.length, broken: broken.length,
    errors: window.__errors.length, runCount: document.getElementById('run-count').textContent});
});
</script>"""


@pytest.fixture(scope="module")
def chromium():
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], capture_output=True, timeout=900,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        found = shutil.which("chromium")
    if found is None:
        pytest.skip("Chromium is not installed and cannot be installed here (needs root and apt-get)")
    return found


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The report of the committed reference study (21 runs with their metrics), written by the CLI."""
    root = tmp_path_factory.mktemp("report") / "study"
    shutil.copytree(REPO / "results" / "mnist_limited_reference", root)
    return root


def test_the_page_is_self_contained_and_complete(page, capsys):
    done = run_in_process(capsys, "report", page)
    assert done.returncode == 0, done.stderr
    text = (page / "report.html").read_text()
    assert "http://" not in text and "https://" not in text  # Nothing fetched at view time.
    assert f'<span id="run-count">{summary_count(page)}</span>' in text
    assert text.count("<details class=\"run\">") == 21
    assert "convergence:" in text  # Every group's verdict is on the page.
    assert "p*(C)" in text or "compute-optimal" in text or "joint law" in text


def test_the_page_opens_in_headless_chromium(page, chromium, capsys):
    assert run_in_process(capsys, "report", page).returncode == 0
    checked = page / "checked.html"
    checked.write_text((page / "report.html").read_text().replace("<head>", "<head>" + CHECK, 1))
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND"]
    dom = subprocess.run(common + ["--virtual-time-budget=10000", "--dump-dom", checked.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    body = dom[dom.index("<body"):dom.index(">", dom.index("<body"))]
    attributes = dict(part.split("=", 1) for part in body.split()[1:])
    images = int(attributes["data-images"].strip('"'))
    assert images >= 4  # Two patch-size figures, compute views, learning curves.
    assert attributes["data-broken"] == '"0"'  # Every image decodes.
    assert attributes["data-errors"] == '"0"'  # No console errors.
    assert attributes["data-run-count"] == f'"{summary_count(page)}"'
    artifacts = REPO / ".test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / "report_screenshot.png"
    subprocess.run(common + [f"--screenshot={shot}", "--window-size=1200,2400", (page / "report.html").as_uri()],
                   capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000
