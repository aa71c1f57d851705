"""Alert durations (``cooldown``, ``for_``) and monitoring time spans (``window="1h"``).

A duration is ``"<number><unit>"`` with unit ``s``, ``m``, ``h`` or ``d`` (``"30s"``,
``"5m"``, ``"1.5h"``, ``"2d"``; ``"0s"`` for none), or a number of seconds, at most
:data:`MAX_DURATION` (366 days). Compound forms (``"1h30m"``), upper-case units and
exponents are refused with :class:`~mlops_jupyter.errors.InvalidDurationError`, whose message
lists what is allowed.

Example:
    >>> parse_duration("5m"), parse_duration(" 10 m "), parse_duration(2.5)
    (300.0, 600.0, 2.5)
"""

from __future__ import annotations

import math
import re

from mlops_jupyter.errors import InvalidDurationError

__all__ = ["MAX_DURATION", "parse_duration"]

_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION = 366 * 86400
_DURATION_ALLOWED = (
    "a number of seconds >= 0, or a number and a unit: s, m, h or d (e.g. '30s', "
    "'5m', '1.5h', '2d'; '0s' for none), at most 366 days"
)


def parse_duration(value: str | int | float) -> float:
    """Seconds in an alert duration (``cooldown``, ``for_``).

    Args:
        value: ``"<number><unit>"`` with unit ``s``, ``m``, ``h`` or ``d`` (``"30s"``,
            ``"5m"``, ``"1.5h"``, ``"2d"``, ``"0s"``), or a number of seconds.

    Returns:
        The duration in seconds, as a float.

    Raises:
        InvalidDurationError: anything else, a negative or non-finite number, or more than
            366 days.

    Example:
        >>> parse_duration("1.5h"), parse_duration("0s"), parse_duration(90)
        (5400.0, 0.0, 90.0)
    """
    if isinstance(value, str):
        m = _DURATION_RE.fullmatch(value)
        if m is None:
            raise InvalidDurationError(f"Invalid duration {value!r}.", value=value, allowed=_DURATION_ALLOWED)
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds < 0:
            raise InvalidDurationError(f"Invalid duration {value!r}.", value=value, allowed=_DURATION_ALLOWED)
    else:
        raise InvalidDurationError(
            f"Invalid duration {value!r} of type {type(value).__name__}.", value=value, allowed=_DURATION_ALLOWED
        )
    if seconds > MAX_DURATION:
        raise InvalidDurationError(
            f"Duration {value!r} is longer than 366 days.", value=value, allowed=_DURATION_ALLOWED
        )
    return seconds
