"""The gateway application: routing, authentication, model routes, health and metrics.

Routes (``T`` tenant, ``E`` environment, ``M`` model id)::

    POST /tenants/T/E/models/M/invocations   MLflow scoring JSON -> {"predictions": [...]}
    GET  /tenants/T/E/models/M               versions, traffic, status
    GET  /ping, /health                      liveness (no token needed)
    GET  /metrics                            Prometheus text (a tenant's token sees its own)
    /admin/...                               control plane (admin token): see :mod:`.admin`

Every GET route answers HEAD too (the same head, no body).

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
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mlops_jupyter.config.settings import GatewayLimits, gateway_limits, secrets_dir
from mlops_jupyter.deployment import tokens as auth
from mlops_jupyter.deployment.plan import DeploymentKey
from mlops_jupyter.gateway.admin import AdminRoutes
from mlops_jupyter.gateway.batching import INLINE_BODY_BYTES, Batching, BatchItem
from mlops_jupyter.gateway.cluster import spool_size
from mlops_jupyter.gateway.health import HealthMetrics
from mlops_jupyter.gateway.http import HttpConnection, Refusal, cap_text, error_body
from mlops_jupyter.gateway.http_state import HttpState
from mlops_jupyter.gateway.metrics import Stats, StatsKey
from mlops_jupyter.gateway.models import ClientError, LoadedVersion
from mlops_jupyter.gateway.routes import FIXED_ROUTES, MODEL_METHODS, Route
from mlops_jupyter.gateway.target import monitor_factory
from mlops_jupyter.monitoring.alerts.scheduler import AlertScheduler
from mlops_jupyter.monitoring.predlog import PredictionLog
from mlops_jupyter.storage.state import open_embedded_store

GIL_SWITCH_S = 0.001
"""The interpreter's thread switch interval in a gateway process (see ``Gateway.__init__``)."""
KNOWN_TOKENS = 1024
"""Valid ``Authorization`` header values remembered by a gateway (see ``Gateway.authenticate``)."""
UNAUTHORIZED_TEXT = (
    "A valid 'Authorization: Bearer <token>' header is required (deployment.get_token() gives the tenant's token)."
)
UNAUTHORIZED_EXTRA = b'WWW-Authenticate: Bearer realm="mlops"\r\n'


def json_media_type(ctype: str) -> bool:
    """Whether a ``Content-Type`` value is ``application/json`` (case-insensitive, any parameters).

    Example:
        >>> json_media_type("Application/JSON; charset=utf-8"), json_media_type("application/jsonl")
        (True, False)
    """
    return ctype.split(";", 1)[0].strip().lower() == "application/json"


class Gateway(AdminRoutes, Batching, HealthMetrics):
    """The gateway's state: routes, loaded versions, tokens, metrics, prediction log.

    Args:
        home: the storage home it serves.
        flush_interval: seconds between prediction-log flushes.
        limits: the HTTP and inference limits (default: from the ``MLOPS_GATEWAY_*`` settings).

    ``loop``, ``admin_lock``, ``stopping`` and ``info`` are set by
    :func:`~mlops_jupyter.gateway.server.run_gateway` once its event loop exists and its
    port is bound.
    """

    def __init__(
        self, home: str | os.PathLike[str], flush_interval: float = 1.0, limits: GatewayLimits | None = None
    ) -> None:
        self.home = Path(home)
        self.limits = limits if limits is not None else gateway_limits()
        # the event loop shares the GIL with the inference threads: hand it over every
        # millisecond (not Python's 5 ms), so a big request in a thread costs others little
        sys.setswitchinterval(GIL_SWITCH_S)
        self.http = HttpState(self.limits)
        self.infer_pool = ThreadPoolExecutor(
            max_workers=self.limits.inference_threads, thread_name_prefix="mlops-gw-infer"
        )
        self.store = open_embedded_store(self.home)
        self.predlog = PredictionLog(self.home, flush_interval=flush_interval, wal=True, max_buffered=spool_size())
        self.alert_scheduler = AlertScheduler(self.home, self.predlog, self.store, monitor_for=monitor_factory(self))
        self.routes: dict[DeploymentKey, Route] = {}
        self.stats: dict[StatsKey, Stats] = {}
        self.codes: dict[int, int] = {}
        self.connections: set[HttpConnection] = set()
        self.instance = secrets.token_hex(8)
        self.started = time.time()
        self.info: dict[str, Any] = {}
        self.tokens: dict[bytes, str] = {}
        self._known: dict[str, str] = {}
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

    # -- tokens --------------------------------------------------------------------------
    def _secrets_mtime(self) -> int:
        try:
            return os.stat(secrets_dir(self.home)).st_mtime_ns
        except OSError:
            return 0

    def reload_tokens(self) -> None:
        self._tokens_mtime = self._secrets_mtime()
        self.tokens = auth.load_digests(self.home)
        self._known = {}

    def authenticate(self, headers: Mapping[str, str]) -> str | None:
        """The tenant (or :data:`~mlops_jupyter.deployment.tokens.ADMIN`) of the request's bearer token, or None.

        Valid ``Authorization`` values are remembered (at most :data:`KNOWN_TOKENS`, forgotten
        whenever the tokens are reloaded), so a request costs one dict lookup, not a SHA-256.
        """
        h = headers.get("authorization")
        if not h:
            return None
        who = self._known.get(h)
        if who is not None:
            return who
        if h[:7].lower() != "bearer ":
            return None
        d = auth.digest(h[7:].strip())
        who = self.tokens.get(d)
        if who is None and self._secrets_mtime() != self._tokens_mtime:
            self.reload_tokens()  # a token was minted since the last look
            who = self.tokens.get(d)
        if who is not None:
            if len(self._known) >= KNOWN_TOKENS:
                self._known.clear()
            self._known[h] = who
        return who

    # -- request dispatch ----------------------------------------------------------------
    def admit(self, method: str, target: str, headers: Mapping[str, str]) -> None:
        """Refuse, from its headers alone, a request that needs a token it lacks (before its body).

        Raises:
            Refusal: 401 without a valid token, 403 with another tenant's (or a tenant's on
                ``/admin/``); the connection is then closed without reading the body.
        """
        path = target.split("?", 1)[0]
        if path.startswith("/tenants/"):
            parts = path.split("/")
            if len(parts) not in (6, 7) or parts[4] != "models":
                return
            tenant = parts[2]
        elif path.startswith("/admin/"):
            tenant = auth.ADMIN
        else:
            return
        who = self.authenticate(headers)
        if who is None:
            raise Refusal(401, "UNAUTHORIZED", UNAUTHORIZED_TEXT, UNAUTHORIZED_EXTRA)
        if who != tenant and who != auth.ADMIN:
            if tenant == auth.ADMIN:
                raise Refusal(403, "FORBIDDEN", "The control plane needs the admin token.")
            raise Refusal(
                403,
                "FORBIDDEN",
                f"This token belongs to another tenant; it cannot reach tenant {tenant!r}'s deployments.",
            )

    def route_refusal(self, method: str, target: str) -> Refusal | None:
        """The 404 or 405 :meth:`dispatch` would answer, decided from the method and target alone.

        Asked (after :meth:`admit`) of a request with a body that expects ``100-continue``, so
        that it gets that answer instead (RFC 9110 10.1.1) and its client never sends the body.
        """
        path = target.split("?", 1)[0]
        if path.startswith("/tenants/"):
            parts = path.split("/")
            shaped = len(parts) in (6, 7) and parts[4] == "models" and all(parts[2:6])
            if not shaped or parts[6:] not in ([], ["invocations"]):
                return Refusal(404, "NOT_FOUND", f"No such path {path!r}.")
            tenant, env, model_id = parts[2], parts[3], parts[5]
            if (tenant, env, model_id) not in self.routes:
                msg = f"Model {model_id!r} is not deployed in environment {env!r} for tenant {tenant!r}."
                return Refusal(404, "NOT_FOUND", msg)
            allow = MODEL_METHODS[len(parts) == 7]
        else:
            allow = FIXED_ROUTES.get(path)
            if allow is None:
                return Refusal(404, "NOT_FOUND", f"No such path {path!r}.")
        if method not in allow.split(", "):
            msg = f"{method} is not allowed on {path}; use {allow}."
            return Refusal(405, "METHOD_NOT_ALLOWED", msg, b"Allow: %s\r\n" % allow.encode())
        return None

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
        if path.startswith("/admin/"):
            return self.admin_route(conn, method, path, headers, body)
        allow = FIXED_ROUTES.get(path)
        if allow is None:
            return conn.respond(404, error_body("NOT_FOUND", f"No such path {path!r}."))
        if method not in allow.split(", "):
            return self._method(conn, method, path, allow)
        if path == "/ping":
            return conn.respond(200, b"\n", b"text/plain; charset=utf-8")
        if path == "/health":
            return self.health_route(conn, headers)
        who = self.authenticate(headers)  # /metrics
        if who is None:
            return self._unauthorized(conn)
        return self.metrics_route(conn, who)

    def _method(self, conn: HttpConnection, method: str, path: str, allow: str) -> None:
        conn.respond(
            405,
            error_body("METHOD_NOT_ALLOWED", f"{method} is not allowed on {path}; use {allow}."),
            extra=b"Allow: %s\r\n" % allow.encode(),
        )

    def _unauthorized(self, conn: HttpConnection) -> None:
        conn.respond(401, error_body("UNAUTHORIZED", UNAUTHORIZED_TEXT), extra=UNAUTHORIZED_EXTRA)

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
        allow = MODEL_METHODS[invocations]
        if method not in allow.split(", "):
            return self._method(conn, method, "/".join(parts), allow)
        if not invocations:
            return conn.respond(200, self._json_dumps(route.describe()).encode())
        ctype = headers.get("content-type")
        if ctype and ctype != "application/json" and not json_media_type(ctype):
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
        item = BatchItem(conn, None, 0, t0, time.time(), route, stats)
        if lv.numeric and len(body) <= INLINE_BODY_BYTES:
            try:  # small numeric requests are parsed here (microseconds) and micro-batched
                item.x, item.n, item.params = lv.parse(body)
            except ClientError as exc:
                return self._client_error(conn, route, lv, stats, t0, exc.code, exc.message, exc.status)
        else:
            item.body = body  # parsed in the inference pool, off the event loop
        self.enqueue(lv, item)
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
        stats.client_errors += 1  # not in the prediction log: see Batching.log_failed
        stats.observe(latency)
        message = cap_text(message)
        conn.respond(status, error_body(code, message), extra=b"X-Model-Version: %s\r\n" % lv.version.encode())

    def close(self) -> None:
        self.alert_scheduler.stop()
        self.http.stop()
        self.infer_pool.shutdown(wait=False, cancel_futures=True)
        self.predlog.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.store.close()
