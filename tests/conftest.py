"""Shared fixtures: every test gets its own real MLflow sqlite store in a temp folder.

Creating an MLflow sqlite DB runs its migrations (about 2 s), so the session builds one
pristine store once and each test copies the file (a few ms).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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
