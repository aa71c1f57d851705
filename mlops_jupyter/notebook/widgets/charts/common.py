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


def zoomed_domain(values: Any, pad: float = 0.08) -> list[float] | None:
    """A metric axis zoomed to the data: ``[min, max]`` widened by ``pad`` of the range
    (bars of 0.944 and 0.972 must not look equal on a 0-1 axis). None with no finite value.

    >>> zoomed_domain([0.944, 0.972])
    [0.94176, 0.97424]
    >>> zoomed_domain([5.0, 5.0])
    [4.95, 5.05]
    """
    import math

    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return None
    lo, hi = min(v), max(v)
    if hi == lo:
        half = abs(hi) * 0.01 or 0.5
        return [round(lo - half, 12), round(hi + half, 12)]
    return [round(lo - (hi - lo) * pad, 12), round(hi + (hi - lo) * pad, 12)]


def zoom_note(domain: list[float] | None) -> str:
    """The axis title's note when the axis does not start at zero."""
    if not domain or domain[0] <= 0 <= domain[1]:
        return ""
    return f" (axis zoomed: {domain[0]:.4g}–{domain[1]:.4g})"


def ink(kind: str = "text") -> str:
    """A text colour of the chart theme in use (``text``, ``muted``, ``grid``, ``domain``)."""
    from mlops_jupyter.notebook.widgets import theme

    return theme._PALETTES[theme.current()][kind]


def variation(values: pd.Series) -> float:
    """How much a param varies across runs: its number of distinct values (missing counts
    as one), 0 when it never varies. Used to pick the default param and hide constant ones.

    >>> import pandas as pd
    >>> variation(pd.Series(["1", "2", "2"])), variation(pd.Series(["a", "a"]))
    (2.0, 0.0)
    """
    n = int(values.astype("string").fillna("<missing>").nunique())
    return float(n) if n > 1 else 0.0


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
