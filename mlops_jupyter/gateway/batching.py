"""Prediction off the event loop: micro-batches and solo jobs in a thread pool, with a deadline.

The event loop only reads requests and writes answers; model work runs in the inference
pool (``MLOPS_GATEWAY_INFERENCE_THREADS`` threads), so one slow model or one huge request
delays only itself. Per model version (``LoadedVersion``):

- **micro-batches**: small requests of a version on the numeric fast path (see
  :mod:`~mlops_jupyter.gateway.models`), already parsed on the loop, queue on the version
  (``pending``) and are stacked into one ``predict``. A small batch of a version that
  :mod:`~mlops_jupyter.gateway.inline` found trusted and fast is predicted on the loop
  itself: for such a model the two thread hand-offs cost more than the prediction. A batch
  is formed after the loop's next poll for input, so what the other connections already
  sent joins it (see ``_mark``; the poll does not wait). While a batch runs, what arrives
  forms the next one (the busier the version, the bigger its batches; nothing ever waits
  for more); only when the running batch is slow (over
  :data:`SLOW_BATCH_S`: a slow or stuck model) does a second one start beside it. A model
  that raises inside a batch is retried request by request, so only the bad request fails;
- **solo jobs**: everything else (bodies over :data:`INLINE_BODY_BYTES`, which are also
  decoded in the pool; more than :data:`BATCH_MAX_ROWS` rows; ``params``; models served
  through DataFrames) runs one request per job.

``/metrics`` counts a version's ``predict`` calls beside its requests
(``mlops_model_executions_total``): their ratio is the mean micro-batch.

A version runs at most ``MLOPS_GATEWAY_MODEL_CONCURRENCY`` jobs at once (batches and solo
jobs together; the rest wait in ``pending`` and ``waiting``), so a slow version cannot take
every thread from the others.

Each job has a deadline (``MLOPS_GATEWAY_REQUEST_TIMEOUT`` from when its oldest request was
read): on expiry its requests still unanswered get 504 (counted as model errors) and its
slot is freed; what the job returns later is dropped.

The answer body, its prediction-log record (:class:`~mlops_jupyter.monitoring.predlog.PredictionLog`
is thread-safe) and the latency are made in the pool thread; back on the loop only the
counters are updated and the answer written.

:class:`Batching` is a mixin of :class:`~mlops_jupyter.gateway.app.Gateway`: these methods
are on the path of every prediction.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from mlops_jupyter.config.settings import GatewayLimits
from mlops_jupyter.gateway import inline
from mlops_jupyter.gateway.decoding import SLICE_ROWS
from mlops_jupyter.gateway.http import cap_text, error_body
from mlops_jupyter.gateway.models import ClientError, LoadedVersion, to_jsonable
from mlops_jupyter.monitoring.predlog import request_record

if TYPE_CHECKING:
    from mlops_jupyter.gateway.http import HttpConnection
    from mlops_jupyter.gateway.metrics import Stats
    from mlops_jupyter.gateway.routes import Route
    from mlops_jupyter.monitoring.predlog import PredictionLog

INLINE_BODY_BYTES = 64 * 1024
"""Bodies up to this size are decoded on the event loop (microseconds); bigger ones in the pool."""
BATCH_MAX_ROWS = 4096
"""Requests with more rows than this are predicted alone, not stacked into a micro-batch."""
SLOW_BATCH_S = 0.005
"""A batch running longer than this lets the next batch of the same version start beside it."""


@dataclass(slots=True)
class BatchItem:
    """A request on its way to the model: its input (or its body, when it is parsed in the
    pool), its row count, when it started (``t0``: perf counter, for latency; ``ts``: wall
    clock, for the log), where it goes and whether it was answered."""

    conn: HttpConnection
    x: Any
    n: int
    t0: float
    ts: float
    route: Route
    stats: Stats
    params: Any = None
    body: bytes | None = None
    done: bool = False


class Outcome(NamedTuple):
    """One request's answer, made in the pool: status, body, latency, and which counter it feeds."""

    status: int
    body: bytes
    latency: float
    kind: str  # "ok", "client" (4xx) or "model" (5xx)


@dataclass(slots=True)
class Job:
    """One submission to the inference pool: a batch (``batch``) or one solo request."""

    lv: LoadedVersion
    items: list[BatchItem]
    batch: bool
    timer: asyncio.TimerHandle | None = None
    released: bool = False
    outcomes: list[Outcome] = field(default_factory=list)
    calls: int = 0  # the model's predict calls (set in the pool; counted on the loop by _done)


class Batching:
    """The gateway's prediction methods (a mixin: see the module docstring)."""

    predlog: PredictionLog
    loop: asyncio.AbstractEventLoop | None
    limits: GatewayLimits
    infer_pool: ThreadPoolExecutor
    _dirty: list[LoadedVersion]
    _flush_scheduled: bool
    _np: Any
    _json_dumps: Callable[..., str]

    # -- on the event loop ----------------------------------------------------------------
    def enqueue(self, lv: LoadedVersion, item: BatchItem) -> None:
        """Queue a request: into the version's next micro-batch, or as a solo job."""
        if item.body is None and item.params is None and item.n <= BATCH_MAX_ROWS and lv.numeric:
            lv.pending.append(item)
            if len(lv.pending) == 1:
                self._mark(lv)
            return
        if lv.running < self.limits.model_concurrency:
            self._submit(Job(lv, [item], False))
        else:
            lv.waiting.append(item)

    def _mark(self, lv: LoadedVersion) -> None:
        """Have the version's pending requests looked at after the loop's next poll for input.

        A timer due now runs after the I/O callbacks of the next loop turn (``call_soon`` would
        run before them), so requests already sent on the other connections are read into
        the batch first; that poll does not wait, the timer being due. Measured with 8
        connections on one worker (``benchmarks/serving.py``): 7.4-8.0 requests per ``predict``
        call instead of 4.0-4.1, and a quarter less CPU per request."""
        self._dirty.append(lv)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_at(self.loop.time(), self._run_batches)

    def _run_batches(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        now = time.perf_counter()
        for lv in dirty:
            if not lv.pending or lv.running >= self.limits.model_concurrency:
                continue
            if lv.batches and now - lv.batch_t < SLOW_BATCH_S:
                # a batch is running and not slow (yet): its end starts the next one; look
                # again when it would count as slow
                if not lv.recheck:
                    lv.recheck = True
                    self.loop.call_later(SLOW_BATCH_S, self._recheck, lv)
                continue
            items, lv.pending = lv.pending, []
            lv.batches += 1
            if lv.inline_retry_at is not None:
                inline.retry(lv, now)
            if lv.inline and sum(it.n for it in items) <= self.limits.inline_max_rows:
                self._inline(Job(lv, items, True))
                continue
            lv.batch_t = now
            self._submit(Job(lv, items, True))

    def _recheck(self, lv: LoadedVersion) -> None:
        lv.recheck = False
        if lv.pending:
            self._mark(lv)

    def _submit(self, job: Job) -> None:
        if self._admit(job):
            age = time.perf_counter() - min(it.t0 for it in job.items)
            job.timer = self.loop.call_later(self.limits.request_timeout - age, self._expire, job)
            self.infer_pool.submit(self._work, job)

    def _inline(self, job: Job) -> None:
        """Predict a small batch of a trusted, fast version here, on the loop: no thread
        hand-off (see :mod:`~mlops_jupyter.gateway.inline`, which also times it)."""
        if self._admit(job):
            t0, c0 = time.perf_counter(), time.thread_time()
            job.outcomes = self._outcomes(job)
            inline.charge(job.lv, time.thread_time() - c0, time.perf_counter() - t0, self.limits)
            self._done(job)

    def _admit(self, job: Job) -> bool:
        """Give 504 to the job's requests already past their deadline and take a slot for
        the rest; False when none is left (the slot is given back)."""
        now = time.perf_counter()
        timeout = self.limits.request_timeout
        live = []
        for it in job.items:
            if now - it.t0 >= timeout:
                self._timed_out(job.lv, it)
            else:
                live.append(it)
        job.items = live
        job.lv.running += 1
        if not live:
            self._release(job)
        return bool(live)

    def _expire(self, job: Job) -> None:
        """The job is past its deadline: its unanswered requests get 504, its slot is freed."""
        for it in job.items:
            if not it.done:
                self._timed_out(job.lv, it)
        self._release(job)

    def _timed_out(self, lv: LoadedVersion, it: BatchItem) -> None:
        it.done = True
        latency = time.perf_counter() - it.t0
        message = (
            f"The prediction did not finish within {self.limits.request_timeout:g} s (MLOPS_GATEWAY_REQUEST_TIMEOUT)."
        )
        it.stats.model_errors += 1
        it.stats.observe(latency)
        self.log_failed(it.route, lv, latency, message, it.ts)
        it.conn.respond(504, error_body("TIMEOUT", message), extra=b"X-Model-Version: %s\r\n" % lv.version.encode())

    def _release(self, job: Job) -> None:
        """Give the job's slot back and start what waits for it."""
        if job.released:
            return
        job.released = True
        if job.timer is not None:
            job.timer.cancel()
        lv = job.lv
        lv.running -= 1
        if job.batch:
            lv.batches -= 1
        if lv.waiting and lv.running < self.limits.model_concurrency:
            self._submit(Job(lv, [lv.waiting.popleft()], False))
        if lv.pending:
            self._mark(lv)

    def _done(self, job: Job) -> None:
        """Back from the pool: write the answers not yet given, free the slot."""
        version = b"X-Model-Version: %s\r\n" % job.lv.version.encode()
        for it, out in zip(job.items, job.outcomes):
            if it.done:
                continue
            it.done = True
            stats = it.stats
            if out.kind == "client":
                stats.client_errors += 1
            elif out.kind == "model":
                stats.model_errors += 1
            stats.observe(out.latency)
            it.conn.respond(out.status, out.body, extra=version)
        job.items[0].stats.executions += job.calls
        self._release(job)

    # -- in a pool thread -----------------------------------------------------------------
    def _work(self, job: Job) -> None:
        job.outcomes = self._outcomes(job)
        try:
            self.loop.call_soon_threadsafe(self._done, job)
        except RuntimeError:  # the loop closed (the gateway stopped) while the model ran
            pass

    def _outcomes(self, job: Job) -> list[Outcome]:
        """The job's answers (in a pool thread, or on the loop for an inline batch)."""
        try:
            if job.batch:
                return self._batch(job)
            out = self._solo(job.lv, job.items[0])
            job.calls = 0 if out.kind == "client" else 1  # a body refused while parsing never reached the model
            return [out]
        except BaseException as exc:  # never lose the answers: every request gets one
            msg = f"The gateway failed while predicting: {type(exc).__name__}: {exc}"
            return [self._failure(job.lv, it, msg) for it in job.items]

    def _batch(self, job: Job) -> list[Outcome]:
        lv, items = job.lv, job.items
        job.calls = 1
        if len(items) == 1:
            return [self._solo(lv, items[0])]
        np = self._np
        if np is None:
            import numpy as np

            self._np = np
        try:
            y = lv.predict(np.concatenate([it.x for it in items]))
            if len(y) != sum(it.n for it in items):
                raise ValueError("batch output length differs from its input")
        except Exception:
            job.calls += len(items)
            return [self._solo(lv, it) for it in items]  # find the request that made the batch fail
        out = []
        records: list[tuple[Any, ...]] = []
        start = 0
        for it in items:
            out.append(self._success(lv, it, y[start : start + it.n], records))
            start += it.n
        self.predlog.append_many(records)  # one lock and one write-ahead write for the batch
        return out

    def _solo(self, lv: LoadedVersion, it: BatchItem) -> Outcome:
        if it.body is not None:
            try:
                it.x, it.n, it.params = lv.parse(it.body, yielding=len(it.body) > INLINE_BODY_BYTES)
            except ClientError as exc:
                return self._client_failure(lv, it, exc)
            finally:
                it.body = None
        try:
            y = lv.predict(it.x, it.params)
        except Exception as exc:
            return self._failure(lv, it, f"The model raised {type(exc).__name__}: {exc}")
        return self._success(lv, it, y)

    def _success(
        self, lv: LoadedVersion, it: BatchItem, y: Any, records: list[tuple[Any, ...]] | None = None
    ) -> Outcome:
        """A request's answer; its log record goes to ``records`` (the batch's, appended
        together by the caller) or, without one, to the log at once."""
        try:
            body = b'{"predictions": ' + self._encode(y) + b"}"
        except (TypeError, ValueError) as exc:
            return self._failure(lv, it, f"The model's output is not JSON-serialisable: {exc}")
        latency = time.perf_counter() - it.t0
        route = it.route
        if not it.done:
            rec = request_record(
                route.tenant,
                route.model_id,
                version=lv.version,
                environment=route.environment,
                latency_s=latency,
                success=True,
                features=it.x,
                columns=lv.columns,
                output=y,
                timestamp=it.ts,
            )
            if records is None:
                self.predlog.append_many([rec])
            else:
                records.append(rec)
        return Outcome(200, body, latency, "ok")

    def _encode(self, y: Any) -> bytes:
        """The predictions as JSON; a long output is encoded a slice at a time (see :mod:`.decoding`)."""
        if len(y) <= SLICE_ROWS or not hasattr(y, "tolist") or hasattr(y, "columns"):
            return self._json_dumps(to_jsonable(y)).encode()
        dumps = self._json_dumps
        parts = [dumps(y[k : k + SLICE_ROWS].tolist())[1:-1] for k in range(0, len(y), SLICE_ROWS)]
        return ("[" + ", ".join(parts) + "]").encode()

    def _failure(self, lv: LoadedVersion, it: BatchItem, message: str) -> Outcome:
        return self._failed_outcome(lv, it, 500, "MODEL_ERROR", message, "model")

    def _client_failure(self, lv: LoadedVersion, it: BatchItem, exc: ClientError) -> Outcome:
        return self._failed_outcome(lv, it, exc.status, exc.code, exc.message, "client")

    def _failed_outcome(
        self, lv: LoadedVersion, it: BatchItem, status: int, code: str, message: str, kind: str
    ) -> Outcome:
        """A failed request's outcome, its error text capped; a model error is also logged (a
        client's refused request never reached the model: see :meth:`log_failed`)."""
        message = cap_text(message)
        latency = time.perf_counter() - it.t0
        if kind == "model":
            self.log_failed(it.route, lv, latency, message, it.ts)
        return Outcome(status, error_body(code, message), latency, kind)

    def log_failed(
        self, route: Route, lv: LoadedVersion, latency: float, message: str, ts: float | None = None
    ) -> None:
        """Record a request the model failed (it raised, or ran past the deadline) in the
        prediction log, its error text already capped: monitoring's ``error_rate`` and an
        ``error_rate`` alert read these rows. A request refused as the client's error (4xx:
        a bad body, a non-finite value...) never reached the model and is not a prediction:
        it is counted in ``/metrics`` (``mlops_errors_total{kind="client"}``) and not logged,
        so bad clients cannot raise a model's error rate (nor trigger its rollback)."""
        self.predlog.append(
            route.tenant,
            route.model_id,
            version=lv.version,
            environment=route.environment,
            latency_s=latency,
            success=False,
            error=message,
            timestamp=ts,
        )
