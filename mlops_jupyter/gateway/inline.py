"""Which model versions may predict on the event loop itself, and when they lose that.

A prediction handed to the inference pool costs two thread hand-offs (loop to pool and
back), each a wake-up and a GIL hand-over: for a linear model that is more CPU than the
prediction (1 worker, ``wrk -t2 -c8``: about 200 µs of CPU per request through the pool,
120-126 µs inline). So a micro-batch of a version that is *trusted and measured fast* runs inline,
on the loop, when it is small; everything else stays in the pool, which keeps what the pool
is for: a slow model or a huge request delays only itself.

A version may predict inline only when all of these hold (decided once, when it is loaded;
``inline_reason`` says which failed, shown by the admin route):

- it is on the numeric fast path (a scikit-learn model given a float matrix);
- every estimator in it (``get_params(deep=True)``: pipelines, column transformers, meta
  estimators) is a class of scikit-learn itself, no parameter is a function from elsewhere
  (a ``FunctionTransformer``'s ``func``, a callable metric: code whose cost nobody measured)
  and none runs on other threads (``n_jobs`` other than None or 1: its wall time is not the
  loop's time);
- its test prediction, on at most ``MLOPS_GATEWAY_INLINE_MAX_ROWS`` rows, took at most a
  quarter of ``MLOPS_GATEWAY_INLINE_BUDGET`` (the fastest of :data:`TRIALS`; when it is
  over but by less than :data:`MAX_EXCUSE` times, it is measured again a few times, tens of
  milliseconds apart, in case the machine was slow at that moment: :data:`QUALIFY_ROUNDS`).

A batch runs inline only when its rows number at most ``MLOPS_GATEWAY_INLINE_MAX_ROWS``
(bigger ones go to the pool). Each inline batch is charged its CPU time on the loop thread
(``time.thread_time``), or a tenth of its wall-clock time when that is more (a model waiting
on something else); the wall clock alone would also count the time the loop was preempted,
and with one worker per core and a busy machine that is often more than the budget. A
version over the budget :data:`STRIKES` batches in a row (one alone may be a garbage
collection) goes back to the pool, with one log line, unless the machine itself is slow at
that moment. On a shared virtual machine the CPU time of the same work swings: measured on
two vCPUs, a 1-row batch of a logistic regression (about 0.3 ms) took 2-6 ms of CPU, once
12 ms, in bursts of tens of milliseconds that hit both workers at the same instant, several
times a minute, and each burst sent the model to the pool (throughput fell from about 6 000
to 3 000 requests/s). So the third strike first times a fixed piece of numpy and Python
work (:func:`machine_slowdown`: its CPU time now against the fastest seen in this process,
which the worker's agent thread also times every few seconds: :class:`ReferenceKeeper`)
and divides the batch's CPU time by that factor, up to :data:`MAX_EXCUSE`: a batch that is
within the budget at the machine's usual speed is the machine's doing, not the model's, and
the version keeps the loop (counted as ``inline_excused``). A burst that was not the model's
doing (a notebook training on the same cores, a swap storm) would otherwise cost a fast
model the loop until it is reloaded, so a version sent back tries the loop again after
``MLOPS_GATEWAY_INLINE_RETRY`` seconds (30), a wait that doubles at each demotion (up to
:data:`RETRY_MAX_FACTOR` times; 0: it stays in the pool). The worst a version can do to
the other routes is therefore a few budgets of delay per wait, the waits growing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_jupyter.config.settings import GatewayLimits
    from mlops_jupyter.gateway.models import LoadedVersion

log = logging.getLogger("mlops_jupyter.gateway")

TRIALS = 5
"""Test predictions timed at load; the fastest is compared to a quarter of the budget."""
STRIKES = 3
"""Inline batches over the budget in a row that send a version back to the pool."""
RETRY_MAX_FACTOR = 64
"""The wait before a demoted version tries the loop again doubles at each demotion, up to
this many times ``MLOPS_GATEWAY_INLINE_RETRY`` (30 s: about half an hour)."""


QUALIFY_ROUNDS = 5
QUALIFY_PAUSE = 0.03
"""A test prediction over the quarter budget but within :data:`MAX_EXCUSE` times it is tried
again, up to this many rounds of :data:`TRIALS`, this many seconds apart (loading runs in
the pool, not on the loop): a slow phase of the machine lasts tens of milliseconds, and
measured at such a moment a 0.2 ms logistic regression took 1.09 ms and was kept off the
loop until it was loaded again."""
MAX_EXCUSE = 4.0
"""The most a batch's CPU time is divided by for a slow machine: a model more than this many
times over the budget is over it whatever the machine's state."""
REFERENCE_ROUNDS = 20
"""Small numpy operations in :func:`reference_time` (about 50-150 µs in all)."""
REFERENCE_EVERY = 5.0
"""Seconds between two timings of the reference work by the worker's agent thread
(:class:`ReferenceKeeper`), so the fastest seen is the machine's usual speed even when the
worker started, and its models were measured, in a slow phase."""
_fastest_reference = float("inf")


def reference_time() -> float:
    """CPU seconds of a fixed piece of work like a small model's predict (numpy calls from
    Python), the best of 3."""
    import numpy as np

    a = np.arange(64, dtype=float).reshape(8, 8) / 64.0
    best = float("inf")
    for _ in range(3):
        c0 = time.thread_time()
        s = 0.0
        for _ in range(REFERENCE_ROUNDS):
            s += float((a @ a).sum())
        best = min(best, time.thread_time() - c0)
    return best


def machine_slowdown() -> float:
    """How many times slower this thread runs the reference work now than at its fastest in
    this process (1.0 the first time; never below 1).

    >>> machine_slowdown() >= 1.0
    True
    """
    global _fastest_reference
    now = reference_time()
    _fastest_reference = min(_fastest_reference, now)
    return now / _fastest_reference if _fastest_reference > 0 else 1.0


class ReferenceKeeper:
    """Times the reference work at most every ``every`` seconds (:data:`REFERENCE_EVERY`),
    called by the worker's agent thread at each of its passes.

    Without it the fastest time is only taken when a model is measured at load and at a third
    strike, which happens in slow phases: a worker started in one would judge every later slow
    phase against a slow reference and excuse too little (a fast model sent to the pool).

    >>> keep = ReferenceKeeper()
    >>> keep(100.0), keep(101.0), keep(100.0 + REFERENCE_EVERY)
    (True, False, True)
    """

    def __init__(self, every: float = REFERENCE_EVERY) -> None:
        self.every = every
        self.at = float("-inf")

    def __call__(self, now: float) -> bool:
        """Time it if ``every`` seconds passed since the last time (``now``: monotonic seconds);
        returns whether it did."""
        if now - self.at < self.every:
            return False
        self.at = now
        machine_slowdown()
        return True


def untrusted_part(model: Any) -> str | None:
    """Why ``model`` may not run on the event loop (see the module docstring), or None."""
    parts = [model]
    if hasattr(model, "get_params"):
        try:
            parts += list(model.get_params(deep=True).values())
        except Exception as exc:  # a broken get_params is itself a reason
            return f"its get_params() raised {type(exc).__name__}"
    for part in parts:
        if isinstance(part, type) or part is None or isinstance(part, (str, bytes, int, float, bool)):
            continue
        module = getattr(type(part), "__module__", "") or ""
        if hasattr(part, "get_params"):
            if not module.startswith("sklearn."):
                return f"{type(part).__qualname__} (from {module or 'unknown'}) is not a scikit-learn class"
            n_jobs = getattr(part, "n_jobs", None)
            if n_jobs not in (None, 1):
                return f"{type(part).__qualname__} has n_jobs={n_jobs!r} (it predicts on other threads)"
        elif callable(part) and not (getattr(part, "__module__", "") or "").startswith("sklearn."):
            return f"parameter {getattr(part, '__qualname__', repr(part))!r} is code from outside scikit-learn"
    return None


def qualify(lv: LoadedVersion, example: Any, limits: GatewayLimits) -> None:
    """Decide whether ``lv`` predicts inline; set ``lv.inline`` and ``lv.inline_reason``."""
    lv.inline = False
    lv.inline_strikes = 0
    lv.inline_demotions = 0
    lv.inline_retry_at = None
    lv.inline_excused = 0
    if limits.inline_max_rows == 0:
        lv.inline_reason = "inline prediction is off (MLOPS_GATEWAY_INLINE_MAX_ROWS=0)"
        return
    if not lv.numeric:
        lv.inline_reason = "not on the numeric fast path"
        return
    why = untrusted_part(lv.model)
    if why is not None:
        lv.inline_reason = why
        return
    rows = {"columns": example.get("columns"), "data": list(example["data"])[: limits.inline_max_rows]}
    x, _, _ = lv.to_input({"dataframe_split": rows})
    best = float("inf")
    for attempt in range(QUALIFY_ROUNDS):
        if attempt:
            time.sleep(QUALIFY_PAUSE)
        for _ in range(TRIALS):  # the same prediction as the load's test (its warnings already seen)
            t0 = time.perf_counter()
            lv.predict(x)
            best = min(best, time.perf_counter() - t0)
        for _ in range(TRIALS):  # the machine's speed now, the reference for machine_slowdown()
            machine_slowdown()
        if best <= limits.inline_budget / 4 or best > MAX_EXCUSE * limits.inline_budget / 4:
            break  # fast enough, or slower than any slowness of the machine explains
    if best > limits.inline_budget / 4:
        lv.inline_reason = (
            f"its test prediction took {best * 1e3:.2f} ms, over a quarter of MLOPS_GATEWAY_INLINE_BUDGET "
            f"({limits.inline_budget * 1e3:g} ms)"
        )
        return
    lv.inline = True
    lv.inline_reason = f"test prediction {best * 1e6:.0f} µs"


WALL_SHARE = 0.1
"""The share of an inline batch's wall-clock time charged when it is more than its CPU time."""


def charge(
    lv: LoadedVersion,
    cpu_s: float,
    wall_s: float,
    limits: GatewayLimits,
    slowdown: Callable[[], float] = machine_slowdown,
) -> None:
    """Account one inline batch (its CPU and wall-clock seconds); the :data:`STRIKES`-th over
    the budget in a row sends the version back to the pool, unless the batch was within the
    budget at the machine's usual speed (``slowdown``: how much slower it is now)."""
    took = max(cpu_s, wall_s * WALL_SHARE)
    if took <= limits.inline_budget:
        lv.inline_strikes = 0
        return
    lv.inline_strikes += 1
    if lv.inline_strikes >= STRIKES:
        slow = min(max(slowdown(), 1.0), MAX_EXCUSE)
        if max(cpu_s / slow, wall_s * WALL_SHARE) <= limits.inline_budget:
            lv.inline_strikes = 0
            lv.inline_excused += 1
            return
        lv.inline = False
        lv.inline_demotions += 1
        wait = retry_wait(limits, lv.inline_demotions)
        lv.inline_retry_at = None if wait is None else time.perf_counter() + wait
        lv.inline_reason = (
            f"{STRIKES} inline batches in a row took over MLOPS_GATEWAY_INLINE_BUDGET "
            f"({limits.inline_budget * 1e3:g} ms; the last {cpu_s * 1e3:.2f} ms of CPU in {wall_s * 1e3:.2f} ms, "
            f"the machine {slow:.1f}x slower than its fastest); "
            + ("it stays in the pool" if wait is None else f"it tries the loop again in {wait:g} s")
        )
        log.warning(
            "gateway: %s %s %s predicts in the inference pool from now on: %s",
            lv.tenant,
            lv.model_id,
            lv.version,
            lv.inline_reason,
        )


def retry_wait(limits: GatewayLimits, demotions: int) -> float | None:
    """Seconds before a version demoted ``demotions`` times tries the loop again (None: never).

    >>> from mlops_jupyter.config.settings import GatewayLimits
    >>> [retry_wait(GatewayLimits(), n) for n in (1, 2, 3, 8)]
    [30.0, 60.0, 120.0, 1920.0]
    >>> retry_wait(GatewayLimits(inline_retry=0.0), 1) is None
    True
    """
    if limits.inline_retry <= 0:
        return None
    return limits.inline_retry * min(2 ** (demotions - 1), RETRY_MAX_FACTOR)


def retry(lv: LoadedVersion, now: float) -> None:
    """Put a demoted version back on the loop once its wait is over (``now``: perf counter);
    its batches are charged as before, so a model still slow goes back within
    :data:`STRIKES` batches, for a wait twice as long."""
    if lv.inline_retry_at is None or now < lv.inline_retry_at:
        return
    lv.inline_retry_at = None
    lv.inline = True
    lv.inline_strikes = 0
    lv.inline_reason = f"trying the loop again (sent back to the pool {lv.inline_demotions} time(s))"
    log.info("gateway: %s %s %s %s", lv.tenant, lv.model_id, lv.version, lv.inline_reason)
