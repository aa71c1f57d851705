"""Monitoring against a real gateway subprocess: what it serves is monitored at once, an A/B
split is measured per version, and the gateway itself evaluates alert rules as traffic
arrives, so drift fires a webhook and rolls the endpoint back to v1 with nobody calling
check_drift (checked over HTTP)."""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import Http, gateway_home, path, split_body

from mlops_jupyter.config import env


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, template_db: Path):
    """Two iris versions with their training data as reference, v1 live in production, and a
    gateway that evaluates alerts every 0.3 s."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    from mlops_jupyter import create_mlops_pipeline

    old = os.environ.get(env.MLOPS_ALERT_INTERVAL)
    os.environ[env.MLOPS_ALERT_INTERVAL] = "0.3"  # read by the gateway process when it starts
    try:
        with gateway_home(tmp_path_factory, template_db, "mon") as home:
            X, y = load_iris(return_X_y=True, as_frame=True)
            p = create_mlops_pipeline("monitoring", tenant_id="acme", storage_path=home)
            p.versioning.create_version("iris", model=LogisticRegression(max_iter=500).fit(X, y), reference_data=X)
            p.versioning.create_version(
                "iris", model=DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, y), reference_data=X
            )
            assert p.deployment.deploy_model("iris", "1.0.0", "production")["status"] == "deployed"
            info = json.loads((home / "gateway.json").read_text())
            yield {"home": home, "p": p, "X": X, "port": info["port"], "token": p.deployment.get_token()}
    finally:
        if old is None:
            os.environ.pop(env.MLOPS_ALERT_INTERVAL, None)
        else:
            os.environ[env.MLOPS_ALERT_INTERVAL] = old


def send(served, env_name: str, frame, rows_per_request: int = 1) -> list[str]:
    """POST ``frame`` to the endpoint; returns the version that answered each request."""
    c = Http(served["port"], served["token"])
    versions = []
    try:
        for i in range(0, len(frame), rows_per_request):
            status, headers, out = c.call(
                "POST", path("iris", env_name), split_body(frame.iloc[i : i + rows_per_request].values.tolist())
            )
            assert status == 200, out
            versions.append(headers["x-model-version"])
    finally:
        c.close()
    return versions


def test_served_predictions_are_monitored_at_once_and_an_ab_split_per_version(served):
    p, X = served["p"], served["X"]
    p.deployment.deploy_model("iris", "1.0.0", "ab")
    p.deployment.deploy_model("iris", "1.1.0", "ab", traffic_percentage=50)
    rows = X.sample(400, replace=True, random_state=1)
    answered = send(served, "ab", rows)
    result = p.monitoring.check_drift("iris", window=400)  # no waiting: the gateway is asked to write
    perf = result["performance_metrics"]
    assert perf["prediction_count"] == 400 and perf["success_rate"] == 1.0
    assert {v: d["prediction_count"] for v, d in perf["per_version"].items()} == {
        v: answered.count(v) for v in ("1.0.0", "1.1.0")
    }
    assert 120 < answered.count("1.1.0") < 280
    assert result["status"] == "ok" and result["reference_source"] == "version"
    assert result["n_reference"] == len(X) and result["drift_detected"] is False
    assert result["environment"] == "ab" and 0 < perf["p50_latency"] <= perf["p99_latency"] < 1
    ts = p.monitoring.timeseries("iris", freq="1min", window=400)
    assert ts["count"].sum() == 400 and set(ts["version"]) == {"1.0.0", "1.1.0"}


def test_the_gateway_fires_on_drift_posts_a_webhook_and_rolls_back_to_v1(served):
    p, X = served["p"], served["X"]
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert p.deployment.deploy_model("iris", "1.1.0", "production")["traffic"] == {"1.1.0": 100}
        rollback = p.monitoring.set_alert("iris", "drift_score > 0.5", "rollback", severity="critical")
        webhook = p.monitoring.set_alert(
            "iris",
            "drift_score > 0.5 and prediction_count >= 1000",
            f"webhook:http://127.0.0.1:{server.server_address[1]}/alerts",
        )
        drifted = X.sample(1200, replace=True, random_state=2) + 4.0  # every feature moves far
        assert set(send(served, "production", drifted, rows_per_request=60)) == {"1.1.0"}

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # nobody calls check_drift: the gateway evaluates
            # the record changes first; the event is marked delivered once every worker serves it
            events = p.monitoring.alerts("iris")
            # actions are delivered off the evaluating thread (issue 16): wait for both records
            delivered = {e["alert_id"] for e in events if e["delivered"]} >= {rollback["alert_id"], webhook["alert_id"]}
            rolled_back = p.deployment.get_deployment("iris", "production")["traffic"] == {"1.0.0": 100}
            if rolled_back and received and delivered:
                break
            time.sleep(0.2)
        assert p.deployment.get_deployment("iris", "production")["traffic"] == {"1.0.0": 100}
        assert set(send(served, "production", X.head(5))) == {"1.0.0"}  # over HTTP: v1 again

        history = {e["alert_id"]: e for e in p.monitoring.alerts("iris")}
        fired = history[rollback["alert_id"]]
        assert fired["state"] == "firing" and fired["delivered"] and fired["values"]["drift_score"] > 0.5
        assert fired["action_result"]["from"] == {"1.1.0": 100} and fired["action_result"]["to"] == {"1.0.0": 100}
        assert fired["action_result"]["environment"] == "production"
        assert len(received) == 1 and received[0]["alert_id"] == webhook["alert_id"]
        assert received[0]["state"] == "firing" and received[0]["values"]["prediction_count"] >= 1000
        hook_result = history[webhook["alert_id"]]["action_result"]
        assert (hook_result["ok"], hook_result["status"], len(hook_result["attempts"])) == (True, 204, 1)
        assert received[0]["idempotency_key"] == hook_result["idempotency_key"]

        time.sleep(1.0)  # more passes: still firing, the rollback is not repeated
        assert p.deployment.get_deployment("iris", "production")["traffic"] == {"1.0.0": 100}
        assert len(p.monitoring.alerts("iris")) == 2 and len(received) == 1

        # it resolves on clean traffic; when it fires again after the cooldown, "rollback" does
        # not roll forward to 1.1.0 (the version before 1.0.0 in the history)
        def wait_state(state: str) -> None:  # as the gateway steps the rule
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                rules = {a["alert_id"]: a["state"] for a in p.monitoring.list_alert_rules("iris")}
                if rules[rollback["alert_id"]] == state:
                    return
                time.sleep(0.1)
            raise AssertionError(f"the rule did not become {state}: {rules}")

        send(served, "production", X.sample(1000, replace=True, random_state=3), rows_per_request=100)
        wait_state("inactive")  # resolved
        send(served, "production", drifted.iloc[:1000], rows_per_request=100)
        wait_state("pending")  # holds again, but within the cooldown
        changes = p.monitoring.evaluate_alerts("iris", now=time.time() + 3600)  # past the 5-minute cooldown
        [again] = [c for c in changes if c["alert_id"] == rollback["alert_id"]]
        assert again["transitions"] == ["fire"] and again["delivery"] == "queued"  # runs off-thread (issue 16)
        assert p.monitoring.wait_for_alert_actions() == 0
        [event] = [e for e in p.monitoring.alerts("iris") if e["event_id"] == again["event_id"]]
        assert "not rolling forward" in event["action_result"]["skipped"]
        assert p.deployment.get_deployment("iris", "production")["traffic"] == {"1.0.0": 100}
    finally:
        server.shutdown()
        server.server_close()
