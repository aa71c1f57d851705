"""A synthetic "support tickets" data set and a reference classifier for it.

The data stands in for a help desk's ticket export: each row is a ticket with a few
numeric and categorical features and whether it was ``escalated`` (0/1). The label
depends on the features through a fixed rule plus noise, so a classifier reaches a
plausible, not perfect, accuracy (about 0.85 to 0.9). ``drift`` moves the feature
distributions (not the rule), which is what the monitoring feature detects later.

numpy, pandas and scikit-learn are imported inside the functions, so importing this
module (and ``mlops_jupyter``) stays cheap.

Example:
    >>> from mlops_jupyter.datasets import make_support_tickets, train_ticket_classifier
    >>> df = make_support_tickets(n=2000, seed=0)
    >>> model, metrics = train_ticket_classifier(df, n_estimators=100, max_depth=10)
    >>> sorted(metrics)
    ['accuracy', 'f1_score', 'precision', 'recall']
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any

from mlops_jupyter.errors import ValidationError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from sklearn.pipeline import Pipeline

__all__ = [
    "CATEGORICAL_FEATURES",
    "CATEGORIES",
    "CHANNELS",
    "FEATURES",
    "MODELS",
    "NUMERIC_FEATURES",
    "TARGET",
    "make_support_tickets",
    "train_ticket_classifier",
]

NUMERIC_FEATURES: tuple[str, ...] = (
    "priority",
    "message_length",
    "customer_tenure_days",
    "previous_tickets",
    "response_hours",
)
"""Numeric feature columns (``priority`` is 1 = low to 4 = urgent)."""

CATEGORICAL_FEATURES: tuple[str, ...] = ("category", "channel")
"""Categorical feature columns."""

FEATURES: tuple[str, ...] = NUMERIC_FEATURES + CATEGORICAL_FEATURES
"""Every feature column, in the order of the generated DataFrame."""

TARGET = "escalated"
"""The label column: 1 if the ticket was escalated, else 0."""

CATEGORIES: tuple[str, ...] = ("technical", "billing", "account", "other")
CHANNELS: tuple[str, ...] = ("email", "chat", "phone")

MODELS: tuple[str, ...] = ("random_forest", "gradient_boosting")
"""Estimators :func:`train_ticket_classifier` can fit."""

# Category / channel mixes without drift, and where drift=1 moves them.
_CATEGORY_P = (0.40, 0.25, 0.20, 0.15)
_CATEGORY_P_DRIFTED = (0.60, 0.15, 0.15, 0.10)
_CHANNEL_P = (0.50, 0.30, 0.20)
_CHANNEL_P_DRIFTED = (0.25, 0.55, 0.20)
_PRIORITY_P = (0.35, 0.30, 0.22, 0.13)
_PRIORITY_P_DRIFTED = (0.15, 0.25, 0.32, 0.28)

# The escalation rule: a logit that is linear in the features (plus a few kinks).
_CATEGORY_EFFECT = {"technical": 0.6, "billing": 0.9, "account": 0.1, "other": -0.8}
_CHANNEL_EFFECT = {"email": 0.0, "chat": -0.3, "phone": 0.7}


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValidationError(f"Invalid {name} {value!r}.", value=value, allowed=f"an int >= {minimum}")
    return int(value)


def _mix(a: tuple[float, ...], b: tuple[float, ...], t: float) -> Any:
    """Probabilities ``a`` moved a fraction ``t`` of the way to ``b`` (``t`` may exceed 1)."""
    import numpy as np

    p = np.clip((1 - t) * np.asarray(a) + t * np.asarray(b), 1e-3, None)
    return p / p.sum()


def make_support_tickets(n: int = 2000, seed: int = 0, drift: float = 0.0) -> pd.DataFrame:
    """Generate ``n`` synthetic support tickets, deterministically from ``seed``.

    Columns: ``priority`` (int, 1 = low to 4 = urgent), ``message_length`` (characters),
    ``customer_tenure_days``, ``previous_tickets``, ``response_hours`` (time to first
    response), ``category`` (technical, billing, account, other), ``channel`` (email, chat,
    phone) and the label ``escalated`` (0/1, about a third of the tickets without drift).

    Escalation is more likely for urgent tickets, slow first responses, long messages,
    customers with many earlier tickets, billing and technical issues and phone calls, and
    less likely for long-standing customers; about 5% of labels are flipped, so no model
    is perfect.

    Args:
        n: number of tickets (rows), at least 1.
        seed: random seed; the same ``(n, seed, drift)`` always gives the same frame.
        drift: how far the feature distributions move from the training-time ones
            (``0`` = none, ``1`` = strong): more urgent and technical tickets, more chat,
            longer messages, slower responses, newer customers. The escalation rule itself
            does not change (covariate drift). Must be a finite number >= 0.

    Returns:
        A pandas DataFrame with the columns :data:`FEATURES` followed by :data:`TARGET`;
        ``category`` and ``channel`` are strings.

    Raises:
        ValidationError: ``n`` or ``seed`` is not a non-negative int (``n`` >= 1), or
            ``drift`` is not a finite number >= 0.

    Example:
        >>> df = make_support_tickets(n=500, seed=1)
        >>> df.shape
        (500, 8)
        >>> drifted = make_support_tickets(n=500, seed=1, drift=1.0)
        >>> bool(drifted["response_hours"].mean() > df["response_hours"].mean())
        True
    """
    import numpy as np
    import pandas as pd

    n = _check_int(n, "n", 1)
    seed = _check_int(seed, "seed", 0)
    if isinstance(drift, bool) or not isinstance(drift, numbers.Real) or not math.isfinite(drift) or drift < 0:
        raise ValidationError(f"Invalid drift {drift!r}.", value=drift, allowed="a finite number >= 0, e.g. 0.5")
    d = float(drift)
    rng = np.random.default_rng(seed)

    category = rng.choice(CATEGORIES, size=n, p=_mix(_CATEGORY_P, _CATEGORY_P_DRIFTED, d))
    channel = rng.choice(CHANNELS, size=n, p=_mix(_CHANNEL_P, _CHANNEL_P_DRIFTED, d))
    priority = rng.choice(np.arange(1, 5), size=n, p=_mix(_PRIORITY_P, _PRIORITY_P_DRIFTED, d))

    # Technical tickets are wordier; drift makes every message longer.
    base_len = np.where(category == "technical", 6.0, 5.5) + 0.35 * d
    message_length = np.clip(np.round(rng.lognormal(base_len, 0.55, size=n)), 10, 5000).astype(int)

    tenure_mean = 420.0 / (1.0 + 0.8 * d)
    customer_tenure_days = np.round(rng.gamma(1.5, tenure_mean / 1.5, size=n)).astype(int)
    # Long-standing customers have opened more tickets over time.
    previous_tickets = rng.poisson(0.5 + customer_tenure_days / 250.0 + 0.4 * (priority >= 3))

    # Phone is answered fast, e-mail slowly; urgent tickets get answered sooner.
    channel_hours = np.select([channel == "phone", channel == "chat"], [1.0, 3.0], 9.0)
    response_hours = rng.gamma(2.0, channel_hours * (1.0 + 1.2 * d) / (2.0 * (0.6 + 0.2 * priority)) * 1.6, size=n)
    response_hours = np.round(response_hours, 2)

    logit = (
        -4.6
        + 1.15 * (priority - 1)
        + 0.16 * np.minimum(response_hours, 48.0)
        + 0.9 * np.log(message_length / 250.0)
        + 0.45 * np.minimum(previous_tickets, 8)
        - 1.1 * np.log1p(customer_tenure_days / 365.0)
        + np.vectorize(_CATEGORY_EFFECT.get)(category)
        + np.vectorize(_CHANNEL_EFFECT.get)(channel)
    )
    # A steep logistic: the rule decides most tickets, then ~5% of labels are flipped.
    escalated = (rng.random(n) < 1.0 / (1.0 + np.exp(-4.0 * logit))).astype(int)
    flip = rng.random(n) < 0.05
    escalated = np.where(flip, 1 - escalated, escalated)

    return pd.DataFrame(
        {
            "priority": priority.astype(int),
            "message_length": message_length,
            "customer_tenure_days": customer_tenure_days,
            "previous_tickets": previous_tickets.astype(int),
            "response_hours": response_hours,
            "category": pd.Series(category, dtype=object).astype(str),
            "channel": pd.Series(channel, dtype=object).astype(str),
            TARGET: escalated.astype(int),
        }
    )


def train_ticket_classifier(
    df: pd.DataFrame,
    *,
    model: str = "random_forest",
    test_size: float = 0.25,
    random_state: int = 0,
    **params: Any,
) -> tuple[Pipeline, dict[str, float]]:
    """Fit a ticket-escalation classifier and score it on a held-out split.

    The scikit-learn ``Pipeline`` one-hot encodes :data:`CATEGORICAL_FEATURES` (unknown
    categories at predict time are ignored), passes :data:`NUMERIC_FEATURES` through, and
    ends in a ``RandomForestClassifier`` or ``GradientBoostingClassifier``. It predicts
    from a DataFrame holding the feature columns (other columns are ignored).

    Args:
        df: tickets as made by :func:`make_support_tickets` (features and ``escalated``).
        model: ``"random_forest"`` (default) or ``"gradient_boosting"``.
        test_size: fraction of rows held out for the metrics (stratified), in (0, 1).
        random_state: seed of the split and of the estimator.
        **params: estimator hyper-parameters, e.g. ``n_estimators=100, max_depth=10``
            (``learning_rate`` for gradient boosting).

    Returns:
        ``(pipeline, metrics)``: the fitted pipeline and the held-out ``accuracy``,
        ``f1_score``, ``precision`` and ``recall`` (floats, ready for ``log_metrics``).

    Raises:
        ValidationError: unknown ``model``, a hyper-parameter the estimator does not take,
            a bad ``test_size``, or ``df`` missing a column.

    Example:
        >>> df = make_support_tickets(n=2000, seed=0)
        >>> clf, metrics = train_ticket_classifier(df, model="gradient_boosting", learning_rate=0.1)
        >>> clf.predict(df.head(3)).shape
        (3,)
    """
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    if model not in MODELS:
        raise ValidationError(f"Invalid model {model!r}.", value=model, allowed=MODELS)
    if not isinstance(df, pd.DataFrame):
        raise ValidationError(
            f"df must be a pandas DataFrame, got {type(df).__name__}.",
            value=type(df).__name__,
            allowed="the DataFrame returned by make_support_tickets()",
        )
    missing = [c for c in (*FEATURES, TARGET) if c not in df.columns]
    if missing:
        raise ValidationError(
            f"df is missing the column(s) {missing}.", value=list(df.columns), allowed=[*FEATURES, TARGET]
        )
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real) or not 0 < test_size < 1:
        raise ValidationError(
            f"Invalid test_size {test_size!r}.", value=test_size, allowed="a float in (0, 1), e.g. 0.25"
        )

    estimator_cls = RandomForestClassifier if model == "random_forest" else GradientBoostingClassifier
    allowed = sorted(estimator_cls().get_params())
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValidationError(
            f"{estimator_cls.__name__} does not take the parameter(s) {unknown}.", value=unknown, allowed=allowed
        )
    estimator_params = {"random_state": random_state, **params}
    if model == "random_forest":
        estimator_params.setdefault("n_jobs", 1)

    pipeline = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        ("categorical", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL_FEATURES)),
                        ("numeric", "passthrough", list(NUMERIC_FEATURES)),
                    ]
                ),
            ),
            ("classifier", estimator_cls(**estimator_params)),
        ]
    )
    X, y = df[list(FEATURES)], df[TARGET]
    stratify = y if y.value_counts().min() >= 2 else None
    try:
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=test_size, random_state=random_state, stratify=stratify
        )
        pipeline.fit(X_train, y_train)
    except (TypeError, ValueError) as exc:  # e.g. max_depth=-1 or too few rows: sklearn names it
        raise ValidationError(f"Training failed: {exc}", value=params) from exc
    pred = pipeline.predict(X_test)
    metrics = {
        "accuracy": float(accuracy_score(y_test, pred)),
        "f1_score": float(f1_score(y_test, pred, zero_division=0)),
        "precision": float(precision_score(y_test, pred, zero_division=0)),
        "recall": float(recall_score(y_test, pred, zero_division=0)),
    }
    return pipeline, metrics
