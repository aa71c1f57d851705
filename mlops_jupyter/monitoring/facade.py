"""ModelMonitoring: the one object a user holds, a small facade over the monitoring modules.

It owns what is per object (the settings and tenant, the clock, the store, the lazily
built deployment and versioning APIs, the reference caches), validates the model id, and
delegates: logging to :mod:`~mlops_jupyter.monitoring.ingest`, windows to
:mod:`~mlops_jupyter.monitoring.windows`, references to
:mod:`~mlops_jupyter.monitoring.references`, the drift check to
:mod:`~mlops_jupyter.monitoring.drift_check`, performance to
:mod:`~mlops_jupyter.monitoring.performance`, alert rules to
:mod:`~mlops_jupyter.monitoring.alerts.engine` and the gateway flush before a read to
:mod:`~mlops_jupyter.monitoring.sync`. :mod:`mlops_jupyter.monitoring` describes the whole.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from mlops_jupyter.config.names import validate_model_id
from mlops_jupyter.config.settings import Settings
from mlops_jupyter.errors import ValidationError
from mlops_jupyter.monitoring import drift_check, ingest
from mlops_jupyter.monitoring import performance as perf
from mlops_jupyter.monitoring.alerts import engine
from mlops_jupyter.monitoring.drift_check import DEFAULT_THRESHOLD, Scope
from mlops_jupyter.monitoring.predlog import PredictionLog
from mlops_jupyter.monitoring.references import REFERENCE_ROWS, References
from mlops_jupyter.monitoring.sync import flush_gateway
from mlops_jupyter.monitoring.windows import PERF_COLUMNS, READ_COLUMNS, Window, parse_window, read_window, to_seconds


class ModelMonitoring:
    """Tracks predictions, detects drift, measures performance and runs alert rules.

    Everything is scoped to the settings' tenant: its prediction logs, references and
    alert rules only.

    Args:
        settings: the resolved settings (tenant, tracking URI, storage home).
        clock: a function returning unix seconds (default :func:`time.time`): "now" for
            time-span windows, tracked predictions without a timestamp and alert timing.
            Tests pass a fake clock to step through ``for_`` and ``cooldown``.
        predlog: the prediction log to use (default: the process' shared one of the home).
        store: the embedded store (default: the home's).
        deployment: the :class:`~mlops_jupyter.deployment.deployment.ModelDeployment` used by the
            ``rollback`` action (default: one made from ``settings`` when first needed).
        versioning: the versioning used to find a version's reference data.
        sync_gateway: before reading, ask a running gateway of the home to write what it
            has buffered, so its latest predictions are seen at once (about a millisecond);
            a read then raises :class:`~mlops_jupyter.errors.GatewayError` if that gateway
            answers an error or cannot be reached.
        reference_rows: how many first predictions form the reference when there is no
            reference data.

    Example:
        >>> monitoring = create_model_monitoring(tenant_id="tenant_123")
        >>> monitoring.check_drift("ticket_classifier")["drift_detected"]
        False
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] | None = None,
        predlog: PredictionLog | None = None,
        store: Any = None,
        deployment: Any = None,
        versioning: Any = None,
        sync_gateway: bool = True,
        reference_rows: int = REFERENCE_ROWS,
    ) -> None:
        self.settings = settings
        self.clock = clock or time.time
        self._log = predlog
        self._store = store
        self._deployment = deployment
        self._versioning = versioning
        self.sync_gateway = sync_gateway
        if isinstance(reference_rows, bool) or not isinstance(reference_rows, int) or reference_rows < 1:
            raise ValidationError(
                f"Invalid reference_rows {reference_rows!r}.", value=reference_rows, allowed="an int >= 1"
            )
        self.reference_rows = reference_rows
        self._valid_models: set[str] = set()
        self._references = References(settings.home, settings.tenant, lambda: self.versioning)
        self._snap = threading.local()  # this thread's snapshot (see snapshot()), if one is open

    # -- plumbing ------------------------------------------------------------------------
    @property
    def tenant(self) -> str:
        return self.settings.tenant

    @property
    def predlog(self) -> PredictionLog:
        if self._log is None:
            self._log = ingest.shared_prediction_log(self.settings.home)
        return self._log

    @property
    def store(self) -> Any:
        if self._store is None:
            from mlops_jupyter.storage.state import open_embedded_store

            self._store = open_embedded_store(self.settings.home)
        return self._store

    @property
    def deployment(self) -> Any:
        if self._deployment is None:
            from mlops_jupyter.deployment.deployment import ModelDeployment

            self._deployment = ModelDeployment(self.settings)
        return self._deployment

    @property
    def versioning(self) -> Any:
        if self._versioning is None:
            from mlops_jupyter.registry.versioning import ModelVersioning

            self._versioning = ModelVersioning(self.settings)
        return self._versioning

    def _model(self, model_id: Any) -> str:
        if model_id not in self._valid_models:
            validate_model_id(model_id)
            self._valid_models.add(model_id)
        return model_id

    def _now(self, now: Any = None) -> float:
        if now is None:
            frozen = getattr(self._snap, "now", None)
            return frozen if frozen is not None else float(self.clock())
        return to_seconds(now)

    @contextmanager
    def snapshot(self) -> Iterator[ModelMonitoring]:
        """Reads made inside (in this thread) see one moment of the log: the gateway is asked
        to write its buffer once, "now" is fixed, and each window is read once however many
        reads use it (``check_drift``, ``performance``, ``window_data`` and ``timeseries`` of the
        same window share one read: a drift view of a 1 M-row window reads it once, not three
        times). Predictions logged meanwhile show in reads after the block.

        Example:
            >>> with monitoring.snapshot():
            ...     result = monitoring.check_drift("ticket_classifier", window="1h")
            ...     ref, cur = monitoring.window_data("ticket_classifier", window="1h")
        """
        snap = self._snap
        if getattr(snap, "now", None) is not None:  # nested: the outer snapshot holds
            yield self
            return
        self._sync()
        snap.now, snap.reads = float(self.clock()), {}
        try:
            yield self
        finally:
            snap.now = snap.reads = None

    def _read(self, model_id: str, win: Window, version: str | None, now: float, columns: Any) -> Any:
        """The window as a DataFrame: read, or the snapshot's copy of it."""
        reads = getattr(self._snap, "reads", None)
        if reads is None:
            return read_window(self.predlog, self.tenant, model_id, win, version, now, columns)
        key = (model_id, win, version)
        if key not in reads:  # read the widest columns once; every read of the window uses them
            reads[key] = read_window(self.predlog, self.tenant, model_id, win, version, now, READ_COLUMNS)
        return reads[key]

    def _scope(self) -> Scope:
        return Scope(self.predlog, self.tenant, self._references, self.reference_rows)

    def flush(self) -> int:
        """Write the predictions this process has buffered; returns the rows written."""
        plog = self._log or ingest.open_prediction_log(self.settings.home)
        return plog.flush() if plog is not None else 0

    def _sync(self) -> None:
        """Ask the home's gateway (if one runs) to write its buffered predictions now (once
        per :meth:`snapshot`).

        Raises:
            GatewayError: a gateway runs for the home but answered an error or could not be
                reached (see :mod:`mlops_jupyter.monitoring.sync`).
        """
        if self.sync_gateway and getattr(self._snap, "reads", None) is None:  # not inside a snapshot
            flush_gateway(self.settings.home)

    # -- tracking ------------------------------------------------------------------------
    def track_prediction(
        self,
        model_id: str,
        prediction_time: float,
        success: bool,
        input_features: Mapping[str, Any] | None = None,
        prediction: Any = None,
        version: str | None = None,
        timestamp: Any = None,
        environment: str = "",
    ) -> None:
        """Log one prediction made outside the gateway (buffered; a few microseconds, no I/O).

        Args:
            model_id: the model's id.
            prediction_time: the prediction's latency in seconds (a finite number >= 0).
            success: whether it succeeded.
            input_features: the input row, feature name -> value (numbers, text, bools).
            prediction: the output (a scalar; lists and dicts are stored as JSON text).
            version: the model version that answered (default ``"unversioned"``).
            timestamp: when it happened: unix seconds, datetime, pandas Timestamp or ISO
                text (default: now).
            environment: where it ran (e.g. ``"production"``; default ``""``).

        Raises:
            InvalidNameError: bad model id.
            ValidationError: a bad latency, success flag, features, version or timestamp.

        Example:
            >>> monitoring.track_prediction("ticket_classifier", prediction_time=0.15, success=True,
            ...                             input_features={"priority": 1, "category": "technical"})
        """
        self._model(model_id)
        ingest.track_prediction(
            self.predlog,
            self.tenant,
            model_id,
            prediction_time,
            success,
            input_features,
            prediction,
            version,
            timestamp,
            environment,
            clock=self.clock,
        )

    def track_predictions(self, model_id: str, data: Any, version: str | None = None) -> int:
        """Log many predictions at once (a columnar batch; millions of rows per second).

        Args:
            model_id: the model's id.
            data: a DataFrame, a list of dicts or a dict of columns with the columns
                ``prediction_time`` (seconds) and ``success``, optionally ``prediction``,
                ``version``, ``timestamp``, ``environment`` and ``error``; every other column
                is an input feature.
            version: the version for rows without a ``version`` column (default
                ``"unversioned"``).

        Returns:
            The number of predictions logged.

        Raises:
            ValidationError: not a table, missing ``prediction_time`` / ``success``, or bad
                values in them (the message names the first bad row).

        Example:
            >>> monitoring.track_predictions("ticket_classifier", pd.DataFrame(
            ...     {"prediction_time": [0.1, 0.2], "success": [True, False], "priority": [1, 3]}))
            2
        """
        self._model(model_id)
        return ingest.track_predictions(self.predlog, self.tenant, model_id, data, version, clock=self.clock)

    # -- reference -----------------------------------------------------------------------
    def set_reference(self, model_id: str, data: Any, version: str | None = None) -> dict[str, Any]:
        """Set the reference data that ``check_drift`` compares windows with.

        Stored under the storage home (so the gateway's alert pass uses it too); it takes
        precedence over the version's ``reference_data``. Set again to replace it.

        Args:
            model_id: the model's id.
            data: a DataFrame of input features (plain column names, as the model sees them).
            version: the version it applies to (default: every version of the model).

        Returns:
            ``{"model_id", "version", "rows", "columns", "reference_source": "set_reference"}``.

        Raises:
            ValidationError: ``data`` is not a non-empty DataFrame, or a bad version.

        Example:
            >>> monitoring.set_reference("ticket_classifier", training_df[FEATURES])["rows"]
            2000
        """
        self._model(model_id)
        return self._references.set(model_id, data, version)

    # -- reads ---------------------------------------------------------------------------
    def _check(
        self, model_id: str, threshold: Any, window: Any, version: Any, now: float, need_drift: bool = True
    ) -> dict[str, Any]:
        self._model(model_id)
        args = drift_check.check_args(threshold, window, version)
        self._sync()
        _, win, version = args
        df = self._read(model_id, win, version, now, READ_COLUMNS if need_drift else PERF_COLUMNS)
        return drift_check.check(self._scope(), model_id, args, now, df, need_drift)

    def check_drift(
        self, model_id: str, threshold: float = DEFAULT_THRESHOLD, window: Any = None, version: str | None = None
    ) -> dict[str, Any]:
        """Compare the recent window of a model's predictions with its reference.

        Only reads: alert rules are evaluated by :meth:`evaluate_alerts` and by the scheduler
        (the gateway's alert pass, or this process' :meth:`start_alert_evaluator`), never as
        a side effect of a check.

        Args:
            model_id: the model's id.
            threshold: a feature drifted when its test is significant after Benjamini-Hochberg
                correction and its bias-corrected effect is above this (PSI / Jensen-Shannon
                distance scale; 0.1 = a moderate shift); the result's ``decision`` states it.
            window: None (last 1 000 predictions), an int N (last N) or a span like ``"1h"``.
            version: only the predictions of this version, against its reference.

        Returns:
            The guide's ``drift_detected``, ``drift_score`` and ``performance_metrics``
            (``avg_latency``, ``success_rate``, ``p50_latency``, ``p95_latency``,
            ``p99_latency``, ``error_count``, ``error_rate``, ``prediction_count``,
            ``per_version``), plus ``features`` (name -> ``method``, ``statistic``,
            ``p_value``, ``score``, ``drifted`` and more, highest score first),
            ``drifted_features``, ``method``, ``n_reference``, ``n_current``, ``threshold``,
            ``reference_source`` (``set_reference``, ``version`` or ``first_predictions``),
            ``reference_version``, ``window`` (its type, size or span, start and end),
            ``status`` (``ok``, ``low_sample`` with ``rows_needed``, or why nothing was
            compared, e.g. ``unknown_model``) and ``reason``, ``decision``, ``skipped``,
            ``warnings``, ``environment`` (of the latest prediction), ``alerts`` (the
            model's rules, as stored) and ``checked_at``.

        Raises:
            InvalidNameError: bad model id.
            InvalidWindowError: bad window.
            ValidationError: bad threshold or version.
            GatewayError: the home's running gateway could not flush what it has buffered.

        Example:
            >>> r = monitoring.check_drift("ticket_classifier", threshold=0.1, window="1h")
            >>> r["drift_detected"], r["drift_score"], list(r["features"])[:2]
            (True, 0.31, ['response_hours', 'channel'])
        """
        result = self._check(model_id, threshold, window, version, self._now())
        result["alerts"] = engine.list_rules(self.store, self.tenant, model_id)
        return result

    def performance(self, model_id: str, window: Any = None, version: str | None = None) -> dict[str, Any]:
        """The ``performance_metrics`` of a window (no drift computed).

        Example:
            >>> monitoring.performance("ticket_classifier", window="1h")["p95_latency"]
            0.0021
        """
        r = self._check(model_id, DEFAULT_THRESHOLD, window, version, self._now(), need_drift=False)
        return r["performance_metrics"]

    def window_data(self, model_id: str, window: Any = None, version: str | None = None) -> tuple[Any, Any]:
        """The reference and current features that ``check_drift`` would compare.

        Returns:
            ``(reference, current)`` DataFrames with plain feature names (the reference is
            empty when there is none).

        Example:
            >>> ref, cur = monitoring.window_data("ticket_classifier", window="1h")
            >>> ref["response_hours"].mean(), cur["response_hours"].mean()
        """
        self._model(model_id)
        win = parse_window(window)
        now = self._now()
        self._sync()
        df = self._read(model_id, win, version, now, READ_COLUMNS)
        return drift_check.window_data(self._scope(), model_id, df, version)

    def timeseries(self, model_id: str, freq: str = "1min", window: Any = None) -> Any:
        """Traffic, latency and success over time, per version (for charts).

        Args:
            model_id: the model's id.
            freq: the bucket size as a pandas frequency (``"10s"``, ``"1min"``, ``"1h"``).
            window: as in :meth:`check_drift`.

        Returns:
            A DataFrame with columns ``time`` (bucket start, UTC), ``version``, ``count``,
            ``avg_latency``, ``p95_latency`` and ``success_rate``, one row per bucket and
            version that had predictions.

        Raises:
            ValidationError: ``freq`` is not a pandas frequency.

        Example:
            >>> monitoring.timeseries("ticket_classifier", freq="1min", window="1h").head(2)
        """
        self._model(model_id)
        perf.check_freq(freq)
        win = parse_window(window)
        now = self._now()
        self._sync()
        return perf.timeseries(self._read(model_id, win, None, now, PERF_COLUMNS), freq)

    # -- alerts --------------------------------------------------------------------------
    def set_alert(
        self,
        model_id: str,
        condition: str,
        action: str,
        cooldown: Any = "5m",
        for_: Any = "0s",
        severity: str = "warning",
    ) -> dict[str, Any]:
        """Add an alert rule on a model (or update the one with the same condition and action).

        Args:
            model_id: the model's id.
            condition: a condition in the safe grammar, e.g. ``"drift_score > 0.1"`` or
                ``"success_rate < 0.95 and avg_latency > 0.2"``; names: ``drift_score``,
                ``success_rate``, ``error_rate``, ``avg_latency``, ``p95_latency``,
                ``prediction_count``, ``feature_score('<feature>')``.
            action: ``log``, ``webhook:<url>``, ``rollback`` / ``rollback:<environment>``, or
                any name (``notify_team``) resolved through :meth:`register_action`; a name
                with nothing registered yet is accepted (see :mod:`mlops_jupyter.monitoring.alerts.actions`).
            cooldown: least time between two firings, ``"5m"`` or seconds.
            for_: how long the condition must hold before the alert fires (``"0s"``: at once).
            severity: ``info``, ``warning`` or ``critical``.

        Returns:
            The rule: ``alert_id``, ``model_id``, ``condition`` (canonical text), ``action``,
            ``cooldown_s``, ``for_s``, ``severity``, ``state`` (``inactive``, ``pending`` or
            ``firing``), ``action_registered`` and timestamps.

        Raises:
            AlertRuleError: the condition is outside the grammar (the message shows where,
                and what is allowed).
            InvalidAlertActionError: a malformed action.
            InvalidDurationError: a bad cooldown or for_.
            ValidationError: a bad severity.

        Example:
            >>> monitoring.set_alert("ticket_classifier", "drift_score > 0.1", action="notify_team")
            {'alert_id': 'alert_1f0c...', 'condition': 'drift_score > 0.1', 'action': 'notify_team',
             'cooldown_s': 300.0, 'for_s': 0.0, 'severity': 'warning', 'state': 'inactive', ...}
        """
        self._model(model_id)
        return engine.set_rule(self.store, self.tenant, model_id, condition, action, cooldown, for_, severity)

    def list_alert_rules(self, model_id: str | None = None) -> list[dict[str, Any]]:
        """The tenant's alert rules (of one model), oldest first.

        Example:
            >>> [r["condition"] for r in monitoring.list_alert_rules("ticket_classifier")]
            ['drift_score > 0.1']
        """
        if model_id is not None:
            self._model(model_id)
        return engine.list_rules(self.store, self.tenant, model_id)

    def delete_alert(self, alert_id: str) -> dict[str, Any]:
        """Delete an alert rule (its history stays in :meth:`alerts`).

        Raises:
            AlertNotFoundError: no such rule for this tenant (the message lists the tenant's).
            TenantAccessError: the rule belongs to another tenant.

        Example:
            >>> monitoring.delete_alert("alert_5f0c1a2b3c4d")
            {'alert_id': 'alert_5f0c1a2b3c4d', 'deleted': True}
        """
        return engine.delete_rule(self.store, self.tenant, alert_id)

    def alerts(self, model_id: str | None = None, limit: int | None = 100) -> list[dict[str, Any]]:
        """Alert history, newest first: what fired and when it resolved, and what the action did.

        Returns:
            Dicts with ``event_id``, ``alert_id``, ``model_id``, ``condition``, ``severity``,
            ``state`` (``pending``, ``firing`` or ``resolved``), ``started_at``, ``fired_at``,
            ``resolved_at``, ``values`` (the metrics when it last changed), ``action``,
            ``action_result``, ``delivery`` and ``delivered``.

        Example:
            >>> [(a["condition"], a["state"], a["delivered"]) for a in monitoring.alerts("ticket_classifier")]
            [('drift_score > 0.1', 'firing', False)]
        """
        if model_id is not None:
            self._model(model_id)
        return engine.history(self.store, self.tenant, model_id, limit)

    def register_action(self, name: str, fn: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
        """Register the callable behind an action name (for this tenant, in this process).

        Alerts that fired with this action while nothing was registered (recorded as
        undelivered) are delivered now.

        Args:
            name: the action name used in :meth:`set_alert` (e.g. ``"notify_team"``).
            fn: called with the alert dict (``alert_id``, ``model_id``, ``condition``,
                ``severity``, ``state``, ``values``, ``message``, ...); what it returns is
                recorded in the history.

        Returns:
            ``{"action": name, "delivered": n}``: how many held alerts it delivered.

        Raises:
            InvalidAlertActionError: a built-in or malformed name, or ``fn`` not callable.

        Example:
            >>> monitoring.register_action("notify_team", lambda alert: slack.post(alert["message"]))
            {'action': 'notify_team', 'delivered': 1}
        """
        return engine.register(self.store, self.tenant, name, fn)

    def wait_for_alert_actions(self, timeout: float = 60.0) -> int:
        """Wait until the alert actions this process is delivering have finished (each runs on
        its own thread, with a timeout and retries); returns how many are still running.

        Example:
            >>> monitoring.evaluate_alerts("ticket_classifier"); monitoring.wait_for_alert_actions()
            0
        """
        from mlops_jupyter.monitoring.alerts import delivery

        return delivery.wait(timeout)

    def evaluate_alerts(self, model_id: str | None = None, now: Any = None) -> list[dict[str, Any]]:
        """Evaluate the alert rules (of one model, or all of the tenant's) now.

        Each model's metrics are computed once over the default window (the last 1 000
        predictions); ``drift_score`` and ``feature_score`` only when a rule reads them.

        Args:
            model_id: one model, or None for every model with rules.
            now: the evaluation time (unix seconds or datetime; default: the clock's now).

        Returns:
            The rules whose state changed: ``alert_id``, ``model_id``, ``condition``,
            ``transitions`` (``pending``, ``fire``, ``cancel``, ``resolve``), ``state``,
            ``event_id`` and, when it fired, ``delivery`` (``queued``: the action runs on its
            own thread, with a timeout and retries; :meth:`alerts` shows every attempt) and
            ``action_result`` (its ``idempotency_key``).

        Example:
            >>> monitoring.evaluate_alerts("ticket_classifier")
            [{'alert_id': 'alert_...', 'transitions': ['pending', 'fire'], 'state': 'firing', ...}]
        """
        t = self._now(now)
        if model_id is not None:
            self._model(model_id)
        return engine.evaluate(
            self.store,
            self.tenant,
            model_id,
            t,
            check=lambda m, need_drift: self._check(m, DEFAULT_THRESHOLD, None, None, t, need_drift=need_drift),
            deployment=lambda: self.deployment,
        )

    def start_alert_evaluator(self, interval: float | None = None) -> dict[str, Any]:
        """Evaluate this tenant's alert rules in the background, every ``interval`` seconds.

        For predictions tracked here (the gateway evaluates the models it serves): a daemon
        thread runs :meth:`evaluate_alerts` for every rule until :meth:`stop_alert_evaluator`
        or the end of the process. Starting it again replaces the running one.

        Args:
            interval: seconds between passes (default ``$MLOPS_ALERT_INTERVAL`` or 5).

        Returns:
            ``{"running": True, "interval": seconds}``.

        Example:
            >>> monitoring.start_alert_evaluator(interval=10)
            {'running': True, 'interval': 10.0}
        """
        from mlops_jupyter.monitoring.alerts.background import BackgroundEvaluator
        from mlops_jupyter.monitoring.alerts.scheduler import alert_interval

        seconds = alert_interval() if interval is None else interval
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds < 86400:
            raise ValidationError(f"Invalid interval {interval!r}.", value=interval, allowed="seconds, 0 < s < 86400")
        self.stop_alert_evaluator()
        self._evaluator = BackgroundEvaluator(self.evaluate_alerts, float(seconds)).start()
        return {"running": True, "interval": float(seconds)}

    def stop_alert_evaluator(self) -> dict[str, Any]:
        """Stop the background evaluator (waits for the pass in progress); ``{"running": False}``."""
        ev = getattr(self, "_evaluator", None)
        if ev is not None:
            ev.stop()
            self._evaluator = None
        return {"running": False}

    def __repr__(self) -> str:
        return f"<ModelMonitoring tenant={self.tenant!r} home={str(self.settings.home)!r}>"
