"""The gateway's counters and ``GET /metrics`` (Prometheus text format 0.0.4).

One :class:`Stats` per (tenant, environment, model, version), kept across route changes so
counters only grow; the request path updates them in place (no lock: the event loop is the
only writer). :func:`render` writes them as::

    mlops_requests_total{tenant,environment,model,version}                 counter
    mlops_errors_total{..., kind="client" | "model"}                       counter
    mlops_request_latency_seconds_bucket / _sum / _count{...}              histogram
    mlops_gateway_responses_total{code}                                    counter
    mlops_prediction_log_dropped_total                                     counter

A tenant's token sees its own series only; the admin token sees every tenant's.
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

    Example:
        >>> s = Stats()
        >>> s.observe(0.003)
        >>> s.requests, s.buckets[LATENCY_BUCKETS.index(0.005)]
        (1, 1)
    """

    __slots__ = ("buckets", "client_errors", "lat_sum", "model_errors", "requests")

    def __init__(self) -> None:
        self.requests = 0
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


def render(stats: Mapping[StatsKey, Stats], codes: Mapping[int, int], dropped: int, who: str) -> str:
    """The ``/metrics`` text for the caller ``who`` (a tenant, or :data:`tokens.ADMIN`).

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
        "# HELP mlops_gateway_responses_total HTTP responses by status code.",
        "# TYPE mlops_gateway_responses_total counter",
    ]
    out += [f'mlops_gateway_responses_total{{code="{c}"}} {n}' for c, n in sorted(codes.items())]
    out += [
        "# HELP mlops_prediction_log_dropped_total Prediction records dropped (buffer full or write failed).",
        "# TYPE mlops_prediction_log_dropped_total counter",
        f"mlops_prediction_log_dropped_total {dropped}",
    ]
    return "\n".join(out) + "\n"
