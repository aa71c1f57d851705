"""The tracking store: the one place MLflow clients are built, plus the batched writer.

One :class:`TrackingStore` exists per (tracking URI, home) in a process and is shared by
every tracker and versioning object using those settings. It owns:

- an ``MlflowClient`` built from the explicit URI (never ``mlflow.set_tracking_uri``);
- the background writer and its journal;
- crash recovery: journals and RUNNING runs of dead processes are replayed and marked
  KILLED the first time the store is used.

On the embedded sqlite store, runs are created and data is written in bulk into MLflow's
own tables (see :mod:`mlops_jupyter.storage.mlflow_sql`); on a tracking server or another
DB, runs are created synchronously and data goes through ``MlflowClient.log_batch``
(:class:`~mlops_jupyter.storage.sinks.ClientSink`).
"""

from __future__ import annotations

import atexit
import getpass
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from mlops_jupyter.config import settings as layout
from mlops_jupyter.config.names import TENANT_TAG, Tenancy
from mlops_jupyter.config.settings import Settings
from mlops_jupyter.config.times import now_ms
from mlops_jupyter.errors import StoreError, TenantAccessError
from mlops_jupyter.storage import journal as journal_mod
from mlops_jupyter.storage.server_reach import BoundedClient, bounded, is_server
from mlops_jupyter.storage.sinks import SESSION_TAG, Sink, rejection_error
from mlops_jupyter.storage.writer import BatchWriter

log = logging.getLogger(__name__)

_STORES: dict[tuple[str, str], TrackingStore] = {}
_STORES_LOCK = threading.Lock()
_RECOVERY_CHECK_S = 1.0
"""A reading process looks for journals of dead processes at most this often."""


class CreatedRun(NamedTuple):
    """A run :meth:`TrackingStore.create_run` opened."""

    run_id: str
    artifact_uri: str


class _Experiment(NamedTuple):
    experiment_id: str
    artifact_location: str


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


class TrackingStore:
    """Shared access to one MLflow store. Use :meth:`for_settings`, not the constructor."""

    def __init__(self, tracking_uri: str, home: Path) -> None:
        self.tracking_uri = tracking_uri
        self.home = Path(home)
        self._lock = threading.RLock()
        self._client: Any = None
        self._writer: BatchWriter | None = None
        self._sink: Sink | None = None
        self._fast = False
        self._experiments: dict[str, _Experiment] = {}  # full name -> id, artifact location
        self._recovered_at = -1e9  # monotonic time of the last recovery check of a reader
        self.user = _user()

    @classmethod
    def for_settings(cls, settings: Settings) -> TrackingStore:
        key = (settings.tracking_uri, str(settings.home))
        with _STORES_LOCK:
            store = _STORES.get(key)
            if store is None:
                store = _STORES[key] = cls(settings.tracking_uri, settings.home)
            return store

    @property
    def sqlite_db(self) -> Path | None:
        """The embedded MLflow DB file of a ``sqlite:///`` store, else None."""
        return layout.sqlite_db_path(self.tracking_uri)

    @property
    def is_sqlite(self) -> bool:
        return self.sqlite_db is not None

    # -- clients -----------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The ``MlflowClient`` for this store (tracking and registry on the same URI). On a
        tracking server, every call of it is bounded (:class:`~.server_reach.BoundedClient`):
        a server that is down is a ``ServerUnreachableError`` in seconds."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    raw = self._make_client()
                    self._client = BoundedClient(raw, self.tracking_uri) if is_server(self.tracking_uri) else raw
        return self._client

    @property
    def raw_client(self) -> Any:
        """The plain ``MlflowClient``, for the writer (which bounds and retries on its own)."""
        client = self.client
        return client.raw if isinstance(client, BoundedClient) else client

    def _make_client(self) -> Any:
        from mlflow import MlflowClient

        db = self.sqlite_db
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
            layout.artifact_root(self.home).mkdir(parents=True, exist_ok=True)
            pre = db.exists()
            # Create the client and touch both stores so MLflow creates/migrates its tables
            # now (without its INFO lines in the user's notebook), then switch the file to
            # WAL so two kernels can write while others read.
            db_log = logging.getLogger("mlflow.store.db.utils")
            level = db_log.level
            db_log.setLevel(logging.WARNING)
            try:
                client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
                client._tracking_client.store  # noqa: B018
                client._get_registry_client().store  # noqa: B018
            finally:
                db_log.setLevel(level)
            if not pre:
                log.info("mlops_jupyter: created embedded store %s", db)
            from mlops_jupyter.storage.mlflow_sql import connect_sqlite

            connect_sqlite(db).close()
            return client
        from mlops_jupyter.storage import pg_store

        uri = self.tracking_uri
        if pg_store.PREFIX + uri.split("://", 1)[0] in pg_store.SCHEMES:
            uri = pg_store.PREFIX + uri  # PostgreSQL used directly: MLflow's store with the bulk metric write
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    @property
    def writer(self) -> BatchWriter:
        if self._writer is None:
            with self._lock:
                if self._writer is None:
                    self._writer = self._make_writer()
        return self._writer

    def _make_writer(self) -> BatchWriter:
        self._sink, self._fast = self._open_sink()
        with bounded(self.tracking_uri):
            self._recover(self._sink)
        journal = journal_mod.Journal(layout.journal_dir(self.home, self.tracking_uri))
        writer = BatchWriter(self._sink, journal)
        _register_exit(self)
        return writer

    @property
    def session_token(self) -> str:
        j = self.writer.journal
        return j.token if j is not None else f"{os.getpid()}"

    def _open_sink(self) -> tuple[Sink, bool]:
        """The fastest sink this store allows, and whether it is the bulk sqlite one."""
        from mlops_jupyter.storage import mlflow_sql
        from mlops_jupyter.storage.sinks import ClientSink

        client = self.raw_client
        db = self.sqlite_db
        if db is not None and mlflow_sql.bulk_schema_ok(db):
            return mlflow_sql.SqliteSink(db), True
        concurrency = layout.server_write_concurrency() if is_server(self.tracking_uri) else 1
        return ClientSink(client, concurrency), False

    # -- recovery ----------------------------------------------------------------------
    def recover_for_read(self) -> None:
        """Before a read in a process that has not written (so has no writer, which recovers
        when it starts): replay the journals of dead processes and mark their runs KILLED, so
        a process that only reads sees every point a killed one logged. Checked at most once
        a second (a few ``flock`` calls when nothing is orphaned); the sink used is closed
        again at once."""
        if self._writer is not None:
            return
        now = time.monotonic()
        if now - self._recovered_at < _RECOVERY_CHECK_S:
            return
        jdir = layout.journal_dir(self.home, self.tracking_uri)
        with self._lock:
            self._recovered_at = now
            if self._writer is not None or not any(True for _ in journal_mod.orphans_peek(jdir)):
                return
            sink, _fast = self._open_sink()
            try:
                with bounded(self.tracking_uri):
                    self._recover(sink)
            finally:
                sink.close()

    def _recover(self, sink: Sink) -> None:
        """Replay journals of dead processes and mark their open runs KILLED."""
        jdir = layout.journal_dir(self.home, self.tracking_uri)
        for orphan in journal_mod.orphans(jdir):
            ops = list(journal_mod.read_segments(orphan.segments))
            try:
                rejected = sink.write(ops) if ops else None
                if rejected:  # refused for good: replaying again could never store them
                    log.warning("mlops_jupyter: replaying journal %s: %s", orphan.token, rejection_error(rejected))
                killed = sink.mark_killed(orphan.token)
            except Exception as exc:
                log.warning("mlops_jupyter: could not recover journal %s yet: %s", orphan.token, exc)
                os.close(orphan.lock_fd)
                continue
            log.info(
                "mlops_jupyter: recovered %d op(s), %d killed run(s) of session %s", len(ops), killed, orphan.token
            )
            journal_mod.release(jdir, orphan)

    # -- experiments -------------------------------------------------------------------
    def experiment_id(self, tenancy: Tenancy, name: str) -> str:
        """Get or create the tenant's experiment ``name``; returns its id."""
        full = tenancy.experiment_name(name)
        cached = self._experiments.get(full)
        if cached is not None:
            return cached.experiment_id
        client = self.client
        exp = client.get_experiment_by_name(full)
        if exp is None:
            from mlflow.exceptions import MlflowException

            location = None  # a tracking server chooses (its proxied artifact store)
            if not self.tracking_uri.startswith(("http://", "https://")):  # a DB: not MLflow's ./mlruns in the cwd
                location = layout.tenant_artifact_root(self.home, tenancy.tenant).as_uri()
            try:
                client.create_experiment(full, artifact_location=location, tags={TENANT_TAG: tenancy.tenant})
            except MlflowException:
                pass  # created concurrently by another process
            exp = client.get_experiment_by_name(full)
            if exp is None:
                raise StoreError(f"Could not create experiment {full!r} in {self.tracking_uri}.")
        if not tenancy.owns_experiment(exp):
            raise TenantAccessError(f"Experiment {full!r} is not tagged for tenant {tenancy.tenant!r}.", value=name)
        if exp.lifecycle_stage == "deleted":
            self.client.restore_experiment(exp.experiment_id)
        self._experiments[full] = _Experiment(exp.experiment_id, exp.artifact_location)
        return exp.experiment_id

    def tenant_experiments(self, tenancy: Tenancy) -> list[Any]:
        exps = self.client.search_experiments(
            filter_string=f"name LIKE '{tenancy.experiment_prefix}%'", max_results=50000
        )
        return [e for e in exps if tenancy.owns_experiment(e)]

    # -- runs --------------------------------------------------------------------------
    def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str], start_ms: int) -> CreatedRun:
        """Create a RUNNING run (in the background on the embedded store)."""
        writer = self.writer
        tags = dict(tags)
        tags[SESSION_TAG] = self.session_token
        tags.setdefault("mlflow.user", self.user)
        tags.setdefault("mlflow.source.type", "LOCAL")
        if self._fast:
            known = next((e for e in self._experiments.values() if e.experiment_id == experiment_id), None)
            location = (
                known.artifact_location
                if known is not None
                else self.client.get_experiment(experiment_id).artifact_location
            )
            run_id = uuid.uuid4().hex
            artifact_uri = f"{location.rstrip('/')}/{run_id}/artifacts"
            tags["mlflow.runName"] = run_name
            writer.submit(
                {
                    "k": "run",
                    "id": run_id,
                    "exp": experiment_id,
                    "name": run_name,
                    "user": self.user,
                    "start": start_ms,
                    "art": artifact_uri,
                    "tags": tags,
                }
            )
            return CreatedRun(run_id, artifact_uri)
        run = self.client.create_run(experiment_id, start_time=start_ms, tags=tags, run_name=run_name)
        return CreatedRun(run.info.run_id, run.info.artifact_uri)

    def log(self, run_id: str, *, metrics=None, params=None, tags=None, step: int = 0, ts: int | None = None) -> None:
        op: dict[str, Any] = {"k": "log", "id": run_id, "ts": ts if ts is not None else now_ms(), "step": step}
        if metrics:
            op["m"] = metrics
        if params:
            op["p"] = params
        if tags:
            op["t"] = tags
        self.writer.submit(op)

    def end_run(self, run_id: str, status: str, end_ms: int | None = None) -> None:
        self.writer.submit({"k": "end", "id": run_id, "status": status, "end": end_ms or now_ms()})

    def log_text(self, artifact_uri: str, artifact_file: str, text: str) -> None:
        """Queue a small text artifact (e.g. a cell's source); written by the writer thread."""
        self.writer.submit({"k": "art", "id": "", "uri": artifact_uri, "file": artifact_file, "text": text})

    def flush(self, timeout: float | None = 120.0) -> None:
        """Store what this process queued, before a read; a process that never wrote
        recovers what dead processes journaled instead (:meth:`recover_for_read`)."""
        if self._writer is not None:
            self._writer.flush(timeout)
        else:
            self.recover_for_read()

    def log_artifact(self, artifact_uri: str, local_path: str, artifact_path: str | None = None) -> None:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        # explicit tracking URI: a server's "mlflow-artifacts:/" URIs resolve against it, not
        # against MLflow's global tracking URI
        repo = get_artifact_repository(artifact_uri, tracking_uri=self.tracking_uri)
        with bounded(self.tracking_uri):
            if os.path.isdir(local_path):
                name = os.path.basename(os.path.normpath(local_path))
                repo.log_artifacts(local_path, f"{artifact_path}/{name}" if artifact_path else name)
            else:
                repo.log_artifact(local_path, artifact_path)

    def get_run(self, tenancy: Tenancy, run_id: str) -> Any:
        """The MLflow run ``run_id`` if it belongs to ``tenancy``'s tenant."""
        from mlflow.exceptions import MlflowException

        from mlops_jupyter.errors import RunNotFoundError

        self.flush()
        if not isinstance(run_id, str) or not run_id.isalnum():
            raise RunNotFoundError(f"Invalid run id {run_id!r}.", value=run_id, allowed="a 32-character hex run id")
        try:
            run = self.client.get_run(run_id)
        except MlflowException as exc:
            raise RunNotFoundError(f"No run {run_id!r} in {self.tracking_uri}.", value=run_id) from exc
        tenancy.check_run(run)
        return run

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._sink is not None:
            self._sink.close()


_EXIT_REGISTERED: weakref.WeakSet[TrackingStore] = weakref.WeakSet()
_EXIT_HOOKED = False
_BEFORE_EXIT: list[Callable[[], None]] = []


def before_close_at_exit(fn: Callable[[], None]) -> None:
    """Call ``fn`` at interpreter exit before the stores are flushed and closed (the tracker
    ends its open runs there, so their end is written with the rest)."""
    if fn not in _BEFORE_EXIT:
        _BEFORE_EXIT.append(fn)


def _register_exit(store: TrackingStore) -> None:
    global _EXIT_HOOKED
    _EXIT_REGISTERED.add(store)
    if not _EXIT_HOOKED:
        atexit.register(_close_all)
        _EXIT_HOOKED = True


def _close_all() -> None:
    """At interpreter exit: the hooks first (the tracker ends runs still open), then flush."""
    for fn in _BEFORE_EXIT:
        try:
            fn()
        except Exception as exc:  # never raise at exit
            log.warning("mlops_jupyter: exit hook %r failed: %s", fn, exc)
    for store in list(_EXIT_REGISTERED):
        try:
            store.close()
        except Exception as exc:  # never raise at exit
            log.warning("mlops_jupyter: could not flush %s at exit: %s", store.tracking_uri, exc)
