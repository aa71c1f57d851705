"""Cell autolog in a real in-process IPython shell: every executed cell becomes a child run.

Cells are run with ``run_cell(..., cell_id=...)`` as a kernel does for a notebook; the
stored runs are read back through a plain ``mlflow.MlflowClient`` after a flush.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_jupyter.notebook.magics.autolog import MAX_FAILURES, wait_for_models

EXPERIMENT = "default/notebook"


@pytest.fixture
def client(home: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def magics(ip):
    from mlops_jupyter.notebook.magics import get_magics

    return get_magics(ip)


def stored_runs(ip, client, experiment: str = EXPERIMENT) -> list:
    """Every run of ``experiment`` after a flush, oldest first (cells: by execution count)."""
    wait_for_models()
    magics(ip).pipeline.flush()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def cells_of(runs: list) -> list:
    """The cell runs among ``runs``, in execution order."""
    return sorted(
        (r for r in runs if r.data.tags.get("mlops.kind") == "cell"),
        key=lambda r: int(r.data.tags["mlops.execution_count"]),
    )


def session_and_cells(ip, client) -> tuple:
    runs = stored_runs(ip, client)
    sessions = [r for r in runs if r.data.tags.get("mlops.kind") == "session"]
    assert len(sessions) == 1, [r.info.run_name for r in sessions]
    return sessions[0], cells_of(runs)


# -- runs, parent, tags, source, duration --------------------------------------------------
def test_each_cell_that_logs_is_a_child_run_of_one_session_run(autolog_ip, client):
    counts = []
    for cid, src in (("c-load", "a = 1"), ("c-quiet", "b = a + 1"), ("c-fit", "lr = 0.5"), ("c-eval", "c = b * 10\nc")):
        count = autolog_ip.run_cell(src, cell_id=cid).execution_count
        if cid in ("c-load", "c-fit"):
            counts.append(count)
    assert autolog_ip.user_ns["c"] == 20
    autolog_ip.run_cell("tracker = __import__('mlops_jupyter').create_experiment_tracker()", cell_id="c-mk")
    counts.append(autolog_ip.run_cell("tracker.log_metrics({'auc': 0.9})", cell_id="c-log").execution_count)

    session, cells = session_and_cells(autolog_ip, client)
    assert session.info.status == "RUNNING"  # open for as long as the kernel lives
    assert len(cells) == 3  # the cells that computed or showed something are not runs
    assert cells[2].data.metrics["auc"] == 0.9  # an explicit tracker call opened the cell's run
    assert session.data.metrics["cells_not_logged"] == 3
    for run, cid, count in zip(cells, ("c-load", "c-fit", "c-log"), counts):
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == session.info.run_id
        assert tags["mlops.cell_id"] == cid
        assert tags["mlops.execution_count"] == str(count)  # the cell's In[n]
        assert run.info.run_name == f"cell-{count}"
        assert run.info.status == "FINISHED"
        assert 0 < run.data.metrics["cell_duration_s"] < 5
    status = autolog_ip.run_cell("%mlops status").result
    assert status["session_run"] == session.info.run_id and status["cells_logged"] == 3
    assert status["cells_not_logged"] == 3

    autolog_ip.run_cell("%unload_ext mlops_jupyter")  # as at kernel shutdown: the session ends
    assert client.get_run(session.info.run_id).info.status == "FINISHED"


def test_reexecuting_a_cell_groups_under_its_cell_id(autolog_ip, client):
    first = autolog_ip.run_cell("n = 1", cell_id="same-cell").execution_count
    autolog_ip.run_cell("m = 2", cell_id="other-cell")
    second = autolog_ip.run_cell("n = 2", cell_id="same-cell").execution_count

    _, cells = session_and_cells(autolog_ip, client)
    same = [r for r in cells if r.data.tags["mlops.cell_id"] == "same-cell"]
    assert [r.data.tags["mlops.execution_count"] for r in same] == [str(first), str(second)]
    assert [r.data.params["n"] for r in same] == ["1", "2"]


def test_cell_source_is_stored_as_an_artifact(autolog_ip, client, tmp_path):
    source = "# prepare\nrows = [1, 2, 3]\ntotal = sum(rows)\n%time doubled = total * 2\n"
    autolog_ip.run_cell(source, cell_id="src")
    _, (run,) = session_and_cells(autolog_ip, client)
    path = client.download_artifacts(run.info.run_id, "cell.py", dst_path=str(tmp_path))
    assert Path(path).read_text() == source  # the raw cell, magics included
    assert run.data.params == {"rows": "[1, 2, 3]"}


def test_failed_cell_is_a_failed_run_with_the_error(autolog_ip, client):
    result = autolog_ip.run_failing("x = 1\nraise KeyError('missing column')", cell_id="boom")
    assert isinstance(result.error_in_exec, KeyError)
    autolog_ip.run_cell("y = 2", cell_id="fine")  # the session goes on

    _, (failed, fine) = session_and_cells(autolog_ip, client)
    assert failed.info.status == "FAILED"
    assert failed.data.tags["mlops.error_type"] == "KeyError"
    assert failed.data.tags["mlops.error"] == "KeyError: 'missing column'"
    assert failed.data.params == {"x": "1"}
    assert fine.info.status == "FINISHED" and "mlops.error_type" not in fine.data.tags


def test_params_come_from_top_level_literal_assignments_only(autolog_ip, client):
    cell = (
        "max_depth = 10\n"
        "lr: float = 0.1\n"
        "name = 'baseline'\n"
        "use_gpu = False\n"
        "offset = -3\n"
        "layers = [64, 32]\n"
        "size = len('abcd')\n"  # a call: not a param
        "double = max_depth * 2\n"  # an expression: not a param
        "table = {'a': 1}\n"  # a dict: not a param
        "_private = 5\n"  # private names are skipped
        "a, b = 1, 2\n"  # tuple unpacking: not a single name
        "for i in range(2):\n"
        "    loop_value = 1\n"  # not top level
        "def f():\n"
        "    inner = 7\n"
        "    return inner\n"
    )
    autolog_ip.run_cell(cell, cell_id="params")
    _, (run,) = session_and_cells(autolog_ip, client)
    assert run.data.params == {
        "max_depth": "10",
        "lr": "0.1",
        "name": "baseline",
        "use_gpu": "False",
        "offset": "-3",
        "layers": "[64, 32]",
    }


# -- scikit-learn --------------------------------------------------------------------------
def test_sklearn_fits_log_params_training_metrics_and_the_model(autolog_ip, client, iris, tmp_path):
    X, y = iris
    autolog_ip.push({"X": X, "y": y})
    autolog_ip.run_cell("from sklearn.linear_model import LinearRegression, LogisticRegression", cell_id="imports")
    autolog_ip.run_cell("C = 0.5\nclf = LogisticRegression(C=C, max_iter=400)\nclf.fit(X, y)", cell_id="clf")
    autolog_ip.run_cell("reg = LinearRegression().fit(X, y)", cell_id="reg")
    autolog_ip.run_cell("clf.fit(X, y)\nclf.set_params(C=5.0)", cell_id="refit-after")

    _, cells = session_and_cells(autolog_ip, client)
    by_id = {r.data.tags["mlops.cell_id"]: r for r in cells}
    clf_run, reg_run = by_id["clf"], by_id["reg"]
    assert clf_run.data.params["C"] == "0.5" and clf_run.data.params["max_iter"] == "400"
    assert clf_run.data.tags["mlops.cell.estimators"] == "clf=LogisticRegression"
    acc = clf_run.data.metrics["training_accuracy_score"]
    assert acc == pytest.approx(autolog_ip.user_ns["clf"].set_params(C=0.5).fit(X, y).score(X, y))
    for key in ("training_precision_score", "training_recall_score", "training_f1_score", "training_score"):
        assert 0.8 < clf_run.data.metrics[key] <= 1.0
    assert reg_run.data.params["fit_intercept"] == "True"
    assert reg_run.data.tags["mlops.cell.estimators"] == "reg=LinearRegression"
    assert {"training_r2_score", "training_mean_squared_error", "training_mean_absolute_error"} <= set(
        reg_run.data.metrics
    )
    assert "imports" not in by_id  # an import cell logs nothing: no run

    # the fitted model lands under the cell run's artifacts and loads back
    import mlflow.pyfunc

    model_dir = Path(clf_run.info.artifact_uri.removeprefix("file://")) / "models" / "clf" / "model"
    assert (model_dir / "MLmodel").is_file()
    loaded = mlflow.pyfunc.load_model(str(model_dir))
    ref = autolog_ip.user_ns["clf"].set_params(C=0.5).fit(X, y)
    assert (loaded.predict(X.head(20)) == ref.predict(X.head(20))).all()


# -- explicit logging inside a cell ------------------------------------------------------
def test_explicit_tracker_calls_go_to_the_cell_run(autolog_ip, client):
    from mlops_jupyter.errors import RunStateError

    autolog_ip.run_cell(
        "from mlops_jupyter import create_experiment_tracker\ntracker = create_experiment_tracker()", cell_id="setup"
    )
    autolog_ip.run_cell(
        "lr = 0.1\n"
        "tracker.log_params({'optimizer': 'adam'})\n"
        "tracker.log_metrics({'val_accuracy': 0.91})\n"
        "tracker.log_metrics({'val_accuracy': 0.93}, step=1)\n"
        "%mlops metrics val_loss=0.2",
        cell_id="train",
    )
    autolog_ip.run_cell("z = 0", cell_id="after")

    _, cells = session_and_cells(autolog_ip, client)
    by_id = {r.data.tags["mlops.cell_id"]: r for r in cells}
    train = by_id["train"]
    assert train.data.params == {"lr": "0.1", "optimizer": "adam"}
    assert train.data.metrics["val_accuracy"] == 0.93 and train.data.metrics["val_loss"] == 0.2
    hist = client.get_metric_history(train.info.run_id, "val_accuracy")
    assert sorted((m.step, m.value) for m in hist) == [(0, 0.91), (1, 0.93)]
    assert "val_accuracy" not in by_id["after"].data.metrics
    assert "setup" not in by_id  # building a tracker logs nothing: no run

    # between cells (here: after autolog is off) there is no run to log into
    autolog_ip.run_cell("%mlops autolog off")
    result = autolog_ip.run_failing("tracker.log_metrics({'late': 1.0})")
    assert isinstance(result.error_in_exec, RunStateError)


# -- what is not logged ----------------------------------------------------------------------
def test_skipped_cells(autolog_ip, client):
    autolog_ip.run_cell("", cell_id="empty")
    autolog_ip.run_cell("   \n\n", cell_id="blank")
    autolog_ip.run_cell("# mlops: skip\nsecret = 42", cell_id="skip")
    autolog_ip.run_cell("# MLOps: skip (scratch)\nscratch = 1", cell_id="skip2")
    autolog_ip.run_cell("%mlops status", cell_id="magic")
    autolog_ip.run_cell("# look\n%mlops status\n\n%mlops autolog on", cell_id="magics")
    autolog_ip.run_cell("info = %mlops status", cell_id="assign-magic")
    autolog_ip.run_cell("%%mlops run explicit\nq = 1", cell_id="cell-run")
    autolog_ip.run_cell("secret", cell_id="silent", silent=True)
    autolog_ip.run_cell("logged = secret + 1\nthreshold = 0.5", cell_id="real")
    assert autolog_ip.user_ns["logged"] == 43 and autolog_ip.user_ns["info"]["autolog"] == "on"

    runs = stored_runs(autolog_ip, client)
    assert [r.data.tags["mlops.cell_id"] for r in cells_of(runs)] == ["real"]
    (explicit,) = [r for r in runs if r.info.run_name == "explicit"]
    assert "mlflow.parentRunId" not in explicit.data.tags  # %%mlops run is its own run


def test_an_explicit_open_run_suppresses_cell_runs(autolog_ip, client):
    autolog_ip.run_cell("warmup = 1", cell_id="before")
    autolog_ip.run_cell("%mlops start manual")
    autolog_ip.run_cell("inside = 1", cell_id="inside")
    autolog_ip.run_cell("%mlops metrics score=0.5")
    autolog_ip.run_cell("%mlops end")
    autolog_ip.run_cell("outside = 1", cell_id="outside")

    runs = stored_runs(autolog_ip, client)
    assert [r.data.tags["mlops.cell_id"] for r in cells_of(runs)] == ["before", "outside"]
    (manual,) = [r for r in runs if r.info.run_name == "manual"]
    assert manual.data.metrics == {"score": 0.5} and manual.data.params == {}
    assert "mlflow.parentRunId" not in manual.data.tags


# -- the hooks never break the kernel --------------------------------------------------------
def test_a_failing_store_never_breaks_a_cell_and_autolog_turns_itself_off(autolog_ip, client, home, tmp_path, capfd):
    autolog_ip.run_cell("ok = 1", cell_id="good")
    # Point the notebook at a store that cannot work: its DB file is not a database.
    broken = tmp_path / "broken-store"
    broken.mkdir()
    (broken / "mlflow.db").write_bytes(b"this is not a sqlite database\n" * 64)
    capfd.readouterr()
    autolog_ip.run_cell(f"%config MLOpsMagics.home = {str(broken)!r}", cell_id="switch")
    assert autolog_ip.run_cell("%mlops status").result["autolog"] == "on"

    for i in range(MAX_FAILURES + 2):
        result = autolog_ip.run_cell(f"v{i} = {i} * 2", cell_id=f"while-broken-{i}")
        assert result.success
    assert [autolog_ip.user_ns[f"v{i}"] for i in range(MAX_FAILURES + 2)] == [0, 2, 4, 6, 8]

    err = capfd.readouterr().err
    assert err.count("a cell could not be logged") == 1  # warned once, not per cell
    assert "DatabaseError" in err
    assert err.count("mlops autolog: off") == 1
    status = autolog_ip.run_cell("%mlops status").result
    assert status["autolog"] == "off"
    assert f"after {MAX_FAILURES} failures" in status["autolog_reason"]
    assert "DatabaseError" in status["autolog_reason"]

    # Back on the good store, autolog can be turned on again and logs as before.
    autolog_ip.run_cell(f"%config MLOpsMagics.home = {str(home)!r}")
    autolog_ip.run_cell("%mlops autolog on")
    autolog_ip.run_cell("again = 1", cell_id="good-again")
    runs = stored_runs(autolog_ip, client)
    good, again = cells_of(runs)  # the %config cell logged nothing: no run
    assert [r.data.tags["mlops.cell_id"] for r in (good, again)] == ["good", "good-again"]
    sessions = {r.info.run_id: r for r in runs if r.data.tags.get("mlops.kind") == "session"}
    assert len(sessions) == 2
    first = sessions[good.data.tags["mlflow.parentRunId"]]
    assert first.info.status == "FINISHED"  # ended when the store was switched
    assert again.data.tags["mlflow.parentRunId"] != first.info.run_id


def test_create_mlops_pipeline_autolog_inside_a_shell(ip, home):
    """``create_mlops_pipeline(..., autolog=True)`` in a kernel logs the following cells
    as runs of that pipeline's experiment."""
    from mlflow import MlflowClient

    ip.run_cell("from mlops_jupyter import create_mlops_pipeline")
    ip.run_cell("p = create_mlops_pipeline('autolog_pipe', tenant_id='acme', autolog=True)")
    ip.run_cell("depth = 7")
    ip.run_cell("p.tracker.log_metrics({'score': 0.5})")
    ip.user_ns["p"].flush()
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    exp = client.get_experiment_by_name("acme/autolog_pipe")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`mlops.kind` = 'cell'")
    by_params = [r for r in runs if r.data.params.get("depth") == "7"]
    assert len(by_params) == 1
    assert by_params[0].data.tags["mlflow.parentRunId"]
    scored = [r for r in runs if "score" in r.data.metrics]
    assert len(scored) == 1 and scored[0].data.metrics["score"] == 0.5


def test_bad_config_value_is_refused_when_set(mlops_ip, caplog):
    # %config reports a refused value as a logged error (IPython's behaviour for TraitError)
    mlops_ip.run_cell('%config MLOpsMagics.tenant = "bad tenant"')
    assert "Invalid tenant id 'bad tenant'" in caplog.text
    assert mlops_ip.run_line_magic("mlops", "status")["tenant"] == "default"
