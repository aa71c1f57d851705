"""The ``ray`` target: deployments served by Ray Serve (extra ``mlops-jupyter[ray]``).

Where: the Ray cluster of ``target_options={"address": ...}`` or ``$RAY_ADDRESS``; with
neither, a local Ray started here and bounded for a small machine (``MLOPS_RAY_NUM_CPUS``,
default 2; a 100 MB object store; no dashboard), which lives as long as this process. Every
wait on Ray is bounded by ``MLOPS_RAY_START_TIMEOUT`` (default 300 s, generous: on a machine
whose cores are saturated by other work Ray's agents, Serve's replicas and its proxy start
slowly): the local Ray's agents get that long to register (Ray's own default is 15 s), and a
change waits that long for its replicas and for the ingress; an error says what it waited for.
A record keeps the address of the cluster it runs on, so another process (the gateway's alert
scheduler, the server extension) changes it on that cluster
(:meth:`RayServeTarget.record_options`). An address nothing answers at is never handed to
``ray.init``, which would wait for it without end (over 5 minutes, measured): a recorded one
is a local Ray that stopped with its process, so a new local Ray serves the records again; a
given one is refused at once (:func:`reachable`).

What runs (the serving code is the gateway's, :mod:`mlops_jupyter.gateway.ray_app`, named by
import path as Serve's ``serve run module:app`` does, so this layer never imports it):

- one Serve application per model version in use (``mlops-<tenant>-<env>-<model>-<version>``),
  ``num_replicas`` = ``config["replicas"]`` and ``ray_actor_options`` ``num_cpus`` /
  ``memory`` from ``config["resources"]`` (Ray enforces both; without resources each
  replica asks ``MLOPS_RAY_REPLICA_CPUS``, default 0.25 CPU);
- one ingress application (``mlops-ingress`` on route ``/`` of Serve's HTTP proxy) with the
  local gateway's URLs and contract; its routing table and token digests are its
  ``user_config``.

A change runs in this order, each step one of Serve's own updates, so no request fails:
start (and wait for) the replicas of new versions, then reconfigure the ingress in place
(new routing table), then delete the applications of versions no longer routed. Requests
already sent to a removed version finish: Serve drains a replica before stopping it.

Every prediction is appended by the replica that made it to the home's prediction log
(written about once a second per replica), so drift, performance and alerts read Ray
deployments as they read local ones. The home must therefore be on a filesystem every
Ray node sees (it is, for a local Ray).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections.abc import Mapping
from typing import Any

from mlops_jupyter.config import env
from mlops_jupyter.deployment.plan import Plan
from mlops_jupyter.deployment.targets.planned import StoreBackedTarget, TargetFailure
from mlops_jupyter.errors import GatewayError, ValidationError

log = logging.getLogger(__name__)

APP_MODULE = "mlops_jupyter.gateway.ray_app"
INGRESS_APP = "mlops-ingress"
OPTIONS = ("address", "http_port")
DEFAULTS = {
    env.MLOPS_RAY_NUM_CPUS: 2.0,
    env.MLOPS_RAY_REPLICA_CPUS: 0.25,
    env.MLOPS_RAY_INGRESS_CPUS: 0.1,
    env.MLOPS_RAY_MAX_ONGOING: 64,
    env.MLOPS_RAY_START_TIMEOUT: 300.0,
}
OBJECT_STORE_BYTES = 100 * 1024 * 1024
FLUSH_INTERVAL = 1.0
_MEMORY_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def setting(name: str) -> float:
    """A numeric setting: ``$name`` if set, else its default (:data:`DEFAULTS`)."""
    raw = os.environ.get(name)
    if raw is None:
        return DEFAULTS[name]
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ValidationError(f"Invalid {name}={raw!r}.", value=raw, allowed="a positive number")
    return value


def actor_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """``ray_actor_options`` of a version's replicas from a validated ``config``.

    Example:
        >>> actor_options({"resources": {"cpu": "500m", "memory": "256Mi"}})
        {'num_cpus': 0.5, 'memory': 268435456}
    """
    res = config.get("resources") or {}
    cpu = res.get("cpu")
    out: dict[str, Any] = {
        "num_cpus": (float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu))
        if cpu
        else setting(env.MLOPS_RAY_REPLICA_CPUS)
    }
    mem = res.get("memory")
    if mem:
        m = re.fullmatch(r"([\d.]+)([A-Za-z]*)", mem)
        out["memory"] = int(float(m.group(1)) * _MEMORY_UNITS.get(m.group(2), _MEMORY_UNITS.get(m.group(2)[:1], 1)))
    return out


def app_name(tenant: str, environment: str, model_id: str, version: str) -> str:
    """The Serve application of one deployed version."""
    return f"mlops-{tenant}-{environment}-{model_id}-{version}"


PROBE_TIMEOUT_S = 2.0
"""How long :func:`reachable` waits for a Ray address to accept a connection."""


def reachable(address: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether something accepts connections at a plain ``host:port`` Ray (GCS) address;
    other forms (``auto``, ``ray://...``) are left to Ray and count as reachable."""
    host, sep, port = address.rpartition(":")
    if "://" in address or not sep or not port.isdigit():
        return True
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except OSError:
        return False


class RayServeTarget(StoreBackedTarget):
    """The ``ray`` target (see the module docstring).

    Args:
        home: the storage home (records, tokens and the prediction log).
        options: ``address`` (a Ray address; default ``$RAY_ADDRESS``, else a local Ray) and
            ``http_port`` (the port Serve's proxy binds when this target starts Serve;
            default a free one).
    """

    name = "ray"
    config_effect = "enforced by Ray Serve: replicas -> num_replicas, resources -> ray_actor_options (num_cpus, memory)"

    def __init__(self, home: Any, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(home, options)
        unknown = sorted(set(self.options) - set(OPTIONS))
        if unknown:
            raise ValidationError(f"Unknown target_options {unknown} for 'ray'.", value=unknown, allowed=OPTIONS)
        self.address = self.options.get("address") or os.environ.get("RAY_ADDRESS") or None
        self.cluster_address: str | None = None
        """The address of the cluster in use (the local one's GCS address when started here)."""
        self.started_local = False
        self._url: str | None = None
        self._generation = 0

    @classmethod
    def record_options(cls, rec: Mapping[str, Any]) -> dict[str, Any]:
        """The options a record was made with, and the address of the cluster it runs on (so
        a process that did not start the local Ray reaches the same one)."""
        options = super().record_options(rec)
        address = (rec.get("extra") or {}).get("ray_address")
        if not options.get("address") and address and address != "local":
            if reachable(address):
                options["address"] = address
            else:
                log.warning(
                    "mlops_jupyter: the Ray cluster at %s that served %s/%s is gone (a local Ray stops with the "
                    "process that started it); a new local Ray will serve the stored deployments again.",
                    address,
                    rec.get("environment"),
                    rec.get("model_id"),
                )
        return options

    # -- the cluster -----------------------------------------------------------------------
    def ensure_running(self) -> dict[str, Any]:
        import ray
        from ray import serve

        if not ray.is_initialized():
            self._start_ray()
        if self.cluster_address is None:
            self.cluster_address = self.address or ray.get_runtime_context().gcs_address
        if self._url is None:
            from ray.serve.context import _get_global_client
            from ray.serve.exceptions import RayServeException

            try:  # a Serve already running (started by another target object or process) is reused
                _get_global_client()
            except RayServeException:
                port = int(self.options.get("http_port") or _free_port())
                serve.start(http_options={"host": "127.0.0.1", "port": port})
            http = _get_global_client().http_config
            host = "127.0.0.1" if http.host in ("0.0.0.0", "::", "") else http.host
            self._url = f"http://{host}:{http.port}"
            if INGRESS_APP not in serve.status().applications:
                self._restore()
            else:  # a Serve this process did not configure: adopt its routing table's generation
                self._generation = int(self._health().get("generation") or 0)
        return {"url": self._url, "address": self.address or "local", "started_local": self.started_local}

    def _start_ray(self) -> None:
        """Connect to the cluster at :attr:`address`, or start a local one (bounded for a small
        machine), giving its agents ``MLOPS_RAY_START_TIMEOUT`` seconds to register."""
        import ray

        if self.address:
            if not reachable(self.address):  # ray.init would wait for it without end
                raise GatewayError(
                    f"No Ray cluster answers at {self.address!r} (nothing accepted a connection within "
                    f"{PROBE_TIMEOUT_S:g} s).",
                    value=self.address,
                    allowed="the address of a running Ray cluster (ray start --head prints it), or none: "
                    "target_options without 'address' and no RAY_ADDRESS start a local Ray",
                )
            ray.init(address=self.address, log_to_driver=False)
            return
        cpus, timeout = setting(env.MLOPS_RAY_NUM_CPUS), setting(env.MLOPS_RAY_START_TIMEOUT)
        t0 = time.monotonic()
        try:
            ray.init(
                address="local",  # a new one: never a cluster another process left in /tmp/ray
                num_cpus=cpus,
                object_store_memory=OBJECT_STORE_BYTES,
                include_dashboard=False,
                log_to_driver=False,
                _system_config={"agent_register_timeout_ms": int(timeout * 1000)},
            )
        except Exception as exc:
            if ray.is_initialized():
                ray.shutdown()
            raise GatewayError(
                f"A local Ray ({cpus:g} CPUs) did not start after {time.monotonic() - t0:.0f} s: waited for its GCS, "
                f"raylet and agents (agents get {env.MLOPS_RAY_START_TIMEOUT}={timeout:.0f} s to register; a "
                f"saturated machine starts them slowly): {type(exc).__name__}: {exc}",
                value=timeout,
                allowed=f"a larger {env.MLOPS_RAY_START_TIMEOUT}, or a running cluster in RAY_ADDRESS",
            ) from exc
        self.started_local = True
        log.warning(
            "mlops_jupyter: no Ray address given (target_options={'address': ...} or RAY_ADDRESS): "
            "started a local Ray with %s CPUs for the 'ray' target in %.1f s; it stops with this process.",
            cpus,
            time.monotonic() - t0,
        )

    def _restore(self) -> None:
        """Serve every stored Ray deployment again (a new cluster, or after :meth:`stop`)."""
        recs = [r for r in self.records() if r["traffic"]]
        self._apply_config(recs, recs, _generation())
        self._wait_versions(recs)

    def _http(self) -> tuple[str, int]:
        u = self._url.rsplit(":", 1)
        return u[0].split("//", 1)[1], int(u[1])

    def _version_app(self, rec: Mapping[str, Any], version: str) -> dict[str, Any]:
        spec = dict(rec["versions"][version])
        spec.update(tenant=rec["tenant"], model_id=rec["model_id"], version=version, environment=rec["environment"])
        config = rec.get("config") or {}
        return {
            "name": app_name(rec["tenant"], rec["environment"], rec["model_id"], version),
            "route_prefix": None,
            "import_path": f"{APP_MODULE}:build_version",
            "args": {"home": str(self.home.absolute()), "spec": spec, "flush_interval": FLUSH_INTERVAL},
            "deployments": [
                {
                    "name": "model",
                    "num_replicas": int(config.get("replicas") or 1),
                    "ray_actor_options": actor_options(config),
                    "max_ongoing_requests": int(setting(env.MLOPS_RAY_MAX_ONGOING)),
                }
            ],
        }

    def _ingress_app(self, routed: list[Mapping[str, Any]], generation: int) -> dict[str, Any]:
        from mlops_jupyter.deployment import tokens as auth

        routes = [
            {
                "tenant": r["tenant"],
                "environment": r["environment"],
                "model_id": r["model_id"],
                "traffic": dict(r["traffic"]),
                "apps": {v: app_name(r["tenant"], r["environment"], r["model_id"], v) for v in r["traffic"]},
                "describe": _describe(r),
            }
            for r in routed
        ]
        tokens = {d.hex(): who for d, who in auth.load_digests(self.home).items()}
        return {
            "name": INGRESS_APP,
            "route_prefix": "/",
            "import_path": f"{APP_MODULE}:build_ingress",
            "args": {},
            "deployments": [
                {
                    "name": "ingress",
                    "num_replicas": 1,
                    "ray_actor_options": {"num_cpus": setting(env.MLOPS_RAY_INGRESS_CPUS)},
                    "max_ongoing_requests": int(setting(env.MLOPS_RAY_MAX_ONGOING)),
                    "user_config": {"routes": routes, "tokens": tokens, "generation": generation},
                }
            ],
        }

    def _apply_config(self, routed: list[Mapping[str, Any]], served: list[Mapping[str, Any]], generation: int) -> None:
        """Give Serve the whole desired state (Serve's declarative config, as ``serve deploy``):
        the ingress routing ``routed`` and one application per version of ``served``. Serve
        leaves unchanged applications alone, updates changed ones in place and deletes the
        ones no longer listed."""
        from ray.serve.context import _get_global_client
        from ray.serve.schema import ServeDeploySchema

        apps: dict[str, dict[str, Any]] = {}
        for rec in served:
            for v in rec["traffic"]:
                app = self._version_app(rec, v)
                apps[app["name"]] = app
        host, port = self._http()
        config = ServeDeploySchema(
            http_options={"host": host, "port": port},
            applications=[self._ingress_app(routed, generation), *apps.values()],
        )
        _get_global_client().deploy_apps(config)
        self._generation = generation

    def _wait_versions(self, wanted: list[Mapping[str, Any]]) -> None:
        """Wait until every version application of ``wanted`` runs its replicas (or failed)."""
        from ray import serve

        names = {app_name(r["tenant"], r["environment"], r["model_id"], v) for r in wanted for v in r["traffic"]}
        timeout = setting(env.MLOPS_RAY_START_TIMEOUT)
        deadline = time.monotonic() + timeout
        while True:
            apps = serve.status().applications
            states = {n: str(apps[n].status).rsplit(".", 1)[-1] if n in apps else "MISSING" for n in names}
            failed = {n: apps[n].message for n, st in states.items() if st in ("DEPLOY_FAILED", "UNHEALTHY")}
            if failed:
                raise TargetFailure(_last_error("; ".join(f"{n}: {m}" for n, m in failed.items())))
            if all(st == "RUNNING" for st in states.values()):
                return
            if time.monotonic() > deadline:
                raise TargetFailure(
                    f"Ray Serve did not start the replicas of {sorted(names)} within {timeout:.0f} s "
                    f"({env.MLOPS_RAY_START_TIMEOUT}); application states: {states}"
                )
            time.sleep(0.1)

    def _health(self) -> dict[str, Any]:
        """The ingress's ``GET /health`` answer (raises OSError/ValueError if it has none)."""
        import http.client
        import json

        host, port = self._http()
        conn = http.client.HTTPConnection(host, port, timeout=5)
        try:
            conn.request("GET", "/health")
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise ValueError(f"HTTP {resp.status}: {body[:200]!r}")
        return json.loads(body)

    def _wait_ingress(self, generation: int) -> None:
        """Wait until the ingress serves the routing table of ``generation``."""
        import http.client

        timeout = setting(env.MLOPS_RAY_START_TIMEOUT)
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self._health()
                if last.get("generation") == generation:
                    return
            except (OSError, ValueError, http.client.HTTPException) as exc:
                last = exc
            time.sleep(0.05)
        raise TargetFailure(
            f"Ray Serve's ingress did not answer GET /health with routing table generation {generation} "
            f"within {timeout:.0f} s ({env.MLOPS_RAY_START_TIMEOUT}); last answer: {last}"
        )

    # -- changes -------------------------------------------------------------------------
    def realize(self, change: Plan, record: Mapping[str, Any]) -> dict[str, Any]:
        """Three declarative updates, so that no request fails (see the module docstring)."""
        self.ensure_running()
        key = tuple(change.key)
        before = [r for r in self.records() if r["traffic"]]
        others = [r for r in before if _key(r) != key]
        after = [*others, record]
        # 1. the new versions' replicas start (and changed ones update) beside the old ones;
        # a version in both records takes the new record's config (listed last)
        both = [*before, record]
        self._apply_config(before, both, self._generation)
        try:
            self._wait_versions([record])
        except TargetFailure:
            self._apply_config(before, before, self._generation)  # the failed applications go
            raise
        # 2. the ingress routes by the new table (in place); 3. the versions no longer routed go
        generation = _generation()
        self._apply_config(after, both, generation)
        self._wait_ingress(generation)
        self._apply_config(after, after, generation)
        return {
            "ray_address": self.cluster_address,
            "url": self._url,
            "applications": [app_name(*key, v) for v in record["traffic"]],
        }

    def remove(self, change: Plan) -> None:
        self.ensure_running()
        after = [r for r in self.records() if r["traffic"]]  # the record is already deleted
        gone = [change.current] if change.current is not None and change.current["traffic"] else []
        generation = _generation()
        self._apply_config(after, [*after, *gone], generation)
        self._wait_ingress(generation)
        self._apply_config(after, after, generation)

    # -- reading -------------------------------------------------------------------------
    def endpoint(self, tenant: str, environment: str, model_id: str) -> str:
        """The deployment's URL on Serve's proxy: this process's Serve when Ray runs here, else
        the URL its record kept when it was last changed (Ray is not imported for this)."""
        import sys

        ray = sys.modules.get("ray")
        url = self._url
        if url is None and ray is not None and ray.is_initialized():
            url = self.ensure_running()["url"]
        if url is None:
            url = ((self.get(tenant, environment, model_id) or {}).get("extra") or {}).get("url")
        return f"{url or 'http://127.0.0.1:PORT'}/tenants/{tenant}/{environment}/models/{model_id}"

    def verify(self) -> dict[str, Any]:
        """The ingress answers ``/health`` over Serve's proxy with the current routing table."""
        self.ensure_running()
        self._wait_ingress(self._generation)
        return {"status": "ok", "generation": self._generation}

    def status(self) -> dict[str, Any]:
        """Whether Ray Serve serves, and every application's state and replicas (from
        ``serve.status()``)."""
        import ray

        out: dict[str, Any] = {"running": False, "target": self.name, "home": str(self.home.absolute())}
        if not ray.is_initialized() or self._url is None:
            return out
        from ray import serve

        apps = serve.status().applications
        out.update(
            running=INGRESS_APP in apps,
            url=self._url,
            address=self.address or "local",
            started_local=self.started_local,
            deployments=len(self.records()),
            applications={
                name: {
                    "status": str(a.status).rsplit(".", 1)[-1],
                    "replicas": {
                        d: {str(k).rsplit(".", 1)[-1]: n for k, n in s.replica_states.items()}
                        for d, s in a.deployments.items()
                    },
                }
                for name, a in apps.items()
                if name.startswith("mlops-")
            },
        )
        return out

    def stop(self) -> dict[str, Any]:
        """Shut Serve down (and the local Ray if this target started it); records stay stored."""
        import ray

        if not ray.is_initialized():
            return {"stopped": False, "reason": "Ray is not running in this process"}
        from ray import serve

        serve.shutdown()
        if self.started_local:
            ray.shutdown()
            self.started_local = False
        self._url = self.cluster_address = None
        return {"stopped": True, "target": self.name}


def _describe(rec: Mapping[str, Any]) -> dict[str, Any]:
    """What ``GET /tenants/T/E/models/M`` answers (the local gateway's fields)."""
    return {
        "tenant": rec["tenant"],
        "environment": rec["environment"],
        "model_id": rec["model_id"],
        "deployment_id": rec.get("deployment_id"),
        "status": rec.get("status"),
        "reason": rec.get("reason"),
        "traffic": dict(rec["traffic"]),
        "revision": rec.get("revision"),
        "config": rec.get("config") or {},
        "versions": [{"version": v, "sha256": s.get("sha256")} for v, s in rec["versions"].items()],
        "updated_at": rec.get("updated_at"),
        "target": "ray",
    }


def _key(rec: Mapping[str, Any]) -> tuple[str, str, str]:
    return rec["tenant"], rec["environment"], rec["model_id"]


def _generation() -> int:
    """A new routing-table generation (unique and increasing: the clock in ns)."""
    return time.time_ns()


def _last_error(exc: Any) -> str:
    """The useful line of a Serve deployment failure (the replica's exception)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    errs = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception):", ln)]
    return f"Ray Serve could not start the version: {errs[-1] if errs else (lines[-1] if lines else exc)}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
