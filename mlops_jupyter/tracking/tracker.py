"""Experiment tracking: runs owned by explicit handles, written by a background writer.

There is no hidden global "active run": a tracker owns its current run, two trackers in one
process never collide, and starting a run while one is open ends the open one first, so
re-running a notebook cell never hits MLflow's "Run ... is already active".
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from mlops_jupyter.config.settings import Settings
from mlops_jupyter.config.times import iso_from_ms, now_ms
from mlops_jupyter.errors import (
    InvalidNameError,
    InvalidParamError,
    RunStateError,
    ValidationError,
)
from mlops_jupyter.storage import store as store_mod
from mlops_jupyter.storage.server_reach import bounded_by_server
from mlops_jupyter.storage.store import TrackingStore
from mlops_jupyter.tracking import param_types, server_auth
from mlops_jupyter.tracking.key_metrics import in_logged_order
from mlops_jupyter.tracking.validation import validate_metrics, validate_params, validate_step, validate_tags

log = logging.getLogger(__name__)

# Our status words (the seed's "completed") and MLflow's.
STATUS_TO_MLFLOW = {"completed": "FINISHED", "failed": "FAILED", "killed": "KILLED"}
MLFLOW_TO_STATUS = {
    "FINISHED": "completed",
    "FAILED": "failed",
    "KILLED": "killed",
    "RUNNING": "running",
    "SCHEDULED": "scheduled",
}

REGISTRY_EXPERIMENT = "model-registry"
"""The experiment of the runs that only hold registered model versions (a version made
without a run of the user's gets one here; see ``ModelVersioning.create_version``)."""
BOOKKEEPING_EXPERIMENTS = frozenset({REGISTRY_EXPERIMENT})
"""Experiments of the toolkit's own bookkeeping runs (reserved names in each tenant).

:meth:`ExperimentTracker.list_experiments` and ``runs_frame`` leave them out unless one is
asked for by name. MLflow's registry makes no runs of its own, so an MLflow user never
finds registry runs among the runs they logged, and the guide's
``max(tracker.list_experiments(), key=...)`` must see only those; naming the experiment
lists its runs, as ``mlflow.search_runs(experiment_names=[...])`` would. The runs stay
reachable by run id (``get_run``) and through ``ModelVersioning.get_lineage``."""

_OPEN_RUNS: weakref.WeakSet[ActiveRun] = weakref.WeakSet()
_AMBIENT: Any = None


def set_ambient_run(run: Any) -> None:
    """Set (or clear) the run that trackers with no open run of their own log into: an
    :class:`ActiveRun`, or an object whose ``materialize(tracker)`` opens one on first use
    and returns it (None when that tracker is not its store and tenant).

    Cell autolog sets the cell's run here while the cell executes, so explicit
    ``tracker.log_*`` calls in the cell go to the cell's run. Only trackers on the same store
    and tenant use it.
    """
    global _AMBIENT
    _AMBIENT = run


def normalize_status(status: Any) -> str:
    """Accept ``completed|failed|killed`` or MLflow's ``FINISHED|FAILED|KILLED``; return MLflow's."""
    if isinstance(status, str):
        s = status.strip()
        if s.lower() in STATUS_TO_MLFLOW:
            return STATUS_TO_MLFLOW[s.lower()]
        if s.upper() in STATUS_TO_MLFLOW.values():
            return s.upper()
    raise ValidationError(
        f"Invalid run status {status!r}.",
        value=status,
        allowed=list(STATUS_TO_MLFLOW) + list(STATUS_TO_MLFLOW.values()),
    )


class ActiveRun:
    """A run opened by :meth:`ExperimentTracker.start_experiment`.

    Use it as a context manager; on exit the run ends FINISHED, or FAILED if the block
    raised. It also logs directly: ``run.log_metrics({...})``.
    """

    def __init__(
        self,
        tracker: ExperimentTracker,
        run_id: str,
        experiment_id: str,
        experiment_name: str,
        run_name: str,
        artifact_uri: str,
        start_ms: int,
    ) -> None:
        self.tracker = tracker
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.artifact_uri = artifact_uri
        self.start_ms = start_ms
        self.params: dict[str, str] = {}  # as stored (MLflow keeps strings)
        self.param_values: dict[str, Any] = {}  # as the user passed them (typed), in logging order
        self.metrics: dict[str, float] = {}
        self._metric_pos: dict[str, tuple[int, int]] = {}
        self.status = "RUNNING"
        self.result: dict[str, Any] | None = None
        self._lock = threading.Lock()
        _OPEN_RUNS.add(self)

    @property
    def is_open(self) -> bool:
        return self.status == "RUNNING"

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.tracker.log_params(params, run=self)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self.tracker.log_metrics(metrics, step=step, run=self)

    def end(self, status: str = "completed") -> dict[str, Any]:
        return self.tracker.end_experiment(status=status, run=self)

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.is_open:
            if exc_type is not None:
                self.tracker.set_tags({"mlops.error": f"{exc_type.__name__}: {exc}"[:8000]}, run=self)
            self.tracker.end_experiment(status="failed" if exc_type else "completed", run=self)

    def __repr__(self) -> str:
        return f"<ActiveRun {self.run_name!r} run_id={self.run_id} status={self.status}>"


class ExperimentTracker:
    """Tracks experiments (MLflow runs) for one tenant.

    Args:
        settings: resolved settings (see :func:`mlops_jupyter.create_experiment_tracker`).

    Example:
        >>> tracker = create_experiment_tracker(tenant_id="tenant_123")
        >>> with tracker.start_experiment("ticket_classifier_v1", tags={"model_type": "clf"}):
        ...     tracker.log_params({"max_depth": 10})
        ...     tracker.log_metrics({"accuracy": 0.95})
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tenancy = settings.tenancy
        self.store = TrackingStore.for_settings(settings)
        self._run: ActiveRun | None = None
        self.last_run: ActiveRun | None = None

    # -- runs --------------------------------------------------------------------------
    @property
    def active_run(self) -> ActiveRun | None:
        return self._run if self._run is not None and self._run.is_open else None

    @bounded_by_server
    def start_experiment(
        self,
        experiment_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        *,
        run_name: str | None = None,
        parent_run_id: str | None = None,
        parent: ActiveRun | None = None,
    ) -> ActiveRun:
        """Open a run and make it this tracker's current run.

        The run goes into the settings' ``experiment_name`` if one was given (then
        ``experiment_name`` here names the run), else into the experiment
        ``experiment_name``. A run still open on this tracker is ended first (FINISHED).

        Args:
            experiment_name: experiment (or run) name.
            tags: tags for the run.
            run_name: explicit run name (default: ``experiment_name``).
            parent_run_id: make this a child run of another run of the tenant.
            parent: the same, given as an open :class:`ActiveRun` (no store round trip).

        Returns:
            An :class:`ActiveRun`, also a context manager.

        Raises:
            InvalidNameError: bad experiment name or tag key.
            TenantAccessError: ``parent_run_id`` belongs to another tenant.
            ServerUnreachableError: the tracking server could not be reached within the
                ``MLOPS_SERVER_*`` bounds (see :mod:`~mlops_jupyter.storage.server_reach`).
        """
        exp = self.settings.experiment_name or experiment_name
        if exp is None:
            raise InvalidNameError(
                "start_experiment() needs an experiment name (none given, and the tracker has no "
                "default experiment_name).",
                allowed="e.g. tracker.start_experiment('ticket_classifier_v1')",
            )
        name = run_name or experiment_name or exp
        user_tags = validate_tags(tags)
        if self.active_run is not None:
            log.warning("mlops_jupyter: ending open run %r before starting %r", self._run.run_name, name)
            self.end_experiment()
        what = f"experiment {self.tenancy.experiment_name(exp)!r}"
        with server_auth.refused_as_tenant_error(what, self.store.tracking_uri):
            exp_id = self.store.experiment_id(self.tenancy, exp)
        server_auth.share(self.store.tracking_uri, "experiment", exp_id)  # to the tenant's members
        run_tags = self.tenancy.tags(user_tags)
        if isinstance(parent, ActiveRun):
            if parent.tracker.store is not self.store or parent.tracker.tenancy.tenant != self.tenancy.tenant:
                raise RunStateError(f"Parent run {parent.run_id} is on another store or tenant.")
            run_tags["mlflow.parentRunId"] = parent.run_id
        elif parent_run_id is not None:
            self.store.get_run(self.tenancy, parent_run_id)
            run_tags["mlflow.parentRunId"] = parent_run_id
        start = now_ms()
        with server_auth.refused_as_tenant_error(what, self.store.tracking_uri):  # e.g. READ but no EDIT
            created = self.store.create_run(exp_id, name, run_tags, start)
        self._run = self.last_run = ActiveRun(self, created.run_id, exp_id, exp, name, created.artifact_uri, start)
        return self._run

    def _current(self, run: ActiveRun | None) -> ActiveRun:
        run = run or self._run
        amb = _AMBIENT
        if amb is not None and not isinstance(amb, ActiveRun) and (run is None or not run.is_open):
            amb = amb.materialize(self)  # a deferred cell run (notebook_capture.DeferredRun), opened on first log
        if (
            (run is None or not run.is_open)
            and amb is not None
            and amb.is_open
            and amb.tracker.store is self.store
            and amb.tracker.tenancy.tenant == self.tenancy.tenant
        ):
            return amb
        if run is None or not run.is_open:
            raise RunStateError(
                "No open run: call tracker.start_experiment(NAME) first"
                + (f" (the last run {run.run_name!r} has ended)." if run is not None else "."),
            )
        if run.tracker is not self and run is not amb:
            raise RunStateError(f"Run {run.run_id} belongs to another tracker.")
        return run

    def log_params(self, params: Mapping[str, Any], *, run: ActiveRun | None = None) -> None:
        """Log hyper-parameters. Values are stringified; MLflow's 6000-character limit is
        enforced with an error (never truncated). Re-logging a key with another value in the
        same run is refused, as in MLflow. The Python types of non-string values are
        recorded with them (:mod:`~mlops_jupyter.tracking.param_types`), so reads
        return ``100``, not ``"100"``."""
        r = self._current(run)
        values = validate_params(params)
        with r._lock:
            for k, v in values.items():
                old = r.params.get(k)
                if old is not None and old != v:
                    raise InvalidParamError(
                        f"Param {k!r} was already logged as {old!r} in this run; MLflow does not allow "
                        f"changing it to {v!r}.",
                        value=v,
                        allowed=f"{old!r}, or a new key / a new run",
                    )
            fresh = {k: v for k, v in values.items() if k not in r.params}
            if not fresh:
                return
            r.params.update(fresh)
            r.param_values.update({k: params[k] for k in fresh})
            typed = any(param_types.type_of(params[k]) is not None for k in fresh)
            # the whole type record, in the params' batch; under the run's lock, so two
            # threads logging into one run submit their records in order
            self.store.log(r.run_id, params=fresh, tags=param_types.encode(r.param_values) if typed else None)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None, *, run: ActiveRun | None = None) -> None:
        """Log metrics at ``step`` (default 0, as MLflow). Values must be finite real numbers."""
        r = self._current(run)
        values = validate_metrics(metrics)
        step = validate_step(step)
        ts = now_ms()
        with r._lock:
            for k, v in values.items():
                pos = r._metric_pos.get(k)
                if pos is None or (step, ts) >= pos:
                    r.metrics[k] = v
                    r._metric_pos[k] = (step, ts)
        self.store.log(r.run_id, metrics=values, step=step, ts=ts)

    def set_tags(self, tags: Mapping[str, Any], *, run: ActiveRun | None = None) -> None:
        r = self._current(run)
        values = validate_tags(tags)
        if values:
            self.store.log(r.run_id, tags=values)

    def log_text(self, text: str, artifact_file: str, *, run: ActiveRun | None = None) -> None:
        """Write ``text`` as the artifact ``artifact_file`` of the run, in the background."""
        from mlops_jupyter.tracking.validation import validate_key

        r = self._current(run)
        validate_key(artifact_file, "artifact file")
        self.store.log_text(r.artifact_uri, artifact_file, str(text))

    def log_artifact(
        self, path: str | os.PathLike[str], artifact_path: str | None = None, *, run: ActiveRun | None = None
    ) -> str:
        """Copy a file or folder into the run's artifacts; returns its artifact URI."""
        from mlops_jupyter.errors import NotFoundError

        r = self._current(run)
        local = os.fspath(path)
        if not os.path.exists(local):
            raise NotFoundError(
                f"Artifact path {local!r} does not exist.", value=local, allowed="an existing file or folder"
            )
        self.store.log_artifact(r.artifact_uri, local, artifact_path)
        name = os.path.basename(os.path.normpath(local))
        return "/".join(p for p in (r.artifact_uri, artifact_path, name) if p)

    def end_experiment(
        self, status: str = "completed", *, run: ActiveRun | None = None, wait: bool = True
    ) -> dict[str, Any]:
        """End the current run, store everything logged, and return the seed's summary.

        Args:
            status: ``completed`` (default), ``failed`` or ``killed`` (MLflow's
                ``FINISHED``/``FAILED``/``KILLED`` are accepted too).
            wait: block until the store has everything (default). With False the run's
                data is journaled (safe from a kill) and stored in the background.

        Returns:
            ``{"experiment_id", "run_id", "status", "metrics", "params"}`` plus
            ``run_name`` and ``experiment_name``. ``params`` holds the values as they were
            passed, as :meth:`list_experiments` returns them.
        """
        mlflow_status = normalize_status(status)
        r = self._current(run)
        with r._lock:
            r.status = mlflow_status
        self.store.end_run(r.run_id, mlflow_status)
        _OPEN_RUNS.discard(r)
        if wait:
            self.store.flush()
        if self._run is r:
            self._run = None
        r.result = {
            "experiment_id": r.experiment_id,
            "run_id": r.run_id,
            "status": MLFLOW_TO_STATUS[mlflow_status],
            "metrics": dict(r.metrics),
            "params": {k: r.param_values.get(k, v) for k, v in r.params.items()},
            "run_name": r.run_name,
            "experiment_name": r.experiment_name,
        }
        return r.result

    def flush(self, timeout: float | None = 120.0) -> None:
        """Block until everything logged so far is stored."""
        self.store.flush(timeout)

    def isolation(self) -> server_auth.Isolation:
        """Which tenant isolation is in force on this store: ``server`` (MLflow's auth app
        enforces it for every client) or ``namespace`` (our filter only); see
        :mod:`mlops_jupyter.tracking.server_auth`."""
        return server_auth.isolation_mode(self.store.tracking_uri)

    # -- reads -------------------------------------------------------------------------
    def list_experiments(
        self,
        experiment_name: str | None = None,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        max_results: int = 10000,
    ) -> list[dict[str, Any]]:
        """List the tenant's runs, newest first.

        The runs of the user's experiments: the toolkit's bookkeeping runs (the
        ``model-registry`` experiment, see :data:`BOOKKEEPING_EXPERIMENTS`) are listed only
        when that experiment is asked for by name.

        Args:
            experiment_name: only this experiment (default: the settings' experiment if
                set, else every experiment of the tenant but the bookkeeping ones).
            filter_string: an MLflow search filter, e.g. ``"metrics.accuracy > 0.9"``.
            order_by: MLflow order clauses, e.g. ``["metrics.accuracy DESC"]``.
            max_results: at most this many runs.

        Returns:
            Dicts with ``run_id``, ``run_name``, ``experiment_id``, ``experiment_name``,
            ``status``, ``start_time``, ``end_time``, ``duration``, ``params`` (typed as
            logged, as :meth:`end_experiment` returns them), ``metrics``, ``tags``.
        """
        from mlflow.exceptions import MlflowException

        self.store.flush()
        if not isinstance(max_results, int) or max_results < 1:
            raise ValidationError(f"Invalid max_results {max_results!r}.", value=max_results, allowed="an int >= 1")
        name = experiment_name or self.settings.experiment_name
        if name is not None:
            with server_auth.refused_as_tenant_error(f"experiment {self.tenancy.experiment_name(name)!r}"):
                exp = self.store.client.get_experiment_by_name(self.tenancy.experiment_name(name))
            exps = [exp] if exp is not None and self.tenancy.owns_experiment(exp) else []
        else:
            exps = [
                e
                for e in self.store.tenant_experiments(self.tenancy)
                if self.tenancy.plain_experiment_name(e.name) not in BOOKKEEPING_EXPERIMENTS
            ]
        if not exps:
            return []
        names = {e.experiment_id: self.tenancy.plain_experiment_name(e.name) for e in exps}
        tenant_filter = f"tags.`mlops.tenant` = '{self.tenancy.tenant}'"
        flt = f"{tenant_filter} and {filter_string}" if filter_string else tenant_filter
        ids = list(names)
        out: list[dict[str, Any]] = []
        token = None
        try:
            while len(out) < max_results:
                page = self.store.client.search_runs(
                    ids,
                    filter_string=flt,
                    order_by=order_by or ["attributes.start_time DESC"],
                    max_results=min(max_results - len(out), 50000),
                    page_token=token,
                )
                out.extend(run_to_dict(r, names) for r in page if self.tenancy.owns_tags(r.data.tags))
                token = page.token
                if not token:
                    break
        except MlflowException as exc:
            raise ValidationError(f"Invalid filter or order: {exc.message}", value=filter_string or order_by) from exc
        return out

    def get_run(self, run_id: str) -> dict[str, Any]:
        """One run of the tenant as a dict (see :meth:`list_experiments`)."""
        run = self.store.get_run(self.tenancy, run_id)
        exp = self.store.client.get_experiment(run.info.experiment_id)
        return run_to_dict(run, {exp.experiment_id: self.tenancy.plain_experiment_name(exp.name)})

    @bounded_by_server
    def resume(self, run_id: str) -> ActiveRun:
        """Re-open one of the tenant's runs (any status) as this tracker's current run."""
        run = self.store.get_run(self.tenancy, run_id)
        if self.active_run is not None:
            self.end_experiment()
        exp = self.store.client.get_experiment(run.info.experiment_id)
        ar = ActiveRun(
            self,
            run_id,
            run.info.experiment_id,
            self.tenancy.plain_experiment_name(exp.name),
            run.info.run_name,
            run.info.artifact_uri,
            run.info.start_time,
        )
        ar.params = dict(run.data.params)
        ar.param_values = param_types.decode(run.data.params, run.data.tags)
        ar.metrics = dict(run.data.metrics)
        if run.info.status != "RUNNING":
            self.store.client.update_run(run_id, status="RUNNING")
        self._run = self.last_run = ar
        return ar


def run_to_dict(run: Any, experiment_names: Mapping[str, str]) -> dict[str, Any]:
    info, data = run.info, run.data
    return {
        "run_id": info.run_id,
        "run_name": info.run_name,
        "experiment_id": info.experiment_id,
        "experiment_name": experiment_names.get(info.experiment_id),
        "status": MLFLOW_TO_STATUS.get(info.status, info.status.lower()),
        "start_time": iso_from_ms(info.start_time),
        "end_time": iso_from_ms(info.end_time),
        "duration": (info.end_time - info.start_time) / 1000 if info.end_time and info.start_time else None,
        "params": param_types.decode(data.params, data.tags),
        "metrics": _metrics_in_logged_order(data),
        "tags": {k: v for k, v in data.tags.items() if not k.startswith("mlflow.") and not param_types.is_types_tag(k)},
        "parent_run_id": data.tags.get("mlflow.parentRunId"),
    }


def _metrics_in_logged_order(data: Any) -> dict[str, float]:
    """A run's latest metric values, in the order they were logged (see
    :mod:`~mlops_jupyter.tracking.key_metrics`: the last one is the run's key metric)."""
    values = dict(data.metrics)
    objs = getattr(data, "_metric_objs", None)  # MLflow's RunData keeps the Metric objects (timestamps)
    if not objs:
        return values
    order = in_logged_order(objs)
    return {**{k: values[k] for k in order if k in values}, **values}


def end_open_runs_at_exit() -> None:
    """Called at interpreter exit: open runs end FINISHED (MLflow's behaviour), data flushed."""
    for r in list(_OPEN_RUNS):
        if r.is_open:
            try:
                r.status = "FINISHED"
                r.tracker.store.end_run(r.run_id, "FINISHED")
            except Exception as exc:
                log.warning("mlops_jupyter: could not end run %s at exit: %s", r.run_id, exc)


store_mod.before_close_at_exit(end_open_runs_at_exit)
