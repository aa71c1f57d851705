"""The control plane: ``/admin/*`` routes, changes made live, and routes restored on start.

Routes (admin token only)::

    POST /admin/apply      one change (a deployment plan operation) -> {"ok", "record"} or an error
    POST /admin/flush      write the buffered prediction log now -> {"ok", "rows"}
    POST /admin/shutdown   stop the gateway (answers first)
    GET  /admin/state      every route as ``GET /tenants/T/E/models/M`` describes it

A change goes through :meth:`AdminRoutes.apply_op`, for ``/admin/apply`` and for the
in-process target (:mod:`~mlops_jupyter.gateway.target`) alike: under the admin lock (one
change at a time), :meth:`AdminRoutes.prepare` runs in a worker thread: the plan
(:func:`mlops_jupyter.deployment.plan.plan`, pure) decides the new record, the versions it
needs are loaded (integrity check, load, test prediction; versions already live are
shared, not reloaded) and the record is written to the embedded store. Back on the event
loop, the new route replaces the old one with one swap of the routing table, so requests
in flight finish on the table they started with and none fails during a change.

With several workers (:mod:`.cluster`), the change is made by the worker that got the
request; the others follow the state DB: each compares the stored records' revisions with
its routes and rebuilds what differs (:meth:`AdminRoutes.follow`, versions already loaded
are shared). The answer waits until every live worker has done so, so the next request
finds the change whichever worker answers it. ``/admin/flush`` likewise flushes every
worker, and ``/admin/shutdown`` stops the whole gateway (the supervisor).
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from mlops_jupyter.deployment import tokens as auth
from mlops_jupyter.deployment import traffic
from mlops_jupyter.deployment.plan import (
    DeploymentKey,
    PlanError,
    new_deployment_id,
    operation_key,
    plan,
    record_target,
)
from mlops_jupyter.errors import IntegrityError
from mlops_jupyter.gateway import inline
from mlops_jupyter.gateway.cluster import wait_for_peers, workers_dir
from mlops_jupyter.gateway.http import error_body
from mlops_jupyter.gateway.metrics import Stats, StatsKey
from mlops_jupyter.gateway.models import LoadedVersion, LoadError, load_version
from mlops_jupyter.gateway.routes import FIXED_ROUTES, Route, RouteChange

if TYPE_CHECKING:
    from mlops_jupyter.config.settings import GatewayLimits
    from mlops_jupyter.gateway.http import HttpConnection

log = logging.getLogger("mlops_jupyter.gateway")

REFUSED = {"bad_request": (400, "BAD_REQUEST"), "invalid": (400, "INVALID"), "not_found": (404, "NOT_FOUND")}
"""HTTP status and ``error_code`` of each :data:`~mlops_jupyter.deployment.plan.REFUSALS` reason."""

LoadedKey = tuple[str, str, str, str]
"""(tenant, model id, version, sha256) of a loaded version."""

ADMIN_LOCK = "admin.lock"
PEER_TIMEOUT = 300.0
"""Seconds a change or a flush waits for the other workers (they may be loading a large model)."""


def record_revision(rec: Mapping[str, Any]) -> tuple[Any, ...]:
    """What tells two versions of a deployment record apart (its revision, and what a change
    that keeps the revision, such as a restore marking it degraded, alters)."""
    return (
        rec.get("deployment_id"),
        rec.get("revision"),
        rec.get("status"),
        json.dumps(rec.get("traffic") or {}, sort_keys=True),
        rec.get("updated_at"),
    )


class Prepared(NamedTuple):
    """A change prepared off the event loop: the answer, and the route swap to make (if any)."""

    status: int
    result: dict[str, Any]
    change: RouteChange | None


class Answer(NamedTuple):
    """The control plane's answer to one change: HTTP status and JSON body."""

    status: int
    body: bytes


class AdminRoutes:
    """The gateway's control plane (a mixin of :class:`~mlops_jupyter.gateway.app.Gateway`)."""

    home: Path
    store: Any
    predlog: Any
    limits: GatewayLimits
    routes: dict[DeploymentKey, Route]
    stats: dict[StatsKey, Stats]
    pool: ThreadPoolExecutor
    loop: asyncio.AbstractEventLoop | None
    admin_lock: asyncio.Lock | None
    stopping: asyncio.Event | None
    _json_dumps: Callable[..., str]
    authenticate: Callable[[Mapping[str, str]], str | None]
    reload_tokens: Callable[[], None]
    _unauthorized: Callable[[HttpConnection], None]
    _method: Callable[[HttpConnection, str, str, str], None]
    worker_pid: int | None = None  # set in a worker process (:mod:`.worker`); None in process
    supervisor_pid: int | None = None

    def admin_route(
        self, conn: HttpConnection, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> None:
        who = self.authenticate(headers)
        if who is None:
            return self._unauthorized(conn)
        if who != auth.ADMIN:
            return conn.respond(403, error_body("FORBIDDEN", "The control plane needs the admin token."))
        allow = FIXED_ROUTES.get(path)
        if allow is None:
            return conn.respond(404, error_body("NOT_FOUND", f"No such admin path {path!r}."))
        if method not in allow.split(", "):
            return self._method(conn, method, path, allow)
        if path == "/admin/state":
            return conn.respond(200, self._json_dumps([r.describe() for r in self.routes.values()]).encode())
        if path == "/admin/shutdown":
            conn.keep_alive = False
            conn.respond(200, b'{"ok": true}')
            self.loop.call_later(0.05, self.request_stop)
            return None
        if path == "/admin/flush":
            self.loop.create_task(self._flush_task(conn))
            return None
        try:  # /admin/apply
            op = json.loads(body)
            if not isinstance(op, dict):
                raise ValueError("expected an object")
        except ValueError as exc:
            return conn.respond(400, error_body("MALFORMED_JSON", f"Bad admin request: {exc}"))
        self.loop.create_task(self._apply_task(conn, op))
        return None

    async def _flush_task(self, conn: HttpConnection) -> None:
        """Write the buffered prediction log (off the event loop), so a reader sees it now."""
        try:
            if self.worker_pid is None:
                rows = await self.loop.run_in_executor(self.pool, self.predlog.flush)
            else:  # every worker's agent flushes (this one's too), then reports it
                workers = await wait_for_peers(self, b"f", "flushed", PEER_TIMEOUT, include_self=True)
                rows = sum(st.get("flushed_rows", 0) for st in workers.values())
            conn.respond(200, self._json_dumps({"ok": True, "rows": rows}).encode())
        except Exception as exc:  # pragma: no cover - flush guards each group itself
            conn.respond(500, error_body("INTERNAL_ERROR", f"{type(exc).__name__}: {exc}"))

    async def _apply_task(self, conn: HttpConnection, op: dict[str, Any]) -> None:
        answer = await self.apply_op(op)
        conn.respond(answer.status, answer.body)

    async def apply_op(self, op: dict[str, Any]) -> Answer:
        """Carry out one change (see the module docstring); never raises.

        Runs on the event loop; another thread submits it with
        ``asyncio.run_coroutine_threadsafe`` (the in-process target does).
        """
        try:
            async with self.admin_lock:
                self.reload_tokens()
                prepared = await self.loop.run_in_executor(self.pool, self._prepare_exclusive, op)
                if prepared.change is not None:
                    key, route = prepared.change
                    routes = dict(self.routes)
                    if route is None:
                        routes.pop(key, None)
                    else:
                        routes[key] = route
                    self.routes = routes  # the one atomic swap
                    gc.freeze()  # models and modules are long-lived: keep them out of GC passes
            if prepared.change is not None:
                # every worker serves it before the answer; outside the lock, so a worker
                # waiting for this one's agent (which takes the lock to follow) is not blocked
                await wait_for_peers(self, b"s", "synced", PEER_TIMEOUT)
            return Answer(prepared.status, self._json_dumps(prepared.result, default=str).encode())
        except Exception as exc:  # pragma: no cover - prepare() reports its own errors
            log.exception("gateway: admin operation failed")
            return Answer(500, error_body("INTERNAL_ERROR", f"{type(exc).__name__}: {exc}"))

    def _loaded(self) -> dict[LoadedKey, LoadedVersion]:
        return {
            (lv.tenant, lv.model_id, lv.version, lv.sha256): lv
            for r in self.routes.values()
            for lv in r.versions.values()
        }

    def _load(
        self, tenant: str, model_id: str, version: str, spec: Mapping[str, Any], loaded: dict[LoadedKey, LoadedVersion]
    ) -> LoadedVersion:
        lv = loaded.get((tenant, model_id, version, spec.get("sha256")))
        if lv is not None and lv.path == spec.get("path"):
            return lv  # already live (verified when it was loaded); shared, not reloaded
        lv, example = load_version({**spec, "tenant": tenant, "model_id": model_id, "version": version})
        inline.qualify(lv, example, self.limits)
        return lv

    def _stats_for(self, tenant: str, env: str, model_id: str, versions: Any) -> dict[str, Stats]:
        out = {}
        for v in versions:
            key = StatsKey(tenant, env, model_id, v)
            s = self.stats.get(key)
            if s is None:
                s = self.stats[key] = Stats()
            out[v] = s
        return out

    def _prepare_exclusive(self, op: Mapping[str, Any]) -> Prepared:
        """:meth:`prepare` under the home's admin flock: one change at a time across the
        workers (two workers changing one deployment at once would both plan from the same
        revision, and one change would be lost)."""
        if self.worker_pid is None:
            return self.prepare(op)
        fd = os.open(workers_dir(self.home) / ADMIN_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return self.prepare(op)
        finally:
            os.close(fd)

    def prepare(self, op: Mapping[str, Any]) -> Prepared:
        """Plan and load one change (runs in a worker thread; the swap happens after)."""
        try:
            key = operation_key(op)
            current = self.store.get_deployment(*key)
            change = plan(op, current, deployment_id=new_deployment_id())
        except PlanError as exc:
            status, code = REFUSED[exc.reason]
            return Prepared(status, {"ok": False, "error_code": code, "message": str(exc)}, None)
        if change.removes:
            self.store.delete_deployment(*key)
            log.info("gateway: undeployed %s/%s/%s", *key)
            return Prepared(200, {"ok": True, "record": None}, RouteChange(key, None))
        loaded = self._loaded()
        versions: dict[str, LoadedVersion] = {}
        try:
            for v, spec in change.load.items():
                versions[v] = self._load(key.tenant, key.model_id, v, spec, loaded)
        except (IntegrityError, LoadError) as exc:
            code = "INTEGRITY" if isinstance(exc, IntegrityError) else "LOAD_FAILED"
            log.warning("gateway: %s %s/%s/%s refused: %s", change.op, *key, exc)
            failed = change.failed_record(str(exc))
            if failed is None:
                return Prepared(200, {"ok": False, "error_code": code, "message": str(exc), "record": current}, None)
            self.store.put_deployment(failed)
            return Prepared(
                200,
                {"ok": False, "error_code": code, "message": str(exc), "record": failed},
                RouteChange(key, Route(failed, {}, {}, {})),
            )
        record = change.new_record(now=time.time())
        self.store.put_deployment(record)
        log.info("gateway: %s %s/%s/%s -> %s", change.op, *key, change.traffic)
        route = Route(record, versions, change.traffic, self._stats_for(*key, change.traffic))
        return Prepared(200, {"ok": True, "record": record}, RouteChange(key, route))

    # -- restore on start, and following the changes other workers made -------------------
    def restore(self) -> None:
        """Load every stored deployment (called once, before the port opens)."""
        loaded: dict[LoadedKey, LoadedVersion] = {}
        self.routes = {
            DeploymentKey(rec["tenant"], rec["environment"], rec["model_id"]): self._route_for(rec, loaded, True)
            for rec in self.served_records()
        }
        log.info("gateway: restored %d deployment(s)", len(self.routes))

    def served_records(self) -> list[dict[str, Any]]:
        """The stored deployments this gateway serves: those of the ``local`` target (the
        ``ray`` and ``kserve`` targets keep their records in the same state DB)."""
        return [rec for rec in self.store.list_deployments() if record_target(rec) == "local"]

    def routes_differ(self, records: list[dict[str, Any]]) -> bool:
        """Whether the stored records (by revision) differ from the routes served."""
        routes = self.routes
        if len(records) != len(routes):
            return True
        for rec in records:
            route = routes.get((rec["tenant"], rec["environment"], rec["model_id"]))
            if route is None or record_revision(route.record) != record_revision(rec):
                return True
        return False

    async def follow(self) -> None:
        """Serve what the state DB holds (another worker changed it): under the admin lock,
        rebuild the routes whose record changed (in the worker pool), then one swap."""
        async with self.admin_lock:
            routes = await self.loop.run_in_executor(self.pool, self._routes_from_store)
            if routes is not None:
                self.routes = routes
                gc.freeze()

    def _routes_from_store(self) -> dict[DeploymentKey, Route] | None:
        records = self.served_records()
        if not self.routes_differ(records):
            return None
        loaded = self._loaded()
        routes: dict[DeploymentKey, Route] = {}
        for rec in records:
            key = DeploymentKey(rec["tenant"], rec["environment"], rec["model_id"])
            cur = self.routes.get(key)
            same = cur is not None and record_revision(cur.record) == record_revision(rec)
            routes[key] = cur if same else self._route_for(rec, loaded, False)
        log.info("gateway: following the state DB: %d deployment(s)", len(routes))
        return routes

    def _route_for(self, rec: dict[str, Any], loaded: dict[LoadedKey, LoadedVersion], record_problems: bool) -> Route:
        """The route of one stored record, loading its versions (``loaded`` are shared).

        With ``record_problems`` (the start of the gateway) a version that cannot be loaded
        marks the stored record degraded or failed; a worker following another's change
        only serves what it could load."""
        key = DeploymentKey(rec["tenant"], rec["environment"], rec["model_id"])
        want = dict(rec["traffic"])
        if not want:
            return Route(rec, {}, {}, {})
        versions: dict[str, LoadedVersion] = {}
        problems = []
        for v in want:
            spec = rec["versions"].get(v)
            try:
                if spec is None:
                    raise LoadError(f"no artifact recorded for version {v}")
                lv = self._load(rec["tenant"], rec["model_id"], v, spec, loaded)
                loaded[(lv.tenant, lv.model_id, lv.version, lv.sha256)] = lv
                versions[v] = lv
            except (IntegrityError, LoadError) as exc:
                problems.append(str(exc))
        live = traffic.scale({v: p for v, p in want.items() if v in versions}, 100)
        if problems:
            status = "degraded" if live else "failed"
            log.warning("gateway: serving %s as %s: %s", "/".join(key), status, "; ".join(problems))
            if record_problems:
                rec = {**rec, "status": status, "reason": "; ".join(problems)}
                self.store.put_deployment(rec)
        elif record_problems and rec.get("status") != "deployed":
            rec = {**rec, "status": "deployed", "reason": None}
            self.store.put_deployment(rec)
        return Route(rec, versions, live, self._stats_for(*key, live))

    def request_stop(self) -> None:
        """Stop the gateway: the supervisor (which stops every worker), or this process."""
        if self.supervisor_pid is not None:
            os.kill(self.supervisor_pid, signal.SIGTERM)
        else:
            self.stopping.set()
