"""The panels' public import path (``from mlops_jupyter.widgets import ComparisonPanel``).

They live in :mod:`mlops_jupyter.notebook.widgets`; this module re-exports them lazily, so
importing it loads neither ipywidgets nor altair until a panel is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_jupyter.notebook.widgets import ComparisonPanel, DeployPanel, DriftPanel

__all__ = ["ComparisonPanel", "DeployPanel", "DriftPanel"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from mlops_jupyter.notebook import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module 'mlops_jupyter.widgets' has no attribute {name!r}")
