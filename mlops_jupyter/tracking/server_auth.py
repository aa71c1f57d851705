"""Tenants enforced by the MLflow server: MLflow's own auth app, users and permissions.

Two isolation modes, reported by :func:`isolation_mode` (and by ``%mlops status``):

- ``server``: the tracking URI is an ``mlflow server --app-name basic-auth`` (default
  permission ``NO_PERMISSIONS``). Every request carries the user's own credentials, from
  MLflow's ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``; the server lets a
  user see and change only the experiments, runs and registered models granted to them,
  whatever client they use (ours, a plain ``MlflowClient``, curl). This is a security
  boundary.
- ``namespace``: any other store (the embedded sqlite DB, PostgreSQL directly, a server
  without the auth app). Tenants are name prefixes and tags that our library filters on;
  anyone reaching the store with another client reads every tenant. Not a security boundary.

How a tenant maps to MLflow users (``server`` mode):

- MLflow makes the user who creates an experiment or registered model its ``MANAGE``r.
  Our library then grants ``MANAGE`` on it to the tenant's other members, listed in
  ``MLOPS_TENANT_USERS`` (comma-separated MLflow usernames), with the creator's own
  credentials: notebooks never hold admin credentials.
- An administrator adds users to a tenant with :func:`provision_tenant`: it creates the
  MLflow users that do not exist yet and grants them ``MANAGE`` on every experiment and
  registered model the tenant already has. It needs the auth app's admin credentials,
  passed as arguments or read from ``MLOPS_AUTH_ADMIN_USERNAME`` /
  ``MLOPS_AUTH_ADMIN_PASSWORD`` (read only by this function).

Every call goes to MLflow's auth REST API (``/api/2.0/mlflow/users/...``,
``/api/3.0/mlflow/users/permissions/grant``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from mlops_jupyter.config.names import TENANT_TAG, Tenancy
from mlops_jupyter.config.settings import server_bounds
from mlops_jupyter.errors import InvalidSettingError, StoreError, TenantAccessError, ValidationError

SERVER, NAMESPACE, UNKNOWN = "server", "namespace", "unknown"
USERNAME_ENV, PASSWORD_ENV = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"
TENANT_USERS_ENV = "MLOPS_TENANT_USERS"
ADMIN_USERNAME_ENV, ADMIN_PASSWORD_ENV = "MLOPS_AUTH_ADMIN_USERNAME", "MLOPS_AUTH_ADMIN_PASSWORD"
MEMBER_PERMISSION = "MANAGE"

CURRENT_USER = "/api/2.0/mlflow/users/current"
CREATE_USER = "/api/2.0/mlflow/users/create"
GET_USER = "/api/2.0/mlflow/users/get"
GRANT = "/api/3.0/mlflow/users/permissions/grant"


class Isolation(NamedTuple):
    """Which tenant isolation is in force for a tracking URI."""

    mode: str  # SERVER, NAMESPACE or UNKNOWN (server unreachable)
    user: str | None  # the MLflow user the requests are made as (server mode)
    detail: str

    def describe(self) -> str:
        """One line for ``%mlops status``."""
        if self.mode == SERVER:
            return f"enforced by the MLflow server (basic-auth, as user {self.user!r})"
        if self.mode == UNKNOWN:
            return f"unknown ({self.detail})"
        return f"namespace only, not a security boundary ({self.detail})"


class Credentials(NamedTuple):
    username: str
    password: str


_MODES: dict[tuple[str, Credentials | None], Isolation] = {}
_SHARED: set[tuple[str, str, str]] = set()
_LOCK = threading.Lock()


def _is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def user_credentials() -> Credentials | None:
    """The user's own MLflow credentials (MLflow's environment variables), if set."""
    user, pw = os.environ.get(USERNAME_ENV), os.environ.get(PASSWORD_ENV)
    return Credentials(user, pw or "") if user else None


def _call(uri: str, creds: Credentials | None, method: str, path: str, **kwargs: Any) -> Any:
    """One request to the auth API, bounded by ``MLOPS_SERVER_CONNECT_TIMEOUT`` (to connect)
    and ``MLOPS_SERVER_TIMEOUT`` (to answer)."""
    import requests

    bounds = server_bounds()
    return requests.request(
        method,
        uri.rstrip("/") + path,
        auth=tuple(creds) if creds else None,
        timeout=(bounds.connect_timeout, bounds.timeout),
        **kwargs,
    )


def isolation_mode(tracking_uri: str) -> Isolation:
    """Which isolation is in force for ``tracking_uri`` (asked once per URI and credentials).

    A server answering MLflow's "current user" route of the auth app enforces tenants; a
    server without it (404), or any non-HTTP store, gives a namespace only.

    Example:
        >>> isolation_mode("sqlite:////tmp/store/mlflow.db").mode
        'namespace'
    """
    creds = user_credentials()
    key = (tracking_uri, creds)
    with _LOCK:
        if key in _MODES:
            return _MODES[key]
    if not _is_http(tracking_uri):
        iso = Isolation(NAMESPACE, None, "the store is reached directly, with no server to check permissions")
    else:
        try:
            resp = _call(tracking_uri, creds, "GET", CURRENT_USER)
        except OSError as exc:  # not cached: asked again once the server answers
            return Isolation(UNKNOWN, None, f"the MLflow server {tracking_uri} did not answer: {exc}")
        if resp.status_code == 200 and resp.json().get("is_basic_auth", True):
            iso = Isolation(SERVER, resp.json().get("user", {}).get("username"), "MLflow basic-auth")
        elif resp.status_code == 401:
            raise credentials_refused(tracking_uri)
        else:
            iso = Isolation(NAMESPACE, None, "the MLflow server runs without its auth app")
    with _LOCK:
        _MODES[key] = iso
    return iso


def credentials_refused(tracking_uri: str) -> InvalidSettingError:
    """The error for a server answering 401: it does not accept the user's credentials."""
    return InvalidSettingError(
        f"The MLflow server {tracking_uri} enforces authentication and refused the credentials "
        f"({USERNAME_ENV}={os.environ.get(USERNAME_ENV)!r}).",
        value=os.environ.get(USERNAME_ENV),
        allowed=f"an MLflow user of the server in {USERNAME_ENV} and its password in {PASSWORD_ENV}",
    )


@contextlib.contextmanager
def refused_as_tenant_error(what: str, tracking_uri: str = "") -> Iterator[None]:
    """Turn the server's 403 (its auth app refusing this user) into :class:`TenantAccessError`,
    and its 401 (credentials not accepted) into :class:`InvalidSettingError`.

    Example:
        >>> with refused_as_tenant_error("experiment 'acme/churn'"):
        ...     pass
    """
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        if exc.get_http_status_code() == 401:
            raise credentials_refused(tracking_uri or "tracking server") from exc
        if exc.get_http_status_code() != 403:
            raise
        user = os.environ.get(USERNAME_ENV)
        raise TenantAccessError(
            f"The MLflow server refused {what} to user {user!r}: it belongs to a tenant this user is not a member of.",
            value=what,
            allowed=f"the tenants whose members include {user!r} (see provision_tenant)",
        ) from exc


def tenant_members() -> list[str]:
    """The tenant's MLflow usernames (``MLOPS_TENANT_USERS``, comma-separated)."""
    return [u.strip() for u in os.environ.get(TENANT_USERS_ENV, "").split(",") if u.strip()]


def share(tracking_uri: str, resource_type: str, resource_id: str) -> list[str]:
    """Grant the tenant's other members ``MANAGE`` on an experiment or registered model the
    current user owns (server mode only; once per process and resource). Returns who got it.

    Raises:
        StoreError: the server refused a grant (the resource stays private to its creator).
    """
    iso = isolation_mode(tracking_uri)
    if iso.mode != SERVER:
        return []
    key = (tracking_uri, resource_type, str(resource_id))
    with _LOCK:
        if key in _SHARED:
            return []
    members = [u for u in tenant_members() if u != iso.user]
    _grant(tracking_uri, user_credentials(), members, resource_type, str(resource_id))
    with _LOCK:
        _SHARED.add(key)
    return members


def _grant(uri: str, creds: Credentials | None, users: Iterable[str], resource_type: str, resource_id: str) -> None:
    for user in users:
        resp = _call(
            uri,
            creds,
            "POST",
            GRANT,
            json={
                "username": user,
                "resource_type": resource_type,
                "resource_id": resource_id,
                "permission": MEMBER_PERMISSION,
            },
        )
        if resp.status_code != 200:
            raise StoreError(
                f"The MLflow server refused to grant {user!r} {MEMBER_PERMISSION} on {resource_type} "
                f"{resource_id!r}: HTTP {resp.status_code} {resp.text[:200]}"
            )


def _admin(admin: Credentials | tuple[str, str] | None) -> Credentials:
    if admin is not None:
        return Credentials(*admin)
    user, pw = os.environ.get(ADMIN_USERNAME_ENV), os.environ.get(ADMIN_PASSWORD_ENV)
    if not user or not pw:
        raise InvalidSettingError(
            "provision_tenant() needs the MLflow auth app's admin credentials.",
            value=None,
            allowed=f"admin=(username, password), or {ADMIN_USERNAME_ENV} and {ADMIN_PASSWORD_ENV}",
        )
    return Credentials(user, pw)


def provision_tenant(
    tracking_uri: str,
    tenant: str,
    users: Mapping[str, str | None],
    admin: Credentials | tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Make MLflow users members of ``tenant`` on a basic-auth server (an admin's task).

    Creates each user that does not exist yet (its password is required then; ``None``
    for an existing user) and grants every user ``MANAGE`` on each experiment and
    registered model the tenant has now. Later ones are shared as they are created (see
    the module docstring: members list each other in ``MLOPS_TENANT_USERS``).

    Returns:
        ``{"tenant", "created": [usernames], "experiments": n, "registered_models": n}``.

    Raises:
        InvalidSettingError: no admin credentials, or the server has no auth app.
        ValidationError: a new user without a password.
        StoreError: the server refused a call.
    """
    tenancy = Tenancy(tenant)
    creds = _admin(admin)
    probe = _call(tracking_uri, creds, "GET", CURRENT_USER)
    if probe.status_code != 200 or not probe.json().get("user", {}).get("is_admin"):
        raise InvalidSettingError(
            f"{tracking_uri} did not accept {creds.username!r} as the auth app's admin (HTTP {probe.status_code}).",
            value=creds.username,
            allowed="the admin_username / admin_password of the server's auth config",
        )
    created = []
    for user, password in users.items():
        if _call(tracking_uri, creds, "GET", GET_USER, params={"username": user}).status_code == 200:
            continue
        if not password:
            raise ValidationError(f"User {user!r} does not exist: a password is needed to create it.", value=user)
        resp = _call(tracking_uri, creds, "POST", CREATE_USER, json={"username": user, "password": password})
        if resp.status_code != 200:
            raise StoreError(f"Could not create MLflow user {user!r}: HTTP {resp.status_code} {resp.text[:200]}")
        created.append(user)
    exps = _tenant_resources(tracking_uri, creds, tenancy, "experiments")
    models = _tenant_resources(tracking_uri, creds, tenancy, "registered_models")
    for exp in exps:
        _grant(tracking_uri, creds, users, "experiment", exp)
    for name in models:
        _grant(tracking_uri, creds, users, "registered_model", name)
    return {"tenant": tenancy.tenant, "created": created, "experiments": len(exps), "registered_models": len(models)}


def _tenant_resources(uri: str, creds: Credentials, tenancy: Tenancy, kind: str) -> list[str]:
    """Ids of the tenant's experiments, or names of its registered models (as the admin)."""
    if kind == "experiments":
        path, flt, key, ident = (
            "/api/2.0/mlflow/experiments/search",
            f"name LIKE '{tenancy.experiment_prefix}%'",
            "experiments",
            "experiment_id",
        )
    else:
        path, flt, key, ident = (
            "/api/2.0/mlflow/registered-models/search",
            f"name LIKE '{tenancy.model_prefix}%'",
            "registered_models",
            "name",
        )
    out, token = [], None
    while True:
        body: dict[str, Any] = {"filter": flt, "max_results": 1000}
        if token:
            body["page_token"] = token
        resp = _call(uri, creds, "GET" if kind != "experiments" else "POST", path, **_payload(kind, body))
        if resp.status_code != 200:
            raise StoreError(f"Could not list the tenant's {kind}: HTTP {resp.status_code} {resp.text[:200]}")
        data = resp.json()
        for item in data.get(key, []):
            tags = {t["key"]: t["value"] for t in item.get("tags", [])}
            if tags.get(TENANT_TAG) == tenancy.tenant:
                out.append(item[ident])
        token = data.get("next_page_token")
        if not token:
            return out


def _payload(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """Experiments search is a POST with a JSON body; registered-models search a GET."""
    return {"json": body} if kind == "experiments" else {"params": body}
