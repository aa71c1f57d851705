"""Windows: which of a model's logged predictions a monitoring read covers.

Every read takes a ``window``: ``None`` for the last :data:`DEFAULT_WINDOW` (1 000)
predictions, an int ``N`` for the last ``N``, or a span such as ``"30m"``, ``"1h"`` or
``"2d"`` for the predictions of the last 30 minutes (1 hour, 2 days) before now (the
monitoring object's clock). A "prediction" is one predicted input row.

Example:
    >>> parse_window("1h"), parse_window(500).size
    (Window(kind='span', size=None, seconds=3600.0, spec='1h'), 500)
    >>> describe_window(parse_window(None))
    'the last 1000 predictions'
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from mlops_jupyter.config.times import iso_from_datetime, iso_from_seconds
from mlops_jupyter.errors import InvalidWindowError
from mlops_jupyter.monitoring.predlog import ALL_FEATURES, FEATURE_PREFIX

DEFAULT_WINDOW = 1000
"""Predictions in the default window (the last 1 000)."""
READ_COLUMNS = ("version", "environment", "latency_s", "success", ALL_FEATURES)
"""What a drift check reads (besides ``timestamp``)."""
PERF_COLUMNS = ("version", "environment", "latency_s", "success")
"""What a performance read needs."""
WINDOW_ALLOWED = (
    "None (the last 1000 predictions), an int N >= 1 (the last N), or a span such as '30s', "
    "'30m', '1h', '2d' (the predictions of that long before now)"
)


_SPAN_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class Window(NamedTuple):
    """A parsed window: the last ``size`` predictions, or those of the last ``seconds``."""

    kind: str  # "last" or "span"
    size: int | None
    seconds: float | None
    spec: Any


def parse_window(window: Any) -> Window:
    """Parse a ``window`` argument.

    Args:
        window: None (the last :data:`DEFAULT_WINDOW` predictions), an int ``N >= 1``, or a
            span ``"<number><s|m|h|d>"`` such as ``"30m"`` or ``"1h"``.

    Returns:
        A :class:`Window`.

    Raises:
        InvalidWindowError: anything else.

    Example:
        >>> parse_window(None), parse_window("250").size
        (Window(kind='last', size=1000, seconds=None, spec=None), 250)
    """
    if window is None:
        return Window("last", DEFAULT_WINDOW, None, None)
    if isinstance(window, numbers.Integral) and not isinstance(window, bool):
        if window < 1:
            raise InvalidWindowError(
                f"Invalid window {window!r}: it must hold at least one prediction.",
                value=window,
                allowed=WINDOW_ALLOWED,
            )
        return Window("last", int(window), None, int(window))
    if isinstance(window, str):
        text = window.strip()
        if text.isdigit():
            return parse_window(int(text))
        m = _SPAN_RE.fullmatch(text)
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)] if m else -1.0
        if 0 < seconds < float("inf"):  # no 366-day cap: that limit is the alert grammar's
            return Window("span", None, seconds, window)
    raise InvalidWindowError(f"Invalid window {window!r}.", value=window, allowed=WINDOW_ALLOWED)


def describe_window(win: Window) -> str:
    """The window in words, for messages."""
    return f"the last {win.size} predictions" if win.kind == "last" else f"the last {win.spec}"


def to_seconds(value: Any, what: str = "now") -> float:
    """Unix seconds of a point in time: a number, a datetime, a pandas Timestamp or ISO text.

    Raises:
        ValidationError: not a point in time (the message names ``what``).
    """
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    from mlops_jupyter.monitoring.predlog import _to_us

    us = _to_us(value, what)
    assert us is not None
    return us / 1e6


def read_window(
    predlog: Any,
    tenant: str,
    model_id: str,
    win: Window,
    version: str | None,
    now: float,
    columns: Sequence[str] = READ_COLUMNS,
) -> Any:
    """The window's predictions of one model (of one version) as a DataFrame, oldest first."""
    if win.kind == "last":
        table = predlog.read_table(tenant, model_id, last_n=win.size, version=version, columns=columns)
    else:
        assert win.seconds is not None
        table = predlog.read_table(
            tenant, model_id, since=now - win.seconds, until=now, version=version, columns=columns
        )
    return table.to_pandas()


def window_info(win: Window, df: Any, now: float) -> dict[str, Any]:
    """The result's ``window``: its type, size or span, and its start and end (ISO, UTC).

    A span runs from ``now - seconds`` to ``now``; the last N run from the first to the last
    prediction read (None when there is none).
    """
    if win.kind == "span":
        return {
            "type": "span",
            "span": win.spec,
            "seconds": win.seconds,
            "start": iso_from_seconds(now - (win.seconds or 0)),
            "end": iso_from_seconds(now),
        }
    first = last = None
    if len(df):
        first = iso_from_datetime(df["timestamp"].iloc[0])
        last = iso_from_datetime(df["timestamp"].iloc[-1])
    return {"type": "last", "size": win.size, "start": first, "end": last}


def feature_frame(df: Any) -> Any:
    """The ``feature.*`` columns of a log frame, under their plain names."""
    cols = [c for c in df.columns if c.startswith(FEATURE_PREFIX)]
    return df[cols].rename(columns={c: c[len(FEATURE_PREFIX) :] for c in cols})


def drop_featureless(features: Any, success: Any) -> Any:
    """Rows of failed requests that carry no feature at all are not part of the comparison."""
    import numpy as np

    if features.shape[1] == 0 or bool(np.all(success)):
        return features
    keep = features.notna().any(axis=1).to_numpy() | success
    return features[keep]
