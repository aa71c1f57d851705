"""The experiment tracker on a real embedded MLflow store, checked through a plain MlflowClient."""

from __future__ import annotations

import json
import math
import sqlite3
import time

import numpy as np
import pytest

from mlops_jupyter import create_experiment_tracker, create_mlops_pipeline
from mlops_jupyter.config.names import TENANT_TAG
from mlops_jupyter.errors import (
    InvalidMetricError,
    InvalidNameError,
    InvalidParamError,
    NotFoundError,
    RunStateError,
    ValidationError,
)


def client_for(home):
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture
def tracker(home):
    return create_experiment_tracker(tenant_id="tenant_123")


@pytest.fixture
def client(home):
    return client_for(home)


def test_seed_flow_returns_the_seed_dict(tracker, client):
    tracker.start_experiment(experiment_name="ticket_classifier_v1", tags={"model_type": "classification"})
    tracker.log_params({"n_estimators": 100, "max_depth": 10, "learning_rate": 0.1})
    tracker.log_metrics({"accuracy": 0.95, "f1_score": 0.93, "precision": 0.94})
    out = tracker.end_experiment()

    assert {"experiment_id", "run_id", "status", "metrics", "params"} <= set(out)
    assert out["status"] == "completed"
    assert out["metrics"] == {"accuracy": 0.95, "f1_score": 0.93, "precision": 0.94}
    # the summary keeps the values as passed (the seed's ints); MLflow stores strings
    assert out["params"] == {"n_estimators": 100, "max_depth": 10, "learning_rate": 0.1}
    stored = {k: str(v) for k, v in out["params"].items()}

    exp = client.get_experiment(out["experiment_id"])
    assert exp.name == "tenant_123/ticket_classifier_v1"
    assert exp.tags[TENANT_TAG] == "tenant_123"
    run = client.get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.end_time is not None and run.info.end_time >= run.info.start_time
    assert run.info.experiment_id == out["experiment_id"]
    assert run.data.metrics == out["metrics"]
    assert run.data.params == stored
    assert run.data.tags["model_type"] == "classification"
    assert run.data.tags[TENANT_TAG] == "tenant_123"
    assert run.info.run_name == "ticket_classifier_v1"

    listed = tracker.list_experiments()
    assert len(listed) == 1
    r = listed[0]
    assert r["run_id"] == out["run_id"] and r["status"] == "completed"
    # typed as logged, as end_experiment() returns them (MLflow itself keeps strings, above)
    assert r["metrics"] == out["metrics"] and r["params"] == out["params"]
    assert type(r["params"]["n_estimators"]) is int and type(r["params"]["learning_rate"]) is float
    assert not any(k.startswith("mlops.param_types") for k in r["tags"])  # the type record is ours
    assert r["experiment_name"] == "ticket_classifier_v1"
    assert r["tags"]["model_type"] == "classification"
    assert r["start_time"].endswith("Z") and r["duration"] >= 0
    # the seed's "best experiment" idiom works on the list
    best = max(listed, key=lambda e: e["metrics"]["accuracy"])
    assert best["run_id"] == out["run_id"]


def test_after_end_there_is_no_open_run(tracker):
    tracker.start_experiment("e")
    tracker.end_experiment()
    with pytest.raises(RunStateError):
        tracker.log_metrics({"a": 1.0})
    with pytest.raises(RunStateError):
        tracker.end_experiment()
    with pytest.raises(ValidationError):
        tracker.start_experiment("e").end("bogus")


def test_end_with_status(tracker, client):
    r = tracker.start_experiment("e")
    out = tracker.end_experiment(status="killed")
    assert out["status"] == "killed"
    assert client.get_run(r.run_id).info.status == "KILLED"


def test_context_manager_finishes(tracker, client):
    with tracker.start_experiment("ctx") as run:
        run.log_metrics({"a": 1.0})
        run.log_params({"p": "x"})
    assert run.status == "FINISHED" and not run.is_open
    assert run.result["status"] == "completed"
    got = client.get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert got.data.metrics == {"a": 1.0} and got.data.params == {"p": "x"}
    assert "mlops.error" not in got.data.tags


def test_context_manager_fails_on_exception(tracker, client):
    with pytest.raises(ZeroDivisionError), tracker.start_experiment("ctx") as run:
        tracker.log_metrics({"before": 1.0})
        1 / 0
    got = client.get_run(run.run_id)
    assert got.info.status == "FAILED"
    assert got.data.tags["mlops.error"].startswith("ZeroDivisionError: division by zero")
    assert got.data.metrics == {"before": 1.0}
    assert tracker.active_run is None
    assert tracker.list_experiments()[0]["status"] == "failed"


def test_second_start_ends_the_first(tracker, client):
    r1 = tracker.start_experiment("exp", tags={"i": 1})
    tracker.log_metrics({"m": 1.0})
    r2 = tracker.start_experiment("exp", tags={"i": 2})  # no "already active" error
    assert r1.status == "FINISHED" and tracker.active_run is r2
    tracker.log_metrics({"m": 2.0})
    tracker.end_experiment()
    assert client.get_run(r1.run_id).info.status == "FINISHED"
    assert client.get_run(r1.run_id).data.metrics == {"m": 1.0}
    assert client.get_run(r2.run_id).data.metrics == {"m": 2.0}
    assert r1.run_id != r2.run_id


CELL = """
tracker.start_experiment("notebook", tags={"cell": "7"})
tracker.log_params({"max_depth": max_depth})
tracker.log_metrics({"accuracy": 0.5 + max_depth / 100})
"""


def test_rerunning_the_same_cell_works(tracker, client):
    ns = {"tracker": tracker, "max_depth": 10}
    exec(CELL, ns)
    first = tracker.active_run
    exec(CELL, ns)  # re-run the cell unchanged: same param key, new run, no error
    ns["max_depth"] = 12
    exec(CELL, ns)  # edited and re-run: a new value for the same key is fine in a new run
    last = tracker.active_run
    tracker.end_experiment()
    runs = tracker.list_experiments()
    assert len(runs) == 3
    assert {r["status"] for r in runs} == {"completed"}
    assert sorted(r["params"]["max_depth"] for r in runs) == [10, 10, 12]
    assert client.get_run(first.run_id).info.status == "FINISHED"
    assert client.get_run(last.run_id).data.params == {"max_depth": "12"}


def test_two_trackers_in_one_process_log_independently(home, client):
    t1 = create_experiment_tracker(tenant_id="tenant_123")
    t2 = create_experiment_tracker(tenant_id="tenant_123", experiment_name="second")
    r1 = t1.start_experiment("first")
    r2 = t2.start_experiment("run-in-second")
    for i in range(50):
        t1.log_metrics({"loss": 1.0 / (i + 1)}, step=i)
        t2.log_metrics({"acc": i / 50}, step=i)
    t1.log_params({"who": "t1"})
    t2.log_params({"who": "t2"})
    out1 = t1.end_experiment()
    assert t2.active_run is r2 and r2.is_open  # ending t1 leaves t2's run open
    assert client.get_run(r2.run_id).info.status == "RUNNING"
    out2 = t2.end_experiment()
    a, b = client.get_run(r1.run_id), client.get_run(r2.run_id)
    assert a.data.params == {"who": "t1"} and b.data.params == {"who": "t2"}
    assert set(a.data.metrics) == {"loss"} and set(b.data.metrics) == {"acc"}
    assert len(client.get_metric_history(r1.run_id, "loss")) == 50
    assert len(client.get_metric_history(r2.run_id, "acc")) == 50
    assert out1["experiment_id"] != out2["experiment_id"]
    assert client.get_experiment(out2["experiment_id"]).name == "tenant_123/second"
    assert b.info.run_name == "run-in-second"
    # a tracker refuses to log into another tracker's run
    r3 = t2.start_experiment("x")
    with pytest.raises(RunStateError):
        t1.log_metrics({"m": 1.0}, run=r3)
    t2.end_experiment()


@pytest.mark.parametrize(
    "value, shown",
    [
        (True, "True"),
        (np.bool_(False), "False"),
        ("0.5", "'0.5'"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (-math.inf, "-inf"),
        (np.float64("nan"), "nan"),
        (None, "None"),
        (1 + 2j, "(1+2j)"),
        ([1.0], "[1.0]"),
    ],
    ids=lambda v: repr(v)[:12],
)
def test_bad_metric_values_are_refused_and_nothing_is_logged(tracker, client, value, shown):
    run = tracker.start_experiment("e")
    with pytest.raises(InvalidMetricError) as ei:
        tracker.log_metrics({"good": 1.0, "bad_metric": value, "after": 2.0})
    msg = str(ei.value)
    assert "'bad_metric'" in msg and shown in msg
    assert ei.value.value is value or (isinstance(value, float) and math.isnan(value))
    out = tracker.end_experiment()
    assert out["metrics"] == {}
    assert client.get_run(run.run_id).data.metrics == {}
    assert client.get_metric_history(run.run_id, "good") == []


def test_good_metric_values(tracker, client):
    run = tracker.start_experiment("e")
    tracker.log_metrics(
        {"i": 3, "f": 0.25, "np64": np.float64(1.5), "np32": np.float32(0.5), "npint": np.int64(7), "neg": -1e300}
    )
    tracker.end_experiment()
    assert client.get_run(run.run_id).data.metrics == {
        "i": 3.0,
        "f": 0.25,
        "np64": 1.5,
        "np32": 0.5,
        "npint": 7.0,
        "neg": -1e300,
    }


BAD_KEYS = ["", "/abs", "../up", "a/../b", "a//b", ".", "bad key!", "a\nb", "x" * 251, "a\tb", 5, None, ("a",)]


@pytest.mark.parametrize("key", BAD_KEYS, ids=lambda k: repr(k)[:12])
def test_bad_keys_are_refused(tracker, client, key):
    run = tracker.start_experiment("e")
    with pytest.raises(InvalidNameError) as ei:
        tracker.log_metrics({"ok": 1.0, key: 1.0})
    assert ei.value.value == key
    with pytest.raises(InvalidNameError):
        tracker.log_params({"ok": 1, key: 1})
    with pytest.raises(InvalidNameError):
        tracker.set_tags({key: "v"})
    tracker.end_experiment()
    got = client.get_run(run.run_id)
    assert got.data.metrics == {} and got.data.params == {}


@pytest.mark.parametrize(
    "key",
    BAD_KEYS[:10]
    + ["acc", "a/b", "val loss", "k:1", "x" * 250, "précision", "a/./b", "a/", "a..b", "..", "a b/c", "1"],
)
def test_key_rules_match_mlflow(key):
    """We refuse a metric or param key exactly when MLflow itself would."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import (
        MAX_ENTITY_KEY_LENGTH,
        _validate_length_limit,
        _validate_metric_name,
        _validate_param_name,
    )

    from mlops_jupyter.tracking.validation import validate_key

    for theirs in (_validate_metric_name, _validate_param_name):
        try:
            theirs(key)
            _validate_length_limit("key", MAX_ENTITY_KEY_LENGTH, key)  # checked when MLflow stores it
            mlflow_ok = True
        except MlflowException:
            mlflow_ok = False
        try:
            validate_key(key, "metric")
            ours_ok = True
        except InvalidNameError:
            ours_ok = False
        assert ours_ok == mlflow_ok, (key, theirs.__name__)


def test_good_keys(tracker, client):
    keys = ["acc", "a/b", "val loss", "a-b_c.d", "k:1", "x" * 250, "précision"]  # MLflow allows unicode letters
    run = tracker.start_experiment("e")
    tracker.log_metrics({k: 1.0 for k in keys})
    tracker.end_experiment()
    assert set(client.get_run(run.run_id).data.metrics) == set(keys)


def test_bad_arguments(tracker):
    with pytest.raises(InvalidNameError):
        tracker.start_experiment()  # no name and no default experiment
    with pytest.raises(InvalidNameError):
        tracker.start_experiment("e", tags={"bad key!": 1})
    assert tracker.active_run is None
    tracker.start_experiment("e")
    with pytest.raises(InvalidMetricError):
        tracker.log_metrics([("a", 1.0)])
    with pytest.raises(InvalidParamError):
        tracker.log_params("max_depth=3")
    for step in (-1, 1.5, "3", True):
        with pytest.raises(ValidationError):
            tracker.log_metrics({"a": 1.0}, step=step)
    with pytest.raises(InvalidNameError):
        tracker.set_tags({"t": "x" * 8001})
    tracker.end_experiment()


def test_param_length_limit_refuses_never_truncates(tracker, client):
    run = tracker.start_experiment("e")
    with pytest.raises(InvalidParamError) as ei:
        tracker.log_params({"long": "y" * 6001, "short": 1})
    assert "'long'" in str(ei.value) and "6001" in str(ei.value)
    with pytest.raises(InvalidParamError):
        tracker.log_params({"listy": list(range(2000))})  # long once stringified
    exact = "".join(chr(ord("a") + i % 26) for i in range(6000))
    tracker.log_params({"long": exact})
    tracker.end_experiment()
    params = client.get_run(run.run_id).data.params
    assert params == {"long": exact}
    assert len(params["long"]) == 6000


def test_changing_a_param_in_a_run_is_refused(tracker, client):
    run = tracker.start_experiment("e")
    tracker.log_params({"max_depth": 10, "lr": 0.1})
    tracker.log_params({"max_depth": 10})  # same value again: fine
    with pytest.raises(InvalidParamError) as ei:
        tracker.log_params({"new": 1, "max_depth": 12})
    assert "'max_depth'" in str(ei.value) and "'10'" in str(ei.value) and "'12'" in str(ei.value)
    out = tracker.end_experiment()
    assert out["params"] == {"max_depth": 10, "lr": 0.1}
    assert client.get_run(run.run_id).data.params == {"max_depth": "10", "lr": "0.1"}


OTHER_KERNEL = r"""
import sys
from mlops_jupyter import create_experiment_tracker
from mlops_jupyter.errors import InvalidParamError
tracker = create_experiment_tracker(tenant_id="tenant_123")
tracker.resume(sys.argv[1])  # before the other kernel logs `who`: this one cannot know it
print("@@ready", flush=True)
sys.stdin.readline()
tracker.log_params({"who": "b", "batch": 64})
tracker.log_metrics({"loss": 0.5}, step=1)
try:
    tracker.end_experiment()
    print("@@ok", flush=True)
except InvalidParamError as exc:
    print("@@refused", exc.value, exc.items, flush=True)
"""


def test_a_param_another_process_logged_differently_is_refused_as_a_server_refuses_it(tracker, client):
    """The embedded store keeps a param's first value, as MLflow does, and the kernel whose
    value lost is told (it was dropped silently); the rest of its batch is stored."""
    import subprocess
    import sys

    run = tracker.start_experiment("shared")
    other = subprocess.Popen(
        [sys.executable, "-c", OTHER_KERNEL, run.run_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout.readline().strip() == "@@ready", other.stderr.read()[-3000:]
        tracker.log_params({"who": "a"})
        tracker.flush()
        out, err = other.communicate("go\n", timeout=120)
    finally:
        if other.poll() is None:
            other.kill()
    assert other.returncode == 0, err[-3000:]
    assert f"@@refused b [('{run.run_id}', 'param', 'who', 'b')]" in out, out + err[-2000:]
    data = client.get_run(run.run_id).data
    assert data.params == {"who": "a", "batch": "64"} and data.metrics == {"loss": 0.5}


def test_flush_makes_data_visible_while_the_run_is_open(tracker, client):
    run = tracker.start_experiment("e")
    for i in range(100):
        tracker.log_metrics({"m": float(i)}, step=i)
    tracker.log_params({"p": 1})
    tracker.flush()
    got = client.get_run(run.run_id)
    assert got.info.status == "RUNNING"
    assert got.data.metrics == {"m": 99.0} and got.data.params == {"p": "1"}
    assert len(client.get_metric_history(run.run_id, "m")) == 100
    tracker.end_experiment()


def test_list_experiments_filter_and_order(tracker):
    ids = {}
    for i, acc in enumerate([0.7, 0.9, 0.8]):
        time.sleep(0.01)  # distinct start times, so "newest first" is well defined
        with tracker.start_experiment("search" if i < 2 else "other", run_name=f"r{i}") as r:
            tracker.log_metrics({"accuracy": acc})
            tracker.log_params({"model": "rf" if i % 2 else "lr"})
        ids[acc] = r.run_id
    all_runs = tracker.list_experiments()
    assert [r["run_id"] for r in all_runs] == [ids[0.8], ids[0.9], ids[0.7]]  # newest first
    best = tracker.list_experiments(filter_string="metrics.accuracy > 0.75", order_by=["metrics.accuracy DESC"])
    assert [r["run_id"] for r in best] == [ids[0.9], ids[0.8]]
    asc = tracker.list_experiments(order_by=["metrics.accuracy ASC"])
    assert [r["metrics"]["accuracy"] for r in asc] == [0.7, 0.8, 0.9]
    assert [r["run_id"] for r in tracker.list_experiments(filter_string="params.model = 'rf'")] == [ids[0.9]]
    only = tracker.list_experiments(experiment_name="search")
    assert {r["run_id"] for r in only} == {ids[0.7], ids[0.9]}
    assert {r["experiment_name"] for r in only} == {"search"}
    assert len(tracker.list_experiments(max_results=2)) == 2
    assert tracker.list_experiments(experiment_name="nope") == []
    for bad in ("metrics.accuracy >>> 3", "this is not a filter", "metrics.accuracy > 'x' and"):
        with pytest.raises(ValidationError):
            tracker.list_experiments(filter_string=bad)
    with pytest.raises(ValidationError):
        tracker.list_experiments(order_by=["metrics.accuracy SIDEWAYS"])
    with pytest.raises(ValidationError):
        tracker.list_experiments(max_results=0)


def test_pipeline_tracker_uses_the_pipeline_experiment(home, client):
    p = create_mlops_pipeline("ticket_classifier_pipeline", tenant_id="tenant_123")
    with p.tracker.start_experiment("baseline") as r:
        p.tracker.log_metrics({"a": 1.0})
    assert client.get_experiment(r.experiment_id).name == "tenant_123/ticket_classifier_pipeline"
    assert client.get_run(r.run_id).info.run_name == "baseline"
    assert [x["run_id"] for x in p.tracker.list_experiments()] == [r.run_id]


def test_log_artifact(tracker, client, tmp_path):
    f = tmp_path / "report.txt"
    f.write_text("hello")
    d = tmp_path / "plots"
    d.mkdir()
    (d / "a.json").write_text("{}")
    run = tracker.start_experiment("e")
    uri = tracker.log_artifact(f)
    assert uri.endswith("/report.txt")
    tracker.log_artifact(str(f), artifact_path="sub/dir")
    tracker.log_artifact(d)
    with pytest.raises(NotFoundError) as ei:
        tracker.log_artifact(tmp_path / "missing.csv")
    assert "missing.csv" in str(ei.value)
    tracker.end_experiment()
    top = {a.path for a in client.list_artifacts(run.run_id)}
    assert top == {"report.txt", "sub", "plots"}
    assert [a.path for a in client.list_artifacts(run.run_id, "sub/dir")] == ["sub/dir/report.txt"]
    assert [a.path for a in client.list_artifacts(run.run_id, "plots")] == ["plots/a.json"]
    local = client.download_artifacts(run.run_id, "report.txt", str(tmp_path / "dl"))
    assert open(local).read() == "hello"
    # artifacts live under the store home, per tenant
    assert run.artifact_uri.startswith((tracker.settings.home / "artifacts" / "tenant_123").as_uri() + "/")


def test_metric_history_and_latest_is_highest_step(tracker, client):
    run = tracker.start_experiment("e")
    for step in range(5):
        tracker.log_metrics({"loss": 1.0 - step / 10}, step=step)
    tracker.log_metrics({"loss": 0.1}, step=10)
    tracker.log_metrics({"loss": 5.0}, step=3)  # logged later, lower step: not the latest
    out = tracker.end_experiment()
    hist = client.get_metric_history(run.run_id, "loss")
    assert sorted((m.step, m.value) for m in hist) == [
        (0, 1.0),
        (1, 0.9),
        (2, 0.8),
        (3, 0.7),
        (3, 5.0),
        (4, 0.6),
        (10, 0.1),
    ]
    assert client.get_run(run.run_id).data.metrics["loss"] == 0.1
    assert out["metrics"]["loss"] == 0.1
    assert tracker.list_experiments()[0]["metrics"]["loss"] == 0.1


def test_ten_thousand_calls_all_stored(tracker, client, home):
    run = tracker.start_experiment("bulk")
    for i in range(10_000):
        tracker.log_metrics({f"m{j}": i + j / 10 for j in range(10)}, step=i)
    out = tracker.end_experiment()
    assert out["metrics"]["m3"] == 9999.3
    hist = client.get_metric_history(run.run_id, "m7")
    assert len(hist) == 10_000
    assert sorted(m.step for m in hist) == list(range(10_000))
    assert all(m.value == m.step + 0.7 for m in hist)
    con = sqlite3.connect(home / "mlflow.db")
    try:
        n, keys, steps = con.execute(
            "SELECT count(*), count(DISTINCT key), count(DISTINCT step) FROM metrics WHERE run_uuid=?",
            (run.run_id,),
        ).fetchone()
    finally:
        con.close()
    assert (n, keys, steps) == (100_000, 10, 10_000)
    assert client.get_run(run.run_id).data.metrics == {f"m{j}": 9999 + j / 10 for j in range(10)}


# -- params come back typed as logged ---------------------------------------------------------
def test_list_experiments_returns_params_typed_as_end_experiment(tracker, client):
    values = {
        "n_estimators": 100,
        "learning_rate": 0.1,
        "bootstrap": False,
        "class_weight": None,
        "solver": "lbfgs",
        "seed_text": "10",
        "layers": [64, 32],
        "np_depth": np.int64(7),
    }
    run = tracker.start_experiment("typed")
    tracker.log_params({k: values[k] for k in list(values)[:4]})
    tracker.log_params({k: values[k] for k in list(values)[4:]})  # a second call extends the record
    out = tracker.end_experiment()
    assert out["params"] == values
    listed = tracker.list_experiments()[0]["params"]
    assert listed == out["params"] == tracker.get_run(run.run_id)["params"]
    assert type(listed["n_estimators"]) is int and listed["seed_text"] == "10"  # a string stays one
    assert listed["class_weight"] is None and listed["layers"] == [64, 32]
    # MLflow itself keeps its strings; the record is one tag beside them
    got = client.get_run(run.run_id).data
    assert got.params["n_estimators"] == "100" and got.params["bootstrap"] == "False"
    assert json.loads(got.tags["mlops.param_types"])["np_depth"] == "int"


def test_params_from_a_plain_mlflow_client_stay_strings(tracker, client):
    run = tracker.start_experiment("mixed")
    tracker.log_params({"ours": 5})
    tracker.flush()
    client.log_param(run.run_id, "theirs", 5)  # no type record: MLflow's string
    tracker.end_experiment()
    assert tracker.list_experiments()[0]["params"] == {"ours": 5, "theirs": "5"}


def test_a_resumed_run_keeps_and_extends_the_types(tracker):
    run = tracker.start_experiment("resume")
    tracker.log_params({"a": 1})
    tracker.end_experiment()
    tracker.resume(run.run_id)
    tracker.log_params({"b": 2.5})
    out = tracker.end_experiment()
    assert out["params"] == {"a": 1, "b": 2.5}
    assert tracker.list_experiments()[0]["params"] == {"a": 1, "b": 2.5}


# -- bookkeeping runs are not the user's experiments -------------------------------------------
def test_versioning_without_a_run_leaves_the_users_list_alone(tracker, fitted):
    from mlops_jupyter import create_model_versioning
    from mlops_jupyter.tracking.tracker import REGISTRY_EXPERIMENT

    with tracker.start_experiment("ticket_classifier_v1") as mine:
        tracker.log_metrics({"accuracy": 0.95})
    versioning = create_model_versioning(tenant_id="tenant_123")
    v = versioning.create_version("clf", model=fitted)  # makes a run in 'model-registry'
    assert v["run_id"] != mine.run_id
    runs = tracker.list_experiments()
    assert [r["run_id"] for r in runs] == [mine.run_id]
    assert max(runs, key=lambda e: e["metrics"]["accuracy"])["run_id"] == mine.run_id  # the guide's idiom
    assert tracker.list_experiments(filter_string="metrics.accuracy > 0") == runs
    # still reachable: by name, by id, through the lineage
    assert [r["run_id"] for r in tracker.list_experiments(experiment_name=REGISTRY_EXPERIMENT)] == [v["run_id"]]
    assert tracker.get_run(v["run_id"])["experiment_name"] == REGISTRY_EXPERIMENT
    assert versioning.get_lineage("clf")["versions"][0]["run_id"] == v["run_id"]
