"""Charts of the run comparison panel: a metric by run (bars), a metric against a param
(scatter), params and metrics by run (parallel coordinates) and a metric over its steps
(a line per run), the best run marked. Metric axes are zoomed to the data and say so."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mlops_jupyter.notebook.widgets.charts.common import (
    BEST_COLOR,
    BLUE,
    MAX_BARS,
    MAX_LINES,
    WIDTH,
    _empty,
    ink,
    is_numeric,
    run_labels,
    zoom_note,
    zoomed_domain,
)

if TYPE_CHECKING:  # pragma: no cover
    import altair as alt
    import pandas as pd


def _run_frame(runs: pd.DataFrame, metric: str, best_run_id: Any) -> pd.DataFrame:
    import pandas as pd

    col = metric if metric in runs.columns else f"metrics.{metric}"
    df = pd.DataFrame(
        {
            "run_id": runs["run_id"].astype(str).to_numpy(),
            "label": run_labels(runs).to_numpy(),
            "value": pd.to_numeric(runs[col], errors="coerce").to_numpy() if col in runs else math.nan,
        }
    )
    df["best"] = df["run_id"] == str(best_run_id) if best_run_id is not None else False
    return df


def metric_bar(
    runs: pd.DataFrame,
    metric: str,
    *,
    best_run_id: Any = None,
    higher_is_better: bool = True,
    top: int = MAX_BARS,
    total: int | None = None,
    width: int = WIDTH,
) -> alt.Chart:
    """One bar per run for ``metric``, best first, the best run marked.

    Args:
        runs: a runs frame (``run_id``, ``run_name`` and ``metrics.<metric>`` columns).
        metric: the metric's key (``accuracy``) or column (``metrics.accuracy``).
        best_run_id: the run to mark as best.
        higher_is_better: sort direction.
        top: show at most this many runs (the best ones; the best run always).
        total: how many runs there are in all (for the title), default ``len(runs)``.
    """
    import altair as alt
    import pandas as pd

    name = metric.removeprefix("metrics.")
    df = _run_frame(runs, metric, best_run_id).dropna(subset=["value"])
    if df.empty:
        return _empty(f"no run has the metric {name!r}")
    df = df.sort_values("value", ascending=not higher_is_better, kind="stable")
    shown = df.head(top)
    if best_run_id is not None and not shown["best"].any() and df["best"].any():
        shown = pd.concat([shown.iloc[: top - 1], df[df["best"]]])
    total = len(runs) if total is None else total
    title = f"{name} by run" + (f" (best {len(shown)} of {total:,} runs)" if total > len(shown) else "")
    order = shown["label"].tolist()
    domain = zoomed_domain(shown["value"])
    base = alt.Chart(shown).encode(
        y=alt.Y("label:N", sort=order, title=None, axis=alt.Axis(labelLimit=220)),
        x=alt.X("value:Q", title=name + zoom_note(domain), scale=alt.Scale(domain=domain, zero=False, clamp=True)),
        tooltip=[alt.Tooltip("label:N", title="run"), alt.Tooltip("value:Q", title=name, format=".4g")],
    )
    bars = base.mark_bar(clip=True).encode(color=alt.condition("datum.best", alt.value(BEST_COLOR), alt.value(BLUE)))
    marks = (
        base.transform_filter("datum.best")
        .mark_text(align="left", dx=4, fontWeight="bold", color=BEST_COLOR)
        .encode(text=alt.value("★ best"))
    )
    return alt.layer(bars, marks).properties(title=title, width=width, height=max(60, 16 * len(shown)))


def metric_scatter(
    runs: pd.DataFrame,
    metric: str,
    param: str,
    *,
    best_run_id: Any = None,
    total: int | None = None,
    width: int = WIDTH,
) -> alt.Chart:
    """``metric`` against ``param``, a point per run, the best run marked.

    A param whose values all read as numbers gets a quantitative axis, else a nominal one.
    """
    import altair as alt
    import pandas as pd

    name, pname = metric.removeprefix("metrics."), param.removeprefix("params.")
    pcol = param if param in runs.columns else f"params.{param}"
    df = _run_frame(runs, metric, best_run_id)
    raw = runs[pcol] if pcol in runs.columns else pd.Series([None] * len(runs))
    numeric = is_numeric(raw)
    df["param"] = pd.to_numeric(raw, errors="coerce").to_numpy() if numeric else raw.astype("string").to_numpy()
    df = df.dropna(subset=["value", "param"])
    if df.empty:
        return _empty(f"no run has both {name!r} and {pname!r}")
    df["layer"] = df["best"].astype(int)
    total = len(runs) if total is None else total
    title = f"{name} vs {pname}" + (f" ({len(df):,} of {total:,} runs)" if total > len(df) else "")
    x = alt.X("param:Q", title=pname, scale=alt.Scale(zero=False)) if numeric else alt.X("param:N", title=pname)
    domain = zoomed_domain(df["value"])
    base = alt.Chart(df).encode(
        x=x,
        y=alt.Y("value:Q", title=name + zoom_note(domain), scale=alt.Scale(domain=domain, zero=False)),
        tooltip=[
            alt.Tooltip("label:N", title="run"),
            alt.Tooltip("param", title=pname),
            alt.Tooltip("value:Q", title=name, format=".4g"),
        ],
    )
    points = base.mark_circle(opacity=0.7).encode(
        color=alt.condition("datum.best", alt.value(BEST_COLOR), alt.value(BLUE)),
        size=alt.condition("datum.best", alt.value(220), alt.value(40)),
        order=alt.Order("layer:Q"),  # the best run drawn last, on top
    )
    marks = (
        base.transform_filter("datum.best")
        .mark_text(align="left", dx=9, fontWeight="bold", color=BEST_COLOR)
        .encode(text=alt.value("★ best"))
    )
    return alt.layer(points, marks).properties(title=title, width=width, height=300)


def parallel_coordinates(
    runs: pd.DataFrame,
    columns: Sequence[str],
    *,
    best_run_id: Any = None,
    max_lines: int = MAX_LINES,
    total: int | None = None,
    width: int = WIDTH,
) -> alt.Chart:
    """One line per run across params and metrics, each axis scaled to its own range.

    Numeric axes are min-max scaled; other params are spread evenly by category. The best
    run is drawn on top in the best colour. Axis ends are labelled with their raw values.
    """
    import altair as alt
    import pandas as pd

    cols = [c for c in columns if c in runs.columns]
    if len(cols) < 2:
        return _empty("parallel coordinates need at least two params or metrics")
    sub = runs
    if len(sub) > max_lines:
        keep = sub.sample(max_lines, random_state=0)
        if best_run_id is not None and str(best_run_id) not in set(keep["run_id"].astype(str)):
            keep = pd.concat([keep.iloc[:-1], sub[sub["run_id"].astype(str) == str(best_run_id)]])
        sub = keep
    labels = run_labels(sub).to_numpy()
    ids = sub["run_id"].astype(str).to_numpy()
    frames, ends = [], []
    for i, col in enumerate(cols):
        axis = col.split(".", 1)[-1]
        raw = sub[col]
        if is_numeric(raw):
            v = pd.to_numeric(raw, errors="coerce")
            lo, hi = v.min(), v.max()
            norm = (v - lo) / (hi - lo) if hi > lo else v * 0 + 0.5
            shown = v.map(lambda x: f"{x:.4g}" if pd.notna(x) else "")
            ends += [(axis, i, 0.0, f"{lo:.4g}"), (axis, i, 1.0, f"{hi:.4g}")]
        else:
            cats = sorted(raw.dropna().astype(str).unique())
            pos = {c: (k / (len(cats) - 1) if len(cats) > 1 else 0.5) for k, c in enumerate(cats)}
            norm = raw.astype("string").map(lambda c, pos=pos: pos.get(c) if pd.notna(c) else None).astype(float)
            shown = raw.astype("string").fillna("")
            ends += [(axis, i, p, c) for c, p in pos.items()][:12]
        frames.append(
            pd.DataFrame(
                {
                    "run_id": ids,
                    "label": labels,
                    "axis": axis,
                    "axis_index": i,
                    "norm": norm.to_numpy(),
                    "raw": shown.to_numpy(),
                }
            )
        )
    long = pd.concat(frames, ignore_index=True).dropna(subset=["norm"])
    long["best"] = long["run_id"] == str(best_run_id) if best_run_id is not None else False
    long["layer"] = long["best"].astype(int)
    order = [c.split(".", 1)[-1] for c in cols]
    total = len(runs) if total is None else total
    title = "params and metrics by run" + (f" ({len(sub):,} of {total:,} runs)" if total > len(sub) else "")
    x = alt.X("axis:N", sort=order, title=None, axis=alt.Axis(labelAngle=0, domain=False, ticks=False))
    y = alt.Y("norm:Q", axis=None, scale=alt.Scale(domain=[0, 1]))
    lines = (
        alt.Chart(long)
        .mark_line()
        .encode(
            x=x,
            y=y,
            detail="run_id:N",
            color=alt.condition("datum.best", alt.value(BEST_COLOR), alt.value(BLUE)),
            opacity=alt.condition("datum.best", alt.value(1.0), alt.value(0.25)),
            strokeWidth=alt.condition("datum.best", alt.value(3), alt.value(1)),
            order=alt.Order("layer:Q"),  # the best run drawn last, on top
            tooltip=[alt.Tooltip("label:N", title="run"), alt.Tooltip("axis:N"), alt.Tooltip("raw:N", title="value")],
        )
    )
    rules = alt.Chart(pd.DataFrame({"axis": order})).mark_rule(color=ink("domain")).encode(x=x)
    ticks = (
        alt.Chart(pd.DataFrame(ends, columns=["axis", "axis_index", "norm", "raw"]))
        .mark_text(align="left", dx=4, fontSize=10, color=ink("text"))
        .encode(x=x, y=y, text="raw:N")
    )
    return alt.layer(rules, lines, ticks).properties(title=title, width=width, height=300)


#: Most runs a per-step chart draws (one line each).
MAX_STEP_RUNS = 20


def metric_steps(history: pd.DataFrame, metric: str, *, best_run_id: Any = None, width: int = WIDTH) -> alt.Chart:
    """A metric over its steps, one line per run (the chart W&B users expect for curves).

    Args:
        history: one row per logged point: ``run_id``, ``label`` (the run's label),
            ``step``, ``value``.
        metric: the metric's name (for the titles).
        best_run_id: the run drawn thicker, on top.
    """
    import altair as alt

    name = metric.removeprefix("metrics.")
    df = history.dropna(subset=["value"]).copy() if len(history) else history
    if not len(df) or df.groupby("run_id")["step"].nunique().max() < 2:
        return _empty(f"{name!r} was not logged over steps (log it with step=N to get curves)")
    df["best"] = df["run_id"].astype(str) == str(best_run_id) if best_run_id is not None else False
    domain = zoomed_domain(df["value"])
    n_runs = df["run_id"].nunique()
    return (
        alt.Chart(df)
        .mark_line(point=alt.OverlayMarkDef(size=18))
        .encode(
            x=alt.X("step:Q", title="step"),
            y=alt.Y("value:Q", title=name + zoom_note(domain), scale=alt.Scale(domain=domain, zero=False)),
            color=alt.Color("label:N", title="run", legend=alt.Legend(labelLimit=200)),
            strokeWidth=alt.condition("datum.best", alt.value(3), alt.value(1.5)),
            detail="run_id:N",
            tooltip=[
                alt.Tooltip("label:N", title="run"),
                alt.Tooltip("step:Q"),
                alt.Tooltip("value:Q", title=name, format=".4g"),
            ],
        )
        .properties(title=f"{name} by step ({n_runs} run{'s' if n_runs != 1 else ''})", width=width, height=280)
    )
