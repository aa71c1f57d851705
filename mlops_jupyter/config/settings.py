"""One settings object shared by the pipeline's parts.

Resolution order for each setting: the argument, then the environment variable
(``MLOPS_TENANT``, ``MLFLOW_TRACKING_URI``, ``MLOPS_HOME``), then the embedded default:
everything under ``./.mlops/`` (a sqlite tracking and registry DB, ``mlflow.db``, and
an ``artifacts/`` folder), so a fresh notebook works with no server.
"""

from __future__ import annotations

import os
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
        if not self.is_sqlite:
            return None
        return Path(self.tracking_uri[len("sqlite:///") :])

    @property
    def artifact_root(self) -> Path:
        return self.home / "artifacts"

    @property
    def journal_dir(self) -> Path:
        return self.home / "journal"

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
    if scheme == "sqlite" and not uri.startswith("sqlite:///"):
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
            f"Storage path {str(home)!r} exists and is not a folder.", value=str(home),
            allowed="a folder (it is created if missing)",
        )
    uri = mlflow_uri if mlflow_uri is not None else (os.environ.get(env.MLFLOW_TRACKING_URI) or None)
    if uri is not None:
        uri = _check_uri(uri)
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            # make relative sqlite paths absolute so every part agrees on the file
            uri = "sqlite:///" + str(Path(uri[len("sqlite:///") :]).absolute())
    else:
        uri = f"sqlite:///{home / 'mlflow.db'}"
    if experiment_name is not None:
        validate_experiment_name(experiment_name)
    return Settings(tenant=tenant, tracking_uri=uri, home=home, experiment_name=experiment_name)
