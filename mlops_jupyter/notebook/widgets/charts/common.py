"""What the charts share: the colours, the sizes and limits, and small helpers over runs
(a metric's direction, the best run, whether a column reads as numbers, run labels)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import altair as alt
    import pandas as pd


BLUE, ORANGE, RED, GREEN, GRAY = "#4c78a8", "#f58518", "#e45756", "#54a24b", "#9d9d9d"
BEST_COLOR = ORANGE
WIDTH = 520
#: Most bars a bar chart shows (the best ones, the best run always among them).
MAX_BARS = 30
#: Most lines a parallel-coordinates chart draws.
MAX_LINES = 300
#: Most categories a category distribution shows (the rest are summed as ``(other)``).
MAX_CATEGORIES = 20
#: Metric names where lower is better (``loss``, ``rmse``, ``latency``...).
LOWER_IS_BETTER_WORDS = (
    "loss",
    "error",
    "err",
    "rmse",
    "mse",
    "mae",
    "mape",
    "latency",
    "duration",
    "time",
    "perplexity",
    "logloss",
    "cost",
)


def lower_is_better(metric: str) -> bool:
    """Guess a metric's direction from its name (``val_loss`` -> True, ``accuracy`` -> False)."""
    words = metric.lower().replace("-", "_").replace(".", "_").split("_")
    return any(w in LOWER_IS_BETTER_WORDS for w in words)


def best_run(values: pd.Series, higher_is_better: bool = True) -> Any:
    """Index label of the best finite value of ``values`` (None when there is none)."""
    import pandas as pd

    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return None
    return v.idxmax() if higher_is_better else v.idxmin()


def is_numeric(values: pd.Series) -> bool:
    """True when every non-missing value reads as a number (params are stored as strings)."""
    import pandas as pd

    v = pd.Series(values).dropna()
    if v.empty or pd.api.types.is_bool_dtype(v):
        return False
    if pd.api.types.is_numeric_dtype(v):
        return True
    return bool(pd.to_numeric(v, errors="coerce").notna().all())


def run_labels(runs: pd.DataFrame) -> pd.Series:
    """Unique, readable run labels: ``name · abcdef`` (names repeat, e.g. ``cell-3``)."""
    names = runs["run_name"].fillna("").astype(str) if "run_name" in runs else runs["run_id"].astype(str)
    return names + " · " + runs["run_id"].astype(str).str[:6]


def _empty(message: str, width: int = WIDTH, height: int = 60) -> alt.Chart:
    import altair as alt
    import pandas as pd

    return (
        alt.Chart(pd.DataFrame({"text": [message]}))
        .mark_text(color=GRAY, fontSize=13)
        .encode(text="text:N")
        .properties(width=width, height=height)
    )
