"""Charts of the panels: pure functions from data to an altair chart.

Nothing here reads a store, touches a widget or renders: each function takes plain data
(DataFrames, the dicts the core returns) and returns an ``altair`` chart, so a test checks
what a chart shows by reading ``chart.to_dict()``. The panels show these charts live
(:class:`altair.JupyterChart` with the Vega bundle of vl-convert, no network) and as static
SVG (:func:`mlops_jupyter.notebook.widgets.static.chart_svg`).

Field names inside the charts are plain words (``value``, ``param``, ``label``): a dot in a
Vega-Lite field name means a nested field, so ``metrics.accuracy`` is never used as one.

The charts live in one module per panel, re-exported here: :mod:`.runs` (the run
comparison: bars, scatter, parallel coordinates), :mod:`.drift` (drift scores,
distributions, latency and success over time), :mod:`.deployments` (traffic split, version
graph), over :mod:`.common` (colours, limits, helpers over runs).

Example:
    >>> from mlops_jupyter.notebook.widgets import charts
    >>> chart = charts.drift_scores(result["features"], threshold=0.1)
    >>> chart.to_dict()["layer"][0]["mark"]["type"]
    'bar'
"""

from __future__ import annotations

from mlops_jupyter.notebook.widgets.charts.common import (
    BEST_COLOR,
    BLUE,
    GRAY,
    GREEN,
    LOWER_IS_BETTER_WORDS,
    MAX_BARS,
    MAX_CATEGORIES,
    MAX_LINES,
    ORANGE,
    RED,
    WIDTH,
    _empty,
    best_run,
    is_numeric,
    lower_is_better,
    run_labels,
    variation,
    zoomed_domain,
)
from mlops_jupyter.notebook.widgets.charts.deployments import traffic_split, version_lineage
from mlops_jupyter.notebook.widgets.charts.drift import distribution, drift_scores, performance_timeline
from mlops_jupyter.notebook.widgets.charts.runs import (
    MAX_STEP_RUNS,
    metric_bar,
    metric_scatter,
    metric_steps,
    parallel_coordinates,
)

__all__ = [
    "BEST_COLOR",
    "BLUE",
    "GRAY",
    "GREEN",
    "LOWER_IS_BETTER_WORDS",
    "MAX_BARS",
    "MAX_CATEGORIES",
    "MAX_LINES",
    "MAX_STEP_RUNS",
    "ORANGE",
    "RED",
    "WIDTH",
    "_empty",
    "best_run",
    "distribution",
    "drift_scores",
    "is_numeric",
    "lower_is_better",
    "metric_bar",
    "metric_scatter",
    "metric_steps",
    "parallel_coordinates",
    "performance_timeline",
    "run_labels",
    "traffic_split",
    "variation",
    "version_lineage",
    "zoomed_domain",
]
