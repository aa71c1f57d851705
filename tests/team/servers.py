"""A real team server on this machine: PostgreSQL (Debian's package) and ``mlflow server``.

Shared by the team tests (``tests/team/conftest.py``) and the tracking benchmark
(``benchmarks/tracking.py``), so both start the servers the same way:

- :class:`Postgres`: ``initdb`` in a fresh folder owned by the ``postgres`` user (the
  tests run as root and PostgreSQL refuses to run as root: every command goes through
  ``runuser -u postgres --`` then), ``pg_ctl start`` on a free port on 127.0.0.1 with the
  socket in the same folder, ``pg_ctl stop`` at the end. Trust authentication on
  127.0.0.1 only.
- :class:`MlflowServer`: ``mlflow server --backend-store-uri postgresql+psycopg://...
  --serve-artifacts --artifacts-destination DIR`` on 127.0.0.1, optionally with
  ``--app-name basic-auth`` (its auth DB in the same PostgreSQL, default permission
  ``NO_PERMISSIONS``, admin from :data:`ADMIN`).

MLflow creates its tables on the first start against an empty database (tens of seconds on
PostgreSQL); :meth:`Postgres.create_database` can copy an already migrated database
instead (``CREATE DATABASE ... TEMPLATE``), which takes well under a second.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import NamedTuple


def _pg_bin() -> Path:
    """Debian's PostgreSQL binaries (the newest installed major version), or $MLOPS_PG_BIN."""
    if os.environ.get("MLOPS_PG_BIN"):
        return Path(os.environ["MLOPS_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
PG_USER = "postgres"
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 5.0  # then SIGKILL: a test server keeps nothing worth a longer wait


class Credentials(NamedTuple):
    username: str
    password: str


ADMIN = Credentials("mlops_admin", "admin-pass-0123")
"""The auth app's admin on the test server (created by MLflow on its first start)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    """Run ``cmd`` as the ``postgres`` user when we are root (PostgreSQL refuses root)."""
    return ["runuser", "-u", PG_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def _wait_http(url: str, proc: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError(f"{what} did not start:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)


def stop_process(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """Stop a process started with ``start_new_session=True`` and its children."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait()


def run_in_step(procs: list[subprocess.Popen], timeout: float) -> list[str]:
    """Run kernels that print ``@@ready`` and wait for a line on stdin: once all are ready,
    let them go together; returns their outputs (every one is killed if this fails)."""
    try:
        for p in procs:
            assert next(line for line in p.stdout if line.startswith("@@")).strip() == "@@ready"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        return [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, 9)


class Postgres:
    """A throw-away PostgreSQL cluster under ``root`` (see the module docstring).

    The cluster lives in a fresh folder under the system temp dir (not under pytest's
    ``tmp_path``, whose parents are private to root and closed to the ``postgres`` user),
    removed by :meth:`stop`.

    Args:
        durable: False turns ``fsync`` off (tests: faster, nothing to keep); the benchmark
            keeps PostgreSQL's defaults.
    """

    def __init__(self, durable: bool = True) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mlops-pg-"))
        self.durable = durable
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = 0

    def start(self) -> Postgres:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, PG_USER, PG_USER)
        subprocess.run(
            _as_postgres(
                [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", PG_USER, "-A", "trust", "-E", "UTF8", "--no-sync"]
            ),
            check=True,
            capture_output=True,
        )
        self.port = free_port()
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not self.durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        proc = subprocess.run(
            _as_postgres(
                [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "start"]
            ),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )
        if proc.returncode != 0:
            log = self.log.read_text()[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {proc.stderr}\n{log}")
        return self

    def stop(self) -> None:
        if self.port:
            subprocess.run(
                _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
                capture_output=True,
                timeout=60,
            )
            self.port = 0
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        """The SQLAlchemy URL MLflow takes (psycopg 3 driver)."""
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database ``name`` (a copy of ``template`` if given); returns its URL."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={PG_USER} dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url(name)

    def migrate(self, database: str) -> str:
        """Create MLflow's tables (tracking and registry) in ``database``; returns its URL.

        Done in a subprocess so no connection to it stays open (a database used as a
        template must have none).
        """
        url = self.url(database)
        code = (
            "import sys; from mlflow import MlflowClient; "
            "c = MlflowClient(sys.argv[1], registry_uri=sys.argv[1]); "
            "c._tracking_client.store; c._get_registry_client().store"
        )
        subprocess.run([sys.executable, "-c", code, url], check=True, capture_output=True, timeout=START_TIMEOUT_S)
        return url


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 over a PostgreSQL backend with proxied artifacts.

    Args:
        root: a folder for its artifacts, log and auth config.
        backend_uri: ``postgresql+psycopg://...`` of a (preferably migrated) database.
        auth_db_uri: given: run ``--app-name basic-auth`` with its users in this database,
            default permission ``NO_PERMISSIONS`` and :data:`ADMIN` as the admin.
        workers: server worker processes (uvicorn's). Each handles requests on its own core;
            its supervisor's health-check timeout is raised to :data:`START_TIMEOUT_S` so a
            worker slow to boot on a loaded machine is not killed in a loop.
    """

    def __init__(self, root: Path, backend_uri: str, auth_db_uri: str | None = None, workers: int = 1) -> None:
        self.port = 0  # chosen at the first start, kept by a restart (clients keep their URL)
        self.root = Path(root)
        self.backend_uri = backend_uri
        self.auth_db_uri = auth_db_uri
        self.workers = workers
        self.artifacts = self.root / "artifacts"
        self.log = self.root / "server.log"
        self.url = ""
        self._proc: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        """Launch the process (see :meth:`wait_ready`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        port = self.port = self.port or free_port()
        cmd = [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(self.workers),
            "--backend-store-uri",
            self.backend_uri,
            "--serve-artifacts",
            "--artifacts-destination",
            str(self.artifacts),
            # stop within 2 s on SIGTERM, even with clients' keep-alive connections open
            "--uvicorn-opts",
            f"--timeout-graceful-shutdown 2 --timeout-worker-healthcheck {int(START_TIMEOUT_S)}",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_", "MLFLOW_AUTH"))}
        # MLflow's job runner (a runner and 7 consumer processes, each importing MLflow) serves
        # nothing these tests or benchmarks use; on 2 cores it only slows the start
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        if self.auth_db_uri is not None:
            ini = self.root / "basic_auth.ini"
            ini.write_text(
                "[mlflow]\n"
                "default_permission = NO_PERMISSIONS\n"
                f"database_uri = {self.auth_db_uri}\n"
                f"admin_username = {ADMIN.username}\n"
                f"admin_password = {ADMIN.password}\n"
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            )
            cmd += ["--app-name", "basic-auth"]
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = secrets.token_hex(16)  # the auth app's CSRF key
        with open(self.log, "wb") as log:
            self._proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.root, env=env, start_new_session=True
            )
        self.url = f"http://127.0.0.1:{port}"
        return self

    def wait_ready(self) -> MlflowServer:
        """Block until the server answers ``/health`` (raises with its log if it died)."""
        _wait_http(f"{self.url}/health", self._proc, self.log, "mlflow server")
        return self

    def terminate(self) -> None:
        """Ask the server to stop (SIGTERM to its process group); :meth:`stop` waits."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, 15)

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc, timeout=STOP_TIMEOUT_S)
            self._proc = None


class TeamServers(NamedTuple):
    """What :func:`start_team_servers` started."""

    postgres: Postgres
    open_server: MlflowServer
    auth_server: MlflowServer | None


def start_team_servers(
    root: Path,
    with_auth: bool = True,
    durable: bool = False,
    workers: int = 1,
    bulk_open: bool = False,
    bulk_auth: bool = False,
) -> TeamServers:
    """PostgreSQL, then MLflow's tables migrated once into a template database, then one
    server (and one with basic-auth) each on its own copy. Stop with :func:`stop_team_servers`.

    ``bulk_open`` / ``bulk_auth``: that server's backend URI names our store plugin
    (``mlops+postgresql+psycopg``, ``mlops_jupyter/storage/pg_store.py``), not MLflow's store."""
    pg = Postgres(durable=durable).start()
    started: list[MlflowServer] = []
    try:
        pg.create_database("mlflow_template")
        pg.migrate("mlflow_template")
        open_uri = ("mlops+" if bulk_open else "") + pg.create_database("mlflow_team", template="mlflow_template")
        started.append(MlflowServer(Path(root) / "server", open_uri, workers=workers).start())
        if with_auth:  # both start at once: each takes ~15 s to import and boot
            auth_uri = ("mlops+" if bulk_auth else "") + pg.create_database(
                "mlflow_tenants", template="mlflow_template"
            )
            users_uri = pg.create_database("mlflow_users")
            started.append(
                MlflowServer(Path(root) / "auth-server", auth_uri, auth_db_uri=users_uri, workers=workers).start()
            )
        for server in started:
            server.wait_ready()
        open_server, auth_server = started[0], (started[1] if with_auth else None)
        return TeamServers(pg, open_server, auth_server)
    except BaseException:
        for s in started:
            s.stop()
        pg.stop()
        raise


def stop_team_servers(servers: TeamServers) -> None:
    """Stop both servers at once (each may wait for its keep-alive clients), then PostgreSQL."""
    running = [s for s in (servers.auth_server, servers.open_server) if s is not None]
    for s in running:
        s.terminate()
    for s in running:
        s.stop()
    servers.postgres.stop()
