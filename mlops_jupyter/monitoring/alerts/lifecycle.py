"""When an alert rule fires: Prometheus' pending/firing states, as one pure function.

A rule is ``inactive``, ``pending`` or ``firing``. Each evaluation tells :func:`step` whether
the rule's condition holds now, and it answers the next state and the transitions taken:

* ``inactive`` -> the condition holds -> ``pending`` (transition ``"pending"``; the
  evaluator opens a history entry, ``started_at``);
* ``pending`` -> the condition has held for at least ``for_`` **and** at least ``cooldown``
  has passed since the rule last fired -> ``firing`` (``"fire"``; ``fired_at``): the action
  runs, once;
* ``pending`` -> the condition stops holding before that -> ``inactive`` (``"cancel"``; the
  entry is dropped: an alert that never fired leaves no trace, as in Prometheus);
* ``firing`` -> the condition stops holding -> ``inactive`` (``"resolve"``; the entry is
  ``resolved``, ``resolved_at``).

So ``for_="0s"`` fires on the first evaluation that sees the condition (``pending`` and
``fire`` in one step); a firing alert does not repeat its action while the condition keeps
holding; and after it resolves it cannot fire again until ``cooldown`` has passed since it
last fired (a flapping condition notifies once per cooldown). A metric that cannot be
computed is *unknown* and never makes a condition hold.

The times the machine needs are kept in the rule's ``extra``: ``pending_since`` and
``last_fired_at`` (unix seconds).

Example:
    >>> rule = {"state": "inactive", "for_s": 0.0, "cooldown_s": 300.0, "extra": {}}
    >>> step(rule, True, 1000.0)
    Step(state='firing', transitions=['pending', 'fire'], extra={'pending_since': 1000.0, 'last_fired_at': 1000.0})
    >>> fired = {**rule, "state": "firing", "extra": step(rule, True, 1000.0).extra}
    >>> step(fired, False, 1060.0)
    Step(state='inactive', transitions=['resolve'], extra={'last_fired_at': 1000.0})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["Step", "step"]


class Step(NamedTuple):
    """What one evaluation did to a rule."""

    state: str
    """The rule's next state: ``inactive``, ``pending`` or ``firing``."""
    transitions: list[str]
    """The transitions taken, in order: ``pending``, ``fire``, ``cancel``, ``resolve``."""
    extra: dict[str, Any]
    """The rule's new ``extra`` (``pending_since``, ``last_fired_at``)."""


def step(rule: Mapping[str, Any], holds: bool, now: float) -> Step:
    """One evaluation of a rule (its ``state``, ``for_s``, ``cooldown_s`` and ``extra``).

    Args:
        rule: the stored rule; it is not changed.
        holds: whether its condition is definitely true now.
        now: the evaluation time (unix seconds).

    Returns:
        A :class:`Step`; see the module docstring for the rules.

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
    return Step(state, transitions, extra)
