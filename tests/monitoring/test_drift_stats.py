"""Drift statistics (mlops_jupyter.monitoring.drift): equal to scipy, calibrated, never crashing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from mlops_jupyter.errors import EmptyWindowError, MLOpsError, ValidationError
from mlops_jupyter.monitoring import drift

REL = 1e-12


def _close(a: float, b: float) -> bool:
    return a == b or abs(a - b) <= REL * max(abs(a), abs(b))


def _sample(kind: str, n: int, rng: np.random.Generator, shift: float = 0.0) -> np.ndarray:
    if kind == "normal":
        return rng.normal(shift, 1.0, n)
    if kind == "lognormal":  # heavy right tail: the bucketed lookup falls back to sorting
        return rng.lognormal(shift, 2.5, n)
    if kind == "ties":  # few distinct values, many ties between and within samples
        return np.round(rng.normal(shift, 3.0, n))
    if kind == "uniform":
        return rng.uniform(shift, 1.0 + shift, n)
    raise AssertionError(kind)


def _frame(n: int, rng: np.random.Generator, shift_feature: str | None = None, shift: float = 1.0) -> pd.DataFrame:
    """10 features: 8 numeric (x0..x7, assorted shapes) and 2 categorical."""
    cols: dict[str, object] = {}
    for i in range(8):
        s = shift if f"x{i}" == shift_feature else 0.0
        if i % 3 == 0:
            cols[f"x{i}"] = rng.normal(10.0 * i + s, 1.0, n)
        elif i % 3 == 1:
            cols[f"x{i}"] = rng.gamma(4.0, 1.0, n) + 2.0 * s  # sd of gamma(4, 1) is 2
        else:
            cols[f"x{i}"] = rng.uniform(0, 1, n) + s / np.sqrt(12.0) * 1.0
    cols["category"] = rng.choice(["technical", "billing", "account", "other"], n, p=[0.4, 0.25, 0.2, 0.15])
    cols["channel"] = pd.Categorical(rng.choice(["email", "chat", "phone"], n, p=[0.5, 0.3, 0.2]))
    return pd.DataFrame(cols)


# --------------------------------------------------------------------------- KS


@pytest.mark.parametrize("kind", ["normal", "lognormal", "ties", "uniform"])
@pytest.mark.parametrize(
    "n1,n2", [(300, 500), (10_000, 10_000), (20_000, 60_000), (100_000, 75_000), (50, 120_000), (12_000, 30)]
)
@pytest.mark.parametrize("shift", [0.0, 0.05, 1.0])
def test_ks_equals_scipy(kind: str, n1: int, n2: int, shift: float) -> None:
    rng = np.random.default_rng(n1 + n2 + int(shift * 100))
    a, b = _sample(kind, n1, rng), _sample(kind, n2, rng, shift)
    ours = drift.ks_test(a, b)
    ref = stats.ks_2samp(a, b)
    assert ours.statistic == float(ref.statistic)
    assert _close(ours.p_value, float(ref.pvalue)), (ours.p_value, ref.pvalue)


def test_ks_drops_nan_and_inf_like_scipy_on_the_finite_values() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=20_000), rng.normal(0.1, size=30_000)
    a_dirty = np.concatenate([a, [np.nan, np.inf, -np.inf]])
    b_dirty = np.concatenate([[np.nan] * 5, b])
    ref = stats.ks_2samp(a, b)
    ours = drift.ks_test(a_dirty, b_dirty)
    assert ours.statistic == float(ref.statistic) and _close(ours.p_value, float(ref.pvalue))


def test_ks_constant_reference() -> None:
    a = np.full(20_000, 3.0)
    b = np.concatenate([np.full(30_000, 3.0), np.full(30_000, 4.0)])
    ref = stats.ks_2samp(a, b)
    ours = drift.ks_test(a, b)
    assert ours.statistic == float(ref.statistic) == 0.5
    assert _close(ours.p_value, float(ref.pvalue))


@pytest.mark.parametrize("kind", ["normal", "lognormal", "ties", "uniform"])
def test_counts_at_matches_searchsorted(kind: str) -> None:
    """The bucketed count (no sort of the current sample) is exact, ties included."""
    rng = np.random.default_rng(11)
    u = np.unique(_sample(kind, 50_000, rng))
    x = _sample(kind, 200_000, rng, 0.3)
    x[:1000] = rng.choice(u, 1000)  # exact ties with reference values
    x[1000:1010] = [
        u[0],
        u[-1],
        u[0] - 1e300,
        u[-1] + 1e300,
        1e308,
        -1e308,
        0.0,
        -0.0,
        np.nextafter(u[0], -np.inf),
        np.nextafter(u[-1], np.inf),
    ]
    le, lt = drift._counts_at(u, x)
    xs = np.sort(x)
    np.testing.assert_array_equal(le, np.searchsorted(xs, u, side="right"))
    np.testing.assert_array_equal(lt, np.searchsorted(xs, u, side="left"))


# --------------------------------------------------------------------------- chi-square, JS


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [2, 3, 5, 12])
def test_chi_square_equals_scipy(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed * 100 + k)
    r = rng.integers(0, 5000, k).astype(float) + 1
    c = rng.integers(0, 800, k).astype(float) + 1
    ours = drift.chi_square(r, c)
    chi2, p, _dof, _exp = stats.chi2_contingency(np.vstack([r, c]))
    assert _close(ours.statistic, float(chi2)) and _close(ours.p_value, float(p))


def test_chi_square_small_counts_and_yates() -> None:
    for r, c in ([[3, 1], [1, 3]], [[10, 0], [5, 5]], [[7, 2, 0], [1, 0, 4]], [[1, 1], [1, 1]]):
        ours = drift.chi_square(r, c)
        chi2, p, _dof, _exp = stats.chi2_contingency(np.vstack([r, c]))
        assert _close(ours.statistic, float(chi2)) and _close(ours.p_value, float(p))


def test_chi_square_drops_categories_empty_on_both_sides() -> None:
    ours = drift.chi_square([10, 0, 20, 5], [3, 0, 9, 1])
    chi2, p, _dof, _exp = stats.chi2_contingency(np.array([[10, 20, 5], [3, 9, 1]]))
    assert _close(ours.statistic, float(chi2)) and _close(ours.p_value, float(p))
    assert drift.chi_square([5, 0], [7, 0]) == (0.0, 1.0)  # one category left: no evidence


@pytest.mark.parametrize(
    "bad", [([1, 2], [1, 2, 3]), ([1, -1], [1, 1]), ([1, np.nan], [1, 1]), ([], []), ("ab", [1, 2])]
)
def test_chi_square_and_js_refuse_bad_counts(bad: tuple) -> None:
    for fn in (drift.chi_square, drift.jensen_shannon):
        with pytest.raises(ValidationError):
            fn(*bad)
    with pytest.raises(EmptyWindowError):
        drift.chi_square([0, 0], [1, 2])


def test_jensen_shannon_equals_scipy_and_is_bounded() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        k = int(rng.integers(2, 10))
        r = rng.integers(0, 100, k).astype(float) + 1
        c = rng.integers(0, 100, k).astype(float)
        c[0] += 1
        assert _close(drift.jensen_shannon(r, c), float(jensenshannon(r, c, base=2)))
    assert drift.jensen_shannon([5, 5, 0], [0, 0, 7]) == 1.0
    assert drift.jensen_shannon([2, 6], [20, 60]) == 0.0


# --------------------------------------------------------------------------- PSI


def test_psi_sanity() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=10_000)
    same = drift.psi(ref, rng.normal(size=10_000))
    assert 0 <= same < 0.01  # expected about (bins - 1) * (1/n1 + 1/n2) = 0.0018
    scores = [drift.psi(ref, rng.normal(s, 1, 10_000)) for s in (0.1, 0.25, 0.5, 1.0)]
    assert scores == sorted(scores)  # grows with the shift
    assert scores[-1] > 0.25  # a 1-sd shift is a major shift
    assert drift.psi(ref, ref) == 0.0
    assert drift.psi(ref, ref * 3) > 0.25  # wider spread, same mean
    # Values beyond the reference's range land in the outer bins; the epsilon bounds the cost.
    far = drift.psi(ref, np.full(1000, 1e9))
    assert np.isfinite(far) and far > 1


def test_psi_bins_and_ties() -> None:
    rng = np.random.default_rng(1)
    ref = rng.integers(0, 3, 5000).astype(float)  # deciles collapse to at most 3 bins
    assert drift.psi(ref, rng.integers(0, 3, 5000).astype(float)) < 0.01
    assert drift.psi(ref, np.zeros(100)) > 0.25
    with pytest.raises(ValidationError):
        drift.psi(ref, ref, bins=1)
    with pytest.raises(EmptyWindowError):
        drift.psi(ref, [np.nan, np.nan])


# --------------------------------------------------------------------------- feature kinds


@pytest.mark.parametrize(
    "series,kind",
    [
        (pd.Series([0.5, 1.25, 3.0, 4.0]), "numeric"),
        (pd.Series(np.arange(11)), "numeric"),  # 11 distinct integers: numeric
        (pd.Series(np.arange(10)), "categorical"),  # 10 distinct integers: codes
        (pd.Series([1.0, 2.0, np.nan, 4.0]), "categorical"),  # int codes stored as float
        (pd.Series([1, 2, None], dtype="Int64"), "categorical"),
        (pd.Series([True, False]), "categorical"),
        (pd.Series(["a", "b"]), "categorical"),
        (pd.Series(["a", "b"], dtype="category"), "categorical"),
        (pd.Series([1, "a"], dtype=object), "categorical"),
        (pd.Series([np.nan, np.nan]), "numeric"),
        (pd.Series(pd.to_datetime(["2024-01-01", "2024-02-01"])), "unsupported"),
        (pd.Series([1 + 2j]), "unsupported"),
    ],
)
def test_feature_kind(series: pd.Series, kind: str) -> None:
    assert drift.feature_kind(series) == kind


# --------------------------------------------------------------------------- compare


@pytest.mark.parametrize("seed", range(5))
def test_identical_distributions_are_not_flagged(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref, cur = _frame(10_000, rng), _frame(10_000, rng)
    result = drift.compare(ref, cur, threshold=0.1)
    assert result["drift_detected"] is False
    assert result["drift_score"] < 0.05
    assert result["drifted_features"] == []
    assert len(result["features"]) == 10 and result["skipped"] == {} and result["warnings"] == []


@pytest.mark.parametrize("feature", ["x0", "x4", "x5", "x7"])
@pytest.mark.parametrize("seed", range(3))
def test_one_sd_shift_in_one_of_ten_features_is_flagged_first(feature: str, seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    ref, cur = _frame(10_000, rng), _frame(10_000, rng, shift_feature=feature)
    result = drift.compare(ref, cur, threshold=0.1)
    assert result["drift_detected"] is True
    assert next(iter(result["features"])) == feature
    assert result["drifted_features"] == [feature]
    entry = result["features"][feature]
    assert entry["effect"] == result["drift_score"] > 0.25
    assert entry["effect"] == pytest.approx(entry["score"] - entry["score_bias"])
    assert entry["kind"] == "numeric" and entry["method"] == "ks+psi"
    assert entry["p_value"] < 1e-10


def test_result_shape_order_and_json() -> None:
    rng = np.random.default_rng(7)
    ref, cur = _frame(5000, rng), _frame(8000, rng, shift_feature="x1", shift=0.3)
    result = drift.compare(ref, cur)
    assert set(result) >= {
        "drift_detected",
        "drift_score",
        "method",
        "features",
        "n_reference",
        "n_current",
        "threshold",
        "warnings",
        "skipped",
        "drifted_features",
    }
    assert (result["n_reference"], result["n_current"], result["threshold"]) == (5000, 8000, 0.1)
    effects = [e["effect"] for e in result["features"].values()]
    assert effects == sorted(effects, reverse=True)
    assert result["drift_score"] == max(e["effect"] for e in result["features"].values() if e["significant"])
    assert result["status"] == "ok" and "Benjamini-Hochberg" in result["decision"]
    for name, e in result["features"].items():
        assert e["drifted"] == (e["significant"] and e["effect"] > 0.1)
        assert (e["n_reference"], e["n_current"]) == (5000, 8000)
        assert e["missing_reference"] == e["missing_current"] == 0.0
        if name in ("category", "channel"):
            assert (e["kind"], e["test"], e["score_name"]) == ("categorical", "chi2", "jensen_shannon")
            assert e["unseen_fraction"] == 0.0 and e["unseen_examples"] == []
        else:
            assert (e["kind"], e["test"], e["score_name"]) == ("numeric", "ks", "psi")
            ks = stats.ks_2samp(ref[name], cur[name])
            assert e["statistic"] == float(ks.statistic) and _close(e["p_value"], float(ks.pvalue))
    json.dumps(result)  # plain Python types only


def test_compare_statistics_match_scipy_on_large_windows() -> None:
    rng = np.random.default_rng(8)
    ref, cur = _frame(30_000, rng), _frame(120_000, rng, shift_feature="x2", shift=0.05)
    result = drift.compare(ref, cur)
    for name in ("x0", "x2", "x4"):
        ks = stats.ks_2samp(ref[name], cur[name])
        e = result["features"][name]
        assert e["statistic"] == float(ks.statistic) and _close(e["p_value"], float(ks.pvalue))
    e = result["features"]["category"]
    cats = ["technical", "billing", "account", "other"]
    table = [[int((ref["category"] == c).sum()) for c in cats], [int((cur["category"] == c).sum()) for c in cats]]
    chi2, p, _dof, _exp = stats.chi2_contingency(table)
    assert _close(e["statistic"], float(chi2)) and _close(e["p_value"], float(p))


def test_categorical_shift_and_unseen_categories() -> None:
    rng = np.random.default_rng(9)
    ref = pd.DataFrame({"channel": rng.choice(["email", "chat", "phone"], 5000, p=[0.5, 0.3, 0.2])})
    cur = pd.DataFrame(
        {"channel": rng.choice(["email", "chat", "phone", "sms", "fax"], 5000, p=[0.2, 0.2, 0.2, 0.3, 0.1])}
    )
    e = drift.compare(ref, cur)["features"]["channel"]
    assert e["drifted"] and e["score"] > 0.25
    assert e["n_categories"] == 3
    assert e["unseen_fraction"] == pytest.approx(0.4, abs=0.03)
    assert e["unseen_examples"] == ["sms", "fax"]
    # The unseen categories form one extra bin with reference count 0.
    counts_r = [int((ref["channel"] == c).sum()) for c in ("email", "chat", "phone")] + [0]
    unseen = int(cur["channel"].isin(["sms", "fax"]).sum())
    counts_c = [int((cur["channel"] == c).sum()) for c in ("email", "chat", "phone")] + [unseen]
    chi2, _p, _dof, _exp = stats.chi2_contingency(np.vstack([counts_r, counts_c]))
    assert _close(e["statistic"], float(chi2))
    assert _close(e["score"], float(jensenshannon(counts_r, counts_c, base=2)))


def test_integer_codes_compare_as_categories() -> None:
    rng = np.random.default_rng(10)
    ref = pd.DataFrame({"priority": rng.choice([1, 2, 3, 4], 4000, p=[0.35, 0.3, 0.22, 0.13])})
    cur = pd.DataFrame(
        {"priority": rng.choice([1.0, 2.0, 3.0, 4.0, 5.0, np.nan], 4000, p=[0.15, 0.25, 0.3, 0.2, 0.05, 0.05])}
    )
    e = drift.compare(ref, cur)["features"]["priority"]
    assert e["kind"] == "categorical" and e["drifted"]
    assert e["unseen_examples"] == ["5.0"]
    assert e["missing_current"] == pytest.approx(0.05, abs=0.015)
    assert e["n_current"] == 4000 - round(e["missing_current"] * 4000)


# --------------------------------------------------------------------------- edge cases


def test_empty_windows_raise_a_typed_error() -> None:
    ref = pd.DataFrame({"x": [1.0, 2.0, 3.5], "c": ["a", "b", "a"]})
    with pytest.raises(EmptyWindowError) as info:
        drift.compare(ref, ref.iloc[:0])
    assert info.value.window == "current" and "no rows" in str(info.value)
    with pytest.raises(EmptyWindowError) as info:
        drift.compare(ref.iloc[:0], ref)
    assert info.value.window == "reference"
    with pytest.raises(EmptyWindowError) as info:
        drift.compare(pd.DataFrame(), pd.DataFrame())
    assert info.value.window == "both"
    assert isinstance(info.value, ValidationError) and isinstance(info.value, MLOpsError)


def test_single_row_gives_a_result_with_a_warning() -> None:
    rng = np.random.default_rng(12)
    ref = _frame(2000, rng)
    result = drift.compare(ref, ref.iloc[[5]])
    assert set(result["features"]) == set(ref.columns)
    assert result["n_current"] == 1
    assert any("unreliable" in w for w in result["warnings"])
    for e in result["features"].values():
        assert np.isfinite(e["score"]) and 0 <= e["p_value"] <= 1


def test_all_nan_and_missing_columns_are_skipped_with_warnings() -> None:
    rng = np.random.default_rng(13)
    ref = _frame(3000, rng).drop(columns=["x7"])
    cur = _frame(3000, rng).drop(columns=["x6"])
    ref["empty_ref"] = np.nan
    cur["empty_ref"] = 1.0
    cur["x0"] = np.nan
    cur["category"] = None
    result = drift.compare(ref, cur)
    assert result["skipped"] == {
        "x0": "no finite current values (all missing)",
        "x6": "missing from the current window",
        "category": "no non-missing current values (all missing)",
        "empty_ref": "no finite reference values (all missing)",
        "x7": "not in the reference data",
    }
    assert len(result["warnings"]) == 5
    assert all("skipped" in w for w in result["warnings"])
    assert set(result["features"]) == {"x1", "x2", "x3", "x4", "x5", "channel"}
    assert result["drift_detected"] is False


def test_nothing_comparable_raises() -> None:
    ref = pd.DataFrame({"a": [1.0, 2.0, 3.5]})
    with pytest.raises(EmptyWindowError) as info:
        drift.compare(ref, pd.DataFrame({"a": [np.nan, np.nan]}))
    assert info.value.window == "current" and "'a'" in str(info.value)
    with pytest.raises(EmptyWindowError) as info:
        drift.compare(ref, pd.DataFrame({"b": [1.0]}))
    assert info.value.window == "both"


def test_missing_values_are_dropped_and_counted() -> None:
    rng = np.random.default_rng(14)
    ref = pd.DataFrame({"x": rng.normal(size=4000), "c": rng.choice(["a", "b", "c"], 4000)})
    cur = ref.copy()
    cur.loc[:999, "x"] = np.nan
    cur.loc[1000:1099, "x"] = np.inf
    cur.loc[:399, "c"] = None
    result = drift.compare(ref, cur)
    x, c = result["features"]["x"], result["features"]["c"]
    assert (x["n_current"], x["missing_current"]) == (2900, 1100 / 4000)
    assert (c["n_current"], c["missing_current"]) == (3600, 0.1)
    ks = stats.ks_2samp(ref["x"], cur["x"].to_numpy()[1100:])
    assert x["statistic"] == float(ks.statistic)


def test_dtype_mismatches_and_odd_columns_never_crash() -> None:
    rng = np.random.default_rng(15)
    n = 500
    ref = pd.DataFrame(
        {
            "num": rng.normal(size=n),
            "num_as_text": rng.normal(size=n),
            "num_as_objects": rng.normal(size=n),
            "nullable": pd.array(rng.integers(0, 50, n), dtype="Int64"),
            "flag": rng.random(n) < 0.3,
            "when": pd.date_range("2024-01-01", periods=n, freq="h"),
            "codes": rng.integers(0, 4, n),
            "codes_as_words": rng.integers(0, 4, n),
            "lists": [[i % 3] for i in range(n)],
            "cat_unused": pd.Categorical(rng.choice(["a", "b"], n), categories=["a", "b", "z"]),
        }
    )
    cur = pd.DataFrame(
        {
            "num": rng.normal(size=n).astype(np.float32),
            "num_as_text": ["n/a"] * n,
            "num_as_objects": pd.Series(list(rng.normal(size=n - 1)) + [None], dtype=object),
            "nullable": pd.array([None] * 10 + list(rng.integers(0, 50, n - 10)), dtype="Int64"),
            "flag": rng.random(n) < 0.3,
            "when": pd.date_range("2024-02-01", periods=n, freq="h"),
            "codes": ["1", "2"] * (n // 2),  # numbers as text, e.g. from JSON: still matched
            "codes_as_words": ["low", "high"] * (n // 2),
            "lists": [[i % 2] for i in range(n)],
            "cat_unused": rng.choice(["a", "b"], n),
        }
    )
    result = drift.compare(ref, cur)
    assert set(result["skipped"]) == {"num_as_text", "when", "lists"}
    assert "not numeric" in result["skipped"]["num_as_text"]
    assert "unsupported dtype" in result["skipped"]["when"]
    assert "cannot be counted" in result["skipped"]["lists"]
    f = result["features"]
    assert f["num"]["kind"] == f["num_as_objects"]["kind"] == f["nullable"]["kind"] == "numeric"
    assert f["num_as_objects"]["n_current"] == n - 1
    assert f["nullable"]["missing_current"] == 10 / n
    assert f["flag"]["kind"] == "categorical" and not f["flag"]["drifted"]
    assert f["codes"]["unseen_fraction"] == 0.0 and f["codes"]["drifted"]
    assert f["codes_as_words"]["unseen_fraction"] == 1.0 and f["codes_as_words"]["score"] == 1.0
    assert f["codes_as_words"]["unseen_examples"] == ["low", "high"]
    assert f["cat_unused"]["n_categories"] == 2 and not f["cat_unused"]["drifted"]
    json.dumps(result)


@pytest.mark.parametrize("threshold", [-0.1, float("nan"), float("inf"), "0.1", True, None])
def test_bad_threshold_is_refused(threshold: object) -> None:
    df = pd.DataFrame({"x": [1.0, 2.0]})
    with pytest.raises(ValidationError, match="threshold"):
        drift.compare(df, df, threshold=threshold)  # type: ignore[arg-type]


def test_threshold_zero_and_features_argument() -> None:
    rng = np.random.default_rng(16)
    ref, cur = _frame(2000, rng), _frame(2000, rng)
    result = drift.compare(ref, cur, threshold=0.0, features=["x0", "category", "nope"])
    assert list(result["skipped"]) == ["nope"] and set(result["features"]) == {"x0", "category"}
    # threshold 0: any significant feature drifts; identical distributions stay clean
    assert result["drift_detected"] is False and result["drift_score"] == 0.0
    with pytest.raises(ValidationError):
        drift.compare(ref, cur, features="x0")  # type: ignore[arg-type]


def test_bad_inputs_are_refused() -> None:
    df = pd.DataFrame({"x": [1.0, 2.0]})
    with pytest.raises(ValidationError, match="DataFrame"):
        drift.compare([1, 2, 3], df)
    with pytest.raises(ValidationError, match="duplicate"):
        drift.compare(pd.DataFrame([[1, 2]], columns=["a", "a"]), df)
    with pytest.raises(ValidationError):
        drift.compare({"x": [1, 2], "y": [1]}, df)
    result = drift.compare({"x": [1.5, 2.5, 3.5]}, df)  # a mapping is accepted
    assert "x" in result["features"]
    with pytest.raises(ValidationError):
        drift.ks_test(np.ones((3, 3)), [1.0])
    with pytest.raises(ValidationError):
        drift.ks_test(["a", "b"], [1.0])
    with pytest.raises(EmptyWindowError):
        drift.ks_test([], [1.0])


def test_the_package_keeps_the_old_module_surface() -> None:
    """drift.py became a package: what importers used is still importable from its top."""
    from mlops_jupyter.monitoring.drift import METHOD, _check_threshold, compare  # drift_check's

    assert compare is drift.comparison.compare and callable(compare)  # the function, not the module
    assert "Benjamini-Hochberg" in METHOD and _check_threshold(0) == 0.0
    assert set(drift.__all__) == {
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
    }
    for name in [*drift.__all__, "PSI_BINS", "MIN_RELIABLE_N", "_counts_at"]:
        assert getattr(drift, name) is not None, name
