"""Feedback for slow first steps: a progress line shown at once, and warming in the background.

The first ``%mlops runs`` in a kernel pays for MLflow's import and the store's start-up
(seconds), the first deploy for the gateway's start: with only ``[*]`` showing it looks
hung. :func:`progress` shows a line right away (a display that is replaced when the work
is done), only when the work is cold; :func:`warm_up` does that start-up in a background
thread right after ``%mlops init``, so most first commands are not cold at all.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)


def is_cold(pipeline: Any) -> bool:
    """True while MLflow is not imported or the store's client is not built yet."""
    store = pipeline.tracker.store
    return "mlflow" not in sys.modules or getattr(store, "_client", None) is None


class _Line:
    """One display that can be rewritten (``text/plain`` and ``text/html``)."""

    def __init__(self, text: str) -> None:
        from IPython.display import display

        self.handle = display(self._bundle(text), raw=True, display_id=True)

    @staticmethod
    def _bundle(text: str) -> dict[str, str]:
        import html

        if not text:
            return {"text/plain": ""}
        return {
            "text/plain": f"⏳ {text}",
            "text/html": (
                "<div class='mlops-progress' role='status' aria-live='polite' "
                "style='color: var(--jp-ui-font-color2, #555)'>"
                f"<span class='mlops-spinner' aria-hidden='true'>⏳</span> {html.escape(text)}</div>"
            ),
        }

    def update(self, text: str) -> None:
        if self.handle is not None:
            self.handle.update(self._bundle(text), raw=True)


@contextmanager
def progress(text: str, *, when: bool = True) -> Iterator[Any]:
    """Show ``text`` at once while the block runs (only ``when`` true), then clear it.
    Yields a function that rewrites the line (``None``-safe: a no-op when not shown)."""
    line = _Line(text) if when else None
    try:
        yield (line.update if line is not None else (lambda _t: None))
    finally:
        if line is not None:
            line.update("")


_WARMING: dict[int, threading.Thread] = {}


#: Most seconds a cell waits for the warm-up to finish before running anyway.
WARM_WAIT_S = 120.0


def warm_up(pipeline: Any, shell: Any = None) -> threading.Thread:
    """Import MLflow and open the store in a background thread (once per pipeline).

    Two threads importing MLflow at once can break its protobuf registry ("Couldn't build
    proto file into descriptor pool"), so with ``shell`` the next cell waits for the
    warm-up to finish before it runs (``pre_run_cell``): the user's code never imports
    MLflow while the warm-up does. The cell that called this must not touch MLflow after.
    """
    t = _WARMING.get(id(pipeline))
    if t is not None and (t.is_alive() or not is_cold(pipeline)):
        return t
    store = pipeline.tracker.store

    def warm() -> None:
        try:
            store.writer  # noqa: B018 - builds the client (imports MLflow), recovers, starts the writer
            import pandas  # noqa: F401 - the panels and %mlops runs need it
        except Exception:  # the first command that needs the store reports it to the user
            log.debug("mlops_jupyter: background warm-up failed", exc_info=True)

    t = threading.Thread(target=warm, name="mlops-warmup", daemon=True)
    _WARMING[id(pipeline)] = t
    t.start()
    if shell is not None:
        _wait_before_next_cell(shell, t)
    return t


def _wait_before_next_cell(shell: Any, thread: threading.Thread) -> None:
    def wait(_info: Any = None) -> None:
        try:
            shell.events.unregister("pre_run_cell", wait)
        except ValueError:
            pass
        if thread.is_alive():
            with progress("finishing MLflow's start-up ..."):
                thread.join(WARM_WAIT_S)

    shell.events.register("pre_run_cell", wait)
