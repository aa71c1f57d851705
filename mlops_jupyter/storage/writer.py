"""The background batched writer: logging calls return at once, a thread stores batches.

``submit`` appends the op to the journal (so a kill loses nothing) and to the in-memory
queue, and returns. The writer thread takes everything queued, writes it through the sink
in one batch, and discards the journal segment (if the sink stored only part of it, the
segment is rewritten with the rest, which alone is retried; what is logged meanwhile joins
each retry, so a run the store keeps refusing, e.g. one whose experiment the user may no
longer edit, holds back no other run). ``flush`` waits until
everything submitted before it is stored, and raises :class:`StoreError` if the store keeps failing (the data
stays queued and journaled, and is retried, or replayed by the next process).

An item the store refuses for good (a tracking server's HTTP 400, e.g. a param another
kernel logged into the same run with another value) is not retried forever, holding back
what follows it: the sink stores the rest of its batch, and the next ``flush`` raises a typed
error naming the item (:func:`~.sinks.rejection_error`).
"""

from __future__ import annotations

import logging
import marshal
import os
import threading
import time
from pathlib import Path
from typing import Any

from mlops_jupyter.errors import InvalidSettingError, MLOpsError, StoreError, TenantAccessError
from mlops_jupyter.storage.journal import Journal
from mlops_jupyter.storage.sinks import PartialWriteError, Rejected, Sink, http_status, rejection_error

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0, 2.0)


def _rewrite_segment(path: Path, ops: list[dict[str, Any]]) -> None:
    """Replace a taken journal segment's records with ``ops`` (what of its batch is not
    stored yet), atomically: a crash leaves the old segment or the new one, both replayable
    (same record format as :meth:`Journal.append`)."""
    tmp = path.with_name(path.name + ".tmp")  # not "*.journal": never taken for a segment
    tmp.write_bytes(b"".join(len(d).to_bytes(4, "big") + d for d in map(marshal.dumps, ops)))
    os.replace(tmp, path)


class BatchWriter:
    def __init__(self, sink: Sink, journal: Journal | None, name: str = "mlops-writer") -> None:
        self.sink = sink
        self.journal = journal
        self._cond = threading.Condition()
        self._pending: list[dict[str, Any]] = []
        self._submitted = 0
        self._stored = 0
        self._error: BaseException | None = None  # the store's last error while it keeps failing
        self._failures = 0  # failed attempts reported in _error so far
        self._rejected: list[Rejected] = []  # refused for good, not reported by flush() yet
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- producer side -----------------------------------------------------------------
    def submit(self, op: dict[str, Any]) -> None:
        with self._cond:
            if self._closing:
                raise StoreError("The writer is closed; the interpreter is shutting down.")
            if self.journal is not None:
                self.journal.append(op)
            self._pending.append(op)
            self._submitted += 1
            if len(self._pending) == 1:
                self._cond.notify_all()

    def flush(self, timeout: float | None = 120.0) -> None:
        """Block until every op submitted so far is stored.

        Raises:
            StoreError: the store failed on every retry (data is kept and retried), or the
                timeout passed; ``TenantAccessError`` / ``InvalidSettingError`` when the
                server refuses the user (HTTP 403 / 401; kept and retried too).
            MLOpsError: the store refused some items for good (see
                :func:`~.sinks.rejection_error`; everything else is stored). Reported once.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._submitted
            failures = self._failures
            while self._stored < target:
                # an error is reported once an attempt made during this flush failed: one from
                # before (the server has come back since) must not fail it
                if self._error is not None and self._failures > failures:
                    raise _kept_error(self._error, target - self._stored) from self._error
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise StoreError(
                        f"Timed out after {timeout}s waiting for {target - self._stored} logged "
                        "item(s) to be stored; they stay queued and journaled."
                    )
                self._cond.wait(remaining)
            rejected, self._rejected = self._rejected, []
        if rejected:
            raise rejection_error(rejected)

    @property
    def backlog(self) -> int:
        with self._cond:
            return self._submitted - self._stored

    # -- writer thread -----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending and self._closing:
                    return
                todo, self._pending = self._pending, []
                segments = [self.journal.rotate() if self.journal is not None else None]
            taken = len(todo)
            attempt = 0
            while True:
                try:
                    self._note_rejected(self.sink.write(todo) or [])
                    break
                except Exception as exc:  # store down, locked, ...: keep and retry
                    if isinstance(exc, PartialWriteError):  # the rest is stored: retry, journal only this
                        self._note_rejected(exc.rejected)
                        todo = exc.remaining
                        if segments[0] is not None:
                            _rewrite_segment(segments[0], todo)
                            for seg in segments[1:]:  # their ops are in the first one now (a crash
                                Journal.discard(seg)  # in between leaves both: replay is idempotent)
                        segments = segments[:1]
                    delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
                    attempt += 1
                    if attempt >= 3:
                        with self._cond:
                            self._error = exc
                            self._failures += 1
                            self._cond.notify_all()
                        if attempt == 3:
                            log.warning("mlops_jupyter: storing %d item(s) failed, retrying: %s", len(todo), exc)
                    with self._cond:
                        if self._closing and attempt >= len(RETRY_DELAYS):
                            # give up at shutdown; the journal keeps the data for replay
                            self._pending = todo + self._pending
                            return
                    time.sleep(delay)
                    with self._cond:  # what was logged meanwhile joins the retry: a run the store
                        if self._pending:  # keeps refusing (e.g. 403) must not hold back the others
                            todo = todo + self._pending
                            taken += len(self._pending)
                            self._pending = []
                            segments.append(self.journal.rotate() if self.journal is not None else None)
            if self.journal is not None:
                for seg in segments:
                    Journal.discard(seg)
            with self._cond:
                self._stored += taken
                self._error = None
                self._cond.notify_all()

    def _note_rejected(self, rejected: list[Rejected]) -> None:
        """Keep items refused for good for the next :meth:`flush` to report (and say so now,
        for a user who never flushes); they leave the journal with their batch."""
        if rejected:
            log.warning("mlops_jupyter: %s", rejection_error(rejected))
            with self._cond:
                self._rejected += rejected

    def close(self, timeout: float = 30.0) -> bool:
        """Store what is queued and stop; returns True if everything was stored (or refused for
        good); else the journal keeps what is not stored, for the next process to replay."""
        try:
            self.flush(timeout)
        except MLOpsError as exc:
            # kept for a later try (store down, timeout, credentials or permission refused: not
            # only StoreError) or refused for good (dropped, logged when refused): the backlog tells
            if self.backlog:
                log.warning("mlops_jupyter: %s", exc)
        ok = self.backlog == 0
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        if self.journal is not None:
            self.journal.close(keep_data=not ok)
        return ok


def _kept_error(err: BaseException, waiting: int) -> MLOpsError:
    """What :meth:`BatchWriter.flush` raises while the store keeps failing: a typed error
    saying how many items wait and why (the server refusing the user's credentials or
    permissions is said so), and that they are kept and retried."""
    kept = f"{waiting} logged item(s) are not stored yet: {err}. They are kept in the write journal and retried; "
    status = http_status(err)
    if status == 401:
        return InvalidSettingError(
            kept + "the server does not accept the credentials (MLFLOW_TRACKING_USERNAME / _PASSWORD).",
            value=os.environ.get("MLFLOW_TRACKING_USERNAME"),
            allowed="a user of the tracking server and its password",
        )
    if status == 403:
        return TenantAccessError(
            kept + "the server denies this user permission on the run's experiment.",
            value=os.environ.get("MLFLOW_TRACKING_USERNAME"),
            allowed="a user with EDIT permission on the experiment (see provision_tenant)",
        )
    return StoreError(kept + "nothing was dropped.")
