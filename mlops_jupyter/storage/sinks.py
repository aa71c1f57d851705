"""Where the background writer puts batches of ops.

Ops are plain dicts (they are also the journal's lines):

- ``{"k": "run", "id", "exp", "name", "user", "start", "art", "tags"}``: create a run
  (embedded sqlite store only; other stores create runs synchronously);
- ``{"k": "log", "id", "ts", "step", "m": {...}, "p": {...}, "t": {...}}``: metrics,
  params and tags of one call;
- ``{"k": "end", "id", "status", "end"}``: terminate a run;
- ``{"k": "art", "uri", "file", "text"}``: a small text artifact (a cell's source).

Both sinks are idempotent, so a journal can be replayed after a crash.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

# Columns our bulk path writes, per table of MLflow's sqlalchemy schema. The sink is only
# used when the installed MLflow's tables have (at least) these columns and no other
# NOT NULL column without a default; otherwise the store falls back to MlflowClient calls.
_RUN_COLS = (
    "run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id", "status",
    "start_time", "end_time", "source_version", "lifecycle_stage", "artifact_uri",
    "experiment_id", "deleted_time",
)
_SCHEMA = {
    "runs": _RUN_COLS,
    "tags": ("key", "value", "run_uuid"),
    "params": ("key", "value", "run_uuid"),
    "metrics": ("key", "value", "timestamp", "run_uuid", "step", "is_nan"),
    "latest_metrics": ("key", "value", "timestamp", "step", "is_nan", "run_uuid"),
}


def write_text_artifacts(ops: Iterable[dict[str, Any]], tracking_uri: str | None = None) -> None:
    """Write queued text artifacts: directly for local ``file://`` roots, else through MLflow
    (``tracking_uri`` resolves a tracking server's ``mlflow-artifacts:/`` URIs)."""
    import os
    import tempfile
    from urllib.parse import unquote, urlparse

    for op in ops:
        if op["k"] != "art":
            continue
        uri = op["uri"]
        scheme = urlparse(uri).scheme
        if scheme in ("", "file"):  # not '"://" in uri': "mlflow-artifacts:/1/..." is remote
            root = Path(unquote(urlparse(uri).path)) if scheme == "file" else Path(uri)
            target = root / op["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(op["text"])
            continue
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / os.path.basename(op["file"])
            local.write_text(op["text"])
            sub = os.path.dirname(op["file"]) or None
            get_artifact_repository(uri, tracking_uri=tracking_uri).log_artifact(str(local), sub)


def sqlite_schema_matches(db: Path) -> bool:
    """True when the bulk path can write the MLflow schema found in ``db``."""
    con = sqlite3.connect(db, timeout=30)
    try:
        for table, cols in _SCHEMA.items():
            info = con.execute(f"PRAGMA table_info({table})").fetchall()
            if not info:
                return False
            names = {row[1] for row in info}
            if not set(cols) <= names:
                return False
            for _cid, name, _type, notnull, default, pk in info:
                if notnull and default is None and name not in cols:
                    return False
        return True
    finally:
        con.close()


def connect_sqlite(db: Path) -> sqlite3.Connection:
    """A connection tuned for many writers: WAL, a long busy timeout, NORMAL sync."""
    con = sqlite3.connect(db, timeout=60, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA busy_timeout=60000")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    return con


class SqliteSink:
    """Bulk writes into MLflow's own sqlite tables, one transaction per batch.

    MLflow's ``log_batch`` on sqlite costs about 0.2 s per 1 000 metrics (ORM objects and a
    per-key read of ``latest_metrics``); the same rows through ``executemany`` and an
    upsert cost about 5 ms. Reads still go through ``MlflowClient``, so everything written
    here is seen by MLflow's UI and clients exactly as if MLflow had written it.
    """

    def __init__(self, db: Path) -> None:
        self.db = Path(db)
        self._con: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._con is None:
            self._con = connect_sqlite(self.db)
        return self._con

    def write(self, ops: Iterable[dict[str, Any]]) -> None:
        ops = list(ops)
        self._write_rows(ops)
        if any(op["k"] == "art" for op in ops):
            write_text_artifacts(ops)

    def _write_rows(self, ops: list[dict[str, Any]]) -> None:
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
                    (rid, op["name"], "LOCAL", "", "", op["user"], "RUNNING", op["start"], None,
                     "", "active", op["art"], int(op["exp"]), None)
                )
                tags.extend((key, v, rid) for key, v in op["tags"].items())
            elif k == "end":
                ends.append((op["status"], op["end"], rid))
        with self._lock:
            con = self._connection()
            con.execute("BEGIN IMMEDIATE")
            try:
                if runs:
                    con.executemany(
                        f"INSERT OR IGNORE INTO runs ({','.join(_RUN_COLS)}) "
                        f"VALUES ({','.join('?' * len(_RUN_COLS))})",
                        runs,
                    )
                if tags:
                    con.executemany("INSERT OR REPLACE INTO tags (key, value, run_uuid) VALUES (?,?,?)", tags)
                if params:
                    con.executemany("INSERT OR IGNORE INTO params (key, value, run_uuid) VALUES (?,?,?)", params)
                if metrics:
                    con.executemany(
                        "INSERT OR IGNORE INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                        "VALUES (?,?,?,?,?,?)",
                        metrics,
                    )
                    con.executemany(
                        "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
                        "VALUES (?,?,?,?,?,?) ON CONFLICT(key, run_uuid) DO UPDATE SET "
                        "value=excluded.value, timestamp=excluded.timestamp, step=excluded.step, "
                        "is_nan=excluded.is_nan WHERE (excluded.step, excluded.timestamp, excluded.value)"
                        " > (latest_metrics.step, latest_metrics.timestamp, latest_metrics.value)",
                        list(latest.values()),
                    )
                if ends:
                    con.executemany("UPDATE runs SET status=?, end_time=? WHERE run_uuid=?", ends)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def mark_killed(self, session_token: str) -> int:
        """Mark RUNNING runs opened by a dead session KILLED; returns how many."""
        now = int(time.time() * 1000)
        with self._lock:
            con = self._connection()
            cur = con.execute(
                "UPDATE runs SET status='KILLED', end_time=? WHERE status='RUNNING' AND run_uuid IN "
                "(SELECT run_uuid FROM tags WHERE key='mlops.session' AND value=?)",
                (now, session_token),
            )
            return cur.rowcount

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None


class ClientSink:
    """Writes through ``MlflowClient.log_batch`` / ``set_terminated`` (tracking servers, other DBs)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def write(self, ops: Iterable[dict[str, Any]]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        ops = list(ops)
        write_text_artifacts(ops, self.client.tracking_uri)
        per_run: dict[str, dict[str, list]] = defaultdict(lambda: {"m": [], "p": [], "t": []})
        order: list[str] = []
        ends: list[dict[str, Any]] = []
        for op in ops:
            rid = op["id"]
            if rid not in per_run:
                order.append(rid)
            d = per_run[rid]
            if op["k"] == "log":
                d["m"].extend(Metric(k, v, op["ts"], op["step"]) for k, v in (op.get("m") or {}).items())
                d["p"].extend(Param(k, v) for k, v in (op.get("p") or {}).items())
                d["t"].extend(RunTag(k, v) for k, v in (op.get("t") or {}).items())
            elif op["k"] == "end":
                ends.append(op)
            elif op["k"] == "art":
                continue
            elif op["k"] == "run":  # only the sqlite sink creates runs asynchronously
                raise ValueError("ClientSink cannot create runs with a chosen id")
        for rid in order:
            d = per_run[rid]
            params = list({p.key: p for p in d["p"]}.values())
            tags = list({t.key: t for t in d["t"]}.values())
            metrics = d["m"]
            # MLflow limits: 1000 metrics, 100 params, 100 tags, 1000 entities per request.
            while metrics or params or tags:
                p, params = params[:100], params[100:]
                t, tags = tags[:100], tags[100:]
                room = 1000 - len(p) - len(t)
                m, metrics = metrics[:room], metrics[room:]
                self.client.log_batch(rid, metrics=m, params=p, tags=t)
        for op in ends:
            self.client.set_terminated(op["id"], status=op["status"], end_time=op["end"])

    def mark_killed(self, session_token: str) -> int:
        exps = [e.experiment_id for e in self.client.search_experiments()]
        n = 0
        for i in range(0, len(exps), 100):
            for run in self.client.search_runs(
                exps[i : i + 100],
                filter_string=f"tags.`mlops.session` = '{session_token}' and attributes.status = 'RUNNING'",
                max_results=50000,
            ):
                self.client.set_terminated(run.info.run_id, status="KILLED")
                n += 1
        return n

    def close(self) -> None:
        pass
