"""Parquet parts on disk: where they live, how they are named and written, the locks
between processes, and reading a window of rows from them.

Layout: one folder per (tenant, model), one Parquet file ("part") per flush::

    {home}/predictions/{tenant}/{model_id}/part-{flush_ms}-{pid}-{seq}.parquet
    {home}/predictions/{tenant}/{model_id}/part-{flush_ms}-{pid}-c{seq}.parquet   (merged)
    {home}/predictions/{tenant}/{model_id}/.read.lock
    {home}/predictions/{tenant}/{model_id}/.compact.lock

``flush_ms`` is the writer's clock in milliseconds (14 digits), ``pid`` its process id and
``seq`` a per-process counter (6 digits), so names sort by flush time and never collide
between processes. A merged part (``c`` before ``seq``) carries the newest ``flush_ms``
of its sources. Columns: see :mod:`.encoding`.

Inside a part, rows are sorted by ``timestamp`` and stored in row groups of
:data:`ROW_GROUP_ROWS` rows; the Parquet statistics of each row group give its min/max
timestamp. A reader turns the files' metadata (cached per file by size and mtime) into
*units*, one per row group with its row count and time range, and reads only the units a
window needs: those that overlap ``since``/``until``, or just enough of the newest
(oldest) to hold ``last_n`` (``first_n``) rows, and only the requested columns.

Writes and locks, the protocol between processes:

1. A part is written under the temporary name ``.{name}.tmp`` in the same folder and
   renamed to its final name (atomic on POSIX), so nobody ever sees half a file; writers
   take no lock: they only add new names.
2. A reader holds a shared ``flock`` on ``.read.lock`` from listing the parts to the last
   row group read.
3. The compactor (:mod:`.compaction`) holds an exclusive, non-blocking ``flock`` on
   ``.compact.lock`` for its whole run (one compactor per model across processes; a second
   one returns at once), writes its merged file under a temporary name without any lock,
   then takes the exclusive ``flock`` on ``.read.lock`` only to rename the merged file in
   and delete its sources. A reader therefore sees either every source or the merged
   file, never both and never neither: no row twice, none missed.

A process killed with SIGKILL leaves at most a ``.tmp`` file, which no reader lists.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from mlops_jupyter.errors import ValidationError
from mlops_jupyter.monitoring.predlog.encoding import (
    ALL_FEATURES,
    FEATURE_PREFIX,
    empty_table,
    sort_by_time,
    unify_tables,
)

log = logging.getLogger(__name__)

ROW_GROUP_ROWS = 65_536
READ_LOCK = ".read.lock"
COMPACT_LOCK = ".compact.lock"
PART_GLOB = "part-*.parquet"
SWAP_INTENT = ".swap.json"
"""Written by the compactor before it swaps a merged part in: ``{"merged": name, "sources":
[names]}``. If the compactor dies mid-swap, readers skip the listed sources while the merged
part exists, and the next compaction deletes them (no row seen twice)."""


# -- names, files and locks ----------------------------------------------------------------
def part_name(flush_ms: int, seq: int, merged: bool = False) -> str:
    """The file name of a part written at ``flush_ms`` by this process (see the layout)."""
    return f"part-{flush_ms:014d}-{os.getpid()}-{'c' if merged else ''}{seq:06d}.parquet"


def flush_ms_of(path: Path) -> int | None:
    """The ``flush_ms`` in a part's name (None for a name not in the layout)."""
    try:
        return int(path.name.split("-")[1])
    except (IndexError, ValueError):
        return None


def part_files(folder: Path) -> list[Path]:
    """The model's part files, in name order (so in flush order), without the sources of an
    interrupted swap whose merged part is already in (see :data:`SWAP_INTENT`)."""
    files = sorted(folder.glob(PART_GLOB))
    replaced = swapped_sources(folder)
    return [f for f in files if f.name not in replaced] if replaced else files


def swapped_sources(folder: Path) -> set[str]:
    """Names of sources already replaced by a merged part, per a leftover swap intent."""
    import json

    try:
        intent = json.loads((folder / SWAP_INTENT).read_text())
    except (FileNotFoundError, ValueError):
        return set()
    if not (folder / str(intent.get("merged", ""))).is_file():
        return set()  # the swap never happened: the sources are the data
    return {str(n) for n in intent.get("sources", [])}


def write_parquet(table: Any, folder: Path, name: str, publish: bool = True) -> Path:
    """Write ``table`` as ``folder/name`` through a temporary file; returns the final path
    (or, with ``publish=False``, the temporary one for the caller to rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = folder / f".{name}.tmp"
    pq.write_table(
        table, tmp, compression="zstd" if pa.Codec.is_available("zstd") else "snappy", row_group_size=ROW_GROUP_ROWS
    )
    if not publish:
        return tmp
    os.replace(tmp, folder / name)
    return folder / name


class flock:
    """``with flock(path, shared=...) as got:`` an flock on ``path`` (created if missing).

    With ``blocking=False``, ``got`` is False when another holder has it (nothing held).
    """

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


# -- metadata: row groups and their time ranges ----------------------------------------------
class Unit(NamedTuple):
    """One row group of one part file, with its time range."""

    path: Path
    group: int
    rows: int
    min_us: int
    max_us: int


class Meta(NamedTuple):
    """What a part's footer says: its row count, units and schema (``key``: size, mtime)."""

    key: tuple[int, int]
    rows: int
    units: tuple[Unit, ...]
    schema: Any


_META: dict[str, Meta] = {}
_META_LOCK = threading.Lock()
_NO_MIN, _NO_MAX = -(2**63), 2**63 - 1


def meta(path: Path) -> Meta:
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
        units.append(Unit(path, g, rg.num_rows, lo, hi))
    found = Meta(key, md.num_rows, tuple(units), schema)
    with _META_LOCK:
        if len(_META) > 20_000:
            _META.clear()
        _META[str(path)] = found
    return found


def _units(folder: Path) -> list[Unit]:
    out: list[Unit] = []
    for f in part_files(folder):
        try:
            out.extend(meta(f).units)
        except FileNotFoundError:
            continue
        except Exception as exc:  # a corrupt part must not hide the others
            log.warning("mlops_jupyter: skipping unreadable prediction part %s: %s", f, exc)
    return out


def count_rows(folder: Path) -> int:
    """Rows stored in the model folder, from the parts' metadata (under the read lock)."""
    with flock(folder / READ_LOCK, shared=True):
        return sum(u.rows for u in _units(folder))


# -- reading a window --------------------------------------------------------------------------
def read_window(
    folder: Path,
    *,
    lo: int | None,
    hi: int | None,
    last_n: int | None,
    first_n: int | None,
    columns: Sequence[str] | None,
    version: str | None,
    dictionary: bool,
) -> Any:
    """The rows of a model folder in ``[lo, hi]`` (microseconds, None: open), of ``version``,
    the last ``last_n`` or first ``first_n`` of them, sorted by time (under the read lock).

    See :meth:`~.log.PredictionLog.read_table` for the arguments.
    """
    with flock(folder / READ_LOCK, shared=True):
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
        return empty_table()
    table = sort_by_time(unify_tables(tables))
    if last_n is not None and table.num_rows > last_n:
        table = table.slice(table.num_rows - last_n)
    elif first_n is not None and table.num_rows > first_n:
        table = table.slice(0, first_n)
    return table


class _UnitReader:
    """Reads the wanted columns of row groups, filtered by version and time range."""

    def __init__(
        self, columns: Sequence[str] | None, dictionary: bool, version: str | None, lo: int | None, hi: int | None
    ) -> None:
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

    def read(self, u: Unit) -> Any:
        return self._read(u.path, [u.group], u.min_us, u.max_us)

    def read_all(self, units: Sequence[Unit]) -> list[Any]:
        """Read many row groups, those of one file in one call."""
        by_file: dict[Path, list[Unit]] = {}
        for u in units:
            by_file.setdefault(u.path, []).append(u)
        return [
            self._read(path, [u.group for u in us], min(u.min_us for u in us), max(u.max_us for u in us))
            for path, us in by_file.items()
        ]

    def _read(self, path: Path, groups: list[int], min_us: int, max_us: int) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            found = meta(path)
        except FileNotFoundError:
            return empty_table()
        cols = self._wanted(found.schema)
        text = None
        if self.dictionary:
            text = [
                f.name
                for f in found.schema
                if (pa.types.is_string(f.type) or pa.types.is_large_string(f.type)) and (cols is None or f.name in cols)
            ]
        pf = pq.ParquetFile(path, read_dictionary=text or None)
        t = pf.read_row_groups(groups, columns=cols) if len(groups) > 1 else pf.read_row_group(groups[0], columns=cols)
        return self._filter(t, min_us, max_us)

    def _filter(self, t: Any, min_us: int, max_us: int) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        mask = None
        if self.version is not None:
            if "version" not in t.column_names:  # a part written without versions: none match
                return t.slice(0, 0)
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


def _cover(units: list[Unit], n: int, newest: bool) -> list[Unit]:
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


def _pick(units: list[Unit], n: int, reader: _UnitReader, newest: bool) -> list[Any]:
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


# -- window bounds ---------------------------------------------------------------------------
def _to_timestamp(since: Any) -> Any:
    if since is None:
        return None
    import pandas as pd

    try:
        if isinstance(since, (int, float)) and not isinstance(since, bool):
            return pd.Timestamp(since, unit="s", tz="UTC")
        ts = pd.Timestamp(since)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"Invalid since {since!r}: {exc}.",
            value=since,
            allowed="a datetime, a pandas Timestamp, an ISO string or unix seconds",
        ) from exc
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
        return int(round(value * 1_000_000))  # noqa: RUF046 - numpy 1.x rounds its floats to floats
    try:
        ts = _to_timestamp(value)
    except ValidationError as exc:
        raise ValidationError(
            str(exc).replace("Invalid since", f"Invalid {what}").split(" Allowed:")[0], value=value, allowed=exc.allowed
        ) from exc
    return int(ts.value // 1000)
