"""Delivering a fired alert's action: off the evaluating thread, bounded, retried, recorded.

When a rule fires, the evaluator records the history entry as ``queued`` and hands the
action to :func:`dispatch`, which returns at once: one daemon thread per delivery runs the
attempts, so a slow webhook delays neither the evaluation nor any other alert.

* **Timeout**: each attempt runs in its own thread and is abandoned after
  ``$MLOPS_ALERT_ACTION_TIMEOUT`` seconds (10); a webhook's socket timeout is the same.
  A ``rollback`` is never abandoned: a second one started beside a slow first one (a
  deploy onto Ray takes longer than 10 s) could see the first one's result and roll back
  one version further. Its own waits are bounded (``MLOPS_RAY_START_TIMEOUT``, the
  gateway's start), so its attempt runs to its end; meanwhile the entry is touched every
  timeout period, so no other process takes it over as left by a dead one.
* **Retries**: an attempt that fails or times out is retried after 1 s, 2 s, 4 s, ... up to
  ``$MLOPS_ALERT_ACTION_ATTEMPTS`` attempts (5); then the entry is ``failed``. An action
  name with no callable registered in the process is ``undelivered`` (held for
  ``register_action``), not retried.
* **At least once**: the entry is ``queued`` / ``retrying`` until an attempt succeeds. If
  the process dies meanwhile, the next evaluation in any process (:func:`resume_stale`)
  takes over entries whose last update is older than one full attempt cycle and delivers
  them, so an action may run twice but is not lost. Receivers tell repeats apart by the
  payload's ``idempotency_key`` (``<alert_id>@<fired_at>``; a webhook also gets it as the
  ``Idempotency-Key`` header).
* **Recorded**: every attempt (number, start, seconds, ok, status or error) is appended to
  the entry's ``action_result["attempts"]`` in the state DB, so ``alerts()`` shows it.

:func:`wait` joins the deliveries this process started (for tests, scripts and a notebook
cell that wants to see the outcome).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from mlops_jupyter.config.times import iso_from_seconds
from mlops_jupyter.monitoring import limits
from mlops_jupyter.monitoring.alerts import actions

__all__ = ["ACTIVE_STATES", "dispatch", "idempotency_key", "resume_stale", "wait"]

ACTIVE_STATES = ("queued", "retrying")
"""Delivery states of an entry whose action is still being delivered."""
BACKOFF_S = 1.0
"""The first retry's delay; each next one doubles."""

_threads: set[threading.Thread] = set()
_threads_lock = threading.Lock()


def idempotency_key(alert_id: str, fired_at: float | None) -> str:
    """The key that names one firing of one rule: ``<alert_id>@<fired_at ISO>``."""
    return f"{alert_id}@{iso_from_seconds(fired_at)}"


def _attempt(
    action: str, payload: dict[str, Any], tenant: str, rollback: Any, timeout: float, touch: Callable[[], Any]
) -> actions.Delivery:
    """One attempt, abandoned after ``timeout`` seconds (the thread is left to finish), except
    a rollback, which is waited for while ``touch`` marks the entry alive every ``timeout``."""
    box: list[actions.Delivery] = []
    worker = threading.Thread(
        target=lambda: box.append(actions.deliver(action, payload, tenant, rollback=rollback, timeout=timeout)),
        name="mlops-alert-attempt",
        daemon=True,
    )
    worker.start()
    worker.join(timeout)
    while actions.is_rollback(action) and worker.is_alive():
        touch()
        worker.join(timeout)
    if not box:
        return actions.Delivery("failed", {"ok": False, "error": f"timed out after {timeout:g} s"})
    return box[0]


def _run(
    store: Any, tenant: str, event_id: int, action: str, payload: dict[str, Any], rollback: Any, result: dict[str, Any]
) -> None:
    timeout, attempts = limits.alert_action_timeout(), limits.alert_action_attempts()
    tried = list(result.get("attempts") or [])
    status = "failed"

    def touch() -> None:  # only its last update time changes: this delivery's owner is alive
        store.update_alert_event(event_id, {})

    for i in range(attempts):
        start = time.time()
        done = _attempt(action, payload, tenant, rollback, timeout, touch)
        rec = {
            "n": len(tried) + 1,
            "at": iso_from_seconds(start),
            "seconds": round(time.time() - start, 4),
            **{k: v for k, v in done.result.items() if k in ("ok", "status", "error", "reason")},
        }
        tried.append(rec)
        status = done.status
        last = status != "failed" or i == attempts - 1
        state = status if last else "retrying"
        store.update_alert_event(
            event_id, {"delivery": state, "action_result": {**result, **done.result, "attempts": tried}}
        )
        if last:
            return
        time.sleep(BACKOFF_S * 2**i)  # backoff between attempts, on this delivery's own thread


def dispatch(store: Any, tenant: str, event: dict[str, Any], rollback: Any = None, **note: Any) -> dict[str, Any]:
    """Queue the action of a fired entry and deliver it on its own thread; returns at once.

    Args:
        note: more keys for the recorded ``action_result`` (e.g. ``held_since``).

    Returns:
        The ``action_result`` recorded now (``idempotency_key``, no attempts yet).
    """
    key = idempotency_key(event["alert_id"], event.get("fired_at"))
    prev = event.get("action_result") or {}
    result = {**note, "idempotency_key": key, "attempts": list(prev.get("attempts") or [])}
    store.update_alert_event(event["event_id"], {"delivery": "queued", "action_result": result})
    payload = {**actions.alert_payload(event, tenant), "idempotency_key": key}

    def run() -> None:
        try:
            _run(store, tenant, event["event_id"], event["action"], payload, rollback, result)
        finally:
            with _threads_lock:
                _threads.discard(threading.current_thread())

    thread = threading.Thread(target=run, name=f"mlops-alert-{event['event_id']}", daemon=True)
    with _threads_lock:
        _threads.add(thread)
    thread.start()
    return result


def cycle_seconds() -> float:
    """How long a delivery may take before another process assumes its owner died."""
    n = limits.alert_action_attempts()
    return n * limits.alert_action_timeout() + BACKOFF_S * (2**n) + 5.0


def resume_stale(store: Any, tenant: str, now: float, rollback: Callable[..., Any] | None = None) -> int:
    """Take over deliveries left ``queued`` / ``retrying`` by a process that died; returns how many."""
    taken = 0
    stale = now - cycle_seconds()
    for state in ACTIVE_STATES:
        for e in store.list_alert_events(tenant, delivery=state):
            if float(e.get("updated_at") or 0) > stale:
                continue
            if store.update_alert_event(
                e["event_id"], {"delivery": "queued"}, expect={"delivery": state, "updated_at": e["updated_at"]}
            ):
                dispatch(store, tenant, {**e, "delivery": "queued"}, rollback)
                taken += 1
    return taken


def wait(timeout: float = 60.0) -> int:
    """Join this process' running deliveries (up to ``timeout`` seconds); returns how many remain."""
    deadline = time.monotonic() + timeout
    while True:
        with _threads_lock:
            running = list(_threads)
        if not running:
            return 0
        left = deadline - time.monotonic()
        if left <= 0:
            return len(running)
        running[0].join(left)
