"""The gateway as a deployment target of itself, for the alert actions it runs.

The gateway's alert scheduler evaluates rules in a background thread through one
``ModelMonitoring`` per tenant (:func:`monitor_factory`), whose deployment API is a
``ModelDeployment`` on an :class:`InProcessTarget`. So a ``rollback`` action goes through
the deployment API as from a notebook (the same checks, the same records, the same
returned dicts), but its change is carried out here, in process, instead of over HTTP to
the gateway's own ``/admin/apply``:

1. :meth:`InProcessTarget.apply` (the scheduler's thread) encodes the operation as the HTTP
   client would (:func:`~mlops_jupyter.deployment.client.encode_operation`) and submits
   :meth:`~mlops_jupyter.gateway.admin.AdminRoutes.apply_op` to the event loop with
   :func:`asyncio.run_coroutine_threadsafe`;
2. on the loop, ``apply_op`` takes the admin lock (so it queues behind, or ahead of, a change
   arriving over HTTP), prepares the change in the gateway's worker pool and swaps the route;
3. the thread waits for the answer (at most :data:`APPLY_TIMEOUT` seconds) and reads it as
   the HTTP client does (:func:`~mlops_jupyter.deployment.client.apply_answer`).

Nothing on the loop waits for the scheduler's thread, so the two cannot deadlock; calling
``apply`` from the loop itself is refused (it would wait for itself). Once the gateway is
stopping, changes are refused; it stops the scheduler before its loop stops.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from mlops_jupyter.config.settings import GATEWAY_PORT_META as PORT_META
from mlops_jupyter.config.settings import gateway_log_path
from mlops_jupyter.deployment.client import apply_answer, encode_operation
from mlops_jupyter.errors import GatewayError

if TYPE_CHECKING:
    from mlops_jupyter.gateway.app import Gateway

APPLY_TIMEOUT = 300.0
"""Seconds a change may take (loading a large model included), as for the HTTP admin client."""


class InProcessTarget:
    """The ``local`` deployment target, seen from inside the gateway (see the module docstring).

    Args:
        gw: the running gateway.
    """

    name = "local"

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def apply(self, op: Mapping[str, Any]) -> dict[str, Any]:
        gw = self.gw
        loop = gw.loop
        if loop is None or loop.is_closed() or (gw.stopping is not None and gw.stopping.is_set()):
            raise GatewayError("The gateway is not serving (starting or stopping); the change was not made.")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise GatewayError(
                "InProcessTarget.apply() was called on the gateway's event loop, where it would "
                "wait for itself; await Gateway.apply_op() there instead."
            )
        future = asyncio.run_coroutine_threadsafe(gw.apply_op(json.loads(encode_operation(op))), loop)
        try:
            answer = future.result(timeout=APPLY_TIMEOUT)
        except concurrent.futures.TimeoutError:  # not cancelled: a change half made would leave store and routes apart
            raise GatewayError(
                f"The gateway did not finish the change within {APPLY_TIMEOUT:.0f} s; it may still complete."
            ) from None
        return apply_answer(answer.status, answer.body)

    def ensure_running(self) -> dict[str, Any]:
        return dict(self.gw.info)

    def verify(self) -> dict[str, Any]:
        return self.gw.health()

    def get(self, tenant: str, environment: str, model_id: str) -> dict[str, Any] | None:
        return self.gw.store.get_deployment(tenant, environment, model_id)

    def list(self, tenant: str, environment: str | None = None) -> list[dict[str, Any]]:
        return self.gw.store.list_deployments(tenant=tenant, environment=environment)

    def base_url(self) -> str:
        url = self.gw.info.get("url")
        if url:
            return url
        port = self.gw.store.get_meta(PORT_META)
        return f"http://127.0.0.1:{port}" if port else "http://127.0.0.1:PORT"

    def endpoint(self, tenant: str, environment: str, model_id: str) -> str:
        return f"{self.base_url()}/tenants/{tenant}/{environment}/models/{model_id}"

    def status(self) -> dict[str, Any]:
        gw, info = self.gw, self.gw.info
        health = gw.health()
        return {
            "running": True,
            "home": str(gw.home),
            "pid": gw.supervisor_pid or os.getpid(),  # the gateway's (gateway.json's), not this worker's
            "url": info.get("url"),
            "port": info.get("port"),
            "host": info.get("host"),
            "deployments": health["deployments"],
            "uptime_s": health["uptime_s"],
            "log": str(gateway_log_path(gw.home)),
        }

    def stop(self) -> dict[str, Any]:
        gw = self.gw
        if gw.loop is not None and gw.stopping is not None and not gw.loop.is_closed():
            gw.loop.call_soon_threadsafe(gw.request_stop)  # the supervisor, which stops every worker
        return {"stopped": True, "pid": gw.supervisor_pid or os.getpid(), "home": str(gw.home)}

    def __repr__(self) -> str:
        return f"<InProcessTarget home={str(self.gw.home)!r}>"


def monitor_factory(gw: Gateway) -> Callable[[str], Any]:
    """``monitor_for(tenant)`` for the gateway's alert scheduler.

    Each tenant's ``ModelMonitoring`` reads the gateway's own prediction log and store
    (``sync_gateway=False``: it must not ask itself over HTTP to flush) and rolls back
    through a ``ModelDeployment`` on the gateway's :class:`InProcessTarget`.
    """
    target = InProcessTarget(gw)

    def monitor_for(tenant: str) -> Any:
        from mlops_jupyter.config.settings import resolve_settings
        from mlops_jupyter.deployment.deployment import ModelDeployment
        from mlops_jupyter.monitoring import ModelMonitoring

        settings = resolve_settings(tenant_id=tenant, storage_path=gw.home)
        return ModelMonitoring(
            settings,
            predlog=gw.predlog,
            store=gw.store,
            sync_gateway=False,
            deployment=ModelDeployment(settings, target=target),
        )

    return monitor_for
