"""Panels for the notebook: compare runs, watch drift, deploy and roll back.

Each panel is an ipywidgets ``VBox`` of small widgets with declared traits, acting through
the core API (never MLflow directly), with a refresh control and a static view (SVG
charts, HTML tables) for executed notebooks. Charts come from :mod:`.charts`, pure
functions from data to altair charts.

Example:
    >>> from mlops_jupyter.notebook.widgets import ComparisonPanel, DeployPanel, DriftPanel
    >>> DeployPanel("ticket_classifier", pipeline=pipeline)
"""

from __future__ import annotations

from typing import Any

__all__ = ["ComparisonPanel", "DeployPanel", "DriftPanel"]

_WHERE = {"ComparisonPanel": "comparison", "DeployPanel": "deploy", "DriftPanel": "drift"}


def __getattr__(name: str) -> Any:
    """Panels import ipywidgets and altair only when first used."""
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"mlops_jupyter.notebook.widgets.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'mlops_jupyter.notebook.widgets' has no attribute {name!r}")
