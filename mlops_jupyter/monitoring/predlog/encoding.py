"""Buffered records to Arrow tables: the log's columns, and how each way in fills them.

Every part file, whatever wrote it, holds one row per predicted input row with the columns

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

The buffer holds two kinds of record, laid out as :class:`Request` (one
:meth:`~.buffer.PredictionBuffer.append` call: any feature shape) and :class:`Row` (one
:meth:`~.buffer.PredictionBuffer.append_row` call: a dict of scalar features). The append
methods store them as plain tuples in the field order of these NamedTuples, because that is
the callers' hot path: building the NamedTuple itself costs about 100 ns more per call, a
quarter of ``append_row``. The encoders read the records by name through
:data:`request_field` and :data:`row_field`, a Request and a Row whose every field is the
``itemgetter`` of that field: ``map(row_field.features, rows)`` is every row's features, at
C speed. Batches given to ``append_table`` are already columnar and only get
``request_id`` when they lack it.

Requests from the gateway (a 2-D numeric array in, a 1-D array out) are encoded with numpy
in one go per feature layout (:func:`_fast_table`); any other shape goes through
:func:`_slow_table`, which normalises features (DataFrame, array, list of rows, list of
dicts, dict) and outputs one request at a time. Values of one column with mixed types are
stored as text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any, NamedTuple, TypeVar

FEATURE_PREFIX = "feature."
PREDICTION_COLUMN = "prediction"
ALL_FEATURES = FEATURE_PREFIX + "*"
"""In ``columns=`` of :meth:`PredictionLog.read_table`: every ``feature.NAME`` column."""


_Layout = TypeVar("_Layout", "Request", "Row")


class Request(NamedTuple):
    """One :meth:`~.buffer.PredictionBuffer.append` call (one request, any number of rows)."""

    timestamp: float
    tenant: str
    model_id: str
    version: str
    environment: str
    latency_s: float
    success: bool
    features: Any
    columns: Sequence[str] | None
    output: Any
    error: str | None


class Row(NamedTuple):
    """One :meth:`~.buffer.PredictionBuffer.append_row` call (one row, dict features)."""

    timestamp: float
    tenant: str
    model_id: str
    version: str | None
    environment: str
    latency_s: float
    success: bool
    features: Mapping[str, Any] | None
    prediction: Any
    error: str | None


def _getters(layout: type[_Layout]) -> _Layout:
    return layout._make(map(itemgetter, range(len(layout._fields))))


request_field = _getters(Request)
"""``request_field.NAME(record)``: the field NAME of a buffered :class:`Request` record."""
row_field = _getters(Row)
"""``row_field.NAME(record)``: the field NAME of a buffered :class:`Row` record."""
assert Request._fields[:3] == Row._fields[:3] == ("timestamp", "tenant", "model_id")
model_key = itemgetter(Row._fields.index("tenant"), Row._fields.index("model_id"))
"""``model_key(record)``: the ``(tenant, model_id)`` of a buffered :class:`Request` or :class:`Row`."""
_shape = itemgetter(*(Request._fields.index(f) for f in ("features", "columns", "output", "error")))


def encode_part(requests: list[tuple[Any, ...]], rows: list[tuple[Any, ...]], tables: list[Any], req_ids: Any) -> Any:
    """One time-sorted table of everything buffered for one (tenant, model), or None when
    it holds no row. ``req_ids`` hands out request ids (``take(n)``, ``next()``)."""
    parts = []
    if requests:
        parts.append(_build_table(requests, req_ids))
    if rows:
        parts.append(_rows_table(rows, req_ids))
    for t in tables:
        if "request_id" not in t.column_names:
            import numpy as np
            import pyarrow as pa

            first = req_ids.take(t.num_rows)
            t = t.add_column(1, "request_id", pa.array(np.arange(first, first + t.num_rows, dtype=np.int64)))
        parts.append(t)
    parts = [t for t in parts if t.num_rows]
    if not parts:
        return None
    return sort_by_time(unify_tables(parts))


# -- tables of the log's columns ---------------------------------------------------------
def unify_tables(tables: Sequence[Any]) -> Any:
    """Concatenate tables whose schemas differ (missing columns become nulls, ints widen
    to floats, dictionaries and plain text mix); columns whose types still clash are
    turned into text."""
    import pyarrow as pa

    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    types: dict[str, set[Any]] = {}
    for t in tables:
        for f in t.schema:
            types.setdefault(f.name, set()).add(_base_type(f.type))
    clash = {name for name, ts in types.items() if len(ts - {pa.null()}) > 1}
    fixed = []
    for t in tables:
        for name in clash & set(t.column_names):
            i = t.schema.get_field_index(name)
            col = t.column(i)
            if pa.types.is_dictionary(col.type):
                col = col.cast(col.type.value_type)
            fixed_col = col.cast(pa.string()) if not pa.types.is_null(col.type) else col
            t = t.set_column(i, name, fixed_col)
        t = _decode_dictionaries(t)
        fixed.append(t)
    return pa.concat_tables(fixed, promote_options="permissive")


def _base_type(t: Any) -> Any:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return pa.float64()
    if pa.types.is_large_string(t):
        return pa.string()
    return t


def _decode_dictionaries(t: Any) -> Any:
    import pyarrow as pa

    for i, f in enumerate(t.schema):
        if pa.types.is_dictionary(f.type):
            t = t.set_column(i, f.name, t.column(i).cast(f.type.value_type))
    return t


def sort_by_time(table: Any) -> Any:
    """``table`` ordered by ``timestamp`` (stable; returned as is when already ordered)."""
    import numpy as np

    if table.num_rows < 2:
        return table
    ts = table["timestamp"].to_numpy().astype("datetime64[us]").view(np.int64)
    if bool(np.all(ts[1:] >= ts[:-1])):
        return table
    return table.take(np.argsort(ts, kind="stable"))


def empty_table() -> Any:
    """The table of a model with no logged rows: the metadata columns, no feature."""
    import pyarrow as pa

    return pa.table(
        {
            "timestamp": pa.array([], type=pa.timestamp("us", tz="UTC")),
            "request_id": pa.array([], type=pa.int64()),
            "version": pa.array([], type=pa.string()),
            "environment": pa.array([], type=pa.string()),
            "latency_s": pa.array([], type=pa.float64()),
            "success": pa.array([], type=pa.bool_()),
            "error": pa.array([], type=pa.string()),
            PREDICTION_COLUMN: pa.array([], type=pa.string()),
        }
    )


EMPTY_DTYPES = {
    "timestamp": "datetime64[us, UTC]",
    "request_id": "int64",
    "version": "object",
    "environment": "object",
    "latency_s": "float64",
    "success": "bool",
    "error": "object",
    PREDICTION_COLUMN: "object",
}
"""The pandas dtypes of :func:`empty_table`'s columns (what ``read`` returns for no rows)."""


# -- features and outputs of any shape ---------------------------------------------------
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


def _concat(chunks: list[Any]) -> Any:
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


# -- the three encoders --------------------------------------------------------------------
def _is_fast(features: Any, output: Any, error: str | None) -> bool:
    import numpy as np

    return (
        isinstance(features, np.ndarray)
        and features.ndim == 2
        and features.dtype.kind in "biuf"
        and isinstance(output, np.ndarray)
        and output.ndim == 1
        and output.dtype.kind in "biufUSb"
        and len(output) == features.shape[0]
        and error is None
    )


def _build_table(requests: list[tuple[Any, ...]], req_ids: Any) -> Any:
    """One Arrow table for buffered :class:`Request` records of one (tenant, model)."""
    import pyarrow as pa

    fast: dict[Any, list[tuple[Any, ...]]] = {}  # (feature names, width) -> its requests
    slow: list[tuple[Any, ...]] = []
    for rec, (features, names, output, error) in zip(requests, map(_shape, requests)):
        if _is_fast(features, output, error):
            fast.setdefault((tuple(names) if names is not None else None, features.shape[1]), []).append(rec)
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
        tables = [
            t.set_column(
                t.schema.get_field_index(PREDICTION_COLUMN), PREDICTION_COLUMN, t[PREDICTION_COLUMN].cast(pa.string())
            )
            for t in tables
        ]
        table = pa.concat_tables(tables, promote_options="permissive")
    return table.sort_by("timestamp")


def _fast_table(requests: list[tuple[Any, ...]], names: Sequence[str] | None, req_ids: Any) -> Any:
    """Table for requests whose features are 2-D arrays and outputs 1-D arrays (the gateway's),
    all with the same feature names."""
    import numpy as np
    import pyarrow as pa

    f = request_field
    n_requests = len(requests)
    feats = list(map(f.features, requests))
    ns = np.fromiter((x.shape[0] for x in feats), dtype=np.int64, count=n_requests)
    x = np.concatenate(feats) if n_requests > 1 else feats[0]
    y = np.concatenate(list(map(f.output, requests))) if n_requests > 1 else f.output(requests[0])
    first = req_ids.take(n_requests)
    names = list(names) if names is not None else [f"x{i}" for i in range(x.shape[1])]

    def rep(values: list[Any], dtype: Any = None) -> Any:
        return np.repeat(np.asarray(values, dtype=dtype), ns)

    cols: dict[str, Any] = {
        "timestamp": pa.array(
            rep([int(t * 1_000_000) for t in map(f.timestamp, requests)], np.int64), type=pa.timestamp("us", tz="UTC")
        ),
        "request_id": pa.array(np.repeat(np.arange(first, first + n_requests, dtype=np.int64), ns)),
        "version": pa.array(rep(list(map(f.version, requests)), object), type=pa.string()),
        "environment": pa.array(rep(list(map(f.environment, requests)), object), type=pa.string()),
        "latency_s": pa.array(rep(list(map(f.latency_s, requests)), np.float64)),
        "success": pa.array(rep([bool(s) for s in map(f.success, requests)], bool)),
        "error": pa.nulls(int(ns.sum()), type=pa.string()),
    }
    for j, name in enumerate(names):
        cols[FEATURE_PREFIX + name] = pa.array(np.ascontiguousarray(x[:, j]))
    cols[PREDICTION_COLUMN] = _arrow_array(y)
    return pa.table(cols)


def _slow_table(requests: list[tuple[Any, ...]], req_ids: Any) -> Any:
    """Table for :class:`Request` records of any feature and output shape, one at a time."""
    import numpy as np
    import pyarrow as pa

    ts, rid, ver, envs, lat, ok, err = [], [], [], [], [], [], []
    feat_chunks: dict[str, list[Any]] = {}
    out_chunks: list[Any] = []
    total = 0
    for (
        timestamp,
        _tenant,
        _model,
        version,
        environment,
        latency_s,
        success,
        features,
        columns,
        output,
        error,
    ) in requests:  # Request's fields, by name
        n, feats = _normalize_features(features, columns)
        if n == 0:
            continue
        request_id = next(req_ids)
        ts.append(np.full(n, int(timestamp * 1_000_000), dtype="int64"))
        rid.append(np.full(n, request_id, dtype="int64"))
        ver.extend([version] * n)
        envs.extend([environment] * n)
        lat.append(np.full(n, float(latency_s), dtype="float64"))
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
        return pa.table(
            {"timestamp": pa.array([], type=pa.timestamp("us", tz="UTC")), "request_id": pa.array([], type=pa.int64())}
        )
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
        cols[FEATURE_PREFIX + name] = _arrow_array(_concat(chunks))
    cols[PREDICTION_COLUMN] = _arrow_array(_concat(out_chunks))
    return pa.table(cols)


def _rows_table(rows: list[tuple[Any, ...]], req_ids: Any) -> Any:
    """Table for :class:`Row` records: one row each, dict features."""
    import numpy as np
    import pyarrow as pa

    f = row_field
    n = len(rows)
    first = req_ids.take(n)
    ts = np.fromiter(map(f.timestamp, rows), dtype=np.float64, count=n)
    cols: dict[str, Any] = {
        "timestamp": pa.array(np.round(ts * 1_000_000).astype(np.int64), type=pa.timestamp("us", tz="UTC")),
        "request_id": pa.array(np.arange(first, first + n, dtype=np.int64)),
        "version": pa.array(list(map(f.version, rows)), type=pa.string()),
        "environment": pa.array(list(map(f.environment, rows)), type=pa.string()),
        "latency_s": pa.array(np.fromiter(map(f.latency_s, rows), dtype=np.float64, count=n)),
        "success": pa.array(np.fromiter(map(f.success, rows), dtype=bool, count=n)),
        "error": pa.array(list(map(f.error, rows)), type=pa.string()),
    }
    feats = list(map(f.features, rows))
    names: dict[str, None] = {}
    first_keys = None
    for feat in feats:
        if feat:
            keys = tuple(feat)
            if keys != first_keys:
                names.update(dict.fromkeys(keys))
                first_keys = keys
    for name in names:
        cols[FEATURE_PREFIX + str(name)] = _arrow_array([feat.get(name) if feat else None for feat in feats])
    cols[PREDICTION_COLUMN] = _arrow_array(list(map(f.prediction, rows)))
    return pa.table(cols)
