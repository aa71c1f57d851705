"""Monitoring limits: settings with defaults, each overridable by an environment variable.

Read when used (not at import), so a test or a notebook can set ``MLOPS_*`` and see it at
once. A value that is not a number in range raises
:class:`~mlops_jupyter.errors.InvalidSettingError` naming the variable, instead of silently
falling back: a limit someone set on purpose should not be ignored.

=============================== ============ =====================================================
variable                        default      meaning
=============================== ============ =====================================================
``MLOPS_DRIFT_MIN_ROWS``        100          fewer current rows give ``status: "low_sample"``
``MLOPS_DRIFT_ALPHA``           0.05         false-discovery rate of the drift decision
``MLOPS_PREDLOG_MAX_AGE_DAYS``  400          compaction drops older predictions (0: keep all)
``MLOPS_PREDLOG_MAX_ROWS``      20 000 000   compaction keeps at most this many per model (0: all)
``MLOPS_ALERT_ACTION_TIMEOUT``  10           seconds per alert action attempt
``MLOPS_ALERT_ACTION_ATTEMPTS`` 5            attempts per alert action (backoff 1 s, 2 s, 4 s, ...)
``MLOPS_PREDLOG_DURABLE``       1            tracked predictions survive kill -9 (0: faster, buffered)
=============================== ============ =====================================================
"""

from __future__ import annotations

import math
import os

from mlops_jupyter.config import env
from mlops_jupyter.errors import InvalidSettingError

DRIFT_MIN_ROWS = 100
"""Why 100: with fewer rows a 0.5-sd shift of a feature is found in well under 90 % of
checks (benchmarks/drift_quality.py), so a verdict would mostly say "could not tell"."""
DRIFT_ALPHA = 0.05
PREDLOG_MAX_AGE_DAYS = 400.0
PREDLOG_MAX_ROWS = 20_000_000
ALERT_ACTION_TIMEOUT = 10.0
ALERT_ACTION_ATTEMPTS = 5


def _number(name: str, default: float, low: float, high: float, integer: bool) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not low <= value <= high or (integer and value != int(value)):
        kind = "an integer" if integer else "a number"
        raise InvalidSettingError(
            f"Invalid {name}={raw!r}.", value=raw, allowed=f"{kind} from {low:g} to {high:g} (default {default:g})"
        )
    return value


def drift_min_rows() -> int:
    """Fewest current rows a drift check decides on (``$MLOPS_DRIFT_MIN_ROWS``, default 100)."""
    return int(_number(env.MLOPS_DRIFT_MIN_ROWS, DRIFT_MIN_ROWS, 1, 1e12, True))


def drift_alpha() -> float:
    """The drift decision's false-discovery rate (``$MLOPS_DRIFT_ALPHA``, default 0.05)."""
    return _number(env.MLOPS_DRIFT_ALPHA, DRIFT_ALPHA, 1e-12, 0.5, False)


def predlog_max_age_s() -> float | None:
    """Seconds a prediction is kept (``$MLOPS_PREDLOG_MAX_AGE_DAYS`` x 86 400), None: forever."""
    days = _number(env.MLOPS_PREDLOG_MAX_AGE_DAYS, PREDLOG_MAX_AGE_DAYS, 0, 1e6, False)
    return days * 86400.0 if days > 0 else None


def predlog_max_rows() -> int | None:
    """Most predictions kept per model (``$MLOPS_PREDLOG_MAX_ROWS``), None: no limit."""
    rows = int(_number(env.MLOPS_PREDLOG_MAX_ROWS, PREDLOG_MAX_ROWS, 0, 1e15, True))
    return rows or None


def alert_action_timeout() -> float:
    """Seconds one alert action attempt may take (``$MLOPS_ALERT_ACTION_TIMEOUT``, default 10)."""
    return _number(env.MLOPS_ALERT_ACTION_TIMEOUT, ALERT_ACTION_TIMEOUT, 0.001, 3600, False)


def alert_action_attempts() -> int:
    """Attempts per alert action (``$MLOPS_ALERT_ACTION_ATTEMPTS``, default 5)."""
    return int(_number(env.MLOPS_ALERT_ACTION_ATTEMPTS, ALERT_ACTION_ATTEMPTS, 1, 100, True))


def predlog_durable() -> bool:
    """Whether a process' tracked predictions go through the write-ahead log
    (``$MLOPS_PREDLOG_DURABLE``, default 1): they survive kill -9, at one ``write(2)`` a call."""
    return bool(_number(env.MLOPS_PREDLOG_DURABLE, 1, 0, 1, True))
