"""Bearer tokens: one per tenant, one for the control plane, stored 0600 under the home.

Files (the folder is 0700, each file 0600, created with ``O_EXCL`` so two processes never
mint two tokens for the same tenant)::

    {home}/secrets/admin.token
    {home}/secrets/tenant-{tenant}.token

Tokens are never logged; the deploy result shows only :func:`token_hint`. The gateway
keeps sha256 digests of the tokens, not the tokens, and looks requests up by digest.

Example:
    >>> token = tenant_token("/tmp/store", "acme")
    >>> token_hint(token)
    'Xy3k...'
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import stat
from pathlib import Path

from mlops_jupyter.config import settings
from mlops_jupyter.config.names import validate_tenant
from mlops_jupyter.errors import StoreError

log = logging.getLogger(__name__)

ADMIN = "__admin__"  # not a valid tenant slug, so it can never collide with one
_PREFIX = "tenant-"
_SUFFIX = ".token"


def secrets_dir(home: str | os.PathLike[str]) -> Path:
    d = settings.secrets_dir(home)
    if not d.is_dir():
        d.mkdir(parents=True, exist_ok=True)
    if stat.S_IMODE(d.stat().st_mode) != 0o700:
        os.chmod(d, 0o700)
    return d


def _read_or_create(path: Path) -> str:
    for _ in range(50):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            token = _read(path)
            if token:
                return token
            import time

            time.sleep(0.01)  # another process is writing it right now
            continue
        token = secrets.token_urlsafe(32)
        try:
            os.write(fd, token.encode())
        finally:
            os.close(fd)
        return token
    raise StoreError(f"Token file {path} exists but stays empty; delete it to mint a new token.")


def _read(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("mlops_jupyter: token file %s had mode %o; set to 0600", path, mode)
        os.chmod(path, 0o600)
    return path.read_text().strip()


def tenant_token(home: str | os.PathLike[str], tenant: str) -> str:
    """The tenant's bearer token, created on first use.

    Example:
        >>> tenant_token(home, "acme") == tenant_token(home, "acme")
        True
    """
    validate_tenant(tenant)
    return _read_or_create(secrets_dir(home) / f"{_PREFIX}{tenant}{_SUFFIX}")


def admin_token(home: str | os.PathLike[str]) -> str:
    """The control plane's bearer token (deploy, traffic, rollback), created on first use."""
    return _read_or_create(secrets_dir(home) / f"admin{_SUFFIX}")


def digest(token: str | bytes) -> bytes:
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).digest()


def load_digests(home: str | os.PathLike[str]) -> dict[bytes, str]:
    """``{sha256(token): tenant}`` for every token file, the admin's as :data:`ADMIN`."""
    out: dict[bytes, str] = {}
    d = settings.secrets_dir(home)
    if not d.is_dir():
        return out
    for f in d.iterdir():
        name = f.name
        if name == f"admin{_SUFFIX}":
            who = ADMIN
        elif name.startswith(_PREFIX) and name.endswith(_SUFFIX):
            who = name[len(_PREFIX) : -len(_SUFFIX)]
        else:
            continue
        try:
            token = _read(f)
        except OSError:
            continue
        if token:
            out[digest(token)] = who
    return out


def token_hint(token: str) -> str:
    """The first 4 characters and an ellipsis: enough to tell tokens apart, not to use one."""
    return token[:4] + "..."
