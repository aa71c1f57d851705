"""``GET /health`` and ``GET /metrics`` across the gateway's workers.

``/health`` without a token says only ``{"status": "ok"}`` or ``{"status": "degraded"}``
(liveness for anyone, nothing to learn about the deployments); with a token (any
tenant's, or the admin's) it adds why (``reasons``), the instance, pids, workers,
deployments and the prediction log's state. The gateway is **degraded** when a worker's
prediction log cannot be written (answers are still served; their records wait in the
worker's bounded spool and are written when the log is writable again) or when fewer
workers run than configured (the supervisor is restarting one).

``/metrics`` (a token needed) adds up every worker's counters after a barrier
(:func:`~.cluster.wait_for_peers`), so an answer sent before the scrape is counted
whichever worker sent it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_jupyter.deployment import tokens as auth
from mlops_jupyter.gateway import metrics
from mlops_jupyter.gateway.cluster import aggregate, log_state, peer_statuses, stats_of, wait_for_peers

if TYPE_CHECKING:
    from mlops_jupyter.gateway.http import HttpConnection

METRICS_PEER_TIMEOUT = 2.0
"""Seconds ``/metrics`` waits for the other workers' counters (then uses their last report)."""

METRICS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class HealthMetrics:
    """``/health`` and ``/metrics`` (a mixin of :class:`~mlops_jupyter.gateway.app.Gateway`)."""

    home: Path
    predlog: Any
    routes: dict[Any, Any]
    instance: str
    started: float
    loop: asyncio.AbstractEventLoop | None
    worker_pid: int | None
    supervisor_pid: int | None
    workers_wanted: int = 1
    _json_dumps: Callable[..., str]
    authenticate: Callable[[Mapping[str, str]], str | None]

    def _peers(self) -> dict[int, dict[str, Any]]:
        return peer_statuses(self.home, exclude=self.worker_pid) if self.worker_pid is not None else {}

    def health(self, who: str | None = auth.ADMIN) -> dict[str, Any]:
        """The health answer for the caller ``who`` (None: no valid token)."""
        peers = self._peers()
        logs = {os.getpid(): log_state(self.predlog), **{pid: st.get("log") or {} for pid, st in peers.items()}}
        reasons = [f"worker {pid}: prediction log: {st['error']}" for pid, st in logs.items() if st.get("error")]
        if self.worker_pid is not None and len(logs) < self.workers_wanted:
            reasons.append(f"{len(logs)} of {self.workers_wanted} workers running (the supervisor restarts them)")
        status = "degraded" if reasons else "ok"
        if who is None:
            return {"status": status}
        loaded = {id(lv) for r in self.routes.values() for lv in r.versions.values()}
        return {
            "status": status,
            "reasons": reasons,
            "instance": self.instance,
            "pid": self.supervisor_pid or os.getpid(),
            "worker_pid": os.getpid(),
            "workers": len(logs),
            "uptime_s": round(time.time() - self.started, 3),
            "deployments": len(self.routes),
            "loaded_versions": len(loaded),
            "prediction_log": {
                "spooled": sum(st.get("spooled", 0) for st in logs.values()),
                "degraded_workers": sum(1 for st in logs.values() if st.get("error")),
            },
        }

    def health_route(self, conn: HttpConnection, headers: Mapping[str, str]) -> None:
        conn.respond(200, self._json_dumps(self.health(self.authenticate(headers))).encode())

    def metrics_route(self, conn: HttpConnection, who: str) -> None:
        if self.worker_pid is None or not self._peers():
            conn.respond(200, self.metrics_text(who, {}).encode(), METRICS_TYPE)
            return
        self.loop.create_task(self._metrics_task(conn, who))

    async def _metrics_task(self, conn: HttpConnection, who: str) -> None:
        peers = await wait_for_peers(self, b"s", "synced", METRICS_PEER_TIMEOUT)
        conn.respond(200, self.metrics_text(who, peers).encode(), METRICS_TYPE)

    def metrics_text(self, who: str, peers: dict[int, dict[str, Any]] | None = None) -> str:
        peers = self._peers() if peers is None else peers
        total = aggregate(self, peers)
        logs = [log_state(self.predlog), *((st.get("log") or {}) for st in peers.values())]
        return metrics.render(
            stats_of(total["stats"]),
            {int(c): n for c, n in total["codes"].items()},
            total["dropped"],
            who,
            {
                "prediction_log_write_failures_total": total["log_failures"],
                "prediction_log_spooled": sum(st.get("spooled", 0) for st in logs),
                "prediction_log_degraded": sum(1 for st in logs if st.get("error")),
                "gateway_workers": len(logs),
                "gateway_send_timeouts_total": total.get("send_timeouts", 0),
                "gateway_outbound_closed_total": total.get("outbound_closed", 0),
                "gateway_connections_rebalanced_total": total.get("rebalanced", 0),
            },
        )
