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

Three ways in: :meth:`PredictionLog.append` (one request, any feature shape: the
gateway's), :meth:`PredictionLog.append_row` (one row with a dict of features: about a
microsecond or two, for ``track_prediction``) and :meth:`PredictionLog.append_table` (a columnar
batch, for ``track_predictions``).

Parts are written to a temporary name and renamed, so a reader never sees half a file.
Rows inside a part are sorted by time and stored in row groups of
:data:`ROW_GROUP_ROWS` rows whose min/max timestamps the reader uses to skip what a window
does not need: :meth:`PredictionLog.read_table` reads only the requested columns, and only
the row groups of the time range (``since``/``until``) or of the last (first) ``n`` rows.

Under load a part is written every second, so parts are merged: :meth:`PredictionLog.compact`
merges parts of fewer than :data:`COMPACT_SMALL_ROWS` rows, once there are at least
:data:`COMPACT_MIN_FILES` of them, into time-sorted files of up to
:data:`COMPACT_TARGET_ROWS` rows. The gateway compacts the models that got traffic in its
background pass; a reader that finds more than :data:`COMPACT_ON_READ` parts compacts first.
Readers hold a shared ``flock`` on ``.read.lock`` in the model's folder while they list and
read; the compactor swaps files (rename the merged file in, delete its sources) under the
exclusive lock, so a reader never sees a row twice or misses one. One compactor at a time
(``.compact.lock``). A process killed with SIGKILL loses what it buffered since its last
flush (about a second).

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
import fcntl
import json
import logging
import os
import random
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

from mlops_jupyter.config.names import validate_model_id, validate_tenant
from mlops_jupyter.errors import ValidationError

log = logging.getLogger(__name__)

FEATURE_PREFIX = "feature."
PREDICTION_COLUMN = "prediction"
META_COLUMNS = ("timestamp", "request_id", "version", "environment", "latency_s", "success", "error")
ALL_FEATURES = FEATURE_PREFIX + "*"
"""In ``columns=`` of :meth:`PredictionLog.read_table`: every ``feature.NAME`` column."""
DEFAULT_FLUSH_INTERVAL = 1.0
DEFAULT_MAX_BUFFERED = 2_000_000  # requests held when the disk cannot keep up; older are dropped
ROW_GROUP_ROWS = 65_536
COMPACT_SMALL_ROWS = 100_000
COMPACT_MIN_FILES = 8
COMPACT_TARGET_ROWS = 1_000_000
COMPACT_ON_READ = 64
READ_LOCK = ".read.lock"
COMPACT_LOCK = ".compact.lock"

_LOGS: "weakref.WeakSet[PredictionLog]" = weakref.WeakSet()
_EXIT_HOOKED = False


def _close_all_at_exit() -> None:
    for plog in list(_LOGS):
        try:
            plog.close()
        except Exception as exc:  # never raise at exit
            log.warning("mlops_jupyter: could not flush the prediction log: %s", exc)


class _Ids:
    """Request ids: a counter that can hand out a block of ``n`` at once."""

    def __init__(self, start: int) -> None:
        self._next = start
        self._lock = threading.Lock()

    def __next__(self) -> int:
        return self.take(1)

    def __iter__(self) -> "_Ids":
        return self

    def take(self, n: int) -> int:
        with self._lock:
            first = self._next
            self._next += n
        return first


class PredictionLog:
    """Batched, columnar log of predictions under a storage home.

    Args:
        home: the storage home (``Settings.home``); parts go to ``{home}/predictions``.
        flush_interval: seconds between background flushes.
        max_buffered: most requests held in memory; beyond it the oldest are dropped
            (counted in :attr:`dropped`) rather than growing without bound. Batches given
            to :meth:`append_table` are never dropped: past this many buffered rows the
            caller writes them itself.
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
        self._rows: list[tuple[Any, ...]] = []
        self._tables: list[tuple[str, str, Any]] = []
        self._table_rows = 0
        self._buf_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._seq = _Ids(0)
        self._req_ids = _Ids(random.getrandbits(40) << 20)
        self._touched: set[tuple[str, str]] = set()
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

    def append_row(self, tenant: str, model_id: str, timestamp: float, version: str | None,
                   environment: str, latency_s: float, success: bool,
                   features: Mapping[str, Any] | None, prediction: Any = None,
                   error: str | None = None) -> None:
        """Buffer one prediction of one input row (the fast path of ``track_prediction``).

        The caller has validated the arguments; ``features`` maps names to scalars and
        ``prediction`` is a scalar (or JSON text). No I/O, no copy of ``features``.

        Example:
            >>> log.append_row("acme", "churn", time.time(), "1.0.0", "", 0.15, True,
            ...                {"priority": 1, "category": "technical"}, 1)
        """
        rec = (timestamp, tenant, model_id, version, environment, latency_s, success, features,
               prediction, error)
        with self._buf_lock:
            self._rows.append(rec)
            if len(self._rows) > self.max_buffered:
                del self._rows[: len(self._rows) - self.max_buffered]
                self.dropped += 1

    def append_table(self, tenant: str, model_id: str, table: Any) -> None:
        """Buffer a columnar batch (a ``pyarrow.Table`` with the log's columns).

        ``request_id`` is added when missing (one request per row). Batches are never
        dropped: when more than ``max_buffered`` rows of batches wait, this call writes
        them before returning.

        Example:
            >>> log.append_table("acme", "churn", pa.table({"timestamp": ..., "latency_s": ...}))
        """
        with self._buf_lock:
            self._tables.append((tenant, model_id, table))
            self._table_rows += table.num_rows
            full = self._table_rows > self.max_buffered
        if full:
            self.flush()

    def flush(self) -> int:
        """Write everything buffered now; returns the number of rows written.

        Example:
            >>> log.flush()
            3
        """
        with self._buf_lock:
            buf, self._buf = self._buf, []
            rows, self._rows = self._rows, []
            tables, self._tables = self._tables, []
            self._table_rows = 0
        if not buf and not rows and not tables:
            return 0
        groups: dict[tuple[str, str], list[list[Any]]] = {}
        for rec in buf:
            groups.setdefault((rec[1], rec[2]), [[], [], []])[0].append(rec)
        for rec in rows:
            groups.setdefault((rec[1], rec[2]), [[], [], []])[1].append(rec)
        for tenant, model_id, table in tables:
            groups.setdefault((tenant, model_id), [[], [], []])[2].append(table)
        written = 0
        with self._write_lock:
            for (tenant, model_id), (recs, row_recs, tabs) in groups.items():
                try:
                    written += self._write_part(tenant, model_id, recs, row_recs, tabs)
                except Exception as exc:  # a bad record must not stop the others
                    self.dropped += len(recs) + len(row_recs) + len(tabs)
                    log.warning("mlops_jupyter: could not write %d prediction record(s) of %s/%s: %s",
                                len(recs) + len(row_recs) + len(tabs), tenant, model_id, exc)
                else:
                    self._touched.add((tenant, model_id))
        self.written_rows += written
        return written

    def take_touched(self) -> set[tuple[str, str]]:
        """The (tenant, model) pairs written since the last call (and forget them).

        The gateway's alert pass uses it to evaluate only models that got traffic.
        """
        with self._write_lock:
            out, self._touched = self._touched, set()
        return out

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

    def _write_part(self, tenant: str, model_id: str, recs: list[tuple[Any, ...]],
                    row_recs: list[tuple[Any, ...]], tables: list[Any]) -> int:
        validate_tenant(tenant)  # they name folders: never let one climb out of the log
        validate_model_id(model_id)
        parts = []
        if recs:
            parts.append(_build_table(recs, self._req_ids))
        if row_recs:
            parts.append(_rows_table(row_recs, self._req_ids))
        for t in tables:
            if "request_id" not in t.column_names:
                import numpy as np
                import pyarrow as pa

                first = self._req_ids.take(t.num_rows)
                t = t.add_column(1, "request_id", pa.array(np.arange(first, first + t.num_rows, dtype=np.int64)))
            parts.append(t)
        parts = [t for t in parts if t.num_rows]
        if not parts:
            return 0
        table = sort_by_time(unify_tables(parts))
        folder = self.root / tenant / model_id
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{int(time.time() * 1000):014d}-{os.getpid()}-{next(self._seq):06d}.parquet"
        _write_parquet(table, folder, name)
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

        table = self.read_table(tenant, model_id, since=since, last_n=last_n, dictionary=False)
        if table.num_rows == 0:
            return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _EMPTY_DTYPES.items()})
        return table.to_pandas()

    def read_table(self, tenant: str, model_id: str, *, since: Any = None, until: Any = None,
                   last_n: int | None = None, first_n: int | None = None,
                   columns: Sequence[str] | None = None, version: str | None = None,
                   dictionary: bool = True) -> Any:
        """Logged predictions of one model as a ``pyarrow.Table``, oldest first.

        Only the row groups that can hold rows of the window are read, and only the
        ``columns`` asked for.

        Args:
            tenant: the tenant slug.
            model_id: the model id.
            since: only rows at or after this time (datetime, Timestamp, ISO string, unix s).
            until: only rows at or before this time.
            last_n: only the last ``n`` rows (by timestamp) of what the other filters keep.
            first_n: only the first ``n`` rows (by timestamp); not with ``last_n``.
            columns: column names to read; :data:`ALL_FEATURES` (``"feature.*"``) stands
                for every feature column. ``timestamp`` is always read. Default: all.
            version: only rows answered by this version.
            dictionary: read text columns dictionary-encoded (pandas ``category``): much
                faster for repeated values such as versions and categorical features.

        Returns:
            A table sorted by ``timestamp`` (empty, with no feature column, when nothing
            matches).

        Raises:
            InvalidTenantError, InvalidNameError: bad tenant or model id.
            ValidationError: bad ``since``, ``until``, ``last_n`` or ``first_n``.

        Example:
            >>> t = log.read_table("acme", "churn", last_n=1000, columns=["latency_s", "feature.*"])
            >>> t.num_rows
            1000
        """
        validate_tenant(tenant)
        validate_model_id(model_id)
        for name, n in (("last_n", last_n), ("first_n", first_n)):
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
                raise ValidationError(f"Invalid {name} {n!r}.", value=n, allowed="an int >= 0 or None")
        if last_n is not None and first_n is not None:
            raise ValidationError("Give last_n or first_n, not both.", value=(last_n, first_n),
                                  allowed="one of them")
        lo = _to_us(since, "since")
        hi = _to_us(until, "until")
        self.flush()
        folder = self.root / tenant / model_id
        if not folder.is_dir():
            return _empty_table()
        if sum(1 for _ in folder.glob("part-*.parquet")) > COMPACT_ON_READ:
            try:
                self.compact(tenant, model_id)
            except Exception as exc:  # reading must not fail because merging did
                log.warning("mlops_jupyter: could not compact the prediction log of %s/%s: %s",
                            tenant, model_id, exc)
        with _flock(folder / READ_LOCK, shared=True):
            units = _units(folder)
            if lo is not None:
                units = [u for u in units if u.max_us >= lo]
            if hi is not None:
                units = [u for u in units if u.min_us <= hi]
            reader = _UnitReader(columns, dictionary, version, lo, hi)
            if version is None and lo is None and hi is None and (last_n is not None or first_n is not None):
                # row counts are known from the metadata: pick every row group that can hold
                # one of the n newest (oldest) rows, and read them in one go
                units = _cover(units, last_n if last_n is not None else first_n, newest=last_n is not None)
                tables = reader.read_all(units)
            elif last_n is not None:
                tables = _pick(units, last_n, reader, newest=True)
            elif first_n is not None:
                tables = _pick(units, first_n, reader, newest=False)
            else:
                tables = reader.read_all(units)
        tables = [t for t in tables if t.num_rows]
        tables.sort(key=lambda t: t["timestamp"][0].value)  # in time order: usually no sort needed
        if not tables:
            return _empty_table()
        table = sort_by_time(unify_tables(tables))
        if last_n is not None and table.num_rows > last_n:
            table = table.slice(table.num_rows - last_n)
        elif first_n is not None and table.num_rows > first_n:
            table = table.slice(0, first_n)
        return table

    def row_count(self, tenant: str, model_id: str) -> int:
        """How many rows are stored for a model (from file metadata; no data read).

        Example:
            >>> log.row_count("acme", "churn")
            1000000
        """
        validate_tenant(tenant)
        validate_model_id(model_id)
        self.flush()
        folder = self.root / tenant / model_id
        if not folder.is_dir():
            return 0
        with _flock(folder / READ_LOCK, shared=True):
            return sum(u.rows for u in _units(folder))

    # -- compaction ----------------------------------------------------------------------
    def compact(self, tenant: str, model_id: str, *, min_files: int = COMPACT_MIN_FILES,
                small_rows: int = COMPACT_SMALL_ROWS, target_rows: int = COMPACT_TARGET_ROWS) -> dict[str, int]:
        """Merge a model's small parts into larger time-sorted files.

        Parts with fewer than ``small_rows`` rows are merged, in the order they were
        written, into files of up to ``target_rows`` rows, when there are at least
        ``min_files`` of them. Safe with concurrent writers and readers (see the module
        docstring); when another process is compacting the same model this returns at once.

        Returns:
            ``{"merged_files": sources merged, "written_files": files written, "rows": rows
            rewritten}`` (zeros when there was nothing to do or the model was busy).

        Example:
            >>> log.compact("acme", "churn")
            {'merged_files': 120, 'written_files': 1, 'rows': 120000}
        """
        validate_tenant(tenant)
        validate_model_id(model_id)
        out = {"merged_files": 0, "written_files": 0, "rows": 0}
        folder = self.root / tenant / model_id
        if not folder.is_dir():
            return out
        with _flock(folder / COMPACT_LOCK, shared=False, blocking=False) as got:
            if not got:
                return out
            files = sorted(folder.glob("part-*.parquet"))
            small = [(f, _meta(f).rows) for f in files]
            small = [(f, n) for f, n in small if n < small_rows]
            if len(small) < min_files:
                return out
            batches: list[list[Path]] = [[]]
            rows_in = 0
            for f, n in small:
                if batches[-1] and rows_in + n > target_rows:
                    batches.append([])
                    rows_in = 0
                batches[-1].append(f)
                rows_in += n
            import pyarrow.parquet as pq

            for batch in batches:
                if len(batch) < 2:
                    continue
                with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
                    parts = list(pool.map(pq.read_table, batch))  # pyarrow reads without the GIL
                table = sort_by_time(unify_tables(parts))
                del parts
                ms = max(_flush_ms(f) or 0 for f in batch)
                name = f"part-{ms:014d}-{os.getpid()}-c{next(self._seq):06d}.parquet"
                tmp = _write_parquet(table, folder, name, publish=False)
                with _flock(folder / READ_LOCK, shared=False):
                    os.replace(tmp, folder / name)
                    for f in batch:
                        f.unlink(missing_ok=True)
                out["merged_files"] += len(batch)
                out["written_files"] += 1
                out["rows"] += table.num_rows
        return out


# -- files, locks and row groups --------------------------------------------------------
class _flock:
    """``with _flock(path, shared=...) as got:`` an flock on ``path`` (created if missing)."""

    def __init__(self, path: Path, shared: bool, blocking: bool = True) -> None:
        self.path, self.shared, self.blocking = path, shared, blocking
        self.fd = -1

    def __enter__(self) -> bool:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        flags = (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | (0 if self.blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(self.fd, flags)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = -1
            return False
        return True

    def __exit__(self, *exc: Any) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1


def _write_parquet(table: Any, folder: Path, name: str, publish: bool = True) -> Path:
    """Write ``table`` as ``folder/name`` through a temporary file; returns the final path
    (or, with ``publish=False``, the temporary one for the caller to rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = folder / f".{name}.tmp"
    pq.write_table(table, tmp, compression="zstd" if pa.Codec.is_available("zstd") else "snappy",
                   row_group_size=ROW_GROUP_ROWS)
    if not publish:
        return tmp
    os.replace(tmp, folder / name)
    return folder / name


class _Unit(NamedTuple):
    """One row group of one part file, with its time range."""

    path: Path
    group: int
    rows: int
    min_us: int
    max_us: int


class _Meta(NamedTuple):
    key: tuple[int, int]
    rows: int
    units: tuple[_Unit, ...]
    schema: Any


_META: dict[str, _Meta] = {}
_META_LOCK = threading.Lock()
_NO_MIN, _NO_MAX = -(2**63), 2**63 - 1


def _meta(path: Path) -> _Meta:
    """Row count, row groups with their timestamp range, and schema of a part (cached)."""
    st = path.stat()
    key = (st.st_size, st.st_mtime_ns)
    hit = _META.get(str(path))
    if hit is not None and hit.key == key:
        return hit
    import pyarrow.parquet as pq

    md = pq.read_metadata(path)
    schema = md.schema.to_arrow_schema()
    try:
        ts_col = schema.get_field_index("timestamp")
    except KeyError:  # pragma: no cover - every part has one
        ts_col = -1
    units = []
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        lo, hi = _NO_MIN, _NO_MAX
        if ts_col >= 0:
            stats = rg.column(ts_col).statistics
            if stats is not None and stats.has_min_max:
                lo, hi = int(stats.min_raw), int(stats.max_raw)
        units.append(_Unit(path, g, rg.num_rows, lo, hi))
    meta = _Meta(key, md.num_rows, tuple(units), schema)
    with _META_LOCK:
        if len(_META) > 20_000:
            _META.clear()
        _META[str(path)] = meta
    return meta


def _units(folder: Path) -> list[_Unit]:
    out: list[_Unit] = []
    for f in sorted(folder.glob("part-*.parquet")):
        try:
            out.extend(_meta(f).units)
        except FileNotFoundError:
            continue
        except Exception as exc:  # a corrupt part must not hide the others
            log.warning("mlops_jupyter: skipping unreadable prediction part %s: %s", f, exc)
    return out


class _UnitReader:
    """Reads the wanted columns of row groups, filtered by version and time range."""

    def __init__(self, columns: Sequence[str] | None, dictionary: bool, version: str | None,
                 lo: int | None, hi: int | None) -> None:
        self.columns = list(columns) if columns is not None else None
        self.dictionary = dictionary
        self.version = version
        self.lo, self.hi = lo, hi

    def _wanted(self, schema: Any) -> list[str] | None:
        if self.columns is None:
            return None
        names = schema.names
        want = {"timestamp"} | ({"version"} if self.version is not None else set())
        for c in self.columns:
            if c == ALL_FEATURES:
                want.update(n for n in names if n.startswith(FEATURE_PREFIX))
            else:
                want.add(c)
        return [n for n in names if n in want]

    def read(self, u: _Unit) -> Any:
        return self._read(u.path, [u.group], min(u.min_us, _NO_MAX), u.max_us)

    def read_all(self, units: Sequence[_Unit]) -> list[Any]:
        """Read many row groups, those of one file in one call."""
        by_file: dict[Path, list[_Unit]] = {}
        for u in units:
            by_file.setdefault(u.path, []).append(u)
        return [self._read(path, [u.group for u in us], min(u.min_us for u in us), max(u.max_us for u in us))
                for path, us in by_file.items()]

    def _read(self, path: Path, groups: list[int], min_us: int, max_us: int) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            meta = _meta(path)
        except FileNotFoundError:
            return _empty_table()
        cols = self._wanted(meta.schema)
        text = None
        if self.dictionary:
            text = [f.name for f in meta.schema if (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
                    and (cols is None or f.name in cols)]
        pf = pq.ParquetFile(path, read_dictionary=text or None)
        t = pf.read_row_groups(groups, columns=cols) if len(groups) > 1 else pf.read_row_group(groups[0], columns=cols)
        return self._filter(t, min_us, max_us)

    def _filter(self, t: Any, min_us: int, max_us: int) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        mask = None
        if self.version is not None:
            mask = pc.equal(t["version"], pa.scalar(self.version, pa.string()))
        ts = t["timestamp"]
        if self.lo is not None and min_us < self.lo:
            m = pc.greater_equal(ts, pa.scalar(self.lo, ts.type))
            mask = m if mask is None else pc.and_(mask, m)
        if self.hi is not None and max_us > self.hi:
            m = pc.less_equal(ts, pa.scalar(self.hi, ts.type))
            mask = m if mask is None else pc.and_(mask, m)
        return t if mask is None else t.filter(pc.fill_null(mask, False))


def _timestamps(tables: Sequence[Any]) -> Any:
    import numpy as np

    arrays = [t["timestamp"].to_numpy().astype("datetime64[us]").view(np.int64) for t in tables if t.num_rows]
    return np.concatenate(arrays) if arrays else np.empty(0, dtype=np.int64)


def _cover(units: list[_Unit], n: int, newest: bool) -> list[_Unit]:
    """The row groups that can hold one of the ``n`` newest (oldest) rows, from metadata.

    Take row groups newest (oldest) first until they hold ``n`` rows; every one of those
    rows is at or after (before) the earliest (latest) time ``b`` of the groups taken, so
    the ``n`` newest rows are all at or after ``b``: they lie in the groups whose range
    reaches ``b``.
    """
    if n == 0 or not units:
        return []
    order = sorted(units, key=(lambda u: -u.max_us) if newest else (lambda u: u.min_us))
    count, bound = 0, None
    for u in order:
        count += u.rows
        b = u.min_us if newest else u.max_us
        bound = b if bound is None else (min(bound, b) if newest else max(bound, b))
        if count >= n:
            break
    return [u for u in units if (u.max_us >= bound if newest else u.min_us <= bound)]


def _pick(units: list[_Unit], n: int, reader: _UnitReader, newest: bool) -> list[Any]:
    """Read just enough row groups to hold the ``n`` newest (oldest) matching rows.

    Row groups are taken by time, newest (oldest) first; once ``n`` rows are in hand,
    the ``n``-th newest timestamp is the cut, and any other row group whose range reaches
    the cut is still read (rows of different parts may interleave in time).
    """
    import numpy as np

    if n == 0:
        return []
    order = sorted(units, key=(lambda u: -u.max_us) if newest else (lambda u: u.min_us))
    tables: list[Any] = []
    count = 0
    cut: int | None = None
    for u in order:
        if cut is not None and ((u.max_us < cut) if newest else (u.min_us > cut)):
            break
        t = reader.read(u)
        if not t.num_rows:
            continue
        tables.append(t)
        count += t.num_rows
        if count >= n:
            ts = _timestamps(tables)
            k = ts.size - n if newest else n - 1
            cut = int(np.partition(ts, k)[k])
    return tables


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


def _empty_table() -> Any:
    import pyarrow as pa

    return pa.table({
        "timestamp": pa.array([], type=pa.timestamp("us", tz="UTC")),
        "request_id": pa.array([], type=pa.int64()),
        "version": pa.array([], type=pa.string()),
        "environment": pa.array([], type=pa.string()),
        "latency_s": pa.array([], type=pa.float64()),
        "success": pa.array([], type=pa.bool_()),
        "error": pa.array([], type=pa.string()),
        PREDICTION_COLUMN: pa.array([], type=pa.string()),
    })


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


def _to_us(value: Any, what: str) -> int | None:
    """Microseconds since the epoch of a point in time (None stays None)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValidationError(f"Invalid {what} {value!r}.", value=value, allowed="a point in time")
        return int(round(value * 1_000_000))
    try:
        ts = _to_timestamp(value)
    except ValidationError as exc:
        raise ValidationError(str(exc).replace("Invalid since", f"Invalid {what}").split(" Allowed:")[0],
                              value=value, allowed=exc.allowed) from exc
    return int(ts.value // 1000)


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
    first = req_ids.take(len(recs))
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


def _rows_table(rows: list[tuple[Any, ...]], req_ids: Any) -> Any:
    """Table for :meth:`PredictionLog.append_row` records: one row each, dict features."""
    import numpy as np
    import pyarrow as pa

    n = len(rows)
    first = req_ids.take(n)
    ts = np.fromiter((r[0] for r in rows), dtype=np.float64, count=n)
    cols: dict[str, Any] = {
        "timestamp": pa.array(np.round(ts * 1_000_000).astype(np.int64), type=pa.timestamp("us", tz="UTC")),
        "request_id": pa.array(np.arange(first, first + n, dtype=np.int64)),
        "version": pa.array([r[3] for r in rows], type=pa.string()),
        "environment": pa.array([r[4] for r in rows], type=pa.string()),
        "latency_s": pa.array(np.fromiter((r[5] for r in rows), dtype=np.float64, count=n)),
        "success": pa.array(np.fromiter((r[6] for r in rows), dtype=bool, count=n)),
        "error": pa.array([r[9] for r in rows], type=pa.string()),
    }
    feats = [r[7] for r in rows]
    names: dict[str, None] = {}
    first_keys = None
    for f in feats:
        if f:
            keys = tuple(f)
            if keys != first_keys:
                names.update(dict.fromkeys(keys))
                first_keys = keys
    for name in names:
        cols[FEATURE_PREFIX + str(name)] = _arrow_array([f.get(name) if f else None for f in feats])
    cols[PREDICTION_COLUMN] = _arrow_array([r[8] for r in rows])
    return pa.table(cols)
