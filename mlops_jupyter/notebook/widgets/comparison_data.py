"""What the run comparison panel computes from its runs: pure functions over the runs frame.

The frame is what :func:`mlops_jupyter.tracking.runs_query.runs_frame` returns: one row per
run, ``run_id``, ``run_name``, ``status``... then ``params.<name>`` (MLflow's strings) and
``metrics.<name>`` columns. Nothing here touches a widget or a store:
:class:`~mlops_jupyter.notebook.widgets.comparison.ComparisonPanel` keeps the widgets and
the traits and calls these functions with the traits' values.

Example:
    >>> import pandas as pd
    >>> runs = pd.DataFrame({"run_id": ["a", "b", "c"], "metrics.loss": [0.3, 0.1, 0.2]})
    >>> metric = default_metric(names(runs.columns, "metrics."))
    >>> metric, higher_is_better_for(metric)
    ('loss', False)
    >>> best_run_id(runs, metric, higher_is_better=False)
    'b'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from mlops_jupyter.notebook.widgets import charts
from mlops_jupyter.notebook.widgets.static import fmt
from mlops_jupyter.tracking.runs_query import (
    HOUSEKEEPING_METRICS,
    PREFERRED_METRICS,  # noqa: F401 (re-exported; the rule lives there)
    key_metric,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

MAX_TABLE_METRICS = 6
MAX_TABLE_PARAMS = 6
#: Most params the parallel-coordinates view draws as axes (the chosen one first).
MAX_AXIS_PARAMS = 6

#: (key, label, numeric) of a table column.
Column = tuple[str, str, bool]


# -- choices ---------------------------------------------------------------------------------
def names(columns: Iterable[str], prefix: str) -> list[str]:
    """The names under ``prefix`` (``metrics.`` or ``params.``) among ``columns``, in order.

    >>> names(["run_id", "metrics.f1", "params.lr", "metrics.loss"], "metrics.")
    ['f1', 'loss']
    """
    return [c[len(prefix) :] for c in columns if c.startswith(prefix)]


def default_metric(metrics: Sequence[str], sort_metric: str | None = None) -> str:
    """The metric shown first: the run's key metric as the sidebar shows it
    (:func:`mlops_jupyter.tracking.runs_query.key_metric`): the experiment's sort metric,
    else a usual one (:data:`PREFERRED_METRICS`, in order), else the first that is not
    housekeeping, else the first, else ``""``.

    >>> default_metric(["loss", "accuracy"]), default_metric(["loss", "accuracy"], sort_metric="loss")
    ('accuracy', 'loss')
    >>> default_metric(["cell_duration_s", "throughput"])
    'throughput'
    >>> default_metric(["cell_duration_s"]), default_metric([])
    ('cell_duration_s', '')
    """
    return key_metric(metrics, sort_metric)


def default_param(params: Sequence[str], frame: pd.DataFrame | None = None) -> str:
    """The param shown first: the one that varies most across the runs of ``frame`` (most
    distinct values; the first on a tie), else the first one, else ``""``.

    >>> import pandas as pd
    >>> runs = pd.DataFrame({"params.C": ["1", "1", "1"], "params.depth": ["2", "4", "8"]})
    >>> default_param(["C", "depth"], runs), default_param(["max_depth", "lr"]), default_param([])
    ('depth', 'max_depth', '')
    """
    if not params:
        return ""
    if frame is None or not len(frame):
        return params[0]
    scores = {p: charts.variation(frame[f"params.{p}"]) for p in params if f"params.{p}" in frame.columns}
    best = max(params, key=lambda p: scores.get(p, 0.0))
    return best if scores.get(best, 0.0) > 0 else params[0]


def varying_params(frame: pd.DataFrame, params: Sequence[str]) -> list[str]:
    """The params whose value differs between runs (all of them with fewer than two runs).

    >>> import pandas as pd
    >>> varying_params(pd.DataFrame({"params.C": ["1", "1"], "params.depth": ["2", "4"]}), ["C", "depth"])
    ['depth']
    """
    if len(frame) < 2:
        return list(params)
    return [p for p in params if f"params.{p}" in frame.columns and charts.variation(frame[f"params.{p}"]) > 0]


def higher_is_better_for(metric: str) -> bool:
    """Whether a higher ``metric`` is better, guessed from its name (True with no metric).

    >>> higher_is_better_for("accuracy"), higher_is_better_for("val_loss"), higher_is_better_for("")
    (True, False, True)
    """
    return not charts.lower_is_better(metric) if metric else True


def default_sort(metric: str, higher_is_better: bool) -> tuple[str, bool]:
    """``(sort_by, ascending)`` at first: by the metric, best first; with no metric, by
    start time, newest first.

    >>> default_sort("loss", higher_is_better=False)
    ('metrics.loss', True)
    >>> default_sort("", higher_is_better=True)
    ('start_time', False)
    """
    if metric:
        return f"metrics.{metric}", not higher_is_better
    return "start_time", False


def axis_params(param: str, params: Sequence[str], limit: int = MAX_AXIS_PARAMS) -> list[str]:
    """The params the parallel-coordinates view draws: the chosen one first, then the others
    (the caller passes only the params that vary, see :func:`varying_params`).

    >>> axis_params("lr", ["max_depth", "lr", "model"])
    ['lr', 'max_depth', 'model']
    """
    first = [param] if param else []
    return (first + [p for p in params if p != param])[:limit]


def with_cell_durations(frame: pd.DataFrame) -> pd.DataFrame:
    """A cell run's ``duration`` is the cell's own (``cell_duration_s``): cell autolog opens
    the run only once the cell has logged something, so start-to-end is shorter.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"duration": [0.01, 5.0], "metrics.cell_duration_s": [2.5, None]})
    >>> with_cell_durations(df)["duration"].tolist()
    [2.5, 5.0]
    """
    col = "metrics.cell_duration_s"
    if col not in frame.columns or "duration" not in frame.columns:
        return frame
    out = frame.copy()
    out["duration"] = out[col].where(out[col].notna(), out["duration"])
    return out


def without_sessions(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, sessions): cell autolog's session runs are the notebook session, not rows
    to compare (they stay RUNNING while the kernel lives)."""
    if "kind" not in frame.columns or not len(frame):
        return frame, frame.iloc[0:0]
    is_session = frame["kind"].astype(str) == "session"
    runs = frame[~is_session].reset_index(drop=True)
    only_sessions = [c for c in runs.columns if c.startswith(("metrics.", "params.")) and runs[c].isna().all()]
    return runs.drop(columns=only_sessions), frame[is_session].reset_index(drop=True)


# -- runs ------------------------------------------------------------------------------------
def best_run_id(frame: pd.DataFrame, metric: str, higher_is_better: bool) -> str | None:
    """The id of the run with the best finite ``metric`` (None when no run has one)."""
    col = f"metrics.{metric}"
    if metric and col in frame.columns and len(frame):
        idx = charts.best_run(frame[col], higher_is_better)
        if idx is not None:
            return str(frame.at[idx, "run_id"])
    return None


def run_row(frame: pd.DataFrame, run_id: str | None) -> dict[str, Any] | None:
    """The row of run ``run_id`` as a dict (None when it is not in ``frame``)."""
    if run_id is None:
        return None
    row = frame[frame["run_id"].astype(str) == run_id]
    return row.iloc[0].to_dict() if len(row) else None


def report_of(frame: pd.DataFrame, selected: Sequence[str]) -> tuple[str, str] | None:
    """(run id, HTML path) of the one selected run, if it is a report run."""
    if len(selected) != 1 or not len(frame):
        return None
    rows = frame[frame["run_id"].astype(str) == selected[0]]
    path = str(rows["report"].iloc[0]) if len(rows) else ""
    return (selected[0], path) if path else None


def concat_runs(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """``a`` then ``b``, renumbered."""
    import pandas as pd

    return pd.concat([a, b], ignore_index=True)


def chart_runs(
    frame: pd.DataFrame, selected: Sequence[str], max_points: int, best_run_id: str | None
) -> tuple[pd.DataFrame, str]:
    """The runs a chart draws, and what the panel says about them: the selected runs if
    any, else all of them up to ``max_points``, else a random sample of ``max_points``
    (the best run always in it)."""
    df = frame
    if selected:
        sel = set(selected)
        return df[df["run_id"].astype(str).isin(sel)], f"chart: the {len(sel)} selected runs"
    if len(df) > max_points:
        sample = df.sample(max_points, random_state=0)
        if best_run_id is not None and best_run_id not in set(sample["run_id"].astype(str)):
            sample = concat_runs(sample.iloc[:-1], df[df["run_id"].astype(str) == best_run_id])
        return sample, (f"chart: a random sample of {max_points:,} of {len(df):,} runs (the best run always included)")
    return df, ""


# -- table -----------------------------------------------------------------------------------
def sort_runs(frame: pd.DataFrame, sort_by: str, ascending: bool) -> pd.DataFrame:
    """``frame`` sorted by column ``sort_by`` (stable, missing values last; params that all
    read as numbers sorted as numbers). Unsorted when there is no such column."""
    import pandas as pd

    key = sort_by if sort_by in frame.columns else None
    if key is None:
        return frame
    col = frame[key]
    if key.startswith("params.") and charts.is_numeric(col):
        col = pd.to_numeric(col, errors="coerce")
    order = col.sort_values(ascending=ascending, na_position="last", kind="stable").index
    return frame.loc[order]


def n_pages(n_runs: int, page_size: int) -> int:
    """How many pages ``n_runs`` take (at least one).

    >>> n_pages(0, 25), n_pages(25, 25), n_pages(26, 25)
    (1, 1, 2)
    """
    return max(1, math.ceil(n_runs / max(1, page_size)))


def clamp_page(page: int, pages: int) -> int:
    """``page`` within ``0 .. pages - 1``.

    >>> clamp_page(-1, 3), clamp_page(1, 3), clamp_page(7, 3)
    (0, 1, 2)
    """
    return max(0, min(int(page), max(0, pages - 1)))


def page_of(runs: pd.DataFrame, page: int, page_size: int) -> pd.DataFrame:
    """Rows ``page * page_size`` up to the next page of ``runs``."""
    start = page * page_size
    return runs.iloc[start : start + page_size]


def table_columns(
    frame: pd.DataFrame,
    metric: str,
    param: str,
    metrics: Sequence[str],
    params: Sequence[str],
    all_params: bool = False,
) -> list[Column]:
    """(key, label, numeric) of the table's columns: run, status, duration, cell, then
    the chosen metric and param first among up to 6 metrics and 6 params. Params that
    never vary across the runs (e.g. a scikit-learn estimator's defaults) are left out
    unless ``all_params``."""
    chosen = [metric] + [m for m in metrics if m != metric and m not in HOUSEKEEPING_METRICS]
    chosen = [m for m in chosen if m][:MAX_TABLE_METRICS]
    shown = list(params) if all_params else varying_params(frame, params)
    ps = ([param] if param else []) + [p for p in shown if p != param]
    cols = [
        ("run_name", "run", False),
        ("status", "status", False),
        ("start_time", "started", False),
        ("duration", "duration (s)", True),
    ]
    if len(frame) and (frame["cell"].astype(str) != "").any():  # runs of notebook cells
        cols.append(("cell", "cell", False))
    if len(frame) and (frame["report"].astype(str) != "").any():  # runs of mlops-jupyter report
        cols.append(("report", "report", False))
    cols += [(f"metrics.{m}", m, True) for m in chosen]
    cols += [(f"params.{p}", p, charts.is_numeric(frame[f"params.{p}"])) for p in ps[:MAX_TABLE_PARAMS]]
    return cols


def table_rows(
    page: pd.DataFrame,
    columns: Sequence[Column],
    best_run_id: str | None,
    run_url: Callable[[str], str | None] | None = None,
) -> list[dict[str, Any]]:
    """The rows of the table widget: the run id, its cells as text, whether it is the best,
    its notebook cell's id (cell runs), and (``run_url`` given) the run's MLflow page, linked
    from the run's name."""
    rows = []
    for rec in page.to_dict("records"):
        rid = str(rec["run_id"])
        url = run_url(rid) if run_url is not None else None
        rows.append(
            {
                "id": rid,
                "cells": [fmt(rec.get(k)) for k, _, _ in columns],
                "best": rid == best_run_id,
                "status": str(rec.get("status") or ""),
                "url": url or "",
                "links": [url if k == "run_name" else None for k, _, _ in columns] if url else [],
                # JupyterLab's id of the run's cell: its `cell [N]` link finds the cell after a re-run
                "cell_id": str(rec.get("cell_id") or ""),
            }
        )
    return rows


def table_caption(first: int, shown: int, n_runs: int, sort_by: str, ascending: bool) -> str:
    """What the table shows: which runs of how many, in what order.

    >>> table_caption(25, 25, 1234, "metrics.accuracy", ascending=False)
    'runs 26–50 of 1,234, sorted by accuracy descending'
    >>> table_caption(0, 0, 0, "start_time", ascending=False)
    'no runs'
    """
    return (
        f"runs {first + 1:,}–{first + shown:,} of {n_runs:,}, sorted by "
        f"{sort_by.split('.', 1)[-1]} {'ascending' if ascending else 'descending'}"
        if shown
        else "no runs"
    )
