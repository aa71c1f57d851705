"""The ``kserve`` target without a cluster, honestly: every manifest it renders validates
against KServe's InferenceService v1beta1 schema (the CRD's openAPIV3Schema, in
tests/fixtures/kserve/), the canary rules refuse what KServe cannot do, and the very model
version our registry stores is served by MLServer's MLflow runtime (the runtime KServe uses
for ``modelFormat: mlflow``) in the side environment ``.venv-mlserver`` (``make mlserver-env``),
answering a V2 inference request with the local gateway's predictions. Only the Kubernetes
API is faked (one test), as no cluster is reachable here."""

from __future__ import annotations

import gzip
import http.client
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from conftest import close_stores

from mlops_jupyter.deployment.targets.kserve import KServeTarget, canary, isvc_name
from mlops_jupyter.errors import ValidationError

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "tests" / "fixtures" / "kserve" / "inferenceservice-v1beta1.schema.json.gz"
MLSERVER = ROOT / ".venv-mlserver" / "bin" / "mlserver"
TENANT = "tenant_123"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    doc = json.loads(gzip.decompress(SCHEMA.read_bytes()))
    assert doc["group"] == "serving.kserve.io" and doc["version"] == "v1beta1" and doc["kind"] == "InferenceService"
    return doc["openAPIV3Schema"]


def undeclared(obj: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Keys the schema does not declare: Kubernetes would prune them silently."""
    if isinstance(obj, dict) and "properties" in schema:
        out = []
        for k, v in obj.items():
            sub = schema["properties"].get(k)
            out += [f"{where}.{k}"] if sub is None else undeclared(v, sub, f"{where}.{k}")
        return out
    return []


def check_manifest(path: str | Path, schema: dict[str, Any]) -> dict[str, Any]:
    manifest = yaml.safe_load(Path(path).read_text())
    jsonschema.validate(manifest, schema, cls=jsonschema.Draft7Validator)
    assert undeclared(manifest["spec"], schema["properties"]["spec"]) == []
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1" and manifest["kind"] == "InferenceService"
    name = manifest["metadata"]["name"]
    assert len(name) <= 45 and name[0].isalpha() and set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    return manifest


@pytest.fixture(scope="module")
def kdep(tmp_path_factory: pytest.TempPathFactory, template_db: Path):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    from mlops_jupyter import create_model_deployment, create_model_versioning

    home = tmp_path_factory.mktemp("kserve") / "store"
    home.mkdir()
    shutil.copy(template_db, home / "mlflow.db")
    X, y = load_iris(return_X_y=True, as_frame=True)
    v = create_model_versioning(tenant_id=TENANT, storage_path=home)
    v.create_version("ticket_classifier", model=LogisticRegression(max_iter=500).fit(X, y), reference_data=X)
    for depth in (2, 3):
        v.create_version("ticket_classifier", model=DecisionTreeClassifier(max_depth=depth, random_state=0).fit(X, y))
    try:
        yield {
            "home": home,
            "X": X,
            "v": v,
            "d": create_model_deployment(tenant_id=TENANT, storage_path=home, target="kserve"),
        }
    finally:
        close_stores(home)


def test_deploy_renders_a_valid_inference_service_and_says_how_to_apply_it(kdep, schema):
    d, home = kdep["d"], kdep["home"]
    config = {"replicas": 3, "resources": {"cpu": "2", "memory": "4Gi"}}
    r = d.deploy_model("ticket_classifier", "1.0.0", environment="production", config=config)
    assert r["status"] == "rendered" and r["target"] == "kserve" and r["reason"] is None
    assert "passed to Kubernetes" in r["config_effect"]
    ts = r["target_status"]
    assert ts["manifest"] == str(home / "kserve" / TENANT / "production" / "ticket_classifier.yaml")
    assert ts["apply"] == f"kubectl apply -f {ts['manifest']}"
    assert "local path" in ts["warning"] and "s3://" in ts["warning"]
    m = check_manifest(ts["manifest"], schema)
    assert m["metadata"]["namespace"] == "mlops-tenant-123" and m["metadata"]["name"] == "ticket-classifier-production"
    labels = m["metadata"]["labels"]
    assert labels["mlops-jupyter/tenant"] == TENANT and labels["mlops-jupyter/version"] == "1.0.0"
    pred = m["spec"]["predictor"]
    assert pred["minReplicas"] == pred["maxReplicas"] == 3 and "canaryTrafficPercent" not in pred
    model = pred["model"]
    assert model["modelFormat"] == {"name": "mlflow"} and model["protocolVersion"] == "v2"
    assert model["resources"] == {"requests": config["resources"], "limits": config["resources"]}
    source = kdep["v"].client.get_model_version("tenant_123.ticket_classifier", "1").source
    assert model["storageUri"] == source  # the version's artifact location in MLflow
    assert r["endpoint"] == "http://ticket-classifier-production.mlops-tenant-123.svc.cluster.local"
    got = d.get_deployment("ticket_classifier", "production")
    assert (
        got["target"] == "kserve" and got["status"] == "rendered" and got["target_status"]["manifest"] == ts["manifest"]
    )


def test_ab_split_is_a_canary_and_rollback_sets_it_to_zero(kdep, schema):
    d = kdep["d"]
    r = d.deploy_model("ticket_classifier", "1.1.0", environment="production", traffic_percentage=20)
    assert r["status"] == "rendered" and r["traffic"] == {"1.0.0": 80, "1.1.0": 20}
    m = check_manifest(r["target_status"]["manifest"], schema)
    pred = m["spec"]["predictor"]
    assert pred["canaryTrafficPercent"] == 20 and pred["model"]["storageUri"].endswith("/model")
    assert pred["model"]["storageUri"] != kdep["v"].client.get_model_version("tenant_123.ticket_classifier", "1").source
    # KServe splits between the latest and the last rolled-out revision only
    with pytest.raises(ValidationError, match=r"latest revision .* last rolled-out revision") as err:
        d.deploy_model("ticket_classifier", "1.2.0", environment="production", traffic_percentage=10)
    assert err.value.value == {"1.0.0": 72, "1.1.0": 18, "1.2.0": 10}
    assert d.get_deployment("ticket_classifier", "production")["traffic"] == {"1.0.0": 80, "1.1.0": 20}  # unchanged
    r = d.set_traffic("ticket_classifier", "production", {"1.0.0": 50, "1.1.0": 50})
    assert check_manifest(r["target_status"]["manifest"], schema)["spec"]["predictor"]["canaryTrafficPercent"] == 50
    back = d.rollback("ticket_classifier", "production")
    assert back["traffic"] == {"1.0.0": 100}
    pred = check_manifest(back["target_status"]["manifest"], schema)["spec"]["predictor"]
    assert pred["canaryTrafficPercent"] == 0  # every request to the rolled-out revision (1.0.0)
    # a version that is neither revision: a new storageUri at 100 %
    r = d.rollback("ticket_classifier", "production", to_version="1.2.0")
    pred = check_manifest(r["target_status"]["manifest"], schema)["spec"]["predictor"]
    assert "canaryTrafficPercent" not in pred
    assert pred["model"]["storageUri"] == kdep["v"].client.get_model_version("tenant_123.ticket_classifier", "3").source


def test_canary_rules():
    assert canary({"1.0.0": 100}, None) == ("1.0.0", None, {"latest": "1.0.0", "rolled_out": "1.0.0"})
    state = {"latest": "1.1.0", "rolled_out": "1.0.0"}
    assert canary({"1.0.0": 30, "1.1.0": 70}, state) == ("1.1.0", 70, state)
    assert canary({"1.1.0": 100}, state) == ("1.1.0", None, {"latest": "1.1.0", "rolled_out": "1.1.0"})
    with pytest.raises(ValidationError, match="at most two versions"):
        canary({"1.1.0": 50, "1.2.0": 50}, state)
    assert isvc_name("a_very_long_model_name_for_a_kserve_test", "production-eu-west").startswith("a-very-long")
    assert len(isvc_name("a_very_long_model_name_for_a_kserve_test", "production-eu-west")) <= 45


def test_a_cluster_refuses_a_local_artifact_naming_the_setting(kdep, tmp_path):
    from mlops_jupyter import create_model_deployment

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    d = create_model_deployment(
        tenant_id=TENANT, storage_path=kdep["home"], target="kserve", target_options={"kubeconfig": str(kubeconfig)}
    )
    with pytest.raises(ValidationError, match=r"local path the cluster cannot read.*artifact root") as err:
        d.deploy_model("ticket_classifier", "1.0.0", environment="staging")
    assert err.value.value.startswith("file://") and "s3://" in str(err.value.allowed)
    with pytest.raises(ValidationError, match="Unknown target_options"):
        create_model_deployment(tenant_id=TENANT, storage_path=kdep["home"], target="kserve", target_options={"x": 1})
    with pytest.raises(ValidationError, match="Unknown deployment target"):
        create_model_deployment(tenant_id=TENANT, storage_path=kdep["home"], target="k8s")


class FakeCustomObjects:
    """The CustomObjectsApi calls the target makes, answered like a cluster with KServe."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[str] = []

    def get_namespaced_custom_object(self, group, version, ns, plural, name):
        from kubernetes.client.exceptions import ApiException

        self.calls.append("get")
        if (ns, name) not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        return self.objects[(ns, name)]

    def _put(self, ns: str, body: dict[str, Any], resource_version: int) -> dict[str, Any]:
        obj = {**body, "metadata": {**body["metadata"], "resourceVersion": str(resource_version)}}
        obj["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
        self.objects[(ns, body["metadata"]["name"])] = obj
        return obj

    def create_namespaced_custom_object(self, group, version, ns, plural, body):
        self.calls.append("create")
        return self._put(ns, body, 1)

    def replace_namespaced_custom_object(self, group, version, ns, plural, name, body):
        self.calls.append("replace")
        live = self.objects[(ns, name)]["metadata"]["resourceVersion"]
        assert body["metadata"]["resourceVersion"] == live  # replace keeps the live resourceVersion
        return self._put(ns, body, int(live) + 1)

    def delete_namespaced_custom_object(self, group, version, ns, plural, name):
        self.calls.append("delete")
        del self.objects[(ns, name)]


def test_with_a_cluster_the_manifest_is_applied_and_conditions_reported(kdep, schema):
    target = KServeTarget(kdep["home"], {"kubeconfig": "unused", "namespace": "models"})
    target._api = fake = FakeCustomObjects()
    spec = {"path": "/nowhere", "sha256": "ab", "artifact_uri": "s3://bucket/mlflow/1/model"}
    op = {"op": "deploy", "tenant": TENANT, "environment": "eu", "model_id": "churn", "version": "1.0.0"}
    out = target.apply({**op, "traffic_percentage": 100, "specs": {"1.0.0": spec}, "config": {}})
    assert out["ok"] and out["status"] == "deployed"
    assert out["record"]["extra"]["conditions"] == [{"type": "Ready", "status": "True"}]
    out = target.apply(
        {**op, "version": "1.1.0", "traffic_percentage": 10, "specs": {"1.1.0": {**spec, "sha256": "cd"}}}
    )
    assert fake.calls == ["get", "create", "get", "replace"]
    live = fake.objects[("models", "churn-eu")]
    jsonschema.validate({k: v for k, v in live.items() if k != "status"}, schema)
    assert live["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert target.apply({**op, "op": "undeploy", "version": None}) == {"ok": True, "record": None}
    assert fake.objects == {} and fake.calls[-1] == "delete"


# -- MLServer's MLflow runtime serves the version our registry stored --------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None
    finally:
        conn.close()


@pytest.fixture(scope="module")
def mlserver(kdep, tmp_path_factory: pytest.TempPathFactory):
    if not MLSERVER.exists():
        pytest.fail(f"{MLSERVER} is missing: run `make mlserver-env` (MLServer's MLflow runtime, side environment).")
    r = kdep["d"].get_deployment("ticket_classifier", "production")
    ts = kdep["d"].deploy_model("ticket_classifier", "1.0.0", environment="mlserver")["target_status"]
    uri = urlsplit(ts["storage_uri"])
    assert uri.scheme == "file" and r
    folder = tmp_path_factory.mktemp("mlserver")
    port = _free_port()
    settings = {"host": "127.0.0.1", "http_port": port, "grpc_port": _free_port(), "parallel_workers": 0}
    settings["metrics_port"] = _free_port()
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "iris").mkdir()
    model_settings = {
        "name": "iris",
        "implementation": "mlserver_mlflow.MLflowRuntime",
        "parameters": {"uri": uri.path},
    }
    (folder / "iris" / "model-settings.json").write_text(json.dumps(model_settings))
    log = open(folder / "mlserver.log", "wb")
    proc = subprocess.Popen(
        [str(MLSERVER), "start", str(folder)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (folder / "mlserver.log").read_text()[-3000:]
            try:
                if _request(port, "GET", "/v2/models/iris/ready")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (folder / "mlserver.log").read_text()[-3000:]
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_mlserver_serves_our_stored_version_with_the_local_gateways_predictions(kdep, mlserver, tmp_path):
    from mlops_jupyter import create_model_deployment

    X = kdep["X"].sample(20, random_state=1)
    body = {
        "parameters": {"content_type": "pd"},
        "inputs": [
            {"name": c, "shape": [len(X)], "datatype": "FP64", "data": [float(x) for x in X[c]]} for c in X.columns
        ],
    }
    status, out = _request(mlserver, "POST", "/v2/models/iris/infer", body)
    assert status == 200, out
    v2 = [int(p) for p in out["outputs"][0]["data"]]
    local = create_model_deployment(tenant_id=TENANT, storage_path=kdep["home"], target="local")
    try:
        assert local.deploy_model("ticket_classifier", "1.0.0", environment="local")["status"] == "deployed"
        expected = [int(p) for p in local.client("ticket_classifier", "local").predict(X)]
    finally:
        local.stop_gateway()
    assert v2 == expected
    # MLflow's scoring JSON, as the deployment client sends it, works there too
    status, out = _request(
        mlserver, "POST", "/invocations", {"dataframe_split": json.loads(X.to_json(orient="split", index=False))}
    )
    assert status == 200 and [int(p) for p in out["predictions"]] == expected
