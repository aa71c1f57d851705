"""What the run comparison panel shows, built from plain values: the chart of the current
view and the panel's HTML (title, summary, notes, an opened report, the static view).

Nothing here touches a widget: :class:`~mlops_jupyter.notebook.widgets.comparison.ComparisonPanel`
calls these functions with its traits and puts what they return into its widgets.

Example:
    >>> summary_html(1234, "accuracy", {"run_id": "abcdef123", "metrics.accuracy": 0.91}, 0)
    "<b>1,234</b> runs · best accuracy <b style='color:var(--jp-warn-color0, #b26a00)'>★ 0.91</b> (abcdef12)"
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlops_jupyter.notebook.widgets import charts, theme
from mlops_jupyter.notebook.widgets.comparison_data import Column, axis_params
from mlops_jupyter.notebook.widgets.static import chart_html, fmt, html_table, panel_html

if TYPE_CHECKING:  # pragma: no cover
    import altair as alt
    import pandas as pd

NOTE_COLOR = theme.WARN


def view_chart(
    runs: pd.DataFrame,
    note: str,
    *,
    view: str,
    metric: str,
    param: str,
    params: Sequence[str],
    best_run_id: str | None,
    higher_is_better: bool,
    history: pd.DataFrame | None = None,
) -> tuple[alt.Chart, str]:
    """The chart of ``view`` (``bar``, ``scatter``, ``parallel`` or ``steps``) over
    ``runs``, and the note the panel shows above it: ``note`` (what ``runs`` are, see
    :func:`~mlops_jupyter.notebook.widgets.comparison_data.chart_runs`) plus what the chart
    leaves out. ``params`` are those the parallel view may draw (the ones that vary);
    ``history`` is the metric's points by step (``steps`` view)."""
    total = len(runs)
    if not metric:
        return charts._empty("no metrics logged in these runs"), note
    col = f"metrics.{metric}"
    if view == "steps":
        import pandas as pd

        hist = history if history is not None else pd.DataFrame(columns=["run_id", "label", "step", "value"])
        n = hist["run_id"].nunique() if len(hist) else 0
        if total > n and n >= charts.MAX_STEP_RUNS:
            note = (note + "; " if note else "chart: ") + f"the {n} best runs' curves (select runs to pick others)"
        return charts.metric_steps(hist, metric, best_run_id=best_run_id), note
    if view == "bar":
        note = note or (f"chart: the best {charts.MAX_BARS} of {total:,} runs" if total > charts.MAX_BARS else "")
        chart = charts.metric_bar(runs, col, best_run_id=best_run_id, higher_is_better=higher_is_better, total=total)
    elif view == "scatter":
        if not param:
            chart = charts._empty("no params logged in these runs")
        else:
            chart = charts.metric_scatter(runs, col, f"params.{param}", best_run_id=best_run_id, total=total)
    else:
        cols = [f"params.{p}" for p in axis_params(param, params)] + [col]
        if total > charts.MAX_LINES:
            note = (note + "; " if note else "chart: ") + f"{charts.MAX_LINES} lines drawn at random"
        chart = charts.parallel_coordinates(runs, cols, best_run_id=best_run_id, total=total)
    return chart, note


def title_html(where: str, tenant: str, where_html: str | None = None) -> str:
    """The panel's title line: what runs it shows (``where_html``: the same as HTML, e.g.
    with the experiment linked to MLflow), of which tenant."""
    return (
        f"<b style='font-size:14px'>Run comparison</b> <span style='color:{theme.MUTED}'>· "
        f"{where_html or html.escape(where)} · tenant {html.escape(tenant)}</span>"
    )


def summary_html(n_runs: int, metric: str, best: Mapping[str, Any] | None, n_selected: int, session: str = "") -> str:
    """How many runs, the best one for ``metric`` (its row, if any), how many selected, and
    the notebook session the cell runs belong to (``session``: its description)."""
    parts = [f"<b>{n_runs:,}</b> runs"]
    if session:
        parts.append(html.escape(session))
    if best is not None:
        value = best.get(f"metrics.{metric}")
        parts.append(
            f"best {html.escape(metric)} <b style='color:{theme.WARN}'>★ {fmt(value)}</b> "
            f"({html.escape(str(best.get('run_name') or best['run_id'][:8]))})"
        )
    if n_selected:
        parts.append(f"<b>{n_selected}</b> selected")
    return " · ".join(parts)


def note_html(note: str, tag: str = "span") -> str:
    """A chart note in the warning colour (``""`` for no note).

    >>> note_html("chart: the 2 selected runs")
    "<span style='color:var(--jp-warn-color0, #b26a00)'>chart: the 2 selected runs</span>"
    >>> note_html("")
    ''
    """
    return f"<{tag} style='color:{NOTE_COLOR}'>{html.escape(note)}</{tag}>" if note else ""


def report_html(run_id: str, path: str, content: str) -> str:
    """A report's self-contained HTML in a sandboxed iframe, under its run and path."""
    return (
        f"<div style='margin-top:6px'>report of run {html.escape(run_id)}: <code>{html.escape(path)}</code></div>"
        f'<iframe srcdoc="{html.escape(content, quote=True)}" '
        f"style='width:100%;height:640px;border:1px solid {theme.BORDER}' sandbox=''></iframe>"
    )


def static_view(
    where: str,
    summary: str,
    note: str,
    chart: alt.TopLevelMixin | None,
    page: pd.DataFrame,
    columns: Sequence[Column],
    best_run_id: str | None,
    caption: str,
    run_url: Callable[[str], str | None] | None = None,
) -> str:
    """The panel as self-contained HTML: the summary, the chart note, the chart as SVG and
    the current page of the table, the best run highlighted, run names linked to their
    MLflow pages when a UI is known."""
    best = [i for i, r in enumerate(page["run_id"].astype(str)) if r == best_run_id]
    records = page.to_dict("records")
    links = None
    if run_url is not None:
        links = [[run_url(str(rec["run_id"])) if k == "run_name" else None for k, _, _ in columns] for rec in records]
    table = html_table(
        ([rec.get(k) for k, _, _ in columns] for rec in records),
        [label for _, label, _ in columns],
        highlight=best,
        caption=caption,
        links=links,
    )
    return panel_html(
        f"Run comparison · {where}",
        [f"<div>{summary}</div>", note_html(note, "div"), chart_html(chart, "runs chart"), table],
        kind="comparison",
    )
