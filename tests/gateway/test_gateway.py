"""The serving gateway over real HTTP: a real gateway subprocess on a free port, a temp store.

One gateway serves the whole module (starting one and loading scikit-learn in it takes a
couple of seconds); tests that change traffic use their own model ids or environments.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import IRIS_FEATURES as FEATURES
from conftest import Http, gateway_home, path, split_body

from mlops_jupyter.deployment import tokens as auth

ROW = [5.1, 3.5, 1.4, 0.2]


# -- fixtures ------------------------------------------------------------------------------
class Raising:
    """A scikit-learn-like classifier that raises on a sepal length above 100 (a model bug)."""

    def fit(self, X, y):
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        return self

    def predict(self, X):
        a = np.asarray(X, dtype=float)
        if (a[:, 0] > 100).any():
            raise RuntimeError("sepal length out of the range this model was built for")
        return np.zeros(len(a), dtype=int)


TICKETS = None


def _ticket_pipeline():
    """A pipeline on mixed columns (one-hot text, scaled numbers): served through DataFrames."""
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    global TICKETS
    rng = np.random.default_rng(0)
    TICKETS = pd.DataFrame(
        {
            "priority": rng.integers(1, 4, 300),
            "category": rng.choice(["tech", "billing"], 300),
            "length": rng.normal(100, 20, 300),
        }
    )
    y = (TICKETS["category"] == "tech").astype(int)
    ct = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["category"]), (StandardScaler(), ["priority", "length"])
    )
    return make_pipeline(ct, LogisticRegression()).fit(TICKETS, y)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, template_db: Path):
    """A store with iris models (two versions), a raising model, two tenants, a gateway."""
    with gateway_home(tmp_path_factory, template_db, "gw") as home:
        yield from _gw(home)


def _gw(home: Path):
    import cloudpickle
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    from mlops_jupyter import create_model_deployment, create_model_versioning

    X, y = load_iris(return_X_y=True, as_frame=True)
    where = {"storage_path": home}
    v = create_model_versioning(tenant_id="acme", **where)
    v.create_version("iris", model=LogisticRegression(max_iter=500).fit(X, y), reference_data=X)
    v.create_version("iris", model=DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, y), reference_data=X)
    v.create_version("iris", model=DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y), reference_data=X)

    class RaisingClassifier(Raising, ClassifierMixin, BaseEstimator):
        pass

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        v.create_version("flaky", model=RaisingClassifier().fit(X, y), reference_data=X)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    v.create_version("tickets", model=_ticket_pipeline(), reference_data=TICKETS)
    other = create_model_versioning(tenant_id="other", **where)
    other.create_version("iris", model=LogisticRegression(max_iter=500).fit(X, y), reference_data=X)

    d = create_model_deployment(tenant_id="acme", **where)
    d_other = create_model_deployment(tenant_id="other", **where)
    for model_id, env in (
        ("iris", "production"),
        ("iris", "split"),
        ("iris", "sticky"),
        ("iris", "load"),
        ("flaky", "production"),
        ("tickets", "production"),
    ):
        r = d.deploy_model(model_id, "1.0.0", environment=env)
        assert r["status"] == "deployed", r
    assert d_other.deploy_model("iris", "1.0.0")["status"] == "deployed"
    info = json.loads((home / "gateway.json").read_text())
    yield {
        "home": home,
        "port": info["port"],
        "d": d,
        "d_other": d_other,
        "X": X,
        "y": y,
        "token": d.get_token(),
        "other_token": d_other.get_token(),
        "admin": auth.admin_token(home),
    }


# -- liveness ------------------------------------------------------------------------------
def test_ping_and_health_need_no_token(gw):
    c = Http(gw["port"])
    status, _, body = c.call("GET", "/ping")
    assert status == 200
    status, _, body = c.call("GET", "/health")
    assert status == 200 and body == {"status": "ok"}  # the details need a token
    status, _, body = Http(gw["port"], gw["admin"]).call("GET", "/health")
    assert status == 200 and body["status"] == "ok" and body["deployments"] >= 6
    c.close()


# -- predictions in every MLflow format ----------------------------------------------------
def test_predictions_match_the_model_in_every_scoring_format(gw):
    from sklearn.linear_model import LogisticRegression

    X, y = gw["X"], gw["y"]
    expected = LogisticRegression(max_iter=500).fit(X, y).predict(X.head(5)).tolist()
    rows = X.head(5).values.tolist()
    c = Http(gw["port"], gw["token"])
    bodies = {
        "dataframe_split": split_body(rows),
        "reordered columns": split_body([r[::-1] for r in rows], FEATURES[::-1]),
        "dataframe_records": {"dataframe_records": X.head(5).to_dict(orient="records")},
        "instances rows": {"instances": rows},
        "inputs columns": {"inputs": {c_: X[c_].head(5).tolist() for c_ in FEATURES}},
        "inputs records": {"inputs": X.head(5).to_dict(orient="records")},
        "extra column ignored": split_body([r + [1] for r in rows], FEATURES + ["unused"]),
    }
    for name, body in bodies.items():
        status, headers, out = c.call("POST", path(), body)
        assert status == 200, (name, out)
        assert out == {"predictions": expected}, name
        assert headers["x-model-version"] == "1.0.0"
    c.close()


def test_deployment_client_and_endpoint_info(gw):
    d = gw["d"]
    client = d.client("iris", "production")
    preds = client.predict(gw["X"].head(3))
    assert preds.tolist() == [0, 0, 0] and client.last_version == "1.0.0"
    info = client.info()
    assert info["traffic"] == {"1.0.0": 100} and info["status"] == "deployed"
    assert info["versions"][0]["fast_path"] is True
    assert info["versions"][0]["columns"] == FEATURES
    client.close()


def test_a_mixed_type_pipeline_is_served_through_dataframes_with_type_checks(gw):
    c = Http(gw["port"], gw["token"])
    status, _, out = c.call(
        "POST",
        path("tickets"),
        {
            "dataframe_records": [
                {"priority": 1, "category": "tech", "length": 90.0},
                {"length": 80.0, "category": "billing", "priority": 3},
            ]
        },
    )
    assert status == 200 and out == {"predictions": [1, 0]}
    status, _, info = c.call("GET", path("tickets", suffix=""))
    assert info["versions"][0]["fast_path"] is False
    for record, needle in (
        ({"priority": "high", "category": "tech", "length": 1.0}, "'priority' expects numbers"),
        ({"priority": 1, "category": 5, "length": 1.0}, "'category' expects strings"),
        ({"priority": 1, "category": "tech"}, "'length'"),
        ({"priority": True, "category": "tech", "length": 1.0}, "'priority' expects numbers; row 0 has true (bool)"),
    ):
        status, _, out = c.call("POST", path("tickets"), {"dataframe_records": [record]})
        assert status == 400 and needle in out["message"], out
    c.close()


# -- auth ----------------------------------------------------------------------------------
def test_model_routes_need_the_tenants_token(gw):
    body = split_body([ROW])
    status, headers, out = Http(gw["port"]).call("POST", path(), body)
    assert status == 401 and out["error_code"] == "UNAUTHORIZED" and "www-authenticate" in headers
    assert Http(gw["port"], "not-a-token").call("POST", path(), body)[0] == 401
    assert Http(gw["port"], "not-a-token").call("GET", path(suffix=""))[0] == 401
    status, _, out = Http(gw["port"], gw["other_token"]).call("POST", path(), body)
    assert status == 403 and out["error_code"] == "FORBIDDEN"
    # the other tenant's token works on its own deployment, and not on acme's endpoint info
    assert Http(gw["port"], gw["other_token"]).call("POST", path(tenant="other"), body)[0] == 200
    assert Http(gw["port"], gw["other_token"]).call("GET", path(suffix=""))[0] == 403
    # the admin API needs the admin token
    assert Http(gw["port"], gw["token"]).call("POST", "/admin/apply", {})[0] == 403
    assert Http(gw["port"]).call("POST", "/admin/shutdown", {})[0] == 401


def test_tokens_are_private_files_and_the_deploy_result_only_hints(gw):
    import stat

    home = gw["home"]
    for f in (home / "secrets").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert stat.S_IMODE((home / "secrets").stat().st_mode) == 0o700
    r = gw["d"].deploy_model("iris", "1.0.0", environment="production")
    assert r["token_hint"] == gw["token"][:4] + "..."
    assert gw["token"] not in json.dumps(r)
    log_text = (home / "gateway.log").read_text()
    assert gw["token"] not in log_text and gw["admin"] not in log_text


# -- bad requests --------------------------------------------------------------------------
BAD = [
    ("malformed json", "POST", path(), None, b'{"dataframe_split": [1, 2', 400, "MALFORMED_JSON", "not valid JSON"),
    ("unknown format", "POST", path(), {"frame": []}, None, 400, "BAD_REQUEST", "dataframe_split"),
    ("two formats", "POST", path(), {"instances": [ROW], "inputs": [ROW]}, None, 400, "BAD_REQUEST", "exactly one"),
    (
        "missing column",
        "POST",
        path(),
        split_body([ROW[:3]], FEATURES[:3]),
        None,
        400,
        "BAD_REQUEST",
        "petal width (cm)",
    ),
    (
        "wrong column names",
        "POST",
        path(),
        split_body([ROW], ["a", "b", "c", "d"]),
        None,
        400,
        "BAD_REQUEST",
        "Missing input column",
    ),
    (
        "wrong type",
        "POST",
        path(),
        split_body([[5.1, "wide", 1.4, 0.2]]),
        None,
        400,
        "BAD_REQUEST",
        "'sepal width (cm)' expects numbers",
    ),
    ("nested value", "POST", path(), split_body([[5.1, [3.5], 1.4, 0.2]]), None, 400, "BAD_REQUEST", "value"),
    # JSON true/false is not a number (MLflow's schema check refuses bool to float too),
    # whether mixed with numbers or alone, in every format
    (
        "bool in a number column",
        "POST",
        path(),
        split_body([ROW, [5.1, True, 1.4, 0.2]]),
        None,
        400,
        "BAD_REQUEST",
        "'sepal width (cm)' expects numbers; row 1 has true (bool)",
    ),
    (
        "only bools",
        "POST",
        path(),
        split_body([[False] * 4]),
        None,
        400,
        "BAD_REQUEST",
        "'sepal length (cm)' expects numbers; row 0 has false (bool)",
    ),
    (
        "bool in instances",
        "POST",
        path(),
        {"instances": [ROW[:3] + [True]]},
        None,
        400,
        "BAD_REQUEST",
        "'petal width (cm)' expects numbers; row 0 has true (bool)",
    ),
    (
        "bool in reordered records",
        "POST",
        path(),
        {"dataframe_records": [dict(zip(FEATURES[::-1], [0.2, 1.4, False, 5.1]))]},
        None,
        400,
        "BAD_REQUEST",
        "'sepal width (cm)' expects numbers; row 0 has false (bool)",
    ),
    (
        "bool in a UTF-16 body",
        "POST",
        path(),
        None,
        json.dumps(split_body([[5.1, 3.5, True, 0.2]])).encode("utf-16"),
        400,
        "BAD_REQUEST",
        "'petal length (cm)' expects numbers",
    ),
    ("ragged rows", "POST", path(), split_body([ROW, ROW[:2]]), None, 400, "BAD_REQUEST", "lengths"),
    ("no rows", "POST", path(), split_body([]), None, 400, "BAD_REQUEST", "no rows"),
    (
        "records missing column",
        "POST",
        path(),
        {"dataframe_records": [{"sepal length (cm)": 1}]},
        None,
        400,
        "BAD_REQUEST",
        "petal length (cm)",
    ),
    ("instances wrong width", "POST", path(), {"instances": [[1, 2]]}, None, 400, "BAD_REQUEST", "4 values"),
    ("not an object", "POST", path(), [1, 2, 3], None, 400, "BAD_REQUEST", "JSON object"),
    (
        "deeply nested",
        "POST",
        path(),
        None,
        b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        400,
        "MALFORMED_JSON",
        "not valid JSON",
    ),
    ("not utf-8", "POST", path(), None, b'{"inputs": "\xff\xfe"}', 400, "MALFORMED_JSON", "not valid JSON"),
    ("unknown model", "POST", path(model="nope"), split_body([ROW]), None, 404, "NOT_FOUND", "'nope'"),
    ("unknown environment", "POST", path(env="nowhere"), split_body([ROW]), None, 404, "NOT_FOUND", "'nowhere'"),
    ("unknown path", "GET", "/nothing/here", None, None, 404, "NOT_FOUND", "/nothing/here"),
    ("GET invocations", "GET", path(), None, None, 405, "METHOD_NOT_ALLOWED", "POST"),
    ("PUT endpoint", "PUT", path(suffix=""), split_body([ROW]), None, 405, "METHOD_NOT_ALLOWED", "GET"),
    ("POST health", "POST", "/health", {}, None, 405, "METHOD_NOT_ALLOWED", "GET"),
]


@pytest.mark.parametrize("name,method,url,body,raw,status,code,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_a_4xx_json_error_naming_the_problem(gw, name, method, url, body, raw, status, code, needle):
    c = Http(gw["port"], gw["token"])
    got, _, out = c.call(method, url, body, raw=raw)
    assert got == status, out
    assert out["error_code"] == code
    assert needle in out["message"], out["message"]
    # the connection and the gateway are fine afterwards
    if c.conn.sock is None:
        c = Http(gw["port"], gw["token"])
    assert c.call("POST", path(), split_body([ROW]))[0] == 200
    c.close()


def test_unsupported_content_type_is_415(gw):
    c = Http(gw["port"], gw["token"])
    status, _, out = c.call("POST", path(), raw=b"a,b\n1,2", headers={"Content-Type": "text/csv"})
    assert status == 415 and "text/csv" in out["message"]


def test_a_10_mb_body_is_refused_with_413_and_the_gateway_stays_up(gw):
    import socket

    body = b'{"inputs": [' + b"1.0," * (10 * 1024 * 1024 // 4) + b"1.0]}"
    assert len(body) > 10 * 1024 * 1024
    c = Http(gw["port"], gw["token"])
    status, _headers, out = c.call("POST", path(), raw=body)
    assert status == 413 and out["error_code"] == "PAYLOAD_TOO_LARGE"
    assert str(len(body)) in out["message"]
    # a client that sends only the headers of a huge body gets the answer at once too
    with socket.create_connection(("127.0.0.1", gw["port"]), timeout=10) as s:
        s.sendall(
            b"POST " + path().encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n"
            b"Authorization: Bearer " + gw["token"].encode() + b"\r\n\r\n"
        )
        assert s.recv(200).startswith(b"HTTP/1.1 413")
    assert Http(gw["port"]).call("GET", "/health")[0] == 200


def test_garbage_on_the_socket_gets_400_and_the_gateway_stays_up(gw):
    import socket

    with socket.create_connection(("127.0.0.1", gw["port"]), timeout=10) as s:
        s.sendall(b"HELLO\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    with socket.create_connection(("127.0.0.1", gw["port"]), timeout=10) as s:
        s.sendall(b"POST / HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    assert Http(gw["port"]).call("GET", "/ping")[0] == 200


def test_a_model_that_raises_gets_a_counted_500_and_only_that_request_fails(gw):
    c = Http(gw["port"], gw["token"])
    status, headers, out = c.call("POST", path("flaky"), split_body([[500.0, 3.5, 1.4, 0.2]]))
    assert status == 500 and out["error_code"] == "MODEL_ERROR" and "out of the range" in out["message"]
    assert headers["x-model-version"] == "1.0.0"
    # concurrent requests batched with a failing one still succeed
    results: list[int] = []

    def hit(row: list[float]) -> None:
        h = Http(gw["port"], gw["token"])
        for _ in range(20):
            results.append(h.call("POST", path("flaky"), split_body([row]))[0])
        h.close()

    threads = [threading.Thread(target=hit, args=([500.0 if i == 0 else 5.0, 3.5, 1.4, 0.2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(500) == 20 and results.count(200) == 60
    status, _, text = Http(gw["port"], gw["token"]).call("GET", "/metrics")
    line = [
        x
        for x in text.splitlines()
        if x.startswith("mlops_errors_total") and 'model="flaky"' in x and 'kind="model"' in x
    ]
    assert line and int(line[0].split()[-1]) == 21
    assert Http(gw["port"]).call("GET", "/health")[0] == 200


# -- metrics -------------------------------------------------------------------------------
def test_metrics_are_prometheus_text_per_model_and_version_and_tenant_scoped(gw):
    c = Http(gw["port"], gw["token"])
    for _ in range(5):
        assert c.call("POST", path(), split_body([ROW]))[0] == 200
    status, headers, text = c.call("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    labels = 'tenant="acme",environment="production",model="iris",version="1.0.0"'
    assert "# TYPE mlops_requests_total counter" in text
    req = [x for x in text.splitlines() if x.startswith(f"mlops_requests_total{{{labels}}}")]
    assert req and int(req[0].split()[-1]) >= 5
    assert f'mlops_request_latency_seconds_bucket{{{labels},le="+Inf"}}' in text
    assert f"mlops_request_latency_seconds_count{{{labels}}}" in text
    assert 'tenant="other"' not in text
    _, _, other = Http(gw["port"], gw["other_token"]).call("GET", "/metrics")
    assert 'tenant="acme"' not in other and 'tenant="other"' in other
    assert Http(gw["port"]).call("GET", "/metrics")[0] == 401


# -- A/B traffic ---------------------------------------------------------------------------
def _count_versions(port: int, token: str, env: str, n: int, threads: int = 4, keyed: bool = False) -> dict[str, int]:
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def worker(k: int) -> None:
        h = Http(port, token)
        local: dict[str, int] = {}
        for i in range(n // threads):
            headers = {"X-Request-Key": f"user-{k}-{i}"} if keyed else None
            status, hdrs, _ = h.call("POST", path(env=env), split_body([ROW]), headers=headers)
            assert status == 200
            local[hdrs["x-model-version"]] = local.get(hdrs["x-model-version"], 0) + 1
        h.close()
        with lock:
            for v, c in local.items():
                counts[v] = counts.get(v, 0) + c

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return counts


def test_split_of_10000_requests_is_within_2_points_of_the_configured_one(gw):
    d = gw["d"]
    r = d.deploy_model("iris", "1.1.0", environment="split", traffic_percentage=30)
    assert r["status"] == "deployed" and r["traffic"] == {"1.0.0": 70, "1.1.0": 30}
    counts = _count_versions(gw["port"], gw["token"], "split", 10_000)
    assert sum(counts.values()) == 10_000
    assert abs(counts["1.0.0"] / 100 - 70) <= 2, counts
    assert abs(counts["1.1.0"] / 100 - 30) <= 2, counts
    keyed = _count_versions(gw["port"], gw["token"], "split", 4_000, keyed=True)
    assert abs(keyed["1.1.0"] / 40 - 30) <= 3, keyed


def test_a_request_key_sticks_to_one_version_while_the_split_is_unchanged(gw):
    d = gw["d"]
    assert d.deploy_model("iris", "1.1.0", environment="sticky", traffic_percentage=50)["traffic"] == {
        "1.0.0": 50,
        "1.1.0": 50,
    }
    c = Http(gw["port"], gw["token"])
    seen: dict[str, str] = {}
    for k in range(100):
        versions = {
            c.call("POST", path(env="sticky"), split_body([ROW]), headers={"X-Request-Key": f"k{k}"})[1][
                "x-model-version"
            ]
            for _ in range(3)
        }
        assert len(versions) == 1, (k, versions)
        seen[f"k{k}"] = versions.pop()
    assert set(seen.values()) == {"1.0.0", "1.1.0"}
    # an unrelated change elsewhere keeps every key where it was
    d.deploy_model("iris", "1.2.0", environment="split", traffic_percentage=10)
    for k in list(seen)[:30]:
        assert (
            c.call("POST", path(env="sticky"), split_body([ROW]), headers={"X-Request-Key": k})[1]["x-model-version"]
            == seen[k]
        )
    c.close()


def test_twenty_changes_under_8_concurrent_clients_cause_zero_failed_requests(gw):
    d = gw["d"]
    stop = threading.Event()
    failures: list[Any] = []
    served: dict[str, int] = {}
    lock = threading.Lock()

    def client(k: int) -> None:
        h = Http(gw["port"], gw["token"])
        while not stop.is_set():
            try:
                status, hdrs, out = h.call("POST", path(env="load"), split_body([ROW, ROW]))
            except Exception as exc:  # a dropped connection is a failure too
                failures.append(repr(exc))
                h = Http(gw["port"], gw["token"])
                continue
            if status != 200 or len(out.get("predictions", [])) != 2:
                failures.append((status, out))
            with lock:
                served[hdrs.get("x-model-version")] = served.get(hdrs.get("x-model-version"), 0) + 1
        h.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    changes = [
        lambda: d.deploy_model("iris", "1.1.0", environment="load", traffic_percentage=50),
        lambda: d.set_traffic("iris", "load", {"1.0.0": 10, "1.1.0": 90}),
        lambda: d.deploy_model("iris", "1.2.0", environment="load", traffic_percentage=20),
        lambda: d.rollback("iris", "load"),
        lambda: d.rollback("iris", "load", to_version="1.2.0"),
    ]
    try:
        time.sleep(0.2)
        for i in range(20):
            out = changes[i % len(changes)]()
            assert out["status"] == "deployed", out
            assert sum(out["traffic"].values()) == 100
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert sum(served.values()) > 100 and {"1.0.0", "1.1.0", "1.2.0"} <= set(served)


# -- prediction log ------------------------------------------------------------------------
def test_every_served_prediction_is_in_the_prediction_log(gw):
    from mlops_jupyter.monitoring.predlog import PredictionLog

    c = Http(gw["port"], gw["token"])
    marker = 7.654321
    for _ in range(3):
        assert c.call("POST", path(), split_body([[marker, 3.0, 1.0, 0.5], ROW]))[0] == 200
    assert c.call("POST", path(), split_body([[1.0, "x", 1.0, 1.0]]))[0] == 400
    plog = PredictionLog(gw["home"], background=False)
    deadline = time.monotonic() + 10
    df = plog.read("acme", "iris")
    while (df.empty or (df["feature.sepal length (cm)"] == marker).sum() < 3) and time.monotonic() < deadline:
        time.sleep(0.2)
        df = plog.read("acme", "iris")
    mine = df[df["feature.sepal length (cm)"] == marker]
    assert len(mine) == 3
    assert set(mine["version"]) == {"1.0.0"} and set(mine["environment"]) == {"production"}
    assert mine["success"].all() and (mine["latency_s"] > 0).all() and (mine["latency_s"] < 5).all()
    assert list(mine["prediction"]) == [0, 0, 0]
    assert mine["feature.petal width (cm)"].tolist() == [0.5, 0.5, 0.5]
    # both rows of a request share its request id
    assert df[df["request_id"].isin(mine["request_id"])].shape[0] == 6
    # the 400 never reached the model: it is no prediction (not in the log, not in error_rate)
    assert Http(gw["port"], gw["admin"]).call("POST", "/admin/flush", {})[0] == 200
    df = plog.read("acme", "iris")
    assert not df["error"].fillna("").str.contains("expects numbers").any()
    assert len(plog.read("acme", "iris", last_n=4)) == 4
    plog.close()
