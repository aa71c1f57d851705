"""The embedded store: state of ours that does not belong in MLflow (deployments, alerts).

MLflow holds experiments, runs and registered versions. What the serving gateway needs
to restore its routes after a restart (which versions of which model are deployed where,
with what traffic split and config) lives here, in a small sqlite file ``{home}/mlops.db``
in WAL mode, so one writer (the gateway) and many readers (kernels, the CLI) work at once.
So do alert rules (with their pending/firing state) and the alert history, which kernels
and the gateway's alert pass both read and change: state changes are compare-and-set on a
rule's ``revision``, so two processes evaluating one rule never both fire it.

Everything goes through the :class:`EmbeddedStore` protocol, a handful of methods on plain
dicts, so the store can move to PostgreSQL (``psycopg`` with the same tables) without
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

from mlops_jupyter.config.settings import state_db_path

SCHEMA_VERSION = 2

# Record fields stored as JSON text (dicts and lists); the rest are plain columns.
_JSON_FIELDS = ("traffic", "versions", "config", "history", "extra")
_COLUMNS = (
    "tenant",
    "environment",
    "model_id",
    "deployment_id",
    "status",
    "reason",
    "revision",
    "created_at",
    "updated_at",
    *_JSON_FIELDS,
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
CREATE TABLE IF NOT EXISTS alert_rules (
    alert_id      TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    model_id      TEXT NOT NULL,
    condition     TEXT NOT NULL,
    action        TEXT NOT NULL,
    cooldown_s    REAL NOT NULL,
    for_s         REAL NOT NULL,
    severity      TEXT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'inactive',
    revision      INTEGER NOT NULL DEFAULT 0,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    extra         TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS alert_rules_by_model ON alert_rules (tenant, model_id);
CREATE TABLE IF NOT EXISTS alert_events (
    event_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id      TEXT NOT NULL,
    tenant        TEXT NOT NULL,
    model_id      TEXT NOT NULL,
    condition     TEXT NOT NULL,
    severity      TEXT NOT NULL,
    action        TEXT NOT NULL,
    state         TEXT NOT NULL,
    delivery      TEXT NOT NULL DEFAULT 'none',
    started_at    REAL,
    fired_at      REAL,
    resolved_at   REAL,
    updated_at    REAL NOT NULL,
    metric_values TEXT NOT NULL DEFAULT '{}',
    action_result TEXT
);
CREATE INDEX IF NOT EXISTS alert_events_by_model ON alert_events (tenant, model_id, event_id);
"""

_RULE_COLUMNS = (
    "alert_id",
    "tenant",
    "model_id",
    "condition",
    "action",
    "cooldown_s",
    "for_s",
    "severity",
    "state",
    "revision",
    "created_at",
    "updated_at",
    "extra",
)
_EVENT_COLUMNS = (
    "event_id",
    "alert_id",
    "tenant",
    "model_id",
    "condition",
    "severity",
    "action",
    "state",
    "delivery",
    "started_at",
    "fired_at",
    "resolved_at",
    "updated_at",
    "values",
    "action_result",
)
# dict key -> column, where they differ ("values" is an SQL keyword)
_EVENT_SQL = {"values": "metric_values"}


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

    def list_deployments(
        self, tenant: str | None = None, environment: str | None = None, model_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Records matching every filter given, ordered by tenant, environment, model."""

    def put_alert_rule(self, rule: dict[str, Any]) -> None:
        """Insert or replace an alert rule (keyed by ``alert_id``).

        A rule has ``alert_id``, ``tenant``, ``model_id``, ``condition``, ``action``,
        ``cooldown_s``, ``for_s``, ``severity``, ``state`` (inactive, pending, firing),
        ``revision``, ``created_at``, ``updated_at`` and ``extra`` (a dict: pending
        since, last fired, open event, last values).
        """

    def list_alert_rules(
        self, tenant: str | None = None, model_id: str | None = None, alert_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Rules matching every filter given, oldest first."""

    def update_alert_rule(self, alert_id: str, changes: dict[str, Any], revision: int | None = None) -> bool:
        """Change a rule and bump its ``revision``; with ``revision``, only if the rule is
        still at it (compare-and-set). True if changed."""

    def delete_alert_rule(self, alert_id: str) -> bool:
        """Delete a rule (its history stays); True if there was one."""

    def add_alert_event(self, event: dict[str, Any]) -> int:
        """Append an alert-history entry; returns its ``event_id``.

        An entry has ``alert_id``, ``tenant``, ``model_id``, ``condition``, ``severity``,
        ``action``, ``state`` (pending, firing, resolved), ``delivery`` (none, undelivered,
        delivering, delivered, failed), ``started_at``, ``fired_at``, ``resolved_at``,
        ``updated_at`` (unix seconds), ``values`` (dict) and ``action_result`` (dict or None).
        """

    def update_alert_event(self, event_id: int, changes: dict[str, Any], expect: dict[str, Any] | None = None) -> bool:
        """Change an entry; with ``expect``, only if its fields still have those values."""

    def delete_alert_event(self, event_id: int) -> bool:
        """Delete an entry (a pending alert that cleared before it fired)."""

    def list_alert_events(
        self,
        tenant: str,
        model_id: str | None = None,
        alert_id: str | None = None,
        delivery: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """A tenant's history entries matching every filter given, newest first."""

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
        self._conn = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False, isolation_level=None)
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
                f"SELECT {', '.join(_COLUMNS)} FROM deployments WHERE tenant = ? AND environment = ? AND model_id = ?",
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
                f"INSERT OR REPLACE INTO deployments ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                values,
            )

    def delete_deployment(self, tenant: str, environment: str, model_id: str) -> bool:
        with self._lock:
            cur = self._conn.execute(
                "DELETE FROM deployments WHERE tenant = ? AND environment = ? AND model_id = ?",
                (tenant, environment, model_id),
            )
        return cur.rowcount > 0

    def list_deployments(
        self, tenant: str | None = None, environment: str | None = None, model_id: str | None = None
    ) -> list[dict[str, Any]]:
        where, args = _filters(tenant=tenant, environment=environment, model_id=model_id)
        sql = f"SELECT {', '.join(_COLUMNS)} FROM deployments{where} ORDER BY tenant, environment, model_id"
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [self._row(r) for r in rows]

    # -- alert rules and history ---------------------------------------------------------
    @staticmethod
    def _rule(row: tuple[Any, ...]) -> dict[str, Any]:
        rec = dict(zip(_RULE_COLUMNS, row))
        rec["extra"] = json.loads(rec["extra"]) if rec["extra"] else {}
        return rec

    @staticmethod
    def _event(row: tuple[Any, ...]) -> dict[str, Any]:
        rec = dict(zip(_EVENT_COLUMNS, row))
        rec["values"] = json.loads(rec["values"]) if rec["values"] else {}
        rec["action_result"] = json.loads(rec["action_result"]) if rec["action_result"] else None
        return rec

    def put_alert_rule(self, rule: dict[str, Any]) -> None:
        now = time.time()
        rec = {"state": "inactive", "revision": 0, "created_at": now, "extra": {}, **rule}
        rec["updated_at"] = rule.get("updated_at") or now
        values = [json.dumps(rec[c], sort_keys=True, default=str) if c == "extra" else rec[c] for c in _RULE_COLUMNS]
        with self._lock:
            self._conn.execute(
                f"INSERT OR REPLACE INTO alert_rules ({', '.join(_RULE_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_RULE_COLUMNS))})",
                values,
            )

    def list_alert_rules(
        self, tenant: str | None = None, model_id: str | None = None, alert_id: str | None = None
    ) -> list[dict[str, Any]]:
        where, args = _filters(tenant=tenant, model_id=model_id, alert_id=alert_id)
        sql = f"SELECT {', '.join(_RULE_COLUMNS)} FROM alert_rules{where} ORDER BY created_at, alert_id"
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [self._rule(r) for r in rows]

    def update_alert_rule(self, alert_id: str, changes: dict[str, Any], revision: int | None = None) -> bool:
        allowed = set(_RULE_COLUMNS) - {"alert_id", "tenant", "revision"}
        bad = set(changes) - allowed
        if bad:
            raise ValueError(f"unknown alert rule field(s) {sorted(bad)}")
        sets = [f"{k} = ?" for k in changes] + ["revision = revision + 1"]
        args = [json.dumps(v, sort_keys=True, default=str) if k == "extra" else v for k, v in changes.items()]
        sql = f"UPDATE alert_rules SET {', '.join(sets)} WHERE alert_id = ?"
        args.append(alert_id)
        if revision is not None:
            sql += " AND revision = ?"
            args.append(revision)
        with self._lock:
            cur = self._conn.execute(sql, args)
        return cur.rowcount > 0

    def delete_alert_rule(self, alert_id: str) -> bool:
        with self._lock:
            cur = self._conn.execute("DELETE FROM alert_rules WHERE alert_id = ?", (alert_id,))
        return cur.rowcount > 0

    @staticmethod
    def _event_value(key: str, value: Any) -> Any:
        if key in ("values", "action_result"):
            return None if value is None and key == "action_result" else json.dumps(value, sort_keys=True, default=str)
        return value

    def add_alert_event(self, event: dict[str, Any]) -> int:
        rec = {"delivery": "none", "values": {}, "action_result": None, "updated_at": time.time(), **event}
        cols = [c for c in _EVENT_COLUMNS if c != "event_id" and c in rec]
        with self._lock:
            cur = self._conn.execute(
                f"INSERT INTO alert_events ({', '.join(_EVENT_SQL.get(c, c) for c in cols)}) "
                f"VALUES ({', '.join('?' * len(cols))})",
                [self._event_value(c, rec[c]) for c in cols],
            )
        return int(cur.lastrowid)

    def update_alert_event(self, event_id: int, changes: dict[str, Any], expect: dict[str, Any] | None = None) -> bool:
        bad = (set(changes) | set(expect or {})) - (set(_EVENT_COLUMNS) - {"event_id"})
        if bad:
            raise ValueError(f"unknown alert event field(s) {sorted(bad)}")
        changes = {"updated_at": time.time(), **changes}
        sql = f"UPDATE alert_events SET {', '.join(f'{_EVENT_SQL.get(k, k)} = ?' for k in changes)} WHERE event_id = ?"
        args = [self._event_value(k, v) for k, v in changes.items()] + [event_id]
        for k, v in (expect or {}).items():
            sql += f" AND {_EVENT_SQL.get(k, k)} IS ?"
            args.append(self._event_value(k, v))
        with self._lock:
            cur = self._conn.execute(sql, args)
        return cur.rowcount > 0

    def delete_alert_event(self, event_id: int) -> bool:
        with self._lock:
            cur = self._conn.execute("DELETE FROM alert_events WHERE event_id = ?", (event_id,))
        return cur.rowcount > 0

    def list_alert_events(
        self,
        tenant: str,
        model_id: str | None = None,
        alert_id: str | None = None,
        delivery: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        where, args = _filters(("tenant",), tenant=tenant, model_id=model_id, alert_id=alert_id, delivery=delivery)
        sql = (
            f"SELECT {', '.join(_EVENT_SQL.get(c, c) for c in _EVENT_COLUMNS)} FROM alert_events{where} "
            "ORDER BY event_id DESC"
        )
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [self._event(r) for r in rows]

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


def _filters(always: tuple[str, ...] = (), **equal: Any) -> tuple[str, list[Any]]:
    """``(" WHERE a = ? AND b = ?", [a, b])`` for the arguments that are not None, and for the
    columns in ``always`` whatever their value (a tenant filter is never dropped). Column names
    come from our keyword arguments, never from callers' values."""
    cols = [c for c, v in equal.items() if v is not None or c in always]
    where = " WHERE " + " AND ".join(f"{c} = ?" for c in cols) if cols else ""
    return where, [equal[c] for c in cols]


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
    return SqliteEmbeddedStore(state_db_path(home))
