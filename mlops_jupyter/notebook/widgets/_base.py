"""What every panel shares: the pipeline, a status line, a refresh control, callbacks,
and the static view that travels with the widget view."""

from __future__ import annotations

import html
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
from traitlets import Bool, Float, Unicode, observe

from mlops_jupyter.notebook.widgets import _bus, theme

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


def split_positional(
    cls: str, args: tuple[Any, ...], names: tuple[str, ...], given: dict[str, Any], pipeline: Any
) -> tuple[Any, dict[str, Any]]:
    """A panel's arguments, whether the pipeline comes first or not.

    ``Panel("churn")``, ``Panel(pipeline, "churn")`` and ``Panel(pipeline, model_id="churn")``
    all mean the same: a pipeline in first place is taken as ``pipeline``, the other
    positional values fill ``names`` in order, and keywords (``given``, None when not
    passed) fill the rest. A value given twice is a ``TypeError``, as in Python.

    >>> split_positional("P", ("churn",), ("model_id",), {"model_id": None}, None)
    (None, {'model_id': 'churn'})
    """
    rest = list(args)
    if rest and is_pipeline(rest[0]):
        if pipeline is not None:
            raise TypeError(f"{cls}() got the pipeline twice (first argument and pipeline=)")
        pipeline = rest.pop(0)
    if len(rest) > len(names):
        allowed = ", ".join(names)
        raise TypeError(f"{cls}() takes at most {len(names)} positional arguments ({allowed}), got {len(rest)}")
    out = dict(given)
    for name, value in zip(names, rest):
        if out.get(name) is not None:
            raise TypeError(f"{cls}() got multiple values for argument {name!r}")
        out[name] = value
    return pipeline, out


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
    #: Reload from the store every this many seconds (0: only on refresh and kernel events).
    refresh_every = Float(0.0)

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
        self._ticker: threading.Thread | None = None
        self._stop_ticker = threading.Event()
        super().__init__(**kwargs)
        self.add_class("mlops-panel")
        _bus.join(self)

    @observe("busy")
    def _busy_changed(self, change: Any) -> None:
        self.refresh_button.disabled = bool(change["new"])

    # -- staying current -----------------------------------------------------------------
    def bus_topics(self) -> set[str]:
        """The kernel events this panel follows (:mod:`._bus`): its model's, by default."""
        model = getattr(self, "model", None)
        return {_bus.model_topic(self.pipeline.settings.tenant, model)} if model else set()

    def on_bus(self, topic: str) -> None:
        """Something this panel shows changed in the kernel: reload it (unless busy). A new
        chart theme only redraws the charts from what the panel holds (no store read, the
        selection stays); a refresh under way draws with the new theme anyway."""
        if self.busy:
            return
        if topic == _bus.CHART_THEME:
            charts = self.chart_widgets()
            if all(c.chart is None for c in charts):  # nothing drawn yet: the first refresh uses the new theme
                return
            try:
                self._render_charts()  # colours picked for the theme (chart inks) follow
            except Exception as exc:  # what the panel holds cannot be drawn (its load failed): keep its charts
                log.debug("mlops_jupyter: %s could not redraw its charts: %s", type(self).__name__, exc)
            for chart in charts:
                chart.follow_theme()  # charts equal to the ones shown were not sent again
            return
        self.refresh()

    def chart_widgets(self) -> list[Any]:
        """The live charts among the panel's widgets, at any depth."""
        found, todo = [], list(self.children)
        while todo:
            w = todo.pop()
            if hasattr(w, "follow_theme"):
                found.append(w)
            todo.extend(getattr(w, "children", ()))
        return found

    def changed(self, topic: str | None = None) -> int:
        """Tell the kernel's other live panels that what this panel shows changed."""
        topics = [topic] if topic else sorted(self.bus_topics())
        return sum(_bus.publish(t, source=self) for t in topics)

    @observe("refresh_every")
    def _refresh_every_changed(self, change: Any) -> None:
        self._stop_ticker.set()
        self._stop_ticker = threading.Event()
        if change["new"] and change["new"] > 0:
            stop, every = self._stop_ticker, float(change["new"])

            def tick() -> None:
                while not stop.wait(every):
                    if not self.busy:
                        self.refresh()

            self._ticker = threading.Thread(target=tick, name="mlops-panel-refresh", daemon=True)
            self._ticker.start()

    def close(self) -> None:
        """Stop following the kernel (and the timer) and close the widgets."""
        stop = getattr(self, "_stop_ticker", None)  # None: the panel's __init__ failed early
        if stop is not None:
            stop.set()
        _bus.leave(self)
        super().close()

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
        colors = {"info": theme.MUTED, "ok": theme.OK, "warn": theme.WARN, "error": theme.ERROR}
        icons = {"info": "", "ok": "✔ ", "warn": "⚠ ", "error": "✖ "}
        self.message = message
        self.error = message if kind == "error" else ""
        self.status.value = (
            f"<span class='mlops-msg mlops-{kind}' role='{'alert' if kind == 'error' else 'status'}' "
            f"style='color:{colors[kind]}'>"
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

    def _render_charts(self) -> None:  # pragma: no cover - abstract
        """Draw the charts (only) from what the panel holds; ``_render`` calls it too."""
        raise NotImplementedError

    # -- static view -------------------------------------------------------------------
    def static_html(self) -> str:  # pragma: no cover - abstract
        """The panel as self-contained HTML (SVG charts, HTML tables): no kernel, no network."""
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data = super()._repr_mimebundle_(**kwargs) or {}
        try:  # where the widget model is gone (a reopened notebook, nbviewer), this shows
            kind = type(self).__name__.removesuffix("Panel").lower()
            data["text/html"] = self.static_html().replace(
                "<div class='mlops-static'", f"<div class='mlops-static' data-mlops-panel='{kind}'", 1
            )
        except Exception as exc:  # the live widget must show even if the snapshot fails
            log.warning("mlops_jupyter: no static view for %s: %s", type(self).__name__, exc)
        return data
