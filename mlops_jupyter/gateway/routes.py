"""Routes: the live state of one deployment in the gateway, immutable once built.

The gateway keeps ``{DeploymentKey: Route}`` and replaces the whole dict on every change
(one reference swap on the event loop), so a request keeps the route it started with. The
request path looks routes up with a plain ``(tenant, environment, model_id)`` tuple, which
hashes and compares like the :class:`~mlops_jupyter.deployment.plan.DeploymentKey` stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from mlops_jupyter.deployment import traffic
from mlops_jupyter.deployment.plan import DeploymentKey
from mlops_jupyter.gateway.metrics import Stats
from mlops_jupyter.gateway.models import LoadedVersion

FIXED_ROUTES = {
    "/ping": "GET, HEAD",
    "/health": "GET, HEAD",
    "/metrics": "GET, HEAD",
    "/admin/state": "GET, HEAD",
    "/admin/shutdown": "POST",
    "/admin/flush": "POST",
    "/admin/apply": "POST",
}
"""The routes outside ``/tenants/`` and the methods each takes (its 405's ``Allow``); HEAD is
a GET whose answer has no body (RFC 9110 9.1)."""
MODEL_METHODS = ("GET, HEAD", "POST")
"""The methods of a model's two routes: ``[0]`` its description (``.../models/MODEL``),
``[1]`` its ``.../invocations``."""


class Route:
    """The live state of one (tenant, environment, model): immutable once built.

    Args:
        record: the deployment's record (kept as ``record``; its tenant, environment and
            model id name the route).
        versions: version -> the loaded version, for every version of ``live_traffic``.
        live_traffic: the table requests are routed by (version -> percentage); empty
            when nothing serves (a failed deployment answers 503).
        stats: version -> its counters.
    """

    __slots__ = ("environment", "model_id", "record", "router", "stats", "tenant", "traffic", "versions")

    def __init__(
        self,
        record: Mapping[str, Any],
        versions: dict[str, LoadedVersion],
        live_traffic: dict[str, int],
        stats: dict[str, Stats],
    ) -> None:
        self.tenant = record["tenant"]
        self.environment = record["environment"]
        self.model_id = record["model_id"]
        self.traffic = dict(live_traffic)
        self.versions = versions
        self.router = traffic.Router(live_traffic) if live_traffic else None
        self.stats = stats
        self.record = dict(record)

    def describe(self) -> dict[str, Any]:
        r = self.record
        return {
            "tenant": self.tenant,
            "environment": self.environment,
            "model_id": self.model_id,
            "deployment_id": r.get("deployment_id"),
            "status": r.get("status"),
            "reason": r.get("reason"),
            "traffic": self.traffic,
            "revision": r.get("revision"),
            "config": r.get("config") or {},
            "versions": [
                {
                    "version": v,
                    "sha256": lv.sha256,
                    "columns": lv.columns,
                    "fast_path": lv.numeric,
                    "inline": lv.inline,
                    "inline_reason": lv.inline_reason,
                    "inline_excused": lv.inline_excused,
                }
                for v, lv in self.versions.items()
            ],
            "updated_at": r.get("updated_at"),
        }


class RouteChange(NamedTuple):
    """One change of the routing table: ``route`` replaces the key's route (None removes it)."""

    key: DeploymentKey
    route: Route | None
