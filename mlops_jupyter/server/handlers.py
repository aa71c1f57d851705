"""REST handlers of the MLOps API, under ``{base_url}/mlops/api/``.

=======  ===============================  ==============================================
verb     path                             what
=======  ===============================  ==============================================
GET      ``info``                         tenant, package version, store, gateway, MLflow UI URL
GET      ``tenants``                      the tenants a request may choose (the allow-list)
GET      ``experiments``                  the tenant's experiments, run counts, newest run
GET      ``runs?experiment=E&limit=N``    newest runs (params, metrics, tags)
GET      ``runs/{run_id}``                one run
GET      ``runs/{run_id}/detail``         per-step metric history, the source of the run's cell
GET      ``models``                       models: versions, live aliases, deployments
GET      ``models/{id}/versions``         every version of a model
GET      ``models/{id}/lineage``          the version graph
GET      ``models/{id}/drift``            ``?threshold=0.1&window=...``: drift now
GET      ``deployments``                  ``?environment=E``: deployments with health
GET      ``deployments/{model}/{env}``    one deployment
POST     ``deployments/{model}/{env}``    ``{"action": "deploy"|"traffic"|"rollback"|"promote", ...}``
GET      ``alerts``                       ``?model=M&limit=N``: alert history, rules' state
=======  ===============================  ==============================================

JSON in and out. Errors are JSON too: ``{"error": "ModelNotFoundError", "message": "...",
"status": 404, "allowed": [...]}``; client mistakes get 4xx (400 bad input, 404 unknown
model, run, experiment or deployment, 409 a change the current state refuses), 501 a
feature that is not built, 503 the store or gateway unreachable.

Every verb is ``@tornado.web.authenticated`` (Jupyter's token or login; 403 without) and
``@authorized`` (the server's Authorizer, e.g. JupyterHub's, is asked for ``read`` or
``write`` on the resource ``mlops``); POSTs need Jupyter's XSRF check unless
token-authenticated, as every Jupyter API. The
tenant is the server's (``c.MLOpsServer.tenant``) unless a request names another with
``?tenant=T``: one of the allow-list (``c.MLOpsServer.tenants``, see
:mod:`mlops_jupyter.server.tenants`), else 403. A body never names the tenant.
"""

from __future__ import annotations

import json
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from mlops_jupyter import errors as E
from mlops_jupyter.server.service import DEFAULT_RUNS, MAX_RUNS, SERVICE_KEY, MLOpsService, jsonable
from mlops_jupyter.server.tenants import TenantForbiddenError, TenantServices

API = "mlops/api"
UI_URL_KEY = "mlops_mlflow_ui_url"
"""Where the extension keeps ``c.MLOpsServer.mlflow_ui_url`` in the tornado app's settings."""
MAX_BODY = 64 * 1024
# query arguments Jupyter itself may add to any request
_JUPYTER_ARGS = ("token", "_xsrf", "no_track_activity")


def error_status(exc: E.MLOpsError) -> int:
    """The HTTP status of a core error."""
    for cls, status in (
        (TenantForbiddenError, 403),
        (E.FeatureNotAvailableError, 501),
        (E.GatewayError, 503),
        (E.StoreError, 503),
        (E.TenantAccessError, 404),
        (E.NotFoundError, 404),
        (E.EmptyWindowError, 409),
        (E.IntegrityError, 409),
        (E.DeploymentError, 409),
        (E.RunStateError, 409),
        (E.ValidationError, 400),
    ):
        if isinstance(exc, cls):
            return status
    return 400


class ApiError(tornado.web.HTTPError):
    """An error answered as ``{"error", "message", "status", ...}``."""

    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(status, log_message=message.replace("%", "%%"))
        self.payload = {"error": error, "message": message, "status": status, **extra}

    @classmethod
    def from_core(cls, exc: E.MLOpsError, tenant: str) -> ApiError:
        status = error_status(exc)
        if isinstance(exc, E.TenantAccessError):  # say nothing about other tenants' objects
            return cls(404, "NotFoundError", f"Not found for tenant {tenant!r}: {exc.value!r}.")
        extra = {}
        if getattr(exc, "allowed", None) is not None:
            extra["allowed"] = jsonable(exc.allowed)
        return cls(status, type(exc).__name__, str(exc), **extra)


class MLOpsHandler(APIHandler):
    """Base of the API's handlers: the service, query checks, JSON errors."""

    #: query arguments this handler takes (besides Jupyter's own)
    arguments: tuple[str, ...] = ()
    #: what Jupyter's Authorizer is asked about: GET is "read", POST "write" on "mlops"
    auth_resource = "mlops"

    _service: MLOpsService | None = None

    @property
    def tenants(self) -> TenantServices:
        """The allow-list and the services, built once at server start (``web_app.settings``)."""
        return self.settings[SERVICE_KEY]

    @property
    def mlops(self) -> MLOpsService:
        """The service of the request's tenant (set by :meth:`check_arguments`)."""
        return self._service or self.tenants.default

    async def check_arguments(self) -> None:
        """Refuse unknown query arguments; pick the tenant (``?tenant=``, 403 outside the allow-list)."""
        names = set(self.request.query_arguments)
        if "tenant_id" in names:
            raise ApiError(
                400, "ValidationError", "Name the tenant with ?tenant=T (one of GET tenants), not tenant_id."
            )
        # JupyterLab's ServerConnection adds a bare timestamp to GETs against caches: not ours
        unknown = sorted(n for n in names - {*self.arguments, "tenant"} - set(_JUPYTER_ARGS) if not n.isdigit())
        if unknown:
            raise ApiError(
                400, "ValidationError", f"Unknown query argument(s) {unknown}.", allowed=[*self.arguments, "tenant"]
            )
        tenant = self.arg("tenant")
        if tenant is not None and tenant != self.tenants.default_tenant:
            try:
                self._service = await self.tenants.default.read(self.tenants.resolve, tenant)
            except E.MLOpsError as exc:
                raise ApiError.from_core(exc, tenant) from None

    def arg(self, name: str) -> str | None:
        values = self.request.query_arguments.get(name)
        if not values:
            return None
        if len(values) > 1:
            raise ApiError(400, "ValidationError", f"Query argument {name!r} is given {len(values)} times.")
        return values[0].decode("utf-8", "replace")

    def json_body(self) -> Any:
        body = self.request.body or b""
        if len(body) > MAX_BODY:
            raise ApiError(
                413, "ValidationError", f"The request body has {len(body)} bytes; at most {MAX_BODY} are accepted."
            )
        if not body.strip():
            raise ApiError(400, "MalformedJSON", 'The request needs a JSON object body, e.g. {"action": "rollback"}.')
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "MalformedJSON", f"The request body is not valid JSON: {exc}.") from None
        if isinstance(data, dict) and ("tenant" in data or "tenant_id" in data):
            raise ApiError(
                400,
                "ValidationError",
                "A request body never names the tenant (the server's configuration does; ?tenant=T picks "
                "one of its allow-list).",
            )
        return data

    async def result(self, fn: Any, *args: Any, change: bool = False, **kwargs: Any) -> Any:
        """Run a service method off the event loop; core errors become JSON errors."""
        run = self.mlops.change if change else self.mlops.read
        try:
            return await run(fn, *args, **kwargs)
        except E.MLOpsError as exc:
            raise ApiError.from_core(exc, self.mlops.tenant) from None

    async def call(self, fn: Any, *args: Any, change: bool = False, **kwargs: Any) -> None:
        """Run a service method off the event loop and answer its result as JSON."""
        self.finish(json.dumps(jsonable(await self.result(fn, *args, change=change, **kwargs))))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            payload = exc.payload
        elif isinstance(exc, tornado.web.HTTPError):
            message = exc.log_message % exc.args if exc.log_message and exc.args else exc.log_message
            if status_code == 403 and not message:
                message = "Forbidden: this API needs Jupyter's token (or a logged-in session)."
            payload = {"error": "HTTPError", "message": message or self._reason, "status": status_code}
        else:  # unexpected: logged with its traceback by tornado, not sent to the client
            payload = {
                "error": "InternalError",
                "status": status_code,
                "message": f"Internal error ({type(exc).__name__ if exc else 'unknown'}); "
                "see the Jupyter server's log.",
            }
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(payload))


class InfoHandler(MLOpsHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        await self.check_arguments()
        info = await self.result(self.mlops.info)
        info["mlflow_ui_url"] = self.settings.get(UI_URL_KEY) or None
        self.finish(json.dumps(jsonable(info)))


class TenantsHandler(MLOpsHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        await self.check_arguments()
        await self.call(self.tenants.summary)


class ExperimentsHandler(MLOpsHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        await self.check_arguments()
        await self.call(self.mlops.experiments)


class RunsHandler(MLOpsHandler):
    arguments = ("experiment", "limit")

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        await self.check_arguments()
        limit = _int_arg(self.arg("limit"), "limit", DEFAULT_RUNS, 1, MAX_RUNS)
        await self.call(self.mlops.runs, self.arg("experiment") or None, limit)


class RunHandler(MLOpsHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        await self.check_arguments()
        await self.call(self.mlops.run, run_id)


class RunDetailHandler(MLOpsHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        await self.check_arguments()
        await self.call(self.mlops.run_detail, run_id)


class ModelsHandler(MLOpsHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        await self.check_arguments()
        await self.call(self.mlops.models)


class VersionsHandler(MLOpsHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, model_id: str) -> None:
        await self.check_arguments()
        await self.call(self.mlops.versions, model_id)


class LineageHandler(MLOpsHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, model_id: str) -> None:
        await self.check_arguments()
        await self.call(self.mlops.lineage, model_id)


class DriftHandler(MLOpsHandler):
    arguments = ("threshold", "window")

    @tornado.web.authenticated
    @authorized
    async def get(self, model_id: str) -> None:
        await self.check_arguments()
        threshold = _float_arg(self.arg("threshold"), "threshold", 0.1)
        window = self.arg("window")
        if window is not None and window.isdigit():
            window = int(window)  # a number of recent predictions; other forms go to the core as given
        await self.call(self.mlops.drift, model_id, threshold, window or None)


class DeploymentsHandler(MLOpsHandler):
    arguments = ("environment",)

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        await self.check_arguments()
        await self.call(self.mlops.deployments, self.arg("environment") or None)


class DeploymentHandler(MLOpsHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, model_id: str, environment: str) -> None:
        await self.check_arguments()
        await self.call(self.mlops.deployment, model_id, environment)

    @tornado.web.authenticated
    @authorized
    async def post(self, model_id: str, environment: str) -> None:
        await self.check_arguments()
        body = self.json_body()
        await self.call(self.mlops.change_deployment, model_id, environment, body, change=True)


class AlertsHandler(MLOpsHandler):
    arguments = ("model", "limit")

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        await self.check_arguments()
        limit = _int_arg(self.arg("limit"), "limit", 100, 1, MAX_RUNS)
        await self.call(self.mlops.alerts, self.arg("model") or None, limit)


class NotFoundHandler(MLOpsHandler):
    """Any other path under the API: a JSON 404 listing the routes."""

    def _missing(self, path: str) -> None:
        raise ApiError(404, "NotFound", f"No MLOps API route {self.request.method} /{API}/{path}.", allowed=ROUTES_HELP)

    @tornado.web.authenticated
    @authorized
    def get(self, path: str) -> None:
        self._missing(path)

    @tornado.web.authenticated
    @authorized
    def post(self, path: str) -> None:
        self._missing(path)

    @tornado.web.authenticated
    @authorized
    def put(self, path: str) -> None:
        self._missing(path)

    @tornado.web.authenticated
    @authorized
    def delete(self, path: str) -> None:
        self._missing(path)

    @tornado.web.authenticated
    @authorized
    def patch(self, path: str) -> None:
        self._missing(path)


ROUTES_HELP = [
    "GET info",
    "GET tenants",
    "GET experiments",
    "GET runs?experiment=E&limit=N",
    "GET runs/{run_id}",
    "GET runs/{run_id}/detail",
    "GET models",
    "GET models/{id}/versions",
    "GET models/{id}/lineage",
    "GET models/{id}/drift?threshold=T&window=W",
    "GET deployments?environment=E",
    "GET deployments/{model}/{env}",
    "POST deployments/{model}/{env}",
    "GET alerts?model=M&limit=N",
]

_SEG = r"([^/]+)"


def route_patterns() -> list[tuple[str, type]]:
    """The API's routes, relative to the server's base_url (the extension app prepends it)."""

    def p(path: str) -> str:
        return url_path_join("/", API, path)

    return [
        (p("/?"), InfoHandler),
        (p("info"), InfoHandler),
        (p("tenants"), TenantsHandler),
        (p("experiments"), ExperimentsHandler),
        (p("runs"), RunsHandler),
        (p(f"runs/{_SEG}"), RunHandler),
        (p(f"runs/{_SEG}/detail"), RunDetailHandler),
        (p("models"), ModelsHandler),
        (p(f"models/{_SEG}/versions"), VersionsHandler),
        (p(f"models/{_SEG}/lineage"), LineageHandler),
        (p(f"models/{_SEG}/drift"), DriftHandler),
        (p("deployments"), DeploymentsHandler),
        (p(f"deployments/{_SEG}/{_SEG}"), DeploymentHandler),
        (p("alerts"), AlertsHandler),
        (p("(.*)"), NotFoundHandler),
    ]


def _int_arg(raw: str | None, name: str, default: int, lo: int, hi: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:
        raise ApiError(400, "ValidationError", f"Invalid {name} {raw!r}.", allowed=f"an integer from {lo} to {hi}")
    return value


def _float_arg(raw: str | None, name: str, default: float) -> float:
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ApiError(400, "ValidationError", f"Invalid {name} {raw!r}.", allowed="a positive number such as 0.1")
    return value
