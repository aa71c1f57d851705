"""Time helpers: one way to write a moment (ISO 8601, UTC, milliseconds, ``Z``) and to read
epoch seconds or milliseconds, so every part prints times alike.

Example:
    >>> iso_from_seconds(1705314600.25)
    '2024-01-15T10:30:00.250Z'
    >>> iso_from_ms(1705314600250)
    '2024-01-15T10:30:00.250Z'
    >>> iso_from_seconds(None) is None
    True
"""

from __future__ import annotations

import time
from datetime import datetime, timezone


def iso_from_seconds(ts: float | None) -> str | None:
    """``ts`` (seconds since the epoch) as ``YYYY-MM-DDTHH:MM:SS.mmmZ``; None stays None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_from_ms(ms: int | None) -> str | None:
    """``ms`` (milliseconds since the epoch, MLflow's unit) as :func:`iso_from_seconds` writes it."""
    return None if ms is None else iso_from_seconds(ms / 1000)


def iso_from_datetime(dt: datetime) -> str:
    """A timezone-aware (or UTC-naive) datetime or pandas Timestamp in the same form."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_ms() -> int:
    """The current time in milliseconds since the epoch (MLflow's timestamps)."""
    return int(time.time() * 1000)
