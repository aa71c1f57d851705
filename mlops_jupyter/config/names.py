"""Names: the one validator of each kind of name (tenant, model id, experiment, environment,
version label), and tenancy, through which every name and query goes.

A tenant is a short slug. Objects in MLflow are namespaced and tagged with it:

- experiments are named ``{tenant}/{name}`` and tagged ``mlops.tenant``;
- runs are tagged ``mlops.tenant``;
- registered models are named ``{tenant}.{model_id}`` and tagged ``mlops.tenant``.

The separators ``/`` and ``.`` cannot occur in a tenant slug, so two tenants' names never
collide, and every read checks both the name prefix and the tag.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mlops_jupyter.errors import InvalidNameError, InvalidTenantError, InvalidVersionError, TenantAccessError

TENANT_TAG = "mlops.tenant"
SLUG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""A slug: 1 to 64 letters, digits, ``_`` and ``-``, starting with a letter or digit."""
TENANT_RE = ENVIRONMENT_RE = SLUG_RE
MODEL_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
MAX_EXPERIMENT_NAME = 200


def validate_tenant(tenant: Any) -> str:
    """Return ``tenant`` if it is a valid slug.

    Raises:
        InvalidTenantError: for anything but 1 to 64 letters, digits, ``_`` and ``-``
            starting with a letter or digit (so ``../x``, ``a/b``, ``""`` are refused).
    """
    if not isinstance(tenant, str):
        raise InvalidTenantError(tenant, f"expected a string, got {type(tenant).__name__}")
    if tenant == "":
        raise InvalidTenantError(tenant, "it is empty")
    if len(tenant) > 64:
        raise InvalidTenantError(tenant, f"it is {len(tenant)} characters long (at most 64)")
    if not TENANT_RE.fullmatch(tenant):
        bad = sorted({c for c in tenant if not (c.isascii() and (c.isalnum() or c in "_-"))})
        why = f"it contains {''.join(bad)!r}" if bad else "it must start with a letter or digit"
        raise InvalidTenantError(tenant, why)
    return tenant


def validate_model_id(model_id: Any) -> str:
    """Return ``model_id`` if valid: 1 to 128 of letters, digits, ``_ . -``, no path parts."""
    if not isinstance(model_id, str) or not MODEL_ID_RE.fullmatch(model_id) or ".." in model_id:
        raise InvalidNameError(
            f"Invalid model id {model_id!r}.",
            value=model_id,
            allowed="1 to 128 letters, digits, '_', '.', '-', starting with a letter or digit, "
            "no '..' (e.g. 'ticket_classifier')",
        )
    return model_id


def validate_environment(environment: Any) -> str:
    """Return ``environment`` if it is a slug: 1 to 64 letters, digits, ``_`` and ``-``.

    Raises:
        InvalidNameError: anything else (``prod!``, ``a/b``, ``""``).

    Example:
        >>> validate_environment("staging")
        'staging'
    """
    if not isinstance(environment, str) or not ENVIRONMENT_RE.fullmatch(environment):
        raise InvalidNameError(
            f"Invalid environment {environment!r}.",
            value=environment,
            allowed="1 to 64 letters, digits, '_' and '-', starting with a letter or digit "
            "(e.g. 'production', 'staging')",
        )
    return environment


def validate_version(version: Any) -> str:
    """Return ``version`` if it is a version label: the registry's ``MAJOR.MINOR.PATCH`` or a
    label a caller gives predictions made elsewhere (``'unversioned'``, ``'2024-06'``);
    1 to 64 letters, digits, ``. _ + -``. Registry versions are checked more strictly by
    :func:`mlops_jupyter.registry.semver.parse_semver`.

    Raises:
        InvalidVersionError: anything else (``""``, ``"../1"``, a number).

    Example:
        >>> validate_version("1.2.0")
        '1.2.0'
    """
    if type(version) is str and version in _VALID_VERSIONS:  # the hot path: track_prediction per call
        return version
    if not isinstance(version, str) or not VERSION_RE.fullmatch(version) or ".." in version:
        raise InvalidVersionError(
            f"Invalid version {version!r}.",
            value=version,
            allowed="1 to 64 letters, digits, '.', '_', '+', '-' starting with a letter or digit, e.g. '1.0.0'",
        )
    if len(_VALID_VERSIONS) >= 4096:
        _VALID_VERSIONS.clear()
    _VALID_VERSIONS.add(version)
    return version


_VALID_VERSIONS: set[str] = set()


def validate_experiment_name(name: Any) -> str:
    """Return ``name`` if it is a usable experiment name (no ``/``, no control characters)."""
    ok = (
        isinstance(name, str)
        and 0 < len(name) <= MAX_EXPERIMENT_NAME
        and name == name.strip()
        and "/" not in name
        and name.isprintable()
    )
    if not ok:
        raise InvalidNameError(
            f"Invalid experiment name {name!r}.",
            value=name,
            allowed=f"1 to {MAX_EXPERIMENT_NAME} printable characters without '/' or leading/trailing spaces",
        )
    return name


class Tenancy:
    """Maps a tenant's plain names to namespaced MLflow names and checks ownership."""

    def __init__(self, tenant: str) -> None:
        self.tenant = validate_tenant(tenant)
        self.experiment_prefix = f"{self.tenant}/"
        self.model_prefix = f"{self.tenant}."

    # -- experiments -----------------------------------------------------------------
    def experiment_name(self, name: str) -> str:
        return self.experiment_prefix + validate_experiment_name(name)

    def plain_experiment_name(self, full: str) -> str:
        return full[len(self.experiment_prefix) :] if self.owns_experiment_name(full) else full

    def owns_experiment_name(self, full: str) -> bool:
        return full.startswith(self.experiment_prefix)

    def owns_experiment(self, experiment: Any) -> bool:
        tags = getattr(experiment, "tags", None) or {}
        return self.owns_experiment_name(experiment.name) and tags.get(TENANT_TAG) == self.tenant

    # -- runs ------------------------------------------------------------------------
    def owns_tags(self, tags: Mapping[str, str] | None) -> bool:
        return (tags or {}).get(TENANT_TAG) == self.tenant

    def check_run(self, run: Any) -> None:
        """Raise TenantAccessError unless ``run`` (an MLflow Run) belongs to this tenant."""
        if not self.owns_tags(run.data.tags):
            raise TenantAccessError(
                f"Run {run.info.run_id!r} does not belong to tenant {self.tenant!r}.",
                value=run.info.run_id,
            )

    # -- registered models -----------------------------------------------------------
    def model_name(self, model_id: str) -> str:
        return self.model_prefix + validate_model_id(model_id)

    def plain_model_id(self, full: str) -> str:
        return full[len(self.model_prefix) :]

    def owns_model(self, registered_model: Any) -> bool:
        tags = getattr(registered_model, "tags", None) or {}
        return registered_model.name.startswith(self.model_prefix) and tags.get(TENANT_TAG) == self.tenant

    def tags(self, extra: Mapping[str, Any] | None = None) -> dict[str, str]:
        out = {str(k): str(v) for k, v in (extra or {}).items()}
        out[TENANT_TAG] = self.tenant
        return out
