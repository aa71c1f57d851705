"""A tenant's alert rules: stored, evaluated on a model's metrics, fired, delivered.

A rule is a condition in the safe grammar of :mod:`~mlops_jupyter.monitoring.alerts.grammar`
(``drift_score > 0.1``, ``success_rate < 0.95 and avg_latency > 0.2``), an action
(:mod:`~mlops_jupyter.monitoring.alerts.actions`), a ``for_`` duration, a ``cooldown`` and a
severity, stored in the embedded store with its state. Each evaluation takes the model's
metrics from one drift check (computed once for all of the model's rules; the drift only
when a rule reads it), steps every rule through the pending/firing state machine of
:mod:`~mlops_jupyter.monitoring.alerts.lifecycle`, keeps the history (an entry opened when a
rule turns pending, dropped if it clears before firing, resolved when a firing rule clears)
and runs the action when a rule fires.

Who evaluates: ``evaluate_alerts`` and the gateway
(:class:`~mlops_jupyter.monitoring.alerts.scheduler.AlertScheduler`); ``check_drift`` only
reads. A fired rule's action is delivered off the evaluating thread, with a timeout,
retries and at-least-once hand-over (:mod:`.delivery`). State changes
are compare-and-set on the rule's revision in the store, so when a kernel and the gateway
evaluate one rule at the same moment, one of them fires it and runs the action.

These functions take the store and the tenant from
:class:`~mlops_jupyter.monitoring.facade.ModelMonitoring`, which documents the public
methods built on them; nothing here imports the facade.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from mlops_jupyter.config.times import iso_from_seconds
from mlops_jupyter.errors import AlertNotFoundError, TenantAccessError, ValidationError
from mlops_jupyter.monitoring.alerts import actions, delivery
from mlops_jupyter.monitoring.alerts.durations import parse_duration
from mlops_jupyter.monitoring.alerts.grammar import Condition, parse_condition
from mlops_jupyter.monitoring.alerts.lifecycle import step

Check = Callable[[str, bool], Mapping[str, Any]]
"""``(model_id, need_drift) -> the drift check's result`` over the default window."""
Deployment = Callable[[], Any]
"""Returns the deployment API (built only when a ``rollback`` action runs)."""


class Metrics(NamedTuple):
    """What conditions read from a drift check's result."""

    values: dict[str, Any]
    """Metric name -> value (None when it could not be computed)."""
    feature_scores: dict[str, Any]
    """Feature name -> drift score."""


@functools.lru_cache(maxsize=1024)
def condition(text: str) -> Condition:
    """The parsed condition of a stored rule (parsed once per process)."""
    return parse_condition(text)


def metrics(result: Mapping[str, Any]) -> Metrics:
    """The values a condition reads, from a drift check's result."""
    perf = result["performance_metrics"]
    values = {
        "drift_score": result["drift_score"],
        "success_rate": perf["success_rate"],
        "error_rate": perf["error_rate"],
        "avg_latency": perf["avg_latency"],
        "p95_latency": perf["p95_latency"],
        "prediction_count": perf["prediction_count"],
    }
    # feature_score('x') reads the bias-corrected effect, the number the drift decision uses
    scores = {str(k): e["effect"] for k, e in (result.get("features") or {}).items()}
    return Metrics(values, scores)


def needs_drift(rules: list[Mapping[str, Any]]) -> bool:
    """Whether any of the rules reads ``drift_score`` or a ``feature_score``."""
    conditions = [condition(r["condition"]) for r in rules]
    return any("drift_score" in c.names or c.features for c in conditions)


def new_alert_id() -> str:
    return "alert_" + secrets.token_hex(6)


# --------------------------------------------------------------------------- rules and history


def public_rule(rule: Mapping[str, Any], tenant: str) -> dict[str, Any]:
    """A stored rule as ``set_alert`` and ``list_alert_rules`` return it."""
    extra = rule.get("extra") or {}
    action = rule["action"]
    return {
        "alert_id": rule["alert_id"],
        "model_id": rule["model_id"],
        "condition": rule["condition"],
        "action": action,
        "cooldown_s": rule["cooldown_s"],
        "for_s": rule["for_s"],
        "severity": rule["severity"],
        "state": rule["state"],
        "pending_since": iso_from_seconds(extra.get("pending_since")) if rule["state"] == "pending" else None,
        "last_fired_at": iso_from_seconds(extra.get("last_fired_at")),
        "action_registered": (
            True if actions.is_builtin(action) else actions.registered_action(tenant, action) is not None
        ),
        "created_at": iso_from_seconds(rule.get("created_at")),
        "updated_at": iso_from_seconds(rule.get("updated_at")),
    }


def public_event(e: Mapping[str, Any]) -> dict[str, Any]:
    """A stored history entry as ``alerts`` returns it."""
    return {
        "event_id": e["event_id"],
        "alert_id": e["alert_id"],
        "model_id": e["model_id"],
        "condition": e["condition"],
        "severity": e["severity"],
        "state": e["state"],
        "started_at": iso_from_seconds(e.get("started_at")),
        "fired_at": iso_from_seconds(e.get("fired_at")),
        "resolved_at": iso_from_seconds(e.get("resolved_at")),
        "values": e.get("values") or {},
        "action": e["action"],
        "action_result": e.get("action_result"),
        "delivery": e.get("delivery"),
        "delivered": e.get("delivery") == "delivered",
    }


def set_rule(
    store: Any, tenant: str, model_id: str, condition_text: Any, action: Any, cooldown: Any, for_: Any, severity: Any
) -> dict[str, Any]:
    """Add a rule, or update the one with the same canonical condition and action."""
    canonical = str(parse_condition(condition_text))
    action = actions.validate_action(action)
    cooldown_s = parse_duration(cooldown)
    for_s = parse_duration(for_)
    severity = actions.validate_severity(severity)
    now = time.time()
    for rule in store.list_alert_rules(tenant, model_id):
        if rule["condition"] == canonical and rule["action"] == action:
            store.update_alert_rule(
                rule["alert_id"], {"cooldown_s": cooldown_s, "for_s": for_s, "severity": severity, "updated_at": now}
            )
            return public_rule(store.list_alert_rules(alert_id=rule["alert_id"])[0], tenant)
    rule = {
        "alert_id": new_alert_id(),
        "tenant": tenant,
        "model_id": model_id,
        "condition": canonical,
        "action": action,
        "cooldown_s": cooldown_s,
        "for_s": for_s,
        "severity": severity,
        "state": "inactive",
        "revision": 0,
        "created_at": now,
        "updated_at": now,
        "extra": {},
    }
    store.put_alert_rule(rule)
    return public_rule(rule, tenant)


def list_rules(store: Any, tenant: str, model_id: str | None = None) -> list[dict[str, Any]]:
    """The tenant's rules (of one model), oldest first, as :func:`public_rule` shows them."""
    return [public_rule(r, tenant) for r in store.list_alert_rules(tenant, model_id)]


def owned_rule(store: Any, tenant: str, alert_id: Any) -> dict[str, Any]:
    """The stored rule ``alert_id`` of ``tenant``.

    Raises:
        ValidationError: ``alert_id`` is not a string.
        AlertNotFoundError: no such rule (the message lists the tenant's).
        TenantAccessError: the rule belongs to another tenant.
    """
    if not isinstance(alert_id, str):
        raise ValidationError(
            f"Invalid alert_id {alert_id!r}.", value=alert_id, allowed="an id such as 'alert_5f0c1a2b3c4d'"
        )
    rules = store.list_alert_rules(alert_id=alert_id)
    if not rules:
        mine = [r["alert_id"] for r in store.list_alert_rules(tenant)]
        raise AlertNotFoundError(
            f"No alert rule {alert_id!r} for tenant {tenant!r}.",
            value=alert_id,
            allowed=mine or "(no alert rules yet: use set_alert)",
        )
    if rules[0]["tenant"] != tenant:
        raise TenantAccessError(
            f"Alert rule {alert_id!r} belongs to another tenant; tenant {tenant!r} cannot read or change it.",
            value=alert_id,
        )
    return rules[0]


def delete_rule(store: Any, tenant: str, alert_id: Any) -> dict[str, Any]:
    """Delete one of the tenant's rules (its history stays)."""
    rule = owned_rule(store, tenant, alert_id)
    return {"alert_id": rule["alert_id"], "deleted": store.delete_alert_rule(rule["alert_id"])}


def history(store: Any, tenant: str, model_id: str | None, limit: Any) -> list[dict[str, Any]]:
    """The tenant's alert history (of one model), newest first, at most ``limit`` entries."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValidationError(f"Invalid limit {limit!r}.", value=limit, allowed="an int >= 1 or None")
    return [public_event(e) for e in store.list_alert_events(tenant, model_id, limit=limit)]


def register(store: Any, tenant: str, name: str, fn: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """Register an action callable, then deliver the alerts held for it."""
    actions.register_action(tenant, name, fn)
    return {"action": name, "delivered": deliver_held(store, tenant, name)}


# --------------------------------------------------------------------------- evaluation


def evaluate(
    store: Any, tenant: str, model_id: str | None, now: float, *, check: Check, deployment: Deployment
) -> list[dict[str, Any]]:
    """Evaluate the tenant's rules (of one model, or of every model with rules) at ``now``.

    Each model's metrics come from one ``check(model_id, need_drift)``; then the alerts held
    for actions registered in this process are delivered.

    Returns:
        The rules whose state changed (see :func:`apply_rules`).
    """
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in store.list_alert_rules(tenant, model_id):
        by_model.setdefault(r["model_id"], []).append(r)
    changes: list[dict[str, Any]] = []
    for m, rules in by_model.items():
        result = check(m, needs_drift(rules))
        changes += apply_rules(store, tenant, m, rules, result, now, deployment=deployment)
    deliver_held(store, tenant)
    delivery.resume_stale(
        store, tenant, time.time(), rollback=lambda m, env: rollback(deployment(), tenant, m, env, None)
    )
    return changes


def apply_rules(
    store: Any,
    tenant: str,
    model_id: str,
    rules: list[dict[str, Any]],
    result: Mapping[str, Any],
    now: float,
    *,
    deployment: Deployment,
) -> list[dict[str, Any]]:
    """Step each rule of one model on the check's ``result``; record and act on what changed.

    Returns:
        One dict per rule whose state changed: ``alert_id``, ``model_id``, ``condition``,
        ``transitions``, ``state``, ``event_id`` and, when it fired, ``delivery`` and
        ``action_result``. A rule that another process stepped first is left to it.
    """
    values, scores = metrics(result)
    seen = result.get("environment")  # where the model served last: what ``rollback`` rolls back
    changes = []
    for rule in rules:
        cond = condition(rule["condition"])
        state, transitions, extra = step(rule, cond.evaluate(values, scores), now)
        if not transitions and state == rule["state"]:
            continue
        shown = dict(values)
        if cond.features:
            shown["feature_scores"] = {f: scores.get(f) for f in sorted(cond.features)}
        old_event = (rule.get("extra") or {}).get("event_id")
        new_event = None
        if "pending" in transitions:
            new_event = store.add_alert_event(
                {
                    "alert_id": rule["alert_id"],
                    "tenant": tenant,
                    "model_id": model_id,
                    "condition": rule["condition"],
                    "severity": rule["severity"],
                    "action": rule["action"],
                    "state": "pending",
                    "started_at": now,
                    "values": shown,
                }
            )
            extra["event_id"] = new_event
        if "cancel" in transitions or "resolve" in transitions:
            extra.pop("event_id", None)
        if not store.update_alert_rule(
            rule["alert_id"], {"state": state, "extra": extra, "updated_at": now}, revision=rule["revision"]
        ):
            if new_event is not None:  # another process stepped this rule first
                store.delete_alert_event(new_event)
            continue
        event_id = new_event if new_event is not None else old_event
        change: dict[str, Any] = {
            "alert_id": rule["alert_id"],
            "model_id": model_id,
            "condition": rule["condition"],
            "transitions": transitions,
            "state": state,
            "event_id": event_id,
        }
        if "cancel" in transitions and old_event is not None:
            store.delete_alert_event(old_event)
        if "resolve" in transitions and old_event is not None:
            store.update_alert_event(old_event, {"state": "resolved", "resolved_at": now})
        if "fire" in transitions and event_id is not None:
            store.update_alert_event(event_id, {"state": "firing", "fired_at": now, "values": shown})
            event = store.list_alert_events(tenant, alert_id=rule["alert_id"], limit=1)[0]
            queued = delivery.dispatch(
                store,
                tenant,
                event,
                rollback=lambda m, env: rollback(deployment(), tenant, m, env, seen),
            )
            change.update(delivery="queued", action_result=queued)
        changes.append(change)
    return changes


def deliver_held(store: Any, tenant: str, name: str | None = None) -> int:
    """Queue the undelivered alerts whose action now has a callable in this process (each is
    delivered on its own thread, :mod:`.delivery`); returns how many were queued."""
    delivered = 0
    for e in store.list_alert_events(tenant, delivery="undelivered"):
        if name is not None and e["action"] != name:
            continue
        if actions.registered_action(tenant, e["action"]) is None:
            continue
        if not store.update_alert_event(e["event_id"], {"delivery": "queued"}, expect={"delivery": "undelivered"}):
            continue  # another process is delivering it
        delivery.dispatch(store, tenant, e, held_since=iso_from_seconds(e.get("fired_at")))
        delivered += 1
    return delivered


def rollback(dep: Any, tenant: str, model_id: str, environment: str | None, seen: str | None) -> dict[str, Any]:
    """The ``rollback`` action: roll the model's deployment back to its previous version.

    Args:
        dep: the deployment API of the tenant.
        environment: from ``rollback:<environment>``; None: ``seen`` (where the latest
            prediction was served) if deployed there, else the only environment, else
            ``production``.

    Raises:
        ValidationError: the environment cannot be told.
    """
    if environment is None:
        deployed = [d["environment"] for d in dep.list_deployments() if d["model_id"] == model_id]
        if seen and seen in deployed:
            environment = seen
        elif len(deployed) == 1:
            environment = deployed[0]
        elif "production" in deployed:
            environment = "production"
        else:
            raise ValidationError(
                f"Model {model_id!r} is deployed in {deployed or 'no environment'}; cannot tell "
                "which one to roll back.",
                value=deployed,
                allowed="an action 'rollback:<environment>'",
            )
    from mlops_jupyter.deployment.traffic import top_version
    from mlops_jupyter.registry.semver import compare, is_semver

    # whatever target the deployment runs on: the deployment API changes it there
    now = dep.get_deployment(model_id, environment)  # raises NotFoundError naming what is deployed
    before = dict(now["traffic"])
    live, target = top_version(before), now["rollback_to"]
    if live and target and is_semver(live) and is_semver(target) and compare(target, live) > 0:
        # an alert firing again after an earlier rollback must not roll forward
        return {
            "environment": environment,
            "from": before,
            "to": before,
            "version": live,
            "skipped": f"the previous version {target} is newer than the live {live}; not rolling forward",
        }
    after = dep.rollback(model_id, environment, to_version=target)
    return {"environment": environment, "from": before, "to": after["traffic"], "version": after["version"]}
