"""Drift statistics: pure numpy/scipy/pandas functions, no I/O.

:func:`compare` compares a *current* window of feature values with a *reference* (the
training data, or one set with ``set_reference``), one feature at a time:

* **numeric** features: the two-sample Kolmogorov-Smirnov test (statistic and p-value equal
  :func:`scipy.stats.ks_2samp`) and the Population Stability Index (PSI) on 10 bins cut at
  the reference's deciles. The feature's **score is the PSI**.
* **categorical** features: Pearson's chi-square test on the 2 x k table of counts (equal to
  :func:`scipy.stats.chi2_contingency`) and the Jensen-Shannon distance. The feature's
  **score is the JS distance**.

Which kind a column is (:func:`feature_kind`, decided on the reference column):
bool, object, string and category dtypes are categorical; integer-valued numeric columns
with at most :data:`MAX_DISCRETE_LEVELS` (10) distinct values in the reference (codes,
ratings, priorities 1-4, counts stored as floats because of NaNs) are categorical too;
every other int or float column is numeric. Datetime, timedelta and complex columns are
not compared (they are reported under ``skipped``).

Score scales (natural log for PSI, base 2 for JS):

* PSI ``= sum((c - r) * ln(c / r))`` over bins, with bin fractions floored at
  :data:`PSI_EPSILON` (1e-4) so an empty bin costs a bounded amount. Rule of thumb:
  < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift. Identical distributions give
  about ``(bins - 1) * (1/n_ref + 1/n_cur)`` (0.002 for 10 000 vs 10 000 rows); a shift of
  one standard deviation of a normal feature gives about 1.
* JS distance = square root of the Jensen-Shannon divergence with base-2 logs, in [0, 1]:
  0 for identical category mixes, 1 for disjoint ones. For small shifts a JS distance of 0.1
  corresponds to a PSI of about 0.06, so both scores read on one scale:
  ``threshold=0.1`` means "a moderate shift".

``drift_score`` is the largest per-feature score; ``drift_detected = drift_score >
threshold``; a feature is ``drifted`` when its own score is above the threshold. The
p-values are reported but not used for the decision: with a million rows, every
negligible difference is "significant", while PSI and JS measure how large it is.

Missing values: NaN/None (and, for numeric features, +-inf) are dropped per feature and
counted (``missing_reference`` / ``missing_current`` fractions). Categories of the current
window that the reference never saw are pooled into one extra bin (reference count 0),
which both the chi-square and the JS distance see; the result names a few of them. A window
with no rows, or with no feature that has values on both sides, raises
:class:`~mlops_jupyter.errors.EmptyWindowError`; individual features that cannot be compared
(missing on one side, all missing, unsupported dtype) are listed under ``skipped`` and in
``warnings``, and the others are still compared.

Speed: everything is vectorised. The KS statistic and the PSI of a numeric feature come from
one pass that counts the current values at or below each distinct reference value (a
bucketed lookup on a uniform grid over the reference's range, falling back to a sort for
very skewed data), so 1 000 000 current rows against 100 000 reference rows take tens of
milliseconds per feature. On large frames the features are compared in parallel threads
(numpy's sorts and searches release the GIL), one per feature up to the number of cores.

Example:
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> ref = pd.DataFrame({"x": rng.normal(size=5000), "c": rng.choice(["a", "b"], 5000)})
    >>> cur = pd.DataFrame({"x": rng.normal(1.0, size=5000), "c": rng.choice(["a", "b"], 5000)})
    >>> result = compare(ref, cur, threshold=0.1)
    >>> result["drift_detected"], list(result["features"])
    (True, ['x', 'c'])
    >>> result["features"]["x"]["method"]
    'ks+psi'
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from mlops_jupyter.errors import EmptyWindowError, ValidationError

__all__ = [
    "CATEGORICAL",
    "MAX_DISCRETE_LEVELS",
    "METHOD",
    "NUMERIC",
    "PSI_EPSILON",
    "StatResult",
    "UNSUPPORTED",
    "chi_square",
    "compare",
    "feature_kind",
    "jensen_shannon",
    "ks_test",
    "psi",
]

NUMERIC = "numeric"
CATEGORICAL = "categorical"
UNSUPPORTED = "unsupported"

MAX_DISCRETE_LEVELS = 10
"""Integer-valued numeric reference columns with at most this many distinct values are
compared as categories."""

PSI_BINS = 10
PSI_EPSILON = 1e-4
"""Floor of a bin's fraction in the PSI, so an empty bin adds a bounded term."""

MIN_RELIABLE_N = 30
"""Below this many non-missing values on either side, the result warns that a feature's
score is unreliable (it is still computed)."""

METHOD = (
    "drift_score = max per-feature score; numeric features: PSI on 10 reference-decile "
    "bins (natural log), with the Kolmogorov-Smirnov test; categorical features: "
    "Jensen-Shannon distance (base 2), with the chi-square test; drift when score > "
    "threshold (p-values reported, not used)"
)

# scipy.stats.ks_2samp(method="auto") computes the exact p-value when both samples have at
# most this many values; ks_test delegates to it there, so results stay equal.
_KS_EXACT_MAX_N = 10_000
# Below this many current values (or fewer than distinct reference values) a sort is as
# fast as the bucketed lookup.
_GRID_MIN_N = 50_000
# The bucketed lookup gives up (and sorts) when a current value would scan more than this
# many reference values on average (very skewed data squeezed into few buckets).
_GRID_MAX_MEAN_SCAN = 4.0
_UNSEEN_EXAMPLES = 5
# Frames with at least this many cells (rows of both sides x features) are compared with one
# thread per feature, up to this many threads.
_PARALLEL_MIN_CELLS = 200_000
_MAX_WORKERS = 8


class StatResult(NamedTuple):
    """A test statistic and its p-value."""

    statistic: float
    p_value: float


# --------------------------------------------------------------------------- helpers


def _as_float_array(values: Any, what: str) -> np.ndarray:
    """A 1-d float64 array of ``values`` (NaN for missing), or ValidationError."""
    if isinstance(values, pd.Series):
        try:
            return values.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise ValidationError(
                f"{what} must hold numbers; got dtype {values.dtype}.", value=str(values.dtype),
                allowed="int, float or bool values (NaN/None for missing)",
            ) from exc
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"{what} must be a 1-d sequence of numbers.", value=type(values).__name__,
            allowed="a 1-d numpy array, list or pandas Series of numbers",
        ) from exc
    if arr.ndim != 1:
        raise ValidationError(
            f"{what} must be 1-d; got shape {arr.shape}.", value=arr.shape,
            allowed="a 1-d numpy array, list or pandas Series of numbers",
        )
    return arr


def _finite(arr: np.ndarray) -> tuple[np.ndarray, int]:
    """The finite values of ``arr`` and how many were dropped (NaN, +-inf)."""
    mask = np.isfinite(arr)
    n_bad = int(arr.size - np.count_nonzero(mask))
    return (arr if n_bad == 0 else arr[mask]), n_bad


def _check_nonempty(arr: np.ndarray, what: str) -> None:
    if arr.size == 0:
        raise EmptyWindowError(
            f"The {what} has no finite values to compare.",
            window="reference" if "reference" in what else "current",
        )


def _counts_at(u: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sorted distinct ``u``: ``(#{x <= u[j]}, #{x < u[j]})`` for every ``j``.

    Exact for any finite data. For large ``x`` it avoids sorting ``x``: each value is put
    in a bucket of a uniform grid over ``[u[0], u[-1]]`` (2 buckets per distinct reference
    value); the bucket tells how many ``u`` lie in earlier buckets, and a short vectorised
    scan over the few ``u`` in the same bucket finishes the count. Because the bucket index
    is a monotone function of the value, ``u`` in an earlier bucket is always smaller than
    ``x`` and ``u`` in a later bucket always larger, so no value is miscounted.
    """
    m = u.size
    scale = (2.0 * m) / (u[-1] - u[0]) if m > 1 else 0.0
    if x.size >= max(_GRID_MIN_N, m) and m > 1 and math.isfinite(scale) and scale > 0:
        n_cells = 2 * m

        def cells(v: np.ndarray) -> np.ndarray:
            c = (v - u[0]) * scale
            c += 1.0
            np.clip(c, 0.0, n_cells + 1.0, out=c)
            return c.astype(np.intp)

        with np.errstate(over="ignore", invalid="ignore"):  # huge |x| -> inf -> clipped
            # start[c] = how many u lie in buckets before c
            start = np.concatenate(([0], np.cumsum(np.bincount(cells(u), minlength=n_cells + 2))))
            cx = cells(x)
        # Each x scans at most the reference values of its bucket; sort instead when that
        # adds up to too much (data squeezed into few buckets, e.g. a very heavy tail).
        scan = np.dot(np.bincount(cx, minlength=n_cells + 2), np.diff(start))
        if scan <= _GRID_MAX_MEAN_SCAN * x.size:
            j = start[cx]
            upad = np.append(u, np.inf)
            step = upad[j] < x
            j += step
            active = np.flatnonzero(step)
            while active.size:
                more = upad[j[active]] < x[active]
                active = active[more]
                j[active] += 1
            # j = #{u < x}; so x <= u[k] iff j <= k, and x == u[k] iff j == k and u[k] == x.
            le = np.cumsum(np.bincount(j, minlength=m + 1)[:m])
            eq = np.bincount(j[upad[j] == x], minlength=m + 1)[:m]
            return le, le - eq
    xs = np.sort(x)
    return np.searchsorted(xs, u, side="right"), np.searchsorted(xs, u, side="left")


class _NumericProfile(NamedTuple):
    """Distinct sorted reference values and cumulative counts, computed once per feature."""

    u: np.ndarray
    cum: np.ndarray  # cum[j] = #{ref <= u[j]}
    n: int


def _profile(ref: np.ndarray) -> _NumericProfile:
    u, counts = np.unique(ref, return_counts=True)
    return _NumericProfile(u, np.cumsum(counts), int(ref.size))


def _ks_from_counts(p: _NumericProfile, le: np.ndarray, lt: np.ndarray, n2: int) -> float:
    """The two-sided KS statistic from counts at the reference's distinct values.

    Both empirical CDFs are step functions, so the largest gap is reached at a data point.
    Between two reference values the reference CDF is constant and the current CDF only
    grows, so the gap's extremes there are at the reference value itself (``le``) and just
    before the next one (``lt``). The same integer pairs divided the same way as in
    :func:`scipy.stats.ks_2samp` give bit-identical statistics.
    """
    n1 = p.n
    prev = np.concatenate(([0], p.cum[:-1]))
    at = p.cum / n1 - le / n2
    before = prev / n1 - lt / n2
    max_s = max(float(at.max()), float(before.max()))
    min_s = min(max(-float(min(at.min(), before.min())), 0.0), 1.0)
    return min_s if min_s > max_s else max_s


def _ks_pvalue(d: float, n1: int, n2: int) -> float:
    """Smirnov's asymptotic two-sided p-value, computed as scipy's ks_2samp does."""
    from scipy.stats import kstwo

    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    return float(np.clip(kstwo.sf(d, np.round(en)), 0.0, 1.0))


def _ks(ref: np.ndarray, cur: np.ndarray, p: _NumericProfile,
        counts: tuple[np.ndarray, np.ndarray] | None = None) -> StatResult:
    """KS as scipy's ``method='auto'``: exact p-value (from scipy) for small samples, else
    the statistic from ``counts`` (computed here if not given) and the asymptotic p-value."""
    if max(ref.size, cur.size) <= _KS_EXACT_MAX_N:
        from scipy.stats import ks_2samp

        res = ks_2samp(ref, cur)
        return StatResult(float(res.statistic), float(res.pvalue))
    le, lt = counts if counts is not None else _counts_at(p.u, cur)
    d = _ks_from_counts(p, le, lt, cur.size)
    return StatResult(d, _ks_pvalue(d, ref.size, cur.size))


def _psi_from_counts(p: _NumericProfile, le: np.ndarray, n2: int, bins: int) -> float:
    """PSI on bins ``(-inf, e1], (e1, e2], ..., (e_last, inf)`` cut at reference quantiles.

    The edges are the reference's inverted-CDF quantiles at 1/bins, ..., (bins-1)/bins
    (always actual reference values, so the current counts come from ``le``); repeated
    edges (ties) merge bins.
    """
    n1 = p.n
    k = np.arange(1, bins, dtype=np.int64)
    idx = np.unique(np.searchsorted(p.cum * bins, k * n1, side="left"))
    idx = idx[idx < p.u.size]
    ref_counts = np.diff(np.concatenate(([0], p.cum[idx], [n1])))
    cur_counts = np.diff(np.concatenate(([0], le[idx], [n2])))
    return _psi_terms(ref_counts, cur_counts)


def _psi_terms(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    r = np.maximum(ref_counts / ref_counts.sum(), PSI_EPSILON)
    c = np.maximum(cur_counts / cur_counts.sum(), PSI_EPSILON)
    return float(np.sum((c - r) * np.log(c / r)))


def _check_bins(bins: Any) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or not 2 <= bins <= 1000:
        raise ValidationError(f"Invalid bins {bins!r}.", value=bins,
                              allowed="an int from 2 to 1000")
    return int(bins)


def _as_counts(values: Any, what: str) -> np.ndarray:
    arr = _as_float_array(values, what)
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValidationError(
            f"{what} must be a non-empty 1-d array of finite counts >= 0.",
            value=values if arr.size <= 10 else f"array of {arr.size} values",
            allowed="e.g. [120, 40, 3]",
        )
    return arr


def _check_pair(ref: np.ndarray, cur: np.ndarray) -> None:
    if ref.shape != cur.shape:
        raise ValidationError(
            f"Reference and current counts must have the same length; got {ref.size} and "
            f"{cur.size}.", value=(ref.size, cur.size),
            allowed="one count per category, in the same order on both sides",
        )
    for arr, side in ((ref, "reference"), (cur, "current")):
        if arr.sum() <= 0:
            raise EmptyWindowError(f"The {side} counts are all zero.", window=side)


# --------------------------------------------------------------------------- public tests


def feature_kind(series: pd.Series, max_levels: int = MAX_DISCRETE_LEVELS) -> str:
    """How a reference column is compared: ``'numeric'``, ``'categorical'`` or ``'unsupported'``.

    The rule: bool, object, string and category dtypes are categorical; an int or float
    column whose non-missing values are all whole numbers and take at most ``max_levels``
    distinct values is categorical (codes, ratings, small counts); other int and float
    columns are numeric; datetime, timedelta, complex and other dtypes are unsupported.
    Decide on the reference, not the current window, so one feature is always compared the
    same way.

    Args:
        series: the reference column.
        max_levels: the most distinct whole-number values a numeric column may have and still
            be compared as categories.

    Returns:
        ``'numeric'``, ``'categorical'`` or ``'unsupported'``.

    Example:
        >>> import pandas as pd
        >>> feature_kind(pd.Series([1.5, 2.25, 3.0])), feature_kind(pd.Series([1, 2, 2, 4]))
        ('numeric', 'categorical')
        >>> feature_kind(pd.Series(["email", "chat"]))
        'categorical'
    """
    if not isinstance(series, pd.Series):
        series = pd.Series(series)
    return _kind(series, None, max_levels)


def _kind(series: pd.Series, unique: np.ndarray | None, max_levels: int) -> str:
    dtype = series.dtype
    api = pd.api.types
    if (api.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype)
            or api.is_object_dtype(dtype) or api.is_string_dtype(dtype)):
        return CATEGORICAL
    if api.is_numeric_dtype(dtype) and not api.is_complex_dtype(dtype):
        if unique is None:
            unique = np.unique(_finite(_as_float_array(series, "column"))[0])
        if 0 < unique.size <= max_levels and bool(np.all(unique == np.round(unique))):
            return CATEGORICAL
        return NUMERIC
    return UNSUPPORTED


def ks_test(ref: Any, cur: Any) -> StatResult:
    """Two-sample Kolmogorov-Smirnov test, two-sided; equal to :func:`scipy.stats.ks_2samp`.

    NaN and +-inf are dropped first. Up to 10 000 values per side the exact p-value comes
    from scipy itself; above, the statistic is computed here without sorting the current
    sample and the p-value is Smirnov's asymptotic one, as scipy's ``method='auto'`` does.

    Args:
        ref: reference values (1-d array-like of numbers).
        cur: current values.

    Returns:
        ``StatResult(statistic, p_value)``: the largest gap between the two empirical CDFs
        (0 to 1) and the probability of a gap at least this large if both samples came from
        one distribution.

    Raises:
        EmptyWindowError: a side has no finite values.
        ValidationError: the input is not a 1-d sequence of numbers.

    Example:
        >>> ks_test([1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0]).statistic
        0.5
    """
    r, _ = _finite(_as_float_array(ref, "reference values"))
    c, _ = _finite(_as_float_array(cur, "current values"))
    _check_nonempty(r, "reference values")
    _check_nonempty(c, "current values")
    return _ks(r, c, _profile(r))


def psi(ref: Any, cur: Any, bins: int = PSI_BINS) -> float:
    """Population Stability Index of ``cur`` against ``ref`` on reference-quantile bins.

    ``sum((c - r) * ln(c / r))`` over ``bins`` bins cut at the reference's quantiles
    (ties merge bins), with bin fractions floored at 1e-4. About 0 when nothing moved;
    > 0.1 a moderate shift, > 0.25 a major one. NaN and +-inf are dropped first.

    Args:
        ref: reference values (1-d array-like of numbers).
        cur: current values.
        bins: number of quantile bins (2 to 1000).

    Returns:
        The PSI, >= 0.

    Raises:
        EmptyWindowError: a side has no finite values.
        ValidationError: bad input or ``bins``.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> round(psi(rng.normal(size=10_000), rng.normal(size=10_000)), 3) < 0.01
        True
    """
    bins = _check_bins(bins)
    r, _ = _finite(_as_float_array(ref, "reference values"))
    c, _ = _finite(_as_float_array(cur, "current values"))
    _check_nonempty(r, "reference values")
    _check_nonempty(c, "current values")
    p = _profile(r)
    le, _ = _counts_at(p.u, c)
    return _psi_from_counts(p, le, c.size, bins)


def chi_square(ref_counts: Any, cur_counts: Any) -> StatResult:
    """Pearson's chi-square test of homogeneity on a 2 x k table of category counts.

    Equal to ``scipy.stats.chi2_contingency([ref_counts, cur_counts])`` with its defaults
    (Yates' continuity correction when there are exactly two categories), except that
    categories empty on both sides are dropped first instead of raising. A single
    remaining category gives statistic 0 and p-value 1.

    Args:
        ref_counts: count per category in the reference.
        cur_counts: count per category in the current window, same order and length.

    Returns:
        ``StatResult(statistic, p_value)``.

    Raises:
        EmptyWindowError: a side's counts are all zero.
        ValidationError: lengths differ, or counts are negative or not finite.

    Example:
        >>> round(chi_square([50, 50], [50, 50]).p_value, 6)
        1.0
    """
    from scipy.stats import chi2

    r = _as_counts(ref_counts, "reference counts")
    c = _as_counts(cur_counts, "current counts")
    _check_pair(r, c)
    keep = (r + c) > 0
    observed = np.vstack([r[keep], c[keep]])
    dof = observed.shape[1] - 1
    if dof == 0:
        return StatResult(0.0, 1.0)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    if dof == 1:  # Yates' correction, as chi2_contingency(correction=True) applies it
        diff = expected - observed
        observed = observed + np.minimum(0.5, np.abs(diff)) * np.sign(diff)
    stat = float(((observed - expected) ** 2 / expected).sum())
    return StatResult(stat, float(chi2.sf(stat, dof)))


def jensen_shannon(ref: Any, cur: Any) -> float:
    """Jensen-Shannon distance (base 2) between two distributions given as counts.

    The square root of ``(KL(p || m) + KL(q || m)) / 2`` with ``m = (p + q) / 2`` and
    base-2 logs, where ``p`` and ``q`` are the normalised counts: 0 for identical mixes, 1
    for disjoint ones. Equal to ``scipy.spatial.distance.jensenshannon(ref, cur, base=2)``.

    Args:
        ref: counts (or probabilities) per category in the reference.
        cur: counts per category in the current window, same order and length.

    Returns:
        The distance, in [0, 1].

    Raises:
        EmptyWindowError: a side's counts are all zero.
        ValidationError: lengths differ, or counts are negative or not finite.

    Example:
        >>> jensen_shannon([1, 0], [0, 1]), jensen_shannon([3, 1], [30, 10])
        (1.0, 0.0)
    """
    r = _as_counts(ref, "reference counts")
    c = _as_counts(cur, "current counts")
    _check_pair(r, c)
    p = r / r.sum()
    q = c / c.sum()
    m = (p + q) / 2.0

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return float(math.sqrt(min(max((kl(p) + kl(q)) / 2.0, 0.0), 1.0)))


# --------------------------------------------------------------------------- compare


def _as_frame(data: Any, what: str) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, Mapping):
        try:
            frame = pd.DataFrame(data)
        except (TypeError, ValueError) as exc:
            raise ValidationError(
                f"The {what} could not be turned into a table: {exc}", value=type(data).__name__,
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
            f"The {what} has duplicate column names {dupes}.", value=dupes,
            allowed="one column per feature name",
        )
    return frame


def _check_threshold(threshold: Any) -> float:
    real = (int, float, np.integer, np.floating)
    if (isinstance(threshold, bool) or not isinstance(threshold, real)
            or not math.isfinite(threshold) or threshold < 0):
        raise ValidationError(
            f"Invalid threshold {threshold!r}.", value=threshold,
            allowed="a finite number >= 0, e.g. 0.1 (PSI / JS-distance scale)",
        )
    return float(threshold)


def _compare_numeric(ref: np.ndarray, cur: np.ndarray, p: _NumericProfile,
                     bins: int) -> dict[str, Any]:
    le, lt = _counts_at(p.u, cur)
    stat = _ks(ref, cur, p, (le, lt))
    return {
        "kind": NUMERIC, "method": "ks+psi", "test": "ks",
        "statistic": stat.statistic, "p_value": stat.p_value,
        "score_name": "psi", "score": _psi_from_counts(p, le, cur.size, bins),
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
        "kind": CATEGORICAL, "method": "chi2+jensen_shannon", "test": "chi2",
        "statistic": stat.statistic, "p_value": stat.p_value,
        "score_name": "jensen_shannon", "score": jensen_shannon(ref_counts, cur_counts),
        "n_categories": int(ref_vc.size),
        "unseen_fraction": n_unseen / float(cur_vc.sum()),
        "unseen_examples": [str(v) for v in unseen.index[:_UNSEEN_EXAMPLES]],
    }


def _current_numeric(cur: pd.Series) -> np.ndarray | None:
    """The current column as floats, or None when it does not hold numbers."""
    api = pd.api.types
    if api.is_bool_dtype(cur.dtype) or (api.is_numeric_dtype(cur.dtype)
                                         and not api.is_complex_dtype(cur.dtype)):
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
    if api.is_numeric_dtype(rs.dtype) and not api.is_bool_dtype(rs.dtype) \
            and not api.is_complex_dtype(rs.dtype):
        ref_vals, ref_bad = _finite(rs.to_numpy(dtype=np.float64, na_value=np.nan))
        profile = _profile(ref_vals)
    kind = _kind(rs, None if profile is None else profile.u, MAX_DISCRETE_LEVELS)
    if kind == UNSUPPORTED:
        return _Skip(f"unsupported dtype {rs.dtype} (only numbers and categories are compared)",
                     "reference")

    if kind == NUMERIC:
        assert ref_vals is not None and profile is not None
        cur_raw = _current_numeric(cs)
        if cur_raw is None:
            return _Skip(f"current values are not numeric (dtype {cs.dtype}) but the "
                         "reference's are", "current")
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


def _compare_features(ref_df: pd.DataFrame, cur_df: pd.DataFrame, names: Sequence[Any],
                      bins: int) -> dict[Any, dict[str, Any] | _Skip]:
    """Every shared feature's entry; on large frames the features run in parallel threads
    (numpy's sorts and searches release the GIL, so the cores share the work)."""
    workers = min(len(names), os.cpu_count() or 1, _MAX_WORKERS)
    if workers < 2 or (len(ref_df) + len(cur_df)) * len(names) < _PARALLEL_MIN_CELLS:
        return {n: _compare_feature(ref_df[n], cur_df[n], bins) for n in names}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlops-drift") as pool:
        futures = {n: pool.submit(_compare_feature, ref_df[n], cur_df[n], bins) for n in names}
        return {n: f.result() for n, f in futures.items()}


def compare(reference: Any, current: Any, threshold: float = 0.1, *,
            features: Sequence[str] | None = None, bins: int = PSI_BINS) -> dict[str, Any]:
    """Compare a current window with the reference, feature by feature.

    See the module docstring for the methods, the kind rule and the score scales.

    Args:
        reference: the reference data (DataFrame, or a mapping of column to values).
        current: the current window, same columns (extra or missing ones are reported).
        threshold: drift when a score is above it; PSI / JS-distance scale, default 0.1.
        features: the columns to compare (default: every column of either frame,
            reference order first).
        bins: number of reference-quantile bins of the PSI.

    Returns:
        A dict with ``drift_detected`` (bool), ``drift_score`` (the largest feature
        score), ``threshold``, ``method`` (the rule, in words), ``features`` (name ->
        ``kind``, ``method``, ``test``, ``statistic``, ``p_value``, ``score_name``,
        ``score``, ``drifted``, ``n_reference``, ``n_current`` (non-missing values),
        ``missing_reference``, ``missing_current`` (fractions of rows) and, for
        categorical features, ``n_categories``, ``unseen_fraction``, ``unseen_examples``;
        ordered by score, highest first), ``drifted_features`` (names), ``n_reference``,
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
    ref_df = _as_frame(reference, "reference")
    cur_df = _as_frame(current, "current window")
    n_ref, n_cur = len(ref_df), len(cur_df)
    if n_ref == 0 or n_cur == 0:
        side = "both" if n_ref == n_cur == 0 else ("reference" if n_ref == 0 else "current")
        what = {"both": "The reference and the current window have", "reference":
                "The reference has", "current": "The current window has"}[side]
        raise EmptyWindowError(f"{what} no rows; there is nothing to compare.", window=side,
                               value=(n_ref, n_cur))
    if features is None:
        names = list(ref_df.columns) + [c for c in cur_df.columns if c not in ref_df.columns]
    else:
        if isinstance(features, str) or not isinstance(features, Sequence) or not features:
            raise ValidationError(
                f"Invalid features {features!r}.", value=features,
                allowed="a non-empty list of column names, or None for every column",
            )
        names = list(dict.fromkeys(features))

    results: dict[Any, dict[str, Any]] = {}
    skipped: dict[Any, str] = {}
    skip_side: dict[Any, str] = {}
    entries = _compare_features(ref_df, cur_df, [n for n in names if n in ref_df.columns and n in cur_df.columns],
                                bins)
    for name in names:
        if name not in ref_df.columns:
            skipped[name] = ("not in the reference data" if name in cur_df.columns
                             else "in neither window")
            skip_side[name] = "reference"
        elif name not in cur_df.columns:
            skipped[name], skip_side[name] = "missing from the current window", "current"
        else:
            entry = entries[name]
            if isinstance(entry, _Skip):
                skipped[name], skip_side[name] = entry.reason, entry.side
                continue
            entry["drifted"] = bool(entry["score"] > threshold)
            results[name] = entry

    warnings = [f"feature {name!r} skipped: {reason}." for name, reason in skipped.items()]
    few = [str(n) for n, e in results.items()
           if min(e["n_reference"], e["n_current"]) < MIN_RELIABLE_N]
    if few:
        warnings.append(
            f"fewer than {MIN_RELIABLE_N} values on one side for {', '.join(map(repr, few))}; "
            "their scores are unreliable.")
    if not results:
        sides = set(skip_side.values())
        side = sides.pop() if len(sides) == 1 else "both"
        raise EmptyWindowError(
            "No feature could be compared: " + "; ".join(
                f"{n!r} {r}" for n, r in skipped.items()) + ".", window=side,
            value=list(skipped))

    ordered = dict(sorted(results.items(), key=lambda kv: -kv[1]["score"]))
    drift_score = max(e["score"] for e in ordered.values())
    return {
        "drift_detected": bool(drift_score > threshold),
        "drift_score": float(drift_score),
        "threshold": threshold,
        "method": METHOD,
        "features": ordered,
        "drifted_features": [n for n, e in ordered.items() if e["drifted"]],
        "n_reference": n_ref,
        "n_current": n_cur,
        "skipped": skipped,
        "warnings": warnings,
    }
