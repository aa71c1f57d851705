"""Readable views of what magics return: plain dicts and lists that also render as HTML."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from typing import Any


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return html.escape(json.dumps(v, default=str)[:200])
    return html.escape(str(v))


class Result(dict):
    """A dict with an HTML view (key/value table)."""

    title = ""

    def __init__(self, data: dict[str, Any], title: str = "") -> None:
        super().__init__(data)
        self.title = title

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td style='text-align:left'>"
            f"{_cell(v)}</td></tr>"
            for k, v in self.items()
        )
        cap = f"<caption style='text-align:left'><b>{html.escape(self.title)}</b></caption>" if self.title else ""
        return f"<table>{cap}{rows}</table>"


class Table(list):
    """A list of dicts with an HTML table view; ``columns`` picks and orders what is shown."""

    def __init__(self, rows: Iterable[dict[str, Any]], columns: list[str], title: str = "") -> None:
        super().__init__(rows)
        self.columns = columns
        self.title = title

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(list(self))

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{_cell(_get(r, c))}</td>" for c in self.columns) + "</tr>" for r in self)
        cap = f"<caption style='text-align:left'><b>{html.escape(self.title)}</b> ({len(self)})</caption>"
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __repr__(self) -> str:
        lines = [f"{self.title} ({len(self)})" if self.title else f"{len(self)} rows"]
        lines.append(" | ".join(self.columns))
        for r in self[:50]:
            lines.append(" | ".join(str(_get(r, c)) for c in self.columns))
        if len(self) > 50:
            lines.append(f"... {len(self) - 50} more")
        return "\n".join(lines)


def _get(row: dict[str, Any], col: str) -> Any:
    """``metrics.accuracy`` reads ``row['metrics']['accuracy']``."""
    if "." in col:
        group, _, key = col.partition(".")
        if isinstance(row.get(group), dict):
            return row[group].get(key, "")
    v = row.get(col, "")
    return "" if v is None else v


# -- panels ----------------------------------------------------------------------------------
def in_kernel() -> bool:
    """True inside a Jupyter kernel (where widgets can show), False in a terminal or a test shell."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class PanelView:
    """Mixin for a magic's return value: it stays the plain value (a list or a dict), and
    in a Jupyter kernel it displays as a panel (the widget and its static view).

    ``panel()`` builds the panel; it is built only when the value is displayed, so
    ``runs = %mlops runs`` builds none.
    """

    def panel(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any] | None:
        if not in_kernel():
            return None  # the usual HTML table / text
        try:
            return self.panel()._repr_mimebundle_()
        except Exception as exc:  # never lose the value's own view to a panel problem
            import logging

            logging.getLogger(__name__).warning("mlops_jupyter: no panel for %s: %s", type(self).__name__, exc)
            return None


class RunsTable(PanelView, Table):
    """``%mlops runs``: the runs as a list of dicts; displayed as a ComparisonPanel."""

    def __init__(
        self,
        rows: Iterable[dict[str, Any]],
        columns: list[str],
        title: str = "",
        pipeline: Any = None,
        experiment: str | None = None,
    ) -> None:
        super().__init__(rows, columns, title)
        self.pipeline = pipeline
        self.experiment = experiment

    def panel(self) -> Any:
        from mlops_jupyter.notebook.widgets import ComparisonPanel

        return ComparisonPanel(runs=list(self), pipeline=self.pipeline)


class DriftResult(PanelView, Result):
    """``%mlops drift MODEL``: the ``check_drift`` dict; displayed as a DriftPanel."""

    def __init__(
        self,
        data: dict[str, Any],
        title: str = "",
        pipeline: Any = None,
        model_id: str = "",
        threshold: float = 0.1,
        window: Any = None,
    ) -> None:
        super().__init__(data, title)
        self.pipeline = pipeline
        self.model_id = model_id
        self.threshold = threshold
        self.window = window

    def panel(self) -> Any:
        from mlops_jupyter.notebook.widgets import DriftPanel

        return DriftPanel(
            self.model_id, pipeline=self.pipeline, threshold=self.threshold, window=self.window, drift=dict(self)
        )
