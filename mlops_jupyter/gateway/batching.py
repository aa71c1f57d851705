"""Prediction: micro-batches without waiting, one answer per request.

Requests for a version on the numeric fast path (see
:mod:`~mlops_jupyter.gateway.models`) that arrive in one event-loop turn are queued on the
version (``LoadedVersion.pending``) as :class:`BatchItem` and stacked into one ``predict``
call at the end of the turn (:meth:`Batching._run_batches`): the batch is whatever is
already there, nothing waits for more. A model that raises inside a batch is retried
request by request, so only the bad request fails. Other requests are predicted at once.

Every answer updates the version's counters and appends one record to the prediction log.

:class:`Batching` is a mixin of :class:`~mlops_jupyter.gateway.app.Gateway` rather than an
object of its own: these methods are on the path of every prediction, and as methods of
the gateway they cost one bound-method lookup, as before the split.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlops_jupyter.gateway.http import error_body
from mlops_jupyter.gateway.models import LoadedVersion, to_jsonable

if TYPE_CHECKING:
    from mlops_jupyter.gateway.http import HttpConnection
    from mlops_jupyter.gateway.metrics import Stats
    from mlops_jupyter.gateway.routes import Route
    from mlops_jupyter.monitoring.predlog import PredictionLog


@dataclass(slots=True)
class BatchItem:
    """A request waiting for its batch: its model input, its row count, when it started
    (``t0``: perf counter, for latency; ``ts``: wall clock, for the log) and where it goes."""

    conn: HttpConnection
    x: Any
    n: int
    t0: float
    ts: float
    route: Route
    stats: Stats


class Batching:
    """The gateway's prediction methods (a mixin: see the module docstring)."""

    predlog: PredictionLog
    _dirty: list[LoadedVersion]
    _flush_scheduled: bool
    _np: Any
    _json_dumps: Callable[..., str]

    def _run_batches(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for lv in dirty:
            items, lv.pending = lv.pending, []
            if len(items) == 1:
                self._predict_one(lv, items[0], None)
                continue
            np = self._np
            if np is None:
                import numpy as np

                self._np = np
            try:
                y = lv.predict(np.concatenate([it.x for it in items]))
                if len(y) != sum(it.n for it in items):
                    raise ValueError("batch output length differs from its input")
            except Exception:
                for it in items:  # find the request that made the batch fail
                    self._predict_one(lv, it, None)
                continue
            start = 0
            for it in items:
                self._ok(lv, it, y[start : start + it.n])
                start += it.n

    def _predict_one(self, lv: LoadedVersion, it: BatchItem, params: Any) -> None:
        try:
            y = lv.predict(it.x, params)
        except Exception as exc:
            latency = time.perf_counter() - it.t0
            it.stats.model_errors += 1
            it.stats.observe(latency)
            msg = f"The model raised {type(exc).__name__}: {exc}"
            self.predlog.append(
                it.route.tenant,
                it.route.model_id,
                version=lv.version,
                environment=it.route.environment,
                latency_s=latency,
                success=False,
                error=msg,
                timestamp=it.ts,
            )
            it.conn.respond(500, error_body("MODEL_ERROR", msg), extra=b"X-Model-Version: %s\r\n" % lv.version.encode())
            return
        self._ok(lv, it, y)

    def _ok(self, lv: LoadedVersion, it: BatchItem, y: Any) -> None:
        try:
            preds = to_jsonable(y)
            body = b'{"predictions": ' + self._json_dumps(preds).encode() + b"}"
        except (TypeError, ValueError) as exc:
            it.stats.model_errors += 1
            it.conn.respond(500, error_body("MODEL_ERROR", f"The model's output is not JSON-serialisable: {exc}"))
            return
        latency = time.perf_counter() - it.t0
        it.stats.observe(latency)
        route = it.route
        self.predlog.append(
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
        it.conn.respond(200, body, extra=b"X-Model-Version: %s\r\n" % lv.version.encode())
