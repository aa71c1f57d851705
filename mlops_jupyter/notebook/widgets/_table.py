"""A small sortable, selectable, keyboard-reachable table widget (an anywidget, plain
JavaScript, no imports). Colours are JupyterLab's CSS variables (:mod:`.theme`).

Python owns the data: it sorts, pages and formats, and sends only the rows of the current
page. The browser draws them, and reports clicks back through synced traits: a header
click sets ``sort_by``/``ascending``, a row's checkbox edits ``selected``.
"""

from __future__ import annotations

import anywidget
import traitlets

from mlops_jupyter.notebook.widgets import theme

_ESM = r"""
function render({ model, el }) {
  el.classList.add("mlops-table");
  const toggle = (id, on) => {
    const now = new Set(model.get("selected") || []);
    if (on === undefined ? !now.has(id) : on) now.add(id); else now.delete(id);
    model.set("selected", Array.from(now));
    model.save_changes();
  };
  const sortBy = (col) => {
    if (model.get("sort_by") === col.key) {
      model.set("ascending", !model.get("ascending"));
    } else {
      model.set("sort_by", col.key);
      model.set("ascending", !col.numeric);
    }
    model.save_changes();
  };
  const draw = () => {
    const columns = model.get("columns") || [];
    const rows = model.get("rows") || [];
    const sorted = model.get("sort_by");
    const asc = model.get("ascending");
    const selected = new Set(model.get("selected") || []);
    const focused = document.activeElement && el.contains(document.activeElement)
      ? (document.activeElement.dataset.key || document.activeElement.dataset.id) : null;
    const table = document.createElement("table");
    const cap = model.get("caption");
    if (cap) {
      const c = document.createElement("caption");
      c.textContent = cap;
      table.appendChild(c);
    }
    table.setAttribute("aria-label", model.get("label") || "runs");
    const head = document.createElement("tr");
    const th0 = document.createElement("th");
    th0.textContent = "";
    th0.setAttribute("aria-label", "selected");
    head.appendChild(th0);
    for (const col of columns) {
      const th = document.createElement("th");
      th.textContent = col.label + (col.key === sorted ? (asc ? " \u25B2" : " \u25BC") : "");
      th.title = "sort by " + col.label;
      th.dataset.key = col.key;
      th.scope = "col";
      th.tabIndex = 0;
      th.setAttribute("role", "columnheader");
      th.setAttribute("aria-sort", col.key === sorted ? (asc ? "ascending" : "descending") : "none");
      th.setAttribute("aria-label", "sort by " + col.label);
      if (col.numeric) th.classList.add("num");
      th.addEventListener("click", () => sortBy(col));
      th.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(col); }
      });
      head.appendChild(th);
    }
    const thead = document.createElement("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    const tbody = document.createElement("tbody");
    for (const row of rows) {
      const tr = document.createElement("tr");
      tr.dataset.id = row.id;
      tr.tabIndex = 0;
      const name = row.cells && row.cells.length ? row.cells[0] : row.id;
      const hint = row.url ? ", Enter opens it in MLflow" : ", Enter selects it";
      tr.setAttribute("aria-label", "run " + name + (row.best ? " (best)" : "") + hint);
      tr.setAttribute("aria-selected", selected.has(row.id) ? "true" : "false");
      if (row.best) tr.classList.add("best");
      if (selected.has(row.id)) tr.classList.add("selected");
      if (row.status) tr.classList.add("status-" + row.status);
      tr.addEventListener("keydown", (e) => {
        if (e.target !== tr) return;
        if (e.key === " ") { e.preventDefault(); toggle(row.id); }
        else if (e.key === "Enter") {
          e.preventDefault();
          if (row.url) window.open(row.url, "_blank", "noopener"); else toggle(row.id);
        }
      });
      const td0 = document.createElement("td");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = selected.has(row.id);
      box.title = "select this run";
      box.setAttribute("aria-label", "select run " + name);
      box.addEventListener("change", () => toggle(row.id, box.checked));
      td0.appendChild(box);
      tr.appendChild(td0);
      const links = row.links || [];
      row.cells.forEach((v, i) => {
        const td = document.createElement("td");
        const count = columns[i] && columns[i].key === "cell" ? /\[(\d+)\]/.exec(v || "") : null;
        if (count) {
          // JupyterLab's mlops extension scrolls the notebook to this cell on click or Enter
          const span = document.createElement("span");
          span.textContent = v;
          span.dataset.mlopsCell = count[1];
          if (row.cell_id) span.dataset.mlopsCellId = row.cell_id;  // found even after a re-run
          span.setAttribute("role", "link");
          span.tabIndex = 0;
          span.setAttribute("aria-label", "go to cell " + count[1]);
          span.classList.add("mlops-cell-link");
          td.appendChild(span);
        } else if (links[i]) {
          const a = document.createElement("a");
          a.href = links[i];
          a.target = "_blank";
          a.rel = "noopener";
          a.textContent = v;
          td.appendChild(a);
        } else {
          td.textContent = v;
        }
        if (columns[i] && columns[i].numeric) td.classList.add("num");
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    }
    table.appendChild(tbody);
    el.replaceChildren(table);
    if (focused) {
      const again = el.querySelector(`[data-key="${CSS.escape(focused)}"], tr[data-id="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
  };
  for (const name of ["columns", "rows", "sort_by", "ascending", "selected", "caption", "label"]) {
    model.on("change:" + name, draw);
  }
  draw();
}
export default { render };
"""

_CSS = r"""
.mlops-table { max-width: 100%; overflow-x: auto; }
.mlops-table table { border-collapse: collapse; font-size: 12px; font-family: var(--jp-ui-font-family); }
.mlops-table caption { text-align: left; color: var(--jp-ui-font-color2); padding: 2px 0; }
.mlops-table th { cursor: pointer; user-select: none; text-align: left; padding: 3px 8px;
  border-bottom: 2px solid var(--jp-border-color1, #ccc); white-space: nowrap; }
.mlops-table th:hover { background: var(--jp-layout-color2, #eee); }
.mlops-table td { padding: 2px 8px; border-bottom: 1px solid var(--jp-border-color2, #eee); white-space: nowrap; }
.mlops-table .num { text-align: right; font-variant-numeric: tabular-nums; }
.mlops-table { color: {TEXT}; }
.mlops-table tr.best td { background: {HIGHLIGHT}; color: {TEXT}; font-weight: bold; }
.mlops-table tr.selected td { background: {SELECTED}; color: {TEXT}; }
.mlops-table tr.status-failed td:nth-child(3) { color: {ERROR}; }
.mlops-table th:focus-visible, .mlops-table tr:focus-visible {
  outline: 2px solid var(--jp-brand-color1, #2196f3); outline-offset: -2px; }
.mlops-table a, .mlops-table .mlops-cell-link { color: {LINK}; }
.mlops-table .mlops-cell-link { cursor: pointer; text-decoration: underline dotted; }
"""


for _name in ("TEXT", "HIGHLIGHT", "SELECTED", "ERROR", "LINK"):
    _CSS = _CSS.replace("{" + _name + "}", getattr(theme, _name))


class RunTable(anywidget.AnyWidget):
    """Rows of one page; clicks set ``sort_by``/``ascending`` and edit ``selected``.

    Traits:
        columns: ``[{"key", "label", "numeric"}]``.
        rows: ``[{"id", "cells": [str, ...], "best": bool, "status": str, "url": str,
            "links": [url or None per cell], "cell_id": str}]`` (``url``: the run's MLflow page,
            opened by Enter; ``cell_id``: JupyterLab's id of the run's cell, for its `cell [N]` link).
        sort_by, ascending: the sort the user asked for (Python applies it).
        selected: ids of the selected rows (across pages).
        caption: a line above the table.
        label: the table's accessible name.

    Keyboard: Tab reaches each sort header and each row; Enter on a header sorts, Enter on
    a row opens its MLflow page (or selects it when there is none), Space selects.
    """

    _esm = _ESM
    _css = _CSS
    columns = traitlets.List(traitlets.Dict()).tag(sync=True)
    rows = traitlets.List(traitlets.Dict()).tag(sync=True)
    sort_by = traitlets.Unicode("").tag(sync=True)
    ascending = traitlets.Bool(False).tag(sync=True)
    selected = traitlets.List(traitlets.Unicode()).tag(sync=True)
    caption = traitlets.Unicode("").tag(sync=True)
    label = traitlets.Unicode("runs").tag(sync=True)
