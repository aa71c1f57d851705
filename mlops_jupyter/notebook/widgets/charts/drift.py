"""Charts of the drift panel: drift scores by feature, a feature's reference vs current
distribution, and latency and success rate over time."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from mlops_jupyter.notebook.widgets.charts.common import (
    BLUE,
    GRAY,
    MAX_CATEGORIES,
    ORANGE,
    RED,
    WIDTH,
    _empty,
    ink,
    is_numeric,
)

if TYPE_CHECKING:  # pragma: no cover
    import altair as alt
    import pandas as pd


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
        # the effect (bias-corrected score) is what the decision compares with the threshold
        score = f.get("effect", f.get("score"))
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
    rule = alt.Chart(rule_df).mark_rule(color=ink("text"), strokeDash=[4, 3]).encode(x="threshold:Q")
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
