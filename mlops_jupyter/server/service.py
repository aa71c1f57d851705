"""What the REST API does, without HTTP: core calls in, JSON-ready dicts out.

One :class:`MLOpsService` is built when the server starts, around one
:class:`~mlops_jupyter.api.MLOpsPipeline` for the configured tenant. Every call
is blocking (MLflow queries, the gateway's control plane), so the handlers run them on the
service's threads, never on the server's event loop: reads on a small pool, changes one at
a time on a thread of their own (a deploy and a rollback never interleave).

Reads never start the serving gateway; only changes do (as ``deploy_model`` does).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import math
import tempfile
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import PurePath
from typing import Any, TypeVar

from mlops_jupyter.config.settings import Settings
from mlops_jupyter.errors import NotFoundError, ValidationError
from mlops_jupyter.monitoring.alerts.describe import delivery_text
from mlops_jupyter.storage.server_reach import bounded
from mlops_jupyter.tracking import runs_query

T = TypeVar("T")

SERVICE_KEY = "mlops_service"
"""Where the extension keeps its :class:`MLOpsService` in the tornado app's settings."""

RUN_SCAN = 5000
"""At most this many of the newest runs are read to count runs per experiment."""
MAX_RUNS = 1000
DEFAULT_RUNS = 50
MAX_HISTORY_METRICS = 20
"""A run's detail reads the step history of at most this many metrics ..."""
MAX_HISTORY_POINTS = 1000
"""... and keeps at most this many (the last) points of each."""
MAX_CELL_SOURCE = 20000
SORT_METRIC_TAG = runs_query.SORT_METRIC_TAG
"""Experiment tag naming the metric runs are ranked by (shown first in the sidebar)."""
HEALTH_TIMEOUT = 2.0

ACTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # action: (required keys, optional keys)
    "deploy": (("version",), ("traffic_percentage", "config")),
    "traffic": (("traffic",), ()),
    "rollback": ((), ("to_version",)),
    "promote": (("version",), ()),
}
LIVE_ENVIRONMENT = "production"
"""Promote and Rollback in this environment also move the model's ``production`` alias."""


def jsonable(obj: Any) -> Any:
    """A copy of ``obj`` that ``json.dumps`` accepts and ``JSON.parse`` reads back.

    Non-finite floats (NaN, inf) become None; numpy scalars and arrays, tuples, sets,
    datetimes and paths become their plain JSON equivalents.
    """
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    if isinstance(obj, PurePath):
        return str(obj)
    tolist = getattr(obj, "tolist", None)  # numpy scalars and arrays, pandas objects
    if callable(tolist):
        return jsonable(tolist())
    item = getattr(obj, "item", None)
    if callable(item):
        return jsonable(item())
    return str(obj)


class MLOpsService:
    """The REST API's operations for one tenant (see :mod:`mlops_jupyter.server.handlers`).

    Args:
        settings: the resolved settings; their tenant is the only tenant this service sees.
        read_threads: threads for read requests.
        log: where to log (the server's log).
    """

    def __init__(
        self,
        settings: Settings,
        read_threads: int = 4,
        log: logging.Logger | None = None,
        executors: tuple[ThreadPoolExecutor, ThreadPoolExecutor] | None = None,
    ) -> None:
        from mlops_jupyter.api import MLOpsPipeline

        if settings.experiment_name is not None:
            raise ValidationError(
                "The server's settings must not be scoped to one experiment.",
                value=settings.experiment_name,
                allowed="experiment_name=None",
            )
        self.settings = settings
        self.pipeline = MLOpsPipeline("jupyter-server", settings)
        self.log = log or logging.getLogger(__name__)
        # shared with the other tenants' services (tenants.TenantServices) when given
        self._owns_threads = executors is None
        self._reads, self._writes = executors or (
            ThreadPoolExecutor(max(1, read_threads), thread_name_prefix="mlops-api-read"),
            ThreadPoolExecutor(1, thread_name_prefix="mlops-api-change"),
        )

    @property
    def tenant(self) -> str:
        return self.settings.tenant

    # -- threads ---------------------------------------------------------------------------
    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a read off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._reads, partial(fn, *args, **kwargs))

    async def change(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a change off the event loop, one change at a time."""
        return await asyncio.get_running_loop().run_in_executor(self._writes, partial(fn, *args, **kwargs))

    def warm_up(self) -> None:
        """Create the MLflow client in the background, so the first request does not wait."""

        def _warm() -> None:
            try:
                _ = self.pipeline.tracker.store.client
            except Exception as exc:  # a bad store shows up in the first request's error instead
                self.log.warning("mlops_jupyter: could not open the store %s: %s", self.settings.tracking_uri, exc)

        self._reads.submit(_warm)

    def close(self) -> None:
        if not self._owns_threads:
            return
        self._reads.shutdown(wait=False, cancel_futures=True)
        self._writes.shutdown(wait=False, cancel_futures=True)

    # -- info ------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        from mlops_jupyter._version import __version__

        return {
            "tenant": self.tenant,
            "version": __version__,
            "tracking_uri": self.settings.tracking_uri,
            "home": str(self.settings.home),
            "gateway": _gateway_summary(self.pipeline.deployment.gateway_status()),
        }

    # -- experiments and runs --------------------------------------------------------------
    def _experiments(self) -> list[Any]:
        t = self.pipeline.tracker
        return t.store.tenant_experiments(t.tenancy)

    def experiments(self) -> dict[str, Any]:
        """The tenant's experiments, most recently active first, with run counts and the newest run."""
        from mlops_jupyter.config.times import iso_from_ms
        from mlops_jupyter.tracking.tracker import REGISTRY_EXPERIMENT

        t = self.pipeline.tracker
        experiments = self._experiments()
        runs = t.list_experiments(max_results=RUN_SCAN)  # the user's runs: no bookkeeping runs
        complete = len(runs) < RUN_SCAN
        if any(t.tenancy.plain_experiment_name(e.name) == REGISTRY_EXPERIMENT for e in experiments):
            runs += t.list_experiments(experiment_name=REGISTRY_EXPERIMENT, max_results=RUN_SCAN)
        by_exp: dict[str, list[dict[str, Any]]] = {}
        for r in runs:
            by_exp.setdefault(r["experiment_id"], []).append(r)
        out = []
        for e in experiments:
            mine = by_exp.get(e.experiment_id, [])
            last = mine[0] if mine else None
            name = t.tenancy.plain_experiment_name(e.name)
            out.append(
                {
                    "experiment_id": e.experiment_id,
                    "name": name,
                    # runs that only hold registered model versions (versioning without a run)
                    "kind": "registry" if name == REGISTRY_EXPERIMENT else "experiment",
                    "created_at": iso_from_ms(e.creation_time),
                    "updated_at": iso_from_ms(e.last_update_time),
                    "run_count": len(mine),
                    "run_count_complete": complete,
                    "last_run": _run_summary(last) if last else None,
                    "last_run_at": last["start_time"] if last else None,
                    "sort_metric": runs_query.sort_metric_of(e),
                }
            )
        out.sort(key=lambda x: (x["kind"] == "experiment", x["last_run_at"] or x["updated_at"] or ""), reverse=True)
        return {"tenant": self.tenant, "experiments": out}

    def runs(self, experiment: str | None = None, limit: int = DEFAULT_RUNS) -> dict[str, Any]:
        """The newest runs (of one experiment, or of all), with params, metrics and tags, and
        ``key_metrics``: their metric names, the key one first (the experiment's sort metric,
        else the last one logged: :mod:`~mlops_jupyter.tracking.key_metrics`)."""
        t = self.pipeline.tracker
        experiments = self._experiments()
        sort_metrics = {e.experiment_id: runs_query.sort_metric_of(e) for e in experiments}
        if experiment is not None:
            names = sorted(t.tenancy.plain_experiment_name(e.name) for e in experiments)
            if experiment not in names:
                raise NotFoundError(
                    f"No experiment {experiment!r} for tenant {self.tenant!r}.",
                    value=experiment,
                    allowed=names or "(no experiments yet)",
                )
        runs = [
            {
                **r,
                "key_metrics": runs_query.key_metrics(
                    r.get("metrics") or {}, sort_metrics.get(r["experiment_id"]), logged_order=True
                ),
            }
            for r in t.list_experiments(experiment_name=experiment, max_results=limit)
        ]
        return {"tenant": self.tenant, "experiment": experiment, "limit": limit, "runs": runs}

    def run(self, run_id: str) -> dict[str, Any]:
        return self.pipeline.tracker.get_run(run_id)

    def run_detail(self, run_id: str) -> dict[str, Any]:
        """What a run's detail view adds to its row: the per-step history of the metrics logged
        at several steps (for line charts) and the source of the cell that made it."""
        store = self.pipeline.tracker.store
        run = store.get_run(self.pipeline.tracker.tenancy, run_id)
        history: dict[str, list[dict[str, Any]]] = {}
        for key in sorted(run.data.metrics)[:MAX_HISTORY_METRICS]:
            points = store.client.get_metric_history(run_id, key)
            if len({p.step for p in points}) > 1:
                points = sorted(points, key=lambda p: (p.step, p.timestamp))[-MAX_HISTORY_POINTS:]
                history[key] = [{"step": p.step, "value": p.value} for p in points]
        tags = run.data.tags
        return {
            "run_id": run_id,
            "experiment_id": run.info.experiment_id,
            "history": history,
            "cell": {
                "cell_id": tags.get("mlops.cell_id") or None,
                "execution_count": tags.get("mlops.execution_count") or None,
                "notebook": tags.get("mlops.notebook") or None,
                "source": _cell_source(store, run) if tags.get("mlops.kind") == "cell" else None,
            },
        }

    # -- models ----------------------------------------------------------------------------
    def models(self) -> dict[str, Any]:
        """Every model of the tenant: versions, latest, live aliases, where it is deployed."""
        v = self.pipeline.versioning
        deps = self.pipeline.deployment.list_deployments()
        out = []
        for model_id in v.list_models():
            lineage = v.get_lineage(model_id)
            versions = lineage["versions"]
            out.append(
                {
                    "model_id": model_id,
                    "version_count": len(versions),
                    "latest": versions[-1]["version"] if versions else None,
                    "live": lineage["live"],
                    "versions": [_version_summary(x) for x in versions],
                    "edges": [list(e) for e in lineage["edges"]],
                    "deployments": [
                        {
                            "environment": d["environment"],
                            "status": d["status"],
                            "traffic": d["traffic"],
                            "version": d["version"],
                        }
                        for d in deps
                        if d["model_id"] == model_id
                    ],
                }
            )
        return {"tenant": self.tenant, "models": out}

    def versions(self, model_id: str) -> dict[str, Any]:
        return {"model_id": model_id, "versions": self.pipeline.versioning.list_versions(model_id)}

    def lineage(self, model_id: str) -> dict[str, Any]:
        lin = self.pipeline.versioning.get_lineage(model_id)
        return {**lin, "edges": [list(e) for e in lin["edges"]]}

    # -- deployments -----------------------------------------------------------------------
    def _with_health(self, deps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add ``health``: asked of each deployment's own target and endpoint, never starting them."""
        from mlops_jupyter.deployment.client import DeploymentClient

        api = self.pipeline.deployment
        token = api.get_token() if deps else None
        running: dict[str, bool] = {}  # per target name: its status is asked once
        for d in deps:
            target = d.get("target") or "?"
            if d["status"] == "deployed" and target not in running:
                running[target] = bool(api.serving_status(d["model_id"], d["environment"]).get("running"))
            if d["status"] == "failed":
                d["health"] = {"state": "failed", "message": d.get("reason") or "status failed"}
            elif d["status"] != "deployed":  # e.g. a KServe manifest rendered, not applied
                apply = (d.get("target_status") or {}).get("apply")
                d["health"] = {
                    "state": "not_serving",
                    "message": f"{d['status']} on its target ({target}), not served"
                    + (f"; to serve it: {apply}" if apply else ""),
                }
            elif not running[target]:
                d["health"] = {
                    "state": "down",
                    "message": f"Its target ({target}) is not serving from here; the next change "
                    "(or deployment.client()) starts it with every deployment restored.",
                }
            else:
                try:
                    with DeploymentClient(d["endpoint"], token, timeout=HEALTH_TIMEOUT) as c:
                        live = c.info()
                    serving = bool(live.get("traffic"))
                    d["health"] = {
                        "state": "serving" if serving else "not_serving",
                        "message": "serving " + ", ".join(f"{v} {p}%" for v, p in live["traffic"].items())
                        if serving
                        else (live.get("reason") or "no live version"),
                        "live_traffic": live.get("traffic") or {},
                    }
                except Exception as exc:
                    d["health"] = {"state": "unreachable", "message": f"{type(exc).__name__}: {exc}"}
        return deps

    def deployments(self, environment: str | None = None) -> dict[str, Any]:
        d = self.pipeline.deployment
        gateway = d.gateway_status()
        deps = self._with_health(d.list_deployments(environment))
        return {"tenant": self.tenant, "gateway": _gateway_summary(gateway), "deployments": deps}

    def deployment(self, model_id: str, environment: str) -> dict[str, Any]:
        d = self.pipeline.deployment
        dep = d.get_deployment(model_id, environment)
        return self._with_health([dep])[0]

    def change_deployment(self, model_id: str, environment: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Deploy, change traffic, roll back or promote, from a request body.

        Body: ``{"action": "deploy", "version", "traffic_percentage"?, "config"?}``,
        ``{"action": "traffic", "traffic": {version: percent}}``,
        ``{"action": "rollback", "to_version"?}`` or ``{"action": "promote", "version"}``.
        Promote sends 100 % of the environment's traffic to the version. In the
        ``production`` environment, Promote and Rollback also point the model's
        ``production`` alias at the version now served, so the registry and what
        production serves agree.

        Raises:
            ValidationError: an unknown action or key, a missing key, a value of the wrong type.
            DeploymentError: the deploy failed (what served before keeps serving).
        """
        from mlops_jupyter.config.names import validate_environment
        from mlops_jupyter.errors import DeploymentError

        validate_environment(environment)
        self.pipeline.deployment.tenancy.model_name(model_id)
        action = check_action(body)
        d, v = self.pipeline.deployment, self.pipeline.versioning
        alias = None
        result: dict[str, Any] | None = None
        if action == "deploy":
            result = d.deploy_model(
                model_id,
                body["version"],
                environment,
                config=body.get("config"),
                traffic_percentage=body.get("traffic_percentage", 100),
            )
            if result["status"] != "deployed":
                raise DeploymentError(
                    f"Deploying {model_id!r} {result['version']} to {environment!r} failed: {result['reason']} "
                    "What served before keeps serving.",
                    value=result["version"],
                )
        elif action == "traffic":
            d.set_traffic(model_id, environment, body["traffic"])
        elif action == "rollback":
            dep = d.rollback(model_id, environment, to_version=body.get("to_version"))
            if environment == LIVE_ENVIRONMENT:
                alias = v.promote(model_id, dep["version"])
        elif action == "promote":
            dep = d.set_traffic(model_id, environment, {body["version"]: 100})
            if environment == LIVE_ENVIRONMENT:
                alias = v.promote(model_id, dep["version"])
        return {
            "action": action,
            "deployment": self.deployment(model_id, environment),
            "alias": alias,
            "result": result,
        }

    # -- monitoring ------------------------------------------------------------------------
    def drift(self, model_id: str, threshold: float = 0.1, window: Any = None) -> dict[str, Any]:
        """``check_drift`` now. It only reads, as every GET does: alert rules are evaluated by the
        scheduler and ``evaluate_alerts()``, never as a side effect of a check."""
        self.pipeline.deployment.tenancy.model_name(model_id)  # validates the id (models tracked
        # with track_prediction() need not be registered, so an unknown id answers "unknown_model")
        kwargs: dict[str, Any] = {"threshold": threshold}
        if window is not None:
            kwargs["window"] = window
        out = self.pipeline.monitoring.check_drift(model_id, **kwargs)
        return {"model_id": model_id, **out}

    def alerts(self, model_id: str | None = None, limit: int = 100) -> dict[str, Any]:
        """Alert history (newest first: pending, firing, resolved) and the rules' current state."""
        if model_id is not None:
            self.pipeline.deployment.tenancy.model_name(model_id)
        m = self.pipeline.monitoring
        return {
            "tenant": self.tenant,
            "model_id": model_id,
            # each entry's action delivery as one line, as the DriftPanel shows it
            "alerts": [{**a, "delivery_text": delivery_text(a)} for a in m.alerts(model_id=model_id, limit=limit)],
            "rules": m.list_alert_rules(model_id),
        }


def check_action(body: Any) -> str:
    """Validate a deployment change body; returns its action."""
    if not isinstance(body, Mapping):
        raise ValidationError(
            f"The request body must be a JSON object, not {type(body).__name__}.",
            value=type(body).__name__,
            allowed='e.g. {"action": "rollback"}',
        )
    action = body.get("action")
    if action not in ACTIONS:
        raise ValidationError(f"Invalid action {action!r}.", value=action, allowed=list(ACTIONS))
    required, optional = ACTIONS[action]
    missing = [k for k in required if k not in body]
    if missing:
        raise ValidationError(
            f"Action {action!r} needs {', '.join(repr(k) for k in missing)}.",
            value=sorted(body),
            allowed=["action", *required, *optional],
        )
    unknown = sorted(k for k in body if k not in ("action", *required, *optional))
    if unknown:
        raise ValidationError(
            f"Unknown key(s) {unknown} for action {action!r}.", value=unknown, allowed=["action", *required, *optional]
        )
    for key in ("version", "to_version"):
        if (
            key in body
            and not (isinstance(body[key], str) and body[key])
            and not (key == "to_version" and body[key] is None)
        ):
            raise ValidationError(
                f"Invalid {key} {body[key]!r}.",
                value=body[key],
                allowed="a version string such as '1.0.0', an alias or 'latest'",
            )
    return action


def _cell_source(store: Any, run: Any) -> str | None:
    """The ``cell.py`` artifact cell autolog stores with each cell run (None when absent)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    try:
        repo = get_artifact_repository(run.info.artifact_uri, tracking_uri=store.tracking_uri)
        with tempfile.TemporaryDirectory() as tmp, bounded(store.tracking_uri):
            path = repo.download_artifacts("cell.py", tmp)
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read(MAX_CELL_SOURCE)
    except Exception:  # no artifact (an older run, a failed write): the detail just has no source
        return None


def _run_summary(r: Mapping[str, Any]) -> dict[str, Any]:
    return {k: r.get(k) for k in ("run_id", "run_name", "status", "start_time", "end_time", "duration", "metrics")}


def _version_summary(v: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.get(k) for k in ("version", "created_at", "parent", "aliases", "run_id", "sha256", "has_reference")}


def _gateway_summary(g: Mapping[str, Any]) -> dict[str, Any]:
    return {k: g[k] for k in ("running", "url", "pid", "uptime_s", "deployments", "state") if k in g}
