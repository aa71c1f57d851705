"""The server extension's REST API over real HTTP: pytest-jupyter's in-process Jupyter
server (authentication on, a token, base_url ``/a@b/``), the extension loaded as the
shipped config loads it, on a real store with a real gateway (seeded once per module).

pytest-jupyter's fixtures are imported here, not registered as a plugin, so its autouse
fixtures (an event loop and a ServerApp cleanup per test) stay in this module.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Http, gateway_home, path, seed_mlops_store, split_body
from jupyter_server.auth import Authorizer

# jp_fetch and the fixtures it needs, for this module only (see the docstring)
from pytest_jupyter.jupyter_server import *

ROOT = Path(__file__).resolve().parents[2]
ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, template_db: Path):
    t0 = time.perf_counter()
    with gateway_home(tmp_path_factory, template_db, "api") as home:
        seeded = seed_mlops_store(home)
        seeded["seed_s"] = time.perf_counter() - t0
        yield seeded


@pytest.fixture
def mlops_config(request, store, monkeypatch) -> dict[str, Any]:
    """``c.MLOpsServer`` of the test's server: tenant ``acme`` on the module's store, or, by
    indirect parametrization, ``{"config": {...}, "env": {...}}`` (``{home}`` is the store)."""
    param = getattr(request, "param", None)
    if param is None:
        return {"tenant": "acme", "storage_path": str(store["home"])}
    for k in param.get("unset", ()):
        monkeypatch.delenv(k, raising=False)
    for k, v in param.get("env", {}).items():
        monkeypatch.setenv(k, v.format(home=store["home"]))
    return {k: v.format(home=store["home"]) if isinstance(v, str) else v for k, v in param.get("config", {}).items()}


@pytest.fixture
def jp_server_config(mlops_config):
    server = {"jpserver_extensions": {"mlops_jupyter": True}, **mlops_config.pop("ServerApp", {})}
    return {"ServerApp": server, "MLOpsServer": mlops_config}


class Api:
    """A synchronous client of the API on the test server: ``(status, json)`` answers."""

    def __init__(self, fetch, loop) -> None:
        self.fetch, self.loop = fetch, loop

    def __call__(
        self,
        method: str,
        route: str,
        body: Any = None,
        raw: bytes | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {
            "method": method,
            "raise_error": False,
            "headers": headers or {},
            "params": params or {},
            "request_timeout": 60,
        }
        if method == "POST":
            kwargs["body"] = raw if raw is not None else json.dumps(body).encode()
        parts = [p for p in route.split("/") if p]
        resp = self.loop.run_until_complete(self.fetch("mlops", "api", *parts, **kwargs))
        if resp.code != 599:
            assert resp.headers.get("Content-Type", "").startswith("application/json"), (route, resp.headers)
        return resp.code, json.loads(resp.body) if resp.body else None

    def get(self, route: str, **kw: Any) -> Any:
        status, data = self(route=route, method="GET", **kw)
        assert status == 200, (route, status, data)
        return data

    def post(self, route: str, body: Any) -> Any:
        status, data = self("POST", route, body)
        assert status == 200, (route, status, data)
        return data


@pytest.fixture
def api(jp_fetch, jp_asyncio_loop) -> Api:
    return Api(jp_fetch, jp_asyncio_loop)


def served_version(store: dict[str, Any], env: str, n: int = 1) -> set[str]:
    """The versions the gateway answers with (``X-Model-Version``) in ``n`` requests."""
    c = Http(store["port"], store["token"])
    try:
        out = set()
        for _ in range(n):
            status, headers, _ = c.call("POST", path("iris", env), split_body([ROW]))
            assert status == 200
            out.add(headers["x-model-version"])
        return out
    finally:
        c.close()


# -- packaging: the extension is what the shipped config enables -----------------------------
def test_the_shipped_config_enables_the_extension_and_the_wheel_installs_both():
    from jupyter_server.extension.utils import validate_extension

    import mlops_jupyter
    from mlops_jupyter.server import MLOpsServer

    cfg = json.loads((ROOT / "jupyter-config/server-config/mlops_jupyter.json").read_text())
    assert cfg == {"ServerApp": {"jpserver_extensions": {"mlops_jupyter": True}}}
    validate_extension("mlops_jupyter")
    assert mlops_jupyter._jupyter_server_extension_points() == [{"module": "mlops_jupyter.server", "app": MLOpsServer}]
    pyproject = (ROOT / "pyproject.toml").read_text()  # the wheel's shared-data (no tomllib on 3.10)
    assert (
        '"jupyter-config/server-config/mlops_jupyter.json" = '
        '"etc/jupyter/jupyter_server_config.d/mlops_jupyter.json"' in pyproject
    )
    (lab,) = mlops_jupyter._jupyter_labextension_paths()
    assert f'"mlops_jupyter/{lab["src"]}" = "share/jupyter/labextensions/{lab["dest"]}"' in pyproject
    pkg = json.loads((ROOT / "labextension/package.json").read_text())
    assert pkg["name"] == lab["dest"] and pkg["jupyterlab"]["outputDir"] == "../mlops_jupyter/labextension"


# -- reads ----------------------------------------------------------------------------------
def test_info_names_the_configured_tenant_and_a_request_may_pick_a_tenant_of_the_store(api, store):
    info = api.get("info")
    assert info["tenant"] == "acme" and info["home"] == str(store["home"])
    assert info["gateway"]["running"] is True and info["mlflow_ui_url"] is None
    assert {**api.get(""), "gateway": None} == {**info, "gateway": None}
    # single-user default: every tenant of the store may be shown, none other
    assert api.get("tenants") == {"default": "acme", "tenants": ["acme", "other"], "restricted": False}
    assert api.get("info", params={"tenant": "other"})["tenant"] == "other"
    other = {e["name"] for e in api.get("experiments", params={"tenant": "other"})["experiments"]}
    assert "secret-exp" in other and "churn" not in other
    assert {m["model_id"] for m in api.get("models", params={"tenant": "other"})["models"]} == {"secret"}
    status, err = api("GET", "models", params={"tenant": "ghost"})
    assert status == 403 and err["error"] == "TenantForbiddenError" and err["allowed"] == ["acme", "other"]
    for params, needle in (({"tenant": "../x"}, "../x"), ({"tenant_id": "other"}, "?tenant=")):
        status, err = api("GET", "experiments", params=params)
        assert status == 400 and needle in err["message"], (params, err)


@pytest.mark.parametrize(
    "mlops_config",
    [{"config": {"tenant": "acme", "tenants": ["acme", "lab"], "storage_path": "{home}"}}],
    indirect=True,
)
def test_a_tenant_outside_the_allow_list_is_403_on_every_route(api, store):
    assert api.get("tenants") == {"default": "acme", "tenants": ["acme", "lab"], "restricted": True}
    assert api.get("experiments", params={"tenant": "lab"})["experiments"] == []  # allowed, empty
    for route in ("info", "experiments", "runs", "models", "deployments", "alerts", "models/secret/drift"):
        status, err = api("GET", route, params={"tenant": "other"})  # in the store, not in the list
        assert status == 403 and err["error"] == "TenantForbiddenError", (route, err)
        assert "other" in err["message"] and err["allowed"] == ["acme", "lab"]
    status, err = api("GET", f"runs/{store['runs']['other']}/detail", params={"tenant": "other"})
    assert status == 403
    got, err = api("POST", "deployments/secret/production", raw=b'{"action": "rollback"}', params={"tenant": "other"})
    assert got == 403 and err["error"] == "TenantForbiddenError"


@pytest.mark.parametrize(
    "mlops_config",
    [{"env": {"JUPYTERHUB_API_TOKEN": "x"}, "config": {"tenant": "acme", "storage_path": "{home}"}}],
    indirect=True,
)
def test_on_jupyterhub_only_the_configured_tenant_unless_an_admin_lists_more(api):
    assert api.get("tenants")["tenants"] == ["acme"]
    status, err = api("GET", "experiments", params={"tenant": "other"})
    assert status == 403 and err["allowed"] == ["acme"]


def test_run_detail_has_the_step_history_of_stepped_metrics(api, store):
    from mlops_jupyter import create_experiment_tracker

    t = create_experiment_tracker(tenant_id="acme", storage_path=store["home"])
    run = t.start_experiment("curves", run_name="epochs")
    for step in range(5):
        t.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    t.log_metrics({"accuracy": 0.9})
    t.end_experiment()
    t.flush()
    detail = api.get(f"runs/{run.run_id}/detail")
    assert list(detail["history"]) == ["loss"]  # accuracy has one step: no chart
    assert [p["step"] for p in detail["history"]["loss"]] == [0, 1, 2, 3, 4]
    assert detail["history"]["loss"][-1]["value"] == pytest.approx(0.2)
    assert detail["cell"]["source"] is None  # not a cell run
    cell = t.start_experiment("curves", run_name="cell-3", tags={"mlops.kind": "cell", "mlops.execution_count": "3"})
    t.log_text("model.fit(X, y)\n", "cell.py")
    t.end_experiment()
    t.flush()
    detail = api.get(f"runs/{cell.run_id}/detail")
    assert detail["cell"]["source"] == "model.fit(X, y)\n" and detail["cell"]["execution_count"] == "3"
    status, err = api("GET", f"runs/{store['runs']['other']}/detail")
    assert status == 404 and "other" not in err["message"].replace(store["runs"]["other"], "")


def test_experiments_list_run_counts_and_the_newest_run(api):
    exps = {e["name"]: e for e in api.get("experiments")["experiments"]}
    assert {"churn", "baseline"} <= set(exps) and "secret-exp" not in exps
    churn = exps["churn"]
    assert churn["run_count"] == 4 and churn["run_count_complete"] is True
    assert churn["last_run"]["run_name"] == "broken" and churn["last_run"]["status"] == "failed"
    assert exps["baseline"]["last_run"]["metrics"] == {"accuracy": 0.33}


def test_runs_of_an_experiment_newest_first_with_params_and_metrics(api, store):
    data = api.get("runs", params={"experiment": "churn", "limit": 3})
    names = [r["run_name"] for r in data["runs"]]
    assert names == ["broken", "depth-8", "depth-5"] and data["limit"] == 3
    r = data["runs"][1]
    assert r["params"] == {"max_depth": 8, "model": "tree"} and r["metrics"]["accuracy"] == 0.93  # typed
    assert r["status"] == "completed" and r["tags"]["team"] == "growth" and r["experiment_name"] == "churn"
    everything = api.get("runs")["runs"]
    assert {"depth-3", "majority-class"} <= {r["run_name"] for r in everything}
    assert "hidden" not in {r["run_name"] for r in everything}
    one = api.get(f"runs/{store['runs']['depth-5']}")
    assert one["run_name"] == "depth-5" and one["metrics"]["f1"] == 0.92

    status, err = api("GET", "runs", params={"experiment": "nope"})
    assert status == 404 and err["error"] == "NotFoundError" and "churn" in err["allowed"]
    for bad in ("0", "abc", "100000"):
        status, err = api("GET", "runs", params={"limit": bad})
        assert status == 400 and "limit" in err["message"], (bad, err)
    status, err = api("GET", "runs", params={"bogus": "1"})
    assert status == 400 and "bogus" in err["message"]


def test_another_tenants_run_is_not_found_and_not_described(api, store):
    status, err = api("GET", f"runs/{store['runs']['other']}")
    assert (
        status == 404
        and err["error"] == "NotFoundError"
        and "other" not in err["message"].replace(store["runs"]["other"], "")
    )
    status, err = api("GET", "runs/not-a-run-id")
    assert status == 404 and err["error"] == "RunNotFoundError"


def test_models_versions_and_lineage(api):
    models = {m["model_id"]: m for m in api.get("models")["models"]}
    assert set(models) == {"iris"}  # not the other tenant's "secret"
    iris = models["iris"]
    assert iris["version_count"] == 3 and iris["latest"] == "1.2.0"
    assert [v["version"] for v in iris["versions"]] == ["1.0.0", "1.1.0", "1.2.0"]
    assert {d["environment"]: d["traffic"] for d in iris["deployments"]}["staging"] == {"1.0.0": 100}
    versions = api.get("models/iris/versions")["versions"]
    assert [v["version"] for v in versions] == ["1.0.0", "1.1.0", "1.2.0"]
    assert versions[0]["metadata"] == {"training_data": "iris.csv"} and len(versions[0]["sha256"]) == 64
    lineage = api.get("models/iris/lineage")
    assert lineage["edges"] == [["1.0.0", "1.1.0"], ["1.1.0", "1.2.0"]]
    assert [v["parent"] for v in lineage["versions"]] == [None, "1.0.0", "1.1.0"]

    for route in ("models/secret/versions", "models/ghost/lineage"):
        status, err = api("GET", route)
        assert status == 404 and err["error"] == "ModelNotFoundError" and err["allowed"] == ["iris"], err
    status, err = api("GET", "models/bad!id/versions")
    assert status == 400 and err["error"] == "InvalidNameError" and "bad!id" in err["message"]


def test_each_deployments_health_is_asked_of_its_own_target(api, store):
    """A deployment made on another target (kserve without a cluster: rendered, not applied)
    is 'not_serving' with its target and how to apply it, while the gateway's are 'serving'."""
    from mlops_jupyter import create_model_deployment

    kserve = create_model_deployment(tenant_id="acme", storage_path=store["home"], target="kserve")
    kserve.deploy_model("iris", "1.0.0", environment="edge")
    try:
        deps = {d["environment"]: d for d in api.get("deployments")["deployments"]}
        edge = deps["edge"]
        assert edge["target"] == "kserve" and edge["health"]["state"] == "not_serving", edge
        assert "rendered on its target (kserve)" in edge["health"]["message"]
        assert "kubectl apply -f" in edge["health"]["message"]
        assert deps["production"]["target"] == "local" and deps["production"]["health"]["state"] == "serving"
    finally:
        kserve.undeploy("iris", "edge")


def test_deployments_with_endpoint_health_traffic_and_rollback_target(api, store):
    data = api.get("deployments")
    assert data["gateway"]["running"] is True
    deps = {(d["model_id"], d["environment"]): d for d in data["deployments"]}
    assert set(deps) >= {("iris", "production"), ("iris", "staging")}
    assert all(m == "iris" for m, _ in deps)  # not the other tenant's
    prod = deps[("iris", "production")]
    assert prod["traffic"] == {"1.0.0": 50, "1.1.0": 50} and prod["rollback_to"] == "1.0.0"
    assert prod["health"]["state"] == "serving" and prod["health"]["live_traffic"] == prod["traffic"]
    assert prod["endpoint"] == f"http://127.0.0.1:{store['port']}/tenants/acme/production/models/iris"
    assert deps[("iris", "staging")]["rollback_to"] is None
    one = api.get("deployments/iris/production")
    assert one["traffic"] == prod["traffic"] and one["health"]["state"] == "serving"
    assert [d["environment"] for d in api.get("deployments", params={"environment": "staging"})["deployments"]] == [
        "staging"
    ]

    status, err = api("GET", "deployments/iris/nowhere")
    assert status == 404 and err["error"] == "NotFoundError" and "production/iris" in err["allowed"]
    status, err = api("GET", "deployments/secret/production")
    assert status == 404


# -- changes --------------------------------------------------------------------------------
def test_traffic_rollback_and_promote_change_what_the_endpoint_serves(api, store):
    route = "deployments/iris/staging"
    out = api.post(route, {"action": "traffic", "traffic": {"1.0.0": 0, "1.1.0": 100}})
    assert out["action"] == "traffic" and out["deployment"]["traffic"] == {"1.1.0": 100}
    assert served_version(store, "staging") == {"1.1.0"}
    out = api.post(route, {"action": "rollback"})
    assert out["deployment"]["traffic"] == {"1.0.0": 100} and out["alias"] is None  # staging: no alias
    assert served_version(store, "staging") == {"1.0.0"}
    out = api.post(route, {"action": "promote", "version": "1.2.0"})
    assert out["deployment"]["traffic"] == {"1.2.0": 100} and out["deployment"]["health"]["state"] == "serving"
    assert served_version(store, "staging") == {"1.2.0"}
    out = api.post(route, {"action": "rollback", "to_version": "1.0.0"})
    assert out["deployment"]["traffic"] == {"1.0.0": 100}


def test_deploy_into_a_new_environment(api, store):
    out = api.post(
        "deployments/iris/canary",
        {"action": "deploy", "version": "latest", "traffic_percentage": 100, "config": {"replicas": 2}},
    )
    dep = out["deployment"]
    assert out["result"]["status"] == "deployed" and dep["traffic"] == {"1.2.0": 100}
    assert dep["config"] == {"replicas": 2} and dep["health"]["state"] == "serving"
    assert served_version(store, "canary") == {"1.2.0"}


BAD_POSTS = [
    # (name, route, raw body, status, error, needle)
    ("malformed JSON", "deployments/iris/staging", b"{not json", 400, "MalformedJSON", "not valid JSON"),
    ("empty body", "deployments/iris/staging", b"", 400, "MalformedJSON", "JSON object body"),
    ("not an object", "deployments/iris/staging", b"[1, 2]", 400, "ValidationError", "JSON object"),
    ("unknown action", "deployments/iris/staging", b'{"action": "explode"}', 400, "ValidationError", "'rollback'"),
    ("missing version", "deployments/iris/staging", b'{"action": "deploy"}', 400, "ValidationError", "'version'"),
    (
        "unknown key",
        "deployments/iris/staging",
        b'{"action": "rollback", "force": true}',
        400,
        "ValidationError",
        "force",
    ),
    (
        "bad traffic sum",
        "deployments/iris/staging",
        b'{"action": "traffic", "traffic": {"1.0.0": 60, "1.1.0": 30}}',
        400,
        "ValidationError",
        "add up to 90",
    ),
    (
        "bad traffic type",
        "deployments/iris/staging",
        b'{"action": "traffic", "traffic": {"1.0.0": "all"}}',
        400,
        "ValidationError",
        "all",
    ),
    (
        "bad percentage",
        "deployments/iris/staging",
        b'{"action": "deploy", "version": "1.1.0", "traffic_percentage": 150}',
        400,
        "ValidationError",
        "150",
    ),
    (
        "bad config",
        "deployments/iris/staging",
        b'{"action": "deploy", "version": "1.1.0", "config": {"gpus": 1}}',
        400,
        "ValidationError",
        "gpus",
    ),
    (
        "unknown version",
        "deployments/iris/staging",
        b'{"action": "promote", "version": "9.9.9"}',
        404,
        "VersionNotFoundError",
        "9.9.9",
    ),
    (
        "version not a string",
        "deployments/iris/staging",
        b'{"action": "promote", "version": 1}',
        400,
        "ValidationError",
        "version",
    ),
    (
        "unknown model",
        "deployments/ghost/production",
        b'{"action": "deploy", "version": "1.0.0"}',
        404,
        "ModelNotFoundError",
        "ghost",
    ),
    ("not deployed", "deployments/iris/nowhere", b'{"action": "rollback"}', 404, "NotFoundError", "nowhere"),
    (
        "other tenant's model",
        "deployments/secret/production",
        b'{"action": "rollback"}',
        404,
        "NotFoundError",
        "secret",
    ),
    ("bad environment", "deployments/iris/prod!", b'{"action": "rollback"}', 400, "InvalidNameError", "prod!"),
    (
        "tenant in body",
        "deployments/iris/staging",
        b'{"action": "rollback", "tenant": "other"}',
        400,
        "ValidationError",
        "never names the tenant",
    ),
    (
        "no earlier version",
        "deployments/iris/solo",
        b'{"action": "rollback"}',
        409,
        "DeploymentError",
        "no earlier version",
    ),
]


def test_bad_input_gets_a_4xx_json_error_naming_the_problem_and_changes_nothing(api, store):
    api.post("deployments/iris/staging", {"action": "deploy", "version": "1.0.0"})  # a known state
    api.post("deployments/iris/solo", {"action": "deploy", "version": "1.0.0"})  # nothing to roll back to
    before = api.get("deployments/iris/staging")["traffic"]
    for name, route, raw, status, error, needle in BAD_POSTS:
        got, err = api("POST", route, raw=raw)
        assert (got, err.get("error")) == (status, error), (name, got, err)
        assert needle in err["message"], (name, err)
        assert err["status"] == status
    assert api.get("deployments/iris/staging")["traffic"] == before
    for route, params, status, needle in (
        ("models/iris/drift", {"threshold": "abc"}, 400, "threshold"),
        ("models/iris/drift", {"threshold": "-1"}, 400, "threshold"),
        ("alerts", {"model": "bad!"}, 400, "bad!"),
        ("nothing/here", {}, 404, "No MLOps API route"),
    ):
        got, err = api("GET", route, params=params)
        assert got == status and needle in err["message"], (route, got, err)
    got, err = api("POST", "experiments", raw=b"{}")
    assert got == 405


def test_no_access_without_jupyters_token(api, store):
    routes = [
        "info",
        "experiments",
        "runs",
        f"runs/{store['runs']['depth-3']}",
        "models",
        "models/iris/versions",
        "models/iris/lineage",
        "models/iris/drift",
        "deployments",
        "deployments/iris/production",
        "alerts",
        "nothing",
    ]
    for headers in ({"Authorization": "token wrong"}, {"Authorization": ""}):
        for route in routes:
            status, err = api("GET", route, headers=headers)
            assert status == 403 and err["status"] == 403, (route, status, err)
        status, err = api("POST", "deployments/iris/production", raw=b'{"action": "rollback"}', headers=headers)
        assert status == 403, err
    assert api.get("deployments/iris/production")["traffic"] == {"1.0.0": 50, "1.1.0": 50}


class ReadOnly(Authorizer):
    """An Authorizer (as JupyterHub's) that lets users read and nothing else."""

    def is_authorized(self, handler, user, action, resource):
        return action == "read"


@pytest.mark.parametrize(
    "mlops_config",
    [{"config": {"tenant": "acme", "storage_path": "{home}", "ServerApp": {"authorizer_class": ReadOnly}}}],
    indirect=True,
)
def test_jupyters_authorizer_decides_who_may_change_deployments(api, mlops_config):
    before = api.get("deployments/iris/production")["traffic"]
    status, err = api("POST", "deployments/iris/production", {"action": "rollback"})
    assert status == 403 and "not authorized to write on resource: mlops" in err["message"]
    assert api.get("deployments/iris/production")["traffic"] == before


def test_promote_and_rollback_in_production_move_the_live_alias(api, store):
    out = api.post("deployments/iris/production", {"action": "promote", "version": "1.1.0"})
    assert out["deployment"]["traffic"] == {"1.1.0": 100}
    assert out["alias"]["alias"] == "production" and out["alias"]["version"] == "1.1.0"
    assert served_version(store, "production", 4) == {"1.1.0"}
    assert out["deployment"]["rollback_to"] == "1.0.0"
    out = api.post("deployments/iris/production", {"action": "rollback"})
    assert out["deployment"]["traffic"] == {"1.0.0": 100}
    assert out["alias"]["version"] == "1.0.0" and out["alias"]["previous"] == "1.1.0"
    assert served_version(store, "production", 4) == {"1.0.0"}
    assert api.get("models")["models"][0]["live"] == {"production": "1.0.0"}


# -- monitoring ------------------------------------------------------------------------------
def test_drift_and_alerts_of_predictions_served_by_the_gateway(api, store):
    from mlops_jupyter import create_model_monitoring

    mon = create_model_monitoring(tenant_id="acme", storage_path=store["home"])
    mon.set_alert("iris", "drift_score > 0.1", action="log", severity="critical")
    X = store["X"]
    shifted = (X.sample(200, random_state=0, replace=True) + [3.0, -1.0, 2.5, 1.5]).round(2)
    c = Http(store["port"], store["token"])
    try:
        for i in range(0, 200, 10):
            status, _, _ = c.call(
                "POST",
                path("iris", "staging"),
                {"dataframe_split": {"columns": list(X.columns), "data": shifted.iloc[i : i + 10].values.tolist()}},
            )
            assert status == 200
    finally:
        c.close()
    deadline = time.monotonic() + 15
    while True:  # the gateway writes its prediction log about once a second
        drift = api.get("models/iris/drift", params={"window": "200", "threshold": "0.2"})
        if drift["n_current"] >= 200 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert drift["status"] == "ok" and drift["n_current"] == 200 and drift["threshold"] == 0.2
    assert drift["drift_detected"] is True and drift["drift_score"] > 0.2
    assert set(drift["features"]) == set(X.columns) and drift["reference_source"] == "version"
    assert drift["performance_metrics"]["prediction_count"] == 200

    mon.evaluate_alerts("iris")  # GETs only read (issue 16): the scheduler or evaluate_alerts() fires it
    alerts = api.get("alerts", params={"model": "iris"})
    (rule,) = alerts["rules"]
    assert rule["condition"] == "drift_score > 0.1" and rule["state"] == "firing"
    firing = [a for a in alerts["alerts"] if a["state"] == "firing"]
    assert firing and firing[0]["condition"] == "drift_score > 0.1" and firing[0]["severity"] == "critical"
    assert firing[0]["fired_at"]
    assert api.get("alerts")["alerts"][0]["alert_id"] == firing[0]["alert_id"]

    nothing = api.get("models/secret/drift")  # the other tenant's model: none of acme's predictions
    assert nothing["status"] == "unknown_model" and nothing["drift_detected"] is False
    assert api.get("alerts", params={"model": "secret"})["alerts"] == []
    status, err = api("GET", "models/iris/drift", params={"window": "fortnight"})
    assert status == 400 and err["error"] == "InvalidWindowError" and "fortnight" in err["message"]


# -- configuration --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "mlops_config",
    [
        {"env": {"MLOPS_TENANT": "other", "MLOPS_HOME": "{home}"}},
        {"env": {"MLOPS_TENANT": "acme"}, "config": {"tenant": "other", "storage_path": "{home}"}},
    ],
    indirect=True,
    ids=["from-environment", "config-over-environment"],
)
def test_the_tenant_comes_from_the_servers_config_or_environment(api, mlops_config):
    assert api.get("info")["tenant"] == "other"
    assert [m["model_id"] for m in api.get("models")["models"]] == ["secret"]
    assert [d["model_id"] for d in api.get("deployments")["deployments"]] == ["secret"]
    assert {e["name"] for e in api.get("experiments")["experiments"]} >= {"secret-exp"}
    assert "churn" not in {e["name"] for e in api.get("experiments")["experiments"]}


DOWN = "http://127.0.0.1:1"  # a privileged port nothing listens on: every connection is refused


@pytest.mark.parametrize(
    "mlops_config",
    [
        {
            "config": {"tenant": "acme", "storage_path": "{home}", "mlflow_uri": DOWN},
            "env": {"MLOPS_SERVER_CONNECT_TIMEOUT": "1", "MLOPS_SERVER_TIMEOUT": "2", "MLOPS_SERVER_RETRIES": "1"},
        }
    ],
    indirect=True,
)
def test_a_tracking_server_that_is_down_is_a_503_within_its_bounds(api, mlops_config):
    """What the sidebar asks while the team's server is down: a JSON 503 naming the server in
    seconds on every read route, not a request held for MLflow's minutes of retries."""
    for route in ("experiments", "runs?experiment=x", "runs/" + "0" * 32, "models", "models/churn/lineage"):
        path, _, query = route.partition("?")
        t0 = time.perf_counter()
        status, data = api("GET", path, params=dict([query.split("=")]) if query else None)
        assert time.perf_counter() - t0 < 30, route
        assert status == 503 and data["error"] == "ServerUnreachableError", (route, status, data)
        assert f"{DOWN} could not be reached" in data["message"] and "MLOPS_SERVER_TIMEOUT" in data["message"]


@pytest.mark.parametrize(
    "mlops_config", [{"unset": ["MLOPS_HOME", "MLOPS_TENANT", "MLFLOW_TRACKING_URI"]}], indirect=True
)
def test_by_default_the_store_is_dot_mlops_in_the_servers_root_dir(api, mlops_config, jp_root_dir):
    info = api.get("info")
    assert info["tenant"] == "default" and info["home"] == str(jp_root_dir / ".mlops")
    assert info["tracking_uri"] == f"sqlite:///{jp_root_dir / '.mlops' / 'mlflow.db'}"
