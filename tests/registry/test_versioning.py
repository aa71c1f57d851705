"""Model versioning on the real MLflow Model Registry (embedded sqlite store)."""

from __future__ import annotations

import hashlib
import pickle
import re
from datetime import datetime, timezone
from importlib.metadata import version as dist_version
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pytest

from mlops_jupyter import create_mlops_pipeline, create_model_versioning
from mlops_jupyter.config.names import TENANT_TAG
from mlops_jupyter.errors import (
    IntegrityError,
    InvalidNameError,
    InvalidVersionError,
    ModelNotFoundError,
    NotFoundError,
    ValidationError,
    VersionNotFoundError,
)

TENANT = "tenant_123"
NAME = f"{TENANT}.clf"


def client_for(home: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture
def versioning(home):
    return create_model_versioning(tenant_id=TENANT)


@pytest.fixture
def client(home):
    return client_for(home)


def local_source(client, name: str, registry_version: int) -> Path:
    src = client.get_model_version(name, str(registry_version)).source
    assert src.startswith("file://")
    return Path(unquote(urlparse(src).path))


class Doubler:
    """A model that is not a scikit-learn estimator, only something with predict()."""

    def predict(self, X):
        return np.asarray(X)[:, 0] * 2


def test_semantic_versions(versioning, fitted):
    seq = [
        ({}, "1.0.0"),
        ({}, "1.1.0"),
        ({"bump": "major"}, "2.0.0"),
        ({"bump": "patch"}, "2.0.1"),
        ({"bump": "minor"}, "2.1.0"),
        ({"version": "5.0.0"}, "5.0.0"),
        ({}, "5.1.0"),
    ]
    for kwargs, expected in seq:
        assert versioning.create_version("clf", model=fitted, **kwargs)["version"] == expected
    with pytest.raises(InvalidVersionError) as ei:
        versioning.create_version("clf", model=fitted, version="2.0.1")
    assert "'2.0.1'" in str(ei.value) and "5.2.0" in str(ei.value)  # names the next free one
    for bad in ("1.0", "v1.0.0", "01.0.0", "1.0.0-rc1", "1.0.0.0", 1):
        with pytest.raises(InvalidVersionError) as ei:
            versioning.create_version("clf", model=fitted, version=bad)
        assert repr(bad) in str(ei.value)
    with pytest.raises(ValidationError):
        versioning.create_version("clf", model=fitted, bump="huge")
    # refused calls added nothing
    assert [v["version"] for v in versioning.list_versions("clf")] == [e for _, e in seq]
    assert versioning.get_version("clf")["version"] == "5.1.0"  # latest = highest semver


def test_explicit_version_on_a_new_model_and_bad_version_leaves_nothing(versioning, fitted, client):
    with pytest.raises(InvalidVersionError):
        versioning.create_version("fresh", model=fitted, version="1.0")
    assert versioning.list_models() == []
    assert client.search_registered_models() == []
    assert versioning.create_version("fresh", model=fitted, version="0.3.0")["version"] == "0.3.0"
    assert versioning.create_version("fresh", model=fitted)["version"] == "0.4.0"


def test_returned_dict_and_registry(versioning, fitted, client, iris):
    before = datetime.now(timezone.utc)
    v = versioning.create_version(
        "clf", model=fitted, metadata={"training_data": "tickets_2024.csv", "metrics": {"accuracy": 0.95}}
    )
    assert {"version", "model_id", "created_at", "metadata", "run_id", "registry_version", "sha256"} <= set(v)
    assert v["version"] == "1.0.0" and v["model_id"] == "clf"
    assert v["metadata"] == {"training_data": "tickets_2024.csv", "metrics": {"accuracy": 0.95}}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", v["created_at"])
    created = datetime.fromisoformat(v["created_at"].replace("Z", "+00:00"))
    assert abs((created - before).total_seconds()) < 60
    assert re.fullmatch(r"[0-9a-f]{64}", v["sha256"])
    assert v["registry_version"] == 1
    assert v["data_sources"] == ["tickets_2024.csv"]

    rm = client.get_registered_model(NAME)
    assert rm.tags[TENANT_TAG] == TENANT
    mv = client.get_model_version(NAME, "1")
    assert mv.run_id == v["run_id"]
    assert mv.tags["mlops.semver"] == "1.0.0" and mv.tags["mlops.sha256"] == v["sha256"]
    assert mv.tags[TENANT_TAG] == TENANT
    assert client.get_model_version_by_alias(NAME, "v1_0_0").version in (1, "1")
    # the version's run is a run of the tenant
    run = client.get_run(v["run_id"])
    assert run.data.tags[TENANT_TAG] == TENANT
    assert client.get_experiment(run.info.experiment_id).name == f"{TENANT}/model-registry"
    assert run.info.status == "FINISHED"
    # get_version reads back the same thing
    got = versioning.get_version("clf", "1.0.0")
    for k in ("version", "model_id", "created_at", "metadata", "run_id", "registry_version", "sha256"):
        assert got[k] == v[k]
    assert versioning.get_version("clf", "v1_0_0")["version"] == "1.0.0"
    with pytest.raises(VersionNotFoundError):
        versioning.get_version("clf", "3.0.0")


def test_mlflow_can_load_the_registered_model(versioning, fitted, client, iris, home, monkeypatch):
    import mlflow.pyfunc

    v = versioning.create_version("clf", model=fitted)
    uri = f"sqlite:///{home / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    X, _ = iris
    expected = fitted.predict(X)
    for model_uri in (v["model_uri"], f"models:/{NAME}/1", f"models:/{NAME}@v1_0_0"):
        pyfunc = mlflow.pyfunc.load_model(model_uri)
        assert np.array_equal(np.asarray(pyfunc.predict(X)), expected)
    ours = versioning.load_model("clf", "1.0.0")
    assert np.array_equal(ours.predict(X), expected)


def test_requirements_are_explicit_pins(versioning, fitted):
    from mlops_jupyter.registry.artifacts import pip_requirements

    versioning.create_version("clf", model=fitted)
    reqs = (versioning.model_dir("clf") / "requirements.txt").read_text().split()
    # exactly our explicit list, in our order: MLflow's inference did not run
    assert reqs == pip_requirements()
    assert f"mlflow=={dist_version('mlflow')}" in reqs
    assert f"scikit-learn=={dist_version('scikit-learn')}" in reqs
    assert all("==" in r for r in reqs)


@pytest.mark.parametrize("fmt", ["pickle", "joblib"])
def test_model_path(versioning, fitted, iris, tmp_path, client, fmt):
    import joblib

    path = tmp_path / f"ticket_classifier.{'pkl' if fmt == 'pickle' else 'joblib'}"
    if fmt == "pickle":
        with open(path, "wb") as f:
            pickle.dump(fitted, f)
    else:
        joblib.dump(fitted, path)
    v = versioning.create_version(
        "ticket_classifier", model_path=str(path), metadata={"training_data": "tickets_2024.csv"}
    )
    assert v["version"] == "1.0.0"
    mv = client.get_model_version(f"{TENANT}.ticket_classifier", "1")
    assert mv.tags["mlops.source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    X, _ = iris
    assert np.array_equal(versioning.load_model("ticket_classifier").predict(X), fitted.predict(X))
    # a Path works as well as a str
    assert versioning.create_version("ticket_classifier", model_path=path)["version"] == "1.1.0"


def test_in_memory_non_sklearn_model(versioning, iris, home, monkeypatch):
    import mlflow.pyfunc

    v = versioning.create_version("doubler", model=Doubler())
    X, _ = iris
    loaded = versioning.load_model("doubler")
    assert np.allclose(np.asarray(loaded.predict(X)), X.iloc[:, 0] * 2)
    uri = f"sqlite:///{home / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert np.allclose(np.asarray(mlflow.pyfunc.load_model(v["model_uri"]).predict(X)), X.iloc[:, 0] * 2)


def test_bad_model_arguments(versioning, fitted, tmp_path, client):
    with pytest.raises(ValidationError, match="exactly one of"):
        versioning.create_version("clf")
    p = tmp_path / "m.pkl"
    p.write_bytes(pickle.dumps(fitted))
    with pytest.raises(ValidationError, match="exactly one of"):
        versioning.create_version("clf", model_path=p, model=fitted)
    with pytest.raises(NotFoundError) as ei:
        versioning.create_version("clf", model_path=tmp_path / "missing.pkl")
    assert "missing.pkl" in str(ei.value)
    with pytest.raises(NotFoundError):
        versioning.create_version("clf", model_path=tmp_path)  # a folder is not a model file
    junk = tmp_path / "junk.pkl"
    junk.write_text("not a pickle")
    with pytest.raises(ValidationError, match=r"junk\.pkl"):
        versioning.create_version("clf", model_path=junk)
    with pytest.raises(ValidationError, match="predict"):
        versioning.create_version("clf", model=object())
    with pytest.raises(ValidationError):
        versioning.create_version("clf", model=fitted, reference_data=[1, 2, 3])
    with pytest.raises(ValidationError):
        versioning.create_version("clf", model=fitted, reference_data=pd.DataFrame())
    for bad in ("../x", "a/b", "", " a", "x" * 129):
        with pytest.raises(InvalidNameError):
            versioning.create_version(bad, model=fitted)
    # nothing was registered by any refused call
    assert versioning.list_models() == []
    assert client.search_registered_models() == []


def test_unknown_model(versioning):
    for op in ("list_versions", "get_version", "load_model", "get_lineage", "load_reference_data"):
        with pytest.raises(ModelNotFoundError, match="'nope'"):
            getattr(versioning, op)("nope")
    with pytest.raises(ModelNotFoundError):
        versioning.rollback_model("nope", "1.0.0")


def test_rollback_moves_the_production_alias(versioning, fitted, client, iris):
    for _ in range(3):
        versioning.create_version("clf", model=fitted)
    promoted = versioning.promote("clf", "1.2.0")
    assert promoted["previous"] is None
    assert str(client.get_model_version_by_alias(NAME, "production").version) == "3"
    out = versioning.rollback_model("clf", "1.0.0")
    assert out["version"] == "1.0.0" and out["previous"] == "1.2.0" and out["rolled_back"] is True
    mv = client.get_model_version_by_alias(NAME, "production")
    assert str(mv.version) == "1" and mv.tags["mlops.semver"] == "1.0.0"
    assert versioning.get_version("clf", "production")["version"] == "1.0.0"
    assert versioning.get_version("clf", "1.0.0")["aliases"] == ["production"]
    X, _ = iris
    assert np.array_equal(versioning.load_model("clf", "production").predict(X), fitted.predict(X))

    with pytest.raises(VersionNotFoundError) as ei:
        versioning.rollback_model("clf", "9.9.9")
    msg = str(ei.value)
    assert "'9.9.9'" in msg
    for known in ("1.0.0", "1.1.0", "1.2.0"):
        assert known in msg
    assert str(client.get_model_version_by_alias(NAME, "production").version) == "1"  # unchanged
    # roll forward again
    versioning.rollback_model("clf", "1.1.0")
    assert str(client.get_model_version_by_alias(NAME, "production").version) == "2"


def test_lineage(versioning, fitted):
    a = versioning.create_version("clf", model=fitted, metadata={"training_data": "tickets_2024.csv"})
    b = versioning.create_version("clf", model=fitted, metadata={"data_sources": ["a.csv", "b.csv"]})
    c = versioning.create_version("clf", model=fitted, bump="major")
    versioning.rollback_model("clf", "1.1.0")
    lin = versioning.get_lineage("clf")
    assert lin["model_id"] == "clf"
    assert [v["version"] for v in lin["versions"]] == ["1.0.0", "1.1.0", "2.0.0"]
    assert [tuple(e) for e in lin["edges"]] == [("1.0.0", "1.1.0"), ("1.1.0", "2.0.0")]
    assert [v["parent"] for v in lin["versions"]] == [None, "1.0.0", "1.1.0"]
    assert [v["data_sources"] for v in lin["versions"]] == [["tickets_2024.csv"], ["a.csv", "b.csv"], []]
    assert [v["sha256"] for v in lin["versions"]] == [a["sha256"], b["sha256"], c["sha256"]]
    assert [v["run_id"] for v in lin["versions"]] == [a["run_id"], b["run_id"], c["run_id"]]
    assert lin["live"] == {"production": "1.1.0"}


def test_pipeline_versions_from_the_trackers_run(home, fitted, client):
    p = create_mlops_pipeline("ticket_classifier_pipeline", tenant_id=TENANT)
    with p.tracker.start_experiment("train") as run:
        p.tracker.log_metrics({"accuracy": 0.95})
    v = p.versioning.create_version("clf", model=fitted, metadata={"accuracy": 0.95})
    assert v["run_id"] == run.run_id
    paths = {a.path for a in client.list_artifacts(run.run_id, "versions/clf/1.0.0")}
    assert "versions/clf/1.0.0/model" in paths
    # an explicit run of the tenant can be named, too
    v2 = p.versioning.create_version("clf", model=fitted, run_id=run.run_id)
    assert v2["run_id"] == run.run_id and v2["version"] == "1.1.0"


def test_load_model_verifies_sha256(versioning, fitted, client, iris):
    v = versioning.create_version("clf", model=fitted)
    versioning.create_version("clf", model=fitted)
    X, _ = iris
    assert np.array_equal(versioning.load_model("clf", "1.0.0").predict(X), fitted.predict(X))
    pkl = local_source(client, NAME, v["registry_version"]) / "model.pkl"
    assert pkl.is_file()
    data = bytearray(pkl.read_bytes())
    data[len(data) // 2] ^= 0x01  # flip one bit in the middle of the stored model
    pkl.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as ei:
        versioning.load_model("clf", "1.0.0")
    assert v["sha256"] in str(ei.value)
    assert "1.0.0" in str(ei.value)
    # the other version is untouched and still loads
    assert np.array_equal(versioning.load_model("clf", "1.1.0").predict(X), fitted.predict(X))


def test_an_added_file_also_fails_the_integrity_check(versioning, fitted, client):
    v = versioning.create_version("clf", model=fitted)
    (local_source(client, NAME, v["registry_version"]) / "extra.py").write_text("print('hi')\n")
    with pytest.raises(IntegrityError):
        versioning.load_model("clf")


def test_reference_data_round_trip(versioning, fitted, iris):
    X, _ = iris
    ref = X.assign(category=np.where(X.iloc[:, 0] > 5.8, "big", "small"))
    versioning.create_version("clf", model=fitted, reference_data=ref)
    versioning.create_version("clf", model=fitted)
    assert versioning.get_version("clf", "1.0.0")["has_reference"] is True
    assert versioning.get_version("clf", "1.1.0")["has_reference"] is False
    back = versioning.load_reference_data("clf", "1.0.0")
    pd.testing.assert_frame_equal(back, ref)
    assert versioning.load_reference_data("clf", "1.1.0") is None
    assert versioning.load_reference_data("clf") is None  # latest has none


def test_rollback_subscribers_get_the_model_and_version(versioning, fitted):
    for _ in range(2):
        versioning.create_version("clf", model=fitted)
    # on its own (create_model_versioning), nothing follows a rollback: today's result
    alone = versioning.rollback_model("clf", "1.0.0")
    assert "deployments" not in alone and alone["rolled_back"] is True
    calls = []
    versioning.on_rollback(lambda model_id, version: calls.append((model_id, version)) or [{"env": "a"}])
    versioning.on_rollback(lambda model_id, version: [{"env": "b"}, {"env": "c"}])
    out = versioning.rollback_model("clf", "1.1.0")
    assert calls == [("clf", "1.1.0")]
    assert out["deployments"] == [{"env": "a"}, {"env": "b"}, {"env": "c"}]
    with pytest.raises(VersionNotFoundError):  # a refused rollback calls nobody
        versioning.rollback_model("clf", "7.0.0")
    assert len(calls) == 1
    with pytest.raises(ValidationError):
        versioning.on_rollback("not callable")


def test_the_pipeline_subscribes_its_deployments(home, fitted):
    p = create_mlops_pipeline("ticket_classifier_pipeline", tenant_id=TENANT)
    p.versioning.create_version("clf", model=fitted)
    p.versioning.create_version("clf", model=fitted)
    out = p.versioning.rollback_model("clf", "1.0.0")
    assert out["deployments"] == []  # subscribed, and nothing is deployed (no gateway started)


def test_registry_does_not_know_deployment():
    import mlops_jupyter.registry as registry

    for f in Path(registry.__file__).parent.glob("*.py"):
        assert "mlops_jupyter.deployment" not in f.read_text() and ".deployment" not in f.read_text(), f
