"""The runs table (tracking/runs_query.py): the fast path over MLflow's tables and the
client path give the same runs as list_experiments, bookkeeping runs included."""

from __future__ import annotations

import pytest

from mlops_jupyter import create_experiment_tracker, create_model_versioning
from mlops_jupyter.storage import mlflow_sql
from mlops_jupyter.tracking.runs_query import frame_from_runs, runs_frame
from mlops_jupyter.tracking.tracker import REGISTRY_EXPERIMENT

COLS = ["run_id", "run_name", "experiment_name", "status", "params.depth", "params.model", "metrics.acc"]


@pytest.fixture
def world(home, fitted):
    t = create_experiment_tracker(tenant_id="acme")
    ids = []
    for i, (depth, model) in enumerate(((3, "rf"), (5, "gb"), ("auto", "rf"))):
        with t.start_experiment("sweep", run_name=f"r{i}") as run:
            t.log_params({"depth": depth, "model": model})
            t.log_metrics({"acc": 0.8 + i / 100})
        ids.append(run.run_id)
    v = create_model_versioning(tenant_id="acme").create_version("clf", model=fitted)
    other = create_experiment_tracker(tenant_id="other")
    with other.start_experiment("sweep"):
        other.log_params({"depth": 1})
    return {"tracker": t, "runs": ids, "registry_run": v["run_id"]}


@pytest.fixture(params=["sqlite", "client"])
def path(request, monkeypatch):
    """Both ways runs_frame reads: MLflow's tables, or list_experiments (other stores)."""
    if request.param == "client":
        monkeypatch.setattr(mlflow_sql, "read_schema_ok", lambda db: False)
    return request.param


def test_bookkeeping_runs_only_when_their_experiment_is_named(world, path):
    t = world["tracker"]
    df = runs_frame(t)
    assert sorted(df["run_id"]) == sorted(world["runs"])
    assert REGISTRY_EXPERIMENT not in set(df["experiment_name"])
    reg = runs_frame(t, experiment_name=REGISTRY_EXPERIMENT)
    assert list(reg["run_id"]) == [world["registry_run"]]
    # run ids narrow what is listed; they do not widen it
    assert list(runs_frame(t, run_ids=[world["registry_run"], world["runs"][0]])["run_id"]) == [world["runs"][0]]


def test_both_paths_agree_with_list_experiments(world, path):
    t = world["tracker"]
    df = runs_frame(t).set_index("run_id", drop=False)
    slow = frame_from_runs(t.list_experiments()).set_index("run_id", drop=False)
    assert df.loc[slow.index, COLS].equals(slow[COLS])
    # params are MLflow's strings in a frame (a column may mix 5 and "auto")
    assert sorted(df["params.depth"]) == ["3", "5", "auto"]
    # and list_experiments gives them typed as logged
    assert {r["run_name"]: r["params"]["depth"] for r in t.list_experiments()} == {"r0": 3, "r1": 5, "r2": "auto"}


def test_the_fast_path_is_taken_on_the_embedded_store(world, monkeypatch):
    calls = []
    real = mlflow_sql.read_runs
    monkeypatch.setattr(mlflow_sql, "read_runs", lambda *a, **k: calls.append(k) or real(*a, **k))
    runs_frame(world["tracker"])
    assert calls and calls[0]["exclude_experiments"] == frozenset({REGISTRY_EXPERIMENT})
