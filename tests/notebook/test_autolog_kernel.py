"""Cell autolog in a real Jupyter kernel: a notebook executed by nbclient, then checked
through a plain ``mlflow.MlflowClient`` on the same store after the kernel shut down."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

CELLS = [
    "%load_ext mlops_jupyter",
    "%mlops autolog on",
    "from sklearn.datasets import load_iris\n"
    "from sklearn.tree import DecisionTreeClassifier\n"
    "X, y = load_iris(return_X_y=True, as_frame=True)",
    "max_depth = 3\n"
    "criterion = 'entropy'\n"
    "clf = DecisionTreeClassifier(max_depth=max_depth, criterion=criterion, random_state=0)\n"
    "clf.fit(X, y)",
    "# mlops: skip\nimport sys\nprint(sys.executable)",
    "raise ValueError('bad threshold')",
    "score = clf.score(X, y)\nscore",
    "%mlops status",
]


def test_notebook_cells_become_runs_in_a_real_kernel(home: Path, tmp_path: Path, monkeypatch):
    from mlflow import MlflowClient

    # The kernel inherits the environment: the test's store, and the notebook's name as
    # Jupyter's server sets it for a kernel it starts.
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "autolog-demo.ipynb"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nb.cells[5].metadata["tags"] = ["raises-exception"]
    NotebookClient(nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()

    outputs = {i: "".join(o.get("text", "") for o in c.outputs) for i, c in enumerate(nb.cells)}
    assert Path(outputs[4].strip()).resolve() == Path(sys.executable).resolve()  # the venv's kernel
    assert nb.cells[5].outputs[0]["ename"] == "ValueError"
    status = nb.cells[7].outputs[0]["data"]["text/plain"]
    assert "'autolog': 'on'" in status and "'cells_logged': 2" in status and "'cells_not_logged': 2" in status

    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.get_experiment_by_name("default/autolog-demo")  # the experiment is the notebook's name
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    (session,) = [r for r in runs if r.data.tags.get("mlops.kind") == "session"]
    assert session.info.run_name == "autolog-demo"
    assert session.info.status == "FINISHED"  # ended when the kernel shut down

    cells = {int(r.data.tags["mlops.execution_count"]): r for r in runs if r.data.tags.get("mlops.kind") == "cell"}
    # the fit and the failure; not the magics, the skipped cell, nor the cells that only load or score
    expected = {nb.cells[i].execution_count: i for i in (3, 5)}
    assert sorted(cells) == sorted(expected)
    for count, run in cells.items():
        assert run.data.tags["mlflow.parentRunId"] == session.info.run_id
        assert run.info.run_name == f"cell-{count}"
        assert run.data.metrics["cell_duration_s"] > 0
    by_index = {i: cells[count] for count, i in expected.items()}

    fit = by_index[3]
    assert fit.info.status == "FINISHED"
    assert fit.data.params["max_depth"] == "3" and fit.data.params["criterion"] == "entropy"
    assert fit.data.params["random_state"] == "0"  # from the fitted estimator
    assert fit.data.metrics["training_accuracy_score"] > 0.9
    model_dir = Path(fit.info.artifact_uri.removeprefix("file://")) / "models" / "clf" / "model"
    assert (model_dir / "MLmodel").is_file()  # saved off the cell's path, complete at shutdown

    failed = by_index[5]
    assert failed.info.status == "FAILED"
    assert failed.data.tags["mlops.error_type"] == "ValueError"
    assert failed.data.tags["mlops.error"] == "ValueError: bad threshold"

    error_txt = Path(failed.info.artifact_uri.removeprefix("file://")) / "error.txt"
    assert "Traceback" in error_txt.read_text() and "bad threshold" in error_txt.read_text()
    source = Path(fit.info.artifact_uri.removeprefix("file://")) / "cell.py"
    assert source.read_text() == CELLS[3]
    assert session.data.metrics["cells_not_logged"] == 2
