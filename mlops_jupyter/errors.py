"""Errors raised by mlops_jupyter.

Every error derives from :class:`MLOpsError`. Each subclass keeps the bad value
(``.value``) and what is allowed (``.allowed``) and builds a message that names both,
so a user sees what went wrong and what to type instead. Programs read the fields, never
the text: ``.reason`` is a machine-readable code (``"invalid_version"``, by default the
class name in snake case without ``_error``) and ``.detail`` the message without the
"Allowed: ..." part.

Example:
    >>> try:
    ...     raise InvalidVersionError("Invalid version '1.x'.", value="1.x", allowed="MAJOR.MINOR.PATCH")
    ... except MLOpsError as exc:
    ...     print(exc.reason, "|", exc.detail, "|", exc)
    invalid_version | Invalid version '1.x'. | Invalid version '1.x'. Allowed: MAJOR.MINOR.PATCH.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any


def _fmt_allowed(allowed: Any) -> str:
    if allowed is None:
        return ""
    if isinstance(allowed, str):
        return allowed
    items = list(allowed)
    if not items:
        return "(none)"
    return ", ".join(repr(i) if not isinstance(i, str) else f"'{i}'" for i in items)


class MLOpsError(Exception):
    """Base class of every error raised by mlops_jupyter.

    Args:
        message: what went wrong.
        value: the bad value, kept for programs that handle the error.
        allowed: what would have been accepted (a description or a list).
        reason: a machine-readable code; default: from the class name
            (``InvalidVersionError`` -> ``"invalid_version"``).
    """

    def __init__(self, message: str, *, value: Any = None, allowed: Any = None, reason: str | None = None) -> None:
        self.value = value
        self.allowed = allowed
        self.detail = message
        self.reason = reason or _code(type(self))
        if allowed is not None:
            message = f"{message} Allowed: {_fmt_allowed(allowed)}."
        super().__init__(message)


def _code(cls: type) -> str:
    name = cls.__name__.removesuffix("Error") or "mlops"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class ValidationError(MLOpsError, ValueError):
    """An argument has a bad value."""


class InvalidTenantError(ValidationError):
    """A tenant id is not a valid slug."""

    def __init__(self, tenant: Any, reason: str) -> None:
        shown = tenant if not isinstance(tenant, str) or len(tenant) <= 60 else tenant[:57] + "..."
        super().__init__(
            f"Invalid tenant id {shown!r}: {reason}.",
            value=tenant,
            allowed="1 to 64 characters of letters, digits, '_' and '-', starting with a "
            "letter or digit (e.g. 'tenant_123')",
        )


class InvalidNameError(ValidationError):
    """A model id, experiment name, metric/param/tag key or similar is malformed."""


class InvalidMetricError(ValidationError):
    """A metric key or value is not acceptable (values must be finite real numbers)."""


class InvalidParamError(ValidationError):
    """A parameter is too long or conflicts with a value already logged in the run."""


class InvalidSettingError(ValidationError):
    """A setting (tracking URI, storage path, ...) is not usable."""


class InvalidVersionError(ValidationError):
    """A version string is not semantic (MAJOR.MINOR.PATCH) or already exists."""


class TenantAccessError(MLOpsError, PermissionError):
    """An object belongs to another tenant."""


class NotFoundError(MLOpsError, LookupError):
    """A named object does not exist (for this tenant)."""


class ModelNotFoundError(NotFoundError):
    """No registered model of that id for this tenant."""


class VersionNotFoundError(NotFoundError):
    """No such version of a model."""


class RunNotFoundError(NotFoundError):
    """No such run for this tenant."""


class RunStateError(MLOpsError, RuntimeError):
    """An operation needs an active run (or a finished one) and the state is otherwise."""


class IntegrityError(MLOpsError):
    """A stored model artifact does not match the sha256 recorded when it was versioned."""


class StoreError(MLOpsError, RuntimeError):
    """The tracking store failed to persist or read data."""


class ServerUnreachableError(StoreError):
    """The tracking server could not be reached (down, wrong address, no answer) within the
    bounds set by ``MLOPS_SERVER_CONNECT_TIMEOUT`` / ``MLOPS_SERVER_TIMEOUT`` /
    ``MLOPS_SERVER_RETRIES``; ``.value`` is its URI."""


class FeatureNotAvailableError(MLOpsError, NotImplementedError):
    """A part of the API that a later feature delivers is called before that feature exists."""

    def __init__(self, method: str, feature: str) -> None:
        super().__init__(f"{method}() is part of the {feature} feature, which is not built yet; nothing was done.")


def one_of(value: Any, allowed: Iterable[str], what: str) -> str:
    """Return ``value`` if it is in ``allowed``, else raise ValidationError naming both."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValidationError(f"Invalid {what} {value!r}.", value=value, allowed=allowed)
    return value


class DeploymentError(MLOpsError, RuntimeError):
    """A deployment could not be changed (the gateway refused it or is unreachable)."""


class GatewayError(DeploymentError):
    """The serving gateway could not be started, reached or stopped."""


class EmptyWindowError(ValidationError):
    """A drift comparison has nothing to compare: a window has no rows, or no feature has
    values in both the reference and the current window.

    ``.window`` names the side: ``'reference'``, ``'current'`` or ``'both'``.
    """

    def __init__(self, message: str, *, window: str, value: Any = None) -> None:
        self.window = window
        super().__init__(
            message,
            value=value,
            allowed="a reference and a current window with at least one row and at least "
            "one shared feature with non-missing values on both sides",
        )


class AlertRuleError(ValidationError):
    """An alert condition does not follow the condition grammar.

    ``.problem`` says what is wrong in words, ``.position`` is the 0-based character offset
    of the offending character (``None`` when the problem is not at one place, e.g. a
    non-string condition), ``.text`` the condition; the message repeats the condition with
    a caret under that character and lists what is allowed.
    """

    def __init__(
        self,
        reason: str,
        *,
        text: Any,
        position: int | None,
        allowed: str,
        snippet: str | None = None,
        caret_column: int = 0,
    ) -> None:
        self.position = position
        self.text = text
        self.problem = reason
        where = f" at position {position}" if position is not None else ""
        message = f"Invalid alert condition: {reason}{where}."
        if snippet is not None:
            message += f"\n    {snippet}\n    {' ' * caret_column}^"
        message += f"\nAllowed: {allowed}."
        super().__init__(message, value=text)
        self.allowed = allowed
        self.detail = f"Invalid alert condition: {reason}{where}."


class InvalidDurationError(ValidationError):
    """A duration (alert cooldown, ``for_``) is not a number of seconds or ``<n><unit>``."""


class InvalidWindowError(ValidationError):
    """A monitoring window is neither a number of predictions nor a time span."""


class InvalidAlertActionError(ValidationError):
    """An alert action is not a built-in (``log``, ``rollback``, ``webhook:<url>``) nor a
    valid action name, or what is registered under a name is not callable."""


class AlertNotFoundError(NotFoundError):
    """No alert rule with that id for this tenant."""
