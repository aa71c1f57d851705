"""mlops_jupyter: a Jupyter-native MLOps workbench on MLflow.

Example:
    >>> from mlops_jupyter import create_mlops_pipeline
    >>> pipeline = create_mlops_pipeline("ticket_classifier_pipeline", tenant_id="tenant_123")

In a notebook: ``%load_ext mlops_jupyter``.
"""

from __future__ import annotations

from typing import Any

from mlops_jupyter.core.pipeline import (
    create_experiment_tracker,
    create_mlops_pipeline,
    create_model_deployment,
    create_model_monitoring,
    create_model_versioning,
)

__version__ = "0.1.0"

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


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext mlops_jupyter``: registers the ``%mlops`` magic (no heavy import, no I/O)."""
    from mlops_jupyter.magics import register

    register(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from mlops_jupyter.magics import unregister

    unregister(ipython)
