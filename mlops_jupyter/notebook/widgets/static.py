"""Static views of the panels: charts as SVG (rendered by vl-convert, no browser, no
network) and plain HTML tables, for executed notebooks and HTML reports.

A panel's ``_repr_mimebundle_`` puts this HTML next to the widget view: JupyterLab with a
kernel shows the live widget; nbconvert's HTML export, a notebook viewer or a notebook
opened without its widget state show this snapshot instead. Each SVG is embedded as a
``data:`` image, so several charts on one page never share element ids or styles.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from mlops_jupyter.notebook.widgets import theme

if TYPE_CHECKING:  # pragma: no cover
    import altair as alt

_STYLE = (
    f"font-family: var(--jp-ui-font-family, sans-serif); font-size: 13px; color: {theme.TEXT}; "
    f"border: 1px solid {theme.BORDER}; border-radius: 4px; padding: 8px 10px; max-width: 1100px; overflow-x: auto"
)
_TABLE = "border-collapse: collapse; font-size: 12px; margin: 6px 0"
MAX_CELL = 100
_CELL = f"border-bottom: 1px solid {theme.BORDER}; padding: 2px 8px; text-align: left; white-space: nowrap"
#: What a static view says under it: how to get the live panel back.
STATIC_NOTE = "Static view (a snapshot taken when the cell ran). Run the cell to get the live panel back."


def chart_svg(chart: alt.TopLevelMixin) -> str:
    """The chart as an SVG document, rendered by vl-convert (no browser, no network)."""
    buf = io.StringIO()
    with theme.applied():
        chart.properties(background=theme.paper()).save(buf, format="svg")  # readable wherever it is shown
    return buf.getvalue()


def svg_img(svg: str, alt_text: str = "chart") -> str:
    """An ``<img>`` holding ``svg`` as a data URI (self-contained, no shared ids)."""
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f'<img alt="{html.escape(alt_text)}" src="data:image/svg+xml;base64,{data}" style="max-width:100%"/>'


def chart_html(chart: alt.TopLevelMixin | None, alt_text: str = "chart") -> str:
    """A chart as a static ``<img>``; a short note if it cannot be rendered."""
    if chart is None:
        return ""
    try:
        return svg_img(chart_svg(chart), alt_text)
    except Exception as exc:  # a static view must never break the display of a panel
        why = f"{type(exc).__name__}: {exc}"
        return f"<p style='color:{theme.ERROR}'>chart not rendered: {html.escape(why)}</p>"


def fmt(v: Any) -> str:
    """A cell value as short text (floats to 4 significant digits, missing as blank)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return f"{v:.4g}"
    if isinstance(v, (dict, list, tuple)):
        import json

        return json.dumps(v, default=str)
    try:
        import pandas as pd

        if v is pd.NaT or (not isinstance(v, (str, bytes, list, dict, tuple)) and pd.isna(v)):
            return ""
        if isinstance(v, pd.Timestamp):
            return v.strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        pass
    return str(v)


def html_table(
    rows: Iterable[Sequence[Any]],
    header: Sequence[str],
    *,
    caption: str = "",
    highlight: Iterable[int] = (),
    mark: str = theme.HIGHLIGHT,
    links: Sequence[Sequence[str | None]] | None = None,
) -> str:
    """A plain HTML table; rows whose index is in ``highlight`` get a background (a theme
    tint: text keeps its contrast in light and dark themes). ``links[i][j]``, when given,
    makes cell ``j`` of row ``i`` a link (e.g. to its MLflow page)."""
    hl = set(highlight)
    head = "".join(
        f"<th scope='col' style='{_CELL}; border-bottom: 2px solid {theme.BORDER_STRONG}'>{html.escape(h)}</th>"
        for h in header
    )
    body = []
    for i, row in enumerate(rows):
        bg = f" style='background:{mark}; color:{theme.TEXT}'" if i in hl else ""
        urls = links[i] if links is not None and i < len(links) else ()
        cells = []
        for j, v in enumerate(row):
            text = html.escape(_short(fmt(v)))
            url = urls[j] if j < len(urls) else None
            if url:
                text = f"<a href='{html.escape(url)}' target='_blank' rel='noopener'>{text}</a>"
            cells.append(f"<td style='{_CELL}'>{text}</td>")
        body.append(f"<tr{bg}>" + "".join(cells) + "</tr>")
    cap = f"<caption style='text-align:left; font-weight:bold'>{html.escape(caption)}</caption>" if caption else ""
    return f"<table style='{_TABLE}'>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _short(text: str, limit: int = MAX_CELL) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def panel_html(title: str, parts: Sequence[str], *, css_class: str = "mlops-static", kind: str = "") -> str:
    """The static view of a panel: a titled box holding HTML parts, and a note saying
    that this is a snapshot and that running the cell brings the live panel back (a
    reopened notebook, nbviewer, GitHub and VS Code show this view)."""
    inner = "".join(p for p in parts if p)
    data = f" data-mlops-panel='{html.escape(kind)}'" if kind else ""
    return (
        f"<div class='{css_class}'{data} role='region' aria-label='{html.escape(title)}' style='{_STYLE}'>"
        f"<div style='font-weight:bold; font-size:14px'>{html.escape(title)}</div>{inner}"
        f"<div class='mlops-static-note' style='color:{theme.MUTED}; font-size:11px; margin-top:4px'>"
        f"{html.escape(STATIC_NOTE)}</div></div>"
    )
