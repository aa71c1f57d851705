"""MLflow's private schema: every table, column and SQL statement we use on it.

The embedded store is MLflow's own sqlite DB (``{home}/mlflow.db``, created and migrated by
MLflow's SQLAlchemy models). Two paths go around MLflow's Python API for speed, and both
live in this module, so an MLflow release that changes the schema is dealt with here and
nowhere else:

- the bulk write path, :class:`SqliteSink`: the rows of a whole batch of ops (runs, tags,
  params, metric points, ``latest_metrics``, run ends) in one transaction. MLflow's
  ``log_batch`` on sqlite costs about 0.2 s per 1 000 metrics (ORM objects and a per-key
  read of ``latest_metrics``); the same rows through ``executemany`` and an upsert cost
  about 5 ms;
- the fast run read, :func:`read_runs`: a tenant's runs with their params, latest metrics
  and a few tags in five queries (``MlflowClient.search_runs`` builds an ORM object per
  param, metric and tag: about 5 s for 10 000 runs; this takes a small fraction of it).

Both are used only when the DB has the schema written below (:func:`bulk_schema_ok`,
:func:`read_schema_ok`); otherwise callers go through ``MlflowClient`` (slower, always
right). Everything written here is read back by MLflow's UI and clients exactly as if
MLflow had written it.

Tables and columns used::

    experiments     (experiment_id, name, lifecycle_stage)
    experiment_tags (key, value, experiment_id)
    runs            (run_uuid, name, source_type, source_name, entry_point_name, user_id,
                     status, start_time, end_time, source_version, lifecycle_stage,
                     artifact_uri, experiment_id, deleted_time)
    tags            (key, value, run_uuid)                          key (key, run_uuid)
    params          (key, value, run_uuid)                          key (key, run_uuid)
    metrics         (key, value, timestamp, run_uuid, step, is_nan) every point
    latest_metrics  (key, value, timestamp, step, is_nan, run_uuid) key (key, run_uuid)

Writers share the file with MLflow and other processes: connections are in WAL mode with a
long busy timeout (:func:`connect_sqlite`), a batch is one ``BEGIN IMMEDIATE`` transaction,
and readers open the file read-only.

On PostgreSQL, the bulk metric store (``storage/pg_store.py``) writes ``metrics`` and
``latest_metrics`` with the statements at the end of this module (:data:`PG_INSERT_POINTS`,
:data:`PG_UPSERT_LATEST`), and reads a run's ``lifecycle_stage`` (:func:`pg_run_stage`), when
:func:`pg_schema_ok`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

from mlops_jupyter.config.names import TENANT_TAG, Tenancy
from mlops_jupyter.config.times import now_ms
from mlops_jupyter.storage.sinks import SESSION_TAG, Rejected, write_text_artifacts

# Columns the bulk path writes, per table. The sink is only used when the installed
# MLflow's tables have (at least) these columns and no other NOT NULL column without a
# default; otherwise the store falls back to MlflowClient calls.
_RUN_COLS = (
    "run_uuid",
    "name",
    "source_type",
    "source_name",
    "entry_point_name",
    "user_id",
    "status",
    "start_time",
    "end_time",
    "source_version",
    "lifecycle_stage",
    "artifact_uri",
    "experiment_id",
    "deleted_time",
)
_WRITE_SCHEMA = {
    "runs": _RUN_COLS,
    "tags": ("key", "value", "run_uuid"),
    "params": ("key", "value", "run_uuid"),
    "metrics": ("key", "value", "timestamp", "run_uuid", "step", "is_nan"),
    "latest_metrics": ("key", "value", "timestamp", "step", "is_nan", "run_uuid"),
}
# What the fast read needs on top of it.
_READ_SCHEMA = {
    "experiments": ("experiment_id", "name", "lifecycle_stage"),
    "experiment_tags": ("key", "value", "experiment_id"),
}

_INSERT_RUN = f"INSERT OR IGNORE INTO runs ({','.join(_RUN_COLS)}) VALUES ({','.join('?' * len(_RUN_COLS))})"
_UPSERT_TAG = "INSERT OR REPLACE INTO tags (key, value, run_uuid) VALUES (?,?,?)"
_INSERT_PARAM = "INSERT OR IGNORE INTO params (key, value, run_uuid) VALUES (?,?,?)"
_INSERT_METRIC = "INSERT OR IGNORE INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?,?,?,?,?,?)"
# MLflow's rule for the latest value: the highest (step, timestamp, value).
_UPSERT_LATEST = (
    "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
    "VALUES (?,?,?,?,?,?) ON CONFLICT(key, run_uuid) DO UPDATE SET "
    "value=excluded.value, timestamp=excluded.timestamp, step=excluded.step, "
    "is_nan=excluded.is_nan WHERE (excluded.step, excluded.timestamp, excluded.value)"
    " > (latest_metrics.step, latest_metrics.timestamp, latest_metrics.value)"
)
_END_RUN = "UPDATE runs SET status=?, end_time=? WHERE run_uuid=?"
# the batch's params whose stored value differs (another process logged the key first)
_PARAM_CONFLICTS = (
    "SELECT b.column1, b.column2, b.column3, p.value FROM (VALUES {rows}) AS b "
    "JOIN params p ON p.key = b.column1 AND p.run_uuid = b.column3 WHERE p.value != b.column2"
)
_CONFLICT_CHUNK = 300
"""Params looked up per conflict query (3 SQL variables each)."""
_KILL_SESSION = (
    "UPDATE runs SET status='KILLED', end_time=? WHERE status='RUNNING' AND run_uuid IN "
    "(SELECT run_uuid FROM tags WHERE key=? AND value=?)"
)


# -- connections and schema checks ----------------------------------------------------------
def connect_sqlite(db: Path) -> sqlite3.Connection:
    """A connection tuned for many writers: WAL, a long busy timeout, NORMAL sync."""
    con = sqlite3.connect(db, timeout=60, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA busy_timeout=60000")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    return con


def _connect_readonly(db: Path) -> sqlite3.Connection:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)
    con.execute("PRAGMA busy_timeout=60000")
    return con


def _has_columns(con: sqlite3.Connection, schema: dict[str, Sequence[str]], *, strict: bool) -> bool:
    """Every table has the columns; with ``strict``, no other NOT NULL column lacks a default
    (a row written with only our columns would be refused)."""
    for table, cols in schema.items():
        info = con.execute(f"PRAGMA table_info({table})").fetchall()
        if not info or not set(cols) <= {row[1] for row in info}:
            return False
        if strict and any(
            notnull and default is None and name not in cols for _cid, name, _type, notnull, default, _pk in info
        ):
            return False
    return True


def bulk_schema_ok(db: Path) -> bool:
    """True when the bulk write path can write the MLflow schema found in ``db``."""
    con = sqlite3.connect(db, timeout=30)
    try:
        return _has_columns(con, _WRITE_SCHEMA, strict=True)
    finally:
        con.close()


_READ_SCHEMA_OK: dict[str, bool] = {}


def read_schema_ok(db: Path) -> bool:
    """True when :func:`read_runs` can read ``db`` (checked once per file and process)."""
    hit = _READ_SCHEMA_OK.get(str(db))
    if hit is not None:
        return hit
    try:
        con = _connect_readonly(db)
        try:
            ok = _has_columns(con, _WRITE_SCHEMA, strict=True) and _has_columns(con, _READ_SCHEMA, strict=False)
        finally:
            con.close()
    except sqlite3.Error:
        ok = False
    _READ_SCHEMA_OK[str(db)] = ok
    return ok


# -- the bulk write path --------------------------------------------------------------------
def _param_conflicts(con: sqlite3.Connection, params: list[tuple[str, str, str]]) -> list[tuple[str, ...]]:
    """``(key, value, run_id, stored value)`` of the params whose run holds another value."""
    found = []
    for i in range(0, len(params), _CONFLICT_CHUNK):
        chunk = params[i : i + _CONFLICT_CHUNK]
        sql = _PARAM_CONFLICTS.format(rows=",".join(["(?,?,?)"] * len(chunk)))
        found += con.execute(sql, [x for row in chunk for x in row]).fetchall()
    return found


def _refused_param(key: str, value: str, run_id: str, stored: str) -> Rejected:
    """A param refused as MLflow's own stores refuse it (same error code and text)."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    error = MlflowException(
        f"Changing param values is not allowed. Param with key='{key}' was already logged with "
        f"value='{stored}' for run ID='{run_id}'. Attempted logging new value '{value}'.",
        INVALID_PARAMETER_VALUE,
    )
    return Rejected({"k": "log", "id": run_id, "p": {key: value}}, error)


class SqliteSink:
    """Writes batches of ops (see :mod:`mlops_jupyter.storage.sinks`) into MLflow's tables,
    one transaction per batch. Idempotent: a journal can be replayed after a crash."""

    def __init__(self, db: Path) -> None:
        self.db = Path(db)
        self._con: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._con is None:
            self._con = connect_sqlite(self.db)
        return self._con

    def write(self, ops: Iterable[dict[str, Any]]) -> list[Rejected]:
        """Store the ops; returns the params refused as MLflow refuses them: a key the run
        already has with another value (logged by another process) keeps its first value."""
        ops = list(ops)
        rejected = self._write_rows(ops)
        if any(op["k"] == "art" for op in ops):
            write_text_artifacts(ops)
        return rejected

    def _write_rows(self, ops: list[dict[str, Any]]) -> list[Rejected]:
        runs, tags, params, metrics, ends = [], [], [], [], []
        latest: dict[tuple[str, str], tuple] = {}
        for op in ops:
            k = op["k"]
            rid = op["id"]
            if k == "log":
                ts, step = op["ts"], op["step"]
                for key, value in (op.get("m") or {}).items():
                    metrics.append((key, value, ts, rid, step, 0))
                    cur = latest.get((rid, key))
                    if cur is None or (step, ts, value) > (cur[3], cur[2], cur[1]):
                        latest[(rid, key)] = (key, value, ts, step, 0, rid)
                params.extend((key, v, rid) for key, v in (op.get("p") or {}).items())
                tags.extend((key, v, rid) for key, v in (op.get("t") or {}).items())
            elif k == "run":
                runs.append(
                    (
                        rid,
                        op["name"],
                        "LOCAL",
                        "",
                        "",
                        op["user"],
                        "RUNNING",
                        op["start"],
                        None,
                        "",
                        "active",
                        op["art"],
                        int(op["exp"]),
                        None,
                    )
                )
                tags.extend((key, v, rid) for key, v in op["tags"].items())
            elif k == "end":
                ends.append((op["status"], op["end"], rid))
        with self._lock:
            con = self._connection()
            con.execute("BEGIN IMMEDIATE")
            try:
                if runs:
                    con.executemany(_INSERT_RUN, runs)
                if tags:
                    con.executemany(_UPSERT_TAG, tags)
                conflicts = []
                # rows not inserted are already there: the same value again, or another
                # process' value (looked up only then: the query costs ~0.25 ms a batch)
                if params and con.executemany(_INSERT_PARAM, params).rowcount != len(params):
                    conflicts = _param_conflicts(con, params)
                if metrics:
                    con.executemany(_INSERT_METRIC, metrics)
                    con.executemany(_UPSERT_LATEST, list(latest.values()))
                if ends:
                    con.executemany(_END_RUN, ends)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return [_refused_param(*c) for c in conflicts]

    def mark_killed(self, session_token: str) -> int:
        """Mark RUNNING runs opened by a dead session KILLED; returns how many."""
        with self._lock:
            cur = self._connection().execute(_KILL_SESSION, (now_ms(), SESSION_TAG, session_token))
            return cur.rowcount

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None


# -- the fast run read ----------------------------------------------------------------------
class RunRows(NamedTuple):
    """What :func:`read_runs` found, as plain rows (the caller builds its table).

    Attributes:
        experiments: experiment id -> full MLflow name (``{tenant}/{name}``).
        runs: ``(run_id, run_name, experiment_id, status, start_time, end_time)``, newest
            first; times in ms since the epoch (``end_time`` None while running).
        params: ``(run_id, key, value)``, values as MLflow stores them (strings).
        metrics: ``(run_id, key, latest value)``; None for a NaN.
        tags: ``(run_id, key, value)`` of the tag keys asked for.
    """

    experiments: dict[int, str]
    runs: list[tuple[str, str, int, str, int, int | None]]
    params: list[tuple[str, str, str]]
    metrics: list[tuple[str, str, float | None]]
    tags: list[tuple[str, str, str]]


RUN_COLUMNS = ("run_id", "run_name", "experiment_id", "status", "start_time", "end_time")
"""Names of the fields of :attr:`RunRows.runs`."""


def read_runs(
    db: Path,
    tenancy: Tenancy,
    *,
    experiment: str | None = None,
    exclude_experiments: Iterable[str] = (),
    max_results: int,
    run_ids: Sequence[str] | None = None,
    tag_keys: Sequence[str] = (),
) -> RunRows:
    """The newest active runs of a tenant, read straight from MLflow's tables.

    Tenancy is applied as ``Tenancy.owns_experiment`` and ``Tenancy.owns_tags`` do: only
    active experiments named ``{tenant}/...`` *and* tagged with the tenant, only active runs
    tagged with the tenant.

    Args:
        db: the embedded MLflow DB (check :func:`read_schema_ok` first).
        tenancy: whose runs.
        experiment: only this experiment (its plain name), else all of the tenant's but
        exclude_experiments: these (plain names).
        max_results: at most this many runs (the newest).
        run_ids: only these runs.
        tag_keys: the run tags to return.

    Returns:
        A :class:`RunRows`; empty when the tenant has no such experiment.
    """
    con = _connect_readonly(db)
    try:
        sql = (
            "SELECT e.experiment_id, e.name FROM experiments e JOIN experiment_tags t "
            "ON t.experiment_id = e.experiment_id AND t.key = ? AND t.value = ? "
            "WHERE e.lifecycle_stage = 'active' AND substr(e.name, 1, ?) = ?"
        )
        args: list[Any] = [TENANT_TAG, tenancy.tenant, len(tenancy.experiment_prefix), tenancy.experiment_prefix]
        if experiment is not None:
            sql += " AND e.name = ?"
            args.append(tenancy.experiment_name(experiment))
        else:
            excluded = [tenancy.experiment_name(n) for n in exclude_experiments]
            if excluded:
                sql += f" AND e.name NOT IN ({','.join('?' * len(excluded))})"
                args.extend(excluded)
        exps = {int(i): n for i, n in con.execute(sql, args)}
        if not exps:
            return RunRows({}, [], [], [], [])
        con.execute("CREATE TEMP TABLE sel (run_uuid TEXT PRIMARY KEY, start_time INTEGER)")
        sel = (
            f"INSERT INTO sel SELECT r.run_uuid, r.start_time FROM runs r JOIN tags t "
            f"ON t.run_uuid = r.run_uuid AND t.key = ? AND t.value = ? "
            f"WHERE r.lifecycle_stage = 'active' AND r.experiment_id IN ({','.join('?' * len(exps))})"
        )
        sargs: list[Any] = [TENANT_TAG, tenancy.tenant, *exps]
        if run_ids is not None:
            con.execute("CREATE TEMP TABLE want (run_uuid TEXT PRIMARY KEY)")
            con.executemany("INSERT OR IGNORE INTO want VALUES (?)", [(r,) for r in run_ids])
            sel += " AND r.run_uuid IN (SELECT run_uuid FROM want)"
        sel += " ORDER BY r.start_time DESC LIMIT ?"
        sargs.append(max_results)
        con.execute(sel, sargs)
        runs = con.execute(
            "SELECT r.run_uuid, r.name, r.experiment_id, r.status, r.start_time, r.end_time "
            "FROM runs r JOIN sel USING (run_uuid) ORDER BY r.start_time DESC"
        ).fetchall()
        params = con.execute("SELECT p.run_uuid, p.key, p.value FROM params p JOIN sel USING (run_uuid)").fetchall()
        metrics = con.execute(
            "SELECT m.run_uuid, m.key, CASE WHEN m.is_nan THEN NULL ELSE m.value END "
            "FROM latest_metrics m JOIN sel USING (run_uuid)"
        ).fetchall()
        tags: list[tuple[str, str, str]] = []
        if tag_keys:
            tags = con.execute(
                f"SELECT t.run_uuid, t.key, t.value FROM tags t JOIN sel USING (run_uuid) "
                f"WHERE t.key IN ({','.join('?' * len(tag_keys))})",
                list(tag_keys),
            ).fetchall()
    finally:
        con.close()
    return RunRows(exps, runs, params, metrics, tags)


def read_experiment_tag(db: Path, tenancy: Tenancy, experiment: str, key: str) -> str | None:
    """Tag ``key`` of the tenant's active experiment ``experiment`` (its plain name), read
    straight from MLflow's tables as :func:`read_runs` reads runs (no MLflow import on the
    panels' fast path); None when there is no such experiment of the tenant or no such tag."""
    con = _connect_readonly(db)
    try:
        row = con.execute(
            "SELECT v.value FROM experiments e "
            "JOIN experiment_tags t ON t.experiment_id = e.experiment_id AND t.key = ? AND t.value = ? "
            "JOIN experiment_tags v ON v.experiment_id = e.experiment_id AND v.key = ? "
            "WHERE e.lifecycle_stage = 'active' AND e.name = ?",
            (TENANT_TAG, tenancy.tenant, key, tenancy.experiment_name(experiment)),
        ).fetchone()
    finally:
        con.close()
    return str(row[0]) if row and row[0] else None


# -- PostgreSQL: the bulk metric store's statements (storage/pg_store.py) ---------------------
# A batch's points travel as five arrays, so PostgreSQL parses one statement whatever its size.
_PG_POINTS = "SELECT %s, * FROM unnest(%s::varchar[], %s::float8[], %s::int8[], %s::int8[], %s::bool[])"
PG_INSERT_POINTS = (
    f"INSERT INTO metrics (run_uuid, key, value, timestamp, step, is_nan) {_PG_POINTS} ON CONFLICT DO NOTHING"
)
"""Every point of a batch; one already stored (the table's key is the whole row) is skipped.
Parameters: :func:`pg_point_columns`."""
PG_UPSERT_LATEST = (
    f"INSERT INTO latest_metrics AS held (run_uuid, key, value, timestamp, step, is_nan) {_PG_POINTS} "
    "ON CONFLICT (key, run_uuid) DO UPDATE SET value = EXCLUDED.value, timestamp = EXCLUDED.timestamp, "
    "step = EXCLUDED.step, is_nan = EXCLUDED.is_nan "
    "WHERE (EXCLUDED.step, EXCLUDED.timestamp, EXCLUDED.value) > (held.step, held.timestamp, held.value)"
)
"""The newest point per key (one row per key, keys sorted), kept only where newer by
``(step, timestamp, value)``, MLflow's order. Parameters: :func:`pg_point_columns`."""
PG_POINT_COLUMNS = frozenset({"run_uuid", "key", "value", "timestamp", "step", "is_nan"})
_PG_COLUMNS = "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"


def pg_point_columns(run_id: str, points: Sequence[tuple]) -> tuple:
    """The parameters of both statements: ``(run_id, keys, values, timestamps, steps, NaN
    flags)`` of points ``(key, timestamp, step, value, is_nan)``."""
    return (
        run_id,
        [p[0] for p in points],
        [p[3] for p in points],
        [p[1] for p in points],
        [p[2] for p in points],
        [p[4] for p in points],
    )


def pg_schema_ok(db: Any) -> bool:
    """True when ``metrics`` and ``latest_metrics`` have exactly the columns the statements
    write and ``runs`` has ``lifecycle_stage`` (``db``: a SQLAlchemy connection)."""
    found: dict[str, set[str]] = {}
    for table, column in db.exec_driver_sql(_PG_COLUMNS).all():
        found.setdefault(table, set()).add(column)
    return (
        found.get("metrics") == PG_POINT_COLUMNS
        and found.get("latest_metrics") == PG_POINT_COLUMNS
        and "lifecycle_stage" in found.get("runs", ())
    )


def pg_run_stage(db: Any, run_id: str) -> Any:
    """The run as MLflow's ``_check_run_is_active`` reads it (its id and lifecycle stage), or
    None when there is no such run (``db``: a SQLAlchemy connection)."""
    row = db.exec_driver_sql("SELECT lifecycle_stage FROM runs WHERE run_uuid = %s", (run_id,)).first()
    return None if row is None else SimpleNamespace(run_uuid=run_id, lifecycle_stage=row[0])
