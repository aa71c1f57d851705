"""The embedded store: state of ours that does not belong in MLflow (deployments).

MLflow holds experiments, runs and registered versions. What the serving gateway needs
to restore its routes after a restart (which versions of which model are deployed where,
with what traffic split and config) lives here, in a small sqlite file ``{home}/mlops.db``
in WAL mode, so one writer (the gateway) and many readers (kernels, the CLI) work at once.

Everything goes through the :class:`EmbeddedStore` protocol, a handful of methods on plain
dicts, so the store can move to PostgreSQL (``psycopg`` with the same two tables) without
touching its callers. :func:`open_embedded_store` picks the implementation.

Example:
    >>> store = open_embedded_store("/tmp/store")
    >>> store.list_deployments(tenant="acme")
    []
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Protocol

DB_NAME = "mlops.db"
SCHEMA_VERSION = 1

# Record fields stored as JSON text (dicts and lists); the rest are plain columns.
_JSON_FIELDS = ("traffic", "versions", "config", "history", "extra")
_COLUMNS = (
    "tenant", "environment", "model_id", "deployment_id", "status", "reason", "revision",
    "created_at", "updated_at", *_JSON_FIELDS,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mlops_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deployments (
    tenant        TEXT NOT NULL,
    environment   TEXT NOT NULL,
    model_id      TEXT NOT NULL,
    deployment_id TEXT NOT NULL,
    status        TEXT NOT NULL,
    reason        TEXT,
    revision      INTEGER NOT NULL DEFAULT 0,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    traffic       TEXT NOT NULL DEFAULT '{}',
    versions      TEXT NOT NULL DEFAULT '{}',
    config        TEXT NOT NULL DEFAULT '{}',
    history       TEXT NOT NULL DEFAULT '[]',
    extra         TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant, environment, model_id)
);
"""


class EmbeddedStore(Protocol):
    """What callers may do with the embedded store (the whole interface).

    A deployment record is a dict with the keys ``tenant``, ``environment``, ``model_id``,
    ``deployment_id``, ``status``, ``reason``, ``revision``, ``created_at``, ``updated_at``
    (unix seconds), ``traffic`` (version -> percentage), ``versions`` (version -> what the
    gateway needs to load it), ``config``, ``history`` (earlier traffic tables, oldest
    first) and ``extra``.
    """

    def get_deployment(self, tenant: str, environment: str, model_id: str) -> dict[str, Any] | None:
        """The record of one deployment, or None."""

    def put_deployment(self, record: dict[str, Any]) -> None:
        """Insert or replace a record (keyed by tenant, environment, model_id)."""

    def delete_deployment(self, tenant: str, environment: str, model_id: str) -> bool:
        """Delete a record; True if there was one."""

    def list_deployments(self, tenant: str | None = None, environment: str | None = None,
                         model_id: str | None = None) -> list[dict[str, Any]]:
        """Records matching every filter given, ordered by tenant, environment, model."""

    def get_meta(self, key: str) -> str | None:
        """A small named setting kept with the store (e.g. the gateway's last port)."""

    def set_meta(self, key: str, value: str) -> None:
        """Set a named setting."""

    def close(self) -> None:
        """Release connections."""


class SqliteEmbeddedStore:
    """:class:`EmbeddedStore` on a sqlite file in WAL mode (the embedded default).

    Args:
        path: the database file; its folder is created if missing.

    Example:
        >>> s = SqliteEmbeddedStore(Path("/tmp/store/mlops.db"))
        >>> s.get_deployment("acme", "production", "churn") is None
        True
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False,
                                     isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout=30000")
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:  # pragma: no cover - e.g. a file system without shm
            pass
        self._conn.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._conn.executescript(_SCHEMA)
            self._conn.execute(
                "INSERT OR IGNORE INTO mlops_meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    @staticmethod
    def _row(row: tuple[Any, ...]) -> dict[str, Any]:
        rec = dict(zip(_COLUMNS, row))
        for f in _JSON_FIELDS:
            rec[f] = json.loads(rec[f]) if rec[f] else ({} if f != "history" else [])
        return rec

    def get_deployment(self, tenant: str, environment: str, model_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM deployments "
                "WHERE tenant = ? AND environment = ? AND model_id = ?",
                (tenant, environment, model_id),
            ).fetchone()
        return self._row(row) if row else None

    def put_deployment(self, record: dict[str, Any]) -> None:
        now = time.time()
        rec = dict(record)
        rec.setdefault("created_at", now)
        rec["updated_at"] = rec.get("updated_at") or now
        rec.setdefault("reason", None)
        rec.setdefault("revision", 0)
        values = []
        for c in _COLUMNS:
            v = rec.get(c)
            if c in _JSON_FIELDS:
                v = json.dumps(v if v is not None else ([] if c == "history" else {}), sort_keys=True)
            values.append(v)
        with self._lock:
            self._conn.execute(
                f"INSERT OR REPLACE INTO deployments ({', '.join(_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_COLUMNS))})",
                values,
            )

    def delete_deployment(self, tenant: str, environment: str, model_id: str) -> bool:
        with self._lock:
            cur = self._conn.execute(
                "DELETE FROM deployments WHERE tenant = ? AND environment = ? AND model_id = ?",
                (tenant, environment, model_id),
            )
        return cur.rowcount > 0

    def list_deployments(self, tenant: str | None = None, environment: str | None = None,
                         model_id: str | None = None) -> list[dict[str, Any]]:
        where, args = [], []
        for col, val in (("tenant", tenant), ("environment", environment), ("model_id", model_id)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = f"SELECT {', '.join(_COLUMNS)} FROM deployments"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY tenant, environment, model_id"
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [self._row(r) for r in rows]

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM mlops_meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO mlops_meta (key, value) VALUES (?, ?)", (key, str(value)))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def open_embedded_store(home: str | Path) -> EmbeddedStore:
    """Open the embedded store of a storage home (``{home}/mlops.db``).

    This is the one place that chooses the implementation; a PostgreSQL store would be
    selected here from a setting.

    Args:
        home: the storage home (``Settings.home``).

    Returns:
        An :class:`EmbeddedStore`.

    Example:
        >>> store = open_embedded_store("/tmp/store")
        >>> [d["model_id"] for d in store.list_deployments(tenant="acme")]
        []
    """
    return SqliteEmbeddedStore(Path(home) / DB_NAME)
