"""Shared fixtures: every test gets its own real MLflow sqlite store in a temp folder.

Creating an MLflow sqlite DB runs its migrations (about 2 s), so the session builds one
pristine store once and each test copies the file (a few ms).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from mlops_jupyter import env


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlflow import MlflowClient

    from mlops_jupyter.core.sinks import connect_sqlite

    d = tmp_path_factory.mktemp("template")
    db = d / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{db}", registry_uri=f"sqlite:///{db}")
    client._tracking_client.store  # noqa: B018 - creates the tracking tables
    client._get_registry_client().store  # noqa: B018 - and the registry tables
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
    from mlops_jupyter.core import store as store_mod

    for key, st in list(store_mod._STORES.items()):
        if key[1] == str(h):
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
    TestingShell.clear_instance()


@pytest.fixture
def mlops_ip(ip, home):
    """``ip`` with ``%load_ext mlops_jupyter``; the store is the test's ``home``."""
    ip.run_cell("%load_ext mlops_jupyter")
    yield ip
    from mlops_jupyter.magics.autolog import wait_for_models

    wait_for_models()
    if "mlops_jupyter" in ip.extension_manager.loaded:
        ip.run_line_magic("unload_ext", "mlops_jupyter")  # ends the autolog session run


@pytest.fixture
def autolog_ip(mlops_ip):
    """``mlops_ip`` with ``%mlops autolog on``."""
    mlops_ip.run_cell("%mlops autolog on")
    return mlops_ip
