"""The sidebar's refreshes never eat a click, and an unchanged section is not redrawn, for real.

JupyterLab (token auth, 127.0.0.1) in headless chromium, a fresh store with two experiments.

* The mouse button goes down on the experiment that is not selected; while it is held, a run
  is logged into the selected one and a refresh completes (the ``mlops:refresh`` command,
  awaited: its promise settles once the panel has its data). The list has changed, so the
  panel redraws it, but only after the release: the button goes up, the click lands on the
  row it was pressed on, and that experiment is selected with its runs shown (before the fix
  the row under the pointer was replaced and the browser fired no ``click`` at all).
* A press dragged out of the panel and released over the notebook area also ends the wait:
  the refresh made meanwhile is drawn.
* A background refresh that brings nothing new keeps every node of the panel (each is
  marked with a JS property first; the page's clock is pinned so that ``12 s ago`` does not
  turn into ``13 s ago`` in between); a refresh after a new run redraws the experiments
  section only.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import artifacts, browser, browser_page, jupyter_lab  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser

SIDEBAR = "#mlops-sidebar"
#: run the panel's refresh and resolve once it has its data: ``mlops:refresh`` (what the
#: button and the palette do), or with ``true`` the background refresh of its timer
REFRESH = """async (background) => {
  if (!background) return window.jupyterapp.commands.execute('mlops:refresh');
  const panel = [...window.jupyterapp.shell.widgets('left')].find(w => w.id === 'mlops-sidebar');
  return panel.refresh(true);
}"""
#: give every element of the panel's sections a JS property (an expando, not an attribute:
#: only the very same node still has it after a refresh)
MARK = """() => {
  const all = document.querySelectorAll('#mlops-sidebar .jp-MLOps-sectionBody *');
  all.forEach(el => { el.mlopsMark = true; });
  return all.length;
}"""
#: per section, how many of its elements are marked and how many it has
MARKED = """() => Object.fromEntries([...document.querySelectorAll('#mlops-sidebar [data-section]')].map(s => {
  const all = [...s.querySelectorAll('.jp-MLOps-sectionBody *')];
  return [s.dataset.section, [all.filter(el => el.mlopsMark).length, all.length]];
}))"""


def log_run(home: Path, experiment: str, run_name: str) -> str:
    """A finished run of ``experiment`` (tenant acme) in the store; its id."""
    from mlops_jupyter import create_experiment_tracker

    t = create_experiment_tracker(tenant_id="acme", storage_path=home)
    run = t.start_experiment(experiment, run_name=run_name)
    t.log_metrics({"accuracy": 0.9})
    t.end_experiment()
    t.flush()
    return run.run_id


@pytest.fixture(scope="module")
def lab_page(browser, artifacts, tmp_path_factory, template_db) -> Iterator[tuple[Any, Path, dict[str, str]]]:
    """JupyterLab on a store holding ``alpha`` then ``beta`` (one run each), with the sidebar
    open and loaded; yields the page, the store and the experiments' first runs."""
    root, work = tmp_path_factory.mktemp("refresh-root"), tmp_path_factory.mktemp("refresh-work")
    home = tmp_path_factory.mktemp("refresh-home") / "store"
    home.mkdir()
    shutil.copy(template_db, home / "mlflow.db")
    runs = {name: log_run(home, name, f"{name}-1") for name in ("alpha", "beta")}
    with (
        jupyter_lab(root, work, {"MLOPS_HOME": str(home), "MLOPS_TENANT": "acme"}) as lab,
        browser_page(browser, artifacts, "sidebar-refresh") as (page, _),
    ):
        page.goto(f"{lab.url}/lab?token={lab.token}&reset")
        tab = page.locator('.jp-SideBar.jp-mod-left li[data-id="mlops-sidebar"]')
        tab.click(timeout=30_000)
        sidebar = page.locator(SIDEBAR)
        sidebar.locator('[data-experiment="alpha"]').wait_for(timeout=20_000)
        sidebar.locator(".jp-MLOps-status", has_text="updated").wait_for(timeout=20_000)
        yield page, home, runs


def test_a_click_held_across_a_refresh_is_not_lost(lab_page):
    page, home, runs = lab_page
    t0 = time.monotonic()
    sidebar = page.locator(SIDEBAR)
    # the newest experiment is selected; the button goes down on the other one's name
    sidebar.locator('[data-experiment="beta"].jp-mod-selected').wait_for(timeout=10_000)
    alpha = sidebar.locator('[data-experiment="alpha"]')
    assert "jp-mod-selected" not in alpha.get_attribute("class")
    alpha.evaluate("el => { el.mlopsPressed = true; }")
    box = alpha.locator(".jp-MLOps-name").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    try:
        # held: beta gets a second run and a refresh completes (the list has changed)
        log_run(home, "beta", "beta-2")
        page.evaluate(REFRESH, False)
        # the row under the pointer is still the one pressed (its redraw waits for the release)
        assert alpha.evaluate("el => el.mlopsPressed === true")
    finally:
        page.mouse.up()
    # the click landed: alpha is selected and its runs are shown ...
    sidebar.locator('[data-experiment="alpha"].jp-mod-selected').wait_for(timeout=10_000)
    sidebar.locator(f'.jp-MLOps-runs .jp-MLOps-run[data-run="{runs["alpha"]}"]').wait_for(timeout=10_000)
    assert sidebar.locator(".jp-MLOps-subtitle", has_text="Recent runs of alpha").count() == 1
    # ... and the refresh made while it was held is shown too: beta's second run is counted
    assert "2 runs" in sidebar.locator('[data-experiment="beta"]').inner_text()
    print(f"click held across a refresh: {time.monotonic() - t0:.1f} s")


def test_a_press_released_outside_the_panel_lets_it_redraw(lab_page):
    page, home, _ = lab_page
    sidebar = page.locator(SIDEBAR)
    selected = sidebar.locator(".jp-MLOps-experiments .jp-mod-selected")
    before = selected.get_attribute("data-experiment")
    beta = sidebar.locator('[data-experiment="beta"]')
    counted = beta.inner_text()
    n = int(re.search(r"(\d+) runs?", counted).group(1))
    box = beta.locator(".jp-MLOps-name").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    try:
        page.mouse.move(900, 450)  # dragged out, over JupyterLab's main area
        log_run(home, "beta", f"beta-{n + 1}")
        page.evaluate(REFRESH, False)
        assert beta.inner_text() == counted  # still held: not redrawn yet
    finally:
        page.mouse.up()
    # the release outside the panel counts: the redraw that waited for it happens
    sidebar.locator('[data-experiment="beta"]', has_text=f"{n + 1} runs").wait_for(timeout=5_000)
    assert selected.get_attribute("data-experiment") == before  # released elsewhere: no click


def test_a_refresh_that_brings_nothing_new_keeps_the_nodes(lab_page):
    page, home, _ = lab_page
    t0 = time.monotonic()
    sidebar = page.locator(SIDEBAR)
    status = sidebar.locator(".jp-MLOps-status")
    # `12 s ago` must not become `13 s ago` between the two refreshes: pin the page's clock
    page.clock.set_fixed_time(time.time())
    page.evaluate(REFRESH, False)  # drawn at the pinned time
    assert page.evaluate(MARK) > 10
    before = status.inner_text()
    page.evaluate("() => { document.querySelector('#mlops-sidebar .jp-MLOps-status').textContent = ''; }")
    page.evaluate(REFRESH, True)
    assert status.inner_text() == before  # it refreshed (the status line is set again)
    marked = page.evaluate(MARKED)
    assert set(marked) == {"experiments", "models", "deployments", "drift"}
    assert all(m == n and n > 0 for m, n in marked.values()), marked

    # a new run of the selected experiment: that section is redrawn, the others are kept
    selected = sidebar.locator(".jp-MLOps-experiments .jp-mod-selected").get_attribute("data-experiment")
    new = log_run(home, selected, f"{selected}-new")
    page.evaluate(REFRESH, True)
    sidebar.locator(f'.jp-MLOps-run[data-run="{new}"]').wait_for(timeout=5_000)
    marked = page.evaluate(MARKED)
    assert marked["experiments"][0] == 0, marked
    assert all(m == n for s, (m, n) in marked.items() if s != "experiments"), marked
    print(f"unchanged refresh keeps the nodes: {time.monotonic() - t0:.1f} s")
