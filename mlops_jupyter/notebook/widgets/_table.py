"""A small sortable, selectable table widget (an anywidget, plain JavaScript, no imports).

Python owns the data: it sorts, pages and formats, and sends only the rows of the current
page. The browser draws them, and reports clicks back through synced traits: a header
click sets ``sort_by``/``ascending``, a row's checkbox edits ``selected``.
"""

from __future__ import annotations

import anywidget
import traitlets

_ESM = r"""
function render({ model, el }) {
  el.classList.add("mlops-table");
  const draw = () => {
    const columns = model.get("columns") || [];
    const rows = model.get("rows") || [];
    const sortBy = model.get("sort_by");
    const asc = model.get("ascending");
    const selected = new Set(model.get("selected") || []);
    const table = document.createElement("table");
    const cap = model.get("caption");
    if (cap) {
      const c = document.createElement("caption");
      c.textContent = cap;
      table.appendChild(c);
    }
    const head = document.createElement("tr");
    const th0 = document.createElement("th");
    th0.textContent = "";
    head.appendChild(th0);
    for (const col of columns) {
      const th = document.createElement("th");
      th.textContent = col.label + (col.key === sortBy ? (asc ? " \u25B2" : " \u25BC") : "");
      th.title = "sort by " + col.label;
      th.dataset.key = col.key;
      if (col.numeric) th.classList.add("num");
      th.addEventListener("click", () => {
        if (model.get("sort_by") === col.key) {
          model.set("ascending", !model.get("ascending"));
        } else {
          model.set("sort_by", col.key);
          model.set("ascending", !col.numeric);
        }
        model.save_changes();
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
      if (row.best) tr.classList.add("best");
      if (selected.has(row.id)) tr.classList.add("selected");
      if (row.status) tr.classList.add("status-" + row.status);
      const td0 = document.createElement("td");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = selected.has(row.id);
      box.title = "select this run";
      box.addEventListener("change", () => {
        const now = new Set(model.get("selected") || []);
        if (box.checked) now.add(row.id); else now.delete(row.id);
        model.set("selected", Array.from(now));
        model.save_changes();
      });
      td0.appendChild(box);
      tr.appendChild(td0);
      row.cells.forEach((v, i) => {
        const td = document.createElement("td");
        td.textContent = v;
        if (columns[i] && columns[i].numeric) td.classList.add("num");
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    }
    table.appendChild(tbody);
    el.replaceChildren(table);
  };
  for (const name of ["columns", "rows", "sort_by", "ascending", "selected", "caption"]) {
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
.mlops-table tr.best td { background: #fff3e0; font-weight: bold; }
.mlops-table tr.selected td { background: #e3f2fd; }
.mlops-table tr.status-failed td:nth-child(3) { color: #c62828; }
"""


class RunTable(anywidget.AnyWidget):
    """Rows of one page; clicks set ``sort_by``/``ascending`` and edit ``selected``.

    Traits:
        columns: ``[{"key", "label", "numeric"}]``.
        rows: ``[{"id", "cells": [str, ...], "best": bool, "status": str}]``.
        sort_by, ascending: the sort the user asked for (Python applies it).
        selected: ids of the selected rows (across pages).
        caption: a line above the table.
    """

    _esm = _ESM
    _css = _CSS
    columns = traitlets.List(traitlets.Dict()).tag(sync=True)
    rows = traitlets.List(traitlets.Dict()).tag(sync=True)
    sort_by = traitlets.Unicode("").tag(sync=True)
    ascending = traitlets.Bool(False).tag(sync=True)
    selected = traitlets.List(traitlets.Unicode()).tag(sync=True)
    caption = traitlets.Unicode("").tag(sync=True)
