"""Nothing logged is lost: killed processes, unended runs, concurrent writers, journal cleanup.

Every test runs small Python scripts in real subprocesses against the test's store
(``MLOPS_HOME`` is inherited from the ``home`` fixture) and checks the result through a
plain ``MlflowClient`` and the sqlite file itself.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mlops_jupyter import create_experiment_tracker

TENANT = "dur"

# Logs forever once told to go; prints the index of every log call that has returned.
LOG_FOREVER = textwrap.dedent(
    f"""
    import sys
    from mlops_jupyter import create_experiment_tracker

    t = create_experiment_tracker(tenant_id={TENANT!r})
    run = t.start_experiment("crash")
    t.flush()  # the run row is stored; everything after this is only queued/journaled
    print("RUN", run.run_id, flush=True)
    sys.stdin.readline()
    i = 0
    while True:
        t.log_metrics({{"a": float(i), "b": -float(i)}}, step=i)
        if i % 7 == 0:
            t.log_params({{f"p{{i}}": i}})
        print(i, flush=True)
        i += 1
    """
)


def client_for(home: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def spawn(script: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )


def read_line(proc: subprocess.Popen, what: str) -> str:
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise AssertionError(f"child exited before {what}: rc={proc.wait()} stderr:\n{proc.stderr.read()[-3000:]}")
    return line.strip()


def finish(proc: subprocess.Popen, timeout: float = 60) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"child failed rc={proc.returncode}:\n{err[-3000:]}"
    return out


def journal_files(home: Path, prefix: str = "") -> list[str]:
    d = home / "journal"
    return sorted(p.name for p in d.iterdir() if p.name.startswith(prefix)) if d.is_dir() else []


def metric_rows(home: Path, run_id: str) -> dict[str, dict[int, float]]:
    con = sqlite3.connect(home / "mlflow.db")
    try:
        out: dict[str, dict[int, float]] = {}
        for key, step, value in con.execute("SELECT key, step, value FROM metrics WHERE run_uuid=?", (run_id,)):
            out.setdefault(key, {})[step] = value
        return out
    finally:
        con.close()


def kill_while_logging(proc: subprocess.Popen, at_least: int) -> int:
    """Let the child log until it reported ``at_least`` returned calls, SIGKILL it, and
    return the number of calls known to have returned (every index it printed)."""
    proc.stdin.write("go\n")
    proc.stdin.flush()
    last = -1
    deadline = time.monotonic() + 60
    while last + 1 < at_least:
        assert time.monotonic() < deadline, "child logs too slowly"
        last = int(read_line(proc, "logging"))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # lines already in the pipe are calls that returned before the kill, too
    for line in proc.stdout.read().split():
        last = max(last, int(line))
    return last + 1


def check_recovered(home: Path, run_id: str, returned: int, pid: int) -> None:
    # A new tracker on the same store recovers the dead process's journal on first use.
    t = create_experiment_tracker(tenant_id=TENANT)
    t.start_experiment("after-crash")
    t.end_experiment()

    rows = metric_rows(home, run_id)
    stored_steps = sorted(rows["a"])
    # every call that returned before the kill is stored, with its exact values
    assert stored_steps[:returned] == list(range(returned))
    assert all(rows["a"][s] == float(s) and rows["b"][s] == -float(s) for s in range(returned))
    # nothing else: stored steps are one contiguous prefix of what the child logged
    assert stored_steps == list(range(len(stored_steps)))
    assert sorted(rows["b"]) == stored_steps

    client = client_for(home)
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.info.end_time is not None
    assert {f"p{i}" for i in range(0, returned, 7)} <= set(run.data.params)
    assert len(client.get_metric_history(run_id, "a")) == len(stored_steps)
    assert run.data.metrics["a"] == float(stored_steps[-1])  # latest = highest step
    # the dead process's journal is gone once replayed
    assert journal_files(home, f"{pid}-") == []
    assert [r["status"] for r in t.list_experiments(experiment_name="crash")] == ["killed"]


def test_sigkill_while_the_store_is_locked_loses_nothing(home):
    """The writer cannot store anything (another process holds the DB's write lock), so
    every point exists only in the journal when the process is killed."""
    proc = spawn(LOG_FOREVER)
    try:
        run_id = read_line(proc, "RUN").split()[1]
        lock = sqlite3.connect(home / "mlflow.db", isolation_level=None, timeout=30)
        lock.execute("BEGIN IMMEDIATE")  # hold the write lock while the child logs
        try:
            returned = kill_while_logging(proc, at_least=3000)
            assert lock.execute("SELECT count(*) FROM metrics WHERE run_uuid=?", (run_id,)).fetchone() == (0,)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    segments = [n for n in journal_files(home, f"{proc.pid}-") if not n.endswith(".lock")]
    assert segments, "the killed process left its unstored data in the journal"
    assert metric_rows(home, run_id) == {}
    check_recovered(home, run_id, returned, proc.pid)


def test_sigkill_while_logging_loses_nothing(home):
    proc = spawn(LOG_FOREVER)
    try:
        run_id = read_line(proc, "RUN").split()[1]
        returned = kill_while_logging(proc, at_least=8000)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert client_for(home).get_run(run_id).info.status == "RUNNING"  # nobody ended it yet
    check_recovered(home, run_id, returned, proc.pid)


def test_exit_without_end_experiment_stores_everything_and_finishes(home):
    script = textwrap.dedent(
        f"""
        from mlops_jupyter import create_experiment_tracker, create_mlops_pipeline

        t = create_experiment_tracker(tenant_id={TENANT!r})
        run = t.start_experiment("no-end", tags={{"k": "v"}})
        for i in range(3000):
            t.log_metrics({{"m": i / 2}}, step=i)
        t.log_params({{"p": "v"}})
        p = create_mlops_pipeline("pipe", tenant_id={TENANT!r})
        run2 = p.tracker.start_experiment("second")
        p.tracker.log_metrics({{"x": 1.0}})
        print(run.run_id, run2.run_id)
        """
    )
    out = finish(spawn(script))
    run_id, run2_id = out.split()
    # (d) a clean exit leaves no journal segment or lock behind
    assert journal_files(home) == []
    client = client_for(home)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.end_time is not None
    assert run.data.params == {"p": "v"} and run.data.tags["k"] == "v"
    hist = client.get_metric_history(run_id, "m")
    assert sorted((m.step, m.value) for m in hist) == [(i, i / 2) for i in range(3000)]
    run2 = client.get_run(run2_id)
    assert run2.info.status == "FINISHED" and run2.data.metrics == {"x": 1.0}


CONCURRENT = textwrap.dedent(
    f"""
    import sys
    from mlops_jupyter import create_experiment_tracker

    t = create_experiment_tracker(tenant_id={TENANT!r})
    run = t.start_experiment("shared")
    print("READY", run.run_id, flush=True)
    sys.stdin.readline()
    for i in range(5000):
        t.log_metrics({{f"m{{j}}": i * 10 + j for j in range(5)}}, step=i)
    t.end_experiment()
    """
)


def test_two_processes_logging_into_one_store_lose_nothing(home):
    procs = [spawn(CONCURRENT) for _ in range(2)]
    try:
        run_ids = [read_line(p, "READY").split()[1] for p in procs]
        for p in procs:  # start logging at the same moment
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            finish(p)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert run_ids[0] != run_ids[1]
    assert journal_files(home) == []  # (d)
    con = sqlite3.connect(home / "mlflow.db")
    try:
        counts = dict(
            con.execute(
                "SELECT run_uuid, count(*) FROM metrics WHERE run_uuid IN (?,?) GROUP BY run_uuid", run_ids
            ).fetchall()
        )
        per_key = con.execute(
            "SELECT count(DISTINCT step), min(step), max(step), sum(value) FROM metrics WHERE run_uuid=? AND key='m3'",
            (run_ids[0],),
        ).fetchone()
    finally:
        con.close()
    assert counts == {run_ids[0]: 25_000, run_ids[1]: 25_000}
    assert per_key == (5000, 0, 4999, sum(i * 10 + 3 for i in range(5000)))
    client = client_for(home)
    runs = [client.get_run(r) for r in run_ids]
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert runs[0].info.experiment_id == runs[1].info.experiment_id  # created once, by one of them
    assert all(r.data.metrics == {f"m{j}": 49990 + j for j in range(5)} for r in runs)
    for r in run_ids:
        assert len(client.get_metric_history(r, "m0")) == 5000
    t = create_experiment_tracker(tenant_id=TENANT)
    assert sorted(x["run_id"] for x in t.list_experiments(experiment_name="shared")) == sorted(run_ids)


@pytest.mark.parametrize("n", [1, 2])
def test_in_process_close_leaves_no_journal(home, n):
    """(d) in process: closing the store (what happens at exit) removes its segments and lock."""
    from mlops_jupyter.storage.store import TrackingStore

    t = create_experiment_tracker(tenant_id=TENANT)
    for _ in range(n):
        with t.start_experiment("e"):
            t.log_metrics({"a": 1.0})
    assert journal_files(home)  # the live session holds its lock file
    TrackingStore.for_settings(t.settings).close()
    assert journal_files(home) == []
