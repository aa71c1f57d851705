"""The gateway's counters and ``GET /metrics`` (Prometheus text format 0.0.4).

One :class:`Stats` per (tenant, environment, model, version), kept across route changes so
counters only grow; the request path updates them in place (no lock: the event loop is the
only writer). :func:`render` writes them as::

    mlops_requests_total{tenant,environment,model,version}                 counter
    mlops_model_executions_total{tenant,environment,model,version}         counter
    mlops_errors_total{..., kind="client" | "model"}                       counter
    mlops_request_latency_seconds_bucket / _sum / _count{...}              histogram
    mlops_gateway_responses_total{code}                                    counter (admin token)
    mlops_gateway_responses_total{tenant, class="2xx" | "4xx" | "5xx"}     counter (a tenant's token)
    mlops_prediction_log_dropped_total                                     counter
    mlops_prediction_log_write_failures_total                              counter
    mlops_prediction_log_spooled                                           gauge
    mlops_prediction_log_degraded                                          gauge (workers that cannot write)
    mlops_gateway_workers                                                  gauge
    mlops_gateway_send_timeouts_total / _outbound_closed_total             counter (see :mod:`.http_state`)
    mlops_gateway_connections_rebalanced_total                             counter (see :mod:`.balance`)

``mlops_model_executions_total`` counts the model's ``predict`` calls (Triton's execution
count): requests over executions is the mean micro-batch (see :mod:`.batching`); a batch whose
requests came through several environments of one version counts under its first request's.

A tenant's token sees its own series only (its response counts are those of its model
routes); the admin token sees every tenant's and the gateway-wide status codes. With
several workers the numbers are every worker's added up (:mod:`.cluster`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from mlops_jupyter.deployment import tokens as auth

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class StatsKey(NamedTuple):
    """Whose counters: one served version of one deployment."""

    tenant: str
    environment: str
    model_id: str
    version: str


class Stats:
    """Counters and a latency histogram for one (tenant, environment, model, version).

    ``executions``: the model's ``predict`` calls for these requests (fewer than the
    requests when they met in micro-batches).

    Example:
        >>> s = Stats()
        >>> s.observe(0.003)
        >>> s.requests, s.buckets[LATENCY_BUCKETS.index(0.005)]
        (1, 1)
    """

    __slots__ = ("buckets", "client_errors", "executions", "lat_sum", "model_errors", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.executions = 0
        self.client_errors = 0
        self.model_errors = 0
        self.lat_sum = 0.0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)

    def observe(self, latency: float) -> None:
        self.requests += 1
        self.lat_sum += latency
        i = 0
        for b in LATENCY_BUCKETS:
            if latency <= b:
                break
            i += 1
        self.buckets[i] += 1


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(
    stats: Mapping[StatsKey, Stats],
    codes: Mapping[int, int],
    dropped: int,
    who: str,
    log: Mapping[str, int] | None = None,
) -> str:
    """The ``/metrics`` text for the caller ``who`` (a tenant, or :data:`tokens.ADMIN`);
    ``log``: ``write_failures``, ``spooled``, ``degraded`` and ``workers`` gauges.

    Example:
        >>> s = Stats()
        >>> s.observe(0.002)
        >>> text = render({StatsKey("acme", "production", "iris", "1.0.0"): s}, {200: 1}, 0, "acme")
        >>> print(text.splitlines()[2])
        mlops_requests_total{tenant="acme",environment="production",model="iris",version="1.0.0"} 1
        >>> "iris" in render({StatsKey("acme", "production", "iris", "1.0.0"): s}, {}, 0, "other")
        False
    """
    rows = [(k, s) for k, s in sorted(stats.items()) if who == auth.ADMIN or k[0] == who]
    out = [
        "# HELP mlops_requests_total Prediction requests answered, per model version.",
        "# TYPE mlops_requests_total counter",
    ]
    labels = {
        k: 'tenant="{}",environment="{}",model="{}",version="{}"'.format(*tuple(_esc(x) for x in k)) for k, _ in rows
    }
    out += [f"mlops_requests_total{{{labels[k]}}} {s.requests}" for k, s in rows]
    out += [
        "# HELP mlops_model_executions_total Model predict calls, per model version (requests / executions: "
        "the mean micro-batch).",
        "# TYPE mlops_model_executions_total counter",
    ]
    out += [f"mlops_model_executions_total{{{labels[k]}}} {s.executions}" for k, s in rows]
    out += [
        "# HELP mlops_errors_total Failed prediction requests (kind: client = 4xx, model = 5xx).",
        "# TYPE mlops_errors_total counter",
    ]
    for k, s in rows:
        out.append(f'mlops_errors_total{{{labels[k]},kind="client"}} {s.client_errors}')
        out.append(f'mlops_errors_total{{{labels[k]},kind="model"}} {s.model_errors}')
    out += [
        "# HELP mlops_request_latency_seconds Time from request parsed to answer written.",
        "# TYPE mlops_request_latency_seconds histogram",
    ]
    for k, s in rows:
        acc = 0
        for b, c in zip(LATENCY_BUCKETS, s.buckets):
            acc += c
            out.append(f'mlops_request_latency_seconds_bucket{{{labels[k]},le="{b}"}} {acc}')
        out.append(f'mlops_request_latency_seconds_bucket{{{labels[k]},le="+Inf"}} {s.requests}')
        out.append(f"mlops_request_latency_seconds_sum{{{labels[k]}}} {s.lat_sum:.9f}")
        out.append(f"mlops_request_latency_seconds_count{{{labels[k]}}} {s.requests}")
    out += [
        "# HELP mlops_gateway_responses_total HTTP responses by status code (a tenant: its model routes' by class).",
        "# TYPE mlops_gateway_responses_total counter",
    ]
    if who == auth.ADMIN:
        out += [f'mlops_gateway_responses_total{{code="{c}"}} {n}' for c, n in sorted(codes.items())]
    else:
        client = sum(s.client_errors for _, s in rows)
        model = sum(s.model_errors for _, s in rows)
        ok = max(sum(s.requests for _, s in rows) - client - model, 0)
        t = _esc(who)
        out += [
            f'mlops_gateway_responses_total{{tenant="{t}",class="{c}"}} {n}'
            for c, n in (("2xx", ok), ("4xx", client), ("5xx", model))
        ]
    out += [
        "# HELP mlops_prediction_log_dropped_total Prediction records dropped (spool full or a bad record).",
        "# TYPE mlops_prediction_log_dropped_total counter",
        f"mlops_prediction_log_dropped_total {dropped}",
    ]
    for name, kind, text in _LOG_SERIES:
        if log is not None and name in log:
            out += [
                f"# HELP mlops_{name} {text}",
                f"# TYPE mlops_{name} {kind}",
                f"mlops_{name} {log[name]}",
            ]
    return "\n".join(out) + "\n"


_LOG_SERIES = (
    ("prediction_log_write_failures_total", "counter", "Prediction log writes that failed (records kept, retried)."),
    ("prediction_log_spooled", "gauge", "Prediction records waiting in memory to be written."),
    ("prediction_log_degraded", "gauge", "Workers whose prediction log cannot be written now."),
    ("gateway_workers", "gauge", "Serving worker processes alive."),
    ("gateway_send_timeouts_total", "counter", "Connections closed: their unread answers drained nothing in time."),
    ("gateway_outbound_closed_total", "counter", "Connections closed: unread answers past the worker's byte budget."),
    ("gateway_connections_rebalanced_total", "counter", "Connections closed after an answer to even out the workers."),
)
