"""The same API against a real ``mlflow server`` subprocess (``mlflow_uri="http://..."``)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from conftest import close_stores
from team.servers import MlflowServer

from mlops_jupyter import create_experiment_tracker, create_mlops_pipeline, create_model_versioning
from mlops_jupyter.config.names import TENANT_TAG
from mlops_jupyter.errors import ModelNotFoundError, TenantAccessError, VersionNotFoundError

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(tmp_path_factory, template_db):
    """A sqlite-backed ``mlflow server`` (the PostgreSQL one is in tests/team/), started by the
    same code as the team suite's."""
    d = tmp_path_factory.mktemp("mlflow-server")
    shutil.copy(template_db, d / "server.db")  # already migrated: the server starts faster
    srv = MlflowServer(d, f"sqlite:///{d / 'server.db'}", workers=1).start()
    try:
        srv.wait_ready()
        yield srv.url
    finally:
        srv.stop()


@pytest.fixture
def store_home(tmp_path, monkeypatch):
    """The local home (journal, model cache) of a client of the server."""
    from mlops_jupyter.config import env

    for var in (env.MLOPS_TENANT, env.MLFLOW_TRACKING_URI):
        monkeypatch.delenv(var, raising=False)
    h = tmp_path / "client-home"
    monkeypatch.setenv(env.MLOPS_HOME, str(h))
    yield h
    close_stores(h)


@pytest.fixture
def client(server):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=server, registry_uri=server)


def test_seed_flow_on_the_server(server, store_home, client):
    tracker = create_experiment_tracker(tenant_id="tenant_123", mlflow_uri=server)
    tracker.start_experiment("ticket_classifier_v1", tags={"model_type": "classification"})
    tracker.log_params({"n_estimators": 100, "max_depth": 10})
    tracker.log_metrics({"accuracy": 0.95, "f1_score": 0.93})
    out = tracker.end_experiment()
    assert out["status"] == "completed"
    assert out["metrics"] == {"accuracy": 0.95, "f1_score": 0.93}
    assert out["params"] == {"n_estimators": 100, "max_depth": 10}
    run = client.get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics == out["metrics"] and run.data.params == {"n_estimators": "100", "max_depth": "10"}
    assert run.data.tags[TENANT_TAG] == "tenant_123" and run.data.tags["model_type"] == "classification"
    assert client.get_experiment(out["experiment_id"]).name == "tenant_123/ticket_classifier_v1"
    # nothing was written to a local sqlite file
    assert not (store_home / "mlflow.db").exists()

    listed = tracker.list_experiments(experiment_name="ticket_classifier_v1")
    assert [r["run_id"] for r in listed] == [out["run_id"]]
    assert listed[0]["metrics"] == out["metrics"] and listed[0]["status"] == "completed"
    assert listed[0]["params"] == out["params"]  # typed on the server too (the record went in the same batch)
    assert tracker.list_experiments(filter_string="metrics.accuracy > 0.99") == []


def test_context_manager_and_failure_on_the_server(server, store_home, client):
    tracker = create_experiment_tracker(tenant_id="tenant_123", mlflow_uri=server)
    with pytest.raises(RuntimeError), tracker.start_experiment("ctx") as run:
        tracker.log_metrics({"a": 1.0})
        raise RuntimeError("boom")
    got = client.get_run(run.run_id)
    assert got.info.status == "FAILED"
    assert got.data.tags["mlops.error"] == "RuntimeError: boom"


def test_metric_points_are_stored_on_the_server(server, store_home, client, tmp_path):
    tracker = create_experiment_tracker(tenant_id="points", mlflow_uri=server)
    run = tracker.start_experiment("points")
    for i in range(600):
        tracker.log_metrics({"loss": 1 / (i + 1), "acc": i / 600, "lr": 0.1}, step=i)
    tracker.log_params({f"p{i}": i for i in range(150)})  # more than one log_batch of params
    f = tmp_path / "notes.txt"
    f.write_text("server artifact")
    tracker.log_artifact(f)
    tracker.end_experiment()
    for key in ("loss", "acc", "lr"):
        hist = client.get_metric_history(run.run_id, key)
        assert sorted(m.step for m in hist) == list(range(600))
    got = client.get_run(run.run_id)
    assert got.data.metrics["loss"] == 1 / 600
    assert len(got.data.params) == 150
    assert [a.path for a in client.list_artifacts(run.run_id)] == ["notes.txt"]
    assert open(client.download_artifacts(run.run_id, "notes.txt", str(tmp_path))).read() == "server artifact"


def test_tenant_isolation_on_the_server(server, store_home, client, fitted):
    a = create_mlops_pipeline("iso", tenant_id="srv_a", mlflow_uri=server)
    b = create_mlops_pipeline("iso", tenant_id="srv_b", mlflow_uri=server)
    with b.tracker.start_experiment("iso") as b_run:
        b.tracker.log_metrics({"m": 1.0})
    b.versioning.create_version("clf", model=fitted)
    with a.tracker.start_experiment("iso") as a_run:
        a.tracker.log_metrics({"m": 2.0})
    assert [r["run_id"] for r in a.tracker.list_experiments()] == [a_run.run_id]
    assert [r["run_id"] for r in b.tracker.list_experiments()] == [b_run.run_id]
    with pytest.raises(TenantAccessError):
        a.tracker.get_run(b_run.run_id)
    with pytest.raises(TenantAccessError):
        a.tracker.resume(b_run.run_id)
    with pytest.raises(TenantAccessError):
        a.tracker.start_experiment("iso", parent_run_id=b_run.run_id)
    with pytest.raises(TenantAccessError):
        a.versioning.create_version("stolen", model=fitted, run_id=b_run.run_id)
    assert a.versioning.list_models() == []
    for op in ("list_versions", "get_version", "load_model", "get_lineage"):
        with pytest.raises(ModelNotFoundError):
            getattr(a.versioning, op)("clf")
    with pytest.raises(ModelNotFoundError):
        a.versioning.rollback_model("clf", "1.0.0")
    assert client.get_run(b_run.run_id).data.metrics == {"m": 1.0}
    assert "production" not in client.get_registered_model("srv_b.clf").aliases


def test_versioning_on_the_server(server, store_home, client, fitted, iris, monkeypatch):
    X, _ = iris
    v = create_model_versioning(tenant_id="srv_v", mlflow_uri=server)
    v1 = v.create_version("clf", model=fitted, metadata={"training_data": "tickets_2024.csv"}, reference_data=X)
    v2 = v.create_version("clf", model=fitted)
    assert (v1["version"], v2["version"]) == ("1.0.0", "1.1.0")
    assert v1["created_at"].endswith("Z")
    mv = client.get_model_version("srv_v.clf", "1")
    assert mv.tags["mlops.semver"] == "1.0.0" and mv.tags["mlops.sha256"] == v1["sha256"]
    loaded = v.load_model("clf", "1.0.0")
    assert np.array_equal(loaded.predict(X), fitted.predict(X))
    v.promote("clf", "1.1.0")
    out = v.rollback_model("clf", "1.0.0")
    assert out["previous"] == "1.1.0"
    assert str(client.get_model_version_by_alias("srv_v.clf", "production").version) == "1"
    with pytest.raises(VersionNotFoundError, match=r"1\.0\.0.*1\.1\.0"):
        v.rollback_model("clf", "7.0.0")
    lin = v.get_lineage("clf")
    assert [tuple(e) for e in lin["edges"]] == [("1.0.0", "1.1.0")]
    assert lin["live"] == {"production": "1.0.0"}
    assert lin["versions"][0]["data_sources"] == ["tickets_2024.csv"]
    ref = v.load_reference_data("clf", "1.0.0")
    assert ref.equals(X)

    import mlflow.pyfunc

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    pyfunc = mlflow.pyfunc.load_model("models:/srv_v.clf@production")
    assert np.array_equal(np.asarray(pyfunc.predict(X)), fitted.predict(X))


def test_text_artifacts_go_to_the_server(server, store_home, client, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tracker = create_experiment_tracker(tenant_id="tenant_123", mlflow_uri=server)
    with tracker.start_experiment("text") as run:
        tracker.log_text("x = 1\n", "cell.py")
        tracker.log_text("{}", "sub/meta.json")
    assert run.artifact_uri.startswith("mlflow-artifacts:/")
    assert {a.path for a in client.list_artifacts(run.run_id)} == {"cell.py", "sub"}
    got = client.download_artifacts(run.run_id, "cell.py", str(tmp_path))
    assert open(got).read() == "x = 1\n"
    assert sorted(os.listdir(tmp_path)) == ["cell.py", "client-home"]  # nothing written into the cwd


# -- the concurrent write path (ClientSink with several requests in flight) -------------------
def _log_ops(run_id: str, steps: range, keys: int, ts: int = 1_700_000_000_000) -> list[dict]:
    return [
        {"k": "log", "id": run_id, "ts": ts, "step": s, "m": {f"m{j}": s + j / 100 for j in range(keys)}} for s in steps
    ]


def test_requests_in_flight_never_share_a_run_key_and_respect_mlflow_limits():
    from mlops_jupyter.storage.sinks import plan_requests

    ops = _log_ops("a", range(300), 10)  # 3 000 points: 3 requests' worth, split into 2 lanes
    ops.append({"k": "log", "id": "a", "ts": 1, "step": 0, "p": {f"p{i}": i for i in range(150)}, "t": {"x": "1"}})
    ops += _log_ops("b", range(5), 3) + [{"k": "end", "id": "a", "status": "FINISHED", "end": 2}]
    chains, ends = plan_requests(ops, lanes=2)
    assert ends == [ops[-1]]
    keys_of = [{(op["id"], k) for req in chain for op in req for k in op.get("m") or ()} for chain in chains]
    assert len(chains) == 3  # run a in two lanes, run b in one
    for i, ki in enumerate(keys_of):
        assert all(not ki & kj for kj in keys_of[i + 1 :])
    points, params = [], {}
    for chain in chains:
        for req in chain:
            assert len({op["id"] for op in req}) == 1
            m = sum(len(op.get("m") or ()) for op in req)
            p = sum(len(op.get("p") or ()) for op in req)
            t = sum(len(op.get("t") or ()) for op in req)
            assert m <= 1000 and p <= 100 and t <= 100 and m + p + t <= 1000
            points += [(op["id"], op["step"], k, v) for op in req for k, v in (op.get("m") or {}).items()]
            params.update({k: v for op in req for k, v in (op.get("p") or {}).items()})
    assert sorted(points) == sorted((op["id"], op["step"], k, v) for op in ops for k, v in (op.get("m") or {}).items())
    assert params == {f"p{i}": i for i in range(150)}


def test_non_finite_values_and_numpy_numbers_reach_the_server(server, client):
    import math

    from mlops_jupyter.storage.sinks import ClientSink

    run = client.create_run(client.create_experiment("non-finite")).info.run_id
    sink = ClientSink(client, concurrency=2)
    try:
        m = {"nan": float("nan"), "inf": float("inf"), "ninf": -math.inf, "np": np.float32(0.5)}
        sink.write([{"k": "log", "id": run, "ts": np.int64(5), "step": np.int64(3), "m": m, "p": {"n": 1}}])
    finally:
        sink.close()
    got = client.get_run(run).data
    assert math.isnan(got.metrics["nan"]) and got.metrics["np"] == 0.5 and got.params == {"n": "1"}
    assert got.metrics["inf"] > 1e308 and got.metrics["ninf"] < -1e308  # MLflow stores +-inf as +-max float
    assert [(h.step, h.timestamp) for h in client.get_metric_history(run, "np")] == [(3, 5)]


def test_server_write_concurrency_setting():
    from mlops_jupyter.config.settings import server_write_concurrency
    from mlops_jupyter.errors import InvalidSettingError

    assert server_write_concurrency({}) == 2
    assert server_write_concurrency({"MLOPS_SERVER_WRITE_CONCURRENCY": "1"}) == 1
    for bad in ("0", "x", "65"):
        with pytest.raises(InvalidSettingError, match="MLOPS_SERVER_WRITE_CONCURRENCY") as err:
            server_write_concurrency({"MLOPS_SERVER_WRITE_CONCURRENCY": bad})
        assert err.value.value == bad
