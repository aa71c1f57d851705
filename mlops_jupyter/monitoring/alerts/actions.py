"""Alert actions: which ones exist, the per-process registry of named ones, and delivery.

An alert rule names one action (:func:`validate_action`):

* ``log``: a warning line on the ``mlops_jupyter.alerts`` logger;
* ``webhook:<http(s) url>``: a POST of the alert as JSON (:data:`WEBHOOK_TIMEOUT` seconds;
  the HTTP status is recorded);
* ``rollback`` or ``rollback:<environment>``: rolls the model's deployment back to the
  previous version through the deployment API (the environment is the one that served the
  model's latest predictions, else the only one or ``production``); the evaluator passes
  the function that does it to :func:`deliver`;
* any other name (``notify_team``): the callable registered under that name with
  :func:`register_action` in the evaluating process, called with the alert dict. A name
  with nothing registered is accepted; when the alert fires it is logged as a warning and
  recorded as ``undelivered``, and it is delivered when a callable is registered under the
  name and evaluation (or the registration itself) runs in that process.

:func:`deliver` never raises: what an action did, or why it failed, is its result, recorded
in the alert's history.

Example:
    >>> validate_action("rollback:production"), is_builtin("rollback:production")
    ('rollback:production', True)
    >>> register_action("tenant_123", "notify_team", lambda alert: alert["message"])
    >>> event = {"alert_id": "alert_5f0c1a2b3c4d", "model_id": "ticket_classifier",
    ...          "condition": "drift_score > 0.1", "severity": "warning", "state": "firing",
    ...          "action": "notify_team", "values": {"drift_score": 0.31}}
    >>> done = deliver("notify_team", alert_payload(event, "tenant_123"), "tenant_123")
    >>> done.status, done.result["returned"]
    ('delivered', '[warning] tenant_123/ticket_classifier: drift_score > 0.1 (drift_score=0.31)')
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from mlops_jupyter.config.names import ENVIRONMENT_RE
from mlops_jupyter.config.times import iso_from_seconds
from mlops_jupyter.errors import InvalidAlertActionError, ValidationError

log = logging.getLogger("mlops_jupyter.alerts")

SEVERITIES = ("info", "warning", "critical")
ACTION_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
WEBHOOK_TIMEOUT = 5.0
ACTION_ALLOWED = (
    "'log', 'rollback', 'rollback:<environment>', 'webhook:http(s)://host/path', or the name "
    "of an action registered with register_action (letters, digits, '_', '.', '-'; starting "
    "with a letter or '_'; at most 64 characters), e.g. 'notify_team'"
)

Rollback = Callable[[str, str | None], dict[str, Any]]
"""``(model_id, environment or None) -> what the rollback did``: the ``rollback`` action."""


class Delivery(NamedTuple):
    """What running an action did."""

    status: str
    """``delivered``, ``failed`` (it ran and raised or answered an error) or ``undelivered``
    (no callable registered under the name in this process)."""
    result: dict[str, Any]
    """The ``action_result`` recorded in the history (``ok`` and what the action returned)."""


# Callables registered per (tenant, name), shared by every monitoring object of the process.
_ACTIONS: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {}
_ACTIONS_LOCK = threading.Lock()


def validate_action(action: Any) -> str:
    """Return ``action`` if it is a built-in or a valid action name.

    Raises:
        InvalidAlertActionError: anything else (the message lists the accepted forms).

    Example:
        >>> validate_action("webhook:http://127.0.0.1:9000/hook"), validate_action("notify_team")
        ('webhook:http://127.0.0.1:9000/hook', 'notify_team')
    """
    if not isinstance(action, str):
        raise InvalidAlertActionError(
            f"Invalid alert action {action!r}: it must be a string.", value=action, allowed=ACTION_ALLOWED
        )
    if action.startswith("webhook:"):
        from urllib.parse import urlsplit

        url = action[len("webhook:") :]
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
            raise InvalidAlertActionError(
                f"Invalid webhook URL {url!r} in alert action {action!r}.",
                value=action,
                allowed="webhook:http://HOST[:PORT]/PATH or webhook:https://...",
            )
        return action
    if action.startswith("rollback:"):
        env = action[len("rollback:") :]
        if not ENVIRONMENT_RE.fullmatch(env):
            raise InvalidAlertActionError(
                f"Invalid environment {env!r} in alert action {action!r}.",
                value=action,
                allowed="rollback, or rollback:<environment> such as rollback:production",
            )
        return action
    if not ACTION_NAME_RE.fullmatch(action):
        raise InvalidAlertActionError(f"Invalid alert action {action!r}.", value=action, allowed=ACTION_ALLOWED)
    return action


def validate_severity(severity: Any) -> str:
    """Return ``severity`` if it is one of :data:`SEVERITIES`.

    Raises:
        ValidationError: anything else.

    Example:
        >>> validate_severity("critical")
        'critical'
    """
    if severity not in SEVERITIES:
        raise ValidationError(f"Invalid severity {severity!r}.", value=severity, allowed=SEVERITIES)
    return severity


def is_builtin(action: str) -> bool:
    """Whether ``action`` is ``log``, ``rollback[:<environment>]`` or ``webhook:<url>``."""
    return action in ("log", "rollback") or action.startswith(("webhook:", "rollback:"))


def is_rollback(action: str) -> bool:
    """Whether ``action`` is the built-in ``rollback[:<environment>]``."""
    return action == "rollback" or action.startswith("rollback:")


def register_action(tenant: str, name: str, fn: Callable[[dict[str, Any]], Any]) -> None:
    """Register ``fn`` as the action ``name`` of ``tenant`` in this process.

    Raises:
        InvalidAlertActionError: ``name`` is a built-in or not a valid name, or ``fn`` is
            not callable.

    Example:
        >>> register_action("tenant_123", "notify_team", lambda alert: print(alert["condition"]))
        >>> registered_action("tenant_123", "notify_team") is not None
        True
    """
    validate_action(name)
    if is_builtin(name):
        raise InvalidAlertActionError(
            f"{name!r} is a built-in action; register under another name.",
            value=name,
            allowed="a name that is not log, rollback, rollback:... or webhook:...",
        )
    if not callable(fn):
        raise InvalidAlertActionError(
            f"The action {name!r} must be callable; got {type(fn).__name__}.",
            value=fn,
            allowed="a function taking the alert dict, e.g. lambda alert: ...",
        )
    with _ACTIONS_LOCK:
        _ACTIONS[(tenant, name)] = fn


def registered_action(tenant: str, name: str) -> Callable[[dict[str, Any]], Any] | None:
    """The callable registered as ``name`` for ``tenant`` in this process, or None."""
    with _ACTIONS_LOCK:
        return _ACTIONS.get((tenant, name))


def alert_payload(event: Mapping[str, Any], tenant: str) -> dict[str, Any]:
    """The alert as actions receive it (and as a webhook POSTs it), from its history entry."""
    values = event.get("values") or {}
    shown = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in values.items()
        if k != "feature_scores" and v is not None
    )
    return {
        "alert_id": event["alert_id"],
        "event_id": event.get("event_id"),
        "tenant": tenant,
        "model_id": event["model_id"],
        "condition": event["condition"],
        "severity": event["severity"],
        "state": event["state"],
        "started_at": iso_from_seconds(event.get("started_at")),
        "fired_at": iso_from_seconds(event.get("fired_at")),
        "resolved_at": iso_from_seconds(event.get("resolved_at")),
        "values": values,
        "action": event["action"],
        "message": f"[{event['severity']}] {tenant}/{event['model_id']}: {event['condition']} ({shown})",
    }


def _post_json(url: str, payload: Mapping[str, Any], timeout: float = WEBHOOK_TIMEOUT) -> dict[str, Any]:
    """POST the alert; the ``Idempotency-Key`` header repeats the payload's key (a retry after
    a lost answer carries the same key, so the receiver can drop the repeat)."""
    import urllib.error
    import urllib.request

    body = json.dumps(payload, default=str).encode()
    req = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "mlops-jupyter-alerts",
            **({"Idempotency-Key": str(payload["idempotency_key"])} if payload.get("idempotency_key") else {}),
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
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


def deliver(
    action: str,
    payload: dict[str, Any],
    tenant: str,
    rollback: Rollback | None = None,
    timeout: float = WEBHOOK_TIMEOUT,
) -> Delivery:
    """Run one action once (``rollback`` runs the function given); never raises. Retries and
    the per-attempt time bound are :mod:`.delivery`'s."""
    try:
        if action == "log":
            log.warning("mlops_jupyter alert: %s", payload["message"])
            return Delivery("delivered", {"ok": True, "logged": payload["message"]})
        if action.startswith("webhook:"):
            result = _post_json(action[len("webhook:") :], payload, timeout)
            return Delivery("delivered" if result["ok"] else "failed", result)
        if is_rollback(action):
            if rollback is None:
                return Delivery("failed", {"ok": False, "error": "no deployment API available to roll back"})
            env = action[len("rollback:") :] if ":" in action else None
            return Delivery("delivered", {"ok": True, **rollback(payload["model_id"], env)})
        fn = registered_action(tenant, action)
        if fn is None:
            log.warning(
                "mlops_jupyter alert %s fired for %s/%s (%s) but no action is registered under %r; "
                "recorded as undelivered until register_action(%r, fn) in a process that evaluates it.",
                payload["alert_id"],
                tenant,
                payload["model_id"],
                payload["condition"],
                action,
                action,
            )
            return Delivery(
                "undelivered",
                {
                    "ok": False,
                    "delivered": False,
                    "reason": f"no action registered under {action!r}; register_action({action!r}, fn) delivers it",
                },
            )
        return Delivery("delivered", {"ok": True, "returned": _jsonable(fn(dict(payload)))})
    except Exception as exc:  # an action must never break evaluation
        log.warning("mlops_jupyter alert %s: action %r failed: %s", payload.get("alert_id"), action, exc)
        return Delivery("failed", {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
