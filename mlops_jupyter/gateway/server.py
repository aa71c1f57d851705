"""The serving gateway: one long-lived HTTP process serving every deployed model version.

Run it with ``mlops-jupyter serve`` (or ``python -m mlops_jupyter.gateway``); the first
``deploy_model`` starts it on demand. It binds 127.0.0.1 by default and records its pid
and port in ``{home}/gateway.json``; ``{home}/gateway.lock`` (an flock held for the
process' lifetime) makes sure one home has one gateway.

Routes (``T`` tenant, ``E`` environment, ``M`` model id)::

    POST /tenants/T/E/models/M/invocations   MLflow scoring JSON -> {"predictions": [...]}
    GET  /tenants/T/E/models/M               versions, traffic, status
    GET  /ping, /health                      liveness (no token needed)
    GET  /metrics                            Prometheus text (a tenant's token sees its own)
    POST /admin/apply, /admin/shutdown       control plane (admin token)
    POST /admin/flush                        write the buffered prediction log now (admin token)

Every model route needs ``Authorization: Bearer <token>`` of the tenant in the path (401
without a valid token, 403 with another tenant's). Answers carry ``X-Model-Version``.

The request path is deliberately framework-free: an asyncio ``Protocol`` with a small
HTTP/1.1 keep-alive parser, stdlib ``json``, and no DataFrame per request for numeric
scikit-learn models. Requests for the same version that arrive in one event-loop turn
are stacked into one ``predict`` call (micro-batching without any waiting: the batch is
whatever is already there). A model that raises inside a batch is retried request by
request, so only the bad request fails.

Changes (deploy, traffic, rollback, undeploy) are prepared off the event loop (integrity
check, load, test prediction), written to the embedded store, and then made live by
swapping one reference to an immutable routing table, so requests in flight finish on
the table they started with and none fails during a change.

Alert rules are evaluated here too, off the request path: an
:class:`~mlops_jupyter.monitoring.alerts.engine.AlertScheduler` thread evaluates, every few seconds
(``$MLOPS_ALERT_INTERVAL``, default 5), the rules of the models that got traffic since its
last pass, so an alert fires (and a ``rollback`` or ``webhook:`` action runs) with nobody
calling ``check_drift``.
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import json
import logging
import os
import secrets
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping

from mlops_jupyter.monitoring.alerts.engine import AlertScheduler
from mlops_jupyter.deployment.deployment import validate_environment
from mlops_jupyter.storage.state import open_embedded_store
from mlops_jupyter.monitoring.predlog import PredictionLog
from mlops_jupyter.config.names import validate_model_id, validate_tenant
from mlops_jupyter.config.settings import GATEWAY_EXIT_ALREADY_RUNNING as EXIT_ALREADY_RUNNING
from mlops_jupyter.config.settings import GATEWAY_INFO_FILE as INFO_FILE
from mlops_jupyter.config.settings import GATEWAY_LOCK_FILE as LOCK_FILE
from mlops_jupyter.config.settings import GATEWAY_PORT_META as PORT_META
from mlops_jupyter.errors import IntegrityError, MLOpsError
from mlops_jupyter.deployment import tokens as auth, traffic
from mlops_jupyter.gateway.models import ClientError, LoadedVersion, LoadError, load_version, to_jsonable

log = logging.getLogger("mlops_jupyter.gateway")

MAX_BODY = 8 * 1024 * 1024
MAX_HEADER = 64 * 1024
MAX_DRAIN = 64 * 1024 * 1024
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_REASONS = {
    200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found",
    405: b"Method Not Allowed", 409: b"Conflict", 411: b"Length Required", 413: b"Payload Too Large",
    415: b"Unsupported Media Type", 422: b"Unprocessable Entity", 431: b"Request Header Fields Too Large",
    500: b"Internal Server Error", 503: b"Service Unavailable", 505: b"HTTP Version Not Supported",
}


def _err(code: str, message: str) -> bytes:
    return json.dumps({"error_code": code, "message": message}).encode()


class Stats:
    """Counters and a latency histogram for one (tenant, environment, model, version)."""

    __slots__ = ("requests", "client_errors", "model_errors", "lat_sum", "buckets")

    def __init__(self) -> None:
        self.requests = 0
        self.client_errors = 0
        self.model_errors = 0
        self.lat_sum = 0.0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)

    def observe(self, latency: float) -> None:
        self.requests += 1
        self.lat_sum += latency
        i = 0
        for b in LATENCY_BUCKETS:
            if latency <= b:
                break
            i += 1
        self.buckets[i] += 1


class Route:
    """The live state of one (tenant, environment, model): immutable once built."""

    __slots__ = ("tenant", "environment", "model_id", "traffic", "versions", "router", "stats", "record")

    def __init__(self, record: Mapping[str, Any], versions: dict[str, LoadedVersion],
                 live_traffic: dict[str, int], stats: dict[str, Stats]) -> None:
        self.tenant = record["tenant"]
        self.environment = record["environment"]
        self.model_id = record["model_id"]
        self.traffic = dict(live_traffic)
        self.versions = versions
        self.router = traffic.Router(live_traffic) if live_traffic else None
        self.stats = stats
        self.record = dict(record)

    def describe(self) -> dict[str, Any]:
        r = self.record
        return {
            "tenant": self.tenant, "environment": self.environment, "model_id": self.model_id,
            "deployment_id": r.get("deployment_id"), "status": r.get("status"), "reason": r.get("reason"),
            "traffic": self.traffic, "revision": r.get("revision"), "config": r.get("config") or {},
            "versions": [
                {"version": v, "sha256": lv.sha256, "columns": lv.columns, "fast_path": lv.numeric}
                for v, lv in self.versions.items()
            ],
            "updated_at": r.get("updated_at"),
        }


class _Item:
    """A request waiting for its batch."""

    __slots__ = ("conn", "x", "n", "t0", "ts", "route", "stats")

    def __init__(self, conn: "HttpConnection", x: Any, n: int, t0: float, ts: float, route: Route,
                 stats: Stats) -> None:
        self.conn, self.x, self.n, self.t0, self.ts, self.route, self.stats = conn, x, n, t0, ts, route, stats


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; requests are answered strictly in order."""

    __slots__ = ("gw", "transport", "buf", "busy", "keep_alive", "drain", "in_loop")

    def __init__(self, gw: "Gateway") -> None:
        self.gw = gw
        self.transport: Any = None
        self.buf = bytearray()
        self.busy = False
        self.keep_alive = True
        self.drain = 0
        self.in_loop = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.gw.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.gw.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.drain:
            n = min(self.drain, len(data))
            self.drain -= n
            data = data[n:]
            if self.drain == 0 and self.transport is not None:
                self.transport.close()
            return
        self.buf += data
        if not self.busy:
            self.process()

    def process(self) -> None:
        if self.in_loop:
            return
        self.in_loop = True
        try:
            while not self.busy and self.transport is not None and self.buf:
                if not self._one():
                    break
        finally:
            self.in_loop = False

    def _one(self) -> bool:
        """Parse and dispatch one request; False if more bytes are needed."""
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEADER:
                self.fail(431, "HEADERS_TOO_LARGE", f"Request headers exceed {MAX_HEADER} bytes.")
            return False
        try:
            head = bytes(buf[:end]).decode("latin-1")
            lines = head.split("\r\n")
            method, target, proto = lines[0].split(" ")
            if not proto.startswith("HTTP/1."):
                raise ValueError(proto)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                k, sep, v = line.partition(":")
                if not sep:
                    raise ValueError(line)
                headers[k.strip().lower()] = v.strip()
        except ValueError:
            self.fail(400, "BAD_REQUEST", "Malformed HTTP request line or header.")
            return False
        if "transfer-encoding" in headers:
            self.fail(411, "LENGTH_REQUIRED", "Chunked request bodies are not supported; send Content-Length.")
            return False
        try:
            length = int(headers.get("content-length", "0"))
            if length < 0:
                raise ValueError
        except ValueError:
            self.fail(400, "BAD_REQUEST", f"Invalid Content-Length {headers.get('content-length')!r}.")
            return False
        if length > MAX_BODY:
            have = len(buf) - end - 4
            self.drain = min(max(length - have, 0), MAX_DRAIN)
            self.buf = bytearray()
            self.keep_alive = False
            self.busy = True
            self.respond(413, _err("PAYLOAD_TOO_LARGE", f"The request body has {length} bytes; at most "
                                   f"{MAX_BODY} bytes ({MAX_BODY // (1024 * 1024)} MiB) are accepted."))
            if self.drain == 0 and self.transport is not None:
                self.transport.close()
            return False
        total = end + 4 + length
        if len(buf) < total:
            if headers.get("expect", "").lower() == "100-continue" and len(buf) == end + 4:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return False
        body = bytes(buf[end + 4 : total])
        del buf[:total]
        conn_hdr = headers.get("connection", "").lower()
        self.keep_alive = conn_hdr != "close" if proto == "HTTP/1.1" else conn_hdr == "keep-alive"
        self.busy = True
        try:
            self.gw.dispatch(self, method, target, headers, body)
        except Exception as exc:  # a bug must not kill the connection or the process
            log.exception("gateway: unhandled error on %s %s", method, target.split("?")[0])
            if self.busy:
                self.respond(500, _err("INTERNAL_ERROR", f"{type(exc).__name__}: {exc}"))
        return True

    def fail(self, status: int, code: str, message: str) -> None:
        self.keep_alive = False
        self.buf = bytearray()
        self.busy = True
        self.respond(status, _err(code, message))

    def respond(self, status: int, body: bytes, ctype: bytes = b"application/json",
                extra: bytes = b"") -> None:
        t = self.transport
        self.busy = False
        self.gw.codes[status] = self.gw.codes.get(status, 0) + 1
        if t is None:
            return
        t.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n%s"
            % (status, _REASONS.get(status, b"Unknown"), ctype, len(body), extra,
               b"" if self.keep_alive else b"Connection: close\r\n", body)
        )
        if not self.keep_alive:
            if not self.drain:
                t.close()
            return
        if self.buf and not self.in_loop:
            self.process()


class Gateway:
    """The gateway's state: routes, loaded versions, tokens, metrics, prediction log.

    Args:
        home: the storage home it serves.
        flush_interval: seconds between prediction-log flushes.
    """

    def __init__(self, home: str | os.PathLike[str], flush_interval: float = 1.0) -> None:
        self.home = Path(home)
        self.store = open_embedded_store(self.home)
        self.predlog = PredictionLog(self.home, flush_interval=flush_interval)
        self.alert_scheduler = AlertScheduler(self.home, self.predlog, self.store)
        self.routes: dict[tuple[str, str, str], Route] = {}
        self.stats: dict[tuple[str, str, str, str], Stats] = {}
        self.codes: dict[int, int] = {}
        self.connections: set[HttpConnection] = set()
        self.instance = secrets.token_hex(8)
        self.started = time.time()
        self.tokens: dict[bytes, str] = {}
        self._tokens_mtime = 0
        self.reload_tokens()
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mlops-gw-admin")
        self.loop: asyncio.AbstractEventLoop | None = None
        self.admin_lock: asyncio.Lock | None = None
        self.stopping: asyncio.Event | None = None
        self._dirty: list[LoadedVersion] = []
        self._flush_scheduled = False
        self._np: Any = None
        self._json_dumps = json.dumps
        self._json_loads = json.loads

    # -- tokens --------------------------------------------------------------------------
    def _secrets_mtime(self) -> int:
        try:
            return os.stat(self.home / auth.SECRETS_DIR).st_mtime_ns
        except OSError:
            return 0

    def reload_tokens(self) -> None:
        self._tokens_mtime = self._secrets_mtime()
        self.tokens = auth.load_digests(self.home)

    def authenticate(self, headers: Mapping[str, str]) -> str | None:
        h = headers.get("authorization")
        if not h or h[:7].lower() != "bearer ":
            return None
        d = auth.digest(h[7:].strip())
        who = self.tokens.get(d)
        if who is None and self._secrets_mtime() != self._tokens_mtime:
            self.reload_tokens()  # a token was minted since the last look
            who = self.tokens.get(d)
        return who

    # -- request dispatch ----------------------------------------------------------------
    def dispatch(self, conn: HttpConnection, method: str, target: str, headers: Mapping[str, str],
                 body: bytes) -> None:
        path = target.split("?", 1)[0]
        if path.startswith("/tenants/"):
            parts = path.split("/")
            if len(parts) in (6, 7) and parts[4] == "models" and all(parts[2:6]):
                return self.model_route(conn, method, parts, headers, body)
            return conn.respond(404, _err("NOT_FOUND", f"No such path {path!r}; model routes are "
                                          "/tenants/TENANT/ENVIRONMENT/models/MODEL[/invocations]."))
        if path == "/ping":
            if method != "GET":
                return self._method(conn, method, path, b"GET")
            return conn.respond(200, b"\n", b"text/plain; charset=utf-8")
        if path == "/health":
            if method != "GET":
                return self._method(conn, method, path, b"GET")
            return conn.respond(200, self._json_dumps(self.health()).encode())
        if path == "/metrics":
            if method != "GET":
                return self._method(conn, method, path, b"GET")
            who = self.authenticate(headers)
            if who is None:
                return self._unauthorized(conn)
            return conn.respond(200, self.metrics_text(who).encode(), b"text/plain; version=0.0.4; charset=utf-8")
        if path.startswith("/admin/"):
            return self.admin_route(conn, method, path, headers, body)
        return conn.respond(404, _err("NOT_FOUND", f"No such path {path!r}."))

    def _method(self, conn: HttpConnection, method: str, path: str, allow: bytes) -> None:
        conn.respond(405, _err("METHOD_NOT_ALLOWED", f"{method} is not allowed on {path}; use "
                               f"{allow.decode()}."), extra=b"Allow: %s\r\n" % allow)

    def _unauthorized(self, conn: HttpConnection) -> None:
        conn.respond(401, _err("UNAUTHORIZED", "A valid 'Authorization: Bearer <token>' header is required "
                               "(deployment.get_token() gives the tenant's token)."),
                     extra=b'WWW-Authenticate: Bearer realm="mlops"\r\n')

    def model_route(self, conn: HttpConnection, method: str, parts: list[str], headers: Mapping[str, str],
                    body: bytes) -> None:
        tenant, env, model_id = parts[2], parts[3], parts[5]
        invocations = len(parts) == 7
        if invocations and parts[6] != "invocations":
            return conn.respond(404, _err("NOT_FOUND", f"No such path; did you mean "
                                          f"/tenants/{tenant}/{env}/models/{model_id}/invocations?"))
        who = self.authenticate(headers)
        if who is None:
            return self._unauthorized(conn)
        if who != tenant and who != auth.ADMIN:
            return conn.respond(403, _err("FORBIDDEN", f"This token belongs to another tenant; it cannot "
                                          f"reach tenant {tenant!r}'s deployments."))
        route = self.routes.get((tenant, env, model_id))
        if route is None:
            mine = sorted(f"{e}/{m}" for (t, e, m) in self.routes if t == tenant)
            return conn.respond(404, _err("NOT_FOUND", f"Model {model_id!r} is not deployed in environment "
                                          f"{env!r} for tenant {tenant!r}. Deployed: {', '.join(mine) or '(none)'}."))
        if not invocations:
            if method != "GET":
                return self._method(conn, method, "/".join(parts), b"GET")
            return conn.respond(200, self._json_dumps(route.describe()).encode())
        if method != "POST":
            return self._method(conn, method, "/".join(parts), b"POST")
        ctype = headers.get("content-type")
        if ctype and not ctype.startswith("application/json"):
            return conn.respond(415, _err("UNSUPPORTED_MEDIA_TYPE", f"Content-Type {ctype!r} is not supported; "
                                          "send application/json in MLflow's scoring format."))
        router = route.router
        if router is None:
            return conn.respond(503, _err("NOT_SERVING", f"Model {model_id!r} in {env!r} has no live version: "
                                          f"{route.record.get('reason') or 'its deployment failed'}."))
        t0 = time.perf_counter()
        key = headers.get("x-request-key")
        version = router.pick(key.encode() if key else None)
        lv = route.versions[version]
        stats = route.stats[version]
        try:
            payload = self._json_loads(body)
        except (ValueError, RecursionError) as exc:
            return self._client_error(conn, route, lv, stats, t0, "MALFORMED_JSON",
                                      f"The request body is not valid JSON: {exc}.")
        try:
            x, n, params = lv.to_input(payload)
        except ClientError as exc:
            return self._client_error(conn, route, lv, stats, t0, exc.code, exc.message, exc.status)
        except (TypeError, ValueError, KeyError, IndexError, RecursionError) as exc:
            return self._client_error(conn, route, lv, stats, t0, "BAD_REQUEST",
                                      f"The input could not be read as rows of the model's columns "
                                      f"({type(exc).__name__}: {exc}).")
        item = _Item(conn, x, n, t0, time.time(), route, stats)
        if lv.numeric and not params:
            lv.pending.append(item)
            if len(lv.pending) == 1:
                self._dirty.append(lv)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self.loop.call_soon(self._run_batches)
            return None
        self._predict_one(lv, item, params)
        return None

    def _client_error(self, conn: HttpConnection, route: Route, lv: LoadedVersion, stats: Stats, t0: float,
                      code: str, message: str, status: int = 400) -> None:
        latency = time.perf_counter() - t0
        stats.client_errors += 1
        stats.observe(latency)
        self.predlog.append(route.tenant, route.model_id, version=lv.version, environment=route.environment,
                            latency_s=latency, success=False, error=message)
        conn.respond(status, _err(code, message), extra=b"X-Model-Version: %s\r\n" % lv.version.encode())

    # -- prediction ----------------------------------------------------------------------
    def _run_batches(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for lv in dirty:
            items, lv.pending = lv.pending, []
            if len(items) == 1:
                self._predict_one(lv, items[0], None)
                continue
            np = self._np
            if np is None:
                import numpy as np

                self._np = np
            try:
                y = lv.predict(np.concatenate([it.x for it in items]))
                if len(y) != sum(it.n for it in items):
                    raise ValueError("batch output length differs from its input")
            except Exception:
                for it in items:  # find the request that made the batch fail
                    self._predict_one(lv, it, None)
                continue
            start = 0
            for it in items:
                self._ok(lv, it, y[start : start + it.n])
                start += it.n

    def _predict_one(self, lv: LoadedVersion, it: _Item, params: Any) -> None:
        try:
            y = lv.predict(it.x, params)
        except Exception as exc:
            latency = time.perf_counter() - it.t0
            it.stats.model_errors += 1
            it.stats.observe(latency)
            msg = f"The model raised {type(exc).__name__}: {exc}"
            self.predlog.append(it.route.tenant, it.route.model_id, version=lv.version,
                                environment=it.route.environment, latency_s=latency, success=False,
                                error=msg, timestamp=it.ts)
            it.conn.respond(500, _err("MODEL_ERROR", msg), extra=b"X-Model-Version: %s\r\n" % lv.version.encode())
            return
        self._ok(lv, it, y)

    def _ok(self, lv: LoadedVersion, it: _Item, y: Any) -> None:
        try:
            preds = to_jsonable(y)
            body = b'{"predictions": ' + self._json_dumps(preds).encode() + b"}"
        except (TypeError, ValueError) as exc:
            it.stats.model_errors += 1
            it.conn.respond(500, _err("MODEL_ERROR", f"The model's output is not JSON-serialisable: {exc}"))
            return
        latency = time.perf_counter() - it.t0
        it.stats.observe(latency)
        route = it.route
        self.predlog.append(route.tenant, route.model_id, version=lv.version, environment=route.environment,
                            latency_s=latency, success=True, features=it.x, columns=lv.columns,
                            output=y, timestamp=it.ts)
        it.conn.respond(200, body, extra=b"X-Model-Version: %s\r\n" % lv.version.encode())

    # -- health and metrics --------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        loaded = {id(lv) for r in self.routes.values() for lv in r.versions.values()}
        return {"status": "ok", "instance": self.instance, "pid": os.getpid(),
                "uptime_s": round(time.time() - self.started, 3), "deployments": len(self.routes),
                "loaded_versions": len(loaded)}

    def metrics_text(self, who: str) -> str:
        def esc(v: str) -> str:
            return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

        rows = [(k, s) for k, s in sorted(self.stats.items()) if who == auth.ADMIN or k[0] == who]
        out = [
            "# HELP mlops_requests_total Prediction requests answered, per model version.",
            "# TYPE mlops_requests_total counter",
        ]
        labels = {k: 'tenant="%s",environment="%s",model="%s",version="%s"' % tuple(esc(x) for x in k)
                  for k, _ in rows}
        out += [f"mlops_requests_total{{{labels[k]}}} {s.requests}" for k, s in rows]
        out += ["# HELP mlops_errors_total Failed prediction requests (kind: client = 4xx, model = 5xx).",
                "# TYPE mlops_errors_total counter"]
        for k, s in rows:
            out.append(f'mlops_errors_total{{{labels[k]},kind="client"}} {s.client_errors}')
            out.append(f'mlops_errors_total{{{labels[k]},kind="model"}} {s.model_errors}')
        out += ["# HELP mlops_request_latency_seconds Time from request parsed to answer written.",
                "# TYPE mlops_request_latency_seconds histogram"]
        for k, s in rows:
            acc = 0
            for b, c in zip(LATENCY_BUCKETS, s.buckets):
                acc += c
                out.append(f'mlops_request_latency_seconds_bucket{{{labels[k]},le="{b}"}} {acc}')
            out.append(f'mlops_request_latency_seconds_bucket{{{labels[k]},le="+Inf"}} {s.requests}')
            out.append(f"mlops_request_latency_seconds_sum{{{labels[k]}}} {s.lat_sum:.9f}")
            out.append(f"mlops_request_latency_seconds_count{{{labels[k]}}} {s.requests}")
        out += ["# HELP mlops_gateway_responses_total HTTP responses by status code.",
                "# TYPE mlops_gateway_responses_total counter"]
        out += [f'mlops_gateway_responses_total{{code="{c}"}} {n}' for c, n in sorted(self.codes.items())]
        out += ["# HELP mlops_prediction_log_dropped_total Prediction records dropped (buffer full or write failed).",
                "# TYPE mlops_prediction_log_dropped_total counter",
                f"mlops_prediction_log_dropped_total {self.predlog.dropped}"]
        return "\n".join(out) + "\n"

    # -- control plane -------------------------------------------------------------------
    def admin_route(self, conn: HttpConnection, method: str, path: str, headers: Mapping[str, str],
                    body: bytes) -> None:
        who = self.authenticate(headers)
        if who is None:
            return self._unauthorized(conn)
        if who != auth.ADMIN:
            return conn.respond(403, _err("FORBIDDEN", "The control plane needs the admin token."))
        if path == "/admin/state" and method == "GET":
            return conn.respond(200, self._json_dumps([r.describe() for r in self.routes.values()]).encode())
        if method != "POST":
            return self._method(conn, method, path, b"POST")
        if path == "/admin/shutdown":
            conn.keep_alive = False
            conn.respond(200, b'{"ok": true}')
            self.loop.call_later(0.05, self.stopping.set)
            return None
        if path == "/admin/flush":
            self.loop.create_task(self._flush_task(conn))
            return None
        if path == "/admin/apply":
            try:
                op = json.loads(body)
                if not isinstance(op, dict):
                    raise ValueError("expected an object")
            except ValueError as exc:
                return conn.respond(400, _err("MALFORMED_JSON", f"Bad admin request: {exc}"))
            self.loop.create_task(self._apply_task(conn, op))
            return None
        return conn.respond(404, _err("NOT_FOUND", f"No such admin path {path!r}."))

    async def _flush_task(self, conn: HttpConnection) -> None:
        """Write the buffered prediction log (off the event loop), so a reader sees it now."""
        try:
            rows = await self.loop.run_in_executor(self.pool, self.predlog.flush)
            conn.respond(200, self._json_dumps({"ok": True, "rows": rows}).encode())
        except Exception as exc:  # pragma: no cover - flush guards each group itself
            conn.respond(500, _err("INTERNAL_ERROR", f"{type(exc).__name__}: {exc}"))

    async def _apply_task(self, conn: HttpConnection, op: dict[str, Any]) -> None:
        try:
            async with self.admin_lock:
                self.reload_tokens()
                status, result, route_change = await self.loop.run_in_executor(self.pool, self.prepare, op)
                if route_change is not None:
                    key, route = route_change
                    routes = dict(self.routes)
                    if route is None:
                        routes.pop(key, None)
                    else:
                        routes[key] = route
                    self.routes = routes  # the one atomic swap
                    gc.freeze()  # models and modules are long-lived: keep them out of GC passes
            conn.respond(status, self._json_dumps(result, default=str).encode())
        except Exception as exc:  # pragma: no cover - prepare() reports its own errors
            log.exception("gateway: admin operation failed")
            conn.respond(500, _err("INTERNAL_ERROR", f"{type(exc).__name__}: {exc}"))

    def _loaded(self) -> dict[tuple[str, str, str, str], LoadedVersion]:
        return {(lv.tenant, lv.model_id, lv.version, lv.sha256): lv
                for r in self.routes.values() for lv in r.versions.values()}

    def _load(self, tenant: str, model_id: str, version: str, spec: Mapping[str, Any],
              loaded: dict[tuple[str, str, str, str], LoadedVersion]) -> LoadedVersion:
        lv = loaded.get((tenant, model_id, version, spec.get("sha256")))
        if lv is not None and lv.path == spec.get("path"):
            return lv  # already live (verified when it was loaded); shared, not reloaded
        lv, _ = load_version({**spec, "tenant": tenant, "model_id": model_id, "version": version})
        return lv

    def _stats_for(self, tenant: str, env: str, model_id: str, versions: Any) -> dict[str, Stats]:
        out = {}
        for v in versions:
            s = self.stats.get((tenant, env, model_id, v))
            if s is None:
                s = self.stats[(tenant, env, model_id, v)] = Stats()
            out[v] = s
        return out

    def prepare(self, op: Mapping[str, Any]) -> tuple[int, dict[str, Any], Any]:
        """Plan and load one change (runs in a worker thread; the swap happens after).

        Returns ``(http status, result, (route key, new Route or None) or None)``.
        """
        try:
            tenant = op["tenant"]
            env = op["environment"]
            model_id = op["model_id"]
            kind = op["op"]
            validate_tenant(tenant)
            validate_environment(env)
            validate_model_id(model_id)
        except KeyError as exc:
            return 400, {"ok": False, "error_code": "BAD_REQUEST", "message": f"missing {exc}"}, None
        except MLOpsError as exc:
            return 400, {"ok": False, "error_code": "INVALID", "message": str(exc)}, None
        key = (tenant, env, model_id)
        rec = self.store.get_deployment(tenant, env, model_id)
        cur = dict(rec["traffic"]) if rec else {}
        specs = dict(rec["versions"]) if rec else {}
        specs.update(op.get("specs") or {})
        config = rec["config"] if rec else {}
        try:
            if kind == "deploy":
                new = traffic.add_version(cur, op["version"], traffic.check_percentage(op["traffic_percentage"]))
            elif kind == "traffic":
                new = traffic.check_table(op["traffic"])
            elif kind == "rollback":
                new = {op["version"]: 100}
            elif kind == "undeploy":
                if rec is None:
                    return 404, {"ok": False, "error_code": "NOT_FOUND",
                                 "message": f"Model {model_id!r} is not deployed in {env!r}."}, None
                new = traffic.remove_version(cur, op["version"]) if op.get("version") else {}
            else:
                return 400, {"ok": False, "error_code": "BAD_REQUEST", "message": f"unknown op {kind!r}"}, None
        except MLOpsError as exc:
            return 400, {"ok": False, "error_code": "INVALID", "message": str(exc)}, None
        if op.get("config") is not None:
            config = op["config"]
        if kind == "undeploy" and not new:
            self.store.delete_deployment(tenant, env, model_id)
            log.info("gateway: undeployed %s/%s/%s", tenant, env, model_id)
            return 200, {"ok": True, "record": None}, (key, None)
        missing = [v for v in new if v not in specs]
        if missing:
            return 400, {"ok": False, "error_code": "INVALID",
                         "message": f"No artifact given for version(s) {missing}."}, None
        loaded = self._loaded()
        versions: dict[str, LoadedVersion] = {}
        try:
            for v in new:
                versions[v] = self._load(tenant, model_id, v, specs[v], loaded)
        except (IntegrityError, LoadError) as exc:
            code = "INTEGRITY" if isinstance(exc, IntegrityError) else "LOAD_FAILED"
            log.warning("gateway: %s %s/%s/%s refused: %s", kind, tenant, env, model_id, exc)
            if rec is None:
                failed = {"tenant": tenant, "environment": env, "model_id": model_id,
                          "deployment_id": "dep_" + secrets.token_hex(6), "status": "failed",
                          "reason": str(exc), "revision": 0, "traffic": {}, "versions": {},
                          "config": config, "history": [], "extra": {}}
                self.store.put_deployment(failed)
                return 200, {"ok": False, "error_code": code, "message": str(exc), "record": failed}, (
                    key, Route(failed, {}, {}, {}))
            return 200, {"ok": False, "error_code": code, "message": str(exc), "record": rec}, None
        now = time.time()
        record = {
            "tenant": tenant, "environment": env, "model_id": model_id,
            "deployment_id": rec["deployment_id"] if rec else "dep_" + secrets.token_hex(6),
            "status": "deployed", "reason": None, "revision": (rec["revision"] + 1) if rec else 1,
            "created_at": rec["created_at"] if rec else now, "updated_at": now,
            "traffic": new, "versions": {v: specs[v] for v in new}, "config": config,
            "history": traffic.push_history(rec["history"] if rec else [], cur, new), "extra": {},
        }
        self.store.put_deployment(record)
        log.info("gateway: %s %s/%s/%s -> %s", kind, tenant, env, model_id, new)
        route = Route(record, versions, new, self._stats_for(tenant, env, model_id, new))
        return 200, {"ok": True, "record": record}, (key, route)

    # -- restore on start ----------------------------------------------------------------
    def restore(self) -> None:
        """Load every stored deployment (called once, before the port opens)."""
        routes: dict[tuple[str, str, str], Route] = {}
        loaded: dict[tuple[str, str, str, str], LoadedVersion] = {}
        for rec in self.store.list_deployments():
            key = (rec["tenant"], rec["environment"], rec["model_id"])
            want = dict(rec["traffic"])
            if not want:
                routes[key] = Route(rec, {}, {}, {})
                continue
            versions: dict[str, LoadedVersion] = {}
            problems = []
            for v in want:
                spec = rec["versions"].get(v)
                try:
                    if spec is None:
                        raise LoadError(f"no artifact recorded for version {v}")
                    lv = self._load(rec["tenant"], rec["model_id"], v, spec, loaded)
                    loaded[(lv.tenant, lv.model_id, lv.version, lv.sha256)] = lv
                    versions[v] = lv
                except (IntegrityError, LoadError) as exc:
                    problems.append(str(exc))
            live = traffic.scale({v: p for v, p in want.items() if v in versions}, 100)
            status = "deployed" if not problems else ("degraded" if live else "failed")
            if problems:
                rec = {**rec, "status": status, "reason": "; ".join(problems)}
                self.store.put_deployment(rec)
                log.warning("gateway: restored %s as %s: %s", "/".join(key), status, rec["reason"])
            elif rec.get("status") != "deployed":
                rec = {**rec, "status": "deployed", "reason": None}
                self.store.put_deployment(rec)
            routes[key] = Route(rec, versions, live, self._stats_for(*key, live))
        self.routes = routes
        log.info("gateway: restored %d deployment(s)", len(routes))

    def close(self) -> None:
        self.alert_scheduler.stop()
        self.predlog.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.store.close()


# -- process entry point --------------------------------------------------------------------
def _write_info(home: Path, info: dict[str, Any]) -> None:
    tmp = home / f".{INFO_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, home / INFO_FILE)


def _remove_info(home: Path, pid: int) -> None:
    f = home / INFO_FILE
    try:
        if json.loads(f.read_text()).get("pid") == pid:
            f.unlink()
    except (OSError, ValueError):
        pass


def run_gateway(home: str | os.PathLike[str], host: str = "127.0.0.1", port: int | None = None,
                flush_interval: float = 1.0) -> int:
    """Run the gateway in this process until SIGTERM/SIGINT or ``POST /admin/shutdown``.

    Args:
        home: the storage home to serve.
        host: address to bind (default 127.0.0.1: this machine only).
        port: port to bind; default: the port it had last time if free, else any free port.
        flush_interval: seconds between prediction-log flushes.

    Returns:
        The process exit code (0; 3 if another gateway already serves this home).

    Example:
        $ python -m mlops_jupyter.gateway --foreground --home ./.mlops
    """
    from mlops_jupyter.gateway.models import quiet_feature_name_warnings

    home = Path(home).absolute()
    home.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"mlops-jupyter: a gateway already serves {home} (see {home / INFO_FILE}).", file=sys.stderr)
        os.close(lock_fd)
        return EXIT_ALREADY_RUNNING
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    quiet_feature_name_warnings()
    auth.admin_token(home)  # make sure the control plane's token exists
    gw = Gateway(home, flush_interval=flush_interval)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    gw.loop = loop
    gw.admin_lock = asyncio.Lock()
    gw.stopping = asyncio.Event()
    try:
        gw.restore()
        gw.alert_scheduler.start()
        gc.freeze()
        server = None
        if not port:
            last = gw.store.get_meta(PORT_META)
            if last:
                try:
                    server = loop.run_until_complete(loop.create_server(
                        lambda: HttpConnection(gw), host, int(last), backlog=1024))
                except OSError:
                    server = None
        if server is None:
            server = loop.run_until_complete(loop.create_server(
                lambda: HttpConnection(gw), host, port or 0, backlog=1024))
        bound = server.sockets[0].getsockname()[1]
        gw.store.set_meta(PORT_META, str(bound))
        url_host = host if host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        info = {"pid": os.getpid(), "host": host, "port": bound, "url": f"http://{url_host}:{bound}",
                "instance": gw.instance, "home": str(home), "started_at": time.time(),
                "python": sys.executable}
        _write_info(home, info)
        if host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("gateway: bound to %s: reachable from other machines (tokens still required)", host)
        log.info("gateway: serving %s on %s (pid %d)", home, info["url"], os.getpid())
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, gw.stopping.set)
        loop.run_until_complete(gw.stopping.wait())
        log.info("gateway: stopping")
        server.close()  # no new connections; requests already read get their answers
        loop.run_until_complete(asyncio.sleep(0.1))
        for c in list(gw.connections):
            if c.transport is not None:
                c.transport.close()
    finally:
        _remove_info(home, os.getpid())
        gw.close()
        loop.close()
        os.close(lock_fd)
    return 0
