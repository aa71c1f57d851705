"""The per-feature comparison of a current window with a reference, and its result.

:func:`compare` takes two frames (or mappings of column to values), decides each shared
feature's kind on the reference (:mod:`.kinds`), compares numeric features with the KS
test and the PSI (:mod:`.numeric`) and categorical ones with the chi-square test and the
Jensen-Shannon distance (:mod:`.categorical`), and assembles the result:

* The decision (:mod:`.decision`): a feature is ``drifted`` when its test is significant
  after Benjamini-Hochberg correction over the features compared *and* its effect (the
  score with its small-sample bias removed) is above the threshold; ``drift_score`` is the
  largest effect of a significant feature and ``drift_detected = drift_score > threshold``.
  The result states the rule with its numbers under ``decision``. Fewer current rows than
  ``min_rows`` give ``status: "low_sample"``: the statistics are still reported, nothing is
  called drifted and ``drift_score`` is None.
* Missing values: NaN/None (and, for numeric features, +-inf) are dropped per feature and
  counted (``missing_reference`` / ``missing_current`` fractions). Categories of the
  current window that the reference never saw are pooled into one extra bin (reference
  count 0), which both the chi-square and the JS distance see; the result names a few.
* A window with no rows, or with no feature that has values on both sides, raises
  :class:`~mlops_jupyter.errors.EmptyWindowError`; features that cannot be compared
  (missing on one side, all missing, unsupported dtype) are listed under ``skipped`` and
  in ``warnings``, and the others are still compared.

Speed: each feature is profiled and counted once (see :mod:`.numeric`). Frames with at
least 200 000 cells (rows of both sides x features) are compared in parallel threads, one
per feature up to the number of cores (at most 8): numpy's sorts and searches release the
GIL, so the cores share the work.

Example:
    >>> import pandas as pd
    >>> ref = pd.DataFrame({"x": [0.5, 1.5, 2.5] * 20,
    ...                     "when": pd.date_range("2024-01-01", periods=60)})
    >>> r = compare(ref, ref.assign(x=ref["x"] + 10))
    >>> r["drifted_features"], list(r["skipped"]), len(r["warnings"])
    (['x'], ['when'], 1)
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from mlops_jupyter.errors import EmptyWindowError, ValidationError
from mlops_jupyter.monitoring.drift._common import _finite
from mlops_jupyter.monitoring.drift.categorical import chi_square, jensen_shannon
from mlops_jupyter.monitoring.drift.decision import decide, decision_text
from mlops_jupyter.monitoring.drift.kinds import (
    CATEGORICAL,
    MAX_DISCRETE_LEVELS,
    NUMERIC,
    UNSUPPORTED,
    _kind,
)
from mlops_jupyter.monitoring.drift.numeric import (
    PSI_BINS,
    _check_bins,
    _counts_at,
    _ks,
    _NumericProfile,
    _profile,
    _psi_and_bins,
)

__all__ = ["METHOD", "MIN_RELIABLE_N", "compare"]

MIN_RELIABLE_N = 30
"""Below this many non-missing values on either side, the result warns that a feature's
score is unreliable (it is still computed)."""

METHOD = (
    "numeric features: Kolmogorov-Smirnov test and PSI on 10 reference-decile bins (natural log); "
    "categorical features: chi-square test and Jensen-Shannon distance (base 2); a feature drifted "
    "when its Benjamini-Hochberg adjusted p-value < alpha and its bias-corrected effect > threshold; "
    "drift_score = the largest effect of a significant feature"
)
DEFAULT_ALPHA = 0.05

_UNSEEN_EXAMPLES = 5
# Frames with at least this many cells (rows of both sides x features) are compared with one
# thread per feature, up to this many threads.
_PARALLEL_MIN_CELLS = 200_000
_MAX_WORKERS = 8


def _as_frame(data: Any, what: str) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, Mapping):
        try:
            frame = pd.DataFrame(data)
        except (TypeError, ValueError) as exc:
            raise ValidationError(
                f"The {what} could not be turned into a table: {exc}",
                value=type(data).__name__,
                allowed="a pandas DataFrame, or a mapping of column name to equal-length values",
            ) from exc
    else:
        raise ValidationError(
            f"The {what} must be a pandas DataFrame; got {type(data).__name__}.",
            value=type(data).__name__,
            allowed="a pandas DataFrame, or a mapping of column name to equal-length values",
        )
    dupes = frame.columns[frame.columns.duplicated()].unique().tolist()
    if dupes:
        raise ValidationError(
            f"The {what} has duplicate column names {dupes}.",
            value=dupes,
            allowed="one column per feature name",
        )
    return frame


def _check_threshold(threshold: Any) -> float:
    real = (int, float, np.integer, np.floating)
    if isinstance(threshold, bool) or not isinstance(threshold, real) or not math.isfinite(threshold) or threshold < 0:
        raise ValidationError(
            f"Invalid threshold {threshold!r}.",
            value=threshold,
            allowed="a finite number >= 0, e.g. 0.1 (PSI / JS-distance scale)",
        )
    return float(threshold)


def _check_alpha(alpha: Any) -> float:
    real = (int, float, np.integer, np.floating)
    if isinstance(alpha, bool) or not isinstance(alpha, real) or not 0 < alpha < 1:
        raise ValidationError(f"Invalid alpha {alpha!r}.", value=alpha, allowed="a number between 0 and 1, e.g. 0.05")
    return float(alpha)


def _compare_numeric(ref: np.ndarray, cur: np.ndarray, p: _NumericProfile, bins: int) -> dict[str, Any]:
    le, lt = _counts_at(p.u, cur)
    stat = _ks(ref, cur, p, (le, lt))
    score, n_bins = _psi_and_bins(p, le, cur.size, bins)
    return {
        "kind": NUMERIC,
        "method": "ks+psi",
        "test": "ks",
        "statistic": stat.statistic,
        "p_value": stat.p_value,
        "score_name": "psi",
        "score": score,
        "bins": n_bins,
    }


def _value_counts(s: pd.Series) -> pd.Series:
    vc = s.value_counts(dropna=True, sort=True)
    vc = vc[vc > 0]  # category dtype lists unused categories with count 0
    vc.index = pd.Index(vc.index.astype(object), dtype=object)
    return vc


def _compare_categorical(ref: pd.Series, cur: pd.Series) -> dict[str, Any]:
    ref_vc = _value_counts(ref)
    cur_vc = _value_counts(cur)
    seen = cur_vc.index.isin(ref_vc.index)
    unseen = cur_vc[~seen]
    cur_aligned = cur_vc[seen].reindex(ref_vc.index, fill_value=0)
    ref_counts = ref_vc.to_numpy(dtype=np.float64)
    cur_counts = cur_aligned.to_numpy(dtype=np.float64)
    n_unseen = int(unseen.sum())
    if n_unseen:
        ref_counts = np.append(ref_counts, 0.0)
        cur_counts = np.append(cur_counts, float(n_unseen))
    stat = chi_square(ref_counts, cur_counts)
    return {
        "kind": CATEGORICAL,
        "method": "chi2+jensen_shannon",
        "test": "chi2",
        "statistic": stat.statistic,
        "p_value": stat.p_value,
        "score_name": "jensen_shannon",
        "score": jensen_shannon(ref_counts, cur_counts),
        "cells": int(ref_counts.size),
        "n_categories": int(ref_vc.size),
        "unseen_fraction": n_unseen / float(cur_vc.sum()),
        "unseen_examples": [str(v) for v in unseen.index[:_UNSEEN_EXAMPLES]],
    }


def _current_numeric(cur: pd.Series) -> np.ndarray | None:
    """The current column as floats, or None when it does not hold numbers."""
    api = pd.api.types
    if api.is_bool_dtype(cur.dtype) or (api.is_numeric_dtype(cur.dtype) and not api.is_complex_dtype(cur.dtype)):
        return cur.to_numpy(dtype=np.float64, na_value=np.nan)
    if api.is_object_dtype(cur.dtype) or api.is_string_dtype(cur.dtype):
        try:  # e.g. numbers that arrived as JSON in an object column
            return pd.to_numeric(cur, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            return None
    return None


class _Skip(NamedTuple):
    reason: str
    side: str  # 'reference' or 'current'


def _compare_feature(rs: pd.Series, cs: pd.Series, bins: int) -> dict[str, Any] | _Skip:
    """One feature's entry (without ``drifted``), or why it cannot be compared."""
    api = pd.api.types
    n_ref, n_cur = len(rs), len(cs)
    ref_vals: np.ndarray | None = None
    profile: _NumericProfile | None = None
    ref_bad = 0
    if api.is_numeric_dtype(rs.dtype) and not api.is_bool_dtype(rs.dtype) and not api.is_complex_dtype(rs.dtype):
        ref_vals, ref_bad = _finite(rs.to_numpy(dtype=np.float64, na_value=np.nan))
        profile = _profile(ref_vals)
    kind = _kind(rs, None if profile is None else profile.u, MAX_DISCRETE_LEVELS)
    if kind == UNSUPPORTED:
        return _Skip(f"unsupported dtype {rs.dtype} (only numbers and categories are compared)", "reference")

    if kind == NUMERIC:
        assert ref_vals is not None and profile is not None
        cur_raw = _current_numeric(cs)
        if cur_raw is None:
            return _Skip(f"current values are not numeric (dtype {cs.dtype}) but the reference's are", "current")
        cur_vals, cur_bad = _finite(cur_raw)
        if ref_vals.size == 0:
            return _Skip("no finite reference values (all missing)", "reference")
        if cur_vals.size == 0:
            return _Skip("no finite current values (all missing)", "current")
        entry = _compare_numeric(ref_vals, cur_vals, profile, bins)
        n_r, n_c = int(ref_vals.size), int(cur_vals.size)
    else:
        if ref_vals is not None:  # whole-number codes: compare as float categories
            rcat, n_r = pd.Series(ref_vals), int(ref_vals.size)
            cur_raw = _current_numeric(cs)
            if cur_raw is None:  # e.g. strings where the reference has codes: all unseen
                ccat, cur_bad = cs, int(cs.isna().sum())
            else:
                ccat = pd.Series(_finite(cur_raw)[0])
                cur_bad = n_cur - len(ccat)
        else:
            rcat, ccat = rs, cs
            ref_bad, cur_bad = int(rs.isna().sum()), int(cs.isna().sum())
            n_r = n_ref - ref_bad
        n_c = n_cur - cur_bad
        if n_r == 0:
            return _Skip("no non-missing reference values (all missing)", "reference")
        if n_c == 0:
            return _Skip("no non-missing current values (all missing)", "current")
        try:
            entry = _compare_categorical(rcat, ccat)
        except TypeError as exc:  # e.g. lists or dicts as values: not hashable categories
            return _Skip(f"values cannot be counted as categories ({exc})", "reference")
    entry["n_reference"], entry["n_current"] = n_r, n_c
    entry["missing_reference"] = ref_bad / n_ref
    entry["missing_current"] = cur_bad / n_cur
    return entry


def _compare_features(
    ref_df: pd.DataFrame, cur_df: pd.DataFrame, names: Sequence[Any], bins: int
) -> dict[Any, dict[str, Any] | _Skip]:
    """Every shared feature's entry; on large frames the features run in parallel threads
    (numpy's sorts and searches release the GIL, so the cores share the work)."""
    workers = min(len(names), os.cpu_count() or 1, _MAX_WORKERS)
    if workers < 2 or (len(ref_df) + len(cur_df)) * len(names) < _PARALLEL_MIN_CELLS:
        return {n: _compare_feature(ref_df[n], cur_df[n], bins) for n in names}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlops-drift") as pool:
        futures = {n: pool.submit(_compare_feature, ref_df[n], cur_df[n], bins) for n in names}
        return {n: f.result() for n, f in futures.items()}


def compare(
    reference: Any,
    current: Any,
    threshold: float = 0.1,
    *,
    features: Sequence[str] | None = None,
    bins: int = PSI_BINS,
    alpha: float = DEFAULT_ALPHA,
    min_rows: int = 0,
) -> dict[str, Any]:
    """Compare a current window with the reference, feature by feature.

    See the package docstring (:mod:`mlops_jupyter.monitoring.drift`) for the methods,
    the kind rule and the score scales.

    Args:
        reference: the reference data (DataFrame, or a mapping of column to values).
        current: the current window, same columns (extra or missing ones are reported).
        threshold: a significant feature drifted when its effect is above it; PSI /
            JS-distance scale, default 0.1.
        features: the columns to compare (default: every column of either frame,
            reference order first).
        bins: number of reference-quantile bins of the PSI.
        alpha: the false-discovery rate of the Benjamini-Hochberg correction.
        min_rows: fewer current rows give ``status: "low_sample"`` (nothing drifted).

    Returns:
        A dict with ``drift_detected`` (bool), ``drift_score`` (the largest effect of a
        significant feature; None when ``low_sample``), ``threshold``, ``alpha``,
        ``method`` and ``decision`` (the rule, in words), ``status`` (``ok`` or
        ``low_sample``) with ``reason`` and ``rows_needed``, ``features`` (name ->
        ``kind``, ``method``, ``test``, ``statistic``, ``p_value``, ``p_adjusted``,
        ``significant``, ``score_name``, ``score`` (raw), ``score_bias``, ``effect``,
        ``drifted``, ``n_reference``, ``n_current`` (non-missing values),
        ``missing_reference``, ``missing_current`` (fractions of rows) and, for
        categorical features, ``n_categories``, ``unseen_fraction``, ``unseen_examples``;
        ordered by effect, highest first), ``drifted_features`` (names), ``n_reference``,
        ``n_current`` (rows), ``skipped`` (name -> reason) and ``warnings`` (strings).

    Raises:
        EmptyWindowError: a window has no rows, or no feature has values on both sides.
        ValidationError: bad ``threshold``, ``bins`` or ``features``, or input that is not
            a table.

    Example:
        >>> import pandas as pd
        >>> ref = pd.DataFrame({"channel": ["email", "chat"] * 50})
        >>> cur = pd.DataFrame({"channel": ["email"] * 90 + ["phone"] * 10})
        >>> r = compare(ref, cur)
        >>> r["drift_detected"], r["features"]["channel"]["unseen_examples"]
        (True, ['phone'])
    """
    threshold = _check_threshold(threshold)
    bins = _check_bins(bins)
    alpha = _check_alpha(alpha)
    ref_df = _as_frame(reference, "reference")
    cur_df = _as_frame(current, "current window")
    n_ref, n_cur = len(ref_df), len(cur_df)
    if n_ref == 0 or n_cur == 0:
        side = "both" if n_ref == n_cur == 0 else ("reference" if n_ref == 0 else "current")
        what = {
            "both": "The reference and the current window have",
            "reference": "The reference has",
            "current": "The current window has",
        }[side]
        raise EmptyWindowError(f"{what} no rows; there is nothing to compare.", window=side, value=(n_ref, n_cur))
    if features is None:
        names = list(ref_df.columns) + [c for c in cur_df.columns if c not in ref_df.columns]
    else:
        if isinstance(features, str) or not isinstance(features, Sequence) or not features:
            raise ValidationError(
                f"Invalid features {features!r}.",
                value=features,
                allowed="a non-empty list of column names, or None for every column",
            )
        names = list(dict.fromkeys(features))

    results: dict[Any, dict[str, Any]] = {}
    skipped: dict[Any, str] = {}
    skip_side: dict[Any, str] = {}
    entries = _compare_features(ref_df, cur_df, [n for n in names if n in ref_df.columns and n in cur_df.columns], bins)
    for name in names:
        if name not in ref_df.columns:
            skipped[name] = "not in the reference data" if name in cur_df.columns else "in neither window"
            skip_side[name] = "reference"
        elif name not in cur_df.columns:
            skipped[name], skip_side[name] = "missing from the current window", "current"
        else:
            entry = entries[name]
            if isinstance(entry, _Skip):
                skipped[name], skip_side[name] = entry.reason, entry.side
                continue
            results[name] = entry

    warnings = [f"feature {name!r} skipped: {reason}." for name, reason in skipped.items()]
    few = [str(n) for n, e in results.items() if min(e["n_reference"], e["n_current"]) < MIN_RELIABLE_N]
    if few:
        warnings.append(
            f"fewer than {MIN_RELIABLE_N} values on one side for {', '.join(map(repr, few))}; "
            "their scores are unreliable."
        )
    if not results:
        sides = set(skip_side.values())
        side = sides.pop() if len(sides) == 1 else "both"
        raise EmptyWindowError(
            "No feature could be compared: " + "; ".join(f"{n!r} {r}" for n, r in skipped.items()) + ".",
            window=side,
            value=list(skipped),
        )

    drift_score: float | None = decide(results, threshold, alpha)
    low = n_cur < min_rows
    if low:
        for e in results.values():
            e["drifted"] = False
        drift_score = None
    ordered = dict(sorted(results.items(), key=lambda kv: (-kv[1]["effect"], kv[1]["p_value"])))
    return {
        "drift_detected": bool(drift_score is not None and drift_score > threshold),
        "drift_score": drift_score,
        "threshold": threshold,
        "alpha": alpha,
        "method": METHOD,
        "decision": decision_text(threshold, alpha),
        "status": "low_sample" if low else "ok",
        "reason": (
            f"Only {n_cur} current rows; a verdict needs at least {min_rows} (MLOPS_DRIFT_MIN_ROWS), so "
            "nothing is called drifted yet. The statistics are shown for information."
            if low
            else None
        ),
        "rows_needed": max(min_rows - n_cur, 0),
        "features": ordered,
        "drifted_features": [n for n, e in ordered.items() if e["drifted"]],
        "n_reference": n_ref,
        "n_current": n_cur,
        "skipped": skipped,
        "warnings": warnings,
    }
