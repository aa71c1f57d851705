"""Drift statistics of a categorical feature, on counts per category: chi-square and JS.

Both take two equal-length count vectors, one count per category in the same order (the
comparison counts the values and pools the current window's unseen categories into one
extra bin with reference count 0).

* **Chi-square**: Pearson's test of homogeneity on the 2 x k table of counts,
  ``sum((O - E)**2 / E)`` with ``E`` from the row and column totals and ``k - 1`` degrees
  of freedom, Yates' continuity correction when ``k == 2``. Equal to
  ``scipy.stats.chi2_contingency([ref_counts, cur_counts])`` with its defaults, except
  that categories empty on both sides are dropped first instead of raising.
* **Jensen-Shannon distance**: ``sqrt((KL(p || m) + KL(q || m)) / 2)`` with
  ``m = (p + q) / 2``, ``p`` and ``q`` the normalised counts and base-2 logs, in [0, 1]:
  0 for identical category mixes, 1 for disjoint ones. Equal to
  ``scipy.spatial.distance.jensenshannon(ref, cur, base=2)``. For small shifts a JS
  distance of 0.1 corresponds to a PSI of about 0.06, so both scores read on one scale.

Speed: a few numpy operations on vectors of length k (the number of categories); the
expensive part, counting a million values, is pandas' ``value_counts`` in the comparison.

Example:
    >>> from scipy.spatial.distance import jensenshannon
    >>> from scipy.stats import chi2_contingency
    >>> ref, cur = [120, 40, 3], [100, 60, 10]
    >>> bool(abs(jensen_shannon(ref, cur) - jensenshannon(ref, cur, base=2)) < 1e-12)
    True
    >>> bool(abs(chi_square(ref, cur).statistic - chi2_contingency([ref, cur])[0]) < 1e-9)
    True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mlops_jupyter.errors import EmptyWindowError, ValidationError
from mlops_jupyter.monitoring.drift._common import StatResult, _as_float_array

__all__ = ["chi_square", "jensen_shannon"]


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
            f"Reference and current counts must have the same length; got {ref.size} and {cur.size}.",
            value=(ref.size, cur.size),
            allowed="one count per category, in the same order on both sides",
        )
    for arr, side in ((ref, "reference"), (cur, "current")):
        if arr.sum() <= 0:
            raise EmptyWindowError(f"The {side} counts are all zero.", window=side)


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
