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

The decision (:mod:`.decision`): a feature is ``drifted`` when its test's p-value, adjusted
with Benjamini-Hochberg over the features compared, is below ``alpha`` (0.05) **and** its
``effect``, the score minus its no-drift expectation (small-sample bias), is above the
threshold. ``drift_score`` is the largest effect of a significant feature and
``drift_detected = drift_score > threshold``. Significance keeps noise in small windows from
being called drift (30 features at 50 rows); the effect keeps a negligible but
"significant" change in a million rows from it.

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

The modules, each with its maths, its scipy parity and its speed written down at its top:

* :mod:`.numeric`: the KS test and the PSI (:func:`ks_test`, :func:`psi`) and the counting
  pass they share;
* :mod:`.categorical`: the chi-square test and the JS distance on counts per category
  (:func:`chi_square`, :func:`jensen_shannon`);
* :mod:`.kinds`: which way a column is compared (:func:`feature_kind`);
* :mod:`.comparison`: :func:`compare`, one feature at a time (in threads on large frames),
  and the result with its skipped features and warnings;
* :mod:`.decision`: the decision rule (Benjamini-Hochberg, bias-corrected effects);
* :mod:`._common`: :class:`StatResult` and the input checks every statistic shares.

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

from mlops_jupyter.monitoring.drift._common import StatResult
from mlops_jupyter.monitoring.drift.categorical import chi_square, jensen_shannon
from mlops_jupyter.monitoring.drift.comparison import (
    METHOD,
    compare,
)
from mlops_jupyter.monitoring.drift.comparison import (
    MIN_RELIABLE_N as MIN_RELIABLE_N,
)
from mlops_jupyter.monitoring.drift.comparison import (
    _check_threshold as _check_threshold,  # imported by monitoring.drift_check
)
from mlops_jupyter.monitoring.drift.kinds import (
    CATEGORICAL,
    MAX_DISCRETE_LEVELS,
    NUMERIC,
    UNSUPPORTED,
    feature_kind,
)
from mlops_jupyter.monitoring.drift.numeric import (
    PSI_BINS as PSI_BINS,
)
from mlops_jupyter.monitoring.drift.numeric import (
    PSI_EPSILON,
    ks_test,
    psi,
)
from mlops_jupyter.monitoring.drift.numeric import (
    _counts_at as _counts_at,  # tested directly by tests/monitoring/test_drift_stats.py
)

__all__ = [
    "CATEGORICAL",
    "MAX_DISCRETE_LEVELS",
    "METHOD",
    "NUMERIC",
    "PSI_EPSILON",
    "UNSUPPORTED",
    "StatResult",
    "chi_square",
    "compare",
    "feature_kind",
    "jensen_shannon",
    "ks_test",
    "psi",
]
