"""The deployment plan: what one change makes of a deployment's record, decided without I/O.

A change is an *operation*, the dict ``POST /admin/apply`` receives and
:meth:`DeploymentTarget.apply <mlops_jupyter.deployment.targets.base.DeploymentTarget.apply>`
takes (``specs`` maps each version it introduces to what loads it)::

    {"op": "deploy",   "tenant", "environment", "model_id", "version", "traffic_percentage",
                       "specs", "config" (None: keep the stored one)}
    {"op": "traffic",  "tenant", "environment", "model_id", "traffic", "specs"}
    {"op": "rollback", "tenant", "environment", "model_id", "version", "specs"}
    {"op": "undeploy", "tenant", "environment", "model_id", "version" (None: all of it)}

A *record* is what the state DB keeps per (tenant, environment, model): see
:class:`DeploymentRecord`.

:func:`plan` takes an operation and the current record (None if there is none) and returns a
:class:`Plan`: the new traffic table (by the rules of :mod:`~mlops_jupyter.deployment.traffic`),
the versions to load, and the new record (:meth:`Plan.new_record`: revision + 1, the
previous table pushed on the history, the config kept unless the operation gives one), or
it raises :class:`PlanError` naming why the operation is refused. Loading the versions,
writing the record and swapping routes are the caller's (the gateway's). When a version
fails to load nothing changes, except that a first deploy leaves a ``failed`` record
(:meth:`Plan.failed_record`), so the failure can be seen. The clock and the id of a new
deployment are arguments, so the same inputs always give the same plan.

Example:
    >>> spec = {"path": "/store/models/iris/1.0.0", "sha256": "ab12"}
    >>> first = plan({"op": "deploy", "tenant": "acme", "environment": "production",
    ...               "model_id": "iris", "version": "1.0.0", "traffic_percentage": 100,
    ...               "specs": {"1.0.0": spec}}, None, deployment_id="dep_0001")
    >>> first.traffic, first.load
    ({'1.0.0': 100}, {'1.0.0': {'path': '/store/models/iris/1.0.0', 'sha256': 'ab12'}})
    >>> rec = first.new_record(now=1700000000.0)
    >>> rec["deployment_id"], rec["status"], rec["revision"], rec["history"]
    ('dep_0001', 'deployed', 1, [])
    >>> ab = plan({"op": "deploy", "tenant": "acme", "environment": "production",
    ...            "model_id": "iris", "version": "1.1.0", "traffic_percentage": 50,
    ...            "specs": {"1.1.0": {"path": "/store/models/iris/1.1.0", "sha256": "cd34"}}},
    ...           rec, deployment_id="dep_unused").new_record(now=1700000100.0)
    >>> ab["traffic"], ab["revision"], ab["history"], ab["deployment_id"], ab["created_at"]
    ({'1.0.0': 50, '1.1.0': 50}, 2, [{'1.0.0': 100}], 'dep_0001', 1700000000.0)
    >>> back = plan({"op": "rollback", "tenant": "acme", "environment": "production",
    ...              "model_id": "iris", "version": "1.0.0"}, ab, deployment_id="dep_unused")
    >>> back.traffic, sorted(back.load), back.new_record(now=1700000200.0)["history"]
    ({'1.0.0': 100}, ['1.0.0'], [{'1.0.0': 100}, {'1.0.0': 50, '1.1.0': 50}])
    >>> plan({"op": "undeploy", "tenant": "acme", "environment": "production",
    ...       "model_id": "iris"}, ab, deployment_id="dep_unused").removes
    True
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypedDict

from mlops_jupyter.config.names import validate_environment, validate_model_id, validate_tenant
from mlops_jupyter.deployment import traffic
from mlops_jupyter.errors import MLOpsError

OPS = ("deploy", "traffic", "rollback", "undeploy")
REFUSALS = ("bad_request", "invalid", "not_found")
"""The ``.reason`` of a :class:`PlanError`: a malformed operation, a value the rules refuse,
or nothing to change."""


class VersionSpec(TypedDict, total=False):
    """What loads one version: its MLflow model folder and the sha256 recorded at versioning;
    optionally the registry's version number and a test input (``{"columns", "data", "dtypes"}``)."""

    path: str
    sha256: str
    registry_version: Any
    example: dict[str, Any]


class DeploymentRecord(TypedDict, total=False):
    """One deployment as the state DB keeps it (and ``/admin/apply`` answers it).

    ``traffic`` maps version -> percentage (adding up to 100, or empty when nothing
    serves); ``versions`` maps each version of ``traffic`` to its :class:`VersionSpec`;
    ``history`` holds earlier traffic tables, oldest first; ``status`` is ``deployed``,
    ``degraded`` (some versions failed to load at a restart) or ``failed``, with ``reason``.
    """

    tenant: str
    environment: str
    model_id: str
    deployment_id: str
    status: str
    reason: str | None
    revision: int
    created_at: float
    updated_at: float
    traffic: dict[str, int]
    versions: dict[str, VersionSpec]
    config: dict[str, Any]
    history: list[dict[str, int]]
    extra: dict[str, Any]


class Operation(TypedDict, total=False):
    """One change (see the module docstring for the keys each ``op`` uses)."""

    op: str
    tenant: str
    environment: str
    model_id: str
    version: str | None
    traffic_percentage: int
    traffic: dict[str, int]
    specs: dict[str, VersionSpec]
    config: dict[str, Any] | None


class DeploymentKey(NamedTuple):
    """What names one deployment (and its route in the gateway)."""

    tenant: str
    environment: str
    model_id: str


class PlanError(MLOpsError):
    """An operation the plan refuses: ``.reason`` is one of :data:`REFUSALS`, ``.detail``
    says why; for a refused value it keeps the validator's ``.value``, ``.allowed`` and
    ``.detail``, so its message is the validator's own."""


def new_deployment_id() -> str:
    """A fresh deployment id (random: pass it to :func:`plan`, which stays deterministic)."""
    return "dep_" + secrets.token_hex(6)


def operation_key(op: Mapping[str, Any]) -> DeploymentKey:
    """The deployment an operation changes, its names validated.

    Raises:
        PlanError: ``bad_request`` when ``op``, ``tenant``, ``environment`` or ``model_id``
            is missing; ``invalid`` when a name is not valid.

    Example:
        >>> operation_key({"op": "rollback", "tenant": "acme", "environment": "staging", "model_id": "iris"})
        DeploymentKey(tenant='acme', environment='staging', model_id='iris')
        >>> operation_key({"op": "rollback", "tenant": "acme", "environment": "staging"})
        Traceback (most recent call last):
        ...
        mlops_jupyter.deployment.plan.PlanError: missing 'model_id'
    """
    try:
        tenant, environment, model_id = op["tenant"], op["environment"], op["model_id"]
        op["op"]
        validate_tenant(tenant)
        validate_environment(environment)
        validate_model_id(model_id)
    except KeyError as exc:
        raise PlanError(f"missing {exc}", reason="bad_request") from None
    except MLOpsError as exc:
        raise PlanError(exc.detail, value=exc.value, allowed=exc.allowed, reason="invalid") from None
    return DeploymentKey(tenant, environment, model_id)


@dataclass(frozen=True)
class Plan:
    """What an operation makes of a deployment.

    Attributes:
        op: the operation's kind (``deploy``, ``traffic``, ``rollback``, ``undeploy``).
        key: the deployment it changes.
        current: the record before the change (None for a first deploy).
        traffic: the new traffic table; empty when the deployment is removed.
        load: version -> spec of every version of the new table (to load, or to reuse).
        config: the deployment's config after the change.
        deployment_id: the id of the deployment after the change (the current one's, or a
            new one for a first deploy).
    """

    op: str
    key: DeploymentKey
    current: DeploymentRecord | None
    traffic: dict[str, int]
    load: dict[str, VersionSpec]
    config: dict[str, Any]
    deployment_id: str

    @property
    def removes(self) -> bool:
        """True when the change removes the deployment (an undeploy that leaves nothing)."""
        return self.op == "undeploy" and not self.traffic

    def new_record(self, now: float) -> DeploymentRecord:
        """The record once every version of :attr:`traffic` is loaded, stamped ``now``."""
        cur = self.current
        return {
            "tenant": self.key.tenant,
            "environment": self.key.environment,
            "model_id": self.key.model_id,
            "deployment_id": self.deployment_id,
            "status": "deployed",
            "reason": None,
            "revision": (cur["revision"] + 1) if cur else 1,
            "created_at": cur["created_at"] if cur else now,
            "updated_at": now,
            "traffic": self.traffic,
            "versions": dict(self.load),
            "config": self.config,
            "history": traffic.push_history(cur["history"] if cur else [], cur["traffic"] if cur else {}, self.traffic),
            "extra": {},
        }

    def failed_record(self, reason: str) -> DeploymentRecord | None:
        """The record a version that failed to load leaves: for a first deploy a ``failed``
        record serving nothing; otherwise None (the current record stays as it is).

        Example:
            >>> p = plan({"op": "deploy", "tenant": "acme", "environment": "production", "model_id": "iris",
            ...           "version": "1.0.0", "traffic_percentage": 100, "specs": {"1.0.0": {}}}, None,
            ...          deployment_id="dep_0001")
            >>> rec = p.failed_record("the artifact's sha256 differs")
            >>> rec["status"], rec["revision"], rec["traffic"], rec["deployment_id"]
            ('failed', 0, {}, 'dep_0001')
        """
        if self.current is not None:
            return None
        return {
            "tenant": self.key.tenant,
            "environment": self.key.environment,
            "model_id": self.key.model_id,
            "deployment_id": self.deployment_id,
            "status": "failed",
            "reason": reason,
            "revision": 0,
            "traffic": {},
            "versions": {},
            "config": self.config,
            "history": [],
            "extra": {},
        }


def _table(op: Mapping[str, Any], current: Mapping[str, int]) -> dict[str, int]:
    kind = op["op"]
    if kind == "deploy":
        return traffic.add_version(current, op["version"], traffic.check_percentage(op["traffic_percentage"]))
    if kind == "traffic":
        return traffic.check_table(op["traffic"])
    if kind == "rollback":
        return {op["version"]: 100}
    return traffic.remove_version(current, op["version"]) if op.get("version") else {}


def plan(op: Mapping[str, Any], current: Mapping[str, Any] | None, *, deployment_id: str) -> Plan:
    """Decide what ``op`` makes of the deployment whose record is ``current``.

    Args:
        op: the operation (:class:`Operation`).
        current: the deployment's record (:class:`DeploymentRecord`), None if there is none.
        deployment_id: the id a first deploy gets (:func:`new_deployment_id`).

    Returns:
        The :class:`Plan`.

    Raises:
        PlanError: ``bad_request`` (a missing name, an unknown op), ``invalid`` (a bad name,
            percentage or table; a version with no spec given nor stored), ``not_found``
            (undeploying what is not deployed).
        KeyError: a key its op needs (``version``, ``traffic_percentage``, ``traffic``) is
            missing (the deployment API always sends them).

    Example:
        >>> rec = {"deployment_id": "dep_0001", "revision": 3, "created_at": 0.0, "config": {},
        ...        "traffic": {"1.0.0": 90, "1.1.0": 10}, "history": [{"1.0.0": 100}],
        ...        "versions": {"1.0.0": {"sha256": "ab12"}, "1.1.0": {"sha256": "cd34"}}}
        >>> op = {"tenant": "acme", "environment": "production", "model_id": "iris"}
        >>> plan({**op, "op": "traffic", "traffic": {"1.0.0": 50, "1.1.0": 50}}, rec, deployment_id="x").traffic
        {'1.0.0': 50, '1.1.0': 50}
        >>> plan({**op, "op": "undeploy", "version": "1.1.0"}, rec, deployment_id="x").traffic
        {'1.0.0': 100}
        >>> plan({**op, "op": "traffic", "traffic": {"1.0.0": 60, "1.1.0": 30}}, rec, deployment_id="x")
        Traceback (most recent call last):
        ...
        mlops_jupyter.deployment.plan.PlanError: Traffic percentages add up to 90, not 100: ... exactly 100.
        >>> try:
        ...     plan({**op, "op": "deploy", "version": "1.2.0", "traffic_percentage": 0}, rec, deployment_id="x")
        ... except PlanError as exc:
        ...     print(exc.reason, "|", exc.detail, "|", exc.allowed)
        invalid | Invalid traffic_percentage 0: out of range. | an integer from 1 to 100
        >>> try:
        ...     plan({**op, "op": "rollback", "version": "0.9.0"}, rec, deployment_id="x")
        ... except PlanError as exc:
        ...     print(exc.reason, "|", exc.detail)
        invalid | No artifact given for version(s) ['0.9.0'].
        >>> try:
        ...     plan({**op, "op": "undeploy"}, None, deployment_id="x")
        ... except PlanError as exc:
        ...     print(exc.reason, "|", exc.detail)
        not_found | Model 'iris' is not deployed in 'production'.
    """
    key = operation_key(op)
    kind = op["op"]
    if kind not in OPS:
        raise PlanError(f"unknown op {kind!r}", value=kind, reason="bad_request")
    if kind == "undeploy" and current is None:
        raise PlanError(f"Model {key.model_id!r} is not deployed in {key.environment!r}.", reason="not_found")
    cur = dict(current["traffic"]) if current else {}
    specs = dict(current["versions"]) if current else {}
    specs.update(op.get("specs") or {})
    try:
        new = _table(op, cur)
    except MLOpsError as exc:
        raise PlanError(exc.detail, value=exc.value, allowed=exc.allowed, reason="invalid") from None
    config = op["config"] if op.get("config") is not None else (current["config"] if current else {})
    missing = [v for v in new if v not in specs]
    if missing:
        raise PlanError(f"No artifact given for version(s) {missing}.", value=missing, reason="invalid")
    return Plan(
        op=kind,
        key=key,
        current=current,
        traffic=new,
        load={v: specs[v] for v in new},
        config=config,
        deployment_id=current["deployment_id"] if current else deployment_id,
    )


def record_target(rec: Mapping[str, Any]) -> str:
    """The target a record belongs to (records written before targets existed are ``local``)."""
    return (rec.get("extra") or {}).get("target") or "local"
