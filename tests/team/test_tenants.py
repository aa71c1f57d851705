"""Tenants enforced by the server: ``mlflow server --app-name basic-auth`` (default permission
NO_PERMISSIONS), a tenant's experiments and registered models granted to its users only.

The proof uses clients that are not ours: tenant B's credentials in a plain ``MlflowClient``
and in plain HTTP requests cannot list, read, log into or change tenant A's experiments,
runs or registered models (403), while A's users can.
"""

from __future__ import annotations

import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlops_jupyter import create_experiment_tracker, create_mlops_pipeline
from mlops_jupyter.errors import InvalidSettingError, TenantAccessError
from mlops_jupyter.tracking import server_auth
from team.servers import ADMIN

pytestmark = pytest.mark.server

TEAM_A = {"alice": "alice-pass-0123", "ann": "ann-pass-0123"}
TEAM_B = {"bob": "bob-pass-0123"}


@pytest.fixture(scope="module")
def tenants(auth_url):
    server_auth.provision_tenant(auth_url, "team_a", TEAM_A, admin=ADMIN)
    server_auth.provision_tenant(auth_url, "team_b", TEAM_B, admin=ADMIN)
    return auth_url


def be(monkeypatch, user: str, team: dict[str, str]) -> tuple[str, str]:
    """Act as ``user`` from now on: MLflow's own credential variables, and the tenant's members."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", team[user])
    monkeypatch.setenv("MLOPS_TENANT_USERS", ",".join(team))
    return user, team[user]


def denied(call, *args, **kwargs) -> int:
    with pytest.raises(MlflowException) as exc:
        call(*args, **kwargs)
    return exc.value.get_http_status_code()


def test_tenant_b_cannot_reach_tenant_a_with_plain_clients(tenants, client_home, monkeypatch, fitted):
    url = tenants
    # tenant A's user works through our library, as in a notebook
    be(monkeypatch, "alice", TEAM_A)
    a = create_mlops_pipeline("secrets", tenant_id="team_a", mlflow_uri=url, storage_path=client_home / "alice")
    assert a.tracker.isolation().mode == server_auth.SERVER and a.tracker.isolation().user == "alice"
    with a.tracker.start_experiment("secrets") as run:
        a.tracker.log_params({"C": 0.5})
        a.tracker.log_metrics({"accuracy": 0.91})
    a.versioning.create_version("clf", model=fitted, run_id=run.run_id)
    exp_id, model = run.experiment_id, "team_a.clf"

    # tenant B with a plain MlflowClient: nothing of A's is listed, read, logged into or changed
    bob = be(monkeypatch, "bob", TEAM_B)
    b = MlflowClient(tracking_uri=url, registry_uri=url)
    assert exp_id not in {e.experiment_id for e in b.search_experiments()}
    assert model not in {m.name for m in b.search_registered_models()}
    assert denied(b.get_experiment, exp_id) == 403
    assert denied(b.get_experiment_by_name, "team_a/secrets") == 403
    assert denied(b.get_run, run.run_id) == 403
    assert b.search_runs([exp_id]) == []  # the server filters A's runs out of B's search
    assert denied(b.get_metric_history, run.run_id, "accuracy") == 403
    assert denied(b.log_metric, run.run_id, "accuracy", 0.0) == 403
    assert denied(b.set_tag, run.run_id, "owner", "bob") == 403
    assert denied(b.create_run, exp_id) == 403
    assert denied(b.delete_experiment, exp_id) == 403
    assert denied(b.get_registered_model, model) == 403
    assert denied(b.get_model_version, model, "1") == 403
    assert denied(b.get_model_version_by_alias, model, "v1_0_0") == 403
    assert denied(b.set_registered_model_alias, model, "production", "1") == 403
    assert denied(b.delete_registered_model, model) == 403
    # ... and with plain HTTP requests
    api = f"{url}/api/2.0/mlflow"
    assert requests.get(f"{api}/experiments/get", params={"experiment_id": exp_id}, auth=bob).status_code == 403
    assert requests.get(f"{api}/runs/get", params={"run_id": run.run_id}, auth=bob).status_code == 403
    body = {"run_id": run.run_id, "key": "accuracy", "value": 0.0, "timestamp": 0, "step": 0}
    assert requests.post(f"{api}/runs/log-metric", json=body, auth=bob).status_code == 403
    assert requests.get(f"{api}/registered-models/get", params={"name": model}, auth=bob).status_code == 403
    assert requests.delete(f"{api}/registered-models/delete", json={"name": model}, auth=bob).status_code == 403
    listed = requests.post(f"{api}/experiments/search", json={"max_results": 1000}, auth=bob).json()
    assert exp_id not in {e["experiment_id"] for e in listed.get("experiments", [])}
    assert requests.get(f"{api}/runs/get", params={"run_id": run.run_id}).status_code == 401  # no credentials
    # ... and through our library naming tenant A: the server refuses it just the same
    b_as_a = create_mlops_pipeline("secrets", tenant_id="team_a", mlflow_uri=url, storage_path=client_home / "bob")
    plain_tracker = create_experiment_tracker(tenant_id="team_a", mlflow_uri=url, storage_path=client_home / "bob")
    assert plain_tracker.list_experiments() == [] and b_as_a.versioning.list_models() == []  # none listed
    with pytest.raises(TenantAccessError, match="refused experiment 'team_a/secrets' to user 'bob'"):
        b_as_a.tracker.list_experiments()  # the pipeline's experiment, by name
    with pytest.raises(TenantAccessError):
        b_as_a.tracker.start_experiment("secrets")
    with pytest.raises(TenantAccessError, match=r"registered model 'team_a\.clf'"):
        b_as_a.versioning.create_version("clf", model=fitted)

    # A's other user reads and writes A's data with a plain client (granted when alice created it)
    ann = be(monkeypatch, "ann", TEAM_A)
    c = MlflowClient(tracking_uri=url, registry_uri=url)
    assert c.get_run(run.run_id).data.metrics == {"accuracy": 0.91}
    c.log_metric(run.run_id, "checked_by_ann", 1.0)
    assert str(c.get_model_version_by_alias(model, "v1_0_0").version) == "1"
    assert c.get_model_version(model, "1").run_id == run.run_id  # the version names the run it came from
    assert requests.get(f"{api}/runs/get", params={"run_id": run.run_id}, auth=ann).status_code == 200
    # nothing B tried changed anything
    got = c.get_run(run.run_id)
    assert got.data.metrics == {"accuracy": 0.91, "checked_by_ann": 1.0} and "owner" not in got.data.tags
    assert "production" not in c.get_registered_model(model).aliases


def test_a_user_added_later_gets_the_tenants_existing_work(tenants, client_home, monkeypatch, fitted):
    url = tenants
    be(monkeypatch, "alice", TEAM_A)
    a = create_mlops_pipeline("later", tenant_id="team_a", mlflow_uri=url, storage_path=client_home / "alice")
    with a.tracker.start_experiment("later") as run:
        a.tracker.log_metrics({"loss": 0.2})
    a.versioning.create_version("later_model", model=fitted)

    out = server_auth.provision_tenant(url, "team_a", {"amy": "amy-pass-0123"}, admin=ADMIN)
    assert out["created"] == ["amy"] and out["experiments"] >= 2 and out["registered_models"] >= 2
    be(monkeypatch, "amy", {**TEAM_A, "amy": "amy-pass-0123"})
    amy = MlflowClient(tracking_uri=url, registry_uri=url)
    assert amy.get_run(run.run_id).data.metrics == {"loss": 0.2}
    assert amy.get_registered_model("team_a.later_model").name == "team_a.later_model"
    be(monkeypatch, "bob", TEAM_B)
    assert denied(MlflowClient(tracking_uri=url).get_run, run.run_id) == 403


def test_provisioning_needs_the_admin(tenants, monkeypatch):
    monkeypatch.delenv(server_auth.ADMIN_USERNAME_ENV, raising=False)
    with pytest.raises(InvalidSettingError, match="MLOPS_AUTH_ADMIN_USERNAME"):
        server_auth.provision_tenant(tenants, "team_a", {"x": "y-pass-0123"})
    with pytest.raises(InvalidSettingError, match="admin"):
        server_auth.provision_tenant(tenants, "team_a", {"x": "y-pass-0123"}, admin=("bob", TEAM_B["bob"]))


def test_which_isolation_is_in_force(tenants, server_url, client_home, monkeypatch):
    be(monkeypatch, "bob", TEAM_B)
    assert server_auth.isolation_mode(tenants).describe() == "enforced by the MLflow server (basic-auth, as user 'bob')"
    assert server_auth.isolation_mode(server_url).mode == server_auth.NAMESPACE
    assert server_auth.isolation_mode(f"sqlite:///{client_home}/mlflow.db").mode == server_auth.NAMESPACE
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
    with pytest.raises(InvalidSettingError, match="refused the credentials"):
        server_auth.isolation_mode(tenants)


def test_a_tenants_points_reach_the_bulk_store_through_the_auth_app(team, tenants, client_home, monkeypatch):
    """The auth server runs our bulk metric store (``mlops+postgresql+psycopg``): tenant A's
    3 000 points are all stored and read back by A's plain client; B's batch into A's run is
    refused by the auth app before it reaches the store."""
    from mlflow.entities import Metric

    assert team.auth_server.backend_uri.startswith("mlops+postgresql+psycopg://")
    url = tenants
    be(monkeypatch, "alice", TEAM_A)
    tracker = create_experiment_tracker(tenant_id="team_a", mlflow_uri=url, storage_path=client_home / "alice")
    with tracker.start_experiment("bulk") as run:
        for i in range(300):
            tracker.log_metrics({f"m{j}": i + j / 10 for j in range(10)}, step=i)
    be(monkeypatch, "bob", TEAM_B)
    assert denied(MlflowClient(tracking_uri=url).log_batch, run.run_id, [Metric("m0", 1e6, 0, 10**6)]) == 403
    be(monkeypatch, "ann", TEAM_A)
    ann = MlflowClient(tracking_uri=url)
    for j in (0, 9):
        history = ann.get_metric_history(run.run_id, f"m{j}")
        assert sorted(m.step for m in history) == list(range(300))
    assert ann.get_run(run.run_id).data.metrics["m0"] == 299.0  # B's point (step 10**6) never landed
