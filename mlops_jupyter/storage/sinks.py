"""Where the background writer puts batches of ops, and the ops' format.

Ops are plain dicts (they are also the journal's lines, see :mod:`.journal`):

- ``{"k": "run", "id", "exp", "name", "user", "start", "art", "tags"}``: create a run
  (embedded sqlite store only; other stores create runs synchronously);
- ``{"k": "log", "id", "ts", "step", "m": {...}, "p": {...}, "t": {...}}``: metrics,
  params and tags of one call (stored together: one transaction on the embedded store,
  ``log_batch`` requests within MLflow's limits elsewhere, see :func:`plan_requests`);
- ``{"k": "end", "id", "status", "end"}``: terminate a run;
- ``{"k": "art", "uri", "file", "text"}``: a small text artifact (a cell's source).

Two sinks take them, both idempotent, so a journal can be replayed after a crash:
:class:`ClientSink` here (tracking servers over MLflow's REST API, PostgreSQL and any
other MLflow store through ``MlflowClient``), and ``SqliteSink`` in :mod:`.mlflow_sql`,
which writes MLflow's own sqlite tables in bulk (all knowledge of that schema lives there). This module knows no SQL.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from mlops_jupyter.config.times import now_ms

SESSION_TAG = "mlops.session"
"""Run tag: the session token (see :mod:`.journal`) of the process that opened the run, so
the runs a dead process left RUNNING can be marked KILLED."""


class Rejected(NamedTuple):
    """One item (a single metric, param or tag, as a one-entry op) that the store refused for
    good, with the store's error: retrying can never store it (see :func:`is_refusal`)."""

    op: dict[str, Any]
    error: BaseException


class RunGone(Exception):
    """The server refused a request because its run is not there to log into: deleted
    (``stage="deleted"``, HTTP 400 "must be in 'active' state"; it may be restored) or purged
    (``stage="purged"``, HTTP 404 ``RESOURCE_DOES_NOT_EXIST``: ``mlflow gc``, its experiment
    purged). Either way sending the ops again cannot store them while it stays so: they are
    :class:`Rejected` with this error, as MLflow's own logging drops what the server refuses."""

    def __init__(self, run_id: str, stage: str, cause: BaseException, server: str = "") -> None:
        reason = getattr(cause, "message", None) or str(cause)
        where = f"the tracking server {server}" if server else "the tracking server"
        how = "was deleted on" if stage == "deleted" else "no longer exists on"
        super().__init__(f"run {run_id} {how} {where} (server's reason: {reason})")
        self.run_id, self.stage, self.message = run_id, stage, reason


_KINDS = {"p": "param", "t": "tag", "m": "metric"}


def _describe(op: dict[str, Any]) -> tuple[Any, str, str, Any]:
    """A one-entry op as ``(run_id, kind, key, value)`` (an ``end`` op: ``"end", "status"``)."""
    field = next((f for f in ("p", "t", "m") if op.get(f)), None)
    if field is None:
        return (op.get("id"), "end", "status", op.get("status"))
    ((key, value),) = op[field].items()
    return (op["id"], _KINDS[field], key, value)


def rejection_error(rejected: list[Rejected]) -> Exception:
    """The typed error that tells the user which logged items the store refused for good.

    Items whose run was deleted or purged on the server (:class:`RunGone`) make it a
    ``RunStateError`` whose ``.value`` is that run's id. Otherwise its class follows the first
    item (a param: ``InvalidParamError``, a metric: ``InvalidMetricError``, a tag:
    ``InvalidNameError``, a run's end: ``RunStateError``) and ``.value`` is that item's value.
    ``.allowed`` gives the server's reason, ``.items`` every refused item as
    ``(run_id, kind, key, value)``.
    """
    from mlops_jupyter import errors

    items = [_describe(r.op) for r in rejected]
    gone = {r.error.run_id: r.error for r in rejected if isinstance(r.error, RunGone)}
    more = f" and {len(items) - 5} more" if len(items) > 5 else ""
    shown = ", ".join(f"{k} {key!r}={v!r} (run {rid})" for rid, k, key, v in items[:5]) + more
    if gone:
        first = next(iter(gone.values()))
        err: Exception = errors.RunStateError(
            f"{len(items)} logged item(s) were dropped because their run is gone: "
            + "; ".join(map(str, gone.values()))
            + f". Items: {shown}. They cannot be stored while the run is deleted or purged "
            "(a deleted run can be restored with MlflowClient.restore_run, then logged into again; "
            "a purged one cannot); everything else logged was stored.",
            value=first.run_id,
            allowed=f"an active run on the tracking server ({first.message})",
        )
    else:
        _, kind, _, value = items[0]
        cls = {
            "param": errors.InvalidParamError,
            "metric": errors.InvalidMetricError,
            "tag": errors.InvalidNameError,
        }.get(kind, errors.RunStateError)
        reason = getattr(rejected[0].error, "message", None) or str(rejected[0].error)
        err = cls(
            f"The tracking server refused {len(items)} logged item(s): {shown}. Server's reason: {reason} "
            "Sending them again cannot succeed, so they were dropped; everything else logged was stored.",
            value=value,
            allowed=f"what the server accepts ({reason})",
        )
    err.items = items
    return err


class Sink(Protocol):
    """What the background writer needs from a store."""

    def write(self, ops: Iterable[dict[str, Any]]) -> list[Rejected] | None:
        """Store a batch of ops (idempotent); returns the items refused for good, if any."""

    def mark_killed(self, session_token: str) -> int:
        """Mark the RUNNING runs of a dead session KILLED; returns how many."""

    def close(self) -> None:
        """Release connections."""


def write_text_artifacts(ops: Iterable[dict[str, Any]], tracking_uri: str | None = None) -> None:
    """Write queued text artifacts: directly for local ``file://`` roots, with one bounded PUT
    for a tracking server's (``mlflow-artifacts:/``, resolved against ``tracking_uri``) or any
    HTTP artifact root (see :func:`_put_text`), else through MLflow's artifact repository."""
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
        if scheme in ("mlflow-artifacts", "http", "https"):
            _put_text(uri, op["file"], op["text"], tracking_uri)
            continue
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / os.path.basename(op["file"])
            local.write_text(op["text"])
            sub = os.path.dirname(op["file"]) or None
            get_artifact_repository(uri, tracking_uri=tracking_uri).log_artifact(str(local), sub)


def _put_text(artifact_uri: str, file: str, text: str, tracking_uri: str | None) -> None:
    """Upload one small text file as MLflow's HTTP artifact repository does (``PUT`` of the
    file under the run's artifact root, MLflow's credentials and TLS settings), but without
    MLflow's retries: they wait ~4 minutes per request for a server that is down, blocking
    ``flush()``; the writer retries itself (an upload is idempotent)."""
    import mimetypes
    import posixpath

    from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.request_utils import augmented_raise_for_status
    from mlflow.utils.rest_utils import http_request

    base = artifact_uri
    if artifact_uri.startswith("mlflow-artifacts:"):
        base = MlflowArtifactsRepository.resolve_uri(artifact_uri, tracking_uri or _default_tracking_uri())
    endpoint = posixpath.join("/", file)
    mime = mimetypes.guess_type(file)[0] or "text/plain"
    resp = http_request(
        get_default_host_creds(base),
        endpoint,
        "PUT",
        max_retries=0,
        data=text.encode(),
        extra_headers={"Content-Type": mime},
    )
    augmented_raise_for_status(resp)


def _default_tracking_uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri()


class PartialWriteError(Exception):
    """Some requests of a batch were acknowledged, others failed: ``remaining`` holds the ops
    that are not stored yet (valid ops, so the writer retries and journals only those), and
    ``rejected`` the items refused for good on the way (dropped, reported to the user)."""

    def __init__(
        self, remaining: list[dict[str, Any]], cause: BaseException, rejected: list[Rejected] | None = None
    ) -> None:
        super().__init__(f"{len(remaining)} op(s) not stored: {cause}")
        self.remaining = remaining
        self.rejected = rejected or []


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a store error (MLflow's exceptions carry one; a
    :class:`PartialWriteError` has its cause's), else None."""
    if isinstance(exc, PartialWriteError) and exc.__cause__ is not None:
        exc = exc.__cause__
    get = getattr(exc, "get_http_status_code", None)
    try:
        return int(get()) if get is not None else None
    except Exception:
        return None


def is_refusal(exc: BaseException) -> bool:
    """True if the server refused the request's content (HTTP 400: MLflow's
    ``INVALID_PARAMETER_VALUE``, e.g. a param re-logged with another value by another
    process): sending it again can never succeed. Everything else (server down, 5xx, 401,
    403) may pass later and is kept and retried; a run deleted or purged on the server is
    told apart by :meth:`ClientSink._run_stage` (see :class:`RunGone`)."""
    return http_status(exc) == 400


class ClientSink:
    """Writes through ``log_batch`` / ``set_terminated`` (tracking servers, other DBs).

    On a tracking server, ``log_batch`` bodies are built as JSON here and posted with MLflow's
    own REST helper (its credentials, TLS settings and retries): ``MlflowClient.log_batch``
    spends ~20 ms of client CPU per 1 000 metrics building entities and protobuf JSON, this
    ~4 ms. With ``concurrency`` > 1 up to that many requests are in flight at once (see
    :func:`plan_requests` for which ones may overlap): the server's time per request is mostly
    its Python (MLflow's validation and SQLAlchemy ORM), so a server with several workers
    stores a batch on several cores. A batch is acknowledged only when every request of it
    is; if some fail, :class:`PartialWriteError` names the ops still to store. A request the
    server refuses (HTTP 400) is split until the refused items are alone: the others are
    stored, those are returned as :class:`Rejected` (see :func:`is_refusal`), and so is every
    op of a run deleted or purged on the server (:class:`RunGone`). Requests (and text
    artifact uploads) are sent without MLflow's own retries (the writer retries, and reports a
    store that is down).
    """

    def __init__(self, client: Any, concurrency: int = 1) -> None:
        self.client = client
        self.concurrency = max(1, int(concurrency))
        self._rest = str(client.tracking_uri).startswith(("http://", "https://"))
        self._pool: ThreadPoolExecutor | None = None
        if self.concurrency > 1:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="mlops-sink")

    def write(self, ops: Iterable[dict[str, Any]]) -> list[Rejected]:
        ops = list(ops)
        write_text_artifacts(ops, self.client.tracking_uri)
        chains, ends = plan_requests(ops, self.concurrency)
        remaining, errors, rejected = self._run_chains(chains, self._send_log)
        failed_runs = {op["id"] for op in remaining}
        todo = [[[op]] for op in ends if op["id"] not in failed_runs]
        remaining += [op for op in ends if op["id"] in failed_runs]
        not_ended, end_errors, end_rejected = self._run_chains(todo, lambda req: self._send_end(req[0]))
        remaining += not_ended
        errors += end_errors
        rejected += end_rejected
        if errors:
            raise PartialWriteError(remaining, errors[0], rejected) from errors[0]
        return rejected

    def _run_chains(
        self, chains: list[list[list[dict[str, Any]]]], send: Callable[[list[dict[str, Any]]], None]
    ) -> tuple[list[dict[str, Any]], list[BaseException], list[Rejected]]:
        """Send each chain's requests in order, chains side by side on the pool; returns the ops
        of the requests not acknowledged (a chain stops at its first failure), the errors, and
        the items refused for good: a refused request's other items are stored (see
        :meth:`_isolate`), and every item of a run found deleted or purged is refused
        (:class:`RunGone`, asked once per run and call: its other requests are not sent)."""
        gone: dict[str, RunGone] = {}

        def run(chain: list[list[dict[str, Any]]]) -> tuple[list[dict[str, Any]], BaseException | None, list[Rejected]]:
            rejected: list[Rejected] = []
            for i, req in enumerate(chain):
                try:
                    rid = req[0]["id"]
                    if rid not in gone:
                        try:
                            send(req)
                            continue
                        except Exception as exc:
                            stage = self._run_stage(rid) if http_status(exc) in (400, 404) else None
                            if stage is None or (stage == "active" and not is_refusal(exc)):
                                raise
                            if stage == "active":
                                rejected += self._isolate(list(_items(req)), send, refused=exc)
                                continue
                            gone.setdefault(rid, RunGone(rid, stage, exc, str(self.client.tracking_uri)))
                    rejected += [Rejected(item, gone[rid]) for item in _items(req)]
                except Exception as exc:
                    return [op for r in chain[i:] for op in r], exc, rejected
            return [], None, rejected

        results = map(run, chains) if self._pool is None or len(chains) < 2 else self._pool.map(run, chains)
        remaining: list[dict[str, Any]] = []
        errors: list[BaseException] = []
        rejected: list[Rejected] = []
        for left, exc, refused in results:
            remaining += left
            rejected += refused
            if exc is not None:
                errors.append(exc)
        return remaining, errors, rejected

    def _isolate(
        self,
        items: list[dict[str, Any]],
        send: Callable[[list[dict[str, Any]]], None],
        refused: BaseException | None = None,
    ) -> list[Rejected]:
        """Store the items of a refused request that the server accepts, by halves (MLflow
        refuses a whole ``log_batch`` for one bad item); return the ones it refuses alone
        (``refused``: the server's answer when ``items`` were just sent together). One bad
        item among ``n`` costs about ``2 * log2(n)`` requests. Raises what is not a refusal
        (server down meanwhile: the caller keeps the whole request and resends it; the
        stores are idempotent)."""
        if refused is None:
            try:
                send(items)
                return []
            except Exception as exc:
                if not is_refusal(exc):
                    raise
                refused = exc
        if len(items) == 1:
            return [Rejected(items[0], refused)]
        mid = len(items) // 2
        return self._isolate(items[:mid], send) + self._isolate(items[mid:], send)

    def _run_stage(self, run_id: str) -> str | None:
        """The run's lifecycle stage on the server (``"active"``, ``"deleted"``), ``"purged"``
        if MLflow says it does not exist (``RESOURCE_DOES_NOT_EXIST``, not any 404: a wrong URL
        or a proxy's 404 keeps the ops), None if that cannot be known now (server down,
        credentials refused: the caller keeps the ops and retries). Asked after a refusal: it
        tells whether the request's items or its run were refused. On a tracking server one
        GET without MLflow's retries (see :meth:`_post`)."""
        try:
            if not self._rest:
                return str(self.client.get_run(run_id).info.lifecycle_stage)
            from mlflow.utils.rest_utils import http_request, verify_rest_response

            response = http_request(self._creds(), _GET_RUN, "GET", max_retries=0, params={"run_id": run_id})
            verify_rest_response(response, _GET_RUN)
            return str(response.json()["run"]["info"]["lifecycle_stage"])
        except Exception as exc:
            return "purged" if getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST" else None

    def _creds(self) -> Any:
        """The tracking server's host credentials, as MLflow's REST store builds them (its
        ``MLFLOW_TRACKING_*`` environment: user, password, token, TLS settings)."""
        from mlflow.utils.credentials import get_default_host_creds

        return get_default_host_creds(str(self.client.tracking_uri))

    def _send_log(self, req: list[dict[str, Any]]) -> None:
        """One ``log_batch`` request from (sub-)ops of one run, within MLflow's limits."""
        rid = req[0]["id"]
        metrics = [(k, v, op["ts"], op["step"]) for op in req for k, v in (op.get("m") or {}).items()]
        params = {k: v for op in req for k, v in (op.get("p") or {}).items()}
        tags = {k: v for op in req for k, v in (op.get("t") or {}).items()}
        if not self._rest:
            from mlflow.entities import Metric, Param, RunTag

            self.client.log_batch(
                rid,
                metrics=[Metric(*m) for m in metrics],
                params=[Param(k, _text(v)) for k, v in params.items()],
                tags=[RunTag(k, _text(v)) for k, v in tags.items()],
            )
            return
        body = {
            "run_id": rid,
            "metrics": [
                {"key": k, "value": _json_float(v), "timestamp": int(ts), "step": int(st)} for k, v, ts, st in metrics
            ],
            "params": [{"key": k, "value": _text(v)} for k, v in params.items()],
            "tags": [{"key": k, "value": _text(v)} for k, v in tags.items()],
        }
        self._post(_LOG_BATCH, body)

    def _post(self, endpoint: str, body: dict[str, Any]) -> None:
        """POST with MLflow's REST helper but without its retries: by default it retries a
        server that is down for ~4 minutes per request, during which ``flush()`` could say
        nothing; the writer retries itself and reports the failure at once (the data is kept)."""
        from mlflow.utils.rest_utils import http_request, verify_rest_response

        response = http_request(self._creds(), endpoint, "POST", max_retries=0, json=body)
        verify_rest_response(response, endpoint)

    def _send_end(self, op: dict[str, Any]) -> None:
        if self._rest:
            self._post(_UPDATE_RUN, {"run_id": op["id"], "status": op["status"], "end_time": op["end"] or now_ms()})
        else:
            self._terminate(op["id"], op["status"], op["end"])

    def _terminate(self, run_id: str, status: str, end_ms: int | None) -> None:
        """``set_terminated`` without its "View run at" line (from the writer thread MLflow
        would print it into whichever notebook cell is running) and without its stopping of
        MLflow's own async logging on the shared store; MLflow has no public call that sets
        a run's end time otherwise (``MlflowClient.update_run`` takes no end time)."""
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
                self._send_end({"id": run.info.run_id, "status": "KILLED", "end": None})
                n += 1
        return n

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


_LOG_BATCH = "/api/2.0/mlflow/runs/log-batch"
_UPDATE_RUN = "/api/2.0/mlflow/runs/update"
_GET_RUN = "/api/2.0/mlflow/runs/get"
MAX_METRICS, MAX_PARAMS, MAX_TAGS, MAX_ENTITIES = 1000, 100, 100, 1000
"""MLflow's limits per ``log_batch`` request."""


def _text(v: Any) -> str:
    return v if isinstance(v, str) else str(v)


def _json_float(v: float) -> float | str:
    """A metric value as MLflow's protobuf JSON writes it (``NaN``, ``Infinity`` as strings)."""
    v = float(v)
    if math.isfinite(v):
        return v
    return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")


def plan_requests(
    ops: list[dict[str, Any]], lanes: int
) -> tuple[list[list[list[dict[str, Any]]]], list[dict[str, Any]]]:
    """Cut a batch into request chains and the runs' end ops.

    A request is a list of (sub-)ops of one run within MLflow's limits; a chain is a list of
    requests sent in order; chains may be sent side by side. Every run gets its own chains.
    A run with more than one request's worth of metrics is split into up to ``lanes`` chains
    by metric key (contiguous groups of its sorted keys): two requests in flight at once never
    touch the same (run, key), so they never wait on each other's lock of the key's latest
    value (MLflow ``SELECT ... FOR UPDATE``s it) nor race to insert it. A run's params and
    tags (deduplicated, the last value wins, as one op) lead its first chain. Ends are
    returned apart: the caller sends them once the run's chains are all acknowledged.

    Raises:
        ValueError: a ``run`` op (only the sqlite sink creates runs asynchronously).
    """
    per_run: dict[str, list[dict[str, Any]]] = {}
    ends: list[dict[str, Any]] = []
    for op in ops:
        if op["k"] == "log":
            per_run.setdefault(op["id"], []).append(op)
        elif op["k"] == "end":
            ends.append(op)
        elif op["k"] == "run":
            raise ValueError("ClientSink cannot create runs with a chosen id")
    chains: list[list[list[dict[str, Any]]]] = []
    for rid, logs in per_run.items():
        keys = sorted({k for op in logs for k in op.get("m") or ()})
        n_metrics = sum(len(op.get("m") or ()) for op in logs)
        n_lanes = max(1, min(lanes, len(keys), -(-n_metrics // MAX_METRICS)))
        lane_of = {k: i * n_lanes // len(keys) for i, k in enumerate(keys)}
        subs: list[list[dict[str, Any]]] = [[] for _ in range(n_lanes)]
        params = {k: v for op in logs for k, v in (op.get("p") or {}).items()}
        tags = {k: v for op in logs for k, v in (op.get("t") or {}).items()}
        if params or tags:
            subs[0].append({"k": "log", "id": rid, "ts": logs[0]["ts"], "step": 0, "p": params, "t": tags})
        for op in logs:
            parts: list[dict[str, Any]] = [{} for _ in range(n_lanes)]
            for k, v in (op.get("m") or {}).items():
                parts[lane_of[k]][k] = v
            for lane, m in enumerate(parts):
                if m:
                    subs[lane].append({"k": "log", "id": rid, "ts": op["ts"], "step": op["step"], "m": m})
        chains += [_pack(lane_ops) for lane_ops in subs if lane_ops]
    return chains, ends


def _items(req: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """A request's ops, one op per metric, param or tag (an ``end`` op as it is)."""
    for op in req:
        if op["k"] != "log":
            yield op
            continue
        base = {"k": "log", "id": op["id"], "ts": op["ts"], "step": op["step"]}
        for field in ("p", "t", "m"):
            for k, v in (op.get(field) or {}).items():
                yield {**base, field: {k: v}}


def _pieces(op: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``op`` itself if one request can carry it, else parts of it that each can."""
    m, p, t = op.get("m") or {}, op.get("p") or {}, op.get("t") or {}
    if (
        len(p) <= MAX_PARAMS
        and len(t) <= MAX_TAGS
        and len(m) <= MAX_METRICS
        and len(m) + len(p) + len(t) <= MAX_ENTITIES
    ):
        yield op
        return
    base = {"k": "log", "id": op["id"], "ts": op["ts"], "step": op["step"]}
    for field, items, size in (
        ("p", list(p.items()), MAX_PARAMS),
        ("t", list(t.items()), MAX_TAGS),
        ("m", list(m.items()), MAX_METRICS),
    ):
        for i in range(0, len(items), size):
            yield {**base, field: dict(items[i : i + size])}


def _pack(ops: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Pack (sub-)ops of one run greedily into requests within MLflow's limits."""
    requests: list[list[dict[str, Any]]] = []
    cur: list[dict[str, Any]] = []
    nm = np_ = nt = 0
    for op in ops:
        for piece in _pieces(op):
            m, p, t = len(piece.get("m") or ()), len(piece.get("p") or ()), len(piece.get("t") or ())
            if cur and (
                nm + m > MAX_METRICS
                or np_ + p > MAX_PARAMS
                or nt + t > MAX_TAGS
                or nm + np_ + nt + m + p + t > MAX_ENTITIES
            ):
                requests.append(cur)
                cur, nm, np_, nt = [], 0, 0, 0
            cur.append(piece)
            nm, np_, nt = nm + m, np_ + p, nt + t
    if cur:
        requests.append(cur)
    return requests
