"""The notebook code unchanged against a team server: PostgreSQL behind ``mlflow server``
with proxied artifacts (no auth app here: tenants are a namespace; see test_tenants.py).

Everything is checked through a plain ``MlflowClient`` on the server, or PostgreSQL itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from panel_data import EXPERIMENT, MODEL, seed_panel_store
from test_guide_example import run_the_guide, stop_the_gateway

from mlops_jupyter import create_experiment_tracker, create_model_versioning
from team.servers import run_in_step

pytestmark = pytest.mark.server


@pytest.fixture
def client(server_url):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=server_url, registry_uri=server_url)


def test_the_guides_complete_example_on_the_team_server(team, server_url, client, tmp_path):
    out, work = run_the_guide(tmp_path, tracking_uri=server_url)  # the one change a team member makes
    assert out["best_experiment"]["metrics"] == {"accuracy": 0.95, "f1_score": 0.93}
    assert out["version"]["version"] == "1.0.0"
    assert out["deployment"]["status"] == "deployed" and out["deployment"]["traffic"] == {"1.0.0": 100}
    assert {"drift_detected", "drift_score", "performance_metrics"} <= set(out["drift_status"])

    # everything is on the server, nothing in a local MLflow DB
    assert not (work / ".mlops" / "mlflow.db").exists()
    run = client.get_run(out["best_experiment"]["run_id"])
    assert run.data.metrics == {"accuracy": 0.95, "f1_score": 0.93}
    mv = client.get_model_version_by_alias("tenant_123.ticket_classifier", "production")  # moved by the deploy
    assert str(mv.version) == "1" and mv.source.startswith("mlflow-artifacts:/")
    # the version's model sits in the server's proxied artifact store; the gateway loaded it from there
    assert list(team.open_server.artifacts.rglob("MLmodel"))


def test_versioning_rollback_deploy_panels_and_lineage(server_url, client, client_home, monkeypatch):
    from mlops_jupyter.notebook.widgets import ComparisonPanel, DeployPanel, DriftPanel

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server_url)
    try:
        seeded = seed_panel_store(client_home, n_runs=12, n_predictions=600)
        p, X = seeded["pipeline"], seeded["X"]
        name = p.settings.tenancy.model_name(MODEL)
        # the production deploy of 1.1.0 moved the registry's alias; staging moved nothing
        assert str(client.get_model_version_by_alias(name, "production").version) == "2"
        lin = p.versioning.get_lineage(MODEL)
        assert lin["live"] == {"production": "1.1.0"}
        where = {
            v["version"]: {(d["environment"], d["target"], d["traffic"]) for d in v["deployed"]}
            for v in lin["versions"]
        }
        assert where == {"1.0.0": {("staging", "local", 100)}, "1.1.0": {("production", "local", 100)}}

        # a canary: production keeps 1.1.0 as the alias while it serves most of the traffic
        p.deployment.set_traffic(MODEL, "production", {"1.1.0": 70, "1.0.0": 30})
        lin = p.versioning.get_lineage(MODEL)
        prod = next(d for d in lin["deployments"] if d["environment"] == "production")
        assert prod["traffic"] == {"1.1.0": 70, "1.0.0": 30} and lin["live"] == {"production": "1.1.0"}

        # rollback through the registry: the alias and the live deployment move together
        out = p.versioning.rollback_model(MODEL, "1.0.0")
        assert [d["traffic"] for d in out["deployments"] if d["environment"] == "production"] == [{"1.0.0": 100}]
        assert str(client.get_model_version_by_alias(name, "production").version) == "1"
        c = p.deployment.client(MODEL, "production")
        try:
            assert np.array_equal(
                np.asarray(c.predict(X.head(5))), p.versioning.load_model(MODEL, "1.0.0").predict(X.head(5))
            )
            assert c.last_version == "1.0.0"
        finally:
            c.close()
        # the served model came from the server's proxied artifacts into the local cache
        mv = client.get_model_version(name, "1")
        assert mv.source.startswith("mlflow-artifacts:/")
        assert list((client_home / "model-cache").rglob("MLmodel"))

        # the panels read the server
        comparison = ComparisonPanel(EXPERIMENT, pipeline=p)
        assert len(comparison.frame) == 12
        deploy = DeployPanel(MODEL, pipeline=p)
        assert deploy.live["production"] == {"1.0.0": 100} and deploy.live["staging"] == {"1.0.0": 100}
        drift = DriftPanel(MODEL, pipeline=p)
        assert drift.result["drift_detected"] and drift.result["n_current"] > 0
    finally:
        stop_the_gateway(client_home)


def test_a_plain_postgresql_uri_without_a_server(team, client_home, fitted, iris):
    from mlflow import MlflowClient

    uri = team.postgres.create_database("plain_pg", template="mlflow_template")
    tracker = create_experiment_tracker(tenant_id="pg", mlflow_uri=uri)
    with tracker.start_experiment("direct") as run:
        for i in range(300):
            tracker.log_metrics({"loss": 1 / (i + 1), "acc": i / 300}, step=i)
        tracker.log_params({"C": 0.5})
    v = create_model_versioning(tenant_id="pg", mlflow_uri=uri, storage_path=client_home)
    made = v.create_version("clf", model=fitted, run_id=run.run_id)
    assert made["run_id"] == run.run_id  # the version names the run it came from
    X, _ = iris
    assert np.array_equal(v.load_model("clf", "1.0.0").predict(X), fitted.predict(X))
    assert run.artifact_uri.startswith((client_home / "artifacts" / "pg").as_uri())  # not ./mlruns in the cwd
    plain = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert len(plain.get_metric_history(run.run_id, "loss")) == 300
    assert plain.get_model_version("pg.clf", "1").run_id == run.run_id
    assert [r["run_id"] for r in tracker.list_experiments(experiment_name="direct")] == [run.run_id]
    # the points went through MLflow's store with the bulk metric write (storage/pg_store.py)
    assert type(tracker.store.raw_client._tracking_client.store).__name__ == "PostgresBulkSqlAlchemyStore"


KERNEL_CELLS = [
    "%load_ext mlops_jupyter",
    "%mlops autolog on",
    "from sklearn.datasets import load_iris\n"
    "from sklearn.tree import DecisionTreeClassifier\n"
    "X, y = load_iris(return_X_y=True, as_frame=True)",
    "max_depth = 3\nclf = DecisionTreeClassifier(max_depth=max_depth, random_state=0).fit(X, y)",
    "%mlops status",
]


def test_magics_and_cell_autolog_in_a_real_kernel(server_url, client, client_home, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server_url)
    monkeypatch.setenv("MLOPS_TENANT", "kernel_team")
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "team-notebook.ipynb"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in KERNEL_CELLS]
    # ipc sockets, not TCP ports: nothing to race other processes for while the kernel starts
    km = KernelManager(kernel_name="python3", transport="ipc", ip=str(tmp_path / "kernel"))
    km.shutdown_wait_time = 60  # the kernel stores what it logged at exit, over HTTP: let it finish
    try:
        NotebookClient(nb, km=km, timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:  # a kernel manager passed in is ours to shut down (gracefully: its atexit stores the rest)
        if km.has_kernel:
            km.shutdown_kernel()
    status = str(nb.cells[4].outputs[0]["data"]["text/plain"])
    assert "namespace only, not a security boundary" in status

    exp = client.get_experiment_by_name("kernel_team/team-notebook")
    runs = client.search_runs([exp.experiment_id])
    (session,) = [r for r in runs if r.data.tags.get("mlops.kind") == "session"]
    assert session.info.status == "FINISHED"
    (fit,) = [r for r in runs if r.data.tags.get("mlops.kind") == "cell"]
    assert fit.data.params["max_depth"] == "3" and fit.data.metrics["training_accuracy_score"] > 0.9
    assert fit.info.artifact_uri.startswith("mlflow-artifacts:/")
    paths = {a.path for a in client.list_artifacts(fit.info.run_id)}
    assert "models" in paths  # the fitted model went to the server's artifact store


WRITER = """
import sys
from mlops_jupyter import create_experiment_tracker

who, n_steps, n_runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
tracker = create_experiment_tracker(tenant_id="kernels", experiment_name="shared")
tracker.start_experiment("shared")  # warm: the experiment exists before the race
tracker.end_experiment()
print("@@ready", flush=True)
sys.stdin.readline()
run = tracker.start_experiment("shared", run_name=f"{who}-steps")
for i in range(n_steps):
    tracker.log_metrics({f"m{j}": i + j / 10 for j in range(5)}, step=i)
tracker.end_experiment(wait=False)
for r in range(n_runs):
    tracker.start_experiment("shared", run_name=f"{who}-run-{r}")
    tracker.log_params({"who": who, "r": r})
    tracker.log_metrics({"score": r})
    tracker.end_experiment(wait=False)
tracker.flush()
print("@@done", run.run_id, flush=True)
"""


def test_two_kernels_logging_at_once_lose_nothing(server_url, client, tmp_path):
    n_steps, n_runs = 1500, 30
    env = {**os.environ, "MLFLOW_TRACKING_URI": server_url}
    procs = []
    for who in ("k1", "k2"):
        home = tmp_path / who
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", WRITER, who, str(n_steps), str(n_runs)],
                env={**env, "MLOPS_HOME": str(home)},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        )
    outs = run_in_step(procs, timeout=300)  # both start logging together
    assert [p.returncode for p in procs] == [0, 0], outs
    exp = client.get_experiment_by_name("kernels/shared")
    for who, out in zip(("k1", "k2"), outs):
        run_id = out.split("@@done ")[1].split()[0]
        for j in range(5):
            hist = client.get_metric_history(run_id, f"m{j}")
            assert sorted(m.step for m in hist) == list(range(n_steps)), (who, j)
        runs = client.search_runs(
            [exp.experiment_id], filter_string=f"params.who = '{who}' and attributes.status = 'FINISHED'"
        )
        assert sorted(int(r.data.params["r"]) for r in runs) == list(range(n_runs))
        assert all(r.data.metrics["score"] == int(r.data.params["r"]) for r in runs)


def test_a_report_is_logged_to_the_team_server(server_url, client, client_home, tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("alpha = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print('alpha is', alpha)"),
    ]
    path = tmp_path / "team-report.ipynb"
    nbformat.write(nb, path)
    env = {**os.environ, "MLFLOW_TRACKING_URI": server_url, "MLOPS_HOME": str(client_home)}
    proc = subprocess.run(
        [sys.executable, "-m", "mlops_jupyter.cli", "report", str(path), "-p", "alpha", "7", "--tenant", "reports"]
        + ["--out", str(tmp_path / "out"), "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    out = json.loads("\n".join(lines[lines.index("{") :]))  # the --json result, printed last
    run = client.get_run(out["run_id"])
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    names = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/team-report.html", "report/team-report.ipynb"} <= names, names
    assert Path(out["html"]).is_file()
