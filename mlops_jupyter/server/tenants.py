"""Which tenants this Jupyter server may show, and one :class:`MLOpsService` per tenant.

The allow-list is ``c.MLOpsServer.tenants``. Unset, a single-user server may show every
tenant found in its store (the user owns the store), while a server spawned by JupyterHub
(``$JUPYTERHUB_API_TOKEN`` set) shows only its configured tenant until an admin lists more.
A request names its tenant with ``?tenant=T``; one outside the list is answered 403.

Services are built on first use and share the read and change threads, so a deploy in one
tenant and a rollback in another still run one at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mlops_jupyter.config.names import TENANT_TAG, validate_tenant
from mlops_jupyter.config.settings import Settings
from mlops_jupyter.errors import MLOpsError
from mlops_jupyter.server.service import MLOpsService

STORE_SCAN_TTL_S = 30.0
"""How long the list of the store's tenants is reused before it is read again."""


class TenantForbiddenError(MLOpsError, PermissionError):
    """A request asked for a tenant outside the server's allow-list (answered 403)."""


def on_jupyterhub() -> bool:
    """Whether this server was spawned by JupyterHub (it sets ``JUPYTERHUB_API_TOKEN``)."""
    return bool(os.environ.get("JUPYTERHUB_API_TOKEN"))


class TenantServices:
    """The allowed tenants of one server and their services.

    Args:
        settings: the server's settings; their tenant is the default one.
        allowed: the tenants a request may choose; None for every tenant of the store.
        read_threads: threads shared by every tenant's reads.
    """

    def __init__(
        self,
        settings: Settings,
        allowed: Sequence[str] | None,
        read_threads: int = 4,
        log: logging.Logger | None = None,
    ) -> None:
        self.settings = settings
        self.log = log or logging.getLogger(__name__)
        self.allowed = None if allowed is None else sorted({validate_tenant(t) for t in allowed} | {settings.tenant})
        self._reads = ThreadPoolExecutor(max(1, read_threads), thread_name_prefix="mlops-api-read")
        self._writes = ThreadPoolExecutor(1, thread_name_prefix="mlops-api-change")
        self._services: dict[str, MLOpsService] = {}
        self._lock = threading.Lock()
        self._store_tenants: tuple[float, list[str]] | None = None
        self.default = self.service(settings.tenant)

    @property
    def default_tenant(self) -> str:
        return self.settings.tenant

    def service(self, tenant: str) -> MLOpsService:
        """The service of an allowed tenant (built on first use, never for another)."""
        with self._lock:
            svc = self._services.get(tenant)
            if svc is None:
                svc = MLOpsService(
                    dataclasses.replace(self.settings, tenant=tenant),
                    log=self.log,
                    executors=(self._reads, self._writes),
                )
                self._services[tenant] = svc
            return svc

    def store_tenants(self, refresh: bool = False) -> list[str]:
        """Tenants with experiments in the store (blocking; cached for ``STORE_SCAN_TTL_S``)."""
        cached = self._store_tenants
        if cached is not None and not refresh and time.monotonic() - cached[0] < STORE_SCAN_TTL_S:
            return cached[1]
        client = self.default.pipeline.tracker.store.client
        found = {self.default_tenant}
        for e in client.search_experiments(max_results=50000):
            tag = (e.tags or {}).get(TENANT_TAG)
            if tag and e.name.startswith(f"{tag}/"):
                found.add(tag)
        tenants = sorted(found)
        self._store_tenants = (time.monotonic(), tenants)
        return tenants

    def tenants(self) -> list[str]:
        """The tenants a request may choose (blocking: may read the store)."""
        return list(self.allowed) if self.allowed is not None else self.store_tenants()

    def resolve(self, tenant: str | None) -> MLOpsService:
        """The service for a request's ``?tenant=`` (blocking: may read the store).

        Raises:
            InvalidTenantError: not a tenant slug (400).
            TenantForbiddenError: a tenant outside the allow-list (403).
        """
        if tenant is None or tenant == self.default_tenant:
            return self.default
        validate_tenant(tenant)
        ok = tenant in self.allowed if self.allowed is not None else tenant in self.store_tenants()
        if not ok and self.allowed is None:
            ok = tenant in self.store_tenants(refresh=True)  # a tenant created since the last scan
        if not ok:
            where = "c.MLOpsServer.tenants" if self.allowed is not None else "this server's store"
            raise TenantForbiddenError(
                f"Tenant {tenant!r} is not allowed on this server (allowed: those of {where}).",
                value=tenant,
                allowed=self.tenants(),
            )
        return self.service(tenant)

    def summary(self) -> dict[str, Any]:
        return {
            "default": self.default_tenant,
            "tenants": self.tenants(),
            "restricted": self.allowed is not None,
        }

    def close(self) -> None:
        self._reads.shutdown(wait=False, cancel_futures=True)
        self._writes.shutdown(wait=False, cancel_futures=True)
