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

import os
import shutil
import time
from pathlib import Path

import pytest

# artifacts and browser are fixtures (tests/browser/harness.py, shared with the panels' test)
from harness import artifacts, browser, jupyter_lab, script_failures, write_notebook  # noqa: F401

pytestmark = pytest.mark.browser

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SIDEBAR = "#mlops-sidebar"
PROD = f'{SIDEBAR} .jp-MLOps-deployment[data-model="iris"][data-environment="production"]'
KERNEL_IDLE = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle';
}"""
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
        # 20 copies of one row: far from iris's reference data, so the drift check fires the alert
        assert served_versions(seeded, 20) == {"1.0.0", "1.1.0"}
        t_seed = time.monotonic() - t0
        with jupyter_lab(root, work, {"MLOPS_HOME": str(home), "MLOPS_TENANT": "acme"}) as lab:
            context = browser.new_context(viewport={"width": 1280, "height": 1500})
            page = context.new_page()
            messages: list[str] = []
            page.on(
                "console", lambda m: messages.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None
            )
            page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
            try:
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

                # drift of the deployed model; its check fires the alert, listed on the next refresh
                sidebar.locator(
                    '[data-section="drift"] [data-model="iris"] .jp-MLOps-drift', has_text="drift"
                ).wait_for(timeout=20_000)
                sidebar.locator(".jp-MLOps-refresh").click()
                sidebar.locator(".jp-MLOps-alerts", has_text="iris: drift_score > 0.1").wait_for(timeout=20_000)
                assert "firing" in sidebar.locator(".jp-MLOps-alerts").inner_text()

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
            except BaseException:
                page.screenshot(path=str(artifacts / "sidebar-failure.png"))
                (artifacts / "sidebar-failure.html").write_text(page.content())
                raise
            finally:
                (artifacts / "sidebar-console.txt").write_text("\n".join(messages))
                context.close()
        assert script_failures(messages) == [], messages
    if os.environ.get("MLOPS_UPDATE_SCREENSHOTS"):
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(artifacts / "sidebar.png", DOCS / "mlops-sidebar.png")
    elapsed = time.monotonic() - t0
    print(f"sidebar browser flow: {elapsed:.1f} s (seeding {t_seed:.1f} s)")
    assert elapsed < 90, f"the sidebar flow took {elapsed:.0f} s (expected under a minute)"
