"""A process that only reads sees what a killed process logged: the journal is replayed on read.

A child logs 10 000 ``log_metrics`` calls and is killed with SIGKILL right after the last
one returned (most points are then only in its journal). A second, fresh process calls
nothing but ``list_experiments()``; it must already see the run KILLED, and every point
must be in the store afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

TENANT = "reader"
N = 10_000

LOGGER = textwrap.dedent(
    f"""
    import sys
    from mlops_jupyter import create_experiment_tracker

    t = create_experiment_tracker(tenant_id={TENANT!r})
    run = t.start_experiment("crash")
    t.flush()
    for i in range({N}):
        t.log_metrics({{"loss": float(i)}}, step=i)
    print(run.run_id, flush=True)
    sys.stdin.readline()  # wait to be killed
    """
)

READER = textwrap.dedent(
    f"""
    import json
    from mlops_jupyter import create_experiment_tracker

    t = create_experiment_tracker(tenant_id={TENANT!r})
    print(json.dumps([r["status"] for r in t.list_experiments(experiment_name="crash")]))
    """
)


def test_a_reading_process_recovers_a_killed_writer(home):
    proc = subprocess.Popen(
        [sys.executable, "-c", LOGGER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        run_id = proc.stdout.readline().strip()
        assert run_id, proc.stderr.read()[-3000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader = subprocess.run([sys.executable, "-c", READER], capture_output=True, text=True, timeout=120)
    assert reader.returncode == 0, reader.stderr[-3000:]
    assert json.loads(reader.stdout.strip().splitlines()[-1]) == ["killed"]
    con = sqlite3.connect(home / "mlflow.db")
    try:
        steps = [s for (s,) in con.execute("SELECT step FROM metrics WHERE run_uuid=? ORDER BY step", (run_id,))]
        status = con.execute("SELECT status FROM runs WHERE run_uuid=?", (run_id,)).fetchone()
    finally:
        con.close()
    assert steps == list(range(N)) and status == ("KILLED",)
