"""Alert conditions (mlops_jupyter.monitoring.alerts.grammar, .tree) and durations (.durations): a safe
grammar, never eval."""

from __future__ import annotations

import builtins
import itertools
import math
import re
from pathlib import Path

import pytest

from mlops_jupyter.errors import (
    AlertRuleError,
    InvalidDurationError,
    MLOpsError,
    ValidationError,
)
from mlops_jupyter.monitoring.alerts import durations, tree
from mlops_jupyter.monitoring.alerts import grammar as alert_rules
from mlops_jupyter.monitoring.alerts.durations import parse_duration
from mlops_jupyter.monitoring.alerts.grammar import (
    METRICS,
    And,
    Compare,
    FeatureScore,
    Metric,
    Not,
    Number,
    Or,
    parse_condition,
)

VALUES = {
    "drift_score": 0.15,
    "success_rate": 0.97,
    "error_rate": 0.03,
    "avg_latency": 0.12,
    "p95_latency": 0.4,
    "prediction_count": 1200,
}
SCORES = {"age": 0.3, "channel": 0.02, "it's": 0.5}


@pytest.mark.parametrize(
    "text,expected",
    [
        ("drift_score > 0.1", True),
        ("drift_score >= 0.15", True),
        ("drift_score < 0.15", False),
        ("drift_score <= .15", True),
        ("prediction_count == 1200", True),
        ("prediction_count != 1200", False),
        ("0.1 < drift_score", True),
        ("success_rate < 0.95 and avg_latency > 0.2", False),
        ("success_rate < 0.98 and avg_latency > 0.1", True),
        ("success_rate < 0.95 or p95_latency > 0.3", True),
        ("not drift_score > 0.1", False),
        ("not (error_rate > 0.05)", True),
        ("feature_score('age') > 0.2", True),
        ('feature_score("channel") > 0.2', False),
        ('feature_score("it\'s") >= 0.5', True),
        ("(drift_score) > 1e-1", True),
        ("drift_score > -1 and error_rate > -0.5e-3", True),
        ("((drift_score > 0.1) and ((success_rate > 0.9)))", True),
        ("drift_score>0.1 and(success_rate<1)", True),
        ("  drift_score\n>\t0.1  ", True),
        ("avg_latency > p95_latency", False),
    ],
)
def test_valid_conditions_evaluate(text: str, expected: bool) -> None:
    assert parse_condition(text).evaluate(VALUES, SCORES) is expected


def test_precedence_not_and_or() -> None:
    """``not a and b or c`` is ``((not a) and b) or c``, as in Python."""
    cond = parse_condition("not drift_score > 0.1 and success_rate < 0.9 or error_rate > 0.5")
    a = Compare(">", Metric("drift_score"), Number(0.1))
    b = Compare("<", Metric("success_rate"), Number(0.9))
    c = Compare(">", Metric("error_rate"), Number(0.5))
    assert cond.root == Or((And((Not(a), b)), c))
    for va, vb, vc in itertools.product([False, True], repeat=3):
        values = {
            "drift_score": 0.2 if va else 0.0,
            "success_rate": 0.8 if vb else 1.0,
            "error_rate": 0.9 if vc else 0.0,
        }
        assert cond.evaluate(values) is (((not va) and vb) or vc)
    assert parse_condition("drift_score > 0.1 or success_rate < 0.9 and error_rate > 0.5").root == Or((a, And((b, c))))
    assert parse_condition("not not drift_score > 0.1").root == Not(Not(a))


def test_chains_are_flattened_and_str_round_trips() -> None:
    texts = [
        "drift_score > 0.1",
        "success_rate < 0.95 and avg_latency > 0.2",
        "(drift_score > 0.1 or error_rate > 0.1) and not (success_rate < 0.9 or p95_latency > 1)",
        "not (drift_score > 0.1 and feature_score('age') >= 0.25)",
        'feature_score("it\'s") != -3 or prediction_count == 0',
        "drift_score > 1e-07 or drift_score < 1e+20 or avg_latency <= 0.30000000000000004",
        "((drift_score > 1) and (error_rate > 2)) and p95_latency > 3",
    ]
    for text in texts:
        cond = parse_condition(text)
        again = parse_condition(str(cond))
        assert again == cond and str(again) == str(cond)
    assert (
        str(parse_condition("((drift_score > 1) and (error_rate > 2)) and p95_latency > 3"))
        == "drift_score > 1 and error_rate > 2 and p95_latency > 3"
    )
    assert (
        str(parse_condition("(drift_score>.1 or error_rate>.1)and not(success_rate<0.9)"))
        == "(drift_score > 0.1 or error_rate > 0.1) and not success_rate < 0.9"
    )
    assert str(parse_condition("not (avg_latency > 1)")) == "not avg_latency > 1"


def test_names_and_features() -> None:
    cond = parse_condition(
        "drift_score > 0.1 and (feature_score('age') > 0.2 or success_rate < 0.9) "
        "and feature_score('age') < 1 and feature_score('zip') > 0"
    )
    assert cond.names == {"drift_score", "success_rate"}
    assert cond.features == {"age", "zip"}
    assert cond.text.startswith("drift_score > 0.1 and (")


def test_missing_or_nan_values_are_unknown_and_never_fire() -> None:
    gt = parse_condition("drift_score > 0.1")
    assert gt.evaluate({}) is False
    assert gt.evaluate({"drift_score": math.nan}) is False
    assert gt.evaluate({"drift_score": None}) is False  # type: ignore[dict-item]
    assert parse_condition("not drift_score > 0.1").evaluate({}) is False
    assert (
        parse_condition("drift_score > 0.1 or error_rate > 0.1").evaluate({"error_rate": 0.5}) is True
    )  # True or unknown
    assert (
        parse_condition("drift_score > 0.1 and error_rate > 0.1").evaluate({"error_rate": 0.5}) is False
    )  # unknown and True
    assert (
        parse_condition("not (drift_score > 0.1 and error_rate > 0.1)").evaluate({"error_rate": 0.0}) is True
    )  # not (unknown and False) = not False
    assert parse_condition("feature_score('age') > 0.2").evaluate(VALUES) is False
    assert parse_condition("feature_score('age') > 0.2").evaluate(VALUES, {"AGE": 1}) is False


def test_evaluate_refuses_non_numbers() -> None:
    cond = parse_condition("drift_score > 0.1")
    for bad in ("0.2", [0.2], True):
        with pytest.raises(ValidationError, match="drift_score"):
            cond.evaluate({"drift_score": bad})  # type: ignore[dict-item]
    with pytest.raises(ValidationError):
        cond.evaluate([("drift_score", 0.2)])  # type: ignore[arg-type]
    assert cond.evaluate({"drift_score": 1, "unrelated": "text"}) is True


def _check_error(err: AlertRuleError, text: str, position: int) -> None:
    """The error names the position, shows a caret under it, and lists what is allowed."""
    msg = str(err)
    assert err.position == position
    assert f"at position {position}" in msg
    lines = msg.splitlines()
    snippet = next(i for i, line in enumerate(lines) if line.startswith("    "))
    shown, caret = lines[snippet][4:], lines[snippet + 1][4:]
    assert caret.strip() == "^"
    column = len(caret) - 1
    if len(text) <= 80:  # short texts are shown whole: the caret is under the character
        assert shown == "".join(c if c.isprintable() else " " for c in text)
        assert column == position
    else:
        assert shown.startswith("...") or shown == text[: len(shown)]
    assert "Allowed:" in msg
    for name in METRICS:
        assert name in msg
    assert "feature_score('<feature>')" in msg
    assert isinstance(err, ValidationError) and isinstance(err, MLOpsError)
    assert err.text == text


@pytest.mark.parametrize(
    "text,position,fragment",
    [
        ("__import__('os').system('x')", 0, "unknown name '__import__'"),
        ("drift_score.__class__", 11, "attribute access"),
        ("open('f')", 0, "unknown name 'open'"),
        ("feature_score(1)", 14, "feature name in quotes"),
        ("feature_score('a','b')", 17, "exactly one feature name"),
        ("feature_score(drift_score)", 14, "feature name in quotes"),
        ("feature_score > 1", 14, "feature name in quotes"),
        ("lambda: 1", 0, "unknown name 'lambda'"),
        ("drift_score > 0.1; import os", 17, "unexpected character ';'"),
        ("[1]", 0, "unexpected character '['"),
        ("drift_score > 0.1 and x > 1", 22, "unknown name 'x'"),
        ("drift_scor > 0.1", 0, "did you mean 'drift_score'"),
        ("drift_score > 0.1 AND error_rate > 0", 18, "did you mean 'and'"),
        ("True", 0, "unknown name 'True'"),
        ("drift_score", 11, "expected a comparison"),
        ("not drift_score", 15, "expected a comparison"),
        ("(drift_score) and error_rate > 1", 14, "expected a comparison"),
        ("drift_score > 'a'", 14, "string is only allowed"),
        ("'drift_score' > 1", 0, "string is only allowed"),
        ("drift_score > 0.1 and", 21, "expected a number"),
        ("(drift_score > 0.1", 18, "expected ')'"),
        ("drift_score > 0.1)", 17, "unbalanced ')'"),
        ("0.1 < drift_score < 0.5", 18, "do not chain"),
        ("drift_score = 0.1", 12, "use '=='"),
        ("drift_score > 0.1 && error_rate > 0", 18, "use 'and'"),
        ("(drift_score > 1) > 2", 18, "cannot be compared"),
        ("drift_score > (error_rate > 1)", 14, "not a condition"),
        ("drift_score() > 1", 11, "not a function"),
        ("drift_score + 1 > 2", 12, "arithmetic"),
        ("-drift_score > 1", 1, "only allowed before a number"),
        ("drift_score > 1.2.3", 17, "malformed number"),
        ("drift_score > 0x10", 15, "malformed number"),
        ("drift_score > 1e999", 14, "too large"),
        ("drift_score > 0.1 \x00", 18, "unexpected character"),
        ("feature_score('a\nb') > 1", 16, "control character"),
        ("feature_score('age) > 1", 14, "unterminated string"),
        ("feature_score('  ') > 1", 14, "1 to 200 characters"),
        ("drift_score > 0.1 or or", 21, "keyword 'or'"),
        ("é > 1", 0, "unexpected character"),
        ("", 0, "empty"),
        ("   ", 0, "empty"),
    ],
)
def test_hostile_and_malformed_conditions_are_refused(text: str, position: int, fragment: str) -> None:
    with pytest.raises(AlertRuleError) as info:
        parse_condition(text)
    assert fragment in str(info.value)
    _check_error(info.value, text, position)


def test_length_limit() -> None:
    text = "x" * 10_000
    with pytest.raises(AlertRuleError) as info:
        parse_condition(text)
    assert "10000 characters" in str(info.value) and "limit is 500" in str(info.value)
    _check_error(info.value, text, 500)
    ok = " or ".join(["drift_score > 0.1"] * 23)  # 482 characters
    assert len(ok) <= alert_rules.MAX_LENGTH and parse_condition(ok).evaluate(VALUES)


def test_nesting_limit() -> None:
    depth = alert_rules.MAX_DEPTH
    ok = "(" * depth + "drift_score > 0.1" + ")" * depth
    assert parse_condition(ok).evaluate(VALUES)
    deep = "(" * (depth + 1) + "drift_score > 0.1" + ")" * (depth + 1)
    with pytest.raises(AlertRuleError, match="nested more than") as info:
        parse_condition(deep)
    _check_error(info.value, deep, depth)
    nots = "not " * 100 + "drift_score > 0.1"
    with pytest.raises(AlertRuleError, match="nested more than") as info:
        parse_condition(nots)
    _check_error(info.value, nots, 4 * depth)
    parens = "(" * 240 + ")" * 240
    with pytest.raises(AlertRuleError, match="nested more than"):
        parse_condition(parens)


def test_long_text_error_shows_a_window_around_the_position() -> None:
    text = "drift_score > 0.1 and " * 10 + "bogus > 1"
    with pytest.raises(AlertRuleError) as info:
        parse_condition(text)
    _check_error(info.value, text, text.index("bogus"))
    lines = str(info.value).splitlines()
    assert lines[1][4:].startswith("...") and lines[1].endswith("bogus > 1")
    assert lines[1].index("bogus") == lines[2].index("^")


@pytest.mark.parametrize("value", [None, 0.1, b"drift_score > 0.1", ["drift_score > 0.1"]])
def test_non_string_conditions_are_refused(value: object) -> None:
    with pytest.raises(AlertRuleError, match="must be a string") as info:
        parse_condition(value)  # type: ignore[arg-type]
    assert info.value.position is None and "Allowed:" in str(info.value)


def test_no_eval_exec_or_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*_a: object, **_k: object) -> None:
        raise AssertionError("eval/exec/compile must not be used")

    for name in ("eval", "exec", "compile", "__import__"):
        monkeypatch.setattr(builtins, name, forbidden)
    cond = parse_condition("not drift_score > 0.1 and feature_score('a') < 1 or error_rate > 0")
    assert cond.evaluate(VALUES, {"a": 0.5}) is True
    with pytest.raises(AlertRuleError):
        parse_condition("__import__('os').system('echo hacked')")
    monkeypatch.undo()
    for module in (alert_rules, tree, durations):
        source = Path(module.__file__).read_text()
        assert not re.search(r"(?<![\w.])(eval|exec|compile)\(|import ast|from ast", source), module.__name__


@pytest.mark.parametrize(
    "value,seconds",
    [
        ("0s", 0.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("1.5h", 5400.0),
        (" 10 m ", 600.0),
        (0, 0.0),
        (90, 90.0),
        (2.5, 2.5),
        ("366d", 366 * 86400.0),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "5",
        "5M",
        "-5m",
        "5 minutes",
        "1h30m",
        "m",
        "1e3s",
        "inf s",
        "367d",
        -1,
        math.nan,
        math.inf,
        True,
        None,
        [5],
        "5m; rm -rf /",
    ],
)
def test_parse_duration_refuses(value: object) -> None:
    with pytest.raises(InvalidDurationError) as info:
        parse_duration(value)  # type: ignore[arg-type]
    assert "Allowed:" in str(info.value) and "'5m'" in str(info.value)
    assert isinstance(info.value, ValidationError)


def test_tree_nodes_are_plain_values() -> None:
    cond = parse_condition("feature_score('age') > 0.25")
    assert cond.root == Compare(">", FeatureScore("age"), Number(0.25))
    assert cond == parse_condition("  ( feature_score( 'age' ) > 2.5e-1 )")
    assert hash(cond) == hash(parse_condition('feature_score("age")>0.25'))
