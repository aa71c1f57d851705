"""Model deployment. The serving gateway arrives with the deployment feature (issue #3);
until then every method raises :class:`FeatureNotAvailableError` and does nothing."""

from __future__ import annotations

from typing import Any

from mlops_jupyter.core.settings import Settings
from mlops_jupyter.errors import FeatureNotAvailableError

FEATURE = "deployment (serving gateway, issue #3)"


class ModelDeployment:
    """Deploys model versions behind the local serving gateway (not built yet)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def deploy_model(self, model_id: str, version: str, environment: str = "production",
                     config: dict[str, Any] | None = None, traffic_percentage: int = 100) -> dict[str, Any]:
        raise FeatureNotAvailableError("deploy_model", FEATURE)

    def rollback(self, model_id: str, environment: str = "production", to_version: str | None = None) -> dict[str, Any]:
        raise FeatureNotAvailableError("rollback", FEATURE)

    def list_deployments(self, environment: str | None = None) -> list[dict[str, Any]]:
        raise FeatureNotAvailableError("list_deployments", FEATURE)
