"""The ``local`` target: the serving gateway of the storage home, driven over HTTP.

The gateway (``python -m mlops_jupyter.gateway``) is started on demand by the first change
(:mod:`~mlops_jupyter.deployment.targets.local_process` starts, finds and stops it) and
receives every change at ``POST /admin/apply`` with the admin token; records are read from
the embedded store directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops_jupyter.deployment.targets.base import TargetRecords


class LocalGatewayTarget(TargetRecords):
    """The ``local`` target: the serving gateway of the storage home.

    The gateway serves every version from one process; ``replicas`` and ``resources``
    are stored and reported, not applied. Records are read as every target reads its own
    (:class:`~mlops_jupyter.deployment.targets.base.TargetRecords`).
    """

    name = "local"
    config_effect = (
        "stored and reported, not enforced: the local gateway serves every version from one process "
        "(no replicas, no resource limits)"
    )

    def __init__(self, home: Path, options: Mapping[str, Any] | None = None) -> None:
        if options:
            from mlops_jupyter.errors import ValidationError

            raise ValidationError(
                f"The 'local' target takes no target_options (got {sorted(options)}).",
                value=sorted(options),
                allowed="no options (the gateway is configured by the storage home)",
            )
        self.home = Path(home)
        self._store: Any = None
        self._admin: Any = None
        self._admin_url: str | None = None

    def ensure_running(self) -> dict[str, Any]:
        from mlops_jupyter.deployment import tokens as auth
        from mlops_jupyter.deployment.client import AdminClient
        from mlops_jupyter.deployment.targets.local_process import ensure_gateway

        info = ensure_gateway(self.home)
        if self._admin is None or self._admin_url != info["url"]:
            if self._admin is not None:
                self._admin.close()
            self._admin = AdminClient(info["url"], auth.admin_token(self.home))
            self._admin_url = info["url"]
        return info

    def apply(self, op: Mapping[str, Any]) -> dict[str, Any]:
        self.ensure_running()
        return self._admin.apply(op)

    def verify(self) -> dict[str, Any]:
        self.ensure_running()
        return self._admin.health()

    def base_url(self) -> str:
        from mlops_jupyter.config.settings import GATEWAY_PORT_META as PORT_META
        from mlops_jupyter.deployment.targets.local_process import read_info

        info = read_info(self.home)
        if info and info.get("url"):
            return info["url"]
        port = self.store.get_meta(PORT_META)
        return f"http://127.0.0.1:{port}" if port else "http://127.0.0.1:PORT"

    def endpoint(self, tenant: str, environment: str, model_id: str) -> str:
        return f"{self.base_url()}/tenants/{tenant}/{environment}/models/{model_id}"

    def status(self) -> dict[str, Any]:
        from mlops_jupyter.deployment.targets.local_process import gateway_status

        return gateway_status(self.home)

    def stop(self) -> dict[str, Any]:
        from mlops_jupyter.deployment.targets.local_process import stop_gateway

        if self._admin is not None:
            self._admin.close()
            self._admin = None
        return stop_gateway(self.home)
