"""Charts of the panels: pure functions from data to an altair chart.

Nothing here reads a store, touches a widget or renders: each function takes plain data
(DataFrames, the dicts the core returns) and returns an ``altair`` chart, so a test checks
what a chart shows by reading ``chart.to_dict()``. The panels show these charts live
(:class:`altair.JupyterChart` with the Vega bundle of vl-convert, no network) and as static
SVG (:func:`mlops_jupyter.notebook.widgets.static.chart_svg`).

Field names inside the charts are plain words (``value``, ``param``, ``label``): a dot in a
Vega-Lite field name means a nested field, so ``metrics.accuracy`` is never used as one.

Example:
    >>> from mlops_jupyter.notebook.widgets import charts
    >>> chart = charts.drift_scores(result["features"], threshold=0.1)
    >>> chart.to_dict()["layer"][0]["mark"]["type"]
    'bar'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import altair as alt
    import pandas as pd

BLUE, ORANGE, RED, GREEN, GRAY = "#4c78a8", "#f58518", "#e45756", "#54a24b", "#9d9d9d"
BEST_COLOR = ORANGE
WIDTH = 520
#: Most bars a bar chart shows (the best ones, the best run always among them).
MAX_BARS = 30
#: Most lines a parallel-coordinates chart draws.
MAX_LINES = 300
#: Most categories a category distribution shows (the rest are summed as ``(other)``).
MAX_CATEGORIES = 20
#: Metric names where lower is better (``loss``, ``rmse``, ``latency``...).
LOWER_IS_BETTER_WORDS = (
    "loss",
    "error",
    "err",
    "rmse",
    "mse",
    "mae",
    "mape",
    "latency",
    "duration",
    "time",
    "perplexity",
    "logloss",
    "cost",
)


def lower_is_better(metric: str) -> bool:
    """Guess a metric's direction from its name (``val_loss`` -> True, ``accuracy`` -> False)."""
    words = metric.lower().replace("-", "_").replace(".", "_").split("_")
    return any(w in LOWER_IS_BETTER_WORDS for w in words)


def best_run(values: pd.Series, higher_is_better: bool = True) -> Any:
    """Index label of the best finite value of ``values`` (None when there is none)."""
    import pandas as pd

    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return None
    return v.idxmax() if higher_is_better else v.idxmin()


def is_numeric(values: pd.Series) -> bool:
    """True when every non-missing value reads as a number (params are stored as strings)."""
    import pandas as pd

    v = pd.Series(values).dropna()
    if v.empty or pd.api.types.is_bool_dtype(v):
        return False
    if pd.api.types.is_numeric_dtype(v):
        return True
    return bool(pd.to_numeric(v, errors="coerce").notna().all())


def run_labels(runs: pd.DataFrame) -> pd.Series:
    """Unique, readable run labels: ``name · abcdef`` (names repeat, e.g. ``cell-3``)."""
    names = runs["run_name"].fillna("").astype(str) if "run_name" in runs else runs["run_id"].astype(str)
    return names + " · " + runs["run_id"].astype(str).str[:6]


def _empty(message: str, width: int = WIDTH, height: int = 60) -> alt.Chart:
    import altair as alt
    import pandas as pd

    return (
        alt.Chart(pd.DataFrame({"text": [message]}))
        .mark_text(color=GRAY, fontSize=13)
        .encode(text="text:N")
        .properties(width=width, height=height)
    )


# -- runs ------------------------------------------------------------------------------------
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
    base = alt.Chart(shown).encode(
        y=alt.Y("label:N", sort=order, title=None, axis=alt.Axis(labelLimit=220)),
        x=alt.X("value:Q", title=name, scale=alt.Scale(zero=False)),
        tooltip=[alt.Tooltip("label:N", title="run"), alt.Tooltip("value:Q", title=name, format=".4g")],
    )
    bars = base.mark_bar().encode(color=alt.condition("datum.best", alt.value(BEST_COLOR), alt.value(BLUE)))
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
    base = alt.Chart(df).encode(
        x=x,
        y=alt.Y("value:Q", title=name, scale=alt.Scale(zero=False)),
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
    rules = alt.Chart(pd.DataFrame({"axis": order})).mark_rule(color="#666").encode(x=x)
    ticks = (
        alt.Chart(pd.DataFrame(ends, columns=["axis", "axis_index", "norm", "raw"]))
        .mark_text(align="left", dx=4, fontSize=10, color="#333")
        .encode(x=x, y=y, text="raw:N")
    )
    return alt.layer(rules, lines, ticks).properties(title=title, width=width, height=300)


# -- drift -----------------------------------------------------------------------------------
def drift_scores(features: Mapping[str, Mapping[str, Any]], threshold: float, *, width: int = WIDTH) -> alt.Chart:
    """Per-feature drift scores as bars, highest first, the drifted ones highlighted, with
    the threshold as a rule.

    Args:
        features: ``check_drift(...)["features"]``: name -> ``{score, drifted, method,
            p_value, statistic, kind}``.
        threshold: the threshold the scores were judged against.
    """
    import altair as alt
    import pandas as pd

    rows = []
    for name, f in features.items():
        score = f.get("score")
        if score is None or (isinstance(score, float) and not math.isfinite(score)):
            continue
        rows.append(
            {
                "feature": str(name),
                "score": float(score),
                "drifted": bool(f.get("drifted")),
                "method": str(f.get("method") or ""),
                "p_value": _num(f.get("p_value")),
                "statistic": _num(f.get("statistic")),
                "kind": str(f.get("kind") or ""),
            }
        )
    if not rows:
        return _empty("no feature scores")
    df = pd.DataFrame(rows).sort_values("score", ascending=False, kind="stable")
    df["status"] = df["drifted"].map({True: "drifted", False: "ok"})
    order = df["feature"].tolist()
    bars = (
        alt.Chart(df)
        .mark_bar()
        .encode(
            y=alt.Y("feature:N", sort=order, title=None, axis=alt.Axis(labelLimit=200)),
            x=alt.X("score:Q", title="drift score"),
            color=alt.Color(
                "status:N",
                scale=alt.Scale(domain=["drifted", "ok"], range=[RED, BLUE]),
                legend=alt.Legend(title=None, orient="bottom"),
            ),
            tooltip=[
                "feature:N",
                "kind:N",
                "method:N",
                alt.Tooltip("score:Q", format=".4f"),
                alt.Tooltip("statistic:Q", format=".4g"),
                alt.Tooltip("p_value:Q", format=".3g"),
                "status:N",
            ],
        )
    )
    rule_df = pd.DataFrame({"threshold": [float(threshold)], "label": [f"threshold {threshold:g}"]})
    rule = alt.Chart(rule_df).mark_rule(color="black", strokeDash=[4, 3]).encode(x="threshold:Q")
    label = (
        alt.Chart(rule_df)
        .mark_text(align="left", dx=3, baseline="top", fontSize=10)
        .encode(x="threshold:Q", y=alt.value(0), text="label:N")
    )
    drifted = int(df["drifted"].sum())
    title = f"drift score by feature ({drifted} of {len(df)} drifted)"
    return alt.layer(bars, rule, label).properties(title=title, width=width, height=max(60, 18 * len(df)))


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def distribution(
    reference: Iterable[Any],
    current: Iterable[Any],
    *,
    feature: str = "value",
    kind: str | None = None,
    bins: int = 30,
    max_categories: int = MAX_CATEGORIES,
    width: int = WIDTH,
) -> alt.Chart:
    """Reference vs current distribution of one feature, as shares of each sample.

    Numbers get a histogram on shared bin edges (overlaid bars); categories get grouped
    bars (the ``max_categories`` most frequent; the rest summed as ``(other)``).

    Args:
        reference, current: the feature's values in the reference data and the window.
        feature: its name (axis title).
        kind: ``numeric`` or ``categorical`` (default: numeric when both read as numbers).
        bins: histogram bins.
    """
    import altair as alt
    import numpy as np
    import pandas as pd

    ref, cur = (
        pd.Series(list(reference) if not hasattr(reference, "dtype") else reference),
        pd.Series(list(current) if not hasattr(current, "dtype") else current),
    )
    if kind is None:
        kind = (
            "numeric"
            if (is_numeric(ref) or ref.dropna().empty) and (is_numeric(cur) or cur.dropna().empty)
            else "categorical"
        )
    colors = alt.Scale(domain=["reference", "current"], range=[GRAY, ORANGE])
    title = f"{feature}: reference ({len(ref):,}) vs current ({len(cur):,})"
    if kind == "numeric":
        r = pd.to_numeric(ref, errors="coerce").to_numpy(dtype=float)
        c = pd.to_numeric(cur, errors="coerce").to_numpy(dtype=float)
        r, c = r[np.isfinite(r)], c[np.isfinite(c)]
        both = np.concatenate([r, c])
        if both.size == 0:
            return _empty(f"{feature}: no numeric values")
        lo, hi = float(both.min()), float(both.max())
        if hi <= lo:
            hi = lo + 1.0
        edges = np.linspace(lo, hi, bins + 1)
        rows = []
        for source, values in (("reference", r), ("current", c)):
            counts, _ = np.histogram(values, bins=edges)
            share = counts / max(1, values.size)
            rows.append(
                pd.DataFrame({"source": source, "start": edges[:-1], "end": edges[1:], "share": share, "count": counts})
            )
        df = pd.concat(rows, ignore_index=True)
        return (
            alt.Chart(df)
            .mark_bar(opacity=0.6, binSpacing=0)
            .encode(
                x=alt.X("start:Q", title=feature, bin="binned"),
                x2="end:Q",
                y=alt.Y("share:Q", title="share of sample", stack=None, axis=alt.Axis(format="%")),
                color=alt.Color("source:N", scale=colors, legend=alt.Legend(title=None, orient="top")),
                tooltip=[
                    "source:N",
                    alt.Tooltip("start:Q", format=".4g"),
                    alt.Tooltip("end:Q", format=".4g"),
                    alt.Tooltip("share:Q", format=".1%"),
                    "count:Q",
                ],
            )
            .properties(title=title, width=width, height=200)
        )
    # counts first, then labels: a million-row category column is never copied as strings
    counts = {}
    for source, values in (("reference", ref), ("current", cur)):
        vc = values.value_counts(dropna=True)
        vc.index = vc.index.map(str)
        counts[source] = vc.groupby(level=0).sum()
    freq = counts["reference"].add(counts["current"], fill_value=0).sort_values(ascending=False, kind="stable")
    top = list(freq.index[:max_categories])
    rows = []
    for source, vc in counts.items():
        n = max(1, int(vc.sum()))
        kept = vc[vc.index.isin(top)]
        rows += [{"source": source, "category": k, "share": v / n, "count": int(v)} for k, v in kept.items()]
        rest = int(vc.sum() - kept.sum())
        if rest:
            rows.append({"source": source, "category": "(other)", "share": rest / n, "count": rest})
    if not rows:
        return _empty(f"{feature}: no values")
    df = pd.DataFrame(rows)
    order = top + (["(other)"] if (df["category"] == "(other)").any() else [])
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X("category:N", sort=order, title=feature, axis=alt.Axis(labelAngle=-30)),
            xOffset=alt.XOffset("source:N", sort=["reference", "current"]),
            y=alt.Y("share:Q", title="share of sample", axis=alt.Axis(format="%")),
            color=alt.Color("source:N", scale=colors, legend=alt.Legend(title=None, orient="top")),
            tooltip=["source:N", "category:N", alt.Tooltip("share:Q", format=".1%"), "count:Q"],
        )
        .properties(title=title, width=width, height=200)
    )


def performance_timeline(ts: pd.DataFrame, *, width: int = WIDTH) -> alt.Chart:
    """Latency (average and p95, ms) and success rate over time, a line per version.

    Args:
        ts: ``timeseries(...)``: columns ``time``, ``version``, ``count``, ``avg_latency``,
            ``p95_latency`` (seconds) and ``success_rate`` (0..1).
    """
    import altair as alt
    import pandas as pd

    if ts is None or len(ts) == 0:
        return _empty("no predictions logged yet")
    df = pd.DataFrame(
        {
            "time": pd.to_datetime(ts["time"], utc=True),
            "version": ts["version"].astype(str) if "version" in ts else "all",
            "count": pd.to_numeric(ts.get("count", 0), errors="coerce"),
            "avg": pd.to_numeric(ts["avg_latency"], errors="coerce") * 1000.0,
            "p95": pd.to_numeric(ts["p95_latency"], errors="coerce") * 1000.0,
            "success_rate": pd.to_numeric(ts["success_rate"], errors="coerce"),
        }
    )
    long = df.melt(
        id_vars=["time", "version", "count"], value_vars=["avg", "p95"], var_name="stat", value_name="latency_ms"
    ).dropna(subset=["latency_ms"])
    df["when"] = df["time"].dt.strftime("%Y-%m-%d %H:%M:%S UTC")
    long = long.merge(df[["time", "version", "when"]], on=["time", "version"], how="left")
    # times in UTC, 24-hour clock (Vega's default is the browser's zone on a 12-hour clock)
    x = alt.X("time:T", title="UTC", scale=alt.Scale(type="utc"), axis=alt.Axis(format="%H:%M"))
    color = alt.Color("version:N", legend=alt.Legend(title="version", orient="right"))
    latency = (
        alt.Chart(long)
        .mark_line(point=len(df) < 60)
        .encode(
            x=x,
            y=alt.Y("latency_ms:Q", title="latency (ms)"),
            color=color,
            strokeDash=alt.StrokeDash(
                "stat:N",
                scale=alt.Scale(domain=["avg", "p95"], range=[[1, 0], [4, 3]]),
                legend=alt.Legend(title="latency", orient="right"),
            ),
            tooltip=["when:N", "version:N", "stat:N", alt.Tooltip("latency_ms:Q", format=".2f"), "count:Q"],
        )
        .properties(title="latency over time", width=width, height=140)
    )
    success = (
        alt.Chart(df.dropna(subset=["success_rate"]))
        .mark_line(point=len(df) < 60)
        .encode(
            x=x,
            y=alt.Y(
                "success_rate:Q",
                title="success rate",
                axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[min(0.9, float(df["success_rate"].min() or 0)), 1]),
            ),
            color=color,
            tooltip=["when:N", "version:N", alt.Tooltip("success_rate:Q", format=".2%"), "count:Q"],
        )
        .properties(title="success rate over time", width=width, height=100)
    )
    return alt.vconcat(latency, success).resolve_scale(color="shared")


# -- deployments -----------------------------------------------------------------------------
def traffic_split(deployments: Sequence[Mapping[str, Any]], *, width: int = WIDTH) -> alt.Chart:
    """What serves in each environment: a stacked bar per environment, a segment per version.

    Args:
        deployments: ``list_deployments()`` items of one model (``environment``,
            ``traffic`` version -> %, ``status``).
    """
    import altair as alt
    import pandas as pd

    rows = []
    for d in deployments:
        for version, pct in (d.get("traffic") or {}).items():
            rows.append(
                {
                    "environment": f"{d['environment']} ({d.get('status', '')})",
                    "version": str(version),
                    "percent": int(pct),
                    "label": f"{version} · {int(pct)}%",
                }
            )
    rank = {v: i for i, v in enumerate(sorted({r["version"] for r in rows}))}
    for r in rows:
        r["rank"] = rank[r["version"]]  # segments stacked in version order
    if not rows:
        return _empty("not deployed anywhere yet")
    df = pd.DataFrame(rows)
    base = alt.Chart(df).encode(
        y=alt.Y("environment:N", title=None, axis=alt.Axis(labelLimit=200)),
        x=alt.X("percent:Q", stack="zero", title="traffic (%)", scale=alt.Scale(domain=[0, 100])),
        tooltip=["environment:N", "version:N", "percent:Q"],
    )
    bars = base.mark_bar().encode(
        color=alt.Color("version:N", legend=alt.Legend(title="version")), order=alt.Order("rank:Q")
    )
    text = base.mark_text(color="white", fontWeight="bold").encode(
        x=alt.X("percent:Q", stack="zero", bandPosition=0.5), text="label:N", order=alt.Order("rank:Q")
    )
    return alt.layer(bars, text).properties(
        title="traffic by environment", width=width, height=max(40, 32 * df["environment"].nunique())
    )


def version_lineage(
    lineage: Mapping[str, Any], live: Mapping[str, Mapping[str, int]] | None = None, *, width: int = WIDTH
) -> alt.Chart:
    """The version graph: a node per version in creation order, an edge to each version
    from its parent (a new lane when a parent has several children), live ones marked.

    Args:
        lineage: ``get_lineage(model_id)`` (``versions`` with ``version`` and ``parent``).
        live: environment -> {version: %}, to mark what serves where.
    """
    import altair as alt
    import pandas as pd

    versions = list(lineage.get("versions") or [])
    if not versions:
        return _empty("no versions yet")
    serving: dict[str, list[str]] = {}
    for env, table in (live or {}).items():
        for v, pct in table.items():
            serving.setdefault(str(v), []).append(f"{env} {pct}%")
    for alias, v in (lineage.get("live") or {}).items():
        if v:
            serving.setdefault(str(v), []).append(f"@{alias}")
    lane: dict[str, int] = {}
    used_children: dict[str, int] = {}
    next_lane = 0
    nodes = []
    for i, v in enumerate(versions):
        name, parent = str(v["version"]), v.get("parent")
        if parent in lane:
            k = used_children.get(parent, 0)
            used_children[parent] = k + 1
            if k == 0:
                lane[name] = lane[parent]
            else:
                next_lane += 1
                lane[name] = next_lane
        else:
            lane[name] = next_lane if i == 0 else next_lane + 1
            next_lane = lane[name]
        where = serving.get(name, [])
        nodes.append(
            {
                "version": name,
                "x": i,
                "y": lane[name],
                "parent": parent or "",
                "created": str(v.get("created_at") or ""),
                "live": ", ".join(where),
                "state": "live" if where else "idle",
            }
        )
    ndf = pd.DataFrame(nodes)
    pos = {n["version"]: (n["x"], n["y"]) for n in nodes}
    edges = pd.DataFrame(
        [
            {"x": pos[n["parent"]][0], "y": pos[n["parent"]][1], "x2": n["x"], "y2": n["y"]}
            for n in nodes
            if n["parent"] in pos
        ],
        columns=["x", "y", "x2", "y2"],
    )
    xs = alt.Scale(domain=[-0.5, max(0.5, len(nodes) - 0.5)])
    ys = alt.Scale(domain=[-0.6, max(0.6, ndf["y"].max() + 0.6)], reverse=True)
    layers = []
    if len(edges):
        layers.append(
            alt.Chart(edges)
            .mark_rule(color="#888", strokeWidth=2)
            .encode(x=alt.X("x:Q", axis=None, scale=xs), y=alt.Y("y:Q", axis=None, scale=ys), x2="x2:Q", y2="y2:Q")
        )
    nodes_chart = alt.Chart(ndf).encode(
        x=alt.X("x:Q", axis=None, scale=xs),
        y=alt.Y("y:Q", axis=None, scale=ys),
        tooltip=["version:N", "parent:N", "created:N", "live:N"],
    )
    layers.append(
        nodes_chart.mark_circle(size=260, opacity=1).encode(
            color=alt.Color(
                "state:N",
                scale=alt.Scale(domain=["live", "idle"], range=[GREEN, GRAY]),
                legend=alt.Legend(title=None, orient="bottom"),
            )
        )
    )
    layers.append(nodes_chart.mark_text(dy=-16, fontWeight="bold").encode(text="version:N"))
    layers.append(nodes_chart.mark_text(dy=18, fontSize=10, color="#333").encode(text="live:N"))
    return alt.layer(*layers).properties(
        title=f"versions of {lineage.get('model_id', '')} (parent → child)",
        width=width,
        height=70 + 50 * int(ndf["y"].max()),
    )
