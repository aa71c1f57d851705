"""What every panel shares: the pipeline, a status line, a refresh control, callbacks,
and the static view that travels with the widget view."""

from __future__ import annotations

import html
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
from traitlets import Bool, Unicode, observe

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


def resolve_pipeline(
    pipeline: Any = None,
    *,
    tenant_id: str | None = None,
    mlflow_uri: str | None = None,
    storage_path: PathLike | None = None,
    experiment_name: str | None = None,
) -> Any:
    """The pipeline a panel acts through: the one given, or one built from the same
    settings as the factories (argument, then environment, then the embedded default)."""
    if pipeline is not None:
        missing = [a for a in ("tracker", "versioning", "deployment", "monitoring") if not hasattr(pipeline, a)]
        if missing:
            from mlops_jupyter.errors import ValidationError

            raise ValidationError(
                f"pipeline= must be an MLOpsPipeline (it has no {', '.join(missing)}).",
                value=type(pipeline).__name__,
                allowed="create_mlops_pipeline(...)",
            )
        return pipeline
    from mlops_jupyter.api import MLOpsPipeline
    from mlops_jupyter.config.settings import resolve_settings

    return MLOpsPipeline("panels", resolve_settings(tenant_id, mlflow_uri, experiment_name, storage_path))


def is_pipeline(obj: Any) -> bool:
    return all(hasattr(obj, a) for a in ("tracker", "versioning", "deployment", "monitoring", "settings"))


class Panel(widgets.VBox):
    """Base of the panels: a VBox of small widgets over a pipeline.

    Every panel has ``refresh_button`` and :meth:`refresh` (reload from the store),
    ``status`` (an HTML message area; ``message`` and ``error`` hold its text),
    ``on_<event>(callback)`` registration, and a static view (:meth:`static_html`) that
    its ``_repr_mimebundle_`` adds beside the widget view.
    """

    #: The last message shown in ``status`` (plain text).
    message = Unicode("")
    #: The last error shown in ``status`` ("" when the last action succeeded).
    error = Unicode("")
    #: True while an action or a refresh runs (buttons are disabled meanwhile).
    busy = Bool(False)

    _events: tuple[str, ...] = ("refresh", "error")

    def __init__(self, pipeline: Any, **kwargs: Any) -> None:
        self.pipeline = pipeline
        self._handlers: dict[str, widgets.CallbackDispatcher] = {e: widgets.CallbackDispatcher() for e in self._events}
        self.title = widgets.HTML()
        self.status = widgets.HTML(layout=widgets.Layout(min_height="22px"))
        self.status.add_class("mlops-status")
        self.refresh_button = widgets.Button(
            description="Refresh", icon="refresh", tooltip="reload from the store", layout=widgets.Layout(width="auto")
        )
        self.refresh_button.add_class("mlops-refresh")
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.loaded_at: float | None = None
        super().__init__(**kwargs)
        self.add_class("mlops-panel")

    @observe("busy")
    def _busy_changed(self, change: Any) -> None:
        self.refresh_button.disabled = bool(change["new"])

    # -- events ------------------------------------------------------------------------
    def _on(self, event: str, callback: Callable[..., Any], remove: bool = False) -> None:
        self._handlers[event].register_callback(callback, remove=remove)

    def _fire(self, event: str, *args: Any) -> None:
        self._handlers[event](self, *args)

    def on_refresh(self, callback: Callable[..., Any], remove: bool = False) -> None:
        """Call ``callback(panel)`` after every refresh."""
        self._on("refresh", callback, remove)

    def on_error(self, callback: Callable[..., Any], remove: bool = False) -> None:
        """Call ``callback(panel, action, exception)`` when an action or a refresh fails."""
        self._on("error", callback, remove)

    # -- status ------------------------------------------------------------------------
    def show(self, message: str, kind: str = "info") -> None:
        """Show ``message`` in ``status`` (kind: ``info``, ``ok``, ``warn``, ``error``)."""
        colors = {"info": "#555", "ok": "#2e7d32", "warn": "#b26a00", "error": "#c62828"}
        icons = {"info": "", "ok": "✔ ", "warn": "⚠ ", "error": "✖ "}
        self.message = message
        self.error = message if kind == "error" else ""
        self.status.value = (
            f"<span class='mlops-msg mlops-{kind}' style='color:{colors[kind]}'>"
            f"{icons[kind]}{html.escape(message)}</span>"
        )

    def fail(self, action: str, exc: BaseException) -> None:
        """Show an error (one line: its type and message) and tell ``on_error`` callbacks."""
        self.show(f"{action} failed: {type(exc).__name__}: {exc}", "error")
        log.debug("mlops_jupyter: panel action %s failed", action, exc_info=exc)
        self._fire("error", action, exc)

    # -- refresh -----------------------------------------------------------------------
    def refresh(self) -> None:
        """Reload everything the panel shows from the store, then redraw."""
        self.busy = True
        try:
            self._load()
            self._render()
            self.loaded_at = time.time()
        except Exception as exc:
            self.fail("refresh", exc)
        finally:
            self.busy = False
        self._fire("refresh")

    def _load(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _render(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- static view -------------------------------------------------------------------
    def static_html(self) -> str:  # pragma: no cover - abstract
        """The panel as self-contained HTML (SVG charts, HTML tables): no kernel, no network."""
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data = super()._repr_mimebundle_(**kwargs) or {}
        try:
            data["text/html"] = self.static_html()
        except Exception as exc:  # the live widget must show even if the snapshot fails
            log.warning("mlops_jupyter: no static view for %s: %s", type(self).__name__, exc)
        return data
