"""The ``ray`` target for real: a local Ray (2 CPUs) started by this module, Ray Serve serving
two versions behind the local gateway's contract, changes made under load, and the
predictions read back by monitoring. Ray is shut down at the end of the module."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import close_stores

from mlops_jupyter.deployment.traffic import Router
from mlops_jupyter.errors import ValidationError

TENANT = "acme"


class NegativeLengthFails:
    """Mixed into version 1.1.0: it raises on a negative sepal length, a valid input its decoder
    accepts, so the requests are the model's errors (500), not the client's (400)."""

    def predict(self, X):
        import numpy as np

        if (np.asarray(X, dtype=float)[:, 0] < 0).any():
            raise ValueError("a negative sepal length")
        return super().predict(X)


@pytest.fixture(scope="module")
def ray_dep(tmp_path_factory: pytest.TempPathFactory, template_db: Path):
    import shutil
    import sys

    import cloudpickle
    import ray
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    from mlops_jupyter import create_model_deployment, create_model_monitoring, create_model_versioning

    home = tmp_path_factory.mktemp("ray") / "store"
    home.mkdir()
    shutil.copy(template_db, home / "mlflow.db")
    X, y = load_iris(return_X_y=True, as_frame=True)
    v = create_model_versioning(tenant_id=TENANT, storage_path=home)
    v.create_version("iris", model=LogisticRegression(max_iter=500).fit(X, y), reference_data=X)

    class Tree(NegativeLengthFails, DecisionTreeClassifier):
        pass

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the replicas load it from the model folder
    try:
        v.create_version("iris", model=Tree(max_depth=2, random_state=0).fit(X, y), reference_data=X)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    d = create_model_deployment(tenant_id=TENANT, storage_path=home, target="ray")
    try:
        yield {
            "home": home,
            "X": X,
            "v": v,
            "d": d,
            "m": create_model_monitoring(tenant_id=TENANT, storage_path=home),
        }
    finally:
        d.stop_gateway()
        assert not ray.is_initialized()
        close_stores(home)


def _post(
    url: str, body: bytes | None, headers: dict[str, str], method: str = "POST"
) -> tuple[int, dict[str, Any], dict[str, str]]:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request(method, u.path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null"), {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


class Load:
    """Threads sending keyed requests on keep-alive connections until stopped."""

    def __init__(self, url: str, token: str, body: bytes, threads: int = 3) -> None:
        self.url, self.body = url + "/invocations", body
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.stop = threading.Event()
        self.results: list[tuple[int, str | None]] = []
        self.failures: list[Any] = []
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, i: int) -> None:
        u = urlsplit(self.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        n = 0
        while not self.stop.is_set() and n < 20_000:
            n += 1
            try:
                conn.request("POST", u.path, body=self.body, headers={**self.headers, "X-Request-Key": f"{i}-{n}"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200:
                    self.failures.append((resp.status, data[:200]))
                self.results.append((resp.status, resp.getheader("X-Model-Version")))
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        conn.close()

    def wait_for(self, n: int, timeout: float = 60.0) -> None:
        """Until ``n`` answers arrived (bounded; fails on the first failed request)."""
        deadline = time.monotonic() + timeout
        while len(self.results) < n:
            assert not self.failures, self.failures[:3]
            assert time.monotonic() < deadline, f"only {len(self.results)} answers in {timeout} s"
            time.sleep(0.01)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def _body(X: Any, n: int = 2) -> bytes:
    return json.dumps({"dataframe_split": json.loads(X.head(n).to_json(orient="split", index=False))}).encode()


def test_deploy_serves_the_local_contract_with_replicas_as_configured(ray_dep):
    from ray import serve

    d, X = ray_dep["d"], ray_dep["X"]
    config = {"replicas": 2, "resources": {"cpu": "0.25", "memory": "200Mi"}}
    r = d.deploy_model("iris", "1.0.0", environment="production", config=config)
    assert r["status"] == "deployed", r["reason"]
    assert r["target"] == "ray" and "enforced by Ray Serve" in r["config_effect"] and r["config"] == config
    assert r["endpoint"].endswith("/tenants/acme/production/models/iris")
    # Serve's own status API: two running replicas of the version, each with the resources asked
    app = serve.status().applications["mlops-acme-production-iris-1.0.0"]
    assert {str(k).rsplit(".", 1)[-1]: n for k, n in app.deployments["model"].replica_states.items()} == {"RUNNING": 2}
    status = d.gateway_status()
    assert status["running"] and status["started_local"]
    assert status["applications"]["mlops-acme-production-iris-1.0.0"]["replicas"]["model"] == {"RUNNING": 2}
    # the same client and scoring JSON as on the local target
    preds = d.client("iris", "production").predict(X.head(3))
    assert list(preds) == list(ray_dep["v"].load_model("iris", "1.0.0").predict(X.head(3)))
    token = d.get_token()
    url = r["endpoint"] + "/invocations"
    status_code, out, headers = _post(url, _body(X), {"Authorization": f"Bearer {token}"})
    assert status_code == 200 and len(out["predictions"]) == 2 and headers["x-model-version"] == "1.0.0"
    # tokens per tenant: none -> 401, another tenant's -> 403
    assert _post(url, _body(X), {})[0] == 401
    from mlops_jupyter.deployment.tokens import tenant_token

    other = tenant_token(ray_dep["home"], "other")
    d.deploy_model("iris", "1.0.0", environment="production")  # a change reloads the token digests
    assert _post(url, _body(X), {"Authorization": f"Bearer {other}"})[0] == 403
    # bad input: 4xx JSON naming the problem, never a 500
    code, out, _ = _post(url, b"{not json", {"Authorization": f"Bearer {token}"})
    assert code == 400 and out["error_code"] == "MALFORMED_JSON"
    bad = json.dumps({"dataframe_split": {"columns": ["x"], "data": [[1]]}}).encode()
    code, out, _ = _post(url, bad, {"Authorization": f"Bearer {token}"})
    assert code == 400 and "sepal length (cm)" in out["message"]
    # non-finite and out-of-range numbers: the local gateway's 400 naming column and row
    for value in ("NaN", "-Infinity", "1e999", "1" + "0" * 400):
        rows = f"[[5.1, 3.5, 1.4, 0.2], [5.1, 3.5, {value}, 0.2]]"
        raw = f'{{"dataframe_split": {{"columns": {json.dumps(list(X.columns))}, "data": {rows}}}}}'
        code, out, _ = _post(url, raw.encode(), {"Authorization": f"Bearer {token}"})
        assert code == 400 and out["error_code"] == "BAD_REQUEST", (value, out)
        assert "'petal length (cm)'" in out["message"] and "row 1" in out["message"], (value, out)
    code, out, _ = _post(url.replace("/iris/", "/nope/"), _body(X), {"Authorization": f"Bearer {token}"})
    assert code == 404 and out["error_code"] == "NOT_FOUND"
    # the gateway's other limits: a body over MLOPS_GATEWAY_MAX_BODY_BYTES is 413 (after Ray's
    # proxy read it: see gateway/ray_app.py), a huge bad cell is not echoed whole, a method a
    # route does not take is 405 with Allow, the media type is compared as the gateway does
    auth_h = {"Authorization": f"Bearer {token}"}
    code, out, _ = _post(url, b" " * (8 * 1024 * 1024 + 1), auth_h)
    assert code == 413 and out["error_code"] == "PAYLOAD_TOO_LARGE" and "8388609" in out["message"], out
    cell = json.dumps({"dataframe_split": {"columns": list(X.columns), "data": [[5.1, "x" * 2_000_000, 1.4, 0.2]]}})
    code, out, _ = _post(url, cell.encode(), auth_h)
    assert code == 400 and "2000002 characters" in out["message"] and len(out["message"]) < 1200, out["message"][:300]
    for method, target, allow in (("GET", url, "POST"), ("DELETE", r["endpoint"], "GET, HEAD")):
        code, out, headers = _post(target, None, auth_h, method)
        assert (code, headers.get("allow"), out["error_code"]) == (405, allow, "METHOD_NOT_ALLOWED"), (method, out)
    for ctype, want in (("Application/JSON; charset=utf-8", 200), ("application/jsonl", 415)):
        assert _post(url, _body(X), {**auth_h, "Content-Type": ctype})[0] == want, ctype


def test_ab_split_is_50_50_and_sticky_keys_match_the_local_router(ray_dep):
    d, X = ray_dep["d"], ray_dep["X"]
    # one replica per version from now on: a new replica count is one of Serve's in-place updates
    config = {"replicas": 1, "resources": {"cpu": "0.25", "memory": "200Mi"}}
    r = d.deploy_model("iris", "1.1.0", environment="production", config=config, traffic_percentage=50)
    assert r["status"] == "deployed" and r["traffic"] == {"1.0.0": 50, "1.1.0": 50}
    url, token = r["endpoint"], d.get_token()
    router = Router(r["traffic"])
    seen: Counter[str] = Counter()
    mismatched = []
    lock = threading.Lock()

    def send(keys: range) -> None:
        u = urlsplit(url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        for k in keys:
            key = f"user-{k}"
            conn.request(
                "POST",
                u.path + "/invocations",
                body=_body(X, 1),
                headers={"Authorization": f"Bearer {token}", "X-Request-Key": key},
            )
            resp = conn.getresponse()
            resp.read()
            version = resp.getheader("X-Model-Version")
            with lock:
                seen[version] += 1
                if resp.status != 200 or version != router.pick(key.encode()):
                    mismatched.append((key, resp.status, version))
        conn.close()

    threads = [threading.Thread(target=send, args=(range(i, 2000, 4),)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert mismatched == []  # every key got the version the local gateway's router gives it
    assert sum(seen.values()) == 2000
    assert abs(seen["1.0.0"] / 2000 - 0.5) <= 0.03, seen


def test_rollback_and_traffic_changes_under_load_fail_no_request(ray_dep):
    d, X = ray_dep["d"], ray_dep["X"]
    url, token = d.endpoint("iris", "production"), d.get_token()
    with Load(url, token, _body(X)) as load:
        load.wait_for(50)
        again = d.set_traffic("iris", "production", {"1.0.0": 80, "1.1.0": 20})
        assert again["traffic"] == {"1.0.0": 80, "1.1.0": 20}
        mark = len(load.results)
        load.wait_for(mark + 50)
        back = d.rollback("iris", "production")
        assert back["traffic"] == {"1.0.0": 100} and back["target"] == "ray"
        mark = len(load.results)
        load.wait_for(mark + 50)
    assert load.failures == []
    assert {v for _, v in load.results} == {"1.0.0", "1.1.0"}
    assert {v for _, v in load.results[mark:]} == {"1.0.0"}  # after the rollback, only 1.0.0 answers
    from ray import serve

    gone = serve.status().applications.get("mlops-acme-production-iris-1.1.0")
    assert gone is None or str(gone.status).endswith("DELETING")  # unrouted first, then drained and deleted


def test_predictions_reach_the_log_and_monitoring_reads_them(ray_dep):
    m, X = ray_dep["m"], ray_dep["X"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # each replica writes its buffer about once a second
        perf = m.performance("iris", window="1h")
        if perf["per_version"].get("1.1.0", {}).get("prediction_count", 0) >= 1000:
            break
        time.sleep(0.2)
    assert perf["per_version"]["1.0.0"]["prediction_count"] >= 1000
    assert perf["per_version"]["1.1.0"]["prediction_count"] >= 1000
    assert perf["error_count"] == 0  # the first test's bad requests were the client's: none reached a version
    drift = m.check_drift("iris", window=500)
    assert drift["status"] == "ok" and drift["n_current"] == 500
    # every request sent the first rows of the reference data over and over: not its distribution
    assert drift["drift_detected"] is True and drift["reference_source"] in ("set_reference", "version")
    assert X.shape[1] == len(drift["features"])


def test_refusals_and_undeploy(ray_dep):
    from ray import serve

    d = ray_dep["d"]
    with pytest.raises(ValidationError, match="target_options"):
        type(d.target)(ray_dep["home"], {"adress": "x"})
    r = d.undeploy("iris", "production")
    assert r["status"] == "undeployed"
    left = {a: str(s.status) for a, s in serve.status().applications.items() if a.startswith("mlops-acme-")}
    assert all(st.endswith("DELETING") for st in left.values()), left  # unrouted, then drained by Serve
    assert d.list_deployments() == []


def _get(url: str, token: str) -> dict[str, Any]:
    """``GET`` a deployment's description, as the Ray ingress answers it."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("GET", u.path, headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        assert resp.status == 200
        return json.loads(resp.read())
    finally:
        conn.close()


def _versions_answering(url: str, token: str, body: bytes, n: int) -> Counter[str]:
    """Which versions answer ``n`` keyed requests (every one must succeed)."""
    seen: Counter[str] = Counter()
    for k in range(n):
        code, _, headers = _post(
            url + "/invocations", body, {"Authorization": f"Bearer {token}", "X-Request-Key": f"probe-{k}"}
        )
        assert code == 200
        seen[headers["x-model-version"]] += 1
    return seen


def test_a_ray_record_is_changed_on_ray_whatever_the_default_target(ray_dep, monkeypatch):
    """A deploy, rollback, traffic change and the endpoint of a record made on Ray go to Ray Serve
    even from a deployment API whose target is ``local`` (MLOPS_DEPLOY_TARGET): no gateway starts.
    A target named explicitly that is not the deployment's is refused."""
    from mlops_jupyter import create_model_deployment

    d, X = ray_dep["d"], ray_dep["X"]
    config = {"replicas": 1, "resources": {"cpu": "0.25", "memory": "200Mi"}}
    assert d.deploy_model("iris", "1.0.0", environment="canary", config=config)["status"] == "deployed"
    monkeypatch.setenv("MLOPS_DEPLOY_TARGET", "local")
    plain = create_model_deployment(tenant_id=TENANT, storage_path=ray_dep["home"])
    assert plain.target.name == "local"
    r = plain.deploy_model("iris", "1.1.0", environment="canary", traffic_percentage=60)  # follows the deployment
    assert r["status"] == "deployed" and r["traffic"] == {"1.0.0": 40, "1.1.0": 60} and r["target"] == "ray"
    named = create_model_deployment(tenant_id=TENANT, storage_path=ray_dep["home"], target="local")
    with pytest.raises(ValidationError, match="deployed on the 'ray' target") as refused:
        named.deploy_model("iris", "1.1.0", environment="canary")
    assert refused.value.value == "local" and refused.value.allowed == ["ray"]
    assert plain.endpoint("iris", "canary") == r["endpoint"]  # the Ray ingress's URL, not the gateway's
    assert [(x["environment"], x["target"]) for x in plain.list_deployments()] == [("canary", "ray")]
    token = plain.get_token()
    back = plain.rollback("iris", "canary")
    assert back["traffic"] == {"1.0.0": 100} and back["target"] == "ray" and back["endpoint"] == r["endpoint"]
    assert _get(r["endpoint"], token)["traffic"] == {"1.0.0": 100}  # asked of the Ray ingress
    assert _versions_answering(r["endpoint"], token, _body(X, 1), 20) == {"1.0.0": 20}
    again = plain.set_traffic("iris", "canary", {"1.0.0": 40, "1.1.0": 60})
    assert again["traffic"] == {"1.0.0": 40, "1.1.0": 60} and again["target"] == "ray"
    assert _get(r["endpoint"], token)["traffic"] == {"1.0.0": 40, "1.1.0": 60}
    assert plain.gateway_status()["running"] is False  # the local gateway was never started


def test_a_ray_address_nothing_answers_at_is_never_waited_for(ray_dep, tmp_path):
    """``ray.init`` waits without end (over 5 minutes) for an address nothing listens at. A
    recorded one (a local Ray that stopped with the kernel that started it) is dropped, so a new
    local Ray serves the records again; a given one is refused at once with the address."""
    import os
    import socket
    import subprocess
    import sys

    import ray

    from mlops_jupyter.deployment.targets.ray_serve import RayServeTarget

    ray_dep["d"].target.ensure_running()  # this module's local Ray (started by an earlier test, or now)
    live = ray.get_runtime_context().gcs_address
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"  # bound, never listening: connections are refused
        rec = {"environment": "production", "model_id": "iris", "extra": {"target": "ray", "ray_address": dead}}
        assert "address" not in RayServeTarget.record_options(rec)
        assert RayServeTarget.record_options({**rec, "extra": {"ray_address": live}})["address"] == live
        code = (
            "from mlops_jupyter import create_model_deployment\n"
            "from mlops_jupyter.errors import GatewayError\n"
            f"d = create_model_deployment(tenant_id='acme', storage_path={str(tmp_path)!r}, target='ray',"
            f" target_options={{'address': {dead!r}}})\n"
            "try:\n"
            "    d.target.ensure_running()\n"
            "except GatewayError as exc:\n"
            "    print('refused', exc.value)\n"
        )
        t0 = time.monotonic()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=os.environ)
        took = time.monotonic() - t0
    assert out.stdout.strip() == f"refused {dead}", out.stderr[-2000:]
    assert took < 60  # an import of Ray and one refused connection, not Ray's endless wait


def test_an_error_rate_alert_rolls_a_ray_deployment_back_on_ray(ray_dep, monkeypatch):
    """Model errors through the Ray endpoint (version 1.1.0 fails on some valid inputs) make
    ``error_rate`` fire, while bad requests (the client's errors) do not; its ``rollback`` action,
    run by a monitoring object whose deployment API defaults to ``local``, rolls Serve back."""
    from ray import serve

    monkeypatch.setenv("MLOPS_DEPLOY_TARGET", "local")
    # one attempt, bounded generously: a change on Serve takes seconds on a busy 2-core machine,
    # and an attempt cut short by the default 10 s would leave its rollback running beside a retry
    monkeypatch.setenv("MLOPS_ALERT_ACTION_TIMEOUT", "300")
    monkeypatch.setenv("MLOPS_ALERT_ACTION_ATTEMPTS", "1")
    d, m, X = ray_dep["d"], ray_dep["m"], ray_dep["X"]
    url, token = d.endpoint("iris", "canary"), d.get_token()
    assert _get(url, token)["traffic"] == {"1.0.0": 40, "1.1.0": 60}  # left by the test above
    rule = m.set_alert("iris", "error_rate > 0.3", action="rollback", cooldown="1h")
    headers = {"Authorization": f"Bearer {token}"}
    bad = json.dumps({"dataframe_split": {"columns": ["x"], "data": [[1]]}}).encode()
    for k in range(300):  # the client's errors: not predictions, so no error_rate
        assert _post(url + "/invocations", bad, {**headers, "X-Request-Key": f"bad-{k}"})[0] == 400
    failing = json.dumps({"dataframe_split": {"columns": list(X.columns), "data": [[-1.0, 3.0, 1.4, 0.2]]}}).encode()
    codes = Counter(
        _post(url + "/invocations", failing, {**headers, "X-Request-Key": f"fail-{k}"})[0] for k in range(1000)
    )
    assert set(codes) == {200, 500} and codes[500] > 450, codes  # 1.1.0's share (60 %) fails
    fired: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while not fired:  # each replica writes its part of the prediction log about once a second
        assert time.monotonic() < deadline, m.performance("iris", window="1h")
        fired = [c for c in m.evaluate_alerts("iris") if "fire" in c["transitions"]]
    assert [c["alert_id"] for c in fired] == [rule["alert_id"]]
    deadline = time.monotonic() + 60
    while (errors := m.performance("iris", window="1h")["error_count"]) < codes[500]:
        assert time.monotonic() < deadline, errors
        time.sleep(0.2)
    assert errors == codes[500]  # the model's failures only: the 300 refused requests are not counted
    assert m.wait_for_alert_actions(timeout=300) == 0
    event = m.alerts("iris")[0]
    assert event["delivered"], event
    result = event["action_result"]
    assert [a["ok"] for a in result["attempts"]] == [True], result
    assert result["environment"] == "canary" and result["version"] == "1.0.0", result
    assert result["from"] == {"1.0.0": 40, "1.1.0": 60} and result["to"] == {"1.0.0": 100}
    # Serve's state really changed: the ingress routes all traffic to 1.0.0 and 1.1.0 goes
    assert _get(url, token)["traffic"] == {"1.0.0": 100}
    assert _versions_answering(url, token, _body(X, 1), 30) == {"1.0.0": 30}
    gone = serve.status().applications.get("mlops-acme-canary-iris-1.1.0")
    assert gone is None or str(gone.status).endswith("DELETING")
    # and the record says so
    rec = d.get_deployment("iris", "canary")
    assert rec["traffic"] == {"1.0.0": 100} and rec["target"] == "ray"
    assert rec["previous_traffic"][-1] == {"1.0.0": 40, "1.1.0": 60}
    assert m.deployment.target.name == "local" and m.deployment.gateway_status()["running"] is False
    m.delete_alert(rule["alert_id"])
    assert m.deployment.undeploy("iris", "canary")["status"] == "undeployed"  # undeploy too goes to Ray
    assert d.list_deployments() == [] and "mlops-acme-canary-iris-1.0.0" not in _routed(d)


def _routed(d: Any) -> set[str]:
    """The version applications Serve still runs (not being deleted)."""
    from ray import serve

    apps = serve.status().applications
    return {a for a, s in apps.items() if a.startswith("mlops-acme-") and not str(s.status).endswith("DELETING")}
