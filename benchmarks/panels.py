"""Panels: time to the first complete view over large stores.

(a) ComparisonPanel over 10 000 runs (3 params, 3 metrics each, logged through our
    tracker): loading the runs, the best run, the first table page and the chart spec (a
    2 000-run sample), i.e. everything the panel shows, against ``mlflow.search_runs``
    loading the same 10 000 runs into a DataFrame (what a notebook would do by hand).
(b) DriftPanel over 1 000 000 logged predictions (6 features, two versions, through
    ``monitoring.track_predictions``): drift check, reference and current distributions,
    latency/success over time, alert history and the three chart specs; with the default
    window (the last 1 000 predictions) and with the whole log as the window.

"First panel" is the first one built in a fresh process, after ``import`` of the panel
module (it includes loading ipywidgets, altair and the offline Vega bundle); "next panel"
is a second one, as a refresh costs. Rendering to a browser or to SVG is not timed (the
static SVG view is rendered when the panel is displayed). Goal: under 1 s each.

Usage: python benchmarks/panels.py [--runs 10000] [--predictions 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

GOAL_S = 1.0


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def make_runs(home: Path, n: int) -> None:
    from mlops_jupyter import create_experiment_tracker

    tracker = create_experiment_tracker(tenant_id="bench", storage_path=home)
    rng = random.Random(0)
    t0 = time.perf_counter()
    for i in range(n):
        run = tracker.start_experiment("sweep", run_name=f"run-{i}")
        tracker.log_params(
            {
                "max_depth": rng.randint(2, 20),
                "lr": round(rng.uniform(0.001, 0.3), 4),
                "model": rng.choice(["rf", "gb", "lr"]),
            },
            run=run,
        )
        tracker.log_metrics(
            {"accuracy": rng.uniform(0.6, 0.98), "f1": rng.uniform(0.5, 0.95), "loss": rng.uniform(0.05, 1.0)}, run=run
        )
        tracker.end_experiment(run=run, wait=False)
    tracker.flush()
    print(f"  logged {n:,} runs through the tracker in {time.perf_counter() - t0:.1f} s")


def make_predictions(home: Path, n: int) -> None:
    import numpy as np
    import pandas as pd

    from mlops_jupyter import create_model_monitoring

    rng = np.random.default_rng(0)
    m = create_model_monitoring(tenant_id="bench", storage_path=home)
    ref = pd.DataFrame(
        {
            "amount": rng.lognormal(3, 1, 20_000),
            "age": rng.normal(40, 12, 20_000),
            "score": rng.uniform(0, 1, 20_000),
            "items": rng.integers(1, 30, 20_000),
            "channel": rng.choice(["web", "app", "store"], 20_000),
            "country": rng.choice(["fr", "de", "es", "it", "nl"], 20_000),
        }
    )
    m.set_reference("scorer", ref)
    now = time.time()
    t0 = time.perf_counter()
    step = 250_000
    for start in range(0, n, step):
        k = min(step, n - start)
        drift = start / n
        m.track_predictions(
            "scorer",
            pd.DataFrame(
                {
                    "amount": rng.lognormal(3 + drift, 1, k),
                    "age": rng.normal(40 + 5 * drift, 12, k),
                    "score": rng.uniform(0, 1, k),
                    "items": rng.integers(1, 30, k),
                    "channel": rng.choice(["web", "app", "store"], k, p=[0.5 - drift / 4, 0.3 + drift / 4, 0.2]),
                    "country": rng.choice(["fr", "de", "es", "it", "nl"], k),
                    "prediction_time": rng.gamma(2.0, 0.002, k),
                    "success": rng.uniform(0, 1, k) > 0.01,
                    "version": np.where(rng.uniform(0, 1, k) < 0.5, "1.0.0", "1.1.0"),
                    "timestamp": now - 3600 + 3600 * (start + np.arange(k)) / n,
                }
            ),
        )
    m.flush()
    m.set_alert("scorer", "drift_score > 0.1", action="log")
    print(f"  logged {n:,} predictions through monitoring.track_predictions in {time.perf_counter() - t0:.1f} s")


def bench_comparison(home: Path, n: int, repeat: int) -> dict[str, float]:
    import mlflow

    from mlops_jupyter.api import MLOpsPipeline
    from mlops_jupyter.config.settings import resolve_settings

    t0 = time.perf_counter()
    from mlops_jupyter.notebook.widgets import ComparisonPanel
    from mlops_jupyter.notebook.widgets._offline import ensure_offline

    ensure_offline()
    t_import = time.perf_counter() - t0
    p = MLOpsPipeline("bench", resolve_settings("bench", None, None, home))
    t_first, panel = timed(lambda: ComparisonPanel(pipeline=p))
    assert panel.n_runs == n and panel.chart.spec and len(panel.table.rows) == min(n, panel.page_size)
    t_next, _ = timed(lambda: ComparisonPanel(pipeline=p), repeat)
    t_static, _ = timed(panel.static_html)

    mlflow.set_tracking_uri(p.settings.tracking_uri)
    t_ml_first, df = timed(lambda: mlflow.search_runs(search_all_experiments=True, max_results=n))
    t_ml_next, _ = timed(lambda: mlflow.search_runs(search_all_experiments=True, max_results=n), repeat)
    assert len(df) == n
    print(f"  (a) ComparisonPanel over {panel.n_runs:,} runs")
    print(f"      import of the panels + offline Vega bundle: {t_import:.2f} s (once per kernel)")
    print(f"      first panel: {t_first:.3f} s   next panel (median of {repeat}): {t_next:.3f} s")
    print(f"      mlflow.search_runs, same runs: first {t_ml_first:.3f} s, next {t_ml_next:.3f} s")
    print(f"      ratio mlflow.search_runs / panel: first {t_ml_first / t_first:.1f}x, next {t_ml_next / t_next:.1f}x")
    print(f"      static view (SVG by vl-convert + HTML table, at display): {t_static:.3f} s")
    return {"first": t_first, "next": t_next, "mlflow_first": t_ml_first, "mlflow_next": t_ml_next}


def bench_drift(home: Path, n: int, repeat: int) -> dict[str, float]:
    from mlops_jupyter.api import MLOpsPipeline
    from mlops_jupyter.config.settings import resolve_settings
    from mlops_jupyter.notebook.widgets import DriftPanel

    p = MLOpsPipeline("bench", resolve_settings("bench", None, None, home))
    out = {}
    for label, window in (("default window (last 1 000)", None), (f"whole log ({n:,})", n)):
        t_first, panel = timed(lambda w=window: DriftPanel("scorer", pipeline=p, window=w))
        assert panel.result and panel.result["status"] == "ok", (panel.result or {}).get("reason") or panel.error
        assert panel.result["n_current"] == (window or 1000) and panel.scores_chart.spec
        t_next, _ = timed(lambda w=window: DriftPanel("scorer", pipeline=p, window=w), repeat)
        r = panel.result
        print(
            f"  (b) DriftPanel over {n:,} logged predictions, {label}: first {t_first:.3f} s, "
            f"next (median of {repeat}) {t_next:.3f} s  [drift_score {r['drift_score']:.3f}, "
            f"{len(r['features'])} features, {len(panel.timeseries)} time buckets]"
        )
        out[f"DriftPanel, {label}, first"] = t_first
        out[f"DriftPanel, {label}, next"] = t_next
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--predictions", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    import logging

    logging.getLogger("mlops_jupyter.alerts").setLevel(logging.ERROR)  # the benchmark's alert fires
    with tempfile.TemporaryDirectory(prefix="mlops-bench-panels-") as tmp:
        home = Path(tmp) / "store"
        home.mkdir()
        os.environ.pop("MLOPS_TENANT", None)
        print("setup")
        make_runs(home, args.runs)
        make_predictions(home, args.predictions)
        a = bench_comparison(home, args.runs, args.repeat)
        b = bench_drift(home, args.predictions, args.repeat)
    cases = {"ComparisonPanel, first": a["first"], "ComparisonPanel, next": a["next"], **b}
    print(f"goal: under {GOAL_S:.0f} s each")
    for name, t in cases.items():
        print(f"  {name}: {t:.3f} s {'met' if t < GOAL_S else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
