"""A panel's `cell [N]` link scrolls JupyterLab to that cell (issue 15, point 5), for real.

JupyterLab (token auth, 127.0.0.1) in headless chromium, a fresh store. The notebook turns
cell autolog on, has two cells that log (literal assignments: each becomes a run tagged
with its cell), tall cells between them that only print, and a last cell showing a
``ComparisonPanel`` of those runs. The test runs every cell, checks the first logging cell
is scrolled out of sight, clicks its run's `cell [2]` in the panel's table and waits until
that cell is the active one and on screen; then the same from the keyboard (Enter on the
other run's link). The sidebar's `cell [N]` button is tested in test_sidebar.py.
"""

from __future__ import annotations

import shutil
import time

import pytest
from harness import (  # noqa: F401 (fixtures)
    ALL_RAN,
    KERNEL_IDLE,
    artifacts,
    browser,
    browser_page,
    jupyter_lab,
    script_failures,
    write_notebook,
)

pytestmark = pytest.mark.browser

#: a cell that only prints (not a run) and is taller than the window
TALL = "print('\\n'.join(f'line {i}' for i in range(70)))"
CELLS = [
    "%load_ext mlops_jupyter\n%mlops init --tenant acme --experiment links\n%mlops autolog on",
    "max_depth = 3",  # execution count 2: a run
    TALL,
    TALL,
    TALL,
    "max_depth = 8",  # execution count 6: a run
    TALL,
    TALL,
    "from mlops_jupyter.widgets import ComparisonPanel\nComparisonPanel('links')",
]
#: whether cell ``i`` of the current notebook is the active cell and shown in the notebook's
#: scrolled area (its prompt inside the visible part of the scroller)
ACTIVE_AND_SHOWN = """(i) => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  const cell = nb.widgets[i];
  if (nb.activeCellIndex !== i || !cell.node.isConnected) return false;
  const view = (nb.node.closest('.jp-WindowedPanel-outer') || nb.node).getBoundingClientRect();
  const box = cell.node.getBoundingClientRect();
  return box.height > 0 && box.top >= view.top - 1 && box.top < view.bottom;
}"""
#: run cell ``i`` again (it stays the active cell), then make the last cell the active one
RERUN = """async (i) => {
  const panel = window.jupyterapp.shell.currentWidget;
  panel.content.activeCellIndex = i;
  await window.jupyterapp.commands.execute('notebook:run-cell');
  panel.content.activeCellIndex = panel.content.widgets.length - 1;
}"""
SHOWN = """(i) => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  const cell = nb.widgets[i];
  if (!cell.node.isConnected) return false;
  const view = (nb.node.closest('.jp-WindowedPanel-outer') || nb.node).getBoundingClientRect();
  const box = cell.node.getBoundingClientRect();
  return box.bottom > view.top && box.top < view.bottom;
}"""


def test_a_panels_cell_link_scrolls_the_notebook_to_that_cell(browser, artifacts, tmp_path_factory, template_db):
    t0 = time.monotonic()
    root, work = tmp_path_factory.mktemp("links-root"), tmp_path_factory.mktemp("links-work")
    home = tmp_path_factory.mktemp("links-home") / "store"
    home.mkdir()
    shutil.copy(template_db, home / "mlflow.db")
    write_notebook(root / "links.ipynb", CELLS)
    with (
        jupyter_lab(root, work, {"MLOPS_HOME": str(home), "MLOPS_TENANT": "acme"}) as lab,
        browser_page(browser, artifacts, "cell-link", full_page=True) as (page, _),
    ):
        page.goto(lab.page_url("links.ipynb"))
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=30_000)
        page.wait_for_function(KERNEL_IDLE, timeout=30_000)
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_function(ALL_RAN, arg=len(CELLS), timeout=90_000)

        table = page.locator(".mlops-comparison .mlops-table")
        links = table.locator(".mlops-cell-link")
        links.nth(1).wait_for(timeout=30_000)  # the two cell runs, each with its cell
        assert sorted(links.all_inner_texts()) == ["[2]", "[6]"], links.all_inner_texts()
        assert table.locator("tbody tr").count() == 2  # the cells that only print are not runs

        # `[2]`, clicked in the panel at the bottom: the notebook scrolls up to cell 2
        link = table.locator('.mlops-cell-link[data-mlops-cell="2"]')
        link.scroll_into_view_if_needed()
        assert not page.evaluate(SHOWN, 1), "cell 2 is on screen before the click: nothing to scroll"
        link.click()
        page.wait_for_function(ACTIVE_AND_SHOWN, arg=1, timeout=10_000)
        page.screenshot(path=str(artifacts / "cell-link-scrolled.png"))

        # `[6]` from the keyboard: focus it and press Enter
        link = table.locator('.mlops-cell-link[data-mlops-cell="6"]')
        link.scroll_into_view_if_needed()
        assert not page.evaluate(SHOWN, 5)
        link.focus()
        page.keyboard.press("Enter")
        page.wait_for_function(ACTIVE_AND_SHOWN, arg=5, timeout=10_000)

        # cell 2 runs again (now `[10]`, a new run; the live panel follows): the old run's
        # `[2]` still finds its cell, by JupyterLab's cell id, not by a count no cell has now
        page.evaluate(RERUN, 1)
        table.locator('.mlops-cell-link[data-mlops-cell="10"]').wait_for(timeout=30_000)
        assert table.locator("tbody tr").count() == 3
        link = table.locator('.mlops-cell-link[data-mlops-cell="2"]')
        link.scroll_into_view_if_needed()
        assert not page.evaluate(SHOWN, 1)
        link.click()
        page.wait_for_function(ACTIVE_AND_SHOWN, arg=1, timeout=10_000)
        assert page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-InputPrompt").inner_text() == "[10]:"
    elapsed = time.monotonic() - t0
    print(f"cell link browser flow: {elapsed:.1f} s")
