"""Loaded model versions: integrity check, loading, input parsing and prediction.

A version is loaded only if the sha256 of its MLflow model folder equals the one recorded
at versioning. scikit-learn models saved with pickle/cloudpickle are unpickled directly
(no ``import mlflow`` in the gateway, which keeps its start fast); anything else goes
through ``mlflow.pyfunc.load_model``.

Input: MLflow's scoring JSON (``dataframe_split``, ``dataframe_records``, ``instances``,
``inputs``), checked against the version's columns (from the MLflow signature, else the
reference data, else the estimator's ``feature_names_in_``): missing columns and values of
the wrong type are client errors (HTTP 400) naming the column; extra columns are ignored,
as MLflow does. When every column is numeric and the estimator gives the same answers on
a float matrix as on a DataFrame (checked on the test input at load), requests are turned
into a numpy array in the column order the model was fitted with (no DataFrame per
request) and concurrent requests can be stacked into one ``predict``.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlops_jupyter.errors import IntegrityError
from mlops_jupyter.gateway.decoding import SLICE_ROWS, bad_number, loads_yielding, matrix_in_slices, pos_in_row, show

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
NUMERIC_SPEC_TYPES = {"double", "float", "long", "integer"}
_WARN_PATTERNS = (".*valid feature names.*", ".*has feature names, but.*")


class ClientError(Exception):
    """A request the client must fix (HTTP 4xx)."""

    def __init__(self, message: str, code: str = "BAD_REQUEST", status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


class LoadError(Exception):
    """A version could not be loaded or failed its test prediction."""


def quiet_feature_name_warnings() -> None:
    """Silence scikit-learn's feature-name warnings in the gateway process only.

    The gateway checks column names and order itself before it hands a model a numpy
    array in the order the model was fitted with, so these warnings carry no news there.
    """
    for pat in _WARN_PATTERNS:
        warnings.filterwarnings("ignore", message=pat, category=UserWarning)


def _kind_of_spec(t: str) -> str:
    if t in NUMERIC_SPEC_TYPES:
        return "number"
    if t == "boolean":
        return "bool"
    if t == "string":
        return "string"
    return "other"


def _kind_of_dtype(dtype: str) -> str:
    d = str(dtype)
    if d.startswith(("int", "uint", "float", "Int", "UInt", "Float")):
        return "number"
    if d in ("bool", "boolean"):
        return "bool"
    if d in ("object", "string", "str", "category") or d.startswith("string"):
        return "string"
    return "other"


class LoadedVersion:
    """One model version in memory, ready to predict.

    Attributes:
        version: the semantic version.
        columns: the input columns in the model's order, or None if unknown.
        kinds: per column ``number``, ``bool``, ``string``, ``other`` or ``any``.
        numeric: True when requests become a float matrix (fast path, batchable).
        inline: True when its small micro-batches predict on the event loop, and
            ``inline_reason`` why or why not (decided by :mod:`~mlops_jupyter.gateway.inline`).
    """

    def __init__(
        self,
        *,
        tenant: str,
        model_id: str,
        version: str,
        path: str,
        sha256: str,
        model: Any,
        flavor: str,
        columns: list[str] | None,
        kinds: list[str] | None,
        n_features: int | None,
    ) -> None:
        self.tenant = tenant
        self.model_id = model_id
        self.version = version
        self.path = path
        self.sha256 = sha256
        self.model = model
        self.flavor = flavor
        self.columns = columns
        self.kinds = kinds
        self.n_features = n_features if n_features is not None else (len(columns) if columns else None)
        self.numeric = False
        self.inline = False
        self.inline_reason = "not measured"
        self.inline_strikes = 0
        self.inline_demotions = 0  # times sent back to the pool, and when it may try the loop again
        self.inline_retry_at: float | None = None
        self.inline_excused = 0  # third strikes forgiven because the machine itself was slow
        self._col_index = {c: i for i, c in enumerate(columns)} if columns else {}
        # columns (model order) whose values the numeric fast path checks one by one: JSON
        # true/false in a number column, anything but true/false in a bool column
        self._number_cols = [m for m, k in enumerate(kinds or ()) if k == "number"]
        self._bool_cols = [m for m, k in enumerate(kinds or ()) if k == "bool"]
        # scheduling state (gateway.batching), used by the gateway's event loop only:
        # requests waiting for the next micro-batch, batches running and when the last
        # one started, jobs of this version in the inference pool, solo requests waiting
        # for a slot, whether a look at ``pending`` is scheduled
        self.pending: list[Any] = []
        self.batches = 0
        self.batch_t = 0.0
        self.running = 0
        self.waiting: deque[Any] = deque()
        self.recheck = False

    # -- request parsing -----------------------------------------------------------------
    def extract(self, payload: Any) -> tuple[list[str] | None, Any, Any]:
        """``(columns or None, rows, params)`` from a scoring payload; rows are lists.

        Raises:
            ClientError: unknown format, malformed structure.
        """
        if not isinstance(payload, dict):
            raise ClientError(
                f"The request body must be a JSON object with one of the keys {', '.join(FORMATS)}; "
                f"got a JSON {type(payload).__name__}."
            )
        keys = [k for k in payload if k in FORMATS]
        unknown = [k for k in payload if k not in FORMATS and k != "params"]
        if len(keys) != 1 or unknown:
            got = ", ".join(map(repr, payload)) or "no keys"
            raise ClientError(
                f"The request body must have exactly one of the keys {', '.join(FORMATS)} "
                f"(and optionally 'params'); got {got}."
            )
        fmt = keys[0]
        body = payload[fmt]
        params = payload.get("params")
        if params is not None and not isinstance(params, dict):
            raise ClientError("'params' must be a JSON object.")
        if fmt == "dataframe_split":
            if not isinstance(body, dict) or "data" not in body:
                raise ClientError(
                    "'dataframe_split' must be an object with 'columns' and 'data' "
                    '(e.g. {"columns": ["a", "b"], "data": [[1, 2]]}).'
                )
            cols = body.get("columns")
            data = body["data"]
            if cols is not None and (not isinstance(cols, list) or not all(isinstance(c, str) for c in cols)):
                raise ClientError("'dataframe_split.columns' must be a list of column names.")
            if not isinstance(data, list):
                raise ClientError("'dataframe_split.data' must be a list of rows.")
            if data and not isinstance(data[0], list):
                if cols is not None and len(cols) == 1:
                    data = [[x] for x in data]
                else:
                    raise ClientError("'dataframe_split.data' must be a list of rows (lists of values).")
            return cols, data, params
        if fmt == "dataframe_records":
            if not isinstance(body, list) or not all(isinstance(r, dict) for r in body):
                raise ClientError(
                    '\'dataframe_records\' must be a list of objects, one per row (e.g. [{"a": 1, "b": 2}]).'
                )
            return self._records(body) + (params,)
        # instances / inputs: records, columns or rows
        if isinstance(body, dict):
            cols = list(body)
            vals = [body[c] if isinstance(body[c], list) else [body[c]] for c in cols]
            n = len(vals[0]) if vals else 0
            if any(len(v) != n for v in vals):
                raise ClientError(f"All columns in '{fmt}' must have the same length.")
            return cols, [list(r) for r in zip(*vals)], params
        if not isinstance(body, list):
            raise ClientError(f"'{fmt}' must be a list of rows, a list of objects or an object of columns.")
        if body and isinstance(body[0], dict):
            if not all(isinstance(r, dict) for r in body):
                raise ClientError(f"Every element of '{fmt}' must be an object when the first one is.")
            return self._records(body) + (params,)
        if body and not isinstance(body[0], list):
            if self.n_features == 1:
                return None, [[x] for x in body], params
            raise ClientError(
                f"'{fmt}' must be a list of rows of {self.n_features or 'N'} values "
                f"(e.g. [[{', '.join(['1.0'] * min(self.n_features or 2, 4))}]])."
            )
        return None, body, params

    def _records(self, records: list[dict[str, Any]]) -> tuple[list[str] | None, list[list[Any]]]:
        if self.columns:
            cols = self.columns
            missing = [c for c in cols if records and c not in records[0]]
            if missing:
                raise ClientError(self._missing_message(missing))
            try:
                return cols, [[r[c] for c in cols] for r in records]
            except KeyError as exc:
                raise ClientError(self._missing_message([exc.args[0]], row=True)) from None
        cols = list(records[0]) if records else []
        return cols, [[r.get(c) for c in cols] for r in records]

    def _missing_message(self, missing: Sequence[str], row: bool = False) -> str:
        where = "in some rows " if row else ""
        return (
            f"Missing input column(s) {where}{', '.join(map(repr, missing))}. "
            f"The model expects the columns {self.columns}."
        )

    def _order(self, cols: list[str] | None, width: int) -> list[int] | None:
        """Indices that put the request's columns in the model's order (None: as given)."""
        if cols is None:
            if self.n_features is not None and width != self.n_features:
                raise ClientError(
                    f"Each row must have {self.n_features} values (the columns "
                    f"{self.columns or '(positional)'}); got {width}."
                )
            return None
        if len(cols) != width:
            raise ClientError(f"The rows have {width} values but {len(cols)} columns are named.")
        if self.columns is None:
            if self.n_features is not None and width != self.n_features:
                raise ClientError(f"The model expects {self.n_features} columns; got {width} ({cols}).")
            return None
        if cols == self.columns:
            return None
        pos = {c: i for i, c in enumerate(cols)}
        missing = [c for c in self.columns if c not in pos]
        if missing:
            raise ClientError(self._missing_message(missing))
        return [pos[c] for c in self.columns]

    def to_input(self, payload: Any, maybe_bools: bool = True) -> tuple[Any, int, Any]:
        """``(model input, number of rows, params)`` for a scoring payload.

        ``maybe_bools=False`` says the payload holds no JSON ``true``/``false`` (see
        :meth:`parse`), which spares the numeric fast path looking for them.

        Raises:
            ClientError: malformed payload, missing columns, wrong value types (a JSON
                ``true``/``false`` in a number column or a number in a bool column: as MLflow's
                schema check, which refuses converting between bool and float).
        """
        cols, rows, params = self.extract(payload)
        if not rows:
            raise ClientError("The request has no rows to predict.")
        if params and self.flavor != "pyfunc":
            raise ClientError(f"This model does not take 'params' (got {sorted(params)}).")
        if self.numeric:
            return self._matrix(cols, rows, maybe_bools), len(rows), params
        return self._frame(cols, rows), len(rows), params

    def _column_name(self, cols: list[str] | None, idx: list[int] | None, m: int) -> str:
        """The name of column ``m`` (model order) for an error message."""
        if self.columns:
            return self.columns[m]
        return cols[pos_in_row(idx, m)] if cols else f"#{m}"

    def _bad_cell(self, m: int, x: Any) -> tuple[str, str] | None:
        """``(what is expected, what was given)`` if ``x`` does not fit column ``m`` (model order)."""
        kind = self.kinds[m] if self.kinds else "any"
        if kind == "bool":
            return None if isinstance(x, bool) else ("true/false", show(x))
        return bad_number(x, allow_bool=kind != "number")

    def _first_misfit(self, cols: list[str] | None, rows: list[Any], idx: list[int] | None, columns: Any) -> None:
        """Raise a ClientError naming the first value of ``columns`` (model order) that does not
        fit its column (:meth:`_bad_cell`)."""
        for m in columns:
            j = pos_in_row(idx, m)
            for i, row in enumerate(rows):
                what = self._bad_cell(m, row[j])
                if what is not None:
                    raise ClientError(
                        f"Column {self._column_name(cols, idx, m)!r} expects {what[0]}; row {i} has {what[1]}."
                    )

    def _matrix(self, cols: list[str] | None, rows: list[Any], maybe_bools: bool = True) -> Any:
        import numpy as np

        try:
            a = np.asarray(rows) if len(rows) <= SLICE_ROWS else matrix_in_slices(rows)
        except ValueError:
            raise ClientError(
                "The rows have different lengths or nested values; every row needs one value per column."
            ) from None
        if a.ndim != 2:
            raise ClientError("Every row must be a flat list of values (one per column).")
        idx = self._order(cols, a.shape[1])
        k = a.dtype.kind
        if k in "biuf" and (self._bool_cols or (self._number_cols and maybe_bools)):
            # numpy turned JSON true/false into numbers, and numbers in a bool column stay numbers
            self._first_misfit(cols, rows, idx, (self._number_cols if maybe_bools else []) + self._bool_cols)
        if k not in "biuf":
            # numbers mixed with nulls or huge integers (object) or with text (unicode)
            self._first_misfit(cols, rows, idx, range(a.shape[1] if idx is None else len(idx)))
            used = idx if idx is not None else range(a.shape[1])
            a = np.array([[row[j] for j in used] for row in rows], dtype=np.float64)
        else:
            if idx is not None:
                a = a[:, idx]
            if a.dtype != np.float64:
                a = a.astype(np.float64)
        if k in "fO" and not np.isfinite(a).all():
            i, j = (int(v) for v in np.argwhere(~np.isfinite(a))[0])
            raise ClientError(
                f"Column {self._column_name(cols, idx, j)!r} expects finite numbers; "
                f"row {i} has {show(rows[i][pos_in_row(idx, j)])}."
            )
        return a

    def _frame(self, cols: list[str] | None, rows: list[Any]) -> Any:
        import pandas as pd

        widths = {len(r) if isinstance(r, list) else -1 for r in rows}
        if len(widths) != 1 or -1 in widths:
            raise ClientError("The rows have different lengths; every row needs one value per column.")
        width = widths.pop()
        idx = self._order(cols, width)
        names = cols if cols is not None else (self.columns or [str(i) for i in range(width)])
        df = pd.DataFrame(rows, columns=names)
        if idx is not None or (self.columns and names != self.columns):
            df = df[self.columns]
        if self.kinds and self.columns:
            for c, kind in zip(self.columns, self.kinds):
                s = df[c]
                if kind == "number" and s.dtype.kind == "b":
                    raise ClientError(f"Column {c!r} expects numbers; row 0 has {show(_plain(s.iloc[0]))}.")
                if kind == "number" and s.dtype.kind not in "biuf":
                    for i, x in enumerate(s):
                        what = bad_number(x, allow_bool=False)
                        if what is not None:
                            raise ClientError(f"Column {c!r} expects {what[0]}; row {i} has {what[1]}.")
                    df[c] = pd.to_numeric(s)
                elif kind == "number" and s.dtype.kind == "f" and not s.map(math.isfinite).all():
                    i = int((~s.map(math.isfinite)).to_numpy().nonzero()[0][0])
                    raise ClientError(f"Column {c!r} expects finite numbers; row {i} has {show(s.iloc[i])}.")
                elif kind == "string":
                    if s.dtype.kind in "OT":
                        bad = next((x for x in s if x is not None and not isinstance(x, str)), None)
                    else:
                        bad = None if s.dtype.kind in "SU" else _plain(s.iloc[0])
                    if bad is not None:
                        raise ClientError(f"Column {c!r} expects strings; got {show(bad)}.")
                elif kind == "bool" and s.dtype.kind != "b":
                    bad = _plain(next((x for x in s if not isinstance(x, bool)), None))
                    raise ClientError(f"Column {c!r} expects true/false; got {show(bad)}.")
        return df

    def parse(self, body: bytes, yielding: bool = False) -> tuple[Any, int, Any]:
        """``(model input, number of rows, params)`` from a request body (MLflow's scoring JSON).

        ``yielding`` (for big bodies, in a worker thread) decodes with
        :func:`~mlops_jupyter.gateway.decoding.loads_yielding`, which lets the event loop run.

        Every problem of the body is a :class:`ClientError` (HTTP 400): not JSON, a value
        that is not a finite number in the float range where a number is needed (naming
        the column and row), a wrong structure.
        """
        try:
            payload = loads_yielding(body) if yielding else json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise ClientError(f"The request body is not valid JSON: {exc}.", "MALFORMED_JSON") from None
        # JSON true/false appear as these bytes in UTF-8; a NUL byte means UTF-16/32: look anyway
        maybe_bools = b"true" in body or b"false" in body or b"\0" in body
        try:
            return self.to_input(payload, maybe_bools)
        except ClientError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, RecursionError, OverflowError) as exc:
            raise ClientError(
                f"The input could not be read as rows of the model's columns ({type(exc).__name__}: {exc})."
            ) from None

    # -- prediction ----------------------------------------------------------------------
    def predict(self, x: Any, params: Any = None) -> Any:
        """Raw model output for an input built by :meth:`to_input`."""
        if self.flavor == "pyfunc":
            return self.model.predict(x, params=params) if params else self.model.predict(x)
        return self.model.predict(x)


def _plain(x: Any) -> Any:
    return x.item() if hasattr(x, "item") and not isinstance(x, (str, bytes)) else x


def to_jsonable(out: Any) -> list[Any]:
    """Model output as the list MLflow's scoring server puts under ``predictions``."""
    if hasattr(out, "tolist") and not hasattr(out, "columns"):
        v = out.tolist()
        return v if isinstance(v, list) else [v]
    if hasattr(out, "to_dict") and hasattr(out, "columns"):
        return out.to_dict(orient="records")
    if isinstance(out, (list, tuple)):
        return [x.tolist() if hasattr(x, "tolist") else x for x in out]
    if isinstance(out, dict):
        return [out]
    return [out]


def read_mlmodel(path: Path) -> dict[str, Any]:
    import yaml

    try:
        return yaml.safe_load((path / "MLmodel").read_text()) or {}
    except FileNotFoundError:
        raise LoadError(f"{path} is not an MLflow model folder (no MLmodel file).") from None


def _signature_columns(mlmodel: Mapping[str, Any]) -> tuple[list[str] | None, list[str] | None]:
    sig = (mlmodel.get("signature") or {}).get("inputs")
    if not sig:
        return None, None
    try:
        spec = json.loads(sig) if isinstance(sig, str) else sig
    except ValueError:
        return None, None
    if not isinstance(spec, list) or not all(isinstance(c, dict) and c.get("name") for c in spec):
        return None, None  # tensor spec or unnamed columns
    return [c["name"] for c in spec], [_kind_of_spec(str(c.get("type"))) for c in spec]


def _mlflow_example(path: Path, mlmodel: Mapping[str, Any]) -> dict[str, Any] | None:
    """The input example MLflow saved with the model, as ``{columns, data}``."""
    info = mlmodel.get("saved_input_example_info") or {}
    for name in ("serving_input_example.json", info.get("artifact_path") or "input_example.json"):
        f = path / name
        if not f.is_file():
            continue
        try:
            obj = json.loads(f.read_text())
        except ValueError:
            continue
        if isinstance(obj, dict) and "dataframe_split" in obj:
            obj = obj["dataframe_split"]
        if isinstance(obj, dict) and "data" in obj:
            return {"columns": obj.get("columns"), "data": obj["data"]}
    return None


def load_version(spec: Mapping[str, Any]) -> tuple[LoadedVersion, dict[str, Any]]:
    """Verify, load and warm one version; returns it and its test input.

    Args:
        spec: ``tenant``, ``model_id``, ``version``, ``path`` (the MLflow model folder),
            ``sha256`` (recorded at versioning) and optionally ``example``
            (``{"columns", "data", "dtypes"}``, e.g. rows of the reference data).

    Raises:
        IntegrityError: the folder's sha256 differs from the recorded one.
        LoadError: the model cannot be loaded, or its test prediction fails.
    """
    from mlops_jupyter.registry.artifacts import sha256_dir

    path = Path(spec["path"])
    label = f"{spec['model_id']} {spec['version']}"
    if not path.is_dir():
        raise LoadError(f"The model folder of {label} does not exist: {path}.")
    digest = sha256_dir(path)
    if digest != spec.get("sha256"):
        raise IntegrityError(
            f"Model {label} failed its integrity check: the artifact's sha256 is {digest}, but "
            f"{spec.get('sha256')} was recorded at versioning. It was not loaded.",
            value=digest,
            allowed=spec.get("sha256"),
        )
    mlmodel = read_mlmodel(path)
    flavors = mlmodel.get("flavors") or {}
    sk = flavors.get("sklearn") or {}
    try:
        if sk.get("serialization_format") in ("cloudpickle", "pickle") and sk.get("pickled_model"):
            import cloudpickle

            with open(path / sk["pickled_model"], "rb") as f:
                model = cloudpickle.load(f)
            flavor = "sklearn"
        else:
            import mlflow.pyfunc

            model = mlflow.pyfunc.load_model(str(path))
            flavor = "pyfunc"
    except Exception as exc:
        raise LoadError(f"Could not load {label} from {path}: {type(exc).__name__}: {exc}") from exc

    columns, kinds = _signature_columns(mlmodel)
    example = spec.get("example") or None
    if columns is None and example and example.get("dtypes") and example.get("columns"):
        columns = list(example["columns"])
        kinds = [_kind_of_dtype(example["dtypes"].get(c, "object")) for c in columns]
    if columns is None and hasattr(model, "feature_names_in_"):
        columns = [str(c) for c in model.feature_names_in_]
        kinds = ["any"] * len(columns)
    n_features = getattr(model, "n_features_in_", None)
    if columns is not None and n_features is not None and len(columns) != n_features:
        n_features = len(columns)
    lv = LoadedVersion(
        tenant=spec["tenant"],
        model_id=spec["model_id"],
        version=spec["version"],
        path=str(path),
        sha256=digest,
        model=model,
        flavor=flavor,
        columns=columns,
        kinds=kinds,
        n_features=n_features,
    )
    if example is None:
        example = _mlflow_example(path, mlmodel)
    if example is None and n_features and all(k in ("number", "any") for k in (kinds or ["any"] * n_features)):
        example = {"columns": columns, "data": [[0.0] * n_features]}
    if example is None:
        raise LoadError(
            f"No test input for {label}: store reference data with the version "
            "(create_version(..., reference_data=df)) or an MLflow input example."
        )
    warm(lv, example)
    return lv, example


def warm(lv: LoadedVersion, example: Mapping[str, Any]) -> None:
    """Make the test prediction; switch on the numeric fast path if it gives equal results."""
    import numpy as np

    payload = {"dataframe_split": {"columns": example.get("columns"), "data": example["data"]}}
    label = f"{lv.model_id} {lv.version}"
    lv.numeric = False
    try:
        x, n, _ = lv.to_input(payload)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = lv.predict(x)
        out = to_jsonable(ref)
    except ClientError as exc:
        raise LoadError(f"The test input does not fit {label}: {exc.message}") from None
    except Exception as exc:
        raise LoadError(f"The test prediction of {label} failed: {type(exc).__name__}: {exc}") from exc
    if len(out) != n:
        raise LoadError(f"The test prediction of {label} returned {len(out)} results for {n} rows.")
    if lv.flavor != "sklearn" or not all(k in ("number", "bool", "any") for k in (lv.kinds or ["any"])):
        return
    lv.numeric = True
    try:
        xm, _, _ = lv.to_input(payload)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fast = lv.predict(xm)
        a, b = np.asarray(ref), np.asarray(fast)
        same = a.shape == b.shape and (
            np.allclose(a, b, equal_nan=True) if a.dtype.kind in "fc" and b.dtype.kind in "fc" else bool(np.all(a == b))
        )
    except Exception:
        same = False
    lv.numeric = bool(same)
