"""The deployment API end to end (real gateway subprocess, temp store), and its pure parts:
traffic rules, config validation, the embedded store and the prediction log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import gateway_home

from mlops_jupyter.deployment import traffic
from mlops_jupyter.errors import (
    DeploymentError,
    InvalidNameError,
    InvalidTenantError,
    ModelNotFoundError,
    NotFoundError,
    ValidationError,
    VersionNotFoundError,
)

SEED_KEYS = {"deployment_id", "status", "environment", "endpoint"}


# -- traffic rules (pure) ------------------------------------------------------------------
@pytest.mark.parametrize(
    "current,version,pct,expected",
    [
        ({}, "1.0.0", 100, {"1.0.0": 100}),
        ({}, "1.0.0", 50, {"1.0.0": 100}),
        ({"1.0.0": 100}, "1.1.0", 50, {"1.0.0": 50, "1.1.0": 50}),
        ({"1.0.0": 100}, "1.1.0", 10, {"1.0.0": 90, "1.1.0": 10}),
        ({"1.0.0": 50, "1.1.0": 50}, "1.2.0", 20, {"1.0.0": 40, "1.1.0": 40, "1.2.0": 20}),
        ({"1.0.0": 50, "1.1.0": 50}, "1.2.0", 25, {"1.0.0": 38, "1.1.0": 37, "1.2.0": 25}),
        ({"1.0.0": 50, "1.1.0": 50}, "1.1.0", 80, {"1.0.0": 20, "1.1.0": 80}),
        ({"1.0.0": 70, "1.1.0": 30}, "1.2.0", 100, {"1.2.0": 100}),
        ({"1.0.0": 99, "1.1.0": 1}, "1.2.0", 60, {"1.0.0": 40, "1.2.0": 60}),
    ],
)
def test_deploy_rebalances_the_others_proportionally_to_a_total_of_100(current, version, pct, expected):
    out = traffic.add_version(current, version, pct)
    assert out == expected and sum(out.values()) == 100


def test_traffic_tables_must_add_up_to_100_and_zeros_are_dropped():
    assert traffic.check_table({"1.0.0": 100, "1.1.0": 0}) == {"1.0.0": 100}
    with pytest.raises(ValidationError, match="add up to 90"):
        traffic.check_table({"1.0.0": 60, "1.1.0": 30})
    for bad in ({"1.0.0": 50.5, "1.1.0": 49.5}, {"1.0.0": -10, "1.1.0": 110}, {}, [("1.0.0", 100)], {1: 100}):
        with pytest.raises(ValidationError):
            traffic.check_table(bad)
    assert traffic.remove_version({"1.0.0": 60, "1.1.0": 30, "1.2.0": 10}, "1.0.0") == {"1.1.0": 75, "1.2.0": 25}


def test_rollback_target_is_the_previously_live_version():
    assert traffic.rollback_target({"1.0.0": 50, "1.1.0": 50}, [{"1.0.0": 100}]) == "1.0.0"
    assert traffic.rollback_target({"1.1.0": 100}, [{"1.0.0": 100}]) == "1.0.0"
    # back at the version that served alone before an A/B test: nothing earlier to go to
    assert traffic.rollback_target({"1.0.0": 100}, [{"1.0.0": 100}, {"1.0.0": 50, "1.1.0": 50}]) is None
    assert traffic.rollback_target({"1.1.0": 100}, [{"1.0.0": 100}, {"1.1.0": 100}]) == "1.0.0"
    assert traffic.rollback_target({"1.0.0": 100}, []) is None


def test_router_sticks_keys_and_splits_at_random_by_weight():
    r = traffic.Router({"a": 70, "b": 30})
    assert all(r.pick(f"k{i}".encode()) == r.pick(f"k{i}".encode()) for i in range(200))
    picks = [r.pick() for _ in range(20_000)]
    assert abs(picks.count("a") / 200 - 70) < 2
    keyed = [r.pick(f"user{i}".encode()) for i in range(20_000)]
    assert abs(keyed.count("a") / 200 - 70) < 2


# -- config and names (pure) ---------------------------------------------------------------
def test_config_is_validated_and_unknown_keys_list_the_known_ones():
    from mlops_jupyter.config.names import validate_environment
    from mlops_jupyter.deployment.validation import validate_config

    ok = {"replicas": 3, "resources": {"cpu": "500m", "memory": "4Gi"}}
    assert validate_config(ok) == ok
    assert validate_config(None) == {}
    with pytest.raises(ValidationError) as ei:
        validate_config({"replicas": 2, "gpu": 1})
    assert "'gpu'" in str(ei.value) and "'replicas'" in str(ei.value) and "'resources'" in str(ei.value)
    for bad in (
        {"replicas": 0},
        {"replicas": 65},
        {"replicas": True},
        {"replicas": "3"},
        {"resources": {"cpu": "lots"}},
        {"resources": {"memory": "4 GB"}},
        {"resources": {"disk": "1Gi"}},
        {"resources": ["cpu"]},
        "replicas=3",
    ):
        with pytest.raises(ValidationError):
            validate_config(bad)
    assert validate_environment("staging-2") == "staging-2"
    for bad in ("prod!", "a/b", "", "../x", "-x", None, "x" * 65):
        with pytest.raises(InvalidNameError):
            validate_environment(bad)


# -- embedded store and prediction log (no gateway) ----------------------------------------
def test_embedded_store_roundtrip_between_two_connections(tmp_path):
    from mlops_jupyter.storage.state import open_embedded_store

    a, b = open_embedded_store(tmp_path), open_embedded_store(tmp_path)
    rec = {
        "tenant": "t",
        "environment": "production",
        "model_id": "m",
        "deployment_id": "dep_1",
        "status": "deployed",
        "traffic": {"1.0.0": 100},
        "versions": {"1.0.0": {"path": "/x"}},
        "config": {"replicas": 2},
        "history": [{"0.9.0": 100}],
    }
    a.put_deployment(rec)
    got = b.get_deployment("t", "production", "m")
    assert got["traffic"] == {"1.0.0": 100} and got["history"] == [{"0.9.0": 100}] and got["config"]["replicas"] == 2
    assert [r["model_id"] for r in b.list_deployments(tenant="t")] == ["m"]
    assert b.list_deployments(tenant="u") == [] and b.list_deployments(environment="staging") == []
    a.set_meta("gateway.port", "1234")
    assert b.get_meta("gateway.port") == "1234" and b.get_meta("nope") is None
    assert b.delete_deployment("t", "production", "m") and a.get_deployment("t", "production", "m") is None
    a.close()
    b.close()


def test_prediction_log_appends_without_io_and_reads_back_columnar(tmp_path):
    import numpy as np
    import pandas as pd

    from mlops_jupyter.monitoring.predlog import PredictionLog

    log = PredictionLog(tmp_path, background=False)
    t0 = time.time()
    log.append(
        "t",
        "m",
        version="1.0.0",
        environment="production",
        latency_s=0.001,
        success=True,
        features=np.array([[1.0, 2.0], [3.0, 4.0]]),
        columns=["a", "b"],
        output=np.array([0, 1]),
        timestamp=t0 - 3600,
    )
    assert not (tmp_path / "predictions").exists()  # nothing written on the caller's path
    log.append("t", "m", version="1.1.0", latency_s=0.002, success=True, features={"a": 5.0, "c": "x"}, output="yes")
    log.append("t", "m", version="1.1.0", latency_s=0.003, success=False, error="bad input")
    log.append(
        "t",
        "m",
        version="1.1.0",
        latency_s=0.001,
        success=True,
        features=pd.DataFrame({"a": [6.0], "b": [7.0]}),
        output=pd.Series([1]),
    )
    assert log.flush() == 5
    parts = list((tmp_path / "predictions" / "t" / "m").glob("part-*.parquet"))
    assert len(parts) == 1
    df = log.read("t", "m")
    assert len(df) == 5 and df["timestamp"].is_monotonic_increasing
    a = df["feature.a"]
    assert a.iloc[[0, 1, 2, 4]].tolist() == [1.0, 3.0, 5.0, 6.0] and pd.isna(a.iloc[3])
    assert df["feature.c"].iloc[2] == "x" and df["prediction"].iloc[2] == "yes"
    assert df["success"].tolist().count(False) == 1 and "bad input" in df["error"].dropna().tolist()
    assert df.loc[0, "request_id"] == df.loc[1, "request_id"] != df.loc[2, "request_id"]
    assert len(log.read("t", "m", since=t0 - 60)) == 3
    assert len(log.read("t", "m", last_n=2)) == 2
    assert log.read("t", "other").empty and "version" in log.read("t", "other").columns
    with pytest.raises(ValidationError):
        log.read("t", "m", last_n=-1)
    with pytest.raises(InvalidTenantError):
        log.read("../t", "m")
    log.close()


def test_prediction_log_flushes_in_the_background_and_on_close(tmp_path):
    from mlops_jupyter.monitoring.predlog import PredictionLog

    log = PredictionLog(tmp_path, flush_interval=0.1)
    log.append("t", "m", version="1", latency_s=0.1, success=True, features={"a": 1}, output=1)
    deadline = time.monotonic() + 5
    while not list((tmp_path / "predictions").rglob("*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list((tmp_path / "predictions").rglob("*.parquet"))
    log2 = PredictionLog(tmp_path, flush_interval=3600)
    log2.append("t", "m", version="1", latency_s=0.1, success=True, features={"a": 2}, output=2)
    log2.close()
    assert len(PredictionLog(tmp_path, background=False).read("t", "m")) == 2
    log.close()


# -- the API against a real gateway --------------------------------------------------------
@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory, template_db: Path):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    from mlops_jupyter import create_mlops_pipeline, create_model_deployment, create_model_versioning

    with gateway_home(tmp_path_factory, template_db, "dep") as home:
        X, y = load_iris(return_X_y=True, as_frame=True)
        where = {"storage_path": home}
        v = create_model_versioning(tenant_id="acme", **where)
        for model_id in ("iris", "bad"):
            v.create_version(model_id, model=LogisticRegression(max_iter=500).fit(X, y), reference_data=X)
            v.create_version(
                model_id, model=DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, y), reference_data=X
            )
        v.create_version("iris", model=DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y))  # no reference
        yield {
            "home": home,
            "X": X,
            "v": v,
            "d": create_model_deployment(tenant_id="acme", **where),
            "pipeline": create_mlops_pipeline("p", tenant_id="acme", **where),
        }


def test_deploy_returns_the_guides_dict_and_starts_one_gateway(dep):
    d, home = dep["d"], dep["home"]
    r = d.deploy_model(
        "iris", "1.0.0", environment="production", config={"replicas": 3, "resources": {"cpu": "2", "memory": "4Gi"}}
    )
    assert set(r) >= SEED_KEYS
    assert r["status"] == "deployed" and r["environment"] == "production" and r["reason"] is None
    assert r["deployment_id"].startswith("dep_") and r["version"] == "1.0.0" and r["traffic"] == {"1.0.0": 100}
    info = json.loads((home / "gateway.json").read_text())
    assert r["endpoint"] == f"http://127.0.0.1:{info['port']}/tenants/acme/production/models/iris"
    assert info["host"] == "127.0.0.1"
    assert r["token_hint"].endswith("...") and len(r["token_hint"]) == 7
    assert r["config"] == {"replicas": 3, "resources": {"cpu": "2", "memory": "4Gi"}}
    # a second deploy finds the running gateway
    r2 = d.deploy_model("iris", "1.0.0", environment="staging")
    assert json.loads((home / "gateway.json").read_text())["pid"] == info["pid"]
    assert r2["deployment_id"] != r["deployment_id"]
    got = d.get_deployment("iris", "production")
    assert got["config"]["replicas"] == 3 and got["status"] == "deployed" and got["version"] == "1.0.0"
    # config=None keeps the stored config
    assert d.deploy_model("iris", "1.0.0", environment="production")["config"]["replicas"] == 3
    assert {x["environment"] for x in d.list_deployments()} >= {"production", "staging"}
    assert [x["environment"] for x in d.list_deployments("staging")] == ["staging"]


def test_bad_arguments_raise_typed_errors_naming_the_value(dep):
    d = dep["d"]
    with pytest.raises(InvalidNameError, match="prod!"):
        d.deploy_model("iris", "1.0.0", environment="prod!")
    for pct in (0, 101, 50.5, True, "50"):
        with pytest.raises(ValidationError):
            d.deploy_model("iris", "1.0.0", environment="ab", traffic_percentage=pct)
    with pytest.raises(ValidationError, match="'replicas'"):
        d.deploy_model("iris", "1.0.0", environment="ab", config={"replica": 2})
    with pytest.raises(VersionNotFoundError, match=r"9\.9\.9"):
        d.deploy_model("iris", "9.9.9", environment="ab")
    with pytest.raises(ModelNotFoundError):
        d.deploy_model("nope", "1.0.0", environment="ab")
    with pytest.raises(NotFoundError):
        d.get_deployment("iris", "ab")
    assert d.list_deployments("ab") == []


def test_ab_deploy_rebalances_and_rollback_returns_to_the_previous_version(dep):
    d = dep["d"]
    assert d.deploy_model("iris", "1.0.0", environment="ab")["traffic"] == {"1.0.0": 100}
    r = d.deploy_model("iris", "1.1.0", environment="ab", traffic_percentage=50)
    assert r["traffic"] == {"1.0.0": 50, "1.1.0": 50} and r["status"] == "deployed"
    # no reference data: the gateway tests on zeros for an all-numeric model
    r = d.deploy_model("iris", "1.2.0", environment="ab", traffic_percentage=20)
    assert r["traffic"] == {"1.0.0": 40, "1.1.0": 40, "1.2.0": 20} and r["status"] == "deployed"
    client = d.client("iris", "ab")
    seen = {client.predict(dep["X"].head(1)) is not None and client.last_version for _ in range(60)}
    assert seen == {"1.0.0", "1.1.0", "1.2.0"}
    with pytest.raises(ValidationError, match="add up to"):
        d.set_traffic("iris", "ab", {"1.0.0": 50, "1.1.0": 40})
    with pytest.raises(VersionNotFoundError):
        d.set_traffic("iris", "ab", {"1.0.0": 50, "7.0.0": 50})
    assert d.set_traffic("iris", "ab", {"1.0.0": 90, "1.1.0": 10, "1.2.0": 0})["traffic"] == {"1.0.0": 90, "1.1.0": 10}
    r = d.rollback("iris", "ab")
    assert r["traffic"] == {"1.0.0": 100} and r["status"] == "deployed"
    assert d.rollback("iris", "ab", to_version="1.1.0")["traffic"] == {"1.1.0": 100}
    assert d.rollback("iris", "ab")["traffic"] == {"1.0.0": 100}
    assert {client.predict(dep["X"].head(1)) is not None and client.last_version for _ in range(10)} == {"1.0.0"}
    assert d.undeploy("iris", "ab")["status"] == "undeployed"
    with pytest.raises(NotFoundError):
        client.predict(dep["X"].head(1))
    with pytest.raises(NotFoundError):
        d.rollback("iris", "ab")
    client.close()


def test_undeploy_one_version_scales_the_others_up(dep):
    d = dep["d"]
    d.deploy_model("iris", "1.0.0", environment="undeploy")
    d.deploy_model("iris", "1.1.0", environment="undeploy", traffic_percentage=25)
    r = d.undeploy("iris", "undeploy", version="1.1.0")
    assert r["traffic"] == {"1.0.0": 100}
    with pytest.raises(NotFoundError, match=r"1\.1\.0"):
        d.undeploy("iris", "undeploy", version="1.1.0")
    d.deploy_model("iris", "1.0.0", environment="single")
    with pytest.raises(DeploymentError, match="to_version"):
        d.rollback("iris", "single")


def test_a_tampered_artifact_is_refused_and_what_served_keeps_serving(dep):
    d, v = dep["d"], dep["v"]
    assert d.deploy_model("bad", "1.0.0", environment="production")["status"] == "deployed"
    model_file = v.model_dir("bad", "1.1.0") / "model.pkl"
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    r = d.deploy_model("bad", "1.1.0", environment="production", traffic_percentage=50)
    assert r["status"] == "failed" and "integrity" in r["reason"] and "sha256" in r["reason"]
    assert r["traffic"] == {"1.0.0": 100}
    assert d.get_deployment("bad", "production")["traffic"] == {"1.0.0": 100}
    client = d.client("bad", "production")
    assert len(client.predict(dep["X"].head(2))) == 2 and client.last_version == "1.0.0"
    # a first deploy that fails leaves a failed deployment that answers 503
    r = d.deploy_model("bad", "1.1.0", environment="fresh")
    assert r["status"] == "failed" and "integrity" in r["reason"]
    assert d.get_deployment("bad", "fresh")["status"] == "failed"
    with pytest.raises(DeploymentError, match="503"):
        d.client("bad", "fresh").predict(dep["X"].head(1))


def test_tenants_only_see_and_change_their_own_deployments(dep):
    from mlops_jupyter import create_model_deployment

    d_acme = dep["d"]
    d_acme.deploy_model("iris", "1.0.0", environment="tenancy")
    beta = create_model_deployment(tenant_id="beta", storage_path=dep["home"])
    assert beta.list_deployments() == []
    with pytest.raises(NotFoundError):
        beta.get_deployment("iris", "tenancy")
    with pytest.raises(NotFoundError):
        beta.rollback("iris", "tenancy", to_version="1.0.0")
    with pytest.raises(NotFoundError):
        beta.undeploy("iris", "tenancy")
    with pytest.raises(ModelNotFoundError):
        beta.deploy_model("iris", "1.0.0", environment="tenancy")
    assert beta.get_token() != d_acme.get_token()
    from mlops_jupyter.deployment.client import DeploymentClient
    from mlops_jupyter.errors import TenantAccessError

    with pytest.raises(TenantAccessError, match="403"):
        DeploymentClient(d_acme.endpoint("iris", "tenancy"), beta.get_token()).predict(dep["X"].head(1))


def test_versioning_rollback_model_moves_live_deployments(dep):
    p = dep["pipeline"]
    p.deployment.deploy_model("iris", "1.0.0", environment="follow")
    p.deployment.deploy_model("iris", "1.1.0", environment="follow", traffic_percentage=100)
    out = p.versioning.rollback_model("iris", "1.0.0")
    assert out["version"] == "1.0.0"
    moved = {x["environment"]: x["traffic"] for x in out["deployments"]}
    assert moved["follow"] == {"1.0.0": 100}
    assert p.deployment.get_deployment("iris", "follow")["traffic"] == {"1.0.0": 100}


def test_a_killed_gateway_restarts_with_every_deployment_restored(dep):
    """kill -9, then `serve` again: same port, every deployment answers; a version whose
    artifact changed meanwhile is not loaded and the deployment says so."""
    from sklearn.dummy import DummyClassifier

    d, home, X = dep["d"], dep["home"], dep["X"]
    d.deploy_model("iris", "1.0.0", environment="restart")
    d.deploy_model("iris", "1.1.0", environment="restart", traffic_percentage=30)
    for strategy in ("most_frequent", "prior"):
        dep["v"].create_version(
            "fragile", model=DummyClassifier(strategy=strategy).fit(X, dep["X"].index % 3), reference_data=X
        )
    d.deploy_model("fragile", "1.0.0", environment="restart")
    assert d.deploy_model("fragile", "1.1.0", environment="restart", traffic_percentage=30)["status"] == "deployed"
    before = {(x["environment"], x["model_id"]): x["traffic"] for x in d.list_deployments()}
    info = json.loads((home / "gateway.json").read_text())
    model_file = dep["v"].model_dir("fragile", "1.1.0") / "model.pkl"
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    os.kill(info["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{info['pid']}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    env = dict(os.environ, MLOPS_HOME=str(home))
    cmd = [sys.executable, "-m", "mlops_jupyter.cli", "serve"]
    assert subprocess.run(cmd + ["status"], env=env, capture_output=True, timeout=60).returncode == 1
    out = subprocess.run(cmd + ["--json"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    new = json.loads(out.stdout)
    assert new["pid"] != info["pid"] and new["port"] == info["port"]
    status = subprocess.run(cmd + ["--status", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and json.loads(status.stdout)["running"] is True
    assert {(x["environment"], x["model_id"]): x["traffic"] for x in d.list_deployments()} == before
    fragile = d.get_deployment("fragile", "restart")
    assert fragile["status"] == "degraded" and "integrity" in fragile["reason"] and "1.1.0" in fragile["reason"]
    c = d.client("fragile", "restart")
    assert c.info()["traffic"] == {"1.0.0": 100}
    assert {c.predict(X.head(1)) is not None and c.last_version for _ in range(20)} == {"1.0.0"}
    for (env_name, model_id), table in before.items():
        if not table:
            continue
        c = d.client(model_id, env_name)
        assert len(c.predict(X.head(2))) == 2 and c.last_version in table
        c.close()
    assert {d.client("iris", "restart").predict(X.head(1)) is not None for _ in range(3)} == {True}


def test_serve_cli_stops_and_reports(dep):
    home = dep["home"]
    env = dict(os.environ, MLOPS_HOME=str(home))
    cmd = [sys.executable, "-m", "mlops_jupyter.cli", "serve"]
    out = subprocess.run(cmd + ["--stop"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "stopped" in out.stdout
    assert not (home / "gateway.json").exists()
    out = subprocess.run(cmd + ["status"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "no gateway running" in out.stdout
    assert dep["d"].gateway_status()["running"] is False
    out = subprocess.run(cmd + ["stop", "--status"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2


def test_rollback_to_names_what_rollback_serves_after_many_changes(dep):
    # The panel, the sidebar and the alert action read one rollback target, decided by the whole
    # history: after more than five changes that kept 1.1.0 on top, 1.1.0 alone rolls back to 1.0.0.
    from mlops_jupyter.notebook.widgets import DeployPanel

    d = dep["d"]
    d.deploy_model("iris", "1.0.0", environment="many")
    d.deploy_model("iris", "1.1.0", environment="many", traffic_percentage=100)
    for share in (90, 80, 70, 60, 55, 65, 75):
        d.set_traffic("iris", "many", {"1.1.0": share, "1.0.0": 100 - share})
    d.set_traffic("iris", "many", {"1.1.0": 100})
    described = d.get_deployment("iris", "many")
    assert described["version"] == "1.1.0" and described["rollback_to"] == "1.0.0"
    panel = DeployPanel("iris", pipeline=dep["pipeline"], environments=("many",))
    panel.environment = "many"
    assert panel.describe("rollback").endswith("to 1.0.0")
    assert d.rollback("iris", "many")["traffic"] == {"1.0.0": 100}
    d.undeploy("iris", "many")
