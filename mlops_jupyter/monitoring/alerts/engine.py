"""Alert rules: when they fire (Prometheus' pending/firing states), what they do, history.

A rule is a condition in the safe grammar of :mod:`mlops_jupyter.monitoring.alerts.grammar`
(``drift_score > 0.1``, ``success_rate < 0.95 and avg_latency > 0.2``), an action, a
``for_`` duration, a ``cooldown`` and a severity, stored in the embedded store with its
state. Each evaluation computes the model's metrics once and steps every rule of the model:

* ``inactive`` -> the condition holds -> ``pending`` (a history entry is opened,
  ``started_at``);
* ``pending`` -> the condition has held for at least ``for_`` **and** at least ``cooldown``
  has passed since the rule last fired -> ``firing`` (``fired_at``): the action runs, once;
* ``pending`` -> the condition stops holding before that -> ``inactive`` (the entry is
  dropped: an alert that never fired leaves no trace, as in Prometheus);
* ``firing`` -> the condition stops holding -> ``inactive`` (the entry is ``resolved``,
  ``resolved_at``).

So ``for_="0s"`` fires on the first evaluation that sees the condition; a firing alert does
not repeat its action while the condition keeps holding; and after it resolves it cannot
fire again until ``cooldown`` has passed since it last fired (a flapping condition notifies
once per cooldown). A metric that cannot be computed (no data, no reference) is *unknown*
and never makes a condition true.

Actions (:func:`validate_action`):

* ``log``: a warning line on the ``mlops_jupyter.alerts`` logger;
* ``webhook:<http(s) url>``: a POST of the alert as JSON (5 s timeout; the HTTP status is
  recorded);
* ``rollback`` or ``rollback:<environment>``: rolls the model's deployment back to the
  previous version through the deployment API (the environment is the one that served the
  model's latest predictions, else the only one or ``production``);
* any other name (``notify_team``): the callable registered under that name with
  :func:`register_action` in the evaluating process, called with the alert dict. A name
  with nothing registered is accepted; when the alert fires it is logged as a warning and
  recorded as ``undelivered``, and it is delivered when a callable is registered under the
  name and evaluation (or the registration itself) runs in that process.

Who evaluates: ``check_drift`` (on the values it computed), ``evaluate_alerts``, and the
gateway (:class:`AlertScheduler`, a background thread that every few seconds evaluates
the models that got traffic since its last pass and those with a pending rule). State
changes are compare-and-set on the rule's revision in the store, so when a kernel and the
gateway evaluate one rule at the same moment, one of them fires it and runs the action.

Example:
    >>> monitoring.set_alert("ticket_classifier", "drift_score > 0.1", action="notify_team")
    {'alert_id': 'alert_5f0c...', 'condition': 'drift_score > 0.1', 'state': 'inactive', ...}
    >>> register_action("default", "notify_team", lambda alert: print(alert["condition"]))
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from mlops_jupyter.errors import InvalidAlertActionError, ValidationError

log = logging.getLogger("mlops_jupyter.alerts")

SEVERITIES = ("info", "warning", "critical")
STATES = ("inactive", "pending", "firing")
HISTORY_STATES = ("pending", "firing", "resolved")
BUILTIN_ACTIONS = ("log", "rollback", "rollback:<environment>", "webhook:<http(s) url>")
ACTION_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
ENVIRONMENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
WEBHOOK_TIMEOUT = 5.0
DEFAULT_INTERVAL = 5.0
ACTION_ALLOWED = ("'log', 'rollback', 'rollback:<environment>', 'webhook:http(s)://host/path', or the name "
                  "of an action registered with register_action (letters, digits, '_', '.', '-'; starting "
                  "with a letter or '_'; at most 64 characters), e.g. 'notify_team'")

# Callables registered per (tenant, name), shared by every monitoring object of the process.
_ACTIONS: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {}
_ACTIONS_LOCK = threading.Lock()


def iso(ts: float | None) -> str | None:
    """ISO-8601 UTC text of unix seconds (None stays None)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def validate_action(action: Any) -> str:
    """Return ``action`` if it is a built-in or a valid action name.

    Raises:
        InvalidAlertActionError: anything else (the message lists the accepted forms).

    Example:
        >>> validate_action("webhook:http://127.0.0.1:9000/hook"), validate_action("notify_team")
        ('webhook:http://127.0.0.1:9000/hook', 'notify_team')
    """
    if not isinstance(action, str):
        raise InvalidAlertActionError(f"Invalid alert action {action!r}: it must be a string.", value=action,
                                      allowed=ACTION_ALLOWED)
    if action.startswith("webhook:"):
        from urllib.parse import urlsplit

        url = action[len("webhook:"):]
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
            raise InvalidAlertActionError(f"Invalid webhook URL {url!r} in alert action {action!r}.", value=action,
                                          allowed="webhook:http://HOST[:PORT]/PATH or webhook:https://...")
        return action
    if action.startswith("rollback:"):
        env = action[len("rollback:"):]
        if not ENVIRONMENT_RE.fullmatch(env):
            raise InvalidAlertActionError(f"Invalid environment {env!r} in alert action {action!r}.", value=action,
                                          allowed="rollback, or rollback:<environment> such as rollback:production")
        return action
    if not ACTION_NAME_RE.fullmatch(action):
        raise InvalidAlertActionError(f"Invalid alert action {action!r}.", value=action, allowed=ACTION_ALLOWED)
    return action


def validate_severity(severity: Any) -> str:
    if severity not in SEVERITIES:
        raise ValidationError(f"Invalid severity {severity!r}.", value=severity, allowed=SEVERITIES)
    return severity


def is_builtin(action: str) -> bool:
    return action in ("log", "rollback") or action.startswith(("webhook:", "rollback:"))


def register_action(tenant: str, name: str, fn: Callable[[dict[str, Any]], Any]) -> None:
    """Register ``fn`` as the action ``name`` of ``tenant`` in this process.

    Raises:
        InvalidAlertActionError: ``name`` is a built-in or not a valid name, or ``fn`` is
            not callable.

    Example:
        >>> register_action("tenant_123", "notify_team", lambda alert: print(alert["condition"]))
    """
    validate_action(name)
    if is_builtin(name):
        raise InvalidAlertActionError(f"{name!r} is a built-in action; register under another name.",
                                      value=name,
                                      allowed="a name that is not log, rollback, rollback:... or webhook:...")
    if not callable(fn):
        raise InvalidAlertActionError(f"The action {name!r} must be callable; got {type(fn).__name__}.",
                                      value=fn, allowed="a function taking the alert dict, e.g. lambda alert: ...")
    with _ACTIONS_LOCK:
        _ACTIONS[(tenant, name)] = fn


def registered_action(tenant: str, name: str) -> Callable[[dict[str, Any]], Any] | None:
    with _ACTIONS_LOCK:
        return _ACTIONS.get((tenant, name))


def unregister_action(tenant: str, name: str) -> bool:
    """Forget a registered action; True if there was one."""
    with _ACTIONS_LOCK:
        return _ACTIONS.pop((tenant, name), None) is not None


# --------------------------------------------------------------------------- state machine


def step(rule: Mapping[str, Any], holds: bool, now: float) -> tuple[str, list[str], dict[str, Any]]:
    """One evaluation of a rule: its next state, the transitions taken and its new ``extra``.

    Transitions: ``"pending"`` (opened), ``"fire"``, ``"cancel"`` (pending that cleared),
    ``"resolve"`` (firing that cleared). See the module docstring for the rules.

    Example:
        >>> rule = {"state": "inactive", "for_s": 60.0, "cooldown_s": 300.0, "extra": {}}
        >>> step(rule, True, 1000.0)[:2]
        ('pending', ['pending'])
    """
    state = rule["state"]
    extra = dict(rule.get("extra") or {})
    transitions: list[str] = []
    if holds:
        if state == "inactive":
            state = "pending"
            extra["pending_since"] = now
            transitions.append("pending")
        if state == "pending":
            held = now - float(extra.get("pending_since", now))
            last = extra.get("last_fired_at")
            cooled = last is None or now - float(last) >= float(rule["cooldown_s"])
            if held >= float(rule["for_s"]) and cooled:
                state = "firing"
                extra["last_fired_at"] = now
                transitions.append("fire")
    else:
        if state == "pending":
            transitions.append("cancel")
        elif state == "firing":
            transitions.append("resolve")
        if state != "inactive":
            state = "inactive"
            extra.pop("pending_since", None)
    return state, transitions, extra


# --------------------------------------------------------------------------- delivery


def alert_payload(event: Mapping[str, Any], tenant: str) -> dict[str, Any]:
    """The alert as actions receive it (and as a webhook POSTs it)."""
    values = event.get("values") or {}
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in values.items() if k != "feature_scores" and v is not None)
    return {
        "alert_id": event["alert_id"],
        "event_id": event.get("event_id"),
        "tenant": tenant,
        "model_id": event["model_id"],
        "condition": event["condition"],
        "severity": event["severity"],
        "state": event["state"],
        "started_at": iso(event.get("started_at")),
        "fired_at": iso(event.get("fired_at")),
        "resolved_at": iso(event.get("resolved_at")),
        "values": values,
        "action": event["action"],
        "message": f"[{event['severity']}] {tenant}/{event['model_id']}: {event['condition']} ({shown})",
    }


def _post_json(url: str, payload: Mapping[str, Any], timeout: float = WEBHOOK_TIMEOUT) -> dict[str, Any]:
    import urllib.error
    import urllib.request

    body = json.dumps(payload, default=str).encode()
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "mlops-jupyter-alerts"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the user's own webhook URL
            status = resp.status
    except urllib.error.HTTPError as exc:
        return {"ok": False, "status": exc.code, "error": f"HTTP {exc.code} {exc.reason}"}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return {"ok": False, "error": f"{type(exc).__name__}: {reason}"}
    return {"ok": 200 <= status < 300, "status": status}


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)[:500]


def deliver(action: str, payload: dict[str, Any], tenant: str,
            rollback: Callable[[str, str | None], dict[str, Any]] | None = None) -> tuple[str, dict[str, Any]]:
    """Run one action; returns ``(delivery, action_result)``.

    ``delivery`` is ``delivered``, ``failed`` (the action ran and raised or answered an
    error) or ``undelivered`` (no callable registered under the name in this process).
    Never raises.
    """
    try:
        if action == "log":
            log.warning("mlops_jupyter alert: %s", payload["message"])
            return "delivered", {"ok": True, "logged": payload["message"]}
        if action.startswith("webhook:"):
            result = _post_json(action[len("webhook:"):], payload)
            return ("delivered" if result["ok"] else "failed"), result
        if action == "rollback" or action.startswith("rollback:"):
            if rollback is None:
                return "failed", {"ok": False, "error": "no deployment API available to roll back"}
            env = action[len("rollback:"):] if ":" in action else None
            return "delivered", {"ok": True, **rollback(payload["model_id"], env)}
        fn = registered_action(tenant, action)
        if fn is None:
            log.warning("mlops_jupyter alert %s fired for %s/%s (%s) but no action is registered under %r; "
                        "recorded as undelivered until register_action(%r, fn) in a process that evaluates it.",
                        payload["alert_id"], tenant, payload["model_id"], payload["condition"], action, action)
            return "undelivered", {"ok": False, "delivered": False,
                                   "reason": f"no action registered under {action!r}; register_action({action!r}, "
                                             "fn) delivers it"}
        return "delivered", {"ok": True, "returned": _jsonable(fn(dict(payload)))}
    except Exception as exc:  # an action must never break evaluation
        log.warning("mlops_jupyter alert %s: action %r failed: %s", payload.get("alert_id"), action, exc)
        return "failed", {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


# --------------------------------------------------------------------------- gateway side


def alert_interval() -> float:
    """Seconds between the gateway's alert passes: ``$MLOPS_ALERT_INTERVAL`` or 5."""
    from mlops_jupyter.config import env

    raw = os.environ.get(env.MLOPS_ALERT_INTERVAL)
    if not raw:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value <= 0:
        log.warning("mlops_jupyter: ignoring %s=%r (not a positive number of seconds); using %s s",
                    env.MLOPS_ALERT_INTERVAL, raw, DEFAULT_INTERVAL)
        return DEFAULT_INTERVAL
    return value


class AlertScheduler:
    """The gateway's background alert pass.

    Every ``interval`` seconds: flush the prediction log, compact the parts of the models
    that got traffic, and evaluate the alert rules of those models and of models with a
    pending rule (so ``for_`` can elapse without new traffic). Rollback and webhook
    actions run from here; callables registered in a notebook do not exist in this
    process, so their alerts are recorded as undelivered for the notebook to deliver.

    Args:
        home: the storage home the gateway serves.
        predlog: the gateway's prediction log (read directly, so nothing is missed).
        store: the embedded store (shared with the gateway).
        interval: seconds between passes (default ``$MLOPS_ALERT_INTERVAL`` or 5).

    Example:
        >>> sched = AlertScheduler(home, gateway.predlog, gateway.store)
        >>> sched.start()
        >>> sched.run_once()["evaluated"]
        [('tenant_123', 'ticket_classifier')]
    """

    def __init__(self, home: str | os.PathLike[str], predlog: Any, store: Any,
                 interval: float | None = None) -> None:
        self.home = Path(home)
        self.predlog = predlog
        self.store = store
        self.interval = alert_interval() if interval is None else float(interval)
        self._monitors: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.passes = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mlops-alerts", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
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
            from mlops_jupyter.monitoring.monitoring import ModelMonitoring
            from mlops_jupyter.config.settings import resolve_settings

            settings = resolve_settings(tenant_id=tenant, storage_path=self.home)
            mon = self._monitors[tenant] = ModelMonitoring(settings, predlog=self.predlog, store=self.store,
                                                           sync_gateway=False)
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
            targets = sorted({(r["tenant"], r["model_id"]) for r in rules
                              if (r["tenant"], r["model_id"]) in touched or r["state"] == "pending"})
            changes: list[dict[str, Any]] = []
            for tenant, model_id in targets:
                try:
                    changes += self._monitor(tenant).evaluate_alerts(model_id, now=now)
                except Exception:
                    log.exception("gateway: evaluating the alerts of %s/%s failed", tenant, model_id)
            self.passes += 1
            return {"evaluated": targets, "changes": changes}


def new_alert_id() -> str:
    return "alert_" + secrets.token_hex(6)

