"""Model monitoring: the prediction log, drift against a reference, performance, alerts.

Every prediction the gateway serves is logged (latency, success, version, environment,
input features, output) into the columnar :class:`~mlops_jupyter.monitoring.predlog.PredictionLog`;
:meth:`ModelMonitoring.track_prediction` and :meth:`ModelMonitoring.track_predictions` log
predictions made elsewhere into the same log. Writes are buffered in memory and written
about once a second by a background thread, and at interpreter exit, so they are never
lost on exit and never wait on the disk.

**Windows.** Every read takes a ``window``: ``None`` for the last :data:`DEFAULT_WINDOW`
(1 000) predictions, an int ``N`` for the last ``N``, or a span such as ``"30m"``, ``"1h"``
or ``"2d"`` for the predictions of the last 30 minutes (1 hour, 2 days) before now (the
monitoring object's clock). A "prediction" is one predicted input row.

**Reference.** ``check_drift`` compares the window with, in this order: the data given to
:meth:`ModelMonitoring.set_reference` for the version in scope, the one given for the
model, the ``reference_data`` stored with the version at versioning
(``create_version(..., reference_data=df)``), or else the first :data:`REFERENCE_ROWS`
(1 000) predictions logged for the model (then the window only holds later predictions).
The version in scope is ``version=`` or, by default, the version that answered the latest
prediction of the window. The result's ``reference_source`` says which one was used:
``"set_reference"``, ``"version"`` or ``"first_predictions"``.

**Drift.** Per feature, by :func:`mlops_jupyter.monitoring.drift.compare`: the Kolmogorov-Smirnov
test and PSI for numeric features, the chi-square test and the Jensen-Shannon distance for
categorical ones. A column is categorical when its reference dtype is text, bool or
category, or when it holds whole numbers with at most 10 distinct values; other numbers are
numeric. A feature's score is its PSI (numeric) or JS distance (categorical);
``drift_score`` is the largest feature score and ``drift_detected = drift_score >
threshold`` (0.1 means a moderate shift on both scales).

**Performance.** Over the same window: average, p50, p95 and p99 latency (seconds), success
rate, error count and rate, prediction count, and the same per version (an A/B split side
by side).

**Alerts.** See :mod:`mlops_jupyter.monitoring.alerts.engine`: rules in a safe grammar, evaluated on
each ``check_drift`` (with the values it computed), by :meth:`ModelMonitoring.evaluate_alerts`
and by the gateway every few seconds as traffic arrives.

When there is nothing to compare (no predictions in the window, predictions without input
features, no reference), ``check_drift`` returns ``drift_detected: False`` and
``drift_score: None`` with a ``status`` (``no_data``, ``no_features``, ``no_reference``,
``not_comparable``) and a ``reason`` that says what to do, rather than raising; bad
arguments raise typed errors.

Example:
    >>> monitoring = create_model_monitoring(tenant_id="tenant_123")
    >>> monitoring.track_prediction("ticket_classifier", prediction_time=0.15, success=True,
    ...                             input_features={"priority": 1, "category": "technical"})
    >>> result = monitoring.check_drift("ticket_classifier", threshold=0.1)
    >>> result["drift_detected"], result["performance_metrics"]["success_rate"]
    (False, 1.0)
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import re
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, NamedTuple

from mlops_jupyter.monitoring.alerts import engine as _alerts
from mlops_jupyter.monitoring.predlog import ALL_FEATURES, FEATURE_PREFIX, PredictionLog
from mlops_jupyter.config.settings import Settings
from mlops_jupyter.config.names import validate_model_id
from mlops_jupyter.errors import (
    AlertNotFoundError,
    InvalidWindowError,
    MLOpsError,
    TenantAccessError,
    ValidationError,
)

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 1000
"""Predictions in the default window (the last 1 000)."""
REFERENCE_ROWS = 1000
"""With no reference data, the first this many logged predictions form the reference."""
DEFAULT_THRESHOLD = 0.1
UNVERSIONED = "unversioned"
"""The version recorded for a tracked prediction made without ``version=``."""
RESERVED_COLUMNS = ("prediction_time", "success", "prediction", "version", "timestamp", "environment", "error")
"""Columns of ``track_predictions`` data that are not features."""
STATUSES = ("ok", "no_data", "no_features", "no_reference", "not_comparable")
_READ_COLUMNS = ("version", "environment", "latency_s", "success", ALL_FEATURES)
_PERF_COLUMNS = ("version", "environment", "latency_s", "success")
_VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
_WINDOW_ALLOWED = ("None (the last 1000 predictions), an int N >= 1 (the last N), or a span such as '30s', "
                   "'30m', '1h', '2d' (the predictions of that long before now)")
_NEGATIVE_CACHE_S = 30.0

_PREDLOGS: dict[str, PredictionLog] = {}
_PREDLOGS_LOCK = threading.Lock()


def shared_prediction_log(home: str | Path) -> PredictionLog:
    """The process' one :class:`PredictionLog` of a storage home (one buffer, one writer thread)."""
    key = str(Path(home).absolute())
    with _PREDLOGS_LOCK:
        plog = _PREDLOGS.get(key)
        if plog is None or plog._closed:
            plog = _PREDLOGS[key] = PredictionLog(key)
        return plog


class Window(NamedTuple):
    """A parsed window: the last ``size`` predictions, or those of the last ``seconds``."""

    kind: str  # "last" or "span"
    size: int | None
    seconds: float | None
    spec: Any


def parse_window(window: Any) -> Window:
    """Parse a ``window`` argument.

    Args:
        window: None (the last :data:`DEFAULT_WINDOW` predictions), an int ``N >= 1``, or a
            span ``"<number><s|m|h|d>"`` such as ``"30m"`` or ``"1h"``.

    Returns:
        A :class:`Window`.

    Raises:
        InvalidWindowError: anything else.

    Example:
        >>> parse_window("1h"), parse_window(500).size
        (Window(kind='span', size=None, seconds=3600.0, spec='1h'), 500)
    """
    from mlops_jupyter.monitoring.alerts.grammar import parse_duration
    from mlops_jupyter.errors import InvalidDurationError

    if window is None:
        return Window("last", DEFAULT_WINDOW, None, None)
    if isinstance(window, numbers.Integral) and not isinstance(window, bool):
        if window < 1:
            raise InvalidWindowError(f"Invalid window {window!r}: it must hold at least one prediction.",
                                     value=window, allowed=_WINDOW_ALLOWED)
        return Window("last", int(window), None, int(window))
    if isinstance(window, str):
        text = window.strip()
        if text.isdigit():
            return parse_window(int(text))
        try:
            seconds = parse_duration(text)
        except InvalidDurationError:
            seconds = -1.0
        if seconds > 0:
            return Window("span", None, seconds, window)
    raise InvalidWindowError(f"Invalid window {window!r}.", value=window, allowed=_WINDOW_ALLOWED)


def _num(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return None if math.isnan(f) else f


def _performance(lat: Any, ok: Any) -> dict[str, Any]:
    import numpy as np

    n = int(lat.size)
    if n == 0:
        return {"avg_latency": None, "p50_latency": None, "p95_latency": None, "p99_latency": None,
                "success_rate": None, "error_count": 0, "error_rate": None, "prediction_count": 0}
    finite = lat[np.isfinite(lat)]
    if finite.size:
        p50, p95, p99 = (float(x) for x in np.percentile(finite, [50, 95, 99]))
        avg = float(finite.mean())
    else:
        avg = p50 = p95 = p99 = None
    good = int(np.count_nonzero(ok))
    return {"avg_latency": avg, "p50_latency": p50, "p95_latency": p95, "p99_latency": p99,
            "success_rate": good / n, "error_count": n - good, "error_rate": (n - good) / n,
            "prediction_count": n}


def performance_metrics(df: Any) -> dict[str, Any]:
    """Performance of a window (a DataFrame with ``latency_s``, ``success``, ``version``).

    Returns:
        ``avg_latency``, ``p50_latency``, ``p95_latency``, ``p99_latency`` (seconds, per
        logged prediction), ``success_rate``, ``error_count``, ``error_rate``,
        ``prediction_count`` and ``per_version`` (version -> the same, without
        ``per_version``); rates and latencies are None for an empty window.
    """
    import numpy as np
    import pandas as pd

    if len(df) == 0:
        return {**_performance(np.empty(0), np.empty(0, dtype=bool)), "per_version": {}}
    lat = df["latency_s"].to_numpy(dtype=np.float64, na_value=np.nan)
    ok = df["success"].to_numpy(dtype=bool, na_value=False)
    out = _performance(lat, ok)
    v = df["version"]
    if isinstance(v.dtype, pd.CategoricalDtype):
        codes, uniques = v.cat.codes.to_numpy(), list(v.cat.categories)
    else:
        codes, uniques = pd.factorize(v, use_na_sentinel=True)
        uniques = list(uniques)
    per = {}
    for i, name in [(i, str(u)) for i, u in enumerate(uniques)] + [(-1, UNVERSIONED)]:
        m = codes == i
        if m.all():  # one version: the same numbers
            per[name] = {k: v for k, v in out.items()}
        elif m.any():
            per[name] = _performance(lat[m], ok[m])
    out["per_version"] = dict(sorted(per.items()))
    return out


def _feature_frame(df: Any) -> Any:
    """The ``feature.*`` columns of a log frame, under their plain names."""
    cols = [c for c in df.columns if c.startswith(FEATURE_PREFIX)]
    return df[cols].rename(columns={c: c[len(FEATURE_PREFIX):] for c in cols})


def _drop_featureless(features: Any, success: Any) -> Any:
    """Rows of failed requests that carry no feature at all are not part of the comparison."""
    import numpy as np

    if features.shape[1] == 0 or bool(np.all(success)):
        return features
    keep = features.notna().any(axis=1).to_numpy() | success
    return features[keep]


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
            has buffered, so its latest predictions are seen at once (about a millisecond).
        reference_rows: how many first predictions form the reference when there is no
            reference data.

    Example:
        >>> monitoring = create_model_monitoring(tenant_id="tenant_123")
        >>> monitoring.check_drift("ticket_classifier")["drift_detected"]
        False
    """

    def __init__(self, settings: Settings, *, clock: Callable[[], float] | None = None,
                 predlog: PredictionLog | None = None, store: Any = None, deployment: Any = None,
                 versioning: Any = None, sync_gateway: bool = True, reference_rows: int = REFERENCE_ROWS) -> None:
        self.settings = settings
        self.clock = clock or time.time
        self._log = predlog
        self._store = store
        self._deployment = deployment
        self._versioning = versioning
        self.sync_gateway = sync_gateway
        if isinstance(reference_rows, bool) or not isinstance(reference_rows, int) or reference_rows < 1:
            raise ValidationError(f"Invalid reference_rows {reference_rows!r}.", value=reference_rows,
                                  allowed="an int >= 1")
        self.reference_rows = reference_rows
        self._valid_models: set[str] = set()
        self._ref_cache: dict[str, tuple[tuple[int, int], Any]] = {}
        self._vref_cache: dict[tuple[str, str], tuple[float, Any]] = {}
        self._conditions: dict[str, Any] = {}

    # -- plumbing ------------------------------------------------------------------------
    @property
    def tenant(self) -> str:
        return self.settings.tenant

    @property
    def predlog(self) -> PredictionLog:
        if self._log is None:
            self._log = shared_prediction_log(self.settings.home)
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
            return float(self.clock())
        if isinstance(now, numbers.Real) and not isinstance(now, bool):
            return float(now)
        from mlops_jupyter.monitoring.predlog import _to_us

        us = _to_us(now, "now")
        assert us is not None
        return us / 1e6

    def flush(self) -> int:
        """Write the predictions this process has buffered; returns the rows written."""
        plog = self._log or _PREDLOGS.get(str(Path(self.settings.home).absolute()))
        return plog.flush() if plog is not None else 0

    def _sync(self) -> None:
        """Ask the home's gateway (if one runs) to write its buffered predictions now."""
        if not self.sync_gateway:
            return
        import http.client

        from mlops_jupyter.deployment.targets.local_process import read_info

        info = read_info(self.settings.home)
        if not info or not info.get("port"):
            return
        from mlops_jupyter.deployment import tokens as auth

        try:
            conn = http.client.HTTPConnection("127.0.0.1" if info.get("host") in ("0.0.0.0", "::", "", None)
                                              else info["host"], int(info["port"]), timeout=5)
            try:
                conn.request("POST", "/admin/flush", body=b"{}",
                             headers={"Authorization": f"Bearer {auth.admin_token(self.settings.home)}",
                                      "Content-Type": "application/json"})
                conn.getresponse().read()
            finally:
                conn.close()
        except (OSError, ValueError, http.client.HTTPException):
            pass  # no gateway answering: nothing buffered there to wait for

    # -- tracking ------------------------------------------------------------------------
    def track_prediction(self, model_id: str, prediction_time: float, success: bool,
                         input_features: Mapping[str, Any] | None = None, prediction: Any = None,
                         version: str | None = None, timestamp: Any = None, environment: str = "") -> None:
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
        t = type(prediction_time)
        if t is not float and t is not int:
            if isinstance(prediction_time, bool) or not isinstance(prediction_time, numbers.Real):
                raise ValidationError(f"Invalid prediction_time {prediction_time!r}.", value=prediction_time,
                                      allowed="the latency in seconds: a finite number >= 0, e.g. 0.15")
            prediction_time = float(prediction_time)
        if not 0 <= prediction_time < math.inf:
            raise ValidationError(f"Invalid prediction_time {prediction_time!r}.", value=prediction_time,
                                  allowed="the latency in seconds: a finite number >= 0, e.g. 0.15")
        if success is not True and success is not False:
            import numpy as np

            if not isinstance(success, np.bool_):
                raise ValidationError(f"Invalid success {success!r}.", value=success, allowed="True or False")
            success = bool(success)
        if input_features is not None:
            if type(input_features) is not dict:
                if not isinstance(input_features, Mapping):
                    raise ValidationError(
                        f"input_features must be a dict of feature name to value; got "
                        f"{type(input_features).__name__}.", value=type(input_features).__name__,
                        allowed="a dict such as {'priority': 1, 'category': 'technical'}, or None")
            input_features = dict(input_features)  # the caller may reuse its dict
        if version is None:
            version = UNVERSIONED
        elif type(version) is not str or not version:
            raise ValidationError(f"Invalid version {version!r}.", value=version,
                                  allowed="a version string such as '1.0.0', or None")
        if prediction is not None and type(prediction) not in (int, float, str, bool):
            prediction = _scalar_or_json(prediction)
        if timestamp is None:
            ts = self.clock()
        elif type(timestamp) is float or type(timestamp) is int:
            ts = float(timestamp)
        else:
            ts = self._now(timestamp)
        if type(environment) is not str:
            raise ValidationError(f"Invalid environment {environment!r}.", value=environment,
                                  allowed="a string such as 'production', or ''")
        self.predlog.append_row(self.tenant, model_id, ts, version, environment, prediction_time, success,
                                input_features, prediction, None)

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
        import numpy as np
        import pandas as pd
        import pyarrow as pa

        self._model(model_id)
        if isinstance(data, pd.DataFrame):
            df = data
        elif isinstance(data, (list, tuple)) and all(isinstance(r, Mapping) for r in data):
            df = pd.DataFrame(list(data))
        elif isinstance(data, Mapping):
            try:
                df = pd.DataFrame(dict(data))
            except (TypeError, ValueError) as exc:
                raise ValidationError(f"data could not be read as columns: {exc}", value=type(data).__name__,
                                      allowed="a DataFrame, a list of dicts or a dict of equal-length columns") from exc
        else:
            raise ValidationError(f"data must be a table of predictions; got {type(data).__name__}.",
                                  value=type(data).__name__,
                                  allowed="a DataFrame, a list of dicts or a dict of equal-length columns")
        n = len(df)
        missing = [c for c in ("prediction_time", "success") if c not in df.columns]
        if missing:
            raise ValidationError(f"data lacks the column(s) {missing}.", value=[str(c) for c in df.columns],
                                  allowed="columns prediction_time and success, optionally prediction, version, "
                                          "timestamp, environment, error, and the feature columns")
        if n == 0:
            return 0
        try:
            lat = pd.to_numeric(df["prediction_time"], errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"prediction_time must hold numbers: {exc}", value=str(df["prediction_time"].dtype),
                                  allowed="latencies in seconds: finite numbers >= 0") from exc
        bad = ~(np.isfinite(lat) & (lat >= 0))
        if bad.any():
            i = int(np.argmax(bad))
            raise ValidationError(f"prediction_time of row {i} is {lat[i]!r}.", value=lat[i],
                                  allowed="latencies in seconds: finite numbers >= 0")
        ok = _bool_column(df["success"])
        if version is not None and (not isinstance(version, str) or not version):
            raise ValidationError(f"Invalid version {version!r}.", value=version, allowed="a version string or None")
        default_version = version or UNVERSIONED
        if "version" in df.columns:
            versions = pa.array(df["version"].astype(object).where(df["version"].notna(), default_version)
                                .astype(str).to_numpy(dtype=object), type=pa.string())
        else:
            versions = pa.array(np.full(n, default_version, dtype=object), type=pa.string())
        if "timestamp" in df.columns:
            ts_us = _timestamps_us(df["timestamp"])
        else:
            ts_us = np.full(n, int(round(self.clock() * 1_000_000)), dtype=np.int64)
        env = df["environment"].astype(str).to_numpy(dtype=object) if "environment" in df.columns \
            else np.full(n, "", dtype=object)
        cols: dict[str, Any] = {
            "timestamp": pa.array(ts_us, type=pa.timestamp("us", tz="UTC")),
            "version": versions,
            "environment": pa.array(env, type=pa.string()),
            "latency_s": pa.array(lat),
            "success": pa.array(ok),
            "error": (_arrow_column(df["error"].astype(object).where(df["error"].notna(), None))
                      if "error" in df.columns else pa.nulls(n, type=pa.string())),
        }
        for c in df.columns:
            if c in RESERVED_COLUMNS:
                continue
            if not isinstance(c, str) or not c:
                raise ValidationError(f"Invalid feature column name {c!r}.", value=c,
                                      allowed="non-empty strings")
            cols[FEATURE_PREFIX + c] = _arrow_column(df[c])
        if "prediction" in df.columns:
            cols["prediction"] = _arrow_column(df["prediction"])
        self.predlog.append_table(self.tenant, model_id, pa.table(cols))
        return n

    # -- reference -----------------------------------------------------------------------
    def _ref_path(self, model_id: str, version: str | None) -> Path:
        name = "reference.parquet" if version is None else f"reference-{version}.parquet"
        return self.settings.home / "monitoring" / self.tenant / model_id / name

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
        import pandas as pd

        self._model(model_id)
        if isinstance(data, Mapping) and not isinstance(data, pd.DataFrame):
            try:
                data = pd.DataFrame(dict(data))
            except (TypeError, ValueError) as exc:
                raise ValidationError(f"Reference data could not be read as columns: {exc}",
                                      value=type(data).__name__, allowed="a non-empty pandas DataFrame") from exc
        if not isinstance(data, pd.DataFrame) or data.empty or data.shape[1] == 0:
            raise ValidationError("Reference data must be a non-empty pandas DataFrame of input features.",
                                  value=type(data).__name__ if not isinstance(data, pd.DataFrame) else data.shape,
                                  allowed="a DataFrame with at least one row and one feature column")
        if version is not None and (not isinstance(version, str) or not _VERSION_RE.fullmatch(version)):
            raise ValidationError(f"Invalid version {version!r}.", value=version,
                                  allowed="a version such as '1.0.0', or None for every version")
        frame = data.copy()
        frame.columns = [str(c) for c in frame.columns]
        frame = frame.reset_index(drop=True)
        path = self._ref_path(model_id, version)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(path)
        return {"model_id": model_id, "version": version, "rows": len(frame), "columns": list(frame.columns),
                "reference_source": "set_reference"}

    def _read_ref_file(self, path: Path) -> Any:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        key = (st.st_size, st.st_mtime_ns)
        hit = self._ref_cache.get(str(path))
        if hit is not None and hit[0] == key:
            return hit[1]
        import pandas as pd

        df = pd.read_parquet(path)
        self._ref_cache[str(path)] = (key, df)
        return df

    def _version_reference(self, model_id: str, version: str) -> Any:
        key = (model_id, version)
        hit = self._vref_cache.get(key)
        now = time.monotonic()
        if hit is not None and (hit[1] is not None or now < hit[0]):
            return hit[1]
        df = None
        try:
            v = self.versioning.get_version(model_id, version)
            if v.get("has_reference"):
                df = self.versioning.load_reference_data(model_id, v["version"])
        except MLOpsError:
            df = None  # not a registered model or version: no reference of this kind
        except Exception as exc:  # the registry is unreachable: try again later
            log.warning("mlops_jupyter: could not read the reference data of %s %s: %s", model_id, version, exc)
            df = None
        self._vref_cache[key] = (now + _NEGATIVE_CACHE_S, df)
        return df

    def _reference(self, model_id: str, version: str | None) -> tuple[Any, str | None, str | None]:
        """(reference frame, source, version it belongs to) without the first-N fallback."""
        for v in ([version] if version and version != UNVERSIONED and _VERSION_RE.fullmatch(version) else []) + [None]:
            df = self._read_ref_file(self._ref_path(model_id, v))
            if df is not None:
                return df, "set_reference", v
        if version and version != UNVERSIONED:
            df = self._version_reference(model_id, version)
            if df is not None and len(df):
                return df, "version", version
        return None, None, None

    # -- reading windows -----------------------------------------------------------------
    def _read(self, model_id: str, win: Window, version: str | None, now: float,
              columns: Sequence[str] = _READ_COLUMNS) -> Any:
        if win.kind == "last":
            table = self.predlog.read_table(self.tenant, model_id, last_n=win.size, version=version,
                                            columns=columns)
        else:
            assert win.seconds is not None
            table = self.predlog.read_table(self.tenant, model_id, since=now - win.seconds, until=now,
                                            version=version, columns=columns)
        return table.to_pandas()

    @staticmethod
    def _window_info(win: Window, df: Any, now: float) -> dict[str, Any]:
        if win.kind == "span":
            return {"type": "span", "span": win.spec, "seconds": win.seconds,
                    "start": _alerts.iso(now - (win.seconds or 0)), "end": _alerts.iso(now)}
        first = last = None
        if len(df):
            first = df["timestamp"].iloc[0].isoformat().replace("+00:00", "Z")
            last = df["timestamp"].iloc[-1].isoformat().replace("+00:00", "Z")
        return {"type": "last", "size": win.size, "start": first, "end": last}

    def _check(self, model_id: str, threshold: Any, window: Any, version: Any, now: float,
               need_drift: bool = True) -> dict[str, Any]:
        from mlops_jupyter.monitoring.drift import METHOD, _check_threshold, compare
        from mlops_jupyter.errors import EmptyWindowError

        self._model(model_id)
        threshold = _check_threshold(threshold)
        win = parse_window(window)
        if version is not None and (not isinstance(version, str) or not version):
            raise ValidationError(f"Invalid version {version!r}.", value=version,
                                  allowed="a version string such as '1.0.0', or None for every version")
        self._sync()
        df = self._read(model_id, win, version, now, _READ_COLUMNS if need_drift else _PERF_COLUMNS)
        perf = performance_metrics(df)
        result: dict[str, Any] = {
            "drift_detected": False,
            "drift_score": None,
            "performance_metrics": perf,
            "features": {},
            "method": METHOD,
            "n_reference": 0,
            "n_current": 0,
            "threshold": threshold,
            "reference_source": None,
            "reference_version": None,
            "window": self._window_info(win, df, now),
            "model_id": model_id,
            "version": version,
            "status": "ok",
            "reason": None,
            "drifted_features": [],
            "skipped": {},
            "warnings": [],
            "environment": str(df["environment"].iloc[-1]) if len(df) else None,
            "checked_at": _alerts.iso(now),
        }
        if not need_drift:
            return result

        def give_up(status: str, reason: str) -> dict[str, Any]:
            result["status"], result["reason"] = status, reason
            return result

        if len(df) == 0:
            where = f" of version {version!r}" if version else ""
            return give_up("no_data", f"No predictions{where} of {model_id!r} in the window "
                           f"({self._describe_window(win)}); track_prediction() or traffic through the "
                           "gateway logs them.")
        success = df["success"].to_numpy(dtype=bool, na_value=False)
        current = _drop_featureless(_feature_frame(df), success)
        if current.shape[1] == 0 or len(current) == 0:
            return give_up("no_features", f"The predictions of {model_id!r} in the window carry no input "
                           "features, so there is nothing to compare; pass input_features= to "
                           "track_prediction().")
        scope = version or str(df["version"].iloc[-1])
        reference, source, ref_version = self._reference(model_id, scope)
        if reference is None:
            first = self.predlog.read_table(self.tenant, model_id, first_n=self.reference_rows, version=version,
                                            columns=[ALL_FEATURES])
            ref_df = first.to_pandas()
            reference = _feature_frame(ref_df)
            if reference.shape[1] == 0 or len(reference) == 0:
                return give_up("no_reference", f"No reference data for {model_id!r}: none set with "
                               "set_reference(), none stored with the version (create_version(..., "
                               "reference_data=df)), and the first predictions carry no features.")
            source, ref_version = "first_predictions", None
            cut = ref_df["timestamp"].iloc[-1]
            keep = (df["timestamp"] > cut).to_numpy()
            current = _drop_featureless(_feature_frame(df[keep]), success[keep])
            if len(current) == 0:
                result["reference_source"] = source
                result["n_reference"] = len(reference)
                return give_up("no_data", f"No reference data for {model_id!r}, so its first "
                               f"{len(reference)} logged predictions are the reference, and the window "
                               "holds no later prediction yet; log more predictions, or set a reference "
                               "with set_reference().")
        result["reference_source"] = source
        result["reference_version"] = ref_version
        result["n_current"] = len(current)
        result["n_reference"] = len(reference)
        try:
            cmp = compare(reference, current, threshold)
        except EmptyWindowError as exc:
            return give_up("not_comparable", str(exc).split(" Allowed:")[0])
        for key in ("drift_detected", "drift_score", "features", "drifted_features", "skipped", "warnings",
                    "n_reference", "n_current"):
            result[key] = cmp[key]
        return result

    @staticmethod
    def _describe_window(win: Window) -> str:
        return f"the last {win.size} predictions" if win.kind == "last" else f"the last {win.spec}"

    # -- public reads --------------------------------------------------------------------
    def check_drift(self, model_id: str, threshold: float = DEFAULT_THRESHOLD, window: Any = None,
                    version: str | None = None) -> dict[str, Any]:
        """Compare the recent window of a model's predictions with its reference.

        Also evaluates the model's alert rules on the values computed here (when
        ``version`` is None: a version's numbers do not describe the model).

        Args:
            model_id: the model's id.
            threshold: drift when the largest feature score is above it (PSI / Jensen-Shannon
                distance scale; 0.1 = a moderate shift).
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
            ``status`` (``ok`` or why nothing was compared) and ``reason``, ``skipped``,
            ``warnings``, ``environment`` (of the latest prediction), ``alerts`` (the
            model's rules after evaluation) and ``checked_at``.

        Raises:
            InvalidNameError: bad model id.
            InvalidWindowError: bad window.
            ValidationError: bad threshold or version.

        Example:
            >>> r = monitoring.check_drift("ticket_classifier", threshold=0.1, window="1h")
            >>> r["drift_detected"], r["drift_score"], list(r["features"])[:2]
            (True, 0.31, ['response_hours', 'channel'])
        """
        now = self._now()
        result = self._check(model_id, threshold, window, version, now)
        if version is None:
            self._apply_rules(model_id, self.store.list_alert_rules(self.tenant, model_id), result, now)
            self._deliver_held()
        result["alerts"] = [self._public_rule(r) for r in self.store.list_alert_rules(self.tenant, model_id)]
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
        import pandas as pd

        self._model(model_id)
        win = parse_window(window)
        now = self._now()
        self._sync()
        df = self._read(model_id, win, version, now)
        success = df["success"].to_numpy(dtype=bool, na_value=False) if len(df) else None
        current = _drop_featureless(_feature_frame(df), success) if len(df) else _feature_frame(df)
        scope = version or (str(df["version"].iloc[-1]) if len(df) else None)
        reference, _, _ = self._reference(model_id, scope)
        if reference is None:
            first = self.predlog.read_table(self.tenant, model_id, first_n=self.reference_rows, version=version,
                                            columns=[ALL_FEATURES]).to_pandas()
            reference = _feature_frame(first)
            if len(first):
                keep = (df["timestamp"] > first["timestamp"].iloc[-1]).to_numpy() if len(df) else []
                current = _drop_featureless(_feature_frame(df[keep]), success[keep]) if len(df) else current
        if reference is None:
            reference = pd.DataFrame()
        return reference.reset_index(drop=True), current.reset_index(drop=True)

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
        import pandas as pd

        self._model(model_id)
        try:
            pd.tseries.frequencies.to_offset(freq)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"Invalid freq {freq!r}.", value=freq,
                                  allowed="a pandas frequency such as '10s', '1min', '15min', '1h' or '1D'") from exc
        win = parse_window(window)
        now = self._now()
        self._sync()
        df = self._read(model_id, win, None, now, _PERF_COLUMNS)
        cols = ["time", "version", "count", "avg_latency", "p95_latency", "success_rate"]
        if len(df) == 0:
            dtypes = {"time": "datetime64[us, UTC]", "version": "object", "count": "int64"}
            return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, "float64")) for c in cols})
        df = df.assign(version=df["version"].astype(str), success=df["success"].astype(float))
        g = df.groupby([pd.Grouper(key="timestamp", freq=freq), "version"], observed=True, sort=True)
        out = g.agg(count=("latency_s", "size"), avg_latency=("latency_s", "mean"),
                    p95_latency=("latency_s", lambda s: s.quantile(0.95)), success_rate=("success", "mean"))
        out = out[out["count"] > 0].reset_index().rename(columns={"timestamp": "time"})
        out["count"] = out["count"].astype("int64")
        return out[cols]

    # -- alerts --------------------------------------------------------------------------
    def _condition(self, text: str) -> Any:
        from mlops_jupyter.monitoring.alerts.grammar import parse_condition

        cond = self._conditions.get(text)
        if cond is None:
            cond = self._conditions[text] = parse_condition(text)
        return cond

    def _public_rule(self, rule: Mapping[str, Any]) -> dict[str, Any]:
        extra = rule.get("extra") or {}
        action = rule["action"]
        return {
            "alert_id": rule["alert_id"],
            "model_id": rule["model_id"],
            "condition": rule["condition"],
            "action": action,
            "cooldown_s": rule["cooldown_s"],
            "for_s": rule["for_s"],
            "severity": rule["severity"],
            "state": rule["state"],
            "pending_since": _alerts.iso(extra.get("pending_since")) if rule["state"] == "pending" else None,
            "last_fired_at": _alerts.iso(extra.get("last_fired_at")),
            "action_registered": (True if _alerts.is_builtin(action)
                                  else _alerts.registered_action(self.tenant, action) is not None),
            "created_at": _alerts.iso(rule.get("created_at")),
            "updated_at": _alerts.iso(rule.get("updated_at")),
        }

    @staticmethod
    def _public_event(e: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "event_id": e["event_id"],
            "alert_id": e["alert_id"],
            "model_id": e["model_id"],
            "condition": e["condition"],
            "severity": e["severity"],
            "state": e["state"],
            "started_at": _alerts.iso(e.get("started_at")),
            "fired_at": _alerts.iso(e.get("fired_at")),
            "resolved_at": _alerts.iso(e.get("resolved_at")),
            "values": e.get("values") or {},
            "action": e["action"],
            "action_result": e.get("action_result"),
            "delivery": e.get("delivery"),
            "delivered": e.get("delivery") == "delivered",
        }

    def set_alert(self, model_id: str, condition: str, action: str, cooldown: Any = "5m", for_: Any = "0s",
                  severity: str = "warning") -> dict[str, Any]:
        """Add an alert rule on a model (or update the one with the same condition and action).

        Args:
            model_id: the model's id.
            condition: a condition in the safe grammar, e.g. ``"drift_score > 0.1"`` or
                ``"success_rate < 0.95 and avg_latency > 0.2"``; names: ``drift_score``,
                ``success_rate``, ``error_rate``, ``avg_latency``, ``p95_latency``,
                ``prediction_count``, ``feature_score('<feature>')``.
            action: ``log``, ``webhook:<url>``, ``rollback`` / ``rollback:<environment>``, or
                any name (``notify_team``) resolved through :meth:`register_action`; a name
                with nothing registered yet is accepted (see :mod:`mlops_jupyter.monitoring.alerts.engine`).
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
        from mlops_jupyter.monitoring.alerts.grammar import parse_condition, parse_duration

        self._model(model_id)
        canonical = str(parse_condition(condition))
        action = _alerts.validate_action(action)
        cooldown_s = parse_duration(cooldown)
        for_s = parse_duration(for_)
        severity = _alerts.validate_severity(severity)
        now = time.time()
        for rule in self.store.list_alert_rules(self.tenant, model_id):
            if rule["condition"] == canonical and rule["action"] == action:
                self.store.update_alert_rule(rule["alert_id"], {"cooldown_s": cooldown_s, "for_s": for_s,
                                                                "severity": severity, "updated_at": now})
                return self._public_rule(self.store.list_alert_rules(alert_id=rule["alert_id"])[0])
        rule = {"alert_id": _alerts.new_alert_id(), "tenant": self.tenant, "model_id": model_id,
                "condition": canonical, "action": action, "cooldown_s": cooldown_s, "for_s": for_s,
                "severity": severity, "state": "inactive", "revision": 0, "created_at": now, "updated_at": now,
                "extra": {}}
        self.store.put_alert_rule(rule)
        return self._public_rule(rule)

    def list_alert_rules(self, model_id: str | None = None) -> list[dict[str, Any]]:
        """The tenant's alert rules (of one model), oldest first.

        Example:
            >>> [r["condition"] for r in monitoring.list_alert_rules("ticket_classifier")]
            ['drift_score > 0.1']
        """
        if model_id is not None:
            self._model(model_id)
        return [self._public_rule(r) for r in self.store.list_alert_rules(self.tenant, model_id)]

    def _owned_rule(self, alert_id: Any) -> dict[str, Any]:
        if not isinstance(alert_id, str):
            raise ValidationError(f"Invalid alert_id {alert_id!r}.", value=alert_id,
                                  allowed="an id such as 'alert_5f0c1a2b3c4d'")
        rules = self.store.list_alert_rules(alert_id=alert_id)
        if not rules:
            mine = [r["alert_id"] for r in self.store.list_alert_rules(self.tenant)]
            raise AlertNotFoundError(f"No alert rule {alert_id!r} for tenant {self.tenant!r}.", value=alert_id,
                                     allowed=mine or "(no alert rules yet: use set_alert)")
        if rules[0]["tenant"] != self.tenant:
            raise TenantAccessError(f"Alert rule {alert_id!r} belongs to another tenant; tenant {self.tenant!r} "
                                    "cannot read or change it.", value=alert_id)
        return rules[0]

    def delete_alert(self, alert_id: str) -> dict[str, Any]:
        """Delete an alert rule (its history stays in :meth:`alerts`).

        Raises:
            AlertNotFoundError: no such rule for this tenant (the message lists the tenant's).
            TenantAccessError: the rule belongs to another tenant.

        Example:
            >>> monitoring.delete_alert("alert_5f0c1a2b3c4d")
            {'alert_id': 'alert_5f0c1a2b3c4d', 'deleted': True}
        """
        rule = self._owned_rule(alert_id)
        return {"alert_id": rule["alert_id"], "deleted": self.store.delete_alert_rule(rule["alert_id"])}

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
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValidationError(f"Invalid limit {limit!r}.", value=limit, allowed="an int >= 1 or None")
        return [self._public_event(e) for e in self.store.list_alert_events(self.tenant, model_id, limit=limit)]

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
        _alerts.register_action(self.tenant, name, fn)
        return {"action": name, "delivered": self._deliver_held(name)}

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
            ``event_id`` and, when it fired, ``delivery`` and ``action_result``.

        Example:
            >>> monitoring.evaluate_alerts("ticket_classifier")
            [{'alert_id': 'alert_...', 'transitions': ['pending', 'fire'], 'state': 'firing', ...}]
        """
        t = self._now(now)
        if model_id is not None:
            self._model(model_id)
        rules = self.store.list_alert_rules(self.tenant, model_id)
        by_model: dict[str, list[dict[str, Any]]] = {}
        for r in rules:
            by_model.setdefault(r["model_id"], []).append(r)
        changes: list[dict[str, Any]] = []
        for m, rs in by_model.items():
            conditions = [self._condition(r["condition"]) for r in rs]
            need = any("drift_score" in c.names or c.features for c in conditions)
            result = self._check(m, DEFAULT_THRESHOLD, None, None, t, need_drift=need)
            changes += self._apply_rules(m, rs, result, t)
        self._deliver_held()
        return changes

    def _apply_rules(self, model_id: str, rules: list[dict[str, Any]], result: Mapping[str, Any],
                     now: float) -> list[dict[str, Any]]:
        perf = result["performance_metrics"]
        values = {"drift_score": result["drift_score"], "success_rate": perf["success_rate"],
                  "error_rate": perf["error_rate"], "avg_latency": perf["avg_latency"],
                  "p95_latency": perf["p95_latency"], "prediction_count": perf["prediction_count"]}
        scores = {str(k): e["score"] for k, e in (result.get("features") or {}).items()}
        changes = []
        for rule in rules:
            cond = self._condition(rule["condition"])
            holds = cond.evaluate(values, scores)
            state, transitions, extra = _alerts.step(rule, holds, now)
            if not transitions and state == rule["state"]:
                continue
            shown = dict(values)
            if cond.features:
                shown["feature_scores"] = {f: scores.get(f) for f in sorted(cond.features)}
            old_event = (rule.get("extra") or {}).get("event_id")
            new_event = None
            if "pending" in transitions:
                new_event = self.store.add_alert_event({
                    "alert_id": rule["alert_id"], "tenant": self.tenant, "model_id": model_id,
                    "condition": rule["condition"], "severity": rule["severity"], "action": rule["action"],
                    "state": "pending", "started_at": now, "values": shown})
                extra["event_id"] = new_event
            if "cancel" in transitions or "resolve" in transitions:
                extra.pop("event_id", None)
            if not self.store.update_alert_rule(rule["alert_id"], {"state": state, "extra": extra, "updated_at": now},
                                                revision=rule["revision"]):
                if new_event is not None:  # another process stepped this rule first
                    self.store.delete_alert_event(new_event)
                continue
            event_id = new_event if new_event is not None else old_event
            change: dict[str, Any] = {"alert_id": rule["alert_id"], "model_id": model_id,
                                      "condition": rule["condition"], "transitions": transitions, "state": state,
                                      "event_id": event_id}
            if "cancel" in transitions and old_event is not None:
                self.store.delete_alert_event(old_event)
            if "resolve" in transitions and old_event is not None:
                self.store.update_alert_event(old_event, {"state": "resolved", "resolved_at": now})
            if "fire" in transitions and event_id is not None:
                self.store.update_alert_event(event_id, {"state": "firing", "fired_at": now, "values": shown})
                event = self.store.list_alert_events(self.tenant, alert_id=rule["alert_id"], limit=1)[0]
                delivery, action_result = _alerts.deliver(
                    rule["action"], _alerts.alert_payload(event, self.tenant), self.tenant,
                    rollback=lambda m, env: self._rollback(m, env, result.get("environment")))
                self.store.update_alert_event(event_id, {"delivery": delivery, "action_result": action_result})
                change.update(delivery=delivery, action_result=action_result)
            changes.append(change)
        return changes

    def _deliver_held(self, name: str | None = None) -> int:
        """Deliver undelivered alerts whose action now has a callable in this process."""
        delivered = 0
        for e in self.store.list_alert_events(self.tenant, delivery="undelivered"):
            if name is not None and e["action"] != name:
                continue
            if _alerts.registered_action(self.tenant, e["action"]) is None:
                continue
            if not self.store.update_alert_event(e["event_id"], {"delivery": "delivering"},
                                                 expect={"delivery": "undelivered"}):
                continue  # another process is delivering it
            delivery, result = _alerts.deliver(e["action"], _alerts.alert_payload(e, self.tenant), self.tenant)
            result = {**result, "held_since": _alerts.iso(e.get("fired_at"))}
            self.store.update_alert_event(e["event_id"], {"delivery": delivery, "action_result": result})
            delivered += delivery == "delivered"
        return delivered

    def _rollback(self, model_id: str, environment: str | None, seen: str | None) -> dict[str, Any]:
        """The ``rollback`` action: roll the model's deployment back to its previous version."""
        dep = self.deployment
        if environment is None:
            deployed = [d["environment"] for d in dep.list_deployments() if d["model_id"] == model_id]
            if seen and seen in deployed:
                environment = seen
            elif len(deployed) == 1:
                environment = deployed[0]
            elif "production" in deployed:
                environment = "production"
            else:
                raise ValidationError(f"Model {model_id!r} is deployed in {deployed or 'no environment'}; cannot tell "
                                      "which one to roll back.", value=deployed,
                                      allowed="an action 'rollback:<environment>'")
        from mlops_jupyter.registry.versioning import SEMVER_RE
        from mlops_jupyter.deployment.traffic import rollback_target, top_version

        rec = dep.target.get(self.tenant, environment, model_id)
        if rec is None:
            dep.get_deployment(model_id, environment)  # raises NotFoundError naming what is deployed
        before = dict(rec["traffic"])
        live, target = top_version(before), rollback_target(before, rec.get("history") or [])
        if (live and target and SEMVER_RE.fullmatch(live) and SEMVER_RE.fullmatch(target)
                and tuple(map(int, target.split("."))) > tuple(map(int, live.split(".")))):
            # an alert firing again after an earlier rollback must not roll forward
            return {"environment": environment, "from": before, "to": before, "version": live,
                    "skipped": f"the previous version {target} is newer than the live {live}; not rolling forward"}
        after = dep.rollback(model_id, environment, to_version=target)
        return {"environment": environment, "from": before, "to": after["traffic"], "version": after["version"]}

    def __repr__(self) -> str:
        return f"<ModelMonitoring tenant={self.tenant!r} home={str(self.settings.home)!r}>"


# -- helpers for track_predictions ------------------------------------------------------------
def _scalar_or_json(v: Any) -> Any:
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        return v.item()
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, default=str)
    return str(v)


def _bool_column(s: Any) -> Any:
    import numpy as np
    import pandas as pd

    if pd.api.types.is_bool_dtype(s.dtype) and not s.isna().any():
        return s.to_numpy(dtype=bool)
    values = s.to_numpy(dtype=object)
    ok = np.array([v is True or v is False or isinstance(v, np.bool_) or (type(v) is int and v in (0, 1))
                   for v in values], dtype=bool)
    if not ok.all():
        i = int(np.argmin(ok))
        raise ValidationError(f"success of row {i} is {values[i]!r}.", value=values[i], allowed="True or False")
    return values.astype(bool)


def _timestamps_us(s: Any) -> Any:
    import numpy as np
    import pandas as pd

    try:
        if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
            ts = pd.to_datetime(s.astype("float64"), unit="s", utc=True)
        else:
            ts = pd.to_datetime(s, utc=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValidationError(f"timestamp could not be read as points in time: {exc}", value=str(s.dtype),
                              allowed="unix seconds, datetimes or ISO text") from exc
    if ts.isna().any():
        i = int(np.argmax(ts.isna().to_numpy()))
        raise ValidationError(f"timestamp of row {i} is missing.", value=s.iloc[i],
                              allowed="unix seconds, datetimes or ISO text")
    return ts.to_numpy(dtype="datetime64[us]").view(np.int64)


def _arrow_column(s: Any) -> Any:
    import pyarrow as pa

    try:
        arr = pa.Array.from_pandas(s)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError):
        arr = pa.array([None if v is None or v != v else str(v) for v in s.to_numpy(dtype=object)], type=pa.string())
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    elif pa.types.is_dictionary(arr.type) and pa.types.is_large_string(arr.type.value_type):
        arr = arr.cast(pa.dictionary(arr.type.index_type, pa.string()))
    return arr
