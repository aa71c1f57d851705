"""The drift check: a window of a model's predictions against its reference -> one result dict.

Per feature, by :func:`mlops_jupyter.monitoring.drift.compare`: the Kolmogorov-Smirnov test
and PSI for numeric features, the chi-square test and the Jensen-Shannon distance for
categorical ones. A column is categorical when its reference dtype is text, bool or
category, or when it holds whole numbers with at most 10 distinct values; other numbers are
numeric. A feature drifted when its test is significant after Benjamini-Hochberg correction
over the features (adjusted p < ``$MLOPS_DRIFT_ALPHA``, 0.05) and its bias-corrected effect
(PSI or JS distance) is above the threshold; ``drift_score`` is the largest effect of a
significant feature and ``drift_detected = drift_score > threshold`` (the result's
``decision`` states the rule; :mod:`~mlops_jupyter.monitoring.drift.decision` explains it).
A window with fewer rows than ``$MLOPS_DRIFT_MIN_ROWS`` (100) gives ``status:
"low_sample"`` with ``rows_needed``, ``drift_score: None`` and never ``drift_detected:
True``. The reference is chosen as
:mod:`~mlops_jupyter.monitoring.references` describes; performance comes from
:mod:`~mlops_jupyter.monitoring.performance` over the same window.

When there is nothing to compare, the result says why instead of raising:
``drift_detected: False`` and ``drift_score: None`` with a ``status`` (``no_data``,
``no_features``, ``no_reference``, ``not_comparable`` or ``unknown_model`` (a model id with
no prediction and no reference: the reason lists the tenant's models, so a typo shows);
``low_sample`` when compared on too
few rows; ``ok`` when compared) and a
``reason`` that says what to do. Failed requests that carry no feature at all are
left out of the comparison (they still count in the performance).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from mlops_jupyter.config.names import validate_version
from mlops_jupyter.config.times import iso_from_seconds
from mlops_jupyter.monitoring.performance import performance_metrics
from mlops_jupyter.monitoring.references import FIRST_PREDICTIONS, References, first_predictions
from mlops_jupyter.monitoring.windows import (
    Window,
    describe_window,
    drop_featureless,
    feature_frame,
    parse_window,
    window_info,
)

DEFAULT_THRESHOLD = 0.1
"""Drift when the largest feature score is above it (a moderate shift on the PSI / JS scale)."""


class CheckArgs(NamedTuple):
    """The validated arguments of a check."""

    threshold: float
    window: Window
    version: str | None


class Scope(NamedTuple):
    """Where a check reads: one tenant's prediction log and references."""

    predlog: Any
    tenant: str
    references: References
    reference_rows: int
    """How many first predictions form the reference when there is no reference data."""


def check_args(threshold: Any, window: Any, version: Any) -> CheckArgs:
    """Validate a check's arguments.

    Raises:
        ValidationError: a bad threshold or version.
        InvalidWindowError: a bad window.
    """
    from mlops_jupyter.monitoring.drift import _check_threshold

    threshold = _check_threshold(threshold)
    win = parse_window(window)
    if version is not None:
        validate_version(version)
    return CheckArgs(threshold, win, version)


def check(scope: Scope, model_id: str, args: CheckArgs, now: float, df: Any, need_drift: bool = True) -> dict[str, Any]:
    """Compare the window with its reference (``model_id`` is valid).

    Args:
        scope: the log and references to read.
        model_id: the model.
        args: from :func:`check_args`.
        now: the end of a time-span window (unix seconds), and ``checked_at``.
        df: the window, read with :data:`~mlops_jupyter.monitoring.windows.READ_COLUMNS`
            (:data:`~mlops_jupyter.monitoring.windows.PERF_COLUMNS` is enough without drift).
        need_drift: False for the performance alone (no features read, nothing compared).

    Returns:
        The result of :meth:`~mlops_jupyter.monitoring.facade.ModelMonitoring.check_drift`
        without ``alerts``.
    """
    from mlops_jupyter.errors import EmptyWindowError
    from mlops_jupyter.monitoring import limits
    from mlops_jupyter.monitoring.drift import METHOD, compare
    from mlops_jupyter.monitoring.drift.decision import decision_text

    alpha, min_rows = limits.drift_alpha(), limits.drift_min_rows()

    threshold, win, version = args
    result: dict[str, Any] = {
        "drift_detected": False,
        "drift_score": None,
        "performance_metrics": performance_metrics(df),
        "features": {},
        "method": METHOD,
        "decision": decision_text(threshold, alpha),
        "rows_needed": 0,
        "n_reference": 0,
        "n_current": 0,
        "threshold": threshold,
        "reference_source": None,
        "reference_version": None,
        "window": window_info(win, df, now),
        "model_id": model_id,
        "version": version,
        "status": "ok",
        "reason": None,
        "drifted_features": [],
        "skipped": {},
        "warnings": [],
        "environment": str(df["environment"].iloc[-1]) if len(df) else None,
        "checked_at": iso_from_seconds(now),
    }
    if not need_drift:
        return result

    def give_up(status: str, reason: str) -> dict[str, Any]:
        result["status"], result["reason"] = status, reason
        return result

    if len(df) == 0 and not model_known(scope, model_id):
        models = known_models(scope)
        return give_up(
            "unknown_model",
            f"Model {model_id!r} is not known to tenant {scope.tenant!r}: no prediction was ever logged "
            "for it and no reference set. "
            + (f"The tenant's models: {', '.join(map(repr, models))}." if models else "The tenant has no models yet.")
            + " Check the spelling, or log predictions with track_prediction().",
        )
    if len(df) == 0:
        where = f" of version {version!r}" if version else ""
        return give_up(
            "no_data",
            f"No predictions{where} of {model_id!r} in the window "
            f"({describe_window(win)}); track_prediction() or traffic through the "
            "gateway logs them.",
        )
    success = df["success"].to_numpy(dtype=bool, na_value=False)
    current = drop_featureless(feature_frame(df), success)
    if current.shape[1] == 0 or len(current) == 0:
        return give_up(
            "no_features",
            f"The predictions of {model_id!r} in the window carry no input "
            "features, so there is nothing to compare; pass input_features= to "
            "track_prediction().",
        )
    found = scope.references.find(model_id, version or str(df["version"].iloc[-1]))
    if found is not None:
        reference, source, ref_version = found
    else:
        ref_df = first_predictions(scope.predlog, scope.tenant, model_id, scope.reference_rows, version)
        reference = feature_frame(ref_df)
        if reference.shape[1] == 0 or len(reference) == 0:
            return give_up(
                "no_reference",
                f"No reference data for {model_id!r}: none set with "
                "set_reference(), none stored with the version (create_version(..., "
                "reference_data=df)), and the first predictions carry no features.",
            )
        source, ref_version = FIRST_PREDICTIONS, None
        keep = (df["timestamp"] > ref_df["timestamp"].iloc[-1]).to_numpy()
        current = drop_featureless(feature_frame(df[keep]), success[keep])
        if len(current) == 0:
            result["reference_source"] = source
            result["n_reference"] = len(reference)
            return give_up(
                "no_data",
                f"No reference data for {model_id!r}, so its first "
                f"{len(reference)} logged predictions are the reference, and the window "
                "holds no later prediction yet; log more predictions, or set a reference "
                "with set_reference().",
            )
    result["reference_source"] = source
    result["reference_version"] = ref_version
    result["n_current"] = len(current)
    result["n_reference"] = len(reference)
    try:
        cmp = compare(reference, current, threshold, alpha=alpha, min_rows=min_rows)
    except EmptyWindowError as exc:
        return give_up("not_comparable", exc.detail)
    for key in (
        "drift_detected",
        "drift_score",
        "features",
        "drifted_features",
        "skipped",
        "warnings",
        "n_reference",
        "n_current",
        "status",
        "reason",
        "rows_needed",
    ):
        result[key] = cmp[key]
    return result


def model_known(scope: Scope, model_id: str) -> bool:
    """Whether the tenant has logged predictions or set a reference for ``model_id``."""
    from mlops_jupyter.config.settings import references_dir

    return (scope.predlog.root / scope.tenant / model_id).is_dir() or references_dir(
        scope.references.home, scope.tenant, model_id
    ).is_dir()


def known_models(scope: Scope) -> list[str]:
    """The tenant's models: those with logged predictions or a reference, sorted."""
    from mlops_jupyter.config.settings import references_dir

    names: set[str] = set()
    for folder in (scope.predlog.root / scope.tenant, references_dir(scope.references.home, scope.tenant, "x").parent):
        if folder.is_dir():
            names.update(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    return sorted(names)


def window_data(scope: Scope, model_id: str, df: Any, version: str | None) -> tuple[Any, Any]:
    """The reference and current features that :func:`check` would compare, from the window
    ``df`` (read with :data:`~mlops_jupyter.monitoring.windows.READ_COLUMNS`).

    Returns:
        ``(reference, current)`` DataFrames with plain feature names and fresh indexes (the
        reference is empty when there is none).
    """
    success = df["success"].to_numpy(dtype=bool, na_value=False) if len(df) else None
    current = drop_featureless(feature_frame(df), success) if len(df) else feature_frame(df)
    found = scope.references.find(model_id, version or (str(df["version"].iloc[-1]) if len(df) else None))
    if found is not None:
        reference = found.frame
    else:
        first = first_predictions(scope.predlog, scope.tenant, model_id, scope.reference_rows, version)
        reference = feature_frame(first)
        if len(first) and len(df):
            keep = (df["timestamp"] > first["timestamp"].iloc[-1]).to_numpy()
            current = drop_featureless(feature_frame(df[keep]), success[keep])
    return reference.reset_index(drop=True), current.reset_index(drop=True)
