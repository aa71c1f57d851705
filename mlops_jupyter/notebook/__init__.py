"""The notebook layer over the parts: ``%mlops`` magics and cell autolog (:mod:`.magics`),
ipywidgets panels (:mod:`.widgets`) and executed notebooks as reports (:mod:`.reports`).
It goes through :mod:`mlops_jupyter.api`; nothing below imports it."""

from __future__ import annotations

import json
from typing import Any


class _JSON(str):
    """A str whose repr is itself: a kernel's ``text/plain`` of it is plain JSON."""

    def __repr__(self) -> str:
        return str(self)


def kernel_state() -> str:
    """What this kernel uses, as JSON, for the JupyterLab sidebar and status bar.

    The lab side reads it with a silent execute (never an autolog run) whose
    ``user_expressions`` evaluate
    ``__import__("mlops_jupyter.notebook", fromlist=["kernel_state"]).kernel_state()``;
    the reply's ``text/plain`` is the JSON itself (``JSON.parse`` it). Keys: ``tenant``,
    ``experiment``, ``home``, ``tracking_uri``, ``autolog`` (``on``/``off``), ``ui_url``
    (the MLflow UI started by ``%mlops ui``, else ``""``), ``initialized`` (whether
    ``%mlops`` was loaded in this kernel). Loads nothing heavy.
    """
    from mlops_jupyter.config.settings import resolve_settings

    magics = _magics()
    state: dict[str, Any] = {"initialized": magics is not None, "autolog": "off", "ui_url": ""}
    try:
        if magics is not None:
            built = magics._pipeline
            s = (
                built.settings
                if built is not None
                else resolve_settings(
                    magics.tenant or None, magics.uri or None, magics.experiment or None, magics.home or None
                )
            )
            auto = magics.autolog_obj
            state["autolog"] = "on" if auto is not None and auto.enabled else "off"
        else:
            s = resolve_settings()
        state.update(tenant=s.tenant, experiment=s.experiment_name or "", home=str(s.home), tracking_uri=s.tracking_uri)
    except Exception as exc:  # a bad environment: say so rather than fail the request
        state["error"] = f"{type(exc).__name__}: {exc}"
    from mlops_jupyter.notebook.magics import ui

    state["ui_url"] = ui.current_url() or ""
    return _JSON(json.dumps(state))


def _magics() -> Any:
    from mlops_jupyter.notebook.magics import _INSTANCES

    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:  # pragma: no cover
        return None
    return _INSTANCES.get(id(shell)) if shell is not None else None
