"""The gateway's background alert pass: alerts fire with nobody calling ``check_drift``.

Every ``interval`` seconds (``$MLOPS_ALERT_INTERVAL``, default 5) an
:class:`AlertScheduler` thread flushes the gateway's prediction log, compacts the parts of
the models that got traffic since its last pass, and evaluates the alert rules of those
models and of models with a pending rule (so ``for_`` can elapse without new traffic).

It evaluates through the object that ``monitor_for(tenant)`` returns (a
:class:`~mlops_jupyter.monitoring.facade.ModelMonitoring` in the gateway), one per tenant,
kept for later passes; this module never imports that facade, so alerts stay below it.

Rollback and webhook actions run from here; callables registered in a notebook do not
exist in this process, so their alerts are recorded as undelivered for the notebook to
deliver. State changes are compare-and-set on the rule's revision in the store, so when a
kernel and the gateway evaluate one rule at the same moment, one of them fires it.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlops_jupyter.errors import ValidationError

log = logging.getLogger("mlops_jupyter.alerts")

DEFAULT_INTERVAL = 5.0
"""Seconds between two alert passes when ``$MLOPS_ALERT_INTERVAL`` is not set."""


def alert_interval() -> float:
    """Seconds between the gateway's alert passes: ``$MLOPS_ALERT_INTERVAL`` or 5.

    A value that is not a positive number is ignored with a warning.
    """
    from mlops_jupyter.config import env

    raw = os.environ.get(env.MLOPS_ALERT_INTERVAL)
    if not raw:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value <= 0:
        log.warning(
            "mlops_jupyter: ignoring %s=%r (not a positive number of seconds); using %s s",
            env.MLOPS_ALERT_INTERVAL,
            raw,
            DEFAULT_INTERVAL,
        )
        return DEFAULT_INTERVAL
    return value


class AlertScheduler:
    """The gateway's background alert pass.

    Args:
        home: the storage home the gateway serves.
        predlog: the gateway's prediction log (read directly, so nothing is missed).
        store: the embedded store (shared with the gateway).
        monitor_for: ``tenant -> monitor``: an object with ``evaluate_alerts(model_id,
            now=...)`` for the tenant (a ``ModelMonitoring`` on ``predlog`` and ``store``
            with ``sync_gateway=False``); called once per tenant, the result is kept.
        interval: seconds between passes (default ``$MLOPS_ALERT_INTERVAL`` or 5).

    Example::

        monitor_for = lambda tenant: ModelMonitoring(
            resolve_settings(tenant_id=tenant, storage_path=home), predlog=gateway.predlog,
            store=gateway.store, sync_gateway=False)
        sched = AlertScheduler(home, gateway.predlog, gateway.store, monitor_for=monitor_for)
        sched.start()
        sched.run_once()["evaluated"]  # [('tenant_123', 'ticket_classifier')]
    """

    def __init__(
        self,
        home: str | os.PathLike[str],
        predlog: Any,
        store: Any,
        *,
        monitor_for: Callable[[str], Any],
        interval: float | None = None,
    ) -> None:
        if not callable(monitor_for):
            raise ValidationError(
                f"monitor_for must be callable; got {type(monitor_for).__name__}.",
                value=monitor_for,
                allowed="a function tenant -> an object with evaluate_alerts",
            )
        self.home = Path(home)
        self.predlog = predlog
        self.store = store
        self.monitor_for = monitor_for
        self.interval = alert_interval() if interval is None else float(interval)
        self._monitors: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.passes = 0

    def start(self) -> None:
        """Start the background thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mlops-alerts", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the background thread, waiting up to ``timeout`` seconds for a pass to end."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:  # keep evaluating on the next pass
                log.exception("gateway: alert pass failed")

    def _monitor(self, tenant: str) -> Any:
        mon = self._monitors.get(tenant)
        if mon is None:
            mon = self._monitors[tenant] = self.monitor_for(tenant)
        return mon

    def run_once(self, now: float | None = None) -> dict[str, Any]:
        """One pass; returns what it did (``evaluated`` (tenant, model) pairs, ``changes``)."""
        with self._lock:
            self.predlog.flush()
            touched = self.predlog.take_touched()
            for tenant, model_id in sorted(touched):
                try:
                    self.predlog.compact(tenant, model_id)
                except Exception as exc:
                    log.warning("gateway: compacting the prediction log of %s/%s failed: %s", tenant, model_id, exc)
            rules = self.store.list_alert_rules()
            targets = sorted(
                {
                    (r["tenant"], r["model_id"])
                    for r in rules
                    if (r["tenant"], r["model_id"]) in touched or r["state"] == "pending"
                }
            )
            changes: list[dict[str, Any]] = []
            for tenant, model_id in targets:
                try:
                    changes += self._monitor(tenant).evaluate_alerts(model_id, now=now)
                except Exception:
                    log.exception("gateway: evaluating the alerts of %s/%s failed", tenant, model_id)
            self.passes += 1
            return {"evaluated": targets, "changes": changes}
