"""Logging predictions made outside the gateway: validation and column conversions.

:func:`track_prediction` appends one row to the prediction log's buffer (a few
microseconds) and to its write-ahead log (:mod:`~mlops_jupyter.monitoring.predlog.wal`; the
process' shared log is opened with ``wal=True`` unless ``$MLOPS_PREDLOG_DURABLE=0``), so a row
whose call returned survives a kill -9: the next process that reads or writes the log
replays it. The price is one ``write(2)`` per call (about 4x slower single calls). :func:`track_predictions`
turns a table (a DataFrame, a list of dicts or a dict of columns) into one Arrow batch of
the log's columns (millions of rows per second) and, unless ``$MLOPS_PREDLOG_DURABLE=0``,
writes it as a part before returning. The log writes buffered rows about once a second from a background
thread, and at interpreter exit. Bad values raise :class:`~mlops_jupyter.errors.ValidationError` naming the
first bad row.

A table's columns ``prediction_time`` (seconds) and ``success`` are required;
``prediction``, ``version``, ``timestamp``, ``environment`` and ``error`` are optional
(:data:`RESERVED_COLUMNS`); every other column is an input feature.
"""

from __future__ import annotations

import json
import math
import numbers
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlops_jupyter.config.names import validate_version
from mlops_jupyter.errors import ValidationError
from mlops_jupyter.monitoring.predlog import FEATURE_PREFIX, PredictionLog
from mlops_jupyter.monitoring.windows import to_seconds

UNVERSIONED = "unversioned"
"""The version recorded for a tracked prediction made without ``version=``."""
RESERVED_COLUMNS = ("prediction_time", "success", "prediction", "version", "timestamp", "environment", "error")
"""Columns of ``track_predictions`` data that are not features."""

_PREDLOGS: dict[str, PredictionLog] = {}
_PREDLOGS_LOCK = threading.Lock()


def shared_prediction_log(home: str | Path) -> PredictionLog:
    """The process' one :class:`PredictionLog` of a storage home (one buffer, one writer thread)."""
    key = str(Path(home).absolute())
    with _PREDLOGS_LOCK:
        plog = _PREDLOGS.get(key)
        if plog is None or plog._closed:
            from mlops_jupyter.monitoring.limits import predlog_durable

            plog = _PREDLOGS[key] = PredictionLog(key, wal=predlog_durable())  # track_prediction survives kill -9
        return plog


def open_prediction_log(home: str | Path) -> PredictionLog | None:
    """The process' prediction log of a home if one was opened, else None."""
    return _PREDLOGS.get(str(Path(home).absolute()))


def track_prediction(
    predlog: PredictionLog,
    tenant: str,
    model_id: str,
    prediction_time: Any,
    success: Any,
    input_features: Any,
    prediction: Any,
    version: Any,
    timestamp: Any,
    environment: Any,
    *,
    clock: Callable[[], float],
) -> None:
    """Validate one prediction and append it to ``predlog`` (``model_id`` is already valid).

    See :meth:`~mlops_jupyter.monitoring.facade.ModelMonitoring.track_prediction`.
    """
    t = type(prediction_time)
    if t is not float and t is not int:
        if isinstance(prediction_time, bool) or not isinstance(prediction_time, numbers.Real):
            raise ValidationError(
                f"Invalid prediction_time {prediction_time!r}.",
                value=prediction_time,
                allowed="the latency in seconds: a finite number >= 0, e.g. 0.15",
            )
        prediction_time = float(prediction_time)
    if not 0 <= prediction_time < math.inf:
        raise ValidationError(
            f"Invalid prediction_time {prediction_time!r}.",
            value=prediction_time,
            allowed="the latency in seconds: a finite number >= 0, e.g. 0.15",
        )
    if success is not True and success is not False:
        import numpy as np

        if not isinstance(success, np.bool_):
            raise ValidationError(f"Invalid success {success!r}.", value=success, allowed="True or False")
        success = bool(success)
    if input_features is not None:
        if type(input_features) is not dict and not isinstance(input_features, Mapping):
            raise ValidationError(
                f"input_features must be a dict of feature name to value; got {type(input_features).__name__}.",
                value=type(input_features).__name__,
                allowed="a dict such as {'priority': 1, 'category': 'technical'}, or None",
            )
        input_features = dict(input_features)  # the caller may reuse its dict
    if version is None:
        version = UNVERSIONED
    else:
        validate_version(version)
    if prediction is not None and type(prediction) not in (int, float, str, bool):
        prediction = _scalar_or_json(prediction)
    if timestamp is None:
        ts = clock()
    elif type(timestamp) is float or type(timestamp) is int:
        ts = float(timestamp)
    else:
        ts = to_seconds(timestamp)
    if type(environment) is not str:
        raise ValidationError(
            f"Invalid environment {environment!r}.", value=environment, allowed="a string such as 'production', or ''"
        )
    predlog.append_row(
        tenant, model_id, ts, version, environment, prediction_time, success, input_features, prediction, None
    )


def track_predictions(
    predlog: PredictionLog, tenant: str, model_id: str, data: Any, version: Any, *, clock: Callable[[], float]
) -> int:
    """Validate a table of predictions and append it to ``predlog`` as one batch.

    See :meth:`~mlops_jupyter.monitoring.facade.ModelMonitoring.track_predictions`.

    Returns:
        The number of predictions logged.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    if isinstance(data, pd.DataFrame):
        df = data
    elif isinstance(data, (list, tuple)) and all(isinstance(r, Mapping) for r in data):
        df = pd.DataFrame(list(data))
    elif isinstance(data, Mapping):
        try:
            df = pd.DataFrame(dict(data))
        except (TypeError, ValueError) as exc:
            raise ValidationError(
                f"data could not be read as columns: {exc}",
                value=type(data).__name__,
                allowed="a DataFrame, a list of dicts or a dict of equal-length columns",
            ) from exc
    else:
        raise ValidationError(
            f"data must be a table of predictions; got {type(data).__name__}.",
            value=type(data).__name__,
            allowed="a DataFrame, a list of dicts or a dict of equal-length columns",
        )
    n = len(df)
    missing = [c for c in ("prediction_time", "success") if c not in df.columns]
    if missing:
        raise ValidationError(
            f"data lacks the column(s) {missing}.",
            value=[str(c) for c in df.columns],
            allowed="columns prediction_time and success, optionally prediction, version, "
            "timestamp, environment, error, and the feature columns",
        )
    if n == 0:
        return 0
    try:
        lat = pd.to_numeric(df["prediction_time"], errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"prediction_time must hold numbers: {exc}",
            value=str(df["prediction_time"].dtype),
            allowed="latencies in seconds: finite numbers >= 0",
        ) from exc
    bad = ~(np.isfinite(lat) & (lat >= 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValidationError(
            f"prediction_time of row {i} is {lat[i]!r}.",
            value=lat[i],
            allowed="latencies in seconds: finite numbers >= 0",
        )
    ok = _bool_column(df["success"])
    if version is not None:
        validate_version(version)
    default_version = version or UNVERSIONED
    if "version" in df.columns:
        versions = pa.array(
            df["version"]
            .astype(object)
            .where(df["version"].notna(), default_version)
            .astype(str)
            .to_numpy(dtype=object),
            type=pa.string(),
        )
    else:
        versions = pa.array(np.full(n, default_version, dtype=object), type=pa.string())
    if "timestamp" in df.columns:
        ts_us = _timestamps_us(df["timestamp"])
    else:
        ts_us = np.full(n, round(clock() * 1_000_000), dtype=np.int64)
    env = (
        df["environment"].astype(str).to_numpy(dtype=object)
        if "environment" in df.columns
        else np.full(n, "", dtype=object)
    )
    cols: dict[str, Any] = {
        "timestamp": pa.array(ts_us, type=pa.timestamp("us", tz="UTC")),
        "version": versions,
        "environment": pa.array(env, type=pa.string()),
        "latency_s": pa.array(lat),
        "success": pa.array(ok),
        "error": (
            _arrow_column(df["error"].astype(object).where(df["error"].notna(), None))
            if "error" in df.columns
            else pa.nulls(n, type=pa.string())
        ),
    }
    for c in df.columns:
        if c in RESERVED_COLUMNS:
            continue
        if not isinstance(c, str) or not c:
            raise ValidationError(f"Invalid feature column name {c!r}.", value=c, allowed="non-empty strings")
        cols[FEATURE_PREFIX + c] = _arrow_column(df[c])
    if "prediction" in df.columns:
        cols["prediction"] = _arrow_column(df["prediction"])
    predlog.append_table(tenant, model_id, pa.table(cols))
    from mlops_jupyter.monitoring.limits import predlog_durable

    if predlog_durable():  # written before returning, so a batch whose call returned survives kill -9
        predlog.flush()
    return n


# -- column conversions ----------------------------------------------------------------
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
    ok = np.array(
        [v is True or v is False or isinstance(v, np.bool_) or (type(v) is int and v in (0, 1)) for v in values],
        dtype=bool,
    )
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
        raise ValidationError(
            f"timestamp could not be read as points in time: {exc}",
            value=str(s.dtype),
            allowed="unix seconds, datetimes or ISO text",
        ) from exc
    if ts.isna().any():
        i = int(np.argmax(ts.isna().to_numpy()))
        raise ValidationError(
            f"timestamp of row {i} is missing.", value=s.iloc[i], allowed="unix seconds, datetimes or ISO text"
        )
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
