"""Which way a feature is compared: as numbers, as categories, or not at all.

Decided on the reference column, never the current window, so one feature is always
compared the same way: bool, object, string and category dtypes are categorical;
integer-valued numeric columns with at most :data:`MAX_DISCRETE_LEVELS` (10) distinct values
in the reference (codes, ratings, priorities 1-4, counts stored as floats because of NaNs)
are categorical too; every other int or float column is numeric. Datetime, timedelta and
complex columns are unsupported (the comparison reports them under ``skipped``).

Speed: the dtype decides most columns at once; a numeric column costs one ``np.unique``
of its finite values, which the comparison computes anyway for the KS and the PSI and
passes in, so it is not done twice.

Example:
    >>> import pandas as pd
    >>> when = pd.Series(pd.to_datetime(["2024-01-01", "2024-01-02"]))
    >>> [feature_kind(s) for s in (pd.Series([0.5, 1.5]), pd.Series([1.0, 2.0, None]), when)]
    ['numeric', 'categorical', 'unsupported']
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_jupyter.monitoring.drift._common import _as_float_array, _finite

__all__ = ["CATEGORICAL", "MAX_DISCRETE_LEVELS", "NUMERIC", "UNSUPPORTED", "feature_kind"]

NUMERIC = "numeric"
CATEGORICAL = "categorical"
UNSUPPORTED = "unsupported"

MAX_DISCRETE_LEVELS = 10
"""Integer-valued numeric reference columns with at most this many distinct values are
compared as categories."""


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
    if (
        api.is_bool_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
        or api.is_object_dtype(dtype)
        or api.is_string_dtype(dtype)
    ):
        return CATEGORICAL
    if api.is_numeric_dtype(dtype) and not api.is_complex_dtype(dtype):
        if unique is None:
            unique = np.unique(_finite(_as_float_array(series, "column"))[0])
        if 0 < unique.size <= max_levels and bool(np.all(unique == np.round(unique))):
            return CATEGORICAL
        return NUMERIC
    return UNSUPPORTED
