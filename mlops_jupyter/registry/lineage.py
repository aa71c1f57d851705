"""Where a model's versions are live: the deployment state, read back into the lineage.

Every deployment target (the local gateway, Ray Serve, KServe) keeps its records in the
storage home's state DB (:mod:`mlops_jupyter.storage.state`): environment, traffic table
(version -> %), status, and the target's name in ``extra["target"]`` (``local`` when
absent). The lineage reads those records, so it shows every target without knowing any
of them.

The registry's ``production`` alias follows what serves the ``production`` environment:
the deployment part calls :meth:`~mlops_jupyter.registry.versioning.ModelVersioning.follow_deployment`
after each change it made, with the version that now takes the largest share there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple


class Placement(NamedTuple):
    """One place a version serves: which environment and target, with what share."""

    environment: str
    target: str
    traffic: int
    status: str
    deployment_id: str

    def as_dict(self) -> dict[str, Any]:
        return self._asdict()


def records_of(home: Path, tenant: str, model_id: str) -> list[dict[str, Any]]:
    """The stored deployment records of one model of a tenant (every target)."""
    from mlops_jupyter.storage.state import open_embedded_store

    store = open_embedded_store(home)
    try:
        return store.list_deployments(tenant=tenant, model_id=model_id)
    finally:
        store.close()


def placements(records: list[dict[str, Any]]) -> dict[str, list[Placement]]:
    """``{semver: [Placement, ...]}`` for every version with a share of some traffic.

    Example:
        >>> rec = {"environment": "production", "traffic": {"1.0.0": 90, "1.1.0": 10},
        ...        "status": "deployed", "deployment_id": "dep_1", "extra": {}}
        >>> p = placements([rec])
        >>> [(x.environment, x.target, x.traffic) for x in p["1.1.0"]]
        [('production', 'local', 10)]
    """
    out: dict[str, list[Placement]] = {}
    for rec in records:
        target = (rec.get("extra") or {}).get("target") or "local"
        for version, pct in (rec.get("traffic") or {}).items():
            out.setdefault(version, []).append(
                Placement(rec["environment"], target, int(pct), rec["status"], rec["deployment_id"])
            )
    return out


def summaries(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict per deployment: environment, target, status and its traffic table."""
    return [
        {
            "environment": rec["environment"],
            "target": (rec.get("extra") or {}).get("target") or "local",
            "status": rec["status"],
            "traffic": dict(rec.get("traffic") or {}),
            "deployment_id": rec["deployment_id"],
        }
        for rec in records
    ]
