"""Monitoring speed, one run: drift over a million logged predictions, our drift statistics
against Evidently's ``DataDriftPreset``, and the prediction log's write rates.

(a) ``check_drift`` over 1 000 000 logged predictions with 10 features (8 numeric, 2
    categorical) against a 100 000-row reference, including reading them from the store.
    The predictions are written as the gateway writes them under load, one part per
    flush (1 000 parts of 1 000 rows), then compacted as the gateway's background pass
    does. Goal: under 1 s.
(b) The same 100 000-row current vs reference comparison by our code
    (:func:`mlops_jupyter.monitoring.drift.compare`) and by Evidently's ``DataDriftPreset``
    report, on a shifted and an unshifted dataset: time and per-column verdicts. Evidently
    needs pandas < 3, so it runs in the side environment ``.venv-peers`` (``make bench``
    creates it) through a subprocess that reads the same Parquet files and prints its
    per-column verdicts as JSON. Goal: at least 50x faster, same verdicts.
(c) ``track_prediction`` single calls per second and ``track_predictions`` batch rows per
    second. Goals: 50 000 calls/s and 1 000 000 rows/s.

Usage: python benchmarks/drift.py [--peers-python .venv-peers/bin/python] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
N_LOGGED = 1_000_000
N_REF = 100_000
PART_ROWS = 1_000
WARMUP = 10
NUMERIC = [f"num_{i}" for i in range(8)]
CATEGORICAL = ["plan", "region"]
PLANS = ["free", "pro", "team", "enterprise"]
REGIONS = ["eu", "us", "apac", "latam", "mea"]

EVIDENTLY_SCRIPT = r"""
import json, sys, time
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
import evidently

ref = pd.read_parquet(sys.argv[1])
cur = pd.read_parquet(sys.argv[2])
times = []
for _ in range(int(sys.argv[3])):
    t0 = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
    times.append(time.perf_counter() - t0)
seconds = min(times)
columns = {}
for m in snapshot.dict()["metrics"]:
    cfg = m.get("config", {})
    if cfg.get("type", "").endswith("ValueDrift"):
        method, threshold, value = cfg.get("method", ""), cfg.get("threshold"), m["value"]
        p_value = "p_value" in method or "p-value" in method
        drifted = value < threshold if p_value else value >= threshold
        columns[cfg["column"]] = {"method": method, "value": value, "threshold": threshold, "drifted": bool(drifted)}
print(json.dumps({"seconds": seconds, "columns": columns, "version": evidently.__version__}))
"""


def make_frame(n: int, seed: int, shifted: bool = False) -> pd.DataFrame:
    """Ten features on different scales; ``shifted`` moves four of them and one category mix
    decisively (mean +0.5 and +1 standard deviation, spread x2, a skew, a reversed mix)."""
    rng = np.random.default_rng(seed)
    data = {}
    for i, name in enumerate(NUMERIC):
        loc, scale = 10.0 * i, 1.0 + i
        x = rng.normal(loc, scale, n)
        if shifted and i == 0:
            x = x + 0.5 * scale
        if shifted and i == 1:
            x = x + 1.0 * scale
        if shifted and i == 2:
            x = loc + (x - loc) * 2.0
        if shifted and i == 3:
            x = loc + scale * (rng.exponential(1.0, n) - 0.2)
        data[name] = x
    plan_p = [0.1, 0.2, 0.3, 0.4] if shifted else [0.4, 0.3, 0.2, 0.1]
    data["plan"] = rng.choice(PLANS, n, p=plan_p)
    data["region"] = rng.choice(REGIONS, n)
    return pd.DataFrame(data)


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


# -- (a) -------------------------------------------------------------------------------------
def bench_check_drift(repeat: int) -> dict:
    from mlops_jupyter.config.settings import resolve_settings
    from mlops_jupyter.monitoring import ModelMonitoring

    home = tempfile.mkdtemp(prefix="mlops-bench-drift-")
    mon = ModelMonitoring(resolve_settings(tenant_id="bench", storage_path=home), sync_gateway=False)
    mon.set_reference("tickets", make_frame(N_REF, seed=1))
    logged = make_frame(N_LOGGED, seed=2, shifted=True)
    rng = np.random.default_rng(3)
    logged.insert(0, "prediction_time", rng.gamma(2.0, 0.002, N_LOGGED))
    logged.insert(1, "success", rng.random(N_LOGGED) > 0.01)
    logged.insert(2, "version", np.where(rng.random(N_LOGGED) < 0.5, "1.0.0", "1.1.0"))
    logged.insert(3, "timestamp", 1_800_000_000.0 + np.arange(N_LOGGED) / 1_000.0)  # 1 000 rows a second

    t0 = time.perf_counter()
    for i in range(0, N_LOGGED, PART_ROWS):  # as the gateway writes under load: one part per flush
        mon.track_predictions("tickets", logged.iloc[i : i + PART_ROWS])
        mon.predlog.flush()
    write_s = time.perf_counter() - t0
    folder = Path(home) / "predictions" / "bench" / "tickets"
    parts_before = len(list(folder.glob("part-*.parquet")))
    t0 = time.perf_counter()
    compacted = mon.predlog.compact("bench", "tickets")
    compact_s = time.perf_counter() - t0
    parts_after = len(list(folder.glob("part-*.parquet")))

    times = []
    result = None
    for _ in range(repeat + 1):
        t0 = time.perf_counter()
        result = mon.check_drift("tickets", window=N_LOGGED)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    table = mon.predlog.read_table(
        "bench", "tickets", last_n=N_LOGGED, columns=["version", "environment", "latency_s", "success", "feature.*"]
    )
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    mon.check_drift("tickets")  # the default window: the last 1 000
    default_s = time.perf_counter() - t0
    assert result is not None and result["n_current"] == N_LOGGED == table.num_rows
    return {
        "write_s": write_s,
        "parts_before": parts_before,
        "parts_after": parts_after,
        "compact_s": compact_s,
        "compacted": compacted,
        "cold_s": times[0],
        "warm_s": statistics.median(times[1:]),
        "warm_min_s": min(times[1:]),
        "read_s": read_s,
        "default_window_s": default_s,
        "drift_score": result["drift_score"],
        "drifted": result["drifted_features"],
        "per_version": {v: m["prediction_count"] for v, m in result["performance_metrics"]["per_version"].items()},
    }


# -- (b) -------------------------------------------------------------------------------------
def bench_vs_evidently(peers_python: Path | None, repeat: int, evidently_runs: int) -> dict:
    from mlops_jupyter.monitoring.drift import compare

    out: dict = {}
    tmp = Path(tempfile.mkdtemp(prefix="mlops-bench-evidently-"))
    ref = make_frame(N_REF, seed=11)
    ref.to_parquet(tmp / "reference.parquet")
    for name, shifted in (("unshifted", False), ("shifted", True)):
        cur = make_frame(N_REF, seed=12, shifted=shifted)
        cur.to_parquet(tmp / f"{name}.parquet")
        for _ in range(WARMUP):  # steady state: the allocator settles after a few calls (glibc's mmap threshold)
            compare(ref, cur, threshold=0.1)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            ours = compare(ref, cur, threshold=0.1)
            times.append(time.perf_counter() - t0)
        row = {
            "ours_s": min(times),
            "ours_median_s": statistics.median(times),
            "ours": {c: e["drifted"] for c, e in ours["features"].items()},
            "ours_scores": {c: e["score"] for c, e in ours["features"].items()},
        }
        if peers_python is not None:
            t0 = time.perf_counter()
            proc = subprocess.run(
                [
                    str(peers_python),
                    "-c",
                    EVIDENTLY_SCRIPT,
                    str(tmp / "reference.parquet"),
                    str(tmp / f"{name}.parquet"),
                    str(evidently_runs),
                ],
                capture_output=True,
                text=True,
                timeout=900,
            )
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"Evidently failed:\n{proc.stderr[-3000:]}")
            ev = json.loads(proc.stdout.strip().splitlines()[-1])
            row.update(
                evidently_s=ev["seconds"],
                evidently_wall_s=wall,
                evidently_version=ev["version"],
                evidently={c: v["drifted"] for c, v in ev["columns"].items()},
                evidently_methods={c: v["method"] for c, v in ev["columns"].items()},
                evidently_values={c: v["value"] for c, v in ev["columns"].items()},
            )
        out[name] = row
    return out


# -- (c) -------------------------------------------------------------------------------------
def bench_tracking(n_calls: int, n_rows: int) -> dict:
    from mlops_jupyter.config.settings import resolve_settings
    from mlops_jupyter.monitoring import ModelMonitoring

    home = tempfile.mkdtemp(prefix="mlops-bench-track-")
    mon = ModelMonitoring(resolve_settings(tenant_id="bench", storage_path=home), sync_gateway=False)
    track = mon.track_prediction
    feats = [
        {
            "priority": i % 4 + 1,
            "category": ("technical", "billing", "account")[i % 3],
            "message_length": 100.0 + i % 97,
        }
        for i in range(1000)
    ]
    track("single", 0.15, True, feats[0])  # warm up
    mon.flush()
    t0 = time.perf_counter()
    for i in range(n_calls):
        track("single", 0.15, True, feats[i % 1000], prediction=1, version="1.0.0")
    calls_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    mon.flush()
    calls_flush_s = time.perf_counter() - t1

    batch = make_frame(n_rows, seed=21)
    batch.insert(0, "prediction_time", 0.002)
    batch.insert(1, "success", True)
    batch["prediction"] = np.arange(n_rows) % 2
    t0 = time.perf_counter()
    mon.track_predictions("batch", batch, version="1.0.0")
    batch_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    mon.flush()
    batch_flush_s = time.perf_counter() - t1
    assert mon.predlog.row_count("bench", "single") == n_calls + 1
    assert mon.predlog.row_count("bench", "batch") == n_rows
    return {
        "calls": n_calls,
        "calls_per_s": n_calls / calls_s,
        "calls_end_to_end_per_s": n_calls / (calls_s + calls_flush_s),
        "rows": n_rows,
        "rows_per_s": n_rows / batch_s,
        "rows_end_to_end_per_s": n_rows / (batch_s + batch_flush_s),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--peers-python",
        default=os.environ.get("MLOPS_PEERS_PYTHON", str(ROOT / ".venv-peers/bin/python")),
        help="interpreter of the side environment with Evidently (default .venv-peers)",
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--evidently-runs", type=int, default=3, help="Evidently reports per dataset (best kept)")
    parser.add_argument("--calls", type=int, default=300_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    peers = Path(args.peers_python)
    if not peers.exists():
        print(f"(b) skips Evidently: {peers} does not exist; `make bench` creates .venv-peers.")
        peers = None

    print(
        f"== (a) check_drift over {N_LOGGED:,} logged predictions (8 numeric + 2 categorical features) "
        f"vs a {N_REF:,}-row reference, reading included"
    )
    a = bench_check_drift(args.repeat)
    print(
        f"   written as {a['parts_before']} parts of {PART_ROWS} rows in {a['write_s']:.1f} s; compacted "
        f"into {a['parts_after']} file(s) in {a['compact_s']:.2f} s (the gateway does this in the background)"
    )
    print(
        f"   check_drift(window=1_000_000): {a['warm_s'] * 1000:.0f} ms median of {args.repeat} "
        f"(min {a['warm_min_s'] * 1000:.0f} ms); first call in this process {a['cold_s'] * 1000:.0f} ms "
        f"(includes importing scipy.stats once)"
    )
    print(
        f"   of which reading the 1 000 000 rows: {a['read_s'] * 1000:.0f} ms; default window (last 1 000): "
        f"{a['default_window_s'] * 1000:.1f} ms"
    )
    print(f"   drift_score {a['drift_score']:.3f}, drifted {a['drifted']}, per version {a['per_version']}")
    print(
        f"   goal < 1 s: {'met' if a['warm_s'] < 1.0 else 'NOT met'} "
        f"({a['warm_s']:.2f} s, {1.0 / a['warm_s']:.1f}x under)"
    )

    print(f"\n== (b) {N_REF:,} current vs {N_REF:,} reference rows, 10 columns: ours vs Evidently DataDriftPreset")
    b = bench_vs_evidently(peers, args.repeat, args.evidently_runs)
    all_same = True
    for name, row in b.items():
        print(
            f"   {name}: ours {row['ours_s'] * 1000:.0f} ms (best of {args.repeat} after {WARMUP} warm-up runs; "
            f"median {row['ours_median_s'] * 1000:.0f} ms)",
            end="",
        )
        if "evidently_s" in row:
            ratio = row["evidently_s"] / row["ours_s"]
            same = row["ours"] == {c: row["evidently"].get(c) for c in row["ours"]}
            all_same &= same
            print(
                f"; Evidently {row['evidently_version']} {row['evidently_s']:.2f} s (report.run, best of "
                f"{args.evidently_runs}; "
                f"{row['evidently_wall_s']:.1f} s with its start-up) -> {ratio:.0f}x faster; "
                f"same verdicts on every column: {same}"
            )
            for c in row["ours"]:
                ours_v = "DRIFT" if row["ours"][c] else "ok   "
                ev_v = "DRIFT" if row["evidently"].get(c) else "ok   "
                print(
                    f"      {c:<8} ours {ours_v} (score {row['ours_scores'][c]:.4f})   Evidently {ev_v} "
                    f"({row['evidently_methods'].get(c)} {row['evidently_values'].get(c, float('nan')):.4f})"
                )
        else:
            print(f"; drifted: {[c for c, d in row['ours'].items() if d]}")
    if peers is not None:
        worst = min(row["evidently_s"] / row["ours_s"] for row in b.values())
        print(
            f"   goal >= 50x with the same verdicts: {'met' if worst >= 50 and all_same else 'NOT met'} "
            f"(worst ratio {worst:.0f}x)"
        )

    print("\n== (c) writing to the prediction log")
    c = bench_tracking(args.calls, args.rows)
    print(
        f"   track_prediction: {fmt_rate(c['calls_per_s'])} calls/s over {c['calls']:,} calls "
        f"({fmt_rate(c['calls_end_to_end_per_s'])}/s including writing them to Parquet)"
    )
    print(
        f"   track_predictions: {fmt_rate(c['rows_per_s'])} rows/s for a {c['rows']:,}-row DataFrame "
        f"({fmt_rate(c['rows_end_to_end_per_s'])}/s including writing them to Parquet)"
    )
    print(
        f"   goals 50 000 calls/s and 1 000 000 rows/s: "
        f"{'met' if c['calls_per_s'] >= 50_000 and c['rows_per_s'] >= 1_000_000 else 'NOT met'} "
        f"({c['calls_per_s'] / 50_000:.1f}x and {c['rows_per_s'] / 1_000_000:.1f}x the goals)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
