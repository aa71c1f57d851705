"""The prediction log: every prediction served (or tracked), stored columnar for monitoring.

Writers append to an in-memory buffer (no I/O on the caller's path); a background thread
turns what accumulated into one Parquet part file per (tenant, model) about every second,
and once more on :meth:`PredictionLog.close` (at interpreter exit, and on SIGTERM in the
gateway)::

    {home}/predictions/{tenant}/{model_id}/part-{flush_ms}-{pid}-{seq}.parquet

One row per predicted input row, with the columns

=================  ==========================================================
``timestamp``      when the request arrived (UTC, microseconds)
``request_id``     the same for every row of one request
``version``        the model version that answered
``environment``    the deployment environment (or ``""`` when tracked elsewhere)
``latency_s``      the request's latency in seconds
``success``        False for a failed request (then ``error`` says why)
``error``          the error message, or null
``feature.NAME``   one column per input feature, in its own type
``prediction``     the model's output for the row (JSON text if not a scalar)
=================  ==========================================================

Parts are written to a temporary name and renamed, so a reader never sees half a file.
The flush time in the name lets :meth:`PredictionLog.read` skip files older than ``since``.
A process killed with SIGKILL loses what it buffered since its last flush (about a second).

Example:
    >>> log = PredictionLog("/tmp/store")
    >>> log.append("acme", "churn", version="1.0.0", environment="production",
    ...            latency_s=0.0004, success=True, features={"age": 41, "plan": "pro"},
    ...            output=[1])
    >>> log.flush()
    >>> log.read("acme", "churn")[["version", "feature.age", "prediction"]]
      version  feature.age  prediction
    0   1.0.0           41           1
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import os
import random
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Mapping, Sequence

from mlops_jupyter.core.tenancy import validate_model_id, validate_tenant
from mlops_jupyter.errors import ValidationError

log = logging.getLogger(__name__)

FEATURE_PREFIX = "feature."
PREDICTION_COLUMN = "prediction"
META_COLUMNS = ("timestamp", "request_id", "version", "environment", "latency_s", "success", "error")
DEFAULT_FLUSH_INTERVAL = 1.0
DEFAULT_MAX_BUFFERED = 2_000_000  # requests held when the disk cannot keep up; older are dropped

_LOGS: "weakref.WeakSet[PredictionLog]" = weakref.WeakSet()
_EXIT_HOOKED = False


def _close_all_at_exit() -> None:
    for plog in list(_LOGS):
        try:
            plog.close()
        except Exception as exc:  # never raise at exit
            log.warning("mlops_jupyter: could not flush the prediction log: %s", exc)


class PredictionLog:
    """Batched, columnar log of predictions under a storage home.

    Args:
        home: the storage home (``Settings.home``); parts go to ``{home}/predictions``.
        flush_interval: seconds between background flushes.
        max_buffered: most requests held in memory; beyond it the oldest are dropped
            (counted in :attr:`dropped`) rather than growing without bound.
        background: start the background writer thread (False: only explicit flushes).

    Example:
        >>> log = PredictionLog(home)
        >>> log.append("default", "iris", version="1.0.0", environment="production",
        ...            latency_s=0.001, success=True, features=df.head(3), output=[0, 0, 1])
    """

    def __init__(self, home: str | os.PathLike[str], flush_interval: float = DEFAULT_FLUSH_INTERVAL,
                 max_buffered: int = DEFAULT_MAX_BUFFERED, background: bool = True) -> None:
        self.root = Path(home) / "predictions"
        self.flush_interval = float(flush_interval)
        self.max_buffered = int(max_buffered)
        self.dropped = 0
        self.written_rows = 0
        self._buf: list[tuple[Any, ...]] = []
        self._buf_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._seq = itertools.count()
        self._req_ids = itertools.count(random.getrandbits(40) << 20)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        if background:
            self._thread = threading.Thread(target=self._run, name="mlops-predlog", daemon=True)
            self._thread.start()
        global _EXIT_HOOKED
        _LOGS.add(self)
        if not _EXIT_HOOKED:
            atexit.register(_close_all_at_exit)
            _EXIT_HOOKED = True

    # -- writing -------------------------------------------------------------------------
    def append(
        self,
        tenant: str,
        model_id: str,
        *,
        version: str,
        environment: str = "",
        latency_s: float,
        success: bool,
        features: Any = None,
        columns: Sequence[str] | None = None,
        output: Any = None,
        error: str | None = None,
        timestamp: float | None = None,
    ) -> None:
        """Buffer one request's predictions (no I/O; returns in about a microsecond).

        Args:
            tenant: the tenant slug.
            model_id: the model id.
            version: the version that answered.
            environment: the deployment environment (``""`` for predictions made elsewhere).
            latency_s: the request's latency in seconds.
            success: whether the request succeeded.
            features: the inputs: a DataFrame, a 2-D array (with ``columns``), a list of
                rows (with ``columns``), a list of dicts, or one dict (a single row).
            columns: feature names for array or list-of-rows ``features``.
            output: the predictions, one per row (array, list, Series) or a scalar.
            error: what went wrong, for a failed request.
            timestamp: unix seconds of the request (default: now).

        Example:
            >>> log.append("acme", "churn", version="1.0.0", latency_s=0.002,
            ...            success=True, features={"age": 41}, output=1)
        """
        rec = (timestamp if timestamp is not None else time.time(), tenant, model_id, version,
               environment, latency_s, success, features, columns, output, error)
        with self._buf_lock:
            self._buf.append(rec)
            if len(self._buf) > self.max_buffered:
                del self._buf[: len(self._buf) - self.max_buffered]
                self.dropped += 1

    def flush(self) -> int:
        """Write everything buffered now; returns the number of rows written.

        Example:
            >>> log.flush()
            3
        """
        with self._buf_lock:
            buf, self._buf = self._buf, []
        if not buf:
            return 0
        groups: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        for rec in buf:
            groups.setdefault((rec[1], rec[2]), []).append(rec)
        written = 0
        with self._write_lock:
            for (tenant, model_id), recs in groups.items():
                try:
                    written += self._write_part(tenant, model_id, recs)
                except Exception as exc:  # a bad record must not stop the others
                    self.dropped += len(recs)
                    log.warning("mlops_jupyter: could not write %d prediction record(s) of %s/%s: %s",
                                len(recs), tenant, model_id, exc)
        self.written_rows += written
        return written

    def close(self) -> None:
        """Stop the background writer and write what is left (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            try:
                self.flush()
            except Exception as exc:  # pragma: no cover - flush already guards each group
                log.warning("mlops_jupyter: prediction log flush failed: %s", exc)

    def _write_part(self, tenant: str, model_id: str, recs: list[tuple[Any, ...]]) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq

        validate_tenant(tenant)  # they name folders: never let one climb out of the log
        validate_model_id(model_id)
        table = _build_table(recs, self._req_ids)
        folder = self.root / tenant / model_id
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{int(time.time() * 1000):014d}-{os.getpid()}-{next(self._seq):06d}.parquet"
        tmp = folder / f".{name}.tmp"
        pq.write_table(table, tmp, compression="zstd" if pa.Codec.is_available("zstd") else "snappy")
        os.replace(tmp, folder / name)
        return table.num_rows

    # -- reading -------------------------------------------------------------------------
    def read(self, tenant: str, model_id: str, since: Any = None, last_n: int | None = None) -> Any:
        """The logged predictions of one model, oldest first, as a pandas DataFrame.

        What this object still buffers is flushed first; what another process (the
        gateway) buffers appears within about a second.

        Args:
            tenant: the tenant slug.
            model_id: the model id.
            since: only rows at or after this time (datetime, pandas Timestamp, ISO string
                or unix seconds).
            last_n: only the last ``last_n`` rows.

        Returns:
            A DataFrame with the columns described in the module docstring (empty, with
            the metadata columns, when nothing was logged).

        Raises:
            InvalidTenantError, InvalidNameError: bad tenant or model id.
            ValidationError: bad ``since`` or ``last_n``.

        Example:
            >>> df = log.read("acme", "churn", last_n=1000)
            >>> df.groupby("version").size()
        """
        import pandas as pd
        import pyarrow.parquet as pq

        validate_tenant(tenant)
        validate_model_id(model_id)
        if last_n is not None and (isinstance(last_n, bool) or not isinstance(last_n, int) or last_n < 0):
            raise ValidationError(f"Invalid last_n {last_n!r}.", value=last_n, allowed="an int >= 0 or None")
        since_ts = _to_timestamp(since)
        self.flush()
        folder = self.root / tenant / model_id
        files = sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []
        if since_ts is not None:
            # a part flushed before `since` holds only rows older than `since`
            files = [f for f in files if _flush_ms(f) is None or _flush_ms(f) >= since_ts.timestamp() * 1000]
        frames: list[Any] = []
        rows = 0
        for f in reversed(files):  # newest first, so last_n can stop early
            try:
                frames.append(pq.read_table(f).to_pandas())
            except Exception as exc:  # a corrupt part must not hide the others
                log.warning("mlops_jupyter: skipping unreadable prediction part %s: %s", f, exc)
                continue
            rows += len(frames[-1])
            if last_n is not None and since_ts is None and rows >= last_n:
                break
        if not frames:
            return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _EMPTY_DTYPES.items()})
        frames = [fr for fr in reversed(frames) if len(fr)]
        df = pd.concat(frames, ignore_index=True, sort=False) if len(frames) > 1 else frames[0]
        df = df.sort_values("timestamp", kind="stable", ignore_index=True)
        if since_ts is not None:
            df = df[df["timestamp"] >= since_ts].reset_index(drop=True)
        if last_n is not None:
            df = df.iloc[len(df) - min(last_n, len(df)):].reset_index(drop=True)
        return df


_EMPTY_DTYPES = {
    "timestamp": "datetime64[us, UTC]", "request_id": "int64", "version": "object",
    "environment": "object", "latency_s": "float64", "success": "bool", "error": "object",
    PREDICTION_COLUMN: "object",
}


def _flush_ms(path: Path) -> int | None:
    try:
        return int(path.name.split("-")[1])
    except (IndexError, ValueError):
        return None


def _to_timestamp(since: Any) -> Any:
    if since is None:
        return None
    import pandas as pd

    try:
        if isinstance(since, (int, float)) and not isinstance(since, bool):
            return pd.Timestamp(since, unit="s", tz="UTC")
        ts = pd.Timestamp(since)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"Invalid since {since!r}: {exc}.", value=since,
                              allowed="a datetime, a pandas Timestamp, an ISO string or unix seconds") from exc
    if ts is pd.NaT:
        raise ValidationError(f"Invalid since {since!r}.", value=since, allowed="a point in time")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


# -- turning buffered records into one Arrow table ---------------------------------------
def _normalize_features(features: Any, columns: Sequence[str] | None) -> tuple[int, dict[str, Any]]:
    """(rows, {name: 1-D chunk}) for any accepted ``features`` shape."""
    if features is None:
        return 1, {}
    import numpy as np

    if isinstance(features, np.ndarray):
        arr = features if features.ndim == 2 else features.reshape(1, -1)
        names = list(columns) if columns is not None else [f"x{i}" for i in range(arr.shape[1])]
        return arr.shape[0], {n: arr[:, i] for i, n in enumerate(names)}
    if hasattr(features, "columns") and hasattr(features, "to_numpy"):  # a DataFrame
        return len(features), {str(c): features[c].to_numpy() for c in features.columns}
    if isinstance(features, Mapping):
        vals = list(features.values())
        if vals and all(isinstance(v, (list, tuple, np.ndarray)) for v in vals):
            n = len(vals[0])
            return n, {str(k): list(v) for k, v in features.items()}
        return 1, {str(k): [v] for k, v in features.items()}
    if isinstance(features, (list, tuple)):
        if not features:
            return 0, {}
        if isinstance(features[0], Mapping):
            names: list[str] = []
            for row in features:
                for k in row:
                    if k not in names:
                        names.append(k)
            return len(features), {str(k): [row.get(k) for row in features] for k in names}
        rows = [r if isinstance(r, (list, tuple)) else [r] for r in features]
        width = max(len(r) for r in rows)
        names = list(columns) if columns is not None else [f"x{i}" for i in range(width)]
        return len(rows), {n: [r[i] if i < len(r) else None for r in rows] for i, n in enumerate(names)}
    return 1, {"x0": [features]}


def _normalize_output(output: Any, n: int) -> list[Any] | Any:
    import numpy as np

    if output is None:
        return [None] * n
    if hasattr(output, "to_numpy") and not hasattr(output, "columns"):  # Series
        output = output.to_numpy()
    if hasattr(output, "columns"):  # DataFrame: one dict per row
        return [json.dumps(r, default=str) for r in output.to_dict(orient="records")]
    if isinstance(output, np.ndarray):
        if output.ndim == 0:
            return [output.item()] * n
        if output.ndim == 1 and output.dtype.kind in "biuf":
            return output
        return [json.dumps(_jsonable(x)) if not np.isscalar(x) else x for x in output.tolist()]
    if isinstance(output, (list, tuple)):
        return [json.dumps(_jsonable(x), default=str) if isinstance(x, (list, tuple, dict)) else x for x in output]
    return [output] * n


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    return x


def _concat(chunks: list[Any], n_total: int) -> Any:
    """One array (or list) from per-request chunks; None chunks are null rows."""
    import numpy as np

    if all(isinstance(c, np.ndarray) and c.dtype.kind in "biufM" for c in chunks):
        kinds = {c.dtype.kind for c in chunks}
        if len(kinds) == 1 or kinds <= {"b", "i", "u", "f"}:
            return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    out: list[Any] = []
    for c in chunks:
        if isinstance(c, np.ndarray):
            out.extend(c.tolist())
        else:
            out.extend(c)
    return out


def _arrow_array(values: Any) -> Any:
    import numpy as np
    import pyarrow as pa

    if isinstance(values, np.ndarray):
        return pa.array(values)
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: keep them as text
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def _fast_table(recs: list[tuple[Any, ...]], columns: Sequence[str] | None, req_ids: Any) -> Any:
    """Table for records whose features are 2-D arrays and outputs 1-D arrays (the gateway's)."""
    import numpy as np
    import pyarrow as pa

    feats = [r[7] for r in recs]
    ns = np.fromiter((f.shape[0] for f in feats), dtype=np.int64, count=len(recs))
    x = np.concatenate(feats) if len(feats) > 1 else feats[0]
    y = np.concatenate([r[9] for r in recs]) if len(recs) > 1 else recs[0][9]
    first = next(req_ids)
    for _ in range(len(recs) - 1):
        next(req_ids)
    names = list(columns) if columns is not None else [f"x{i}" for i in range(x.shape[1])]

    def rep(values: list[Any], dtype: Any = None) -> Any:
        return np.repeat(np.asarray(values, dtype=dtype), ns)

    cols: dict[str, Any] = {
        "timestamp": pa.array(rep([int(r[0] * 1_000_000) for r in recs], np.int64), type=pa.timestamp("us", tz="UTC")),
        "request_id": pa.array(np.repeat(np.arange(first, first + len(recs), dtype=np.int64), ns)),
        "version": pa.array(rep([r[3] for r in recs], object), type=pa.string()),
        "environment": pa.array(rep([r[4] for r in recs], object), type=pa.string()),
        "latency_s": pa.array(rep([r[5] for r in recs], np.float64)),
        "success": pa.array(rep([bool(r[6]) for r in recs], bool)),
        "error": pa.nulls(int(ns.sum()), type=pa.string()),
    }
    for j, name in enumerate(names):
        cols[FEATURE_PREFIX + name] = pa.array(np.ascontiguousarray(x[:, j]))
    cols[PREDICTION_COLUMN] = _arrow_array(y)
    return pa.table(cols)


def _is_fast(rec: tuple[Any, ...]) -> bool:
    import numpy as np

    f, out = rec[7], rec[9]
    return (isinstance(f, np.ndarray) and f.ndim == 2 and f.dtype.kind in "biuf"
            and isinstance(out, np.ndarray) and out.ndim == 1 and out.dtype.kind in "biufUSb"
            and len(out) == f.shape[0] and rec[10] is None)


def _build_table(recs: list[tuple[Any, ...]], req_ids: Any) -> Any:
    """One Arrow table for buffered records of one (tenant, model)."""
    import pyarrow as pa

    fast: dict[Any, list[tuple[Any, ...]]] = {}
    slow: list[tuple[Any, ...]] = []
    for rec in recs:
        if _is_fast(rec):
            key = (tuple(rec[8]) if rec[8] is not None else None, rec[7].shape[1])
            fast.setdefault(key, []).append(rec)
        else:
            slow.append(rec)
    tables = [_fast_table(group, key[0], req_ids) for key, group in fast.items()]
    if slow:
        tables.append(_slow_table(slow, req_ids))
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return _slow_table([], req_ids)
    if len(tables) == 1:
        return tables[0]
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # e.g. int predictions in one part, text in another
        tables = [t.set_column(t.schema.get_field_index(PREDICTION_COLUMN), PREDICTION_COLUMN,
                               t[PREDICTION_COLUMN].cast(pa.string())) for t in tables]
        table = pa.concat_tables(tables, promote_options="permissive")
    return table.sort_by("timestamp")


def _slow_table(recs: list[tuple[Any, ...]], req_ids: Any) -> Any:
    import numpy as np
    import pyarrow as pa

    ts, rid, ver, envs, lat, ok, err = [], [], [], [], [], [], []
    feat_chunks: dict[str, list[Any]] = {}
    out_chunks: list[Any] = []
    total = 0
    for (t, _tenant, _model, version, env, latency, success, features, columns, output, error) in recs:
        n, feats = _normalize_features(features, columns)
        if n == 0:
            continue
        request_id = next(req_ids)
        ts.append(np.full(n, int(t * 1_000_000), dtype="int64"))
        rid.append(np.full(n, request_id, dtype="int64"))
        ver.extend([version] * n)
        envs.extend([env] * n)
        lat.append(np.full(n, float(latency), dtype="float64"))
        ok.append(np.full(n, bool(success), dtype="bool"))
        err.extend([error] * n)
        for name in feat_chunks.keys() - feats.keys():
            feat_chunks[name].append([None] * n)
        for name, chunk in feats.items():
            if name not in feat_chunks:
                feat_chunks[name] = [[None] * total] if total else []
            feat_chunks[name].append(chunk)
        out_chunks.append(_normalize_output(output, n))
        total += n
    if not ts:
        return pa.table({"timestamp": pa.array([], type=pa.timestamp("us", tz="UTC")),
                         "request_id": pa.array([], type=pa.int64())})
    cols: dict[str, Any] = {
        "timestamp": pa.array(np.concatenate(ts), type=pa.timestamp("us", tz="UTC")),
        "request_id": pa.array(np.concatenate(rid)),
        "version": pa.array(ver, type=pa.string()),
        "environment": pa.array(envs, type=pa.string()),
        "latency_s": pa.array(np.concatenate(lat)),
        "success": pa.array(np.concatenate(ok)),
        "error": pa.array(err, type=pa.string()),
    }
    for name, chunks in feat_chunks.items():
        cols[FEATURE_PREFIX + name] = _arrow_array(_concat(chunks, total))
    cols[PREDICTION_COLUMN] = _arrow_array(_concat(out_chunks, total))
    return pa.table(cols)
