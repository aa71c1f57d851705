"""A notebook's own background alert evaluator: rules fire with no gateway and no call.

The gateway evaluates the rules of the models it serves (:mod:`.scheduler`). Predictions
tracked from a notebook with ``track_prediction`` never pass through it, so a notebook can
start its own evaluator (``monitoring.start_alert_evaluator()``): a daemon thread that runs
``evaluate(None)`` (every rule of the tenant) every ``interval`` seconds
(``$MLOPS_ALERT_INTERVAL``, default 5) until stopped or the process ends. A failing pass
is logged and the next one runs; rules stepped at the same moment by the gateway are fired
once (compare-and-set in the store).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("mlops_jupyter.alerts")


class BackgroundEvaluator:
    """Runs ``evaluate()`` every ``interval`` seconds on a daemon thread."""

    def __init__(self, evaluate: Callable[[], Any], interval: float) -> None:
        self.evaluate = evaluate
        self.interval = float(interval)
        self.passes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mlops-alert-evaluator", daemon=True)

    def start(self) -> BackgroundEvaluator:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the pass in progress (waits up to ``timeout`` seconds for it)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.evaluate()
            except Exception:  # keep evaluating on the next pass
                log.exception("mlops_jupyter: background alert evaluation failed")
            self.passes += 1
