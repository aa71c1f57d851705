"""Semantic versions of registered models: parse, bump, compare. Every comparison of two
versions in the package goes through here (the registry's order, rollback targets, "do not
roll forward" checks), so they all agree.

Versions are ``MAJOR.MINOR.PATCH`` without leading zeros (``1.0.0``, ``1.10.2``); they order
numerically, not as text.

Example:
    >>> parse_semver("1.10.2")
    (1, 10, 2)
    >>> bump_version("1.2.3", "minor"), bump_version(None, "minor")
    ('1.3.0', '1.0.0')
    >>> compare("1.10.0", "1.9.0")
    1
    >>> sorted(["1.10.0", "1.9.0", "1.0.0"], key=semver_key)
    ['1.0.0', '1.9.0', '1.10.0']
    >>> is_semver("1.0"), is_semver("1.0.0")
    (False, True)
"""

from __future__ import annotations

import re
from typing import Any

from mlops_jupyter.errors import InvalidVersionError, ValidationError

SEMVER_RE = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")
BUMPS = ("major", "minor", "patch")
FIRST = "1.0.0"


def is_semver(v: Any) -> bool:
    """Whether ``v`` is a ``MAJOR.MINOR.PATCH`` string."""
    return isinstance(v, str) and SEMVER_RE.fullmatch(v) is not None


def parse_semver(v: Any) -> tuple[int, int, int]:
    """``(major, minor, patch)`` of ``v``.

    Raises:
        InvalidVersionError: ``v`` is not ``MAJOR.MINOR.PATCH``.
    """
    m = SEMVER_RE.fullmatch(v) if isinstance(v, str) else None
    if m is None:
        raise InvalidVersionError(f"Invalid version {v!r}.", value=v, allowed="MAJOR.MINOR.PATCH, e.g. '1.2.0'")
    return int(m[1]), int(m[2]), int(m[3])


def bump_version(current: str | None, bump: str) -> str:
    """The version after ``current`` by a ``major``, ``minor`` or ``patch`` bump (``1.0.0``
    for the first one).

    Raises:
        ValidationError: an unknown bump.
        InvalidVersionError: ``current`` is not a semantic version.
    """
    if bump not in BUMPS:
        raise ValidationError(f"Invalid bump {bump!r}.", value=bump, allowed=BUMPS)
    if current is None:
        return FIRST
    a, b, c = parse_semver(current)
    return {"major": f"{a + 1}.0.0", "minor": f"{a}.{b + 1}.0", "patch": f"{a}.{b}.{c + 1}"}[bump]


def semver_key(v: str) -> tuple[int, int, int, str]:
    """A sort key: semantic versions numerically, other labels after them by text."""
    if is_semver(v):
        return (*parse_semver(v), "")
    return (1 << 30, 0, 0, str(v))


def compare(a: str, b: str) -> int:
    """``-1``, ``0`` or ``1`` as ``a`` is older than, equal to or newer than ``b`` (by
    :func:`semver_key`)."""
    ka, kb = semver_key(a), semver_key(b)
    return (ka > kb) - (ka < kb)
