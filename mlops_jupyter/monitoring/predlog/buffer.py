"""The in-memory buffer: appends without I/O, flushes to part files, request ids, the
background writer thread and the flush at exit.

Writers append to one of three lists (no I/O on the caller's path):
:meth:`~PredictionBuffer.append` (one request, any feature shape: the gateway's),
:meth:`~PredictionBuffer.append_row` (one row with a dict of features: about a
microsecond, for ``track_prediction``) and :meth:`~PredictionBuffer.append_table` (a
columnar batch, for ``track_predictions``). Records are plain tuples in the field order of
:class:`~.encoding.Request` and :class:`~.encoding.Row` (see :mod:`.encoding` for why).

A flush swaps the lists for empty ones, encodes what it took into one table per (tenant,
model) and writes it as one part (:mod:`.parts`). The background thread flushes every
``flush_interval`` seconds, :meth:`~PredictionBuffer.close` once more, and every
buffer still open is closed at interpreter exit (and on SIGTERM in the gateway). A process
killed with SIGKILL loses what it buffered since its last flush (about a second).

The flush contract: when :meth:`~PredictionBuffer.flush` returns, everything appended
before it was called is in a published part, readable by this process and any other.
Two locks make it hold:

* ``_buf_lock`` guards the three lists and is held only to append or to swap them (the
  appenders never wait for I/O);
* ``_write_lock`` is held by a flush from *before* its swap until its last part is renamed
  in. A flush that finds another one writing (the background thread, a reader, the
  gateway's ``POST /admin/flush``) therefore waits for it, then takes what is left.
  Swapping first and locking only around the writes would let a second flush find the
  lists already empty and return while the first was still writing what it had taken.

Order: ``_write_lock`` before ``_buf_lock``, never the other way round.

Memory is bounded: past ``max_buffered`` requests (rows) the oldest are dropped and
counted in :attr:`~PredictionBuffer.dropped`; batches are never dropped: past
``max_buffered`` buffered batch rows, ``append_table`` flushes before it returns.

Durability (``wal=True``, the gateway): every request and row is also appended to a
write-ahead segment as it is buffered, and a flush commits the segment it rotated out
(:mod:`.wal` has the protocol), so SIGKILL loses nothing. A flush that cannot write (the
folder is read-only, the disk full) keeps the records: they go back to the buffer (the
*spool*, bounded by ``max_buffered``), :attr:`~PredictionBuffer.write_error` says why
(the gateway's ``/health`` reports ``degraded``) and the next flush retries. Drops are
counted per record and logged at most once per :data:`DROP_LOG_INTERVAL` seconds.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlops_jupyter.config.names import validate_model_id, validate_tenant
from mlops_jupyter.config.settings import predictions_dir
from mlops_jupyter.monitoring.predlog.encoding import encode_part, model_key
from mlops_jupyter.monitoring.predlog.parts import part_name, write_parquet
from mlops_jupyter.monitoring.predlog.wal import Renames, Segment, commit, encode_record, replay_orphans, wal_dir

log = logging.getLogger(__name__)

DEFAULT_FLUSH_INTERVAL = 1.0
DEFAULT_MAX_BUFFERED = 2_000_000  # requests held when the disk cannot keep up; older are dropped
DROP_LOG_INTERVAL = 10.0  # seconds between two warnings about dropped or unwritable records

_LOGS: weakref.WeakSet[PredictionBuffer] = weakref.WeakSet()
_EXIT_HOOKED = False


def _close_all_at_exit() -> None:
    for plog in list(_LOGS):
        try:
            plog.close()
        except Exception as exc:  # never raise at exit
            log.warning("mlops_jupyter: could not flush the prediction log: %s", exc)


class _Ids:
    """A thread-safe counter that can hand out a block of ``n`` at once (``take``)."""

    def __init__(self, start: int) -> None:
        self._next = start
        self._lock = threading.Lock()

    def __next__(self) -> int:
        return self.take(1)

    def take(self, n: int) -> int:
        with self._lock:
            first = self._next
            self._next += n
        return first


def request_record(
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
) -> tuple[Any, ...]:
    """One request's record for :meth:`PredictionBuffer.append_many`: a plain tuple in
    :class:`~.encoding.Request`'s field order (the NamedTuple would cost ~100 ns more).

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
    """
    return (
        timestamp if timestamp is not None else time.time(),
        tenant,
        model_id,
        version,
        environment,
        latency_s,
        success,
        features,
        columns,
        output,
        error,
    )


class PredictionBuffer:
    """The writing half of :class:`~.log.PredictionLog`: buffer, flush, close (its arguments
    are documented there)."""

    def __init__(
        self,
        home: str | os.PathLike[str],
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        background: bool = True,
        wal: bool = False,
    ) -> None:
        self.root = predictions_dir(home)
        self.flush_interval = float(flush_interval)
        self.max_buffered = int(max_buffered)
        self.dropped = 0
        self._buf: list[tuple[Any, ...]] = []  # Request layout
        self._rows: list[tuple[Any, ...]] = []  # Row layout
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
        self.write_error: str | None = None  # why the last flush could not write (None: it could)
        self.write_failures = 0
        self._failure_warned_at = self._drop_warned_at = -DROP_LOG_INTERVAL
        self._unreported = 0
        self._wal = wal
        self._segment: Segment | None = self._new_segment() if wal else None
        if background:
            self._thread = threading.Thread(target=self._run, name="mlops-predlog", daemon=True)
            self._thread.start()
        global _EXIT_HOOKED
        _LOGS.add(self)
        if not _EXIT_HOOKED:
            atexit.register(_close_all_at_exit)
            _EXIT_HOOKED = True

    def append(self, tenant: str, model_id: str, **fields: Any) -> None:
        """Buffer one request's predictions: the arguments of :func:`request_record` (no I/O but
        one ``write`` to the write-ahead log when it is on).

        Example:
            >>> import tempfile
            >>> from mlops_jupyter.monitoring.predlog import PredictionLog
            >>> log = PredictionLog(tempfile.mkdtemp(), background=False)
            >>> log.append("acme", "churn", version="1.0.0", latency_s=0.002,
            ...            success=True, features={"age": 41}, output=1)
            >>> log.flush()
            1
        """
        self.append_many([request_record(tenant, model_id, **fields)])

    def append_many(self, records: list[tuple[Any, ...]]) -> None:
        """Buffer several requests made by :func:`request_record` at once (a micro-batch's):
        one lock and, with the write-ahead log, one ``write`` for all of them."""
        with self._buf_lock:
            self._buf.extend(records)
            if self._segment is not None:
                self._log_ahead_many("q", records)
            if len(self._buf) > self.max_buffered:
                over = len(self._buf) - self.max_buffered
                del self._buf[:over]
                self._count_drop(over)
        if self._closed:  # no background writer any more: write now, or the rows are lost
            self.flush()

    def append_row(
        self,
        tenant: str,
        model_id: str,
        timestamp: float,
        version: str | None,
        environment: str,
        latency_s: float,
        success: bool,
        features: Mapping[str, Any] | None,
        prediction: Any = None,
        error: str | None = None,
    ) -> None:
        """Buffer one prediction of one input row (the fast path of ``track_prediction``).

        The caller has validated the arguments; ``features`` maps names to scalars and
        ``prediction`` is a scalar (or JSON text). No I/O, no copy of ``features``.

        Example:
            >>> import tempfile
            >>> from mlops_jupyter.monitoring.predlog import PredictionLog
            >>> log = PredictionLog(tempfile.mkdtemp(), background=False)
            >>> log.append_row("acme", "churn", time.time(), "1.0.0", "", 0.15, True,
            ...                {"priority": 1, "category": "technical"}, 1)
            >>> log.read("acme", "churn")[["feature.category", "prediction"]]
              feature.category  prediction
            0        technical           1
        """
        # a plain tuple in Row's field order (the NamedTuple would cost ~100 ns more)
        rec = (timestamp, tenant, model_id, version, environment, latency_s, success, features, prediction, error)
        with self._buf_lock:
            self._rows.append(rec)
            if self._segment is not None:
                self._log_ahead("r", rec)
            if len(self._rows) > self.max_buffered:
                del self._rows[: len(self._rows) - self.max_buffered]
                self._count_drop(1)
        if self._closed:  # no background writer any more: write now, or the row is lost
            self.flush()

    def append_table(self, tenant: str, model_id: str, table: Any) -> None:
        """Buffer a columnar batch (a ``pyarrow.Table`` with the log's columns).

        ``request_id`` is added when missing (one request per row). Batches are never
        dropped: when more than ``max_buffered`` rows of batches wait, this call writes
        them before returning.

        Example:
            >>> import tempfile
            >>> from mlops_jupyter.monitoring.predlog import PredictionLog
            >>> log = PredictionLog(tempfile.mkdtemp(), background=False)
            >>> import pandas as pd
            >>> import pyarrow as pa
            >>> now = pd.Timestamp.now(tz="UTC")
            >>> log.append_table("acme", "churn", pa.table({"timestamp": [now, now],
            ...     "latency_s": [0.002, 0.003], "success": [True, False]}))
            >>> log.flush()
            2
        """
        with self._buf_lock:
            self._tables.append((tenant, model_id, table))
            self._table_rows += table.num_rows
            full = self._table_rows > self.max_buffered
        if full or self._closed:
            self.flush()

    def flush(self) -> int:
        """Write everything buffered now; returns the number of rows this call wrote.

        When it returns, everything appended before the call is readable, here and by
        other processes (also when the background thread was writing at the time: this
        waits for it), unless the log cannot be written: then the records wait in the
        spool and :attr:`write_error` says why.

        Example:
            >>> import tempfile
            >>> from mlops_jupyter.monitoring.predlog import PredictionLog
            >>> log = PredictionLog(tempfile.mkdtemp(), background=False)
            >>> for age in (41, 35, 52):
            ...     log.append("acme", "churn", version="1.0.0", latency_s=0.002,
            ...                success=True, features={"age": age}, output=1)
            >>> log.flush()
            3
        """
        with self._write_lock:  # from the swap to the last rename: see the module docstring
            with self._buf_lock:
                if self._wal and self._segment is None and not self._closed:
                    self._segment = self._new_segment()  # it could not be opened before: try again
                old = self._segment
                if old is not None and old.records:
                    new = self._new_segment()
                    if new is None and not old.broken:
                        return 0  # cannot rotate: the records stay buffered and logged ahead in ``old``
                    self._segment = new
                else:
                    old = None
                requests, self._buf = self._buf, []
                rows, self._rows = self._rows, []
                tables, self._tables = self._tables, []
                self._table_rows = 0
            if not requests and not rows and not tables:  # (their records were dropped past the bound)
                if old is not None:
                    old.discard()
                if self.write_error is not None and (not self._wal or self._segment is not None):
                    self.write_error = None  # nothing waits, and the log can be opened again
                return 0
            staged = old is not None and not old.broken  # parts published by the segment's commit
            written, renames, failed = self._write_groups(_by_model(requests, rows, tables), publish=not staged)
            if staged:
                try:
                    commit(old, renames)
                except OSError as exc:  # the marker cannot be written: publish nothing, keep everything
                    for tmp, _ in renames:
                        Path(tmp).unlink(missing_ok=True)
                    self._note_failure(f"cannot commit the write-ahead log: {exc}")
                    failed, written = (requests, rows, tables), 0
                    old.discard()
            elif old is not None:
                old.discard()
            if failed[0] or failed[1] or failed[2]:
                self._respool(*failed)
            elif self.write_error is not None:
                log.warning("mlops_jupyter: the prediction log is writable again (%s)", self.root)
                self.write_error = None
        return written

    def _write_groups(
        self, groups: dict[tuple[str, str], tuple[list[Any], list[Any], list[Any]]], publish: bool
    ) -> tuple[int, Renames, tuple[list[Any], list[Any], list[Any]]]:
        """Write one part per model: (rows written, renames still to make when not
        ``publish``, the records of the models that could not be written for now)."""
        written, renames = 0, []
        failed: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
        for (tenant, model_id), (reqs, row_recs, tabs) in groups.items():
            try:
                n, rename = self._write_part(tenant, model_id, reqs, row_recs, tabs, publish=publish)
            except OSError as exc:  # the storage, not the records: keep them for the next flush
                self._note_failure(f"cannot write {self.root / tenant / model_id}: {exc}")
                for kept, recs in zip(failed, (reqs, row_recs, tabs)):
                    kept.extend(recs)
            except Exception as exc:  # a bad record must not stop the others
                lost = len(reqs) + len(row_recs) + len(tabs)
                with self._buf_lock:  # the appenders count drops under it too
                    self.dropped += lost
                log.warning(
                    "mlops_jupyter: could not write %d prediction record(s) of %s/%s: %s",
                    lost,
                    tenant,
                    model_id,
                    exc,
                )
            else:
                written += n
                if rename is not None:
                    renames.append(rename)
                self._touched.add((tenant, model_id))
        return written, renames, failed

    # -- durability: write-ahead segments, the spool, failures ------------------------------
    def _new_segment(self) -> Segment | None:
        try:
            return Segment.create(wal_dir(self.root), next(self._seq))
        except OSError as exc:
            self._note_failure(f"cannot open a write-ahead log segment in {wal_dir(self.root)}: {exc}")
            return None

    def _log_ahead(self, kind: str, rec: tuple[Any, ...]) -> None:
        """Append one record to the current segment (under ``_buf_lock``)."""
        self._log_ahead_many(kind, [rec])

    def _log_ahead_many(self, kind: str, records: list[tuple[Any, ...]]) -> None:
        """Append records to the current segment in one write (under ``_buf_lock``)."""
        seg = self._segment
        if seg.broken:
            return
        try:
            seg.write(b"".join([encode_record(kind, rec) for rec in records]), len(records))
        except Exception as exc:  # disk full, unpicklable features: the record stays in memory only
            seg.broken = True  # a partial write ends what a replay can read; rotate at the next flush
            self._note_failure(f"cannot append to the write-ahead log {seg.path}: {exc}")

    def _respool(self, requests: list[Any], rows: list[Any], tables: list[Any]) -> None:
        """Put records a flush could not write back in front of the buffer (and in the
        current segment), dropping the oldest past ``max_buffered``."""
        with self._buf_lock:
            self._buf[:0] = requests
            self._rows[:0] = rows
            self._tables[:0] = tables
            self._table_rows += sum(t[2].num_rows for t in tables)
            if self._segment is not None:
                for kind, recs in (("q", requests), ("r", rows)):
                    for rec in recs:
                        self._log_ahead(kind, rec)
            for buf in (self._buf, self._rows):
                if len(buf) > self.max_buffered:
                    over = len(buf) - self.max_buffered
                    del buf[:over]
                    self._count_drop(over)

    def _note_failure(self, reason: str) -> None:
        self.write_error = reason
        self.write_failures += 1
        now = time.monotonic()
        if now - self._failure_warned_at >= DROP_LOG_INTERVAL:
            self._failure_warned_at = now
            log.warning("mlops_jupyter: prediction log degraded, records kept in memory: %s", reason)

    def _count_drop(self, n: int) -> None:
        """Count ``n`` dropped records (under ``_buf_lock``); log at most once per interval."""
        self.dropped += n
        self._unreported += n
        now = time.monotonic()
        if now - self._drop_warned_at >= DROP_LOG_INTERVAL:
            self._drop_warned_at = now
            log.warning(
                "mlops_jupyter: dropped %d prediction record(s) (more than %d waiting to be written; %d in all)",
                self._unreported,
                self.max_buffered,
                self.dropped,
            )
            self._unreported = 0

    @property
    def spooled(self) -> int:
        """Records waiting in memory (requests and rows)."""
        return len(self._buf) + len(self._rows)

    def replay_orphans(self) -> int:
        """Fold the write-ahead segments of dead processes into the log (see :mod:`.wal`);
        returns the records replayed."""
        return replay_orphans(self.root, self._replay_parts)

    def _replay_parts(self, records: list[tuple[str, tuple[Any, ...]]]) -> Renames:
        requests = [r for kind, r in records if kind == "q"]
        rows = [r for kind, r in records if kind == "r"]
        _, renames, failed = self._write_groups(_by_model(requests, rows, []), publish=False)
        if failed[0] or failed[1]:
            for tmp, _ in renames:
                Path(tmp).unlink(missing_ok=True)
            raise OSError(self.write_error or "cannot write the replayed records")
        return renames

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
        with self._buf_lock:  # no append may write to it once it is closed
            seg, self._segment = self._segment, None
        if seg is not None:
            if seg.records:
                seg.close()  # a failed final flush: kept (unlocked) for the next start's replay
            else:
                seg.discard()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            try:
                self.flush()
            except Exception as exc:  # pragma: no cover - flush already guards each group
                log.warning("mlops_jupyter: prediction log flush failed: %s", exc)

    def _write_part(
        self,
        tenant: str,
        model_id: str,
        requests: list[tuple[Any, ...]],
        rows: list[tuple[Any, ...]],
        tables: list[Any],
        publish: bool = True,
    ) -> tuple[int, tuple[str, str] | None]:
        """Write one model's part: (rows, the (temporary, final) rename left to make, if any)."""
        validate_tenant(tenant)  # they name folders: never let one climb out of the log
        validate_model_id(model_id)
        table = encode_part(requests, rows, tables, self._req_ids)
        if table is None:
            return 0, None
        folder = self.root / tenant / model_id
        folder.mkdir(parents=True, exist_ok=True)
        name = part_name(int(time.time() * 1000), next(self._seq))
        path = write_parquet(table, folder, name, publish=publish)
        return table.num_rows, (None if publish else (str(path), str(folder / name)))


def _by_model(
    requests: list[tuple[Any, ...]], rows: list[tuple[Any, ...]], tables: list[tuple[str, str, Any]]
) -> dict[tuple[str, str], tuple[list[Any], list[Any], list[Any]]]:
    """What one flush took, grouped by (tenant, model_id): (requests, rows, batch tables)."""
    groups: dict[tuple[str, str], tuple[list[Any], list[Any], list[Any]]] = {}
    for i, records in enumerate((requests, rows)):
        for rec in records:
            key = model_key(rec)
            group = groups.get(key)
            if group is None:
                group = groups[key] = ([], [], [])
            group[i].append(rec)
    for tenant, model_id, table in tables:
        groups.setdefault((tenant, model_id), ([], [], []))[2].append(table)
    return groups
