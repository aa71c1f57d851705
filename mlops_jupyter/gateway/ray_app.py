"""The gateway's serving code on Ray Serve: one Serve deployment per model version, one ingress.

The ``ray`` deployment target (:mod:`mlops_jupyter.deployment.targets.ray_serve`) names the
application builders of this module by import path, as Serve's own ``serve run module:app``
does, so the deployment layer never imports the gateway. The replicas run the gateway's own
code: :func:`~mlops_jupyter.gateway.models.load_version` (integrity check, load, test
prediction), the same input parsing and the same JSON answers, and every prediction is
appended to the home's prediction log (:class:`~mlops_jupyter.monitoring.predlog.PredictionLog`,
one writer per replica, files named by pid) exactly as the local gateway does, so
monitoring reads Ray's predictions unchanged.

- :class:`VersionServer` (application ``mlops-<tenant>-<env>-<model>-<version>``, no HTTP
  route): one model version, ``num_replicas`` and ``ray_actor_options`` from the
  deployment's ``config``.
- :class:`Ingress` (application ``mlops-ingress``, route ``/``): the local gateway's URL
  shape and contract (bearer tokens per tenant, 401/403, ``X-Model-Version``, the sticky
  ``X-Request-Key`` split by the same hash as the gateway's
  :class:`~mlops_jupyter.deployment.traffic.Router`, 4xx JSON errors). Its routing table and
  token digests are its ``user_config``: a change is a Serve in-place ``reconfigure`` (no
  replica restarts), swapped in one assignment, so requests in flight finish on the table
  they started with. A body over ``MLOPS_GATEWAY_MAX_BODY_BYTES`` is 413 before it reaches a
  model replica, a method a route does not take 405 with ``Allow``, a media type other than
  ``application/json`` (compared as the gateway does) 415.

Ray's HTTP proxy (uvicorn, with llhttp through httptools) parses the request and reads the
whole body before this code runs: the gateway's limits on the wire (header and body
timeouts, bodies refused from their headers before they are read, connection caps, unread
answers) are the proxy's, not this module's. What is checked here, it checks after the proxy
read the body; a request line llhttp refuses (an unknown method) never reaches this code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from ray import serve

from mlops_jupyter.config.settings import gateway_limits
from mlops_jupyter.deployment import tokens as auth
from mlops_jupyter.deployment.traffic import Router
from mlops_jupyter.gateway.app import json_media_type
from mlops_jupyter.gateway.http import cap_text, error_body
from mlops_jupyter.gateway.models import ClientError, load_version, quiet_feature_name_warnings, to_jsonable
from mlops_jupyter.gateway.routes import MODEL_METHODS

VERSION_DEPLOYMENT = "model"
"""The name of the one deployment of every version application."""
INGRESS_DEPLOYMENT = "ingress"

JSON_TYPE = "application/json"


class VersionServer:
    """One model version: loaded and verified at start, predicting and logging per request.

    Args:
        home: the storage home (its prediction log is written here).
        spec: the version's spec plus ``tenant``, ``model_id``, ``version``, ``environment``.
        flush_interval: seconds between the prediction log's writes.
    """

    def __init__(self, home: str, spec: Mapping[str, Any], flush_interval: float = 1.0) -> None:
        from mlops_jupyter.monitoring.predlog import PredictionLog

        quiet_feature_name_warnings()
        self.lv, _ = load_version(spec)  # raises: Serve reports the deployment as failed
        self.environment = spec["environment"]
        self.predlog = PredictionLog(home, flush_interval=flush_interval)

    def predict(self, body: bytes) -> tuple[int, bytes]:
        """``(HTTP status, JSON body)`` for one scoring request; every prediction and model failure is logged.

        The body is read by the gateway's own :meth:`LoadedVersion.parse
        <mlops_jupyter.gateway.models.LoadedVersion.parse>`, so a bad body (not JSON, a
        non-finite or out-of-range number, a wrong shape) is the same 400 as on the local target."""
        lv, t0, ts = self.lv, time.perf_counter(), time.time()
        try:
            x, _, params = lv.parse(body)
        except ClientError as exc:
            return self._failed(t0, ts, exc.status, exc.code, exc.message)
        try:
            y = lv.predict(x, params)
        except Exception as exc:
            return self._failed(t0, ts, 500, "MODEL_ERROR", f"The model raised {type(exc).__name__}: {exc}")
        out = b'{"predictions": ' + json.dumps(to_jsonable(y)).encode() + b"}"
        self._log(t0, ts, success=True, features=x, columns=lv.columns, output=y)
        return 200, out

    def _failed(self, t0: float, ts: float, status: int, code: str, message: str) -> tuple[int, bytes]:
        """A failed request's answer, its error text capped as the gateway caps it (an
        exception's text can echo a whole request body); logged only when the model failed
        (5xx), as the gateway logs (a client's 4xx never reached the model)."""
        message = cap_text(message)
        if status >= 500:
            self._log(t0, ts, success=False, error=message)
        return status, error_body(code, message)

    def _log(self, t0: float, ts: float, **outcome: Any) -> None:
        """One prediction-log record of this version, as the local gateway writes it."""
        lv = self.lv
        self.predlog.append(
            lv.tenant,
            lv.model_id,
            version=lv.version,
            environment=self.environment,
            latency_s=time.perf_counter() - t0,
            timestamp=ts,
            **outcome,
        )

    def __del__(self) -> None:  # Serve calls it when the replica stops: write what is buffered
        predlog = getattr(self, "predlog", None)
        if predlog is not None:
            predlog.close()


class _Route:
    __slots__ = ("describe", "handles", "reason", "router")

    def __init__(self, entry: Mapping[str, Any]) -> None:
        self.describe = entry["describe"]
        table = entry["traffic"]
        self.router = Router(table) if table else None
        self.reason = entry["describe"].get("reason")
        self.handles = {v: serve.get_deployment_handle(VERSION_DEPLOYMENT, app) for v, app in entry["apps"].items()}


class Ingress:
    """The HTTP front of every Ray deployment of a home (see the module docstring)."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str, str], _Route] = {}
        self.tokens: dict[bytes, str] = {}
        self.generation = 0
        self.max_body_bytes = gateway_limits().max_body_bytes

    def reconfigure(self, config: Mapping[str, Any]) -> None:
        """Serve's in-place update: ``{"routes": [...], "tokens": {sha256 hex: tenant},
        "generation": n}``; ``GET /health`` answers the generation, so the target knows
        when the new table serves."""
        routes = {(e["tenant"], e["environment"], e["model_id"]): _Route(e) for e in config.get("routes", [])}
        tokens = {bytes.fromhex(d): who for d, who in (config.get("tokens") or {}).items()}
        self.routes, self.tokens = routes, tokens  # swapped together, between two requests
        self.generation = config.get("generation", 0)

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import Response

        status, body, headers = await self.answer(request)
        return Response(body, status_code=status, media_type=JSON_TYPE, headers=headers)

    async def answer(self, request: Any) -> tuple[int, bytes, dict[str, str] | None]:
        """``(status, JSON body, extra headers)`` of one request."""
        path, method = request.url.path, request.method
        if path in ("/ping", "/health"):
            health = {"status": "ok", "deployments": len(self.routes), "generation": self.generation}
            return 200, json.dumps(health).encode(), None
        parts = path.split("/")
        if not (path.startswith("/tenants/") and len(parts) in (6, 7) and parts[4] == "models" and all(parts[2:6])):
            msg = f"No such path {path!r}; model routes are /tenants/TENANT/ENVIRONMENT/models/MODEL[/invocations]."
            return 404, error_body("NOT_FOUND", msg), None
        tenant, env, model_id = parts[2], parts[3], parts[5]
        if len(parts) == 7 and parts[6] != "invocations":
            msg = f"No such path; did you mean /tenants/{tenant}/{env}/models/{model_id}/invocations?"
            return 404, error_body("NOT_FOUND", msg), None
        denied = self._check_token(request.headers.get("authorization"), tenant)
        if denied:
            return denied
        route = self.routes.get((tenant, env, model_id))
        if route is None:
            mine = ", ".join(sorted(f"{e}/{m}" for (t, e, m) in self.routes if t == tenant)) or "(none)"
            msg = f"Model {model_id!r} is not deployed in environment {env!r} for tenant {tenant!r}. Deployed: {mine}."
            return 404, error_body("NOT_FOUND", msg), None
        invocations = len(parts) == 7
        allow = MODEL_METHODS[invocations]
        if method not in allow.split(", "):
            msg = f"{cap_text(method, 64)} is not allowed on {path}; use {allow}."
            return 405, error_body("METHOD_NOT_ALLOWED", msg), {"Allow": allow}
        if not invocations:
            return 200, json.dumps(route.describe).encode(), None
        ctype = request.headers.get("content-type")
        if ctype and not json_media_type(ctype):
            msg = f"Content-Type {ctype!r} is not supported; send application/json in MLflow's scoring format."
            return 415, error_body("UNSUPPORTED_MEDIA_TYPE", msg), None
        if route.router is None:
            msg = f"Model {model_id!r} in {env!r} has no live version: {route.reason or 'its deployment failed'}."
            return 503, error_body("NOT_SERVING", msg), None
        length = request.headers.get("content-length", "")
        declared = int(length) if length.isdigit() else 0  # (a chunked body has none)
        body = b"" if declared > self.max_body_bytes else await request.body()
        if max(declared, len(body)) > self.max_body_bytes:
            size = max(declared, len(body))
            msg = f"The request body has {size} bytes; at most {self.max_body_bytes} bytes are accepted."
            return 413, error_body("PAYLOAD_TOO_LARGE", msg), None
        key = request.headers.get("x-request-key")
        version = route.router.pick(key.encode() if key else None)
        status, body = await route.handles[version].predict.remote(body)
        return status, body, {"X-Model-Version": version}

    def _check_token(self, header: str | None, tenant: str) -> tuple[int, bytes, dict[str, str] | None] | None:
        who = self.tokens.get(auth.digest(header[7:].strip())) if header and header[:7].lower() == "bearer " else None
        if who is None:
            msg = (
                "A valid 'Authorization: Bearer <token>' header is required "
                "(deployment.get_token() gives the tenant's token)."
            )
            return 401, error_body("UNAUTHORIZED", msg), {"WWW-Authenticate": 'Bearer realm="mlops"'}
        if who != tenant and who != auth.ADMIN:
            msg = f"This token belongs to another tenant; it cannot reach tenant {tenant!r}'s deployments."
            return 403, error_body("FORBIDDEN", msg), None
        return None


def build_version(args: Mapping[str, Any]) -> Any:
    """Serve application builder of one version (``import_path`` ``...ray_app:build_version``):
    ``args`` = ``home``, ``spec``, ``flush_interval``. Replicas, actor options and
    ``max_ongoing_requests`` come from the application config's ``deployments`` entry, so
    changing them is one of Serve's in-place updates (the code version is the args' hash)."""
    dep = serve.deployment(VersionServer, name=VERSION_DEPLOYMENT, max_constructor_retry_count=1)
    return dep.bind(args["home"], args["spec"], args["flush_interval"])


def build_ingress(args: Mapping[str, Any]) -> Any:
    """Serve application builder of the ingress (``...ray_app:build_ingress``, no args): its
    routing table and token digests are the ``user_config`` of the application config, so a
    change is an in-place ``reconfigure`` of the running replica."""
    return serve.deployment(Ingress, name=INGRESS_DEPLOYMENT).bind()
