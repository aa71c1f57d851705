"""mlops_jupyter: a Jupyter-native MLOps workbench on MLflow.

Example:
    >>> from mlops_jupyter import create_mlops_pipeline
    >>> pipeline = create_mlops_pipeline("ticket_classifier_pipeline", tenant_id="tenant_123")

In a notebook: ``%load_ext mlops_jupyter``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from mlops_jupyter._version import __version__

if TYPE_CHECKING:
    from mlops_jupyter.api import (
        MLOpsPipeline,
        create_experiment_tracker,
        create_model_deployment,
        create_model_monitoring,
        create_model_versioning,
    )

_FACTORIES = frozenset(
    ("create_experiment_tracker", "create_model_deployment", "create_model_monitoring", "create_model_versioning")
)
"""Imported from :mod:`mlops_jupyter.api` when first asked for (PEP 562), so importing a
submodule alone stays light: MLflow loads ``mlops_jupyter.storage.pg_store`` (a store
plugin) in every MLflow process of the environment, which needs none of the parts."""


def __getattr__(name: str) -> Any:
    if name in _FACTORIES:
        from mlops_jupyter import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _FACTORIES)


__all__ = [
    "__version__",
    "create_experiment_tracker",
    "create_mlops_pipeline",
    "create_model_deployment",
    "create_model_monitoring",
    "create_model_versioning",
    "load_ipython_extension",
    "unload_ipython_extension",
]

LABEXTENSION_NAME = "mlops-jupyter"
"""The JupyterLab extension's name (``labextension/package.json``)."""


def create_mlops_pipeline(
    pipeline_name: str,
    tenant_id: str | None = None,
    mlflow_uri: str | None = None,
    experiment_name: str | None = None,
    storage_path: str | os.PathLike[str] | None = None,
    autolog: bool = False,
) -> MLOpsPipeline:
    """Create a pipeline: tracker, versioning, deployment and monitoring on one store.

    Args:
        pipeline_name: the pipeline's name; runs go into the experiment of that name
            unless ``experiment_name`` is given.
        tenant_id: tenant slug (default ``$MLOPS_TENANT`` or ``default``).
        mlflow_uri: MLflow tracking URI (default ``$MLFLOW_TRACKING_URI`` or the embedded
            sqlite store under the storage path).
        experiment_name: experiment for the pipeline's runs.
        storage_path: storage home (default ``$MLOPS_HOME`` or ``./.mlops``).
        autolog: inside IPython/Jupyter, log every executed cell as a run of this pipeline
            (as ``%mlops autolog on``); ignored outside a kernel.

    Returns:
        An :class:`~mlops_jupyter.api.MLOpsPipeline`.

    Example:
        >>> pipeline = create_mlops_pipeline("ticket_classifier_pipeline", tenant_id="tenant_123")
        >>> pipeline.tracker.start_experiment("baseline")
    """
    from mlops_jupyter.api import create_mlops_pipeline as create

    pipeline = create(pipeline_name, tenant_id, mlflow_uri, experiment_name, storage_path)
    if autolog:
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover - IPython is a dependency
            return pipeline
        shell = get_ipython()
        if shell is not None:
            from mlops_jupyter.notebook.magics import register

            magics = register(shell)
            magics.use_pipeline(pipeline)
            magics.autolog.enable()
    return pipeline


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext mlops_jupyter``: registers the ``%mlops`` magic (no heavy import, no I/O)."""
    from mlops_jupyter.notebook.magics import register

    register(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from mlops_jupyter.notebook.magics import unregister

    unregister(ipython)


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """The jupyter_server extension (the MLOps REST API); enabled by the config file the wheel
    installs in ``etc/jupyter/jupyter_server_config.d/``."""
    from mlops_jupyter.server import MLOpsServer

    return [{"module": "mlops_jupyter.server", "app": MLOpsServer}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """The prebuilt JupyterLab extension (the MLOps sidebar), built into ``labextension/``."""
    return [{"src": "labextension", "dest": LABEXTENSION_NAME}]
