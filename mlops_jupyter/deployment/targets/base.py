"""The deployment target protocol: where deployments run, behind one set of methods.

:class:`~mlops_jupyter.deployment.deployment.ModelDeployment` decides what to ask for
(which versions, which specs) and talks to a target only through these methods; a target
carries out changes (:mod:`~mlops_jupyter.deployment.plan` decides what a change makes of a
record) and serves the versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from mlops_jupyter.deployment.plan import record_target


@runtime_checkable
class DeploymentTarget(Protocol):
    """Where deployments run. Target-specific code stays behind these methods.

    Every change is one operation dict (:class:`~mlops_jupyter.deployment.plan.Operation`):
    ``{"op": "deploy" | "traffic" | "rollback" | "undeploy", "tenant", "environment",
    "model_id", ...}`` with ``specs`` (version -> ``{"path", "sha256", "example"}``) for the
    versions it introduces.
    """

    name: str

    def ensure_running(self) -> dict[str, Any]:
        """Start the serving side if it is not running; returns where it serves."""

    def apply(self, op: Mapping[str, Any]) -> dict[str, Any]:
        """Carry out one change; ``{"ok": True, "record"}`` or ``{"ok": False, "message", ...}``."""

    def get(self, tenant: str, environment: str, model_id: str) -> dict[str, Any] | None:
        """The stored deployment record, or None."""

    def list(self, tenant: str, environment: str | None = None) -> list[dict[str, Any]]:
        """The tenant's deployment records."""

    def endpoint(self, tenant: str, environment: str, model_id: str) -> str:
        """The URL of one deployment."""

    def status(self) -> dict[str, Any]:
        """Whether the target serves, and where."""

    def verify(self) -> dict[str, Any]:
        """A health check of the serving side (raises if it fails)."""

    def stop(self) -> dict[str, Any]:
        """Stop the serving side; deployments stay stored."""


class TargetRecords:
    """The records of one target in the home's state DB, shared by every target.

    All targets keep their records in the same table, each marked with its target's name
    (``extra["target"]``, :func:`~mlops_jupyter.deployment.plan.record_target`); a target
    sees only its own, so a deployment made on one never shows up as another's. Subclasses
    set :attr:`name` and :attr:`home`.
    """

    name = ""
    home: Path
    _store: Any = None

    @property
    def store(self) -> Any:
        """The home's embedded state store, opened on first use."""
        if self._store is None:
            from mlops_jupyter.storage.state import open_embedded_store

            self._store = open_embedded_store(self.home)
        return self._store

    def get(self, tenant: str, environment: str, model_id: str) -> dict[str, Any] | None:
        rec = self.store.get_deployment(tenant, environment, model_id)
        return rec if rec is not None and record_target(rec) == self.name else None

    def list(self, tenant: str, environment: str | None = None) -> list[dict[str, Any]]:
        recs = self.store.list_deployments(tenant=tenant, environment=environment)
        return [r for r in recs if record_target(r) == self.name]

    def records(self) -> list[dict[str, Any]]:
        """Every record of this target in the home (all tenants)."""
        return [r for r in self.store.list_deployments() if record_target(r) == self.name]
