"""One settings object shared by the pipeline's parts, and the layout of a storage home.

Resolution order for each setting: the argument, then the environment variable
(``MLOPS_TENANT``, ``MLFLOW_TRACKING_URI``, ``MLOPS_HOME``), then the embedded default:
everything under ``./.mlops/`` (a sqlite tracking and registry DB, ``mlflow.db``, and
an ``artifacts/`` folder), so a fresh notebook works with no server.

The layout of a storage home (``Settings.home``) is written down here and only here; the
parts ask these functions (or the matching :class:`Settings` properties) for a path and
never join names onto the home themselves::

    {home}/
      mlflow.db                  embedded MLflow tracking + registry DB   tracking_db_path()
      artifacts/{tenant}/...     artifacts of the embedded store          artifact_root(), tenant_artifact_root()
      journal/                   write journals of live processes         journal_dir()
      mlops.db                   our state DB (deployments, alerts)       state_db_path()
      model-cache/{tenant}/...   models downloaded from a remote store    model_cache_dir()
      predictions/               the prediction log (monitoring.predlog)  predictions_dir()
      monitoring/{tenant}/{model}/  reference data set with set_reference  references_dir()
      secrets/                   bearer tokens (0700, files 0600)         secrets_dir()
      gateway.json|.lock|.log    the serving gateway's info, lock, log    gateway_info_path()...
      reports/                   executed notebooks (mlops-jupyter report) reports_dir()
      models/                    model files the demo writes              models_dir()
      kserve/{tenant}/{env}/{model}.yaml  rendered InferenceServices      kserve_manifest_path()

Example:
    >>> home = Path("/tmp/store")
    >>> str(journal_dir(home)), str(state_db_path(home))
    ('/tmp/store/journal', '/tmp/store/mlops.db')
    >>> str(sqlite_db_path("sqlite:////tmp/store/mlflow.db"))
    '/tmp/store/mlflow.db'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from mlops_jupyter.config import env
from mlops_jupyter.config.names import Tenancy, validate_experiment_name, validate_tenant
from mlops_jupyter.errors import InvalidSettingError

SUPPORTED_URI_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql")

# Files of the serving gateway under a storage home, shared by the gateway process and the
# local deployment target that starts it (neither imports the other).
GATEWAY_INFO_FILE = "gateway.json"
"""pid, port, URL and instance id of the running gateway, written once it serves."""
GATEWAY_LOCK_FILE = "gateway.lock"
"""flock-held by the running gateway: tells "running" from a stale info file."""
GATEWAY_LOG_FILE = "gateway.log"
GATEWAY_PORT_META = "gateway.port"
"""State-DB meta key: the port the gateway bound last (reused when free)."""
GATEWAY_EXIT_ALREADY_RUNNING = 3
"""Exit code of a gateway that found another one serving the same home."""

# The storage home's layout (see the module docstring).
TRACKING_DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "artifacts"
JOURNAL_DIR = "journal"
STATE_DB_FILE = "mlops.db"
MODEL_CACHE_DIR = "model-cache"
PREDICTIONS_DIR = "predictions"
MONITORING_DIR = "monitoring"
SECRETS_DIR = "secrets"
REPORTS_DIR = "reports"
MODELS_DIR = "models"
KSERVE_DIR = "kserve"
SQLITE_URI_PREFIX = "sqlite:///"

_PathLike = str | os.PathLike[str]


def tracking_db_path(home: _PathLike) -> Path:
    """The embedded MLflow DB (tracking and registry) of a home."""
    return Path(home) / TRACKING_DB_FILE


def artifact_root(home: _PathLike) -> Path:
    """The artifact folder of the embedded store."""
    return Path(home) / ARTIFACTS_DIR


def tenant_artifact_root(home: _PathLike, tenant: str) -> Path:
    """Where a tenant's experiments keep their artifacts in the embedded store."""
    return artifact_root(home) / validate_tenant(tenant)


def journal_dir(home: _PathLike, tracking_uri: str | None = None) -> Path:
    """The write journals of the processes logging into a home (see ``storage.journal``).

    Journals are kept per tracking store, since a dead process's journal may only be replayed
    into the store it was written for (another server does not know its runs): the home's
    own embedded store (``tracking_uri`` None or its ``sqlite:///`` URI) uses ``journal/``,
    any other store ``journal/<16 hex digits of the URI's SHA-256>/`` (no credentials in a
    folder name).

    Example:
        >>> journal_dir("/h", "sqlite:////h/mlflow.db") == journal_dir("/h")
        True
        >>> journal_dir("/h", "http://team:5000/") == journal_dir("/h", "http://team:5000")
        True
        >>> journal_dir("/h", "http://team:5000") == journal_dir("/h", "http://other:5000")
        False
    """
    root = Path(home) / JOURNAL_DIR
    db = sqlite_db_path(tracking_uri) if tracking_uri is not None else None
    if tracking_uri is None or (db is not None and db.absolute() == tracking_db_path(home).absolute()):
        return root
    import hashlib

    return root / hashlib.sha256(tracking_uri.rstrip("/").encode()).hexdigest()[:16]


def state_db_path(home: _PathLike) -> Path:
    """Our own state DB: deployments, alert rules and history (see ``storage.state``)."""
    return Path(home) / STATE_DB_FILE


def model_cache_dir(home: _PathLike, tenant: str, registered_name: str, registry_version: str | int) -> Path:
    """Where a registered model version from a remote store is downloaded to."""
    return Path(home) / MODEL_CACHE_DIR / validate_tenant(tenant) / registered_name / str(registry_version)


def predictions_dir(home: _PathLike) -> Path:
    """The prediction log's folder (layout in :mod:`mlops_jupyter.monitoring.predlog`)."""
    return Path(home) / PREDICTIONS_DIR


def references_dir(home: _PathLike, tenant: str, model_id: str) -> Path:
    """Where ``set_reference`` keeps a model's reference data sets."""
    return Path(home) / MONITORING_DIR / validate_tenant(tenant) / model_id


def secrets_dir(home: _PathLike) -> Path:
    """The bearer tokens' folder (created 0700 by :func:`mlops_jupyter.deployment.tokens.secrets_dir`)."""
    return Path(home) / SECRETS_DIR


def gateway_info_path(home: _PathLike) -> Path:
    return Path(home) / GATEWAY_INFO_FILE


def gateway_lock_path(home: _PathLike) -> Path:
    return Path(home) / GATEWAY_LOCK_FILE


def gateway_log_path(home: _PathLike) -> Path:
    return Path(home) / GATEWAY_LOG_FILE


def reports_dir(home: _PathLike) -> Path:
    """Default output folder of ``mlops-jupyter report``."""
    return Path(home) / REPORTS_DIR


def models_dir(home: _PathLike) -> Path:
    """Model files written by ``mlops-jupyter demo``."""
    return Path(home) / MODELS_DIR


def kserve_manifest_path(home: _PathLike, tenant: str, environment: str, model_id: str) -> Path:
    """The InferenceService manifest the ``kserve`` target renders for one deployment."""
    return Path(home) / KSERVE_DIR / validate_tenant(tenant) / environment / f"{model_id}.yaml"


def sqlite_db_path(tracking_uri: str) -> Path | None:
    """The DB file of a ``sqlite:///`` tracking URI, else None."""
    if not tracking_uri.startswith(SQLITE_URI_PREFIX):
        return None
    return Path(tracking_uri[len(SQLITE_URI_PREFIX) :])


WILDCARD_HOSTS = ("0.0.0.0", "::", "")
"""Bind addresses meaning "every interface": a client connects to this machine instead."""


def connect_host(host: str) -> str:
    """The address a client on this machine connects to for a server bound to ``host``.

    A wildcard bind (``0.0.0.0``, ``::`` or empty) listens on every interface, but is not an
    address to connect to: it maps to ``127.0.0.1``; any other host is returned as is.

    Example:
        >>> connect_host("0.0.0.0"), connect_host("::"), connect_host("10.1.2.3")
        ('127.0.0.1', '127.0.0.1', '10.1.2.3')
    """
    return host if host not in WILDCARD_HOSTS else "127.0.0.1"


@dataclass(frozen=True)
class Settings:
    """Resolved settings: who (tenant), where (tracking URI, storage home), which experiment.

    Attributes:
        tenant: the tenant slug every name and query is scoped to.
        tracking_uri: MLflow tracking (and registry) URI.
        home: the storage folder (embedded store, artifacts, write journal).
        experiment_name: default experiment for runs, or None.
    """

    tenant: str
    tracking_uri: str
    home: Path
    experiment_name: str | None = None

    @property
    def tenancy(self) -> Tenancy:
        return Tenancy(self.tenant)

    @property
    def is_sqlite(self) -> bool:
        return self.tracking_uri.startswith("sqlite:")

    @property
    def sqlite_path(self) -> Path | None:
        """The sqlite DB file of a ``sqlite:///`` tracking URI, else None."""
        return sqlite_db_path(self.tracking_uri)

    @property
    def artifact_root(self) -> Path:
        return artifact_root(self.home)

    @property
    def state_db_path(self) -> Path:
        return state_db_path(self.home)

    def describe(self) -> dict[str, str]:
        return {
            "tenant": self.tenant,
            "tracking_uri": self.tracking_uri,
            "home": str(self.home),
            "experiment_name": self.experiment_name or "",
        }


def _check_uri(uri: str) -> str:
    if not isinstance(uri, str) or not uri:
        raise InvalidSettingError(
            f"Invalid mlflow_uri {uri!r}.", value=uri, allowed=[f"{s}://..." for s in SUPPORTED_URI_SCHEMES]
        )
    scheme = urlparse(uri).scheme.split("+", 1)[0]
    if scheme not in SUPPORTED_URI_SCHEMES:
        raise InvalidSettingError(
            f"Unsupported mlflow_uri {uri!r} (scheme {scheme or 'none'!r}).",
            value=uri,
            allowed=[f"{s}://..." for s in SUPPORTED_URI_SCHEMES],
        )
    if scheme == "sqlite" and not uri.startswith(SQLITE_URI_PREFIX):
        raise InvalidSettingError(
            f"Invalid sqlite URI {uri!r}.", value=uri, allowed="sqlite:///ABSOLUTE/OR/RELATIVE/PATH.db"
        )
    return uri


def resolve_settings(
    tenant_id: str | None = None,
    mlflow_uri: str | None = None,
    experiment_name: str | None = None,
    storage_path: str | os.PathLike[str] | None = None,
) -> Settings:
    """Resolve settings from arguments, then environment variables, then defaults.

    Args:
        tenant_id: tenant slug; default ``$MLOPS_TENANT`` or ``"default"``.
        mlflow_uri: MLflow tracking URI; default ``$MLFLOW_TRACKING_URI`` or the embedded
            sqlite DB ``{home}/mlflow.db``.
        experiment_name: default experiment for runs.
        storage_path: storage home; default ``$MLOPS_HOME`` or ``./.mlops``.

    Returns:
        A frozen :class:`Settings`.

    Raises:
        InvalidTenantError: bad tenant slug.
        InvalidSettingError: unsupported tracking URI.

    Example:
        >>> s = resolve_settings(tenant_id="acme", storage_path="/tmp/store")
        >>> s.tracking_uri
        'sqlite:////tmp/store/mlflow.db'
    """
    tenant = validate_tenant(
        tenant_id if tenant_id is not None else os.environ.get(env.MLOPS_TENANT) or env.DEFAULT_TENANT
    )
    home_raw = storage_path if storage_path is not None else os.environ.get(env.MLOPS_HOME) or env.DEFAULT_HOME
    home = Path(home_raw).expanduser().absolute()
    if home.exists() and not home.is_dir():
        raise InvalidSettingError(
            f"Storage path {str(home)!r} exists and is not a folder.",
            value=str(home),
            allowed="a folder (it is created if missing)",
        )
    uri = mlflow_uri if mlflow_uri is not None else (os.environ.get(env.MLFLOW_TRACKING_URI) or None)
    if uri is not None:
        uri = _check_uri(uri)
        db = sqlite_db_path(uri)
        if db is not None and not db.is_absolute():
            # make relative sqlite paths absolute so every part agrees on the file
            uri = SQLITE_URI_PREFIX + str(db.absolute())
    else:
        uri = f"{SQLITE_URI_PREFIX}{tracking_db_path(home)}"
    if experiment_name is not None:
        validate_experiment_name(experiment_name)
    return Settings(tenant=tenant, tracking_uri=uri, home=home, experiment_name=experiment_name)


# --- Serving gateway limits (issue 12, HTTP engine) ------------------------------------------
# Every limit of the gateway's HTTP engine, each from its MLOPS_GATEWAY_* variable (names in
# config.env) with the default below; read once when a gateway process starts.


@dataclass(frozen=True)
class GatewayLimits:
    """The gateway's limits against slow, greedy or hostile clients (see ``gateway_limits``).

    Times are seconds, sizes bytes; each serving worker process applies them to itself.
    ``max_connections`` None means "4096, at most the process' open-file limit minus a
    reserve" (computed by the gateway). These may be 0: ``inline_max_rows`` (no prediction
    on the event loop: see :mod:`mlops_jupyter.gateway.inline`), ``inline_retry`` (a version
    sent back to the pool stays there), ``balance_interval`` (workers do not even out their
    connections: see :mod:`mlops_jupyter.gateway.balance`); every other limit is positive.
    """

    header_timeout: float = 10.0
    idle_timeout: float = 30.0
    body_timeout: float = 30.0
    request_timeout: float = 30.0
    max_connections: int | None = None
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    max_body_bytes: int = 8 * 1024 * 1024
    max_inflight_body_bytes: int = 256 * 1024 * 1024
    write_buffer_bytes: int = 256 * 1024
    send_timeout: float = 10.0
    max_outbound_bytes: int = 256 * 1024 * 1024
    inference_threads: int = 8
    model_concurrency: int = 4
    inline_max_rows: int = 64
    inline_budget: float = 0.002
    inline_retry: float = 30.0
    accept_error_interval: float = 10.0
    balance_interval: float = 0.2


_GATEWAY_LIMIT_VARS = {
    "header_timeout": env.MLOPS_GATEWAY_HEADER_TIMEOUT,
    "idle_timeout": env.MLOPS_GATEWAY_IDLE_TIMEOUT,
    "body_timeout": env.MLOPS_GATEWAY_BODY_TIMEOUT,
    "request_timeout": env.MLOPS_GATEWAY_REQUEST_TIMEOUT,
    "max_connections": env.MLOPS_GATEWAY_MAX_CONNECTIONS,
    "max_header_bytes": env.MLOPS_GATEWAY_MAX_HEADER_BYTES,
    "max_headers": env.MLOPS_GATEWAY_MAX_HEADERS,
    "max_body_bytes": env.MLOPS_GATEWAY_MAX_BODY_BYTES,
    "max_inflight_body_bytes": env.MLOPS_GATEWAY_MAX_INFLIGHT_BODY_BYTES,
    "write_buffer_bytes": env.MLOPS_GATEWAY_WRITE_BUFFER_BYTES,
    "send_timeout": env.MLOPS_GATEWAY_SEND_TIMEOUT,
    "max_outbound_bytes": env.MLOPS_GATEWAY_MAX_OUTBOUND_BYTES,
    "inference_threads": env.MLOPS_GATEWAY_INFERENCE_THREADS,
    "model_concurrency": env.MLOPS_GATEWAY_MODEL_CONCURRENCY,
    "inline_max_rows": env.MLOPS_GATEWAY_INLINE_MAX_ROWS,
    "inline_budget": env.MLOPS_GATEWAY_INLINE_BUDGET,
    "inline_retry": env.MLOPS_GATEWAY_INLINE_RETRY,
    "accept_error_interval": env.MLOPS_GATEWAY_ACCEPT_ERROR_INTERVAL,
    "balance_interval": env.MLOPS_GATEWAY_BALANCE_INTERVAL,
}


_ZERO_ALLOWED = frozenset({"inline_max_rows", "inline_retry", "balance_interval"})


def gateway_limits(environ: Mapping[str, str] | None = None) -> GatewayLimits:
    """The gateway's limits: each ``MLOPS_GATEWAY_*`` variable set, else its default.

    Raises:
        InvalidSettingError: a variable that is not a positive number (names it and its value).

    Example:
        >>> gateway_limits({"MLOPS_GATEWAY_HEADER_TIMEOUT": "2.5"}).header_timeout
        2.5
        >>> gateway_limits({}).max_body_bytes
        8388608
    """
    environ = os.environ if environ is None else environ
    values: dict[str, float | int] = {}
    for field, var in _GATEWAY_LIMIT_VARS.items():
        raw = environ.get(var)
        if raw is None or raw == "":
            continue
        kind = float if isinstance(getattr(GatewayLimits, field, 0.0), float) else int
        least = "non-negative" if field in _ZERO_ALLOWED else "positive"
        try:
            value = kind(raw)
            if not (value >= 0 if field in _ZERO_ALLOWED else value > 0) or value != value or value == float("inf"):
                raise ValueError(raw)
        except ValueError:
            raise InvalidSettingError(
                f"${var} is {raw!r}; it must be a {least} {'number' if kind is float else 'integer'}.",
                value=raw,
                allowed=f"a {least} {'number of seconds' if kind is float else 'integer'}",
            ) from None
        values[field] = value
    return GatewayLimits(**values)


DEFAULT_SERVER_WRITE_CONCURRENCY = 2
"""Two requests in flight: the server stores one while it parses the other (and with
``--workers 2`` or more, on two cores); more only queue on a small server."""


def server_write_concurrency(environ: Mapping[str, str] | None = None) -> int:
    """``$MLOPS_SERVER_WRITE_CONCURRENCY`` or :data:`DEFAULT_SERVER_WRITE_CONCURRENCY`.

    Raises:
        InvalidSettingError: not an integer from 1 to 64 (names the variable and its value).

    Example:
        >>> server_write_concurrency({"MLOPS_SERVER_WRITE_CONCURRENCY": "4"})
        4
    """
    environ = os.environ if environ is None else environ
    raw = environ.get(env.MLOPS_SERVER_WRITE_CONCURRENCY) or ""
    if raw == "":
        return DEFAULT_SERVER_WRITE_CONCURRENCY
    try:
        value = int(raw)
        if not 1 <= value <= 64:
            raise ValueError(raw)
    except ValueError:
        raise InvalidSettingError(
            f"${env.MLOPS_SERVER_WRITE_CONCURRENCY} is {raw!r}; it must be an integer from 1 to 64.",
            value=raw,
            allowed="an integer from 1 to 64",
        ) from None
    return value


# --- Waits on a tracking server (issue 14) ----------------------------------------------------
# Bounds of the requests a user waits on (opening a run, registering a version): MLflow's own
# defaults (7 retries with backoff, 120 s per request) leave a notebook hanging ~4 minutes
# when the server is down. Read at each call from the MLOPS_SERVER_* variables (config.env).


@dataclass(frozen=True)
class ServerBounds:
    """How long a user waits on a tracking server (see :func:`server_bounds`).

    ``connect_timeout``: seconds to open a connection and get the server's ``/health``
    answer; ``timeout``: seconds for one request's answer (MLflow's own requests take whole
    seconds: rounded up there); ``retries``: further attempts after a failed one (a refused
    or timed-out connection, HTTP 429/5xx).
    """

    connect_timeout: float = 3.0
    timeout: float = 30.0
    retries: int = 2

    def describe(self) -> str:
        """The settings and their values, for error messages."""
        return (
            f"${env.MLOPS_SERVER_CONNECT_TIMEOUT}={self.connect_timeout:g} s, "
            f"${env.MLOPS_SERVER_TIMEOUT}={self.timeout:g} s, ${env.MLOPS_SERVER_RETRIES}={self.retries}"
        )


_SERVER_BOUND_VARS = {
    "connect_timeout": (env.MLOPS_SERVER_CONNECT_TIMEOUT, float, 0.001, 3600.0),
    "timeout": (env.MLOPS_SERVER_TIMEOUT, float, 0.001, 3600.0),
    "retries": (env.MLOPS_SERVER_RETRIES, int, 0, 10),
}


def server_bounds(environ: Mapping[str, str] | None = None) -> ServerBounds:
    """The tracking server bounds: each ``MLOPS_SERVER_*`` variable set, else its default.

    Raises:
        InvalidSettingError: a value out of range (names the variable and its value).

    Example:
        >>> server_bounds({"MLOPS_SERVER_TIMEOUT": "5", "MLOPS_SERVER_RETRIES": "0"})
        ServerBounds(connect_timeout=3.0, timeout=5.0, retries=0)
    """
    environ = os.environ if environ is None else environ
    values: dict[str, float | int] = {}
    for field, (var, kind, low, high) in _SERVER_BOUND_VARS.items():
        raw = environ.get(var) or ""
        if raw == "":
            continue
        allowed = f"{'a number of seconds' if kind is float else 'an integer'} from {low:g} to {high:g}"
        try:
            value = kind(raw)
            if not low <= value <= high:
                raise ValueError(raw)
        except ValueError:
            raise InvalidSettingError(f"${var} is {raw!r}.", value=raw, allowed=allowed) from None
        values[field] = value
    return ServerBounds(**values)
