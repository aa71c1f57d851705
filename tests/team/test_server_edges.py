"""Our tracker against a team server at the edges: extreme values, values the server refuses,
the server going away and coming back, credentials and permissions refused, two kernels
logging into one run.

The standard: what the server stores is what MLflow's own client stores for the same
values; a bad value is a typed error naming it (at the call where we can know, else at the
next ``flush()`` / ``end_experiment()``) and nothing else is lost or stuck in the journal;
a server that is down or refuses the user leaves the data journaled and retried, and says so.
Checked with plain ``MlflowClient`` reads and the journal folder on disk.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import close_stores
from mlflow import MlflowClient
from mlflow.entities import Metric

from mlops_jupyter import create_experiment_tracker
from mlops_jupyter.config import settings as layout
from mlops_jupyter.errors import (
    InvalidMetricError,
    InvalidNameError,
    InvalidParamError,
    InvalidSettingError,
    RunStateError,
    StoreError,
    TenantAccessError,
)
from mlops_jupyter.storage import journal
from mlops_jupyter.storage.sinks import ClientSink
from mlops_jupyter.tracking import server_auth
from mlops_jupyter.tracking.validation import MAX_STEP
from team.servers import ADMIN, MlflowServer, run_in_step

pytestmark = pytest.mark.server

EDGE_VALUES = {"neg_zero": -0.0, "max": 1.7976931348623157e308, "min_neg": -1e308, "denormal": 5e-324, "big": 1e300}
EDGE_STEPS = (0, 2**31, 2**53 + 1, MAX_STEP)


def journal_segments(home) -> list:
    """The journal segments holding data not stored yet (the open one is empty), of every
    store's journal folder in the home."""
    return sorted(p for p in layout.journal_dir(home).rglob("*.journal") if p.stat().st_size)


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[float, int, int]]:
    return sorted((m.value, m.step, m.timestamp) for m in client.get_metric_history(run_id, key))


def test_extreme_values_are_stored_as_mlflows_client_stores_them(server_url, client_home):
    client = MlflowClient(server_url)
    tracker = create_experiment_tracker(tenant_id="edges", mlflow_uri=server_url)
    run = tracker.start_experiment("extremes")
    for step in EDGE_STEPS:
        tracker.log_metrics(EDGE_VALUES, step=step)
    # what cannot be stored is refused at the call, typed, naming the value
    with pytest.raises(InvalidMetricError) as err:
        tracker.log_metrics({"huge_int": 10**400})
    assert err.value.value == 10**400 and "finite" in err.value.allowed
    with pytest.raises(InvalidMetricError) as err:
        tracker.log_metrics({"x": 1.0}, step=MAX_STEP + 1)
    assert err.value.value == MAX_STEP + 1 and str(MAX_STEP) in err.value.allowed
    tracker.end_experiment()

    # the same points through MLflow's own client, into another run
    ts = {m.step: m.timestamp for m in client.get_metric_history(run.run_id, "max")}
    ref = client.create_run(run.experiment_id).info.run_id
    client.log_batch(ref, metrics=[Metric(k, v, ts[s], s) for s in EDGE_STEPS for k, v in EDGE_VALUES.items()])
    for key in EDGE_VALUES:
        ours, theirs = history(client, run.run_id, key), history(client, ref, key)
        assert ours == theirs and len(ours) == len(EDGE_STEPS), key
        assert [repr(v) for v, _, _ in ours] == [repr(v) for v, _, _ in theirs]  # -0.0 stays -0.0
    assert client.get_run(run.run_id).data.metrics == client.get_run(ref).data.metrics
    assert journal_segments(client_home) == []


def test_mlflows_limits_are_typed_errors_at_the_call_and_big_calls_are_split(server_url, client_home):
    client = MlflowClient(server_url)
    tracker = create_experiment_tracker(tenant_id="edges", mlflow_uri=server_url)
    run = tracker.start_experiment("limits")
    with pytest.raises(InvalidParamError) as err:
        tracker.log_params({"long": "x" * 6001, "ok": 1})
    assert "6000" in err.value.allowed
    with pytest.raises(InvalidNameError) as err:
        tracker.set_tags({"long": "y" * 8001})
    assert "8000" in err.value.allowed
    for key in ("bad key!", "../up", "a" * 251):
        with pytest.raises(InvalidNameError) as err:
            tracker.log_metrics({key: 1.0, "fine": 2.0})
        assert err.value.value == key
    tracker.log_params({f"p{i}": i for i in range(101)})  # > 100 params, > 1 000 metrics per call
    tracker.log_metrics({f"m{i}": i for i in range(1001)}, step=3)
    tracker.log_params({"edge": "z" * 6000})
    tracker.set_tags({"edge": "t" * 8000})
    tracker.end_experiment()
    data = client.get_run(run.run_id).data
    assert data.params == {**{f"p{i}": str(i) for i in range(101)}, "edge": "z" * 6000}  # "ok" not logged
    assert data.metrics == {f"m{i}": float(i) for i in range(1001)} and "fine" not in data.metrics
    assert data.tags["edge"] == "t" * 8000 and "long" not in data.tags


def test_end_experiment_while_concurrent_requests_are_in_flight(server_url, client_home, monkeypatch):
    monkeypatch.setenv("MLOPS_SERVER_WRITE_CONCURRENCY", "4")
    client = MlflowClient(server_url)
    tracker = create_experiment_tracker(tenant_id="edges", mlflow_uri=server_url)
    assert tracker.store.writer.sink.concurrency == 4
    run = tracker.start_experiment("in-flight")
    for step in range(4):
        tracker.log_metrics({f"k{j}": step * j for j in range(2100)}, step=step)  # 3 lanes of requests
    tracker.flush()  # while the first batch is in flight
    for step in range(4, 8):
        tracker.log_metrics({f"k{j}": step * j for j in range(2100)}, step=step)
    summary = tracker.end_experiment()  # at once, with requests in flight
    assert summary["metrics"]["k2099"] == 7 * 2099
    stored = client.get_run(run.run_id)
    assert stored.info.status == "FINISHED" and len(stored.data.metrics) == 2100
    for j in (0, 1049, 2099):
        assert [(m.step, m.value) for m in client.get_metric_history(run.run_id, f"k{j}")] == [
            (s, float(s * j)) for s in range(8)
        ]
    last = max(m.timestamp for m in client.get_metric_history(run.run_id, "k2099"))
    assert stored.info.end_time >= last


def test_non_finite_values_through_our_json_path_match_mlflows_client(server_url):
    """NaN and +-inf are refused by the tracker (a finite number is asked for), but the JSON
    log_batch path itself must store them as MLflow's client does (journals of older
    versions, other callers of the sink)."""
    client = MlflowClient(server_url)
    exp = client.create_experiment("edges-non-finite")
    ours, ref = (client.create_run(exp).info.run_id for _ in range(2))
    values = {"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf")}
    sink = ClientSink(client)
    try:
        assert sink.write([{"k": "log", "id": ours, "ts": 1_700_000_000_000, "step": 7, "m": values}]) == []
    finally:
        sink.close()
    client.log_batch(ref, metrics=[Metric(k, v, 1_700_000_000_000, 7) for k, v in values.items()])
    for key in values:
        assert repr(history(client, ours, key)) == repr(history(client, ref, key)), key


def test_a_param_the_server_refuses_is_a_typed_error_and_nothing_else_is_lost(server_url, client_home, tmp_path):
    """Another kernel already logged ``lr`` into the run with another value: MLflow refuses the
    whole log_batch (INVALID_PARAMETER_VALUE). Only that param is dropped; the metrics and
    tags of the same batch are stored, end_experiment() names the param, the journal is empty
    and later logging works."""
    client = MlflowClient(server_url)
    first = create_experiment_tracker(tenant_id="edges", mlflow_uri=server_url)
    run = first.start_experiment("conflict")
    first.flush()

    # a second kernel (its own home: its own store, writer and journal) resumes the run
    other_home = tmp_path / "kernel-2"
    second = create_experiment_tracker(tenant_id="edges", mlflow_uri=server_url, storage_path=str(other_home))
    second.resume(run.run_id)
    second.log_params({"lr": 0.1})
    second.flush()
    first.log_params({"lr": 0.2})  # this kernel cannot know: the server refuses it, later
    first.log_params({"batch": 64})
    first.set_tags({"stage": "tuning"})
    for step in range(3):
        first.log_metrics({f"m{j}": step + j / 1000 for j in range(1200)}, step=step)  # > 1 request per step
    second.log_metrics({"from_kernel_2": 1.0})
    second.flush()
    close_stores(other_home)
    with pytest.raises(InvalidParamError) as err:
        first.end_experiment()
    assert err.value.value == "0.2" and "lr" in str(err.value) and "0.1" in err.value.allowed
    assert err.value.items == [(run.run_id, "param", "lr", "0.2")]

    stored = client.get_run(run.run_id)
    assert stored.data.params["lr"] == "0.1" and stored.data.params["batch"] == "64"
    assert stored.data.tags["stage"] == "tuning" and stored.info.status == "FINISHED"
    for j in (0, 599, 1199):
        assert [(m.step, m.value) for m in client.get_metric_history(run.run_id, f"m{j}")] == [
            (s, s + j / 1000) for s in range(3)
        ]
    assert stored.data.metrics["from_kernel_2"] == 1.0
    assert journal_segments(client_home) == [] and first.store.writer.backlog == 0
    first.flush()  # reported once: nothing is stuck, nothing raises again
    with first.start_experiment("conflict-next"):
        first.log_params({"lr": 0.3})
    assert client.get_run(first.last_run.run_id).data.params == {"lr": "0.3"}


def test_a_crashed_kernels_journal_with_a_refused_item_is_replayed_not_stuck(server_url, client_home, caplog):
    """A kernel died with a journal whose batch holds a param the server refuses: the next
    process stores the rest of it, says which item was refused, and releases the journal
    (before, every later process failed to replay it, forever)."""
    client = MlflowClient(server_url)
    run_id = client.create_run(client.create_experiment("edges-replay")).info.run_id
    client.log_param(run_id, "lr", "0.1")
    dead = journal.Journal(layout.journal_dir(client_home, server_url))
    dead.append({"k": "log", "id": run_id, "ts": 1_700_000_000_000, "step": 2, "p": {"lr": "0.2"}, "m": {"loss": 0.5}})
    dead.append({"k": "end", "id": run_id, "status": "FINISHED", "end": 1_700_000_000_001})
    dead.close(keep_data=True)  # its process is gone: the lock is free, the segment stays

    tracker = create_experiment_tracker(tenant_id="edges", mlflow_uri=server_url)
    _ = tracker.store.writer  # the writer replays dead processes' journals as it starts
    run = client.get_run(run_id)
    assert run.data.params == {"lr": "0.1"} and run.data.metrics == {"loss": 0.5}
    assert run.info.status == "FINISHED"
    assert any("refused 1 logged item(s): param 'lr'='0.2'" in r.getMessage() for r in caplog.records)
    assert journal_segments(client_home) == []
    assert list(layout.journal_dir(client_home, server_url).glob(f"{dead.token}.*")) == []


def test_a_dead_kernels_journal_is_replayed_only_into_the_store_it_was_written_for(server_url, client_home):
    """Journals are kept per tracking store: a process on the home's embedded store does not
    replay a dead kernel's journal for the team server (that store does not know its runs, so
    the ops would be refused and lost); the next process on the server does."""
    client = MlflowClient(server_url)
    run_id = client.create_run(client.create_experiment("edges-own-store")).info.run_id
    dead = journal.Journal(layout.journal_dir(client_home, server_url))
    dead.append({"k": "log", "id": run_id, "ts": 1_700_000_000_000, "step": 0, "m": {"loss": 0.25}})
    dead.close(keep_data=True)

    embedded = create_experiment_tracker(tenant_id="edges")  # same home, its own sqlite store
    _ = embedded.store.writer  # replays the embedded store's dead journals as it starts
    assert journal_segments(client_home) and client.get_run(run_id).data.metrics == {}

    tracker = create_experiment_tracker(tenant_id="edges", mlflow_uri=server_url)
    _ = tracker.store.writer
    assert client.get_run(run_id).data.metrics == {"loss": 0.25}
    assert journal_segments(client_home) == []


def purge_runs(server: MlflowServer, *run_ids: str) -> None:
    """Purge deleted runs as a team's admin does: ``mlflow gc`` against the server's PostgreSQL
    (the tracking URI lets it delete their proxied artifacts)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = server.url
    cmd = [str(Path(sys.executable).with_name("mlflow")), "gc", "--backend-store-uri", server.backend_uri]
    subprocess.run([*cmd, "--run-ids", ",".join(run_ids)], env=env, check=True, capture_output=True, timeout=120)


def gone_warnings(caplog, run_id: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and f"run {run_id} " in r.getMessage()]


def test_a_run_deleted_or_purged_on_the_server_drops_its_ops_with_one_typed_error(
    team, server_url, client_home, caplog
):
    """Someone deletes the run in the UI (or ``mlflow gc`` purges it) while the kernel still logs
    into it: the server refuses every write for it (400 "must be in 'active' state" / 404).
    As MLflow's own logging does, those writes are dropped, not retried forever: a warning at
    once, one ``RunStateError`` naming the run at the next flush, an empty journal (nothing
    left for a later process to replay), and the tracker keeps working."""
    client = MlflowClient(server_url)
    tracker = create_experiment_tracker(tenant_id="edges", mlflow_uri=server_url)
    purged = tracker.start_experiment("purged")
    tracker.log_metrics({"loss": 1.0}, step=0)
    tracker.flush()
    client.delete_run(purged.run_id)
    purge_runs(team.open_server, purged.run_id)
    tracker.log_params({"lr": 0.1})
    for step in (1, 2):
        tracker.log_metrics({f"m{j}": j for j in range(1500)}, step=step)  # several requests
    with pytest.raises(RunStateError) as err:
        tracker.end_experiment()
    assert err.value.value == purged.run_id and "no longer exists on the tracking server" in str(err.value)
    assert len(err.value.items) == 2 + 2 * 1500 + 1  # the param and its type tag, every point, the run's end
    assert (purged.run_id, "end", "status", "FINISHED") in err.value.items
    assert gone_warnings(caplog, purged.run_id)  # said at once, for a user who never flushes
    assert journal_segments(client_home) == [] and tracker.store.writer.backlog == 0
    tracker.flush()  # reported once

    deleted = tracker.start_experiment("deleted")
    tracker.log_metrics({"loss": 1.0}, step=0)
    tracker.flush()
    client.delete_run(deleted.run_id)
    tracker.log_metrics({"loss": 0.5}, step=1)
    with pytest.raises(RunStateError) as err:
        tracker.end_experiment()
    assert err.value.value == deleted.run_id
    assert "was deleted on the tracking server" in str(err.value) and "restore_run" in str(err.value)
    assert err.value.items == [(deleted.run_id, "metric", "loss", 0.5), (deleted.run_id, "end", "status", "FINISHED")]
    stored = client.get_run(deleted.run_id)
    assert stored.info.lifecycle_stage == "deleted" and stored.info.status == "RUNNING"
    assert (
        history(client, deleted.run_id, "loss")[0][:2] == (1.0, 0) and len(history(client, deleted.run_id, "loss")) == 1
    )
    assert journal_segments(client_home) == []

    with tracker.start_experiment("after") as run:  # nothing is stuck
        tracker.log_metrics({"loss": 0.1})
    assert client.get_run(run.run_id).data.metrics == {"loss": 0.1}


def test_a_dead_kernels_journal_for_deleted_and_purged_runs_is_replayed_once(team, server_url, client_home, caplog):
    """A kernel died with ops for runs that were deleted or purged since: the next process stores
    the other runs' ops, warns naming the gone runs, and releases the journal (before, every
    later process failed to replay it, forever)."""
    client = MlflowClient(server_url)
    exp = client.create_experiment("edges-gone-replay")
    live, deleted, purged = (client.create_run(exp).info.run_id for _ in range(3))
    client.delete_run(deleted)
    client.delete_run(purged)
    purge_runs(team.open_server, purged)
    dead = journal.Journal(layout.journal_dir(client_home, server_url))
    for rid in (live, deleted, purged):
        dead.append({"k": "log", "id": rid, "ts": 1_700_000_000_000, "step": 1, "p": {"lr": "0.1"}, "m": {"loss": 0.5}})
        dead.append({"k": "end", "id": rid, "status": "FINISHED", "end": 1_700_000_000_001})
    dead.close(keep_data=True)

    tracker = create_experiment_tracker(tenant_id="edges", mlflow_uri=server_url)
    _ = tracker.store.writer  # replays as it starts
    stored = client.get_run(live)
    assert stored.data.metrics == {"loss": 0.5} and stored.info.status == "FINISHED"
    kept = client.get_run(deleted)
    assert kept.data.metrics == {} and kept.info.lifecycle_stage == "deleted" and kept.info.status == "RUNNING"
    assert gone_warnings(caplog, deleted) and gone_warnings(caplog, purged)
    assert journal_segments(client_home) == []
    assert list(layout.journal_dir(client_home, server_url).glob(f"{dead.token}.*")) == []


KERNEL = r"""
import sys
from mlops_jupyter import create_experiment_tracker
from mlops_jupyter.errors import InvalidParamError
url, run_id, who, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
tracker = create_experiment_tracker(tenant_id="edges", mlflow_uri=url)
tracker.resume(run_id)
print("@@ready", flush=True)
sys.stdin.readline()
tracker.log_params({"who": who})  # both kernels: one of the two values is refused
for step in range(n):
    tracker.log_metrics({"shared": step, f"own_{who}": step}, step=step if who == "a" else n + step)
try:
    tracker.end_experiment()
    print("@@ok", flush=True)
except InvalidParamError as exc:
    print("@@refused", exc.value, flush=True)
"""


def test_two_kernels_logging_into_one_run(server_url, client_home, tmp_path):
    client = MlflowClient(server_url)
    tracker = create_experiment_tracker(tenant_id="edges", mlflow_uri=server_url)
    run_id = tracker.start_experiment("one-run").run_id
    tracker.end_experiment()
    n = 2000
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", KERNEL, server_url, run_id, who, str(n)],
            env={**os.environ, "MLOPS_HOME": str(tmp_path / who)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for who in ("a", "b")
    ]
    outs = run_in_step(procs, timeout=120)
    assert [p.returncode for p in procs] == [0, 0], outs
    results = sorted(out.split("@@")[-1].split()[0] for out in outs)
    assert results == ["ok", "refused"], outs  # exactly one kernel's `who` was refused, and it was told
    data = client.get_run(run_id).data
    assert data.params["who"] in ("a", "b")
    refused_who = next(o.split("@@refused ")[1].split()[0] for o in outs if "@@refused" in o)
    assert refused_who != data.params["who"]
    assert sorted(m.step for m in client.get_metric_history(run_id, "shared")) == list(range(2 * n))
    assert sorted(m.step for m in client.get_metric_history(run_id, "own_a")) == list(range(n))
    assert sorted(m.step for m in client.get_metric_history(run_id, "own_b")) == list(range(n, 2 * n))
    for who in ("a", "b"):
        assert journal_segments(tmp_path / who) == []


def test_the_server_going_away_mid_run_loses_nothing_and_stores_nothing_twice(team, tmp_path, client_home):
    pg = team.postgres
    server = MlflowServer(tmp_path / "flaky", pg.create_database("mlflow_flaky", template="mlflow_template"))
    server.start().wait_ready()
    try:
        client = MlflowClient(server.url)
        tracker = create_experiment_tracker(tenant_id="edges", mlflow_uri=server.url)
        run = tracker.start_experiment("flaky")
        tracker.log_params({"lr": 0.1})
        for step in range(100):
            tracker.log_metrics({"loss": 1 / (step + 1), "acc": step / 100}, step=step)
        tracker.flush()
        client.log_param(run.run_id, "owner", "kernel-2")  # another kernel: ours will be refused later

        server.stop()
        t0 = time.monotonic()
        # a cell's source first: the upload is in the batch the writer retries while the server is down
        tracker.log_text("print('offline')", "cell.py")
        for step in range(100, 300):
            tracker.log_metrics({"loss": 1 / (step + 1), "acc": step / 100}, step=step)
        tracker.set_tags({"phase": "offline"})
        tracker.log_params({"owner": "kernel-1"})
        assert time.monotonic() - t0 < 2.0  # logging does not wait for the server
        t0 = time.monotonic()
        with pytest.raises(StoreError, match=r"not stored yet.*kept in the write journal") as err:
            tracker.end_experiment()
        assert time.monotonic() - t0 < 15.0  # says so at once, not after MLflow's minutes of retries
        assert "204 logged item(s)" in str(err.value)  # 200 metric calls, tag, artifact, param, run's end
        assert journal_segments(client_home)  # kept on disk meanwhile
        # after a refusal the sink asks whether the run is still active: bounded too
        t0 = time.monotonic()
        assert ClientSink(client)._run_stage(run.run_id) is None  # unknown: the ops are kept
        assert time.monotonic() - t0 < 5.0

        server.start().wait_ready()  # same port: the tracker's URL is unchanged
        with pytest.raises(InvalidParamError) as refused:
            tracker.flush(timeout=60)
        assert refused.value.items == [(run.run_id, "param", "owner", "kernel-1")]
        stored = client.get_run(run.run_id)
        assert stored.info.status == "FINISHED" and stored.data.tags["phase"] == "offline"
        assert stored.data.params["owner"] == "kernel-2"
        for key in ("loss", "acc"):
            assert sorted(m.step for m in client.get_metric_history(run.run_id, key)) == list(range(300))  # no dups
        assert Path(client.download_artifacts(run.run_id, "cell.py", str(tmp_path))).read_text() == "print('offline')"
        assert journal_segments(client_home) == []
    finally:
        server.stop()


@pytest.fixture(scope="module")
def edge_tenant(auth_url):
    server_auth.provision_tenant(
        auth_url, "edge_a", {"carol": "carol-pass-0123", "dave": "dave-pass-0123"}, admin=ADMIN
    )
    return auth_url


def grant(url: str, user: str, experiment_id: str, permission: str) -> None:
    """As the admin, through MLflow's auth API: ``user`` has ``permission`` on the experiment now."""
    target = {"username": user, "resource_type": "experiment", "resource_id": experiment_id}
    revoked = requests.post(
        f"{url}/api/3.0/mlflow/users/permissions/revoke", json=target, auth=tuple(ADMIN), timeout=30
    )
    assert revoked.status_code in (200, 404), revoked.text
    resp = requests.post(
        f"{url}/api/3.0/mlflow/users/permissions/grant",
        json={**target, "permission": permission},
        auth=tuple(ADMIN),
        timeout=30,
    )
    assert resp.status_code == 200, resp.text


def act_as(monkeypatch, user: str, password: str) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)


def test_credentials_and_permissions_refused_are_typed_errors_and_lose_nothing(edge_tenant, client_home, monkeypatch):
    url = edge_tenant
    act_as(monkeypatch, "carol", "wrong-password")
    with pytest.raises(InvalidSettingError) as err:
        create_experiment_tracker(tenant_id="edge_a", mlflow_uri=url).start_experiment("guarded")
    assert err.value.value == "carol" and "MLFLOW_TRACKING_PASSWORD" in err.value.allowed

    act_as(monkeypatch, "carol", "carol-pass-0123")
    carol = create_experiment_tracker(tenant_id="edge_a", mlflow_uri=url)
    with carol.start_experiment("guarded") as run:
        carol.log_metrics({"acc": 0.9})
    exp_id = run.experiment_id

    # dave may read carol's experiment but not write to it: refused at the call, typed
    grant(url, "dave", exp_id, "READ")
    act_as(monkeypatch, "dave", "dave-pass-0123")
    dave = create_experiment_tracker(tenant_id="edge_a", mlflow_uri=url, storage_path=str(client_home / "dave"))
    with pytest.raises(TenantAccessError) as err:
        dave.start_experiment("guarded")
    assert "dave" in str(err.value)

    # dave may edit, starts a run, then loses the permission mid-run: kept and retried, typed
    grant(url, "dave", exp_id, "EDIT")
    drun = dave.start_experiment("guarded")
    dave.log_metrics({"loss": 0.5}, step=0)
    dave.flush()
    grant(url, "dave", exp_id, "READ")
    dave.log_metrics({"loss": 0.4}, step=1)
    with pytest.raises(TenantAccessError, match="kept in the write journal") as err:
        dave.flush(timeout=30)
    assert err.value.value == "dave"
    grant(url, "dave", exp_id, "EDIT")  # the admin gives it back: the kept points are stored
    dave.end_experiment()
    act_as(monkeypatch, ADMIN.username, ADMIN.password)
    admin = MlflowClient(url)
    assert [(m.step, m.value) for m in admin.get_metric_history(drun.run_id, "loss")] == [(0, 0.5), (1, 0.4)]
    assert admin.get_run(drun.run_id).info.status == "FINISHED"
    close_stores(client_home / "dave")


def test_a_failed_request_among_concurrent_ones_loses_nothing_and_only_it_is_replayed(
    edge_tenant, tmp_path, monkeypatch
):
    """Two runs, three requests in flight; the server refuses those of run B for now (403: the
    user may only read B's experiment): A is stored and ended, the journal keeps only B's ops,
    and once EDIT is granted the next process replays them, stored exactly once."""
    from mlops_jupyter.storage.writer import BatchWriter

    url = edge_tenant
    act_as(monkeypatch, ADMIN.username, ADMIN.password)
    admin = MlflowClient(url)
    (a, exp_a), (b, exp_b) = (
        (admin.create_run(e).info.run_id, e) for e in (admin.create_experiment(f"concurrent-{x}") for x in "ab")
    )
    grant(url, "dave", exp_a, "EDIT")
    grant(url, "dave", exp_b, "READ")
    act_as(monkeypatch, "dave", "dave-pass-0123")
    steps = {a: (250, 10), b: (100, 4)}
    ops = [
        {"k": "log", "id": rid, "ts": 1_700_000_000_000, "step": s, "m": {f"m{j}": s + j / 100 for j in range(keys)}}
        for rid, (n, keys) in steps.items()
        for s in range(n)
    ]
    ops += [{"k": "end", "id": rid, "status": "FINISHED", "end": 1_700_000_001_000} for rid in (a, b)]
    jdir = tmp_path / "journal"
    sink = ClientSink(MlflowClient(url), concurrency=3)
    writer = BatchWriter(sink, journal.Journal(jdir))
    for op in ops:
        writer.submit(op)
    with pytest.raises(TenantAccessError, match="kept in the write journal"):
        writer.flush(timeout=60)
    assert not writer.close()  # the process ends with B unstored: its journal stays
    sink.close()
    assert admin.get_run(a).info.status == "FINISHED"

    grant(url, "dave", exp_b, "EDIT")
    (orphan,) = journal.orphans(jdir)
    left = list(journal.read_segments(orphan.segments))
    assert {op["id"] for op in left} == {b}  # nothing of A is replayed
    assert sorted((op["step"], k) for op in left for k in op.get("m") or ()) == sorted(
        (s, f"m{j}") for s in range(100) for j in range(4)
    )
    assert [op for op in left if op["k"] == "end"] == [ops[-1]]
    replay = ClientSink(MlflowClient(url), concurrency=3)
    try:
        assert replay.write(left) == []
    finally:
        replay.close()
    journal.release(jdir, orphan)
    assert admin.get_run(b).info.status == "FINISHED" and admin.get_run(b).data.metrics["m3"] == 99.03
    for rid, (n, keys) in steps.items():
        for j in range(keys):
            assert sorted(m.step for m in admin.get_metric_history(rid, f"m{j}")) == list(range(n))
    assert list(jdir.glob("*.journal")) == []
