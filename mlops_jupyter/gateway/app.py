"""The gateway application: routing, authentication, model routes, health and metrics.

Routes (``T`` tenant, ``E`` environment, ``M`` model id)::

    POST /tenants/T/E/models/M/invocations   MLflow scoring JSON -> {"predictions": [...]}
    GET  /tenants/T/E/models/M               versions, traffic, status
    GET  /ping, /health                      liveness (no token needed)
    GET  /metrics                            Prometheus text (a tenant's token sees its own)
    /admin/...                               control plane (admin token): see :mod:`.admin`

Every model route needs ``Authorization: Bearer <token>`` of the tenant in the path (401
without a valid token, 403 with another tenant's). Answers carry ``X-Model-Version``.

The request path is deliberately framework-free: stdlib ``json`` and no DataFrame per
request for numeric scikit-learn models; predictions are batched by :mod:`.batching`. The
:class:`Gateway` is composed of mixins (:class:`~.admin.AdminRoutes`,
:class:`~.batching.Batching`) so that every method on the request path stays one
bound-method lookup away.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mlops_jupyter.config.settings import secrets_dir
from mlops_jupyter.deployment import tokens as auth
from mlops_jupyter.deployment.plan import DeploymentKey
from mlops_jupyter.gateway import metrics
from mlops_jupyter.gateway.admin import AdminRoutes
from mlops_jupyter.gateway.batching import Batching, BatchItem
from mlops_jupyter.gateway.http import HttpConnection, error_body
from mlops_jupyter.gateway.metrics import Stats, StatsKey
from mlops_jupyter.gateway.models import ClientError, LoadedVersion
from mlops_jupyter.gateway.routes import Route
from mlops_jupyter.gateway.target import monitor_factory
from mlops_jupyter.monitoring.alerts.scheduler import AlertScheduler
from mlops_jupyter.monitoring.predlog import PredictionLog
from mlops_jupyter.storage.state import open_embedded_store


class Gateway(AdminRoutes, Batching):
    """The gateway's state: routes, loaded versions, tokens, metrics, prediction log.

    Args:
        home: the storage home it serves.
        flush_interval: seconds between prediction-log flushes.

    ``loop``, ``admin_lock``, ``stopping`` and ``info`` are set by
    :func:`~mlops_jupyter.gateway.server.run_gateway` once its event loop exists and its
    port is bound.
    """

    def __init__(self, home: str | os.PathLike[str], flush_interval: float = 1.0) -> None:
        self.home = Path(home)
        self.store = open_embedded_store(self.home)
        self.predlog = PredictionLog(self.home, flush_interval=flush_interval)
        self.alert_scheduler = AlertScheduler(self.home, self.predlog, self.store, monitor_for=monitor_factory(self))
        self.routes: dict[DeploymentKey, Route] = {}
        self.stats: dict[StatsKey, Stats] = {}
        self.codes: dict[int, int] = {}
        self.connections: set[HttpConnection] = set()
        self.instance = secrets.token_hex(8)
        self.started = time.time()
        self.info: dict[str, Any] = {}
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
            return os.stat(secrets_dir(self.home)).st_mtime_ns
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
    def dispatch(self, conn: HttpConnection, method: str, target: str, headers: Mapping[str, str], body: bytes) -> None:
        path = target.split("?", 1)[0]
        if path.startswith("/tenants/"):
            parts = path.split("/")
            if len(parts) in (6, 7) and parts[4] == "models" and all(parts[2:6]):
                return self.model_route(conn, method, parts, headers, body)
            return conn.respond(
                404,
                error_body(
                    "NOT_FOUND",
                    f"No such path {path!r}; model routes are /tenants/TENANT/ENVIRONMENT/models/MODEL[/invocations].",
                ),
            )
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
        return conn.respond(404, error_body("NOT_FOUND", f"No such path {path!r}."))

    def _method(self, conn: HttpConnection, method: str, path: str, allow: bytes) -> None:
        conn.respond(
            405,
            error_body("METHOD_NOT_ALLOWED", f"{method} is not allowed on {path}; use {allow.decode()}."),
            extra=b"Allow: %s\r\n" % allow,
        )

    def _unauthorized(self, conn: HttpConnection) -> None:
        conn.respond(
            401,
            error_body(
                "UNAUTHORIZED",
                "A valid 'Authorization: Bearer <token>' header is required "
                "(deployment.get_token() gives the tenant's token).",
            ),
            extra=b'WWW-Authenticate: Bearer realm="mlops"\r\n',
        )

    def model_route(
        self, conn: HttpConnection, method: str, parts: list[str], headers: Mapping[str, str], body: bytes
    ) -> None:
        tenant, env, model_id = parts[2], parts[3], parts[5]
        invocations = len(parts) == 7
        if invocations and parts[6] != "invocations":
            return conn.respond(
                404,
                error_body(
                    "NOT_FOUND", f"No such path; did you mean /tenants/{tenant}/{env}/models/{model_id}/invocations?"
                ),
            )
        who = self.authenticate(headers)
        if who is None:
            return self._unauthorized(conn)
        if who != tenant and who != auth.ADMIN:
            return conn.respond(
                403,
                error_body(
                    "FORBIDDEN",
                    f"This token belongs to another tenant; it cannot reach tenant {tenant!r}'s deployments.",
                ),
            )
        route = self.routes.get((tenant, env, model_id))
        if route is None:
            mine = sorted(f"{e}/{m}" for (t, e, m) in self.routes if t == tenant)
            return conn.respond(
                404,
                error_body(
                    "NOT_FOUND",
                    f"Model {model_id!r} is not deployed in environment "
                    f"{env!r} for tenant {tenant!r}. Deployed: "
                    f"{', '.join(mine) or '(none)'}.",
                ),
            )
        if not invocations:
            if method != "GET":
                return self._method(conn, method, "/".join(parts), b"GET")
            return conn.respond(200, self._json_dumps(route.describe()).encode())
        if method != "POST":
            return self._method(conn, method, "/".join(parts), b"POST")
        ctype = headers.get("content-type")
        if ctype and not ctype.startswith("application/json"):
            return conn.respond(
                415,
                error_body(
                    "UNSUPPORTED_MEDIA_TYPE",
                    f"Content-Type {ctype!r} is not supported; send application/json in MLflow's scoring format.",
                ),
            )
        router = route.router
        if router is None:
            return conn.respond(
                503,
                error_body(
                    "NOT_SERVING",
                    f"Model {model_id!r} in {env!r} has no live version: "
                    f"{route.record.get('reason') or 'its deployment failed'}.",
                ),
            )
        t0 = time.perf_counter()
        key = headers.get("x-request-key")
        version = router.pick(key.encode() if key else None)
        lv = route.versions[version]
        stats = route.stats[version]
        try:
            payload = self._json_loads(body)
        except (ValueError, RecursionError) as exc:
            return self._client_error(
                conn, route, lv, stats, t0, "MALFORMED_JSON", f"The request body is not valid JSON: {exc}."
            )
        try:
            x, n, params = lv.to_input(payload)
        except ClientError as exc:
            return self._client_error(conn, route, lv, stats, t0, exc.code, exc.message, exc.status)
        except (TypeError, ValueError, KeyError, IndexError, RecursionError) as exc:
            return self._client_error(
                conn,
                route,
                lv,
                stats,
                t0,
                "BAD_REQUEST",
                f"The input could not be read as rows of the model's columns ({type(exc).__name__}: {exc}).",
            )
        item = BatchItem(conn, x, n, t0, time.time(), route, stats)
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

    def _client_error(
        self,
        conn: HttpConnection,
        route: Route,
        lv: LoadedVersion,
        stats: Stats,
        t0: float,
        code: str,
        message: str,
        status: int = 400,
    ) -> None:
        latency = time.perf_counter() - t0
        stats.client_errors += 1
        stats.observe(latency)
        self.predlog.append(
            route.tenant,
            route.model_id,
            version=lv.version,
            environment=route.environment,
            latency_s=latency,
            success=False,
            error=message,
        )
        conn.respond(status, error_body(code, message), extra=b"X-Model-Version: %s\r\n" % lv.version.encode())

    # -- health and metrics --------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        loaded = {id(lv) for r in self.routes.values() for lv in r.versions.values()}
        return {
            "status": "ok",
            "instance": self.instance,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started, 3),
            "deployments": len(self.routes),
            "loaded_versions": len(loaded),
        }

    def metrics_text(self, who: str) -> str:
        return metrics.render(self.stats, self.codes, self.predlog.dropped, who)

    def close(self) -> None:
        self.alert_scheduler.stop()
        self.predlog.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.store.close()
