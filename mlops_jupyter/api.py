"""The pipeline and the five factories of the API contract (``seed/getting-started.md``)."""

from __future__ import annotations

import os
from typing import Any

from mlops_jupyter.config.names import validate_experiment_name
from mlops_jupyter.config.settings import Settings, resolve_settings
from mlops_jupyter.deployment.deployment import ModelDeployment
from mlops_jupyter.monitoring import ModelMonitoring
from mlops_jupyter.registry.versioning import ModelVersioning
from mlops_jupyter.tracking.tracker import ExperimentTracker

PathLike = str | os.PathLike[str]


class MLOpsPipeline:
    """A tracker, versioning, deployment and monitoring sharing one :class:`Settings`."""

    def __init__(self, pipeline_name: str, settings: Settings) -> None:
        self.pipeline_name = pipeline_name
        self.settings = settings
        self.tracker = ExperimentTracker(settings)
        self.versioning = ModelVersioning(settings, tracker=self.tracker)
        self.deployment = ModelDeployment(settings)
        self.monitoring = ModelMonitoring(settings, deployment=self.deployment, versioning=self.versioning)
        # an upward need, wired here: a rollback of the live version moves the live deployments
        self.versioning.on_rollback(self.deployment.follow_rollback)

    @property
    def tenant_id(self) -> str:
        return self.settings.tenant

    def flush(self) -> None:
        """Store everything logged so far (runs and tracked predictions)."""
        self.tracker.flush()
        self.monitoring.flush()

    def describe(self) -> dict[str, Any]:
        return {"pipeline_name": self.pipeline_name, **self.settings.describe()}

    def __repr__(self) -> str:
        s = self.settings
        return f"<MLOpsPipeline {self.pipeline_name!r} tenant={s.tenant!r} store={s.tracking_uri!r}>"


def create_mlops_pipeline(
    pipeline_name: str,
    tenant_id: str | None = None,
    mlflow_uri: str | None = None,
    experiment_name: str | None = None,
    storage_path: PathLike | None = None,
) -> MLOpsPipeline:
    """Create a pipeline on one store (the core of ``mlops_jupyter.create_mlops_pipeline``,
    which documents the arguments and adds ``autolog=``; this one never imports IPython)."""
    validate_experiment_name(pipeline_name)
    settings = resolve_settings(tenant_id, mlflow_uri, experiment_name or pipeline_name, storage_path)
    return MLOpsPipeline(pipeline_name, settings)


def create_experiment_tracker(
    tenant_id: str | None = None,
    mlflow_uri: str | None = None,
    experiment_name: str | None = None,
    storage_path: PathLike | None = None,
) -> ExperimentTracker:
    """Create an :class:`ExperimentTracker` (same settings as :func:`create_mlops_pipeline`)."""
    return ExperimentTracker(resolve_settings(tenant_id, mlflow_uri, experiment_name, storage_path))


def create_model_versioning(
    tenant_id: str | None = None,
    mlflow_uri: str | None = None,
    experiment_name: str | None = None,
    storage_path: PathLike | None = None,
) -> ModelVersioning:
    """Create a :class:`ModelVersioning` (same settings as :func:`create_mlops_pipeline`).

    On its own it has no rollback subscribers: ``rollback_model`` moves the live alias only
    (deployments follow a rollback made through a pipeline's ``versioning``)."""
    return ModelVersioning(resolve_settings(tenant_id, mlflow_uri, experiment_name, storage_path))


def create_model_deployment(
    tenant_id: str | None = None,
    mlflow_uri: str | None = None,
    experiment_name: str | None = None,
    storage_path: PathLike | None = None,
    target: str | None = None,
    target_options: dict[str, Any] | None = None,
) -> ModelDeployment:
    """Create a :class:`ModelDeployment` (same settings as :func:`create_mlops_pipeline`).

    ``target`` is where deployments run: ``"local"`` (the home's gateway), ``"ray"`` (Ray
    Serve) or ``"kserve"`` (KServe InferenceServices); default ``$MLOPS_DEPLOY_TARGET`` or
    ``"local"``. ``target_options`` configures it (``ray``: ``address``; ``kserve``:
    ``kubeconfig``, ``namespace``...)."""
    return ModelDeployment(
        resolve_settings(tenant_id, mlflow_uri, experiment_name, storage_path),
        target=target,
        target_options=target_options,
    )


def create_model_monitoring(
    tenant_id: str | None = None,
    mlflow_uri: str | None = None,
    experiment_name: str | None = None,
    storage_path: PathLike | None = None,
) -> ModelMonitoring:
    """Create a :class:`ModelMonitoring` (same settings as :func:`create_mlops_pipeline`)."""
    return ModelMonitoring(resolve_settings(tenant_id, mlflow_uri, experiment_name, storage_path))
