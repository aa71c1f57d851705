"""Validation of what is logged, with MLflow's own rules, checked at call time.

The limits mirror ``mlflow.utils.validation`` (a test keeps them equal) so that a bad key or
value is refused where the user typed it, not later inside the background writer.
"""

from __future__ import annotations

import functools
import math
import numbers
import posixpath
import re
from collections.abc import Mapping
from typing import Any

from mlops_jupyter.errors import InvalidMetricError, InvalidNameError, InvalidParamError

MAX_ENTITY_KEY_LENGTH = 250
MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000
MAX_STEP = 2**63 - 1
"""Steps are 64-bit signed integers in MLflow's schema (and its protobuf messages)."""
_FLOAT_INT_LIMIT = 2**1023
KEY_RE = re.compile(r"[/\w.\- :]+")
KEY_RULE = (
    f"1 to {MAX_ENTITY_KEY_LENGTH} characters of letters, digits, '_', '-', '.', ' ', ':', '/', "
    "not starting with '/' and without '..' path parts"
)


def validate_key(key: Any, what: str) -> str:
    """Check a metric, param or tag key with MLflow's rules."""
    if type(key) is str and _key_ok(key):
        return key
    return _validate_key(key, what)


@functools.lru_cache(maxsize=4096)
def _key_ok(key: str) -> bool:
    """Cached check of a key (keys repeat on every logging call)."""
    try:
        _validate_key(key, "")
    except InvalidNameError:
        return False
    return True


def _validate_key(key: Any, what: str) -> str:
    if not isinstance(key, str):
        raise InvalidNameError(f"Invalid {what} key {key!r}: expected a string.", value=key, allowed=KEY_RULE)
    norm = posixpath.normpath(key) if key else ""
    if (
        not key
        or len(key) > MAX_ENTITY_KEY_LENGTH
        or not KEY_RE.fullmatch(key)
        or norm != key
        or norm == "."
        or norm.startswith("..")
        or norm.startswith("/")
    ):
        shown = key if len(key) <= 60 else key[:57] + "..."
        raise InvalidNameError(f"Invalid {what} key {shown!r}.", value=key, allowed=KEY_RULE)
    return key


def metric_value(key: str, value: Any) -> float:
    """Return ``value`` as a float if it is a finite real number (bool, str, NaN, inf refused)."""
    t = type(value)
    if t is float:
        if value - value == 0.0:  # false for NaN and +-inf
            return value
    elif t is int and -_FLOAT_INT_LIMIT < value < _FLOAT_INT_LIMIT:
        return float(value)
    if isinstance(value, bool) or type(value).__name__ == "bool_" or not isinstance(value, numbers.Real):
        raise InvalidMetricError(
            f"Invalid value for metric {key!r}: {value!r} ({type(value).__name__}).",
            value=value,
            allowed="a finite real number (int or float)",
        )
    try:
        f = float(value)
    except OverflowError:  # an int (or Fraction, Decimal) beyond the largest double
        f = math.inf
    if not math.isfinite(f):
        raise InvalidMetricError(
            f"Invalid value for metric {key!r}: {value!r} is not finite.",
            value=value,
            allowed="a finite real number (int or float)",
        )
    return f


def validate_metrics(metrics: Any) -> dict[str, float]:
    """Validate a mapping of metrics; returns ``{key: float}``. Nothing is logged on error."""
    if not isinstance(metrics, Mapping):
        raise InvalidMetricError(
            f"Metrics must be a mapping of name to number, got {type(metrics).__name__}.",
            value=metrics,
            allowed="a dict like {'accuracy': 0.95}",
        )
    return {validate_key(k, "metric"): metric_value(k, v) for k, v in metrics.items()}


def param_value(key: str, value: Any) -> str:
    """Stringify a param value; refuse (never truncate) values over MLflow's length limit."""
    s = value if isinstance(value, str) else str(value)
    if len(s) > MAX_PARAM_VAL_LENGTH:
        raise InvalidParamError(
            f"Param {key!r} is {len(s)} characters long once stringified; MLflow stores at most "
            f"{MAX_PARAM_VAL_LENGTH}. Log long values as an artifact instead.",
            value=s[:80] + "...",
            allowed=f"values whose str() has at most {MAX_PARAM_VAL_LENGTH} characters",
        )
    return s


def validate_params(params: Any) -> dict[str, str]:
    if not isinstance(params, Mapping):
        raise InvalidParamError(
            f"Params must be a mapping of name to value, got {type(params).__name__}.",
            value=params,
            allowed="a dict like {'max_depth': 10}",
        )
    return {validate_key(k, "param"): param_value(k, v) for k, v in params.items()}


def validate_tags(tags: Any) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise InvalidNameError(
            f"Tags must be a mapping of name to value, got {type(tags).__name__}.",
            value=tags,
            allowed="a dict like {'model_type': 'classification'}",
        )
    out = {}
    for k, v in tags.items():
        validate_key(k, "tag")
        s = str(v)
        if len(s) > MAX_TAG_VAL_LENGTH:
            raise InvalidNameError(
                f"Tag {k!r} is {len(s)} characters long; at most {MAX_TAG_VAL_LENGTH} are stored.",
                value=s[:80] + "...",
                allowed=f"at most {MAX_TAG_VAL_LENGTH} characters",
            )
        out[k] = s
    return out


def validate_step(step: Any) -> int:
    """A metric step: a non-negative int that fits MLflow's 64-bit step column (None: 0)."""
    if step is None:
        return 0
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or not 0 <= step <= MAX_STEP:
        raise InvalidMetricError(
            f"Invalid step {step!r}.", value=step, allowed=f"an int from 0 to {MAX_STEP} (MLflow's 64-bit steps)"
        )
    return int(step)
