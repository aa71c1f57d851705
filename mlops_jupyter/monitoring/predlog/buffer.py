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
from typing import Any

from mlops_jupyter.config.names import validate_model_id, validate_tenant
from mlops_jupyter.config.settings import predictions_dir
from mlops_jupyter.monitoring.predlog.encoding import encode_part, model_key
from mlops_jupyter.monitoring.predlog.parts import part_name, write_parquet

log = logging.getLogger(__name__)

DEFAULT_FLUSH_INTERVAL = 1.0
DEFAULT_MAX_BUFFERED = 2_000_000  # requests held when the disk cannot keep up; older are dropped

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


class PredictionBuffer:
    """The writing half of :class:`~.log.PredictionLog`: buffer, flush, close (its arguments
    are documented there)."""

    def __init__(
        self,
        home: str | os.PathLike[str],
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        background: bool = True,
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
        if background:
            self._thread = threading.Thread(target=self._run, name="mlops-predlog", daemon=True)
            self._thread.start()
        global _EXIT_HOOKED
        _LOGS.add(self)
        if not _EXIT_HOOKED:
            atexit.register(_close_all_at_exit)
            _EXIT_HOOKED = True

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
        # a plain tuple in Request's field order (the NamedTuple would cost ~100 ns more)
        rec = (
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
        with self._buf_lock:
            self._buf.append(rec)
            if len(self._buf) > self.max_buffered:
                del self._buf[: len(self._buf) - self.max_buffered]
                self.dropped += 1

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
            >>> log.append_row("acme", "churn", time.time(), "1.0.0", "", 0.15, True,
            ...                {"priority": 1, "category": "technical"}, 1)
        """
        # a plain tuple in Row's field order (the NamedTuple would cost ~100 ns more)
        rec = (timestamp, tenant, model_id, version, environment, latency_s, success, features, prediction, error)
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
        """Write everything buffered now; returns the number of rows this call wrote.

        When it returns, everything appended before the call is readable, here and by
        other processes (also when the background thread was writing at the time: this
        waits for it).

        Example:
            >>> log.flush()
            3
        """
        with self._write_lock:  # from the swap to the last rename: see the module docstring
            with self._buf_lock:
                requests, self._buf = self._buf, []
                rows, self._rows = self._rows, []
                tables, self._tables = self._tables, []
                self._table_rows = 0
            if not requests and not rows and not tables:
                return 0
            written = 0
            for (tenant, model_id), (reqs, row_recs, tabs) in _by_model(requests, rows, tables).items():
                try:
                    written += self._write_part(tenant, model_id, reqs, row_recs, tabs)
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
                    self._touched.add((tenant, model_id))
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

    def _write_part(
        self,
        tenant: str,
        model_id: str,
        requests: list[tuple[Any, ...]],
        rows: list[tuple[Any, ...]],
        tables: list[Any],
    ) -> int:
        validate_tenant(tenant)  # they name folders: never let one climb out of the log
        validate_model_id(model_id)
        table = encode_part(requests, rows, tables, self._req_ids)
        if table is None:
            return 0
        folder = self.root / tenant / model_id
        folder.mkdir(parents=True, exist_ok=True)
        write_parquet(table, folder, part_name(int(time.time() * 1000), next(self._seq)))
        return table.num_rows


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
