"""What every drift statistic shares: its result type and the checking of its inputs.

:class:`StatResult` is what the tests (:func:`~mlops_jupyter.monitoring.drift.ks_test`,
:func:`~mlops_jupyter.monitoring.drift.chi_square`) return. The helpers turn array-likes
and pandas Series into 1-d float64 arrays (NaN for missing), drop the non-finite values
and count them, and raise :class:`~mlops_jupyter.errors.ValidationError` for input that
is not a 1-d sequence of numbers and :class:`~mlops_jupyter.errors.EmptyWindowError` for
a side left with nothing to compare. Speed: one vectorised pass per input; the finite
values are copied out only when something was dropped.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from mlops_jupyter.errors import EmptyWindowError, ValidationError

__all__ = ["StatResult"]


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
                f"{what} must hold numbers; got dtype {values.dtype}.",
                value=str(values.dtype),
                allowed="int, float or bool values (NaN/None for missing)",
            ) from exc
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"{what} must be a 1-d sequence of numbers.",
            value=type(values).__name__,
            allowed="a 1-d numpy array, list or pandas Series of numbers",
        ) from exc
    if arr.ndim != 1:
        raise ValidationError(
            f"{what} must be 1-d; got shape {arr.shape}.",
            value=arr.shape,
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
