"""The MLOps sidebar for real: JupyterLab (token auth, 127.0.0.1) in headless chromium.

The server extension is enabled only by the config file the package installs, and the
prebuilt labextension is the one `make test` builds. A seeded store (tests/conftest.py
``seed_mlops_store``: experiments, runs, model iris 1.0.0 -> 1.2.0, production split
50/50 between 1.0.0 and 1.1.0). The test opens the sidebar from its tab, sees the
experiments, runs (with details), models (with lineage) and deployments, runs the palette
commands in a notebook (cell autolog on in the kernel, a ``%mlops runs`` cell inserted),
clicks Rollback, confirms the dialog, and checks over HTTP that the endpoint now serves the
previous version (``X-Model-Version``).

Screenshots land in ``test-artifacts/browser/``; with ``MLOPS_UPDATE_SCREENSHOTS=1`` the
sidebar's is also copied to ``docs/screenshots/mlops-sidebar.png`` (the README's).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

# artifacts and browser are fixtures (tests/browser/harness.py, shared with the panels' test)
from harness import (  # noqa: F401
    KERNEL_IDLE,
    THEMES,
    artifacts,
    axe_serious,
    browser,
    browser_page,
    jupyter_lab,
    low_contrast,
    script_failures,
    set_theme,
    write_notebook,
)

pytestmark = pytest.mark.browser

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SIDEBAR = "#mlops-sidebar"
PROD = f'{SIDEBAR} .jp-MLOps-deployment[data-model="iris"][data-environment="production"]'
CELL_SOURCES = """() => {
  const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
  const out = [];
  for (let i = 0; i < cells.length; i++) out.push(cells.get(i).sharedModel.getSource());
  return out;
}"""


def served_versions(seeded: dict, n: int = 6) -> set[str]:
    from conftest import Http, path, split_body

    c = Http(seeded["port"], seeded["token"])
    try:
        out = set()
        for i in range(n):
            status, headers, _ = c.call(
                "POST",
                path("iris", "production"),
                split_body([[5.1, 3.5, 1.4, 0.2]]),
                headers={"X-Request-Key": f"k{i}"},
            )
            assert status == 200
            out.add(headers["x-model-version"])
        return out
    finally:
        c.close()


MLFLOW_UI = "http://127.0.0.1:5999"


def stepped_run(home: Path, cell_id: str) -> str:
    """A notebook session of ``baseline`` (the newest experiment) and, under it, the run of
    the notebook's first cell (as cell autolog makes them) with metrics logged over 5 steps."""
    from mlops_jupyter import create_experiment_tracker

    t = create_experiment_tracker(tenant_id="acme", storage_path=home)
    session = t.start_experiment("baseline", run_name="work", tags={"mlops.kind": "session", "mlops.notebook": "work"})
    cell = create_experiment_tracker(tenant_id="acme", storage_path=home)
    tags = {"mlops.kind": "cell", "mlops.cell_id": cell_id, "mlops.execution_count": "1", "mlops.notebook": "work"}
    run = cell.start_experiment("baseline", run_name="epochs", tags=tags, parent_run_id=session.run_id)
    for step in range(5):
        cell.log_metrics({"loss": 1.0 / (step + 1), "accuracy": 0.5 + step / 10, "cell_duration_s": 0.1}, step=step)
    cell.log_text("x = 1", "cell.py")
    cell.end_experiment()
    t.end_experiment()
    for tr in (cell, t):
        tr.flush()
    assert session.run_id != run.run_id
    return run.run_id


def tab_to(page, key: str, limit: int = 40) -> None:
    """Press Tab until the focused element is the sidebar control ``key`` (bounded)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement && document.activeElement.dataset.focusKey") == key:
            return
    raise AssertionError(f"{key} is not reachable with Tab within {limit} presses")


def keyboard_and_step_charts(page, sidebar, epochs: str) -> None:
    """Experiments, runs, models and drift items open with Tab and Enter; the run's detail
    has a line chart per stepped metric and links to its MLflow page."""
    sidebar.locator(".jp-MLOps-refresh").focus()
    tab_to(page, "exp:baseline")
    page.keyboard.press("Enter")
    sidebar.get_by_text("Recent runs of baseline").wait_for(timeout=10_000)
    run = sidebar.locator(f'.jp-MLOps-run[data-run="{epochs}"]')
    run.wait_for(timeout=10_000)
    assert run.locator(".jp-MLOps-metric").first.inner_text().startswith("accuracy")  # not cell_duration_s
    sidebar.locator('[data-focus-key="exp:baseline"]').focus()
    tab_to(page, f"run:{epochs}")
    page.keyboard.press("Enter")
    chart = run.locator('figure[data-metric="loss"] svg[role="img"] path.jp-MLOps-line')
    chart.wait_for(timeout=10_000)
    assert run.locator('figure[data-metric="accuracy"]').count() == 1
    assert run.locator('[role="button"]').first.get_attribute("aria-expanded") == "true"
    assert run.locator(".jp-MLOps-source").inner_text() == "x = 1"  # the cell's source
    session = sidebar.locator(".jp-MLOps-session")
    assert "Session work" in session.inner_text() and "1 cell run" in session.inner_text()
    assert "running" not in session.inner_text()
    # `cell [1]` scrolls the notebook to that cell (the inserted cell below it is active now)
    assert page.evaluate("() => window.jupyterapp.shell.currentWidget.content.activeCellIndex") == 1
    run.locator("button.jp-MLOps-cellLink", has_text="cell [1]").click()
    page.wait_for_function("() => window.jupyterapp.shell.currentWidget.content.activeCellIndex === 0", timeout=5_000)
    href = run.locator("a.jp-MLOps-link").first.get_attribute("href")
    assert href.startswith(f"{MLFLOW_UI}/#/experiments/") and href.endswith(f"/runs/{epochs}")
    tab_to(page, "model:iris")  # open since the click above: Enter closes it, Enter again opens it
    page.keyboard.press("Enter")
    sidebar.locator('.jp-MLOps-model[data-model="iris"]:not(.jp-mod-open)').wait_for(timeout=5_000)
    page.keyboard.press("Enter")  # the focus stayed on the model across the re-render
    sidebar.locator('.jp-MLOps-model[data-model="iris"].jp-mod-open').wait_for(timeout=5_000)
    tab_to(page, "drift:iris")
    page.keyboard.press("Enter")
    sidebar.locator('[data-section="drift"] .jp-mod-open .jp-MLOps-details').wait_for(timeout=5_000)


def follow_the_kernels_tenant(page, sidebar) -> None:
    """``%mlops init --tenant other`` in the notebook: the sidebar follows (the server allows
    every tenant of its store); the switcher brings acme back."""
    page.evaluate("""() => {
        const nb = window.jupyterapp.shell.currentWidget.content;
        nb.activeCell.model.sharedModel.setSource('%load_ext mlops_jupyter\\n%mlops init --tenant other');
        return window.jupyterapp.commands.execute('notebook:run-cell');
    }""")
    sidebar.locator('[data-experiment="secret-exp"]').wait_for(timeout=30_000)
    assert "tenant other" in sidebar.locator(".jp-MLOps-status").inner_text()
    select = sidebar.locator("select.jp-MLOps-tenant")
    assert select.input_value() == "other"
    assert select.locator("option").all_inner_texts() == ["acme", "other"]
    select.select_option("acme")
    sidebar.locator('[data-experiment="churn"]').wait_for(timeout=20_000)
    switch_during_a_refresh(page, sidebar)


def switch_during_a_refresh(page, sidebar) -> None:
    """A refresh under way when the tenant changes read the old tenant's state: what it
    loaded must not land over the new tenant's (acme's experiments, or its name in the
    status line). Acme's experiments answer is held back until after the switch."""
    held: list = []

    def acme_experiments(url: str) -> bool:
        return "/mlops/api/experiments" in url and "tenant=acme" in url

    def hold(route) -> None:
        held.append(route)

    page.route(acme_experiments, hold)
    sidebar.locator(".jp-MLOps-refresh").click()
    deadline = time.monotonic() + 20
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert held, "the refresh never asked for acme's experiments"
    select = sidebar.locator("select.jp-MLOps-tenant")
    select.select_option("other")
    for route in list(held):  # (unroute would let them through by itself)
        route.continue_()
    page.unroute(acme_experiments)
    # other's experiments come from the follow-up refresh, which starts only once the held one
    # has finished; it renders and writes the status line in one go
    sidebar.locator('[data-experiment="secret-exp"]').wait_for(timeout=20_000)
    assert "tenant other" in sidebar.locator(".jp-MLOps-status").inner_text()
    assert sidebar.locator('[data-experiment="churn"]').count() == 0
    assert sidebar.locator('[data-experiment="secret-exp"]').count() == 1
    select.select_option("acme")
    sidebar.locator('[data-experiment="churn"]').wait_for(timeout=20_000)


def test_sidebar_shows_the_store_and_rolls_a_deployment_back(browser, artifacts, tmp_path_factory, template_db):
    from conftest import gateway_home, seed_mlops_store

    from mlops_jupyter import create_model_monitoring

    t0 = time.monotonic()
    root, work = tmp_path_factory.mktemp("sidebar-root"), tmp_path_factory.mktemp("sidebar-work")
    write_notebook(root / "work.ipynb", ["x = 1"])
    with gateway_home(tmp_path_factory, template_db, "sidebar") as home:
        seeded = seed_mlops_store(home)
        create_model_monitoring(tenant_id="acme", storage_path=home).set_alert(
            "iris", "drift_score > 0.1", action="log", severity="critical"
        )
        # 100 copies of one row (enough for a drift check): far from iris's reference data, so
        # evaluating the rule (the scheduler's job; checks only read) fires the alert
        assert served_versions(seeded, 100) == {"1.0.0", "1.1.0"}
        monitoring = create_model_monitoring(tenant_id="acme", storage_path=home)
        deadline = time.monotonic() + 15
        # the gateway writes its prediction log about once a second: evaluate once it holds the rows
        while monitoring.check_drift("iris").get("n_current", 0) < 100 and time.monotonic() < deadline:
            time.sleep(0.3)
        changes = monitoring.evaluate_alerts("iris")
        assert [c["state"] for c in changes] == ["firing"], changes
        assert monitoring.wait_for_alert_actions() == 0  # the action runs on its own thread
        epochs = stepped_run(home, json.loads((root / "work.ipynb").read_text())["cells"][0]["id"])
        t_seed = time.monotonic() - t0
        env = {"MLOPS_HOME": str(home), "MLOPS_TENANT": "acme"}
        with (
            jupyter_lab(root, work, env, args=(f"--MLOpsServer.mlflow_ui_url={MLFLOW_UI}",)) as lab,
            browser_page(browser, artifacts, "sidebar", height=1500) as (page, _),
        ):
            page.goto(lab.page_url("work.ipynb"))
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=30_000)

            # the sidebar, opened from its tab in the left bar
            page.locator('.jp-SideBar.jp-mod-left li[data-id="mlops-sidebar"]').click()
            sidebar = page.locator(SIDEBAR)
            sidebar.locator('[data-experiment="churn"]').wait_for(timeout=20_000)
            assert "tenant acme" in sidebar.locator(".jp-MLOps-status").inner_text()
            exps = sidebar.locator(".jp-MLOps-experiments").inner_text()
            assert "churn" in exps and "baseline" in exps and "secret-exp" not in exps
            sidebar.locator('[data-experiment="baseline"].jp-mod-selected').wait_for()  # the newest
            sidebar.locator('[data-experiment="churn"]').click()
            sidebar.get_by_text("Recent runs of churn").wait_for(timeout=10_000)
            runs = sidebar.locator(".jp-MLOps-runs")
            runs.get_by_text("depth-8").wait_for(timeout=10_000)
            assert "accuracy 0.93" in runs.inner_text()
            runs.locator(".jp-MLOps-run", has_text="depth-5").click()  # details
            details = runs.locator(".jp-MLOps-details")
            details.wait_for(timeout=5_000)
            assert "max_depth" in details.inner_text() and "0.94" in details.inner_text()

            model = sidebar.locator('.jp-MLOps-model[data-model="iris"]')
            assert "3 versions" in model.inner_text() and "production: 1.0.0 50% · 1.1.0 50%" in model.inner_text()
            assert sidebar.locator('.jp-MLOps-model[data-model="secret"]').count() == 0
            model.click()  # versions and lineage
            model.get_by_text("1.0.0 → 1.1.0 → 1.2.0").wait_for(timeout=5_000)

            # drift of the deployed model; the alert evaluated above is listed on the next refresh
            sidebar.locator('[data-section="drift"] [data-model="iris"] .jp-MLOps-drift', has_text="drift").wait_for(
                timeout=20_000
            )
            sidebar.locator(".jp-MLOps-refresh").click()
            sidebar.locator(".jp-MLOps-alerts", has_text="iris: drift_score > 0.1").wait_for(timeout=20_000)
            assert "firing" in sidebar.locator(".jp-MLOps-alerts").inner_text()
            # how the alert's action was delivered (issue 16: every attempt recorded and shown)
            delivery = sidebar.locator(".jp-MLOps-alerts .jp-MLOps-delivery").inner_text()
            assert delivery == "log delivered (1 attempt)"

            prod = page.locator(PROD)
            assert "serving" in prod.locator(".jp-MLOps-health").inner_text()
            assert f"127.0.0.1:{seeded['port']}/tenants/acme/production/models/iris" in prod.inner_text()
            sidebar.screenshot(path=str(artifacts / "sidebar.png"))

            # palette commands in the open notebook: autolog on in its kernel, a %mlops runs cell
            page.wait_for_function(KERNEL_IDLE, timeout=30_000)
            page.evaluate("() => window.jupyterapp.commands.execute('mlops:toggle-autolog')")
            page.locator(".Toastify__toast", has_text="Cell autolog is on").wait_for(timeout=30_000)
            assert page.evaluate("() => window.jupyterapp.commands.isToggled('mlops:toggle-autolog')")
            page.evaluate("() => window.jupyterapp.commands.execute('mlops:insert-runs-cell')")
            assert page.evaluate(CELL_SOURCES) == ["x = 1", "%mlops runs"]
            labels = page.evaluate("""() => ['mlops:open-panel', 'mlops:toggle-autolog', 'mlops:insert-runs-cell']
                .map(id => window.jupyterapp.commands.label(id))""")
            assert all(labels), labels

            # Rollback, with its confirmation dialog
            rollback = prod.locator("button.jp-MLOps-rollback")
            assert rollback.inner_text() == "Rollback to 1.0.0"
            rollback.click()
            dialog = page.locator(".jp-Dialog")
            dialog.wait_for(timeout=10_000)
            assert "Send 100% of iris's traffic in production to 1.0.0?" in dialog.inner_text()
            assert served_versions(seeded) == {"1.0.0", "1.1.0"}  # nothing happens before confirming
            page.screenshot(path=str(artifacts / "sidebar-rollback-dialog.png"))
            dialog.locator("button.jp-mod-accept").click()
            page.locator(".Toastify__toast", has_text="Rolled back iris in production").wait_for(timeout=30_000)
            prod.locator(".jp-MLOps-traffic", has_text="traffic 1.0.0 100%").wait_for(timeout=15_000)
            assert served_versions(seeded) == {"1.0.0"}
            prod.screenshot(path=str(artifacts / "sidebar-after-rollback.png"))
            page.screenshot(path=str(artifacts / "sidebar-lab.png"))
            # endpoints are links
            assert prod.locator("a.jp-MLOps-endpoint").get_attribute("href").endswith("/models/iris")

            # the status bar: autolog (toggled on above) and the gateway's state
            item = page.locator(".jp-MLOps-statusItem")
            item.filter(has_text="autolog on").wait_for(timeout=15_000)
            assert "gateway running" in item.inner_text()

            keyboard_and_step_charts(page, sidebar, epochs)
            follow_the_kernels_tenant(page, sidebar)

            # both themes: highlighted rows readable (WCAG AA), no serious axe violation
            for theme in THEMES:
                set_theme(page, theme)
                sidebar.locator('[data-experiment="churn"]').click()
                sidebar.locator('[data-experiment="churn"].jp-mod-selected').wait_for(timeout=10_000)
                # selecting starts a refresh ("refreshing…" until it has re-rendered the list): a
                # click whose mouse-down and mouse-up land on rows of two renderings is lost
                sidebar.locator(".jp-MLOps-status", has_text="updated").wait_for(timeout=20_000)
                sidebar.locator(".jp-MLOps-run", has_text="depth-5").click()
                sidebar.locator(".jp-MLOps-run.jp-mod-open .jp-MLOps-details").wait_for(timeout=10_000)
                n, low = low_contrast(
                    page, f"{SIDEBAR} .jp-mod-selected, {SIDEBAR} .jp-MLOps-badge, {SIDEBAR} .jp-MLOps-segment"
                )
                assert n >= 10 and low == [], (theme, low)
                assert axe_serious(page, SIDEBAR) == [], theme
                slug = "dark" if "Dark" in theme else "light"
                sidebar.screenshot(path=str(artifacts / f"sidebar-{slug}.png"))
    if os.environ.get("MLOPS_UPDATE_SCREENSHOTS"):
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(artifacts / "sidebar.png", DOCS / "mlops-sidebar.png")
        shutil.copy(artifacts / "sidebar-dark.png", DOCS / "mlops-sidebar-dark.png")
    elapsed = time.monotonic() - t0
    print(f"sidebar browser flow: {elapsed:.1f} s (seeding {t_seed:.1f} s)")
