"""The panels' charts: pure functions from data to altair charts, checked by reading their
Vega-Lite specs (what data, which marks and encodings, what is highlighted), plus the
static SVG rendering and the offline chart bundle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_jupyter.notebook.widgets import charts


def datasets(chart) -> list[list[dict]]:
    """Every inline dataset of a chart's spec (altair moves DataFrames into ``datasets``)."""
    return list(chart.to_dict()["datasets"].values())


def rows_with(chart, *keys: str) -> list[dict]:
    """Rows of the dataset that has all ``keys``."""
    for values in datasets(chart):
        if values and all(k in values[0] for k in keys):
            return values
    raise AssertionError(f"no dataset with {keys} in {[list(v[0]) for v in datasets(chart) if v]}")


def marks(spec: dict) -> list[str]:
    out = []
    for layer in spec.get("layer", [spec]):
        m = layer.get("mark")
        out.append(m if isinstance(m, str) else m["type"])
    return out


@pytest.fixture
def runs() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 80
    return pd.DataFrame(
        {
            "run_id": [f"{i:032x}" for i in range(n)],
            "run_name": [f"run-{i}" for i in range(n)],
            "params.max_depth": [str(d) for d in rng.integers(2, 20, n)],
            "params.model": rng.choice(["rf", "gb", "lr"], n),
            "metrics.accuracy": rng.uniform(0.6, 0.95, n),
            "metrics.loss": rng.uniform(0.1, 1.0, n),
        }
    )


def test_direction_of_a_metric_is_guessed_from_its_name():
    assert charts.lower_is_better("val_loss") and charts.lower_is_better("rmse")
    assert charts.lower_is_better("p95-latency")
    assert not charts.lower_is_better("accuracy") and not charts.lower_is_better("f1_score")
    s = pd.Series([0.2, 0.9, None, 0.5], index=list("abcd"))
    assert charts.best_run(s) == "b" and charts.best_run(s, higher_is_better=False) == "a"
    assert charts.best_run(pd.Series([None, None], dtype=float)) is None
    assert charts.is_numeric(pd.Series(["2", "10", None])) and not charts.is_numeric(pd.Series(["2", "rf"]))


def test_metric_bar_shows_the_best_runs_first_and_marks_the_best(runs):
    best = runs.loc[runs["metrics.accuracy"].idxmax(), "run_id"]
    chart = charts.metric_bar(runs, "metrics.accuracy", best_run_id=best, top=10)
    spec = chart.to_dict()
    assert marks(spec) == ["bar", "text"]
    bars = rows_with(chart, "label", "value", "best")
    assert len(bars) == 10
    values = [r["value"] for r in bars]
    assert values == sorted(values, reverse=True) and values[0] == pytest.approx(runs["metrics.accuracy"].max())
    assert [r["best"] for r in bars] == [True] + [False] * 9
    assert "best 10 of 80 runs" in spec["title"]
    bar = spec["layer"][0]
    assert bar["encoding"]["y"]["sort"] == [r["label"] for r in bars]  # best on top
    assert bar["encoding"]["color"]["condition"]["value"] == charts.BEST_COLOR
    assert spec["layer"][1]["encoding"]["text"]["value"] == "★ best"
    # lower is better: the smallest loss comes first
    low = charts.metric_bar(runs, "loss", higher_is_better=False, top=5)
    assert rows_with(low, "value")[0]["value"] == pytest.approx(runs["metrics.loss"].min())
    # a best run outside the top still shows (e.g. chosen by another direction)
    worst = runs.loc[runs["metrics.accuracy"].idxmin(), "run_id"]
    shown = rows_with(charts.metric_bar(runs, "accuracy", best_run_id=worst, top=5), "run_id")
    assert len(shown) == 5 and shown[-1]["run_id"] == worst and shown[-1]["best"]


def test_scatter_axis_type_follows_the_param_values(runs):
    best = runs.loc[runs["metrics.accuracy"].idxmax(), "run_id"]
    spec = charts.metric_scatter(runs, "metrics.accuracy", "params.max_depth", best_run_id=best).to_dict()
    assert marks(spec) == ["circle", "text"]
    assert spec["layer"][0]["encoding"]["x"]["type"] == "quantitative"
    assert spec["layer"][0]["encoding"]["x"]["title"] == "max_depth"
    pts = next(iter(spec["datasets"].values()))
    assert len(pts) == 80 and {type(p["param"]) for p in pts} <= {int, float}  # "12" became 12
    assert sum(p["best"] for p in pts) == 1
    nominal = charts.metric_scatter(runs, "accuracy", "model").to_dict()
    assert nominal["layer"][0]["encoding"]["x"]["type"] == "nominal"
    empty = charts.metric_scatter(runs, "accuracy", "nope").to_dict()
    assert empty["mark"]["type"] == "text" and "nope" in str(empty["datasets"])


def test_parallel_coordinates_scale_each_axis_and_highlight_the_best(runs):
    best = runs.loc[runs["metrics.accuracy"].idxmax(), "run_id"]
    cols = ["params.max_depth", "params.model", "metrics.loss", "metrics.accuracy"]
    chart = charts.parallel_coordinates(runs, cols, best_run_id=best, max_lines=30)
    spec = chart.to_dict()
    assert marks(spec) == ["rule", "line", "text"]
    lines = rows_with(chart, "run_id", "axis", "norm")
    assert {r["axis"] for r in lines} == {"max_depth", "model", "loss", "accuracy"}
    assert len({r["run_id"] for r in lines}) == 30 and best in {r["run_id"] for r in lines}
    assert all(0.0 <= r["norm"] <= 1.0 for r in lines)
    acc = [r for r in lines if r["axis"] == "accuracy"]
    top = max(acc, key=lambda r: r["norm"])
    assert top["run_id"] == best and top["norm"] == 1.0 and top["best"]
    assert spec["layer"][1]["encoding"]["x"]["sort"] == ["max_depth", "model", "loss", "accuracy"]
    assert "30 of 80 runs" in spec["title"]
    ends = rows_with(chart, "raw", "norm", "axis_index")
    assert {e["raw"] for e in ends if e["axis"] == "model"} == {"gb", "lr", "rf"}


def test_drift_scores_are_sorted_with_drifted_features_red_and_the_threshold_drawn():
    feats = {
        "length": {
            "kind": "numeric",
            "method": "ks+psi",
            "score": 0.42,
            "statistic": 0.3,
            "p_value": 1e-9,
            "drifted": True,
        },
        "priority": {"kind": "categorical", "method": "chi2+js", "score": 0.04, "drifted": False},
        "channel": {"kind": "categorical", "score": 0.15, "drifted": True},
        "broken": {"score": None},
    }
    chart = charts.drift_scores(feats, threshold=0.1)
    spec = chart.to_dict()
    assert marks(spec) == ["bar", "rule", "text"]
    bars = rows_with(chart, "feature", "score", "status")
    assert [b["feature"] for b in bars] == ["length", "channel", "priority"]  # by score, "broken" left out
    assert [b["status"] for b in bars] == ["drifted", "drifted", "ok"]
    color = spec["layer"][0]["encoding"]["color"]["scale"]
    assert color == {"domain": ["drifted", "ok"], "range": [charts.RED, charts.BLUE]}
    assert rows_with(chart, "threshold")[0]["threshold"] == 0.1
    assert spec["title"] == "drift score by feature (2 of 3 drifted)"


def test_numeric_distribution_shares_bins_and_sums_to_one():
    rng = np.random.default_rng(0)
    ref, cur = rng.normal(0, 1, 5000), rng.normal(1.5, 1, 20000)
    chart = charts.distribution(pd.Series(ref), pd.Series(cur), feature="length", bins=20)
    spec = chart.to_dict()
    assert spec["mark"]["type"] == "bar" and spec["encoding"]["x"]["bin"] == "binned"
    rows = rows_with(chart, "source", "start", "end", "share")
    by = {s: [r for r in rows if r["source"] == s] for s in ("reference", "current")}
    assert len(by["reference"]) == len(by["current"]) == 20
    assert [r["start"] for r in by["reference"]] == [r["start"] for r in by["current"]]  # shared edges
    for s in by.values():
        assert sum(r["share"] for r in s) == pytest.approx(1.0)
    mean = {k: sum((r["start"] + r["end"]) / 2 * r["share"] for r in v) for k, v in by.items()}
    assert mean["current"] - mean["reference"] == pytest.approx(1.5, abs=0.15)
    assert "reference (5,000) vs current (20,000)" in spec["title"]


def test_categorical_distribution_groups_bars_and_folds_rare_categories():
    ref = pd.Series(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    cur = pd.Series(["a"] * 10 + ["b"] * 10 + ["z"] * 80)
    chart = charts.distribution(ref, cur, feature="channel", max_categories=2)
    spec = chart.to_dict()
    assert spec["encoding"]["xOffset"]["field"] == "source"
    rows = rows_with(chart, "source", "category", "share")
    cats = {(r["source"], r["category"]): r["share"] for r in rows}
    assert cats[("current", "z")] == pytest.approx(0.8) and ("reference", "z") not in cats
    assert cats[("reference", "(other)")] == pytest.approx(0.5)  # b and c folded: only a and z are top 2
    assert spec["encoding"]["x"]["sort"] == ["z", "a", "(other)"]
    assert (
        charts.distribution(pd.Series([1, 2]), pd.Series(["x", "y"]), feature="mixed").to_dict()["encoding"]["x"][
            "type"
        ]
        == "nominal"
    )


def test_performance_timeline_has_latency_in_ms_and_success_rate_per_version():
    t = pd.date_range("2026-01-01", periods=5, freq="1min", tz="UTC")
    ts = pd.concat(
        [
            pd.DataFrame(
                {"time": t, "version": v, "count": 10, "avg_latency": 0.002, "p95_latency": 0.005, "success_rate": rate}
            )
            for v, rate in (("1.0.0", 1.0), ("1.1.0", 0.9))
        ]
    )
    chart = charts.performance_timeline(ts)
    spec = chart.to_dict()
    assert [c["title"] for c in spec["vconcat"]] == ["latency over time", "success rate over time"]
    lat = rows_with(chart, "latency_ms", "stat")
    assert {r["latency_ms"] for r in lat} == {2.0, 5.0} and {r["version"] for r in lat} == {"1.0.0", "1.1.0"}
    ok = rows_with(chart, "success_rate")
    assert {r["success_rate"] for r in ok if r["version"] == "1.1.0"} == {0.9}
    assert spec["vconcat"][1]["encoding"]["y"]["axis"]["format"] == "%"
    x = spec["vconcat"][0]["encoding"]["x"]
    assert x["scale"]["type"] == "utc" and x["axis"]["format"] == "%H:%M"  # as the summary: UTC, 24 h
    assert lat[0]["when"].endswith(" UTC")
    empty = charts.performance_timeline(ts.iloc[0:0]).to_dict()
    assert "no predictions" in str(empty["datasets"])


def test_traffic_split_stacks_versions_per_environment():
    deps = [
        {"environment": "production", "status": "deployed", "traffic": {"1.0.0": 90, "1.1.0": 10}},
        {"environment": "staging", "status": "deployed", "traffic": {"1.1.0": 100}},
    ]
    chart = charts.traffic_split(deps)
    spec = chart.to_dict()
    rows = rows_with(chart, "environment", "version", "percent")
    assert {(r["environment"], r["version"], r["percent"]) for r in rows} == {
        ("production (deployed)", "1.0.0", 90),
        ("production (deployed)", "1.1.0", 10),
        ("staging (deployed)", "1.1.0", 100),
    }
    assert spec["layer"][0]["encoding"]["x"]["stack"] == "zero"
    assert spec["layer"][0]["encoding"]["x"]["scale"]["domain"] == [0, 100]
    assert "not deployed" in str(charts.traffic_split([]).to_dict()["datasets"])


def test_version_lineage_draws_parent_edges_lanes_and_what_is_live():
    lineage = {
        "model_id": "m",
        "live": {"production": "1.1.0"},
        "versions": [
            {"version": "1.0.0", "parent": None},
            {"version": "1.1.0", "parent": "1.0.0"},
            {"version": "1.2.0", "parent": "1.1.0"},
            {"version": "2.0.0", "parent": "1.1.0"},
        ],
    }
    chart = charts.version_lineage(lineage, live={"production": {"1.1.0": 90, "1.2.0": 10}})
    nodes = {r["version"]: r for r in rows_with(chart, "version", "x", "y", "state")}
    assert [nodes[v]["x"] for v in ("1.0.0", "1.1.0", "1.2.0", "2.0.0")] == [0, 1, 2, 3]
    assert nodes["1.0.0"]["y"] == nodes["1.1.0"]["y"] == nodes["1.2.0"]["y"] == 0
    assert nodes["2.0.0"]["y"] == 1  # a second child of 1.1.0: its own lane
    assert nodes["1.1.0"]["live"] == "production 90%, @production" and nodes["1.1.0"]["state"] == "live"
    assert nodes["1.0.0"]["state"] == "idle"
    edges = rows_with(chart, "x2", "y2")
    assert {(e["x"], e["x2"]) for e in edges} == {(0, 1), (1, 2), (1, 3)}


def test_static_svg_is_rendered_without_a_browser(runs):
    from mlops_jupyter.notebook.widgets import static

    chart = charts.metric_bar(runs, "accuracy", top=5)
    svg = static.chart_svg(chart)
    assert svg.startswith("<svg") and "accuracy" in svg and "<rect" in svg
    img = static.svg_img(svg, "runs")
    assert img.startswith('<img alt="runs" src="data:image/svg+xml;base64,')
    table = static.html_table([["a", 0.123456, None], ["<b>", float("nan"), 3]], ["x", "y", "z"], highlight=[1])
    assert "0.1235" in table and "&lt;b&gt;" in table and "nan" not in table and "background" in table


def test_live_charts_load_vega_from_the_bundle_not_a_cdn():
    from mlops_jupyter.notebook.widgets._offline import chart_widget

    w = chart_widget(charts.traffic_split([]))
    assert "esm.sh" not in w._esm and "https://" not in w._esm.split("\n", 3)[0]
    assert len(w._esm) > 100_000  # vega, vega-lite and vega-embed inlined
    assert w.embed_options == {"actions": False}
    assert w.spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/v")  # a name, never fetched


def test_drift_panel_helpers_read_the_window_and_pick_time_buckets():
    from mlops_jupyter.notebook.widgets.drift import auto_freq, parse_window, window_text

    assert [parse_window(w) for w in (None, "", " 500 ", "1h", 20)] == [None, None, 500, "1h", 20]
    span = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:20:00Z"}
    assert auto_freq(span) == "30s"  # 40 buckets over 20 minutes
    assert auto_freq({"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z"}) == "1min"
    assert auto_freq({"start": None, "end": None}) == "1min" and auto_freq(None) == "1min"
    assert window_text({"type": "last", "size": 1000, **span}) == (
        "last 1,000 predictions (2026-01-01 00:00:00 to 2026-01-01 00:20:00 UTC)"
    )
    assert window_text({"type": "span", "span": "1h", "start": None, "end": None}) == "last 1h"
