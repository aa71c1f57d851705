"""A real team server for the session: PostgreSQL and two ``mlflow server`` processes.

``team`` starts them once (see :mod:`team.servers`, shared with ``benchmarks/tracking.py``):
an open server (tenants are a namespace) and one with MLflow's basic-auth app (tenants
enforced by the server), both over PostgreSQL with proxied artifacts, all on 127.0.0.1,
all stopped at the end of the session.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import close_stores

from mlops_jupyter.config import env
from team.servers import TeamServers, start_team_servers, stop_team_servers

CLIENT_ENV = (
    env.MLOPS_TENANT,
    env.MLFLOW_TRACKING_URI,
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLOPS_TENANT_USERS",
    "MLOPS_DEPLOY_TARGET",
)


@pytest.fixture(scope="session")
def team(tmp_path_factory: pytest.TempPathFactory) -> TeamServers:
    # two worker processes each, as the README advises (one per core): requests of one client
    # land on different workers, so nothing may rely on one process' memory (the auth app's
    # users and permissions live in PostgreSQL). The open server is MLflow's own store; the
    # one with the auth app runs our bulk metric store (mlops+postgresql+psycopg), so the
    # tenant tests show the server's auth in front of it
    servers = start_team_servers(tmp_path_factory.mktemp("team"), workers=2, bulk_auth=True)
    yield servers
    stop_team_servers(servers)


@pytest.fixture(scope="session")
def server_url(team: TeamServers) -> str:
    """The open server (no auth app)."""
    return team.open_server.url


@pytest.fixture(scope="session")
def auth_url(team: TeamServers) -> str:
    """The server with ``--app-name basic-auth`` (default permission NO_PERMISSIONS)."""
    return team.auth_server.url


@pytest.fixture
def client_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A notebook user's local home (journal, model cache, deployment state); no MLflow or
    tenant environment variables leak in from the outer environment."""
    for var in CLIENT_ENV:
        monkeypatch.delenv(var, raising=False)
    h = tmp_path / "client-home"
    monkeypatch.setenv(env.MLOPS_HOME, str(h))
    yield h
    close_stores(h)
