"""Traffic rules: how percentages change on deploy, undeploy and rollback, and routing.

A traffic table maps version -> integer percentage. Every table that is stored or routed
adds up to exactly 100; versions at 0 % are removed (and unloaded).

The rules (also in :meth:`ModelDeployment.deploy_model`'s docstring):

- **Deploy** ``v`` at ``p`` %: ``v`` gets ``p``; the other versions share the remaining
  ``100 - p`` in proportion to their current shares (largest-remainder rounding, so
  the result stays integral and sums to 100). With no other version, ``v`` gets 100
  whatever ``p`` is (there is nothing to split with). ``p = 100`` replaces everything.
- **Undeploy** one version: the others scale up proportionally to 100.
- **Set traffic**: the table given must add up to 100.
- **Rollback**: the target gets 100. The default target is the previously live version:
  the top version (largest share; the earlier deployed on a tie) of the most recent
  earlier table that differs from the current one, skipping tables whose top is the
  version now alone at 100 %.

Routing: a request with a key (``X-Request-Key``) goes to the version whose cumulative
range holds a stable hash of the key (BLAKE2b, so the same key keeps its version across
gateway restarts while the split is unchanged); others are routed at random by weight.

Example:
    >>> add_version({"1.0.0": 100}, "1.1.0", 50)
    {'1.0.0': 50, '1.1.0': 50}
    >>> add_version({"1.0.0": 50, "1.1.0": 50}, "1.2.0", 20)
    {'1.0.0': 40, '1.1.0': 40, '1.2.0': 20}
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Mapping, Sequence
from typing import Any

from mlops_jupyter.config.names import validate_version
from mlops_jupyter.errors import ValidationError

HISTORY_LIMIT = 50


def check_percentage(p: Any, what: str = "traffic_percentage", low: int = 1) -> int:
    """``p`` if it is an int in ``low..100`` (bools and floats with a fraction are refused).

    Example:
        >>> check_percentage(50), check_percentage(50.0)
        (50, 50)
        >>> check_percentage(True)
        Traceback (most recent call last):
        ...
        mlops_jupyter.errors.ValidationError: Invalid traffic_percentage True. Allowed: an integer from 1 to 100.
    """
    if isinstance(p, bool) or not isinstance(p, (int, float)) or (isinstance(p, float) and not p.is_integer()):
        raise ValidationError(f"Invalid {what} {p!r}.", value=p, allowed=f"an integer from {low} to 100")
    p = int(p)
    if not low <= p <= 100:
        raise ValidationError(f"Invalid {what} {p!r}: out of range.", value=p, allowed=f"an integer from {low} to 100")
    return p


def check_table(traffic: Any) -> dict[str, int]:
    """A validated traffic table: version -> int 0..100 adding up to 100, zeros dropped.

    Raises:
        ValidationError: not a mapping, a bad percentage, or a sum other than 100.

    Example:
        >>> check_table({"1.0.0": 70, "1.1.0": 30, "0.9.0": 0})
        {'1.0.0': 70, '1.1.0': 30}
    """
    if not isinstance(traffic, Mapping) or not traffic:
        raise ValidationError(
            f"Invalid traffic {traffic!r}.",
            value=traffic,
            allowed="a dict of version -> percentage adding up to 100, e.g. {'1.0.0': 90, '1.1.0': 10}",
        )
    out: dict[str, int] = {}
    for v, p in traffic.items():
        validate_version(v)
        out[v] = check_percentage(p, f"percentage for version {v!r}", low=0)
    total = sum(out.values())
    if total != 100:
        raise ValidationError(
            f"Traffic percentages add up to {total}, not 100: {out}.",
            value=out,
            allowed="percentages adding up to exactly 100",
        )
    return {v: p for v, p in out.items() if p > 0}


def scale(shares: Mapping[str, int], total: int) -> dict[str, int]:
    """Scale ``shares`` proportionally to integers adding up to ``total`` (largest remainder).

    Ties in the remainder go to the version listed first. Versions that round to 0 are
    dropped.

    Example:
        >>> scale({"a": 50, "b": 50}, 75)
        {'a': 38, 'b': 37}
    """
    if total <= 0 or not shares:
        return {}
    s = sum(shares.values())
    if s <= 0:
        return {}
    exact = [(v, p * total / s) for v, p in shares.items()]
    base = {v: int(x) for v, x in exact}
    left = total - sum(base.values())
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i][1] - int(exact[i][1])), i))
    for i in order[:left]:
        base[exact[i][0]] += 1
    return {v: p for v, p in base.items() if p > 0}


def add_version(current: Mapping[str, int], version: str, percentage: int) -> dict[str, int]:
    """The table after deploying ``version`` at ``percentage`` (see the module rules).

    Example:
        >>> add_version({}, "1.0.0", 50)
        {'1.0.0': 100}
        >>> add_version({"1.0.0": 100}, "1.1.0", 10)
        {'1.0.0': 90, '1.1.0': 10}
    """
    others = {v: p for v, p in current.items() if v != version}
    if not others or percentage >= 100:
        return {version: 100}
    out = scale(others, 100 - percentage)
    # keep the deploy order: versions already there keep their place, a new one goes last
    result = {v: (percentage if v == version else out[v]) for v in current if v == version or v in out}
    result.setdefault(version, percentage)
    return result


def remove_version(current: Mapping[str, int], version: str) -> dict[str, int]:
    """The table after undeploying ``version``: the others scale up to 100 (may be empty).

    Example:
        >>> remove_version({"1.0.0": 60, "1.1.0": 30, "1.2.0": 10}, "1.0.0")
        {'1.1.0': 75, '1.2.0': 25}
        >>> remove_version({"1.0.0": 100}, "1.0.0")
        {}
    """
    return scale({v: p for v, p in current.items() if v != version}, 100)


def top_version(traffic: Mapping[str, int]) -> str | None:
    """The version with the largest share; the earlier listed one on a tie.

    Example:
        >>> top_version({"1.0.0": 50, "1.1.0": 50}), top_version({"1.0.0": 10, "1.1.0": 90}), top_version({})
        ('1.0.0', '1.1.0', None)
    """
    best, best_p = None, -1
    for v, p in traffic.items():
        if p > best_p:
            best, best_p = v, p
    return best


def rollback_target(current: Mapping[str, int], history: Sequence[Mapping[str, int]]) -> str | None:
    """The previously live version (see the module rules), or None if there is none.

    Example:
        >>> rollback_target({"1.0.0": 50, "1.1.0": 50}, [{"1.0.0": 100}])
        '1.0.0'
        >>> rollback_target({"1.1.0": 100}, [{"1.0.0": 100}])
        '1.0.0'
    """
    cur = dict(current)
    alone = next(iter(cur)) if len(cur) == 1 else None
    for table in reversed(list(history)):
        if dict(table) == cur or not table:
            continue
        cand = top_version(table)
        if cand is not None and cand != alone:
            return cand
    return None


def push_history(
    history: Sequence[Mapping[str, int]], previous: Mapping[str, int], new: Mapping[str, int]
) -> list[dict[str, int]]:
    """History after a change from ``previous`` to ``new`` (unchanged if they are equal).

    Example:
        >>> push_history([{"1.0.0": 100}], {"1.0.0": 50, "1.1.0": 50}, {"1.1.0": 100})
        [{'1.0.0': 100}, {'1.0.0': 50, '1.1.0': 50}]
        >>> push_history([], {"1.0.0": 100}, {"1.0.0": 100})
        []
    """
    out = [dict(t) for t in history]
    if previous and dict(previous) != dict(new):
        out.append(dict(previous))
    return out[-HISTORY_LIMIT:]


def key_point(key: bytes) -> float:
    """A stable point in [0, 100) for a request key (the same across processes and restarts).

    Example:
        >>> 0 <= key_point(b"user-42") < 100, key_point(b"user-42") == key_point(b"user-42")
        (True, True)
    """
    h = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")
    return (h % 1_000_000) / 10_000.0


class Router:
    """Picks a version for each request from a traffic table (immutable once built).

    Example:
        >>> r = Router({"1.0.0": 90, "1.1.0": 10})
        >>> r.pick(b"user-42") == r.pick(b"user-42")
        True
    """

    __slots__ = ("_rand", "_single", "cum", "versions")

    def __init__(self, traffic: Mapping[str, int]) -> None:
        self.versions = list(traffic)
        acc, cum = 0, []
        for v in self.versions:
            acc += traffic[v]
            cum.append(acc)
        self.cum = cum
        self._rand = random.Random()
        self._single = self.versions[0] if len(self.versions) == 1 else None

    def pick(self, key: bytes | None = None) -> str:
        if self._single is not None:
            return self._single
        point = key_point(key) if key else self._rand.random() * 100.0
        i = bisect.bisect_right(self.cum, point)
        return self.versions[min(i, len(self.versions) - 1)]
