"""An alert history entry's action delivery as one readable line.

The DriftPanel (alert history table) and the JupyterLab sidebar (through the server
extension's ``alerts`` answer) both show this line, so a delivery reads the same in both:
``rolled back churn production to 1.0.0 (1 attempt)``, ``log delivered (1 attempt)``,
``webhook:http://… failed (5 attempts): HTTP 503 Service Unavailable``,
``pager retrying: attempt 1 failed: timed out after 10 s``.

Example:
    >>> delivery_text({"action": "log", "delivery": "delivered", "action_result": {"attempts": [{"n": 1, "ok": True}]}})
    'log delivered (1 attempt)'
    >>> delivery_text({"action": "rollback", "model_id": "churn", "delivery": "delivered",
    ...     "action_result": {"environment": "production", "version": "1.0.0", "attempts": [{"n": 1, "ok": True}]}})
    'rolled back churn production to 1.0.0 (1 attempt)'
    >>> delivery_text({"action": "log", "delivery": None})
    ''
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["delivery_text"]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _attempts(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    tried = result.get("attempts")
    return [a for a in tried if isinstance(a, Mapping)] if isinstance(tried, list) else []


def _why(attempt: Mapping[str, Any] | None, result: Mapping[str, Any]) -> str:
    """``": <error>"`` of a failed attempt (or the result's reason), else ``""``."""
    if attempt is not None and attempt.get("ok"):
        return ""
    src = attempt if attempt is not None else result
    why = src.get("error") or src.get("reason") or result.get("error") or result.get("reason")
    return f": {why}" if why else ""


def _delivered(action: str, model: str, result: Mapping[str, Any]) -> tuple[str, list[str]]:
    """What a delivered action did, and details for the parentheses."""
    if action == "rollback" or action.startswith("rollback:"):
        env = result.get("environment") or action.partition(":")[2] or "its environment"
        if result.get("skipped"):
            return f"rollback of {model} {env} skipped: {result['skipped']}", []
        version = result.get("version")
        return f"rolled back {model} {env}" + (f" to {version}" if version else ""), []
    status = result.get("status")
    return f"{action} delivered", [f"HTTP {status}"] if status else []


def delivery_text(alert: Mapping[str, Any]) -> str:
    """How ``alert``'s action was delivered (an entry of ``ModelMonitoring.alerts()``);
    ``""`` when the entry records no delivery (it never fired an action)."""
    delivery = alert.get("delivery")
    if not isinstance(delivery, str) or not delivery:
        return ""
    result = alert.get("action_result") if isinstance(alert.get("action_result"), Mapping) else {}
    action = str(alert.get("action") or "action")
    attempts = _attempts(result)
    last = attempts[-1] if attempts else None
    if delivery == "retrying" and last is not None:
        return f"{action} retrying: attempt {last.get('n', len(attempts))} failed{_why(last, result)}"
    if delivery == "delivered":
        what, details = _delivered(action, str(alert.get("model_id") or "the model"), result)
    else:
        what, details = f"{action} {delivery}", []
    if attempts:
        details.append(_plural(len(attempts), "attempt"))
    text = what + (f" ({', '.join(details)})" if details else "")
    return text + (_why(last, result) if delivery in ("failed", "undelivered") else "")
