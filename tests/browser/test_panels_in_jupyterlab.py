"""The panels for real: JupyterLab in headless chromium, no network.

A store with runs, two deployed versions and drifted predictions; ``jupyter lab`` (token
auth) on 127.0.0.1; a notebook whose cells display the three panels through the magics.
The test runs every cell, sees the three panels and their charts drawn (a canvas or an
SVG inside each chart, no console error about a script, a module or a widget view),
screenshots each panel, clicks Rollback in the DeployPanel and Confirm, and checks over
HTTP that the endpoint now answers with the previous version (``X-Model-Version``). Then it
opens the repository's executed ``notebooks/04-panels.ipynb`` without running it: each panel
shows its stored static view (SVG images, tables).

Screenshots land in ``test-artifacts/browser/``; with ``MLOPS_UPDATE_SCREENSHOTS=1`` one
per panel is also copied to ``docs/screenshots/`` (the README's).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from harness import (  # noqa: F401 (fixtures)
    ALL_RAN,
    CHART_COLOURS_JS,
    KERNEL_IDLE,
    THEMES,
    artifacts,
    axe_serious,
    browser,
    browser_page,
    chart_colours,
    jupyter_lab,
    low_contrast,
    script_failures,
    set_theme,
    write_notebook,
)
from playwright.sync_api import TimeoutError as PlaywrightTimeout

pytestmark = pytest.mark.browser

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "04-panels.ipynb"  # executed, outputs stored
CELLS = [
    "%load_ext mlops_jupyter\n%mlops init --tenant acme --experiment sweep",
    "%mlops runs",
    "%mlops drift iris",
    "%mlops panel deploy iris",
]
PANELS = {"comparison": ".mlops-comparison", "drift": ".mlops-drift", "deploy": ".mlops-deploy-panel"}

ERROR_OUTPUTS = """() => {
  const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
  const out = [];
  for (let i = 0; i < cells.length; i++) {
    for (const o of cells.get(i).toJSON().outputs || []) {
      if (o.output_type === 'error') out.push(o.ename + ': ' + o.evalue);
    }
  }
  return out;
}"""


#: highlighted rows of the panels: best run, selected runs, the live version
HIGHLIGHTS = ", ".join(f"{p} tr.{c}" for p in PANELS.values() for c in ("best", "selected", "live"))


def check_theme(page, theme: str) -> None:
    """Highlighted rows of every panel readable (WCAG AA 4.5:1); no serious axe violation."""
    n, low = low_contrast(page, HIGHLIGHTS)
    violations = {sel: axe_serious(page, sel) for sel in PANELS.values()}
    assert n >= 3 and low == [], (theme, n, low)
    assert all(v == [] for v in violations.values()), (theme, violations)


#: the charts of the panels: 1 in the comparison, 3 in the drift panel, 1 in the deploy panel
CHARTS, N_CHARTS = ", ".join(f"{p} .mlops-chart" for p in PANELS.values()), 5
#: WCAG luminance bounds of a chart's background and axis labels in each theme
CHART_OK = {
    THEMES[0]: "(c) => c !== null && c.bg > 0.5 && c.ink !== null && c.ink < 0.2",
    THEMES[1]: "(c) => c !== null && c.bg < 0.2 && c.ink !== null && c.ink > 0.4",
}


def charts_follow(page, theme: str) -> None:
    """Every chart of the panels drawn for ``theme``: in Dark on the dark page (no white
    box) with light axis labels, in Light the reverse. The kernel redraws its panels' charts
    when the lab tells it the theme changed: wait for that (bounded), then check."""
    ok = CHART_OK[theme]
    done = f"(sel) => {{ const c = ({CHART_COLOURS_JS})(sel); return c.length === {N_CHARTS} && c.every({ok}); }}"
    try:
        page.wait_for_function(done, arg=CHARTS, timeout=20_000)
    except PlaywrightTimeout:
        raise AssertionError(f"charts not drawn for {theme} within 20 s: {chart_colours(page, CHARTS)}") from None
    colours = chart_colours(page, CHARTS)
    assert len(colours) == N_CHARTS and page.evaluate(f"(c) => c.every({ok})", colours), (theme, colours)


def both_themes(page, artifacts: Path) -> None:
    """The panels in JupyterLab Light (as drawn) and Dark (screenshots of each), then Light again."""
    check_theme(page, THEMES[0])
    charts_follow(page, THEMES[0])
    set_theme(page, THEMES[1])
    check_theme(page, THEMES[1])
    charts_follow(page, THEMES[1])  # drawn in Light, redrawn in Dark: no white chart box
    for name, sel in PANELS.items():
        panel = page.locator(sel)
        panel.scroll_into_view_if_needed()
        panel.screenshot(path=str(artifacts / f"{name}-panel-dark.png"))
    set_theme(page, THEMES[0])
    charts_follow(page, THEMES[0])


def reopen_after_a_kernel_restart(page, lab, artifacts: Path) -> None:
    """Save, restart the kernel, reopen: no "model not found", every panel shows its saved
    static view with the note that the live panel comes back when the cell runs."""
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=20_000)
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.restart()")
    page.goto(lab.page_url("panels.ipynb"))
    page.wait_for_function(KERNEL_IDLE, timeout=30_000)
    fallback = page.locator(".jp-OutputArea-output .jp-MLOps-staticFallback")
    fallback.nth(2).wait_for(timeout=30_000)
    assert fallback.count() == 3
    for i in range(3):
        view = fallback.nth(i)
        view.locator(".mlops-static img[src^='data:image/svg+xml']").first.wait_for(timeout=10_000)
        assert "Run the cell" in view.inner_text() or "run this cell" in view.inner_text()
    assert page.get_by_text("Error displaying widget").count() == 0
    fallback.first.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "reopened.png"))


def navigated_away(request) -> bool:
    """An API call cut short because the test opened another page (not a failed script)."""
    return request.failure == "net::ERR_ABORTED" and request.resource_type in ("fetch", "xhr")


def served_version(home: Path, X) -> str:
    """One prediction over plain HTTP; the version the gateway says answered it."""
    from mlops_jupyter.deployment import tokens as auth

    info = json.loads((home / "gateway.json").read_text())
    body = json.dumps({"dataframe_split": {"columns": list(X.columns), "data": X.head(1).values.tolist()}})
    conn = http.client.HTTPConnection("127.0.0.1", info["port"], timeout=30)
    try:
        conn.request(
            "POST",
            "/tenants/acme/production/models/iris/invocations",
            body=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {auth.tenant_token(home, 'acme')}"},
        )
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        return resp.getheader("X-Model-Version")
    finally:
        conn.close()


def test_panels_render_and_rollback_works_in_jupyterlab(browser, artifacts, tmp_path_factory, template_db):
    from conftest import gateway_home
    from panel_data import seed_panel_store

    t0 = time.monotonic()
    root, work = tmp_path_factory.mktemp("lab-root"), tmp_path_factory.mktemp("lab-work")
    write_notebook(root / "panels.ipynb", CELLS)
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    with gateway_home(tmp_path_factory, template_db, "browser") as home:
        data = seed_panel_store(home, n_runs=40, n_predictions=2000)
        assert served_version(home, data["X"]) == "1.1.0"
        env = {"MLOPS_HOME": str(home), "MLOPS_TENANT": "acme"}
        with (
            jupyter_lab(root, work, env) as lab,
            browser_page(browser, artifacts, "panels", width=1400, height=2200, full_page=True) as (page, messages),
        ):
            # tall enough that each panel fits on screen whole (element screenshots of a
            # panel taller than JupyterLab's scrolling notebook come out cropped)
            page.on(
                "requestfailed",
                lambda r: None if navigated_away(r) else messages.append(f"requestfailed: {r.url} {r.failure}"),
            )
            page.goto(lab.page_url("panels.ipynb"))
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=30_000)
            page.wait_for_function(KERNEL_IDLE, timeout=30_000)
            page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_function(ALL_RAN, arg=len(CELLS), timeout=60_000)
            assert page.evaluate(ERROR_OUTPUTS) == []

            for name, sel in PANELS.items():
                panel = page.locator(sel)
                panel.wait_for(timeout=20_000)
                charts = panel.locator(".mlops-chart")
                assert charts.count() >= 1
                for i in range(charts.count()):  # every chart drawn: vega-embed's canvas or svg
                    charts.nth(i).locator("canvas, svg.marks").first.wait_for(timeout=20_000)
                panel.scroll_into_view_if_needed()
                panel.screenshot(path=str(artifacts / f"{name}-panel.png"))

            table = page.locator(".mlops-comparison .mlops-table tbody tr")
            assert table.count() == 25 and "best" in (table.first.get_attribute("class") or "")
            both_themes(page, artifacts)
            assert "drift detected" in page.locator(".mlops-drift").inner_text()
            assert "1.1.0 100%" in page.locator(".mlops-deploy-panel").inner_text()

            deploy = page.locator(".mlops-deploy-panel")
            deploy.locator("button.mlops-rollback").click()
            confirm = deploy.locator("button.mlops-confirm")
            confirm.wait_for(state="visible", timeout=10_000)
            assert "Roll back iris in production" in deploy.inner_text()
            assert served_version(home, data["X"]) == "1.1.0"  # nothing happens before Confirm
            deploy.screenshot(path=str(artifacts / "deploy-panel-confirm.png"))
            confirm.click()
            status = deploy.locator(".mlops-status")
            status.get_by_text("Rolled back").wait_for(timeout=30_000)
            assert "now 1.0.0 100%" in status.inner_text()
            # the view reloads from the store: the lineage chart now shows 1.0.0 serving everywhere
            deploy.locator(".mlops-chart svg text").get_by_text("production 100%, staging 100%").wait_for(
                timeout=20_000
            )
            assert "1.0.0 100%" in deploy.locator(".widget-html-content table").first.inner_text()
            assert {served_version(home, data["X"]) for _ in range(5)} == {"1.0.0"}
            deploy.screenshot(path=str(artifacts / "deploy-panel-after-rollback.png"))
            page.screenshot(path=str(artifacts / "notebook.png"), full_page=True)
            reopen_after_a_kernel_restart(page, lab, artifacts)

            # the executed notebook of the repository, opened without running it: each
            # panel shows its static view (SVG images and tables), nothing is fetched
            page.goto(lab.page_url("04-panels.ipynb"))
            static = page.locator(".jp-OutputArea-output .mlops-static")
            static.nth(2).wait_for(timeout=30_000)
            assert static.count() == 3
            for i in range(3):
                img = static.nth(i).locator("img[src^='data:image/svg+xml']").first
                img.wait_for(timeout=10_000)
                assert img.evaluate("i => i.complete && i.naturalWidth > 100")
            static.nth(2).scroll_into_view_if_needed()
            page.screenshot(path=str(artifacts / "static-views.png"))
    if os.environ.get("MLOPS_UPDATE_SCREENSHOTS"):
        DOCS.mkdir(parents=True, exist_ok=True)
        for shot in ("comparison-panel.png", "drift-panel.png", "deploy-panel-confirm.png"):
            shutil.copy(artifacts / shot, DOCS / shot.replace("-confirm", ""))  # deploy: asking to confirm
        for name in PANELS:
            shutil.copy(artifacts / f"{name}-panel-dark.png", DOCS / f"{name}-panel-dark.png")
        shutil.copy(artifacts / "reopened.png", DOCS / "reopened-notebook.png")
    elapsed = time.monotonic() - t0
    print(f"browser flow: {elapsed:.1f} s")
