"""Tracking throughput: mlops_jupyter's tracker vs plain synchronous MLflow, one run.

Workloads (the same for both sides, each on its own fresh sqlite store in a temp folder):

A. one run, N_CALLS ``log_metrics`` calls of 10 metrics each (explicit steps), then end;
B. N_RUNS runs, each with 5 params and 5 metrics, started and ended: once with the default
   ``end_experiment()``, which waits until the run is stored (one sqlite commit per run), and
   once with ``end_experiment(wait=False)`` (journaled at once, stored in the background)
   and a final ``flush()``.

Time is end to end, including our final flush; afterwards every point is verified stored
through a plain ``MlflowClient``. Prints both times and the ratio.

The server case (side by side in the same run): a PostgreSQL-backed ``mlflow server`` with
proxied artifacts, started here exactly as the team tests start it (``tests/team/servers.py``:
Debian's PostgreSQL with its default durability, as a throw-away cluster on 127.0.0.1), and
the same workloads A and B through our tracker (``mlflow_uri=`` the server: ``log_batch``
calls of up to 1 000 metrics / 100 params / 100 tags, written by the background writer with
the journal, ``MLOPS_SERVER_WRITE_CONCURRENCY`` of them in flight) vs MLflow's fluent API
with ``synchronous=True`` and with ``synchronous=False`` (MLflow's own async logging,
flushed by ``end_run``). Every point is verified stored through
a plain ``MlflowClient`` on the server. The server runs ``--server-workers`` worker
processes (default: one per core, as the README advises), the same for all three sides.

The server case runs twice (``--server-store both``): on MLflow's own store
(``postgresql+psycopg://``) and on our bulk metric store (``mlops+postgresql+psycopg://``,
``mlops_jupyter/storage/pg_store.py``), all three clients against each.

Usage: python benchmarks/tracking.py [--calls 10000] [--runs 200] [--server-calls 2000]
       [--server-runs 100] [--server-workers N] [--server-store mlflow|bulk|both] [--no-server]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path


def fresh_home(root: Path, name: str) -> Path:
    h = root / name
    h.mkdir()
    return h


def bench_ours(home: Path, n_calls: int, n_runs: int) -> tuple[float, float, float]:
    from mlops_jupyter import create_experiment_tracker

    tracker = create_experiment_tracker(storage_path=home)
    # warm-up outside the timing: creates the MLflow DB and the experiments (both sides do)
    tracker.start_experiment("bench-calls")
    tracker.end_experiment()
    tracker.start_experiment("bench-runs")
    tracker.end_experiment()
    tracker.start_experiment("bench-runs-nowait")
    tracker.end_experiment()

    t0 = time.perf_counter()
    tracker.start_experiment("bench-calls", run_name="calls")
    for i in range(n_calls):
        tracker.log_metrics({f"m{j}": i * 0.001 + j for j in range(10)}, step=i)
    tracker.end_experiment()
    t_calls = time.perf_counter() - t0

    t_runs = _runs(tracker, "bench-runs", n_runs, wait=True)
    t_runs_nowait = _runs(tracker, "bench-runs-nowait", n_runs, wait=False)
    return t_calls, t_runs, t_runs_nowait


def _runs(tracker, experiment: str, n_runs: int, wait: bool) -> float:
    """Workload B through our tracker; seconds, including the final flush."""
    t0 = time.perf_counter()
    for r in range(n_runs):
        tracker.start_experiment(experiment, run_name=f"run-{r}")
        tracker.log_params({f"p{j}": r * 10 + j for j in range(5)})
        tracker.log_metrics({f"m{j}": r + j / 10 for j in range(5)})
        tracker.end_experiment(wait=wait)
    tracker.flush()
    return time.perf_counter() - t0


def bench_mlflow(home: Path, n_calls: int, n_runs: int) -> tuple[float, float]:
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    for name in ("bench-calls", "bench-runs"):
        client.create_experiment(name, artifact_location=(home / "artifacts").as_uri())

    mlflow.set_experiment("bench-calls")
    t0 = time.perf_counter()
    with mlflow.start_run(run_name="calls"):
        for i in range(n_calls):
            mlflow.log_metrics({f"m{j}": i * 0.001 + j for j in range(10)}, step=i)
    t_calls = time.perf_counter() - t0

    mlflow.set_experiment("bench-runs")
    t0 = time.perf_counter()
    for r in range(n_runs):
        with mlflow.start_run(run_name=f"run-{r}"):
            mlflow.log_params({f"p{j}": r * 10 + j for j in range(5)})
            mlflow.log_metrics({f"m{j}": r + j / 10 for j in range(5)})
    t_runs = time.perf_counter() - t0
    return t_calls, t_runs


def verify(
    home: Path, n_calls: int, n_runs: int, ours: bool, run_experiments: tuple[str, ...] = ("bench-runs",)
) -> None:
    """Every point stored: count through MlflowClient and the DB."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(uri)
    prefix = "default/" if ours else ""
    calls = client.get_experiment_by_name(prefix + "bench-calls")
    runs = client.search_runs([calls.experiment_id], filter_string="attributes.run_name = 'calls'")
    assert len(runs) == 1, runs
    run = runs[0]
    for j in range(10):
        hist = client.get_metric_history(run.info.run_id, f"m{j}")
        assert len(hist) == n_calls, (j, len(hist))
        assert run.data.metrics[f"m{j}"] == (n_calls - 1) * 0.001 + j
    for name in run_experiments:
        exp = client.get_experiment_by_name(prefix + name)
        runs = client.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'", max_results=5000)
        runs = [r for r in runs if r.info.run_name.startswith("run-")]
        assert len(runs) == n_runs, (name, len(runs))
        for r in runs:
            assert len(r.data.params) == 5 and len(r.data.metrics) == 5, r.info.run_name
    con = sqlite3.connect(home / "mlflow.db")
    n_points = con.execute("SELECT COUNT(*) FROM metrics WHERE run_uuid = ?", (run.info.run_id,)).fetchone()[0]
    assert n_points == 10 * n_calls, n_points


# -- the server case ---------------------------------------------------------------------------
def _metrics(i: int) -> dict[str, float]:
    return {f"m{j}": i * 0.001 + j for j in range(10)}


def warm_server(url: str, n_batches: int = 20, n_runs: int = 20) -> None:
    """Before any timed side: a fresh server's workers import and set up lazily and its
    database starts empty (measured: the first side's workload A took 8.0 s, the same one
    3.6 s right after), so whichever side ran first would pay that. A plain client logs
    ``n_batches`` x 1 000 points and ``n_runs`` small runs here, untimed."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(url)
    exp = client.create_experiment("warm-up")
    run = client.create_run(exp).info.run_id
    for b in range(n_batches):
        client.log_batch(run, metrics=[Metric(f"m{j}", 0.0, 0, b * 100 + s) for s in range(100) for j in range(10)])
    for _ in range(n_runs):
        r = client.create_run(exp).info.run_id
        client.log_batch(r, metrics=[Metric("m", 0.0, 0, 0)])
        client.set_terminated(r)


def server_ours(url: str, home: Path, n_calls: int, n_runs: int) -> tuple[float, float]:
    from mlops_jupyter import create_experiment_tracker

    tracker = create_experiment_tracker(tenant_id="bench", mlflow_uri=url, storage_path=home)
    for exp in ("calls", "runs"):  # warm-up outside the timing: the experiments exist (all sides)
        tracker.start_experiment(exp, run_name="warm-up")
        tracker.end_experiment()
    t0 = time.perf_counter()
    tracker.start_experiment("calls", run_name="calls")
    for i in range(n_calls):
        tracker.log_metrics(_metrics(i), step=i)
    tracker.end_experiment()  # waits until everything is stored
    t_calls = time.perf_counter() - t0
    t_runs = _runs(tracker, "runs", n_runs, wait=False)
    return t_calls, t_runs


def server_mlflow(url: str, prefix: str, n_calls: int, n_runs: int, synchronous: bool) -> tuple[float, float]:
    import mlflow

    mlflow.set_tracking_uri(url)
    for exp in ("calls", "runs"):
        mlflow.set_experiment(f"{prefix}/{exp}")
        with mlflow.start_run(run_name="warm-up"):
            pass
    mlflow.set_experiment(f"{prefix}/calls")
    t0 = time.perf_counter()
    with mlflow.start_run(run_name="calls"):
        for i in range(n_calls):
            mlflow.log_metrics(_metrics(i), step=i, synchronous=synchronous)
    t_calls = time.perf_counter() - t0  # end_run waits for MLflow's async queue
    mlflow.set_experiment(f"{prefix}/runs")
    t0 = time.perf_counter()
    for r in range(n_runs):
        with mlflow.start_run(run_name=f"run-{r}"):
            mlflow.log_params({f"p{j}": r * 10 + j for j in range(5)}, synchronous=synchronous)
            mlflow.log_metrics({f"m{j}": r + j / 10 for j in range(5)}, synchronous=synchronous)
    t_runs = time.perf_counter() - t0
    return t_calls, t_runs


def verify_server(url: str, prefix: str, n_calls: int, n_runs: int) -> None:
    """Every point stored on the server, read back through a plain MlflowClient."""
    from mlflow import MlflowClient

    client = MlflowClient(url)
    calls = client.get_experiment_by_name(f"{prefix}/calls")
    (run,) = client.search_runs([calls.experiment_id], filter_string="attributes.run_name = 'calls'")
    assert run.info.status == "FINISHED", run.info.status
    for j in range(10):
        hist = client.get_metric_history(run.info.run_id, f"m{j}")
        assert sorted(m.step for m in hist) == list(range(n_calls)), (prefix, j, len(hist))
        assert {m.step: m.value for m in hist}[n_calls - 1] == (n_calls - 1) * 0.001 + j
    exp = client.get_experiment_by_name(f"{prefix}/runs")
    runs = client.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'", max_results=5000)
    runs = [r for r in runs if r.info.run_name.startswith("run-")]
    assert len(runs) == n_runs, (prefix, len(runs))
    for r in runs:
        assert len(r.data.params) == 5 and len(r.data.metrics) == 5, (prefix, r.info.run_name)


def bench_server(
    root: Path, n_calls: int, n_runs: int, workers: int = 2, bulk_store: bool = False
) -> list[tuple[str, float, float, float]]:
    """Rows (workload, ours, MLflow sync, MLflow async) against one PostgreSQL-backed server
    with ``workers`` worker processes (``mlflow server --workers``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from team.servers import start_team_servers, stop_team_servers  # the tests' start-up code

    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # no "View run at" line per run
    servers = start_team_servers(root / "team", with_auth=False, durable=True, workers=workers, bulk_open=bulk_store)
    try:
        url = servers.open_server.url
        warm_server(url)
        home = fresh_home(root, "server-client")
        o = server_ours(url, home, n_calls, n_runs)
        verify_server(url, "bench", n_calls, n_runs)
        s = server_mlflow(url, "sync", n_calls, n_runs, synchronous=True)
        verify_server(url, "sync", n_calls, n_runs)
        a = server_mlflow(url, "async", n_calls, n_runs, synchronous=False)
        verify_server(url, "async", n_calls, n_runs)
    finally:
        stop_team_servers(servers)
    return [
        (f"A: {n_calls} log_metrics x 10 metrics", o[0], s[0], a[0]),
        (f"B: {n_runs} runs x (5 params + 5 metrics)", o[1], s[1], a[1]),
        ("A + B", o[0] + o[1], s[0] + s[1], a[0] + a[1]),
    ]


def print_server(rows: list[tuple[str, float, float, float]], workers: int, bulk_store: bool) -> None:
    store = "our bulk metric store (mlops+postgresql+psycopg)" if bulk_store else "MLflow's own store"
    print(
        f"\nserver case: mlflow server --workers {workers} over PostgreSQL (proxied artifacts), {store}, "
        "every point verified stored"
    )
    print(f"{'workload':<40} {'ours':>9} {'MLflow sync':>12} {'ratio':>7} {'MLflow async':>13} {'ratio':>7}")
    for name, o, s, a in rows:
        print(f"{name:<40} {o:>7.3f} s {s:>10.3f} s {s / o:>6.1f}x {a:>11.3f} s {a / o:>6.1f}x")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--server-calls", type=int, default=2000)
    ap.add_argument("--server-runs", type=int, default=100)
    ap.add_argument("--no-server", action="store_true", help="skip the PostgreSQL-backed server case")
    ap.add_argument("--server-workers", type=int, default=os.cpu_count() or 1, help="mlflow server --workers")
    ap.add_argument(
        "--server-store",
        choices=("mlflow", "bulk", "both"),
        default="both",
        help="the server's store: MLflow's own (postgresql+psycopg://), ours (mlops+postgresql+psycopg://), or both",
    )
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
        root = Path(tmp)
        ours_home, mlflow_home = fresh_home(root, "ours"), fresh_home(root, "mlflow")
        o_calls, o_runs, o_nowait = bench_ours(ours_home, args.calls, args.runs)
        verify(ours_home, args.calls, args.runs, ours=True, run_experiments=("bench-runs", "bench-runs-nowait"))
        m_calls, m_runs = bench_mlflow(mlflow_home, args.calls, args.runs)
        verify(mlflow_home, args.calls, args.runs, ours=False)
    print(f"tracking benchmark ({os.cpu_count()} cores), every point verified stored")
    print(f"{'workload':<44} {'mlops_jupyter':>14} {'plain MLflow':>14} {'ratio':>8}")
    rows = [
        (f"A: {args.calls} log_metrics x 10 metrics", o_calls, m_calls),
        (f"B: {args.runs} runs x (5 params + 5 metrics)", o_runs, m_runs),
        ("B with end_experiment(wait=False) + flush()", o_nowait, m_runs),
        ("A + B", o_calls + o_runs, m_calls + m_runs),
    ]
    for name, o, m in rows:
        print(f"{name:<44} {o:>12.3f} s {m:>12.3f} s {m / o:>7.1f}x")
    print(
        f"per call: ours {o_calls / args.calls * 1e6:.1f} us, MLflow {m_calls / args.calls * 1e3:.2f} ms; "
        f"per run: ours {o_runs / args.runs * 1e3:.2f} ms, MLflow {m_runs / args.runs * 1e3:.1f} ms"
    )
    stores = [] if args.no_server else {"mlflow": [False], "bulk": [True], "both": [False, True]}[args.server_store]
    for bulk in stores:
        with tempfile.TemporaryDirectory(prefix="bench-tracking-server-") as tmp:
            rows = bench_server(Path(tmp), args.server_calls, args.server_runs, args.server_workers, bulk_store=bulk)
            print_server(rows, args.server_workers, bulk)
    return 0


if __name__ == "__main__":
    sys.exit(main())
