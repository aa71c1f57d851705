"""The deployment target protocol: where deployments run, behind one set of methods.

:class:`~mlops_jupyter.deployment.deployment.ModelDeployment` decides what to ask for
(which versions, which specs) and talks to a target only through these methods; a target
carries out changes (:mod:`~mlops_jupyter.deployment.plan` decides what a change makes of a
record) and serves the versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable


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
