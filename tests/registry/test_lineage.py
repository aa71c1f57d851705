"""Lineage that names the right run and where each version serves, on the embedded store.

Deployment records are written straight into the home's state DB, as every target keeps
them (``extra["target"]`` names the target), so these tests need no serving process; the
team suite (tests/team/) deploys for real.
"""

from __future__ import annotations

from mlops_jupyter import create_experiment_tracker, create_model_versioning
from mlops_jupyter.storage.state import open_embedded_store


def put(home, environment: str, traffic: dict[str, int], target: str | None = None, tenant: str = "acme") -> None:
    store = open_embedded_store(home)
    try:
        store.put_deployment(
            {
                "tenant": tenant,
                "environment": environment,
                "model_id": "clf",
                "deployment_id": f"dep_{environment}",
                "status": "deployed",
                "traffic": traffic,
                "versions": {v: {} for v in traffic},
                "extra": {"target": target} if target else {},
            }
        )
    finally:
        store.close()


def test_a_version_names_the_run_it_was_given_not_the_last_one(home, fitted):
    tracker = create_experiment_tracker(tenant_id="acme")
    with tracker.start_experiment("forest") as fit_run:
        tracker.log_metrics({"accuracy": 0.9})
    with tracker.start_experiment("logreg") as later_run:
        tracker.log_metrics({"accuracy": 0.8})
    v = create_model_versioning(tenant_id="acme")
    made = v.create_version("clf", model=fitted, run_id=fit_run.run_id)
    assert made["run_id"] == fit_run.run_id != later_run.run_id
    assert v.get_lineage("clf")["versions"][0]["run_id"] == fit_run.run_id


def test_lineage_shows_every_target_and_its_traffic_and_production_follows(home, fitted):
    v = create_model_versioning(tenant_id="acme")
    for _ in range(3):
        v.create_version("clf", model=fitted)
    put(home, "production", {"1.1.0": 90, "1.2.0": 10}, target="ray")
    put(home, "staging", {"1.0.0": 100})
    put(home, "production", {"1.0.0": 100}, tenant="other")  # another tenant's model of that name

    lin = v.get_lineage("clf")
    where = {x["version"]: x["deployed"] for x in lin["versions"]}
    assert [(d["environment"], d["target"], d["traffic"]) for d in where["1.1.0"]] == [("production", "ray", 90)]
    assert [(d["environment"], d["target"], d["traffic"]) for d in where["1.2.0"]] == [("production", "ray", 10)]
    assert [(d["environment"], d["target"], d["traffic"]) for d in where["1.0.0"]] == [("staging", "local", 100)]
    assert {d["environment"]: d["traffic"] for d in lin["deployments"]} == {
        "production": {"1.1.0": 90, "1.2.0": 10},
        "staging": {"1.0.0": 100},
    }

    # the deployment part reports what now serves an environment; production moves the alias
    assert v.follow_deployment("clf", "staging", "1.0.0") is None
    assert v.get_lineage("clf")["live"] == {}
    moved = v.follow_deployment("clf", "production", "1.1.0")
    assert moved["version"] == "1.1.0" and v.get_lineage("clf")["live"] == {"production": "1.1.0"}
    assert v.follow_deployment("clf", "production", "1.1.0") is None  # already there: nothing moves
    assert v.follow_deployment("clf", "production", "1.2.0")["previous"] == "1.1.0"
    assert v.get_version("clf", "production")["version"] == "1.2.0"
