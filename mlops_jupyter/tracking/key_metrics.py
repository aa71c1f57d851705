"""A run's key metric: one rule for the panels, the sidebar and the run dicts.

A run's key metric is its experiment's sort metric (tag :data:`SORT_METRIC_TAG`), else the
metric it logged last (what W&B's run table and MLflow's run page put in front), never cell
autolog's bookkeeping (:data:`HOUSEKEEPING_METRICS`) unless the run has nothing else.
Metrics logged in the same call share a timestamp; among those, a usual quality metric
(:data:`PREFERRED_METRICS`) counts as the later one. Where the logging order is unknown (a
frame of many runs, whose metric columns are sorted by name), the usual quality metrics
come first.

``ExperimentTracker.list_experiments`` returns each run's ``metrics`` in logging order
(:func:`in_logged_order`), so ``key_metrics(run["metrics"], sort_metric, logged_order=True)``
is the run's key metric first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: Experiment tag naming the metric its runs are ranked by (shown first everywhere).
SORT_METRIC_TAG = "mlops.sort_metric"
#: Usual quality metrics, most telling first: the key metric when the logging order is
#: unknown, and the later one among metrics logged together.
PREFERRED_METRICS = (
    "accuracy",
    "f1",
    "f1_score",
    "auc",
    "roc_auc",
    "r2",
    "precision",
    "recall",
    "score",
    "val_accuracy",
    "loss",
    "val_loss",
    "rmse",
    "mae",
)
#: Metrics that cell autolog records on every cell: listed last, never the key metric
#: unless a run has nothing else.
HOUSEKEEPING_METRICS = ("cell_duration_s", "cells_not_logged")


def _preference(name: str) -> int:
    """Higher for a more telling metric (0: not a usual quality metric)."""
    low = name.lower()
    return len(PREFERRED_METRICS) - PREFERRED_METRICS.index(low) if low in PREFERRED_METRICS else 0


def in_logged_order(metric_objs: Iterable[Any]) -> list[str]:
    """Metric keys ordered by when their latest value was logged (MLflow ``Metric`` objects:
    ``key``, ``timestamp``, ``step``); among metrics logged at the same time the more telling
    comes later.

    >>> from collections import namedtuple
    >>> M = namedtuple("M", "key timestamp step")
    >>> in_logged_order([M("loss", 5, 0), M("accuracy", 5, 0), M("throughput", 9, 0), M("lr", 1, 0)])
    ['lr', 'loss', 'accuracy', 'throughput']
    """
    objs = sorted(metric_objs, key=lambda m: (m.timestamp or 0, m.step or 0, _preference(m.key)))
    return list(dict.fromkeys(m.key for m in objs))


def key_metrics(metrics: Iterable[str], sort_metric: str | None = None, logged_order: bool = False) -> list[str]:
    """Metric names, the key one first: the experiment's sort metric, then (``logged_order``:
    ``metrics`` are in logging order) the last logged first, else the usual quality metrics
    (:data:`PREFERRED_METRICS`, in that order) and the others as given; cell autolog's
    bookkeeping last.

    >>> key_metrics(["cell_duration_s", "loss", "throughput", "accuracy"])
    ['accuracy', 'loss', 'throughput', 'cell_duration_s']
    >>> key_metrics(["loss", "accuracy", "throughput"], sort_metric="throughput")
    ['throughput', 'accuracy', 'loss']
    >>> key_metrics(["accuracy", "cell_duration_s", "loss", "throughput"], logged_order=True)
    ['throughput', 'loss', 'accuracy', 'cell_duration_s']
    """
    names = list(dict.fromkeys(metrics))

    def rank(i_name: tuple[int, str]) -> tuple[int, int]:
        i, name = i_name
        if sort_metric and name == sort_metric:
            return (0, 0)
        if name in HOUSEKEEPING_METRICS:
            return (3, i)
        if logged_order:
            return (1, -i)
        if name.lower() in PREFERRED_METRICS:
            return (1, PREFERRED_METRICS.index(name.lower()))
        return (2, i)

    return [name for _, name in sorted(enumerate(names), key=rank)]


def key_metric(metrics: Iterable[str], sort_metric: str | None = None, logged_order: bool = False) -> str:
    """The first of :func:`key_metrics` (``""`` with no metric).

    >>> key_metric(["cell_duration_s", "throughput"]), key_metric(["cell_duration_s"]), key_metric([])
    ('throughput', 'cell_duration_s', '')
    """
    return (key_metrics(metrics, sort_metric, logged_order) or [""])[0]
