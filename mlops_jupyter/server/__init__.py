"""The jupyter_server extension: the MLOps REST API behind Jupyter's own authentication.

Enabled by ``etc/jupyter/jupyter_server_config.d/mlops_jupyter.json``, which the wheel
installs, so ``pip install mlops-jupyter`` is all a user does. Routes live under
``{base_url}/mlops/api/`` (see :mod:`mlops_jupyter.server.handlers`). The core objects
(an :class:`~mlops_jupyter.server.service.MLOpsService` holding one pipeline) are built
once, when the server starts, kept in ``web_app.settings`` and read by the handlers
through a property.

The default tenant comes from the server's configuration; a request (the sidebar's tenant
switcher, or the tenant of the active notebook's kernel) may pick another one of the
allow-list ``c.MLOpsServer.tenants``, and is refused (403) outside it::

    # jupyter_server_config.py
    c.MLOpsServer.tenant = "acme"            # default: $MLOPS_TENANT, else "default"
    c.MLOpsServer.tenants = ["acme", "lab"]  # default: every tenant of the store, or on
                                             # JupyterHub only the tenant above
    c.MLOpsServer.mlflow_ui_url = "http://127.0.0.1:5000"  # links, when no kernel knows one
    c.MLOpsServer.storage_path = "/data/mlops"  # default: $MLOPS_HOME, else {root_dir}/.mlops
    c.MLOpsServer.mlflow_uri = "http://mlflow:5000"  # default: $MLFLOW_TRACKING_URI or embedded

or on the command line: ``jupyter lab --MLOpsServer.tenant=acme``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Int, List, Unicode

from mlops_jupyter.config import env

"""Key of the :class:`MLOpsService` in ``web_app.settings``."""


class MLOpsServer(ExtensionApp):
    """Serves the MLOps REST API (``/mlops/api/``) used by the JupyterLab sidebar."""

    name = "mlops_jupyter"
    description = "MLOps REST API for the JupyterLab sidebar."
    load_other_extensions = True

    tenant = Unicode(
        None,
        allow_none=True,
        config=True,
        help="Tenant whose experiments, models and deployments this server shows and changes "
        "(default: $MLOPS_TENANT, else 'default'). Requests cannot choose another tenant.",
    )
    tenants = List(
        Unicode(),
        default_value=None,
        allow_none=True,
        config=True,
        help="Tenants a request (the sidebar's tenant switcher) may choose, besides `tenant`. "
        "Default: every tenant with experiments in the store on a single-user server; only `tenant` "
        "on a server spawned by JupyterHub (an admin lists the others here).",
    )
    mlflow_ui_url = Unicode(
        None,
        allow_none=True,
        config=True,
        help="URL of an MLflow UI on this store, for the sidebar's links to runs, experiments and "
        "models when the active kernel knows none (`%mlops ui` starts one).",
    )
    storage_path = Unicode(
        None,
        allow_none=True,
        config=True,
        help="Storage home (embedded store, artifacts, gateway) (default: $MLOPS_HOME, else "
        "'.mlops' under the server's root_dir). A relative path is taken from root_dir.",
    )
    mlflow_uri = Unicode(
        None,
        allow_none=True,
        config=True,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the embedded sqlite store in the storage home).",
    )
    read_threads = Int(
        4,
        config=True,
        help="Threads that run read requests (MLflow queries) off the server's event loop. Changes "
        "(deploy, traffic, rollback, promote) run one at a time on their own thread.",
    )

    def _storage_path(self) -> str | None:
        root = Path(getattr(self.serverapp, "root_dir", None) or os.getcwd()).expanduser()
        if self.storage_path:
            p = Path(self.storage_path).expanduser()
            return str(p if p.is_absolute() else root / p)
        if os.environ.get(env.MLOPS_HOME):
            return None  # resolve_settings reads it
        return str(root / env.DEFAULT_HOME)

    def initialize_settings(self) -> None:
        from mlops_jupyter.config.settings import resolve_settings
        from mlops_jupyter.server.handlers import UI_URL_KEY
        from mlops_jupyter.server.service import SERVICE_KEY
        from mlops_jupyter.server.tenants import TenantServices, on_jupyterhub

        settings = resolve_settings(self.tenant, self.mlflow_uri, None, self._storage_path())
        allowed = self.tenants
        if allowed is None and on_jupyterhub():
            allowed = [settings.tenant]
        services = TenantServices(settings, allowed, read_threads=self.read_threads, log=self.log)
        services.default.warm_up()
        self.settings[SERVICE_KEY] = services
        self.settings[UI_URL_KEY] = self.mlflow_ui_url
        self.log.info(
            "mlops_jupyter: MLOps API at %smlops/api/ for tenant %r (allowed: %s), store %s",
            self.serverapp.base_url,
            settings.tenant,
            "every tenant of the store" if allowed is None else allowed,
            settings.home,
        )

    def initialize_handlers(self) -> None:
        from mlops_jupyter.server.handlers import route_patterns

        self.handlers.extend(route_patterns())

    async def stop_extension(self) -> None:
        from mlops_jupyter.server.service import SERVICE_KEY

        service = self.settings.get(SERVICE_KEY)
        if service is not None:
            service.close()


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "mlops_jupyter.server", "app": MLOpsServer}]
