"""A kernel-wide event bus: live panels follow what the kernel changes.

A deploy or rollback done in one ``DeployPanel`` (or by ``%mlops deploy``) changes what
every other panel of that model shows; a cell that logs a run changes what a
``ComparisonPanel`` of the tenant shows. Whoever changes something publishes a topic
(:func:`model_topic`, :func:`runs_topic`); every live panel of this kernel whose
``bus_topics()`` holds it refreshes. :data:`CHART_THEME` is heard by every live panel
(it redraws its charts only). Panels are held weakly: a panel that is gone is never called.

Example:
    >>> model_topic("acme", "churn")
    'model:acme:churn'
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

log = logging.getLogger(__name__)
_PANELS: weakref.WeakSet[Any] = weakref.WeakSet()
_LOCK = threading.Lock()
#: The chart theme changed (:func:`.theme.set_theme`): every live panel redraws its charts.
CHART_THEME = "chart-theme"
#: Topics every live panel hears, whatever its ``bus_topics()``.
BROADCAST = frozenset({CHART_THEME})


def model_topic(tenant: str, model_id: str) -> str:
    """A model's deployments, versions or alerts changed."""
    return f"model:{tenant}:{model_id}"


def runs_topic(tenant: str) -> str:
    """Runs of the tenant were logged or ended."""
    return f"runs:{tenant}"


def join(panel: Any) -> None:
    """Let ``panel`` hear published topics (it answers with ``bus_topics()`` and ``on_bus(topic)``)."""
    with _LOCK:
        _PANELS.add(panel)


def leave(panel: Any) -> None:
    with _LOCK:
        _PANELS.discard(panel)


def listeners(topic: str) -> list[Any]:
    with _LOCK:
        panels = list(_PANELS)
    out = []
    for p in panels:
        try:
            if topic in BROADCAST or topic in p.bus_topics():
                out.append(p)
        except Exception:  # a half-built panel hears nothing
            continue
    return out


def publish(topic: str, source: Any = None, background: bool = False) -> int:
    """Tell every live panel following ``topic`` (but ``source``) to refresh; returns how
    many were told. ``background``: refresh them in a thread (for hooks on a cell's path)."""
    panels = [p for p in listeners(topic) if p is not source]
    if not panels:
        return 0

    def run() -> None:
        for p in panels:
            try:
                p.on_bus(topic)
            except Exception as exc:  # one broken panel never stops the others
                log.debug("mlops_jupyter: panel %r could not follow %s: %s", p, topic, exc)

    if background:
        threading.Thread(target=run, name="mlops-panel-bus", daemon=True).start()
    else:
        run()
    return len(panels)
