"""Shared fixtures: every test gets its own real MLflow sqlite store in a temp folder.

Creating an MLflow sqlite DB runs its migrations (about 2 s), so the session builds one
pristine store once and each test copies the file (a few ms).
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from mlops_jupyter.config import env

# With ``-n 2 --dist loadfile --no-loadscope-reorder`` (pytest-xdist, as ``make test`` runs the
# suite) a file's tests run in one worker (its module fixtures are built once), and so do these
# whole folders: their session fixtures start servers (tests/team: PostgreSQL and `mlflow server`;
# tests/browser: JupyterLab and chromium). They and the Ray file (a Ray cluster) are the longest
# groups: they are sent first, so that no worker is left alone with one at the end.
WHOLE_GROUPS = ("tests/team", "tests/browser", "tests/deployment/test_ray_target.py")


def xdist_group(nodeid: str) -> str:
    """The group a test is sent to a worker with: its file, or one of :data:`WHOLE_GROUPS`."""
    path = nodeid.split("::", 1)[0]
    return next((g for g in WHOLE_GROUPS if path == g or path.startswith(g + "/")), path)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The groups of :data:`WHOLE_GROUPS` first (a stable sort: the order within a file is kept)."""
    items.sort(key=lambda item: xdist_group(item.nodeid) not in WHOLE_GROUPS)


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: a run without the plugin ignores it
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` by :func:`xdist_group` (xdist's own ``loadgroup`` marks tests by
    rewriting a node id attribute that pytest 9 no longer reads)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid)

    return ByGroup(config, log)


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlflow import MlflowClient

    from mlops_jupyter.storage.mlflow_sql import connect_sqlite

    d = tmp_path_factory.mktemp("template")
    db = d / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{db}", registry_uri=f"sqlite:///{db}")
    client._tracking_client.store
    client._get_registry_client().store
    connect_sqlite(db).close()
    return db


@pytest.fixture
def home(tmp_path: Path, template_db: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh store home (``MLOPS_HOME``) holding a copy of the template DB."""
    h = tmp_path / "store"
    h.mkdir()
    shutil.copy(template_db, h / "mlflow.db")
    for var in (env.MLOPS_TENANT, env.MLFLOW_TRACKING_URI):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(env.MLOPS_HOME, str(h))
    yield h
    close_stores(h)


def close_stores(home: Path) -> None:
    """Flush and forget the tracking stores this process opened on ``home``."""
    from mlops_jupyter.storage import store as store_mod

    for key, st in list(store_mod._STORES.items()):
        if key[1] == str(home):
            st.close()
            del store_mod._STORES[key]


@pytest.fixture
def iris():
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True, as_frame=True)


@pytest.fixture
def fitted(iris):
    from sklearn.linear_model import LogisticRegression

    X, y = iris
    return LogisticRegression(max_iter=500).fit(X, y)


# -- IPython shells for the notebook layer (tests/test_magics.py, tests/test_autolog.py) -----
# Layered as in jupysql's conftest: a bare shell, then the shell with the extension loaded
# on the test's store, then the shell with cell autolog on.


class TestingShell(InteractiveShell):
    """A real in-process shell whose ``run_cell`` raises the cell's error.

    Cells are stored in history (``store_history=True``) as a kernel does, so execution
    counts advance as in a notebook. ``run_failing`` returns the ``ExecutionResult`` of a
    cell that must fail, for asserting on ``error_in_exec``.
    """

    def run_cell(self, raw_cell, *args, **kwargs):
        kwargs.setdefault("store_history", True)
        result = super().run_cell(raw_cell, *args, **kwargs)
        result.raise_error()
        return result

    def run_failing(self, raw_cell, **kwargs):
        kwargs.setdefault("store_history", True)
        result = InteractiveShell.run_cell(self, raw_cell, **kwargs)
        assert not result.success, f"cell unexpectedly succeeded: {raw_cell!r}"
        assert result.error_before_exec is None, result.error_before_exec
        return result


@pytest.fixture
def ip(monkeypatch: pytest.MonkeyPatch):
    """A bare real ``InteractiveShell`` (fresh singleton, in-memory history)."""
    from traitlets.config import Config

    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    TestingShell.clear_instance()
    cfg = Config()
    cfg.HistoryManager.hist_file = ":memory:"
    shell = TestingShell.instance(config=cfg)
    yield shell
    forget_shell(shell)
    TestingShell.clear_instance()


def forget_shell(shell: InteractiveShell) -> None:
    """Drop what IPython keeps of ``shell`` until interpreter exit.

    Every ``InteractiveShell`` registers ``atexit.register(self.atexit_operations)`` and
    ``clear_instance()`` does not undo it: at exit each shell of the session would be reset,
    and each reset runs a full ``gc.collect()`` (0.3-0.9 s on the suite's heap): the 53
    shells of ``pytest tests`` kept it alive ~45 s after its summary line.
    """
    atexit.unregister(shell.atexit_operations)
    if shell.history_manager is not None:
        shell.history_manager.close()  # its sqlite db (and saving thread, if any)


@pytest.fixture
def mlops_ip(ip, home):
    """``ip`` with ``%load_ext mlops_jupyter``; the store is the test's ``home``."""
    ip.run_cell("%load_ext mlops_jupyter")
    yield ip
    from mlops_jupyter.notebook.magics.autolog import wait_for_models

    wait_for_models()
    if "mlops_jupyter" in ip.extension_manager.loaded:
        ip.run_line_magic("unload_ext", "mlops_jupyter")  # ends the autolog session run


@pytest.fixture
def autolog_ip(mlops_ip):
    """``mlops_ip`` with ``%mlops autolog on``."""
    mlops_ip.run_cell("%mlops autolog on")
    return mlops_ip


# -- a real gateway (tests/test_gateway.py, test_deployment.py, test_monitoring_gateway.py) --
IRIS_FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


@contextmanager
def gateway_home(tmp_path_factory: pytest.TempPathFactory, template_db: Path, name: str) -> Iterator[Path]:
    """A fresh store home (a copy of the template DB) for a module's gateway.

    At the end its gateway is stopped (killed if it does not stop) and its tracking stores
    are closed, so no test leaves a process or a connection behind.
    """
    from mlops_jupyter.deployment.targets.local_process import read_info, stop_gateway

    home = tmp_path_factory.mktemp(name) / "store"
    home.mkdir()
    shutil.copy(template_db, home / "mlflow.db")
    try:
        yield home
    finally:
        try:
            stop_gateway(home)
        except Exception:  # never leave a gateway behind
            info = read_info(home)
            if info:
                os.kill(info["pid"], signal.SIGKILL)
        close_stores(home)


@contextmanager
def gateway_in_process(home: Path) -> Iterator[Any]:
    """A :class:`~mlops_jupyter.gateway.app.Gateway` on ``home`` in this process, its event
    loop running in a thread (no port bound: ``gw.loop.create_server`` binds one); closed at
    the end, loop included."""
    import asyncio
    import threading

    from mlops_jupyter.gateway.app import Gateway

    gw = Gateway(home)
    loop = asyncio.new_event_loop()
    gw.loop, gw.admin_lock, gw.stopping = loop, asyncio.Lock(), asyncio.Event()
    thread = threading.Thread(target=loop.run_forever, name="test-gateway-loop", daemon=True)
    thread.start()
    try:
        yield gw
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        gw.close()
        loop.close()


class Http:
    """A keep-alive client of the gateway."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.token = token

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None
    ) -> tuple[int, dict[str, str], Any]:
        self.send(method, path, body, headers, raw)
        return self.receive()

    def send(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None
    ) -> None:
        """Send a request without waiting for its answer (:meth:`receive` reads it)."""
        h = {"Content-Type": "application/json"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        h.update(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        self.conn.request(method, path, body=data, headers=h)

    def receive(self) -> tuple[int, dict[str, str], Any]:
        """The answer to the request sent last: status, headers (lower-case), JSON body (or text)."""
        resp = self.conn.getresponse()
        payload = resp.read()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        if resp.getheader("Connection", "").lower() == "close":
            self.conn.close()
        try:
            return resp.status, hdrs, json.loads(payload)
        except ValueError:
            return resp.status, hdrs, payload.decode()

    def close(self) -> None:
        self.conn.close()


def path(model: str = "iris", env: str = "production", tenant: str = "acme", suffix: str = "/invocations") -> str:
    return f"/tenants/{tenant}/{env}/models/{model}{suffix}"


def split_body(rows: list[list[float]], columns: list[str] = IRIS_FEATURES) -> dict[str, Any]:
    return {"dataframe_split": {"columns": columns, "data": rows}}


# -- a seeded store for the REST API and the sidebar (test_server_ext.py, browser/) --------
def seed_mlops_store(home: Path) -> dict[str, Any]:
    """Fill ``home`` with what the REST and browser tests read, and deploy (starts its gateway).

    Tenant ``acme``: experiments ``churn`` (three finished runs with params and metrics, one
    failed) and ``baseline``; model ``iris`` 1.0.0 -> 1.1.0 -> 1.2.0 (with reference data);
    deployments ``production`` (1.0.0 then 1.1.0 at 50 %: a 50/50 split) and ``staging``
    (1.0.0). Tenant ``other``: experiment ``secret-exp`` and model ``secret`` deployed in
    production, which ``acme`` must never see.
    """
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    from mlops_jupyter import create_experiment_tracker, create_model_deployment, create_model_versioning

    X, y = load_iris(return_X_y=True, as_frame=True)
    where = {"storage_path": home}
    t = create_experiment_tracker(tenant_id="acme", **where)
    runs = {}
    for depth, acc in ((3, 0.91), (5, 0.94), (8, 0.93)):
        with t.start_experiment("churn", tags={"team": "growth"}, run_name=f"depth-{depth}") as run:
            t.log_params({"max_depth": depth, "model": "tree"})
            t.log_metrics({"accuracy": acc, "f1": round(acc - 0.02, 4), "loss": round(1 - acc, 4)})
        runs[f"depth-{depth}"] = run.run_id
        time.sleep(0.003)  # distinct start times: the API lists runs newest first
    t.start_experiment("churn", run_name="broken")
    runs["broken"] = t.end_experiment(status="failed")["run_id"]
    time.sleep(0.003)
    with t.start_experiment("baseline", run_name="majority-class") as run:
        t.log_metrics({"accuracy": 0.33})
    runs["majority-class"] = run.run_id

    v = create_model_versioning(tenant_id="acme", **where)
    v.create_version(
        "iris",
        model=LogisticRegression(max_iter=500).fit(X, y),
        reference_data=X,
        metadata={"training_data": "iris.csv"},
    )
    v.create_version("iris", model=DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, y), reference_data=X)
    v.create_version("iris", model=DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y), reference_data=X)
    d = create_model_deployment(tenant_id="acme", **where)
    for version, environment, pct in (
        ("1.0.0", "production", 100),
        ("1.1.0", "production", 50),
        ("1.0.0", "staging", 100),
    ):
        r = d.deploy_model("iris", version, environment, traffic_percentage=pct)
        assert r["status"] == "deployed", r

    other_t = create_experiment_tracker(tenant_id="other", **where)
    with other_t.start_experiment("secret-exp", run_name="hidden") as run:
        other_t.log_metrics({"accuracy": 0.99})
    runs["other"] = run.run_id
    create_model_versioning(tenant_id="other", **where).create_version(
        "secret", model=LogisticRegression(max_iter=500).fit(X, y), reference_data=X
    )
    other_d = create_model_deployment(tenant_id="other", **where)
    assert other_d.deploy_model("secret", "1.0.0", "production")["status"] == "deployed"
    info = json.loads((home / "gateway.json").read_text())
    return {
        "home": home,
        "runs": runs,
        "X": X,
        "port": info["port"],
        "token": d.get_token(),
        "other_token": other_d.get_token(),
        "deployment": d,
    }
