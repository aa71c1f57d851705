"""A report opens with no network and no kernel: headless chromium, every request that is
not a ``file:``/``data:`` URL aborted, and the charts and the panel's static view are there.

The report is made by the real CLI (``mlops-jupyter report``) on the test's store; the
screenshot lands in ``test-artifacts/browser/report-offline.png``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

# artifacts and browser are fixtures (tests/browser/harness.py)
from harness import artifacts, browser, write_notebook  # noqa: F401

pytestmark = pytest.mark.browser


def test_report_html_renders_offline_with_charts_and_panel_views(home, tmp_path, browser, artifacts):
    nb = write_notebook(
        tmp_path / "offline.ipynb",
        [
            "%load_ext mlops_jupyter\n%mlops init --tenant acme --experiment sweep",
            (
                "from mlops_jupyter import create_experiment_tracker\n"
                "t = create_experiment_tracker(tenant_id='acme')\n"
                "for i in range(4):\n"
                "    with t.start_experiment('sweep', run_name=f'run-{i}'):\n"
                "        t.log_params({'depth': i}); t.log_metrics({'accuracy': 0.7 + i / 20})"
            ),
            "%mlops runs",
            (
                "import altair as alt, pandas as pd\n"
                "alt.Chart(pd.DataFrame({'step': range(10), 'loss': [1 / (s + 1) for s in range(10)]}))"
                ".mark_line().encode(x='step', y='loss')"
            ),
        ],
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "mlops_jupyter.cli", "report", str(nb), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    html = out / "offline.html"

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    blocked: list[str] = []
    failed: list[str] = []
    console: list[str] = []

    def route(r):
        if r.request.url.startswith(("file:", "data:", "blob:", "about:")):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("requestfailed", lambda req: failed.append(f"{req.url} {req.failure}"))
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
    try:
        page.goto(html.as_uri(), wait_until="load")
        page.wait_for_timeout(300)
        svg_imgs = page.locator("img[src^='data:image/svg+xml']")
        assert svg_imgs.count() >= 2  # the panel's static chart(s) and the altair chart
        assert page.locator(".mlops-static").count() == 1 and page.locator("text=run-3").count() >= 1
        # every image decoded (a broken image has naturalWidth 0)
        assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        page.screenshot(path=str(artifacts / "report-offline.png"), full_page=True)
    finally:
        page.close()
    assert blocked == [] and failed == [], (blocked, failed)
    assert console == []
