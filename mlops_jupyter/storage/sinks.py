"""Where the background writer puts batches of ops, and the ops' format.

Ops are plain dicts (they are also the journal's lines, see :mod:`.journal`):

- ``{"k": "run", "id", "exp", "name", "user", "start", "art", "tags"}``: create a run
  (embedded sqlite store only; other stores create runs synchronously);
- ``{"k": "log", "id", "ts", "step", "m": {...}, "p": {...}, "t": {...}}``: metrics,
  params and tags of one call (stored together: one transaction on the embedded store,
  one ``log_batch`` request per run and batch elsewhere);
- ``{"k": "end", "id", "status", "end"}``: terminate a run;
- ``{"k": "art", "uri", "file", "text"}``: a small text artifact (a cell's source).

Two sinks take them, both idempotent, so a journal can be replayed after a crash:
:class:`ClientSink` here (``MlflowClient``: tracking servers, PostgreSQL, any MLflow
store), and ``SqliteSink`` in :mod:`.mlflow_sql`, which writes MLflow's own sqlite tables
in bulk (all knowledge of that schema lives there). This module knows no SQL.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from mlops_jupyter.config.times import now_ms

SESSION_TAG = "mlops.session"
"""Run tag: the session token (see :mod:`.journal`) of the process that opened the run, so
the runs a dead process left RUNNING can be marked KILLED."""


class Sink(Protocol):
    """What the background writer needs from a store."""

    def write(self, ops: Iterable[dict[str, Any]]) -> None:
        """Store a batch of ops (idempotent)."""

    def mark_killed(self, session_token: str) -> int:
        """Mark the RUNNING runs of a dead session KILLED; returns how many."""

    def close(self) -> None:
        """Release connections."""


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
            self._terminate(op["id"], op["status"], op["end"])

    def _terminate(self, run_id: str, status: str, end_ms: int | None) -> None:
        """``set_terminated`` without its "View run at" line: from the writer thread MLflow
        would print it into whichever notebook cell is running (same store call otherwise)."""
        from mlflow.entities import RunStatus

        self.client._tracking_client.store.update_run_info(
            run_id, run_status=RunStatus.from_string(status), end_time=end_ms or now_ms(), run_name=None
        )

    def mark_killed(self, session_token: str) -> int:
        exps = [e.experiment_id for e in self.client.search_experiments()]
        n = 0
        for i in range(0, len(exps), 100):
            for run in self.client.search_runs(
                exps[i : i + 100],
                filter_string=f"tags.`{SESSION_TAG}` = '{session_token}' and attributes.status = 'RUNNING'",
                max_results=50000,
            ):
                self._terminate(run.info.run_id, "KILLED", None)
                n += 1
        return n

    def close(self) -> None:
        pass
