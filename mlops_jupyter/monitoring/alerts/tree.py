"""The tree of a parsed alert condition, and its three-valued evaluation.

:func:`~mlops_jupyter.monitoring.alerts.grammar.parse_condition` turns text into these
frozen dataclasses; nothing here parses. A tree is a plain value: two conditions are equal
when their trees are, and ``str()`` renders the canonical text (with the fewest
parentheses), which parses back to an equal tree.

Evaluation uses three-valued logic: a metric that is missing from the values given (or
NaN) is *unknown*, a comparison with an unknown side is unknown, ``not unknown`` is unknown,
``False and unknown`` is False, ``True or unknown`` is True; the condition holds only when
it is definitely true. So an alert never fires because a metric could not be computed
(``not drift_score > 0.1`` stays quiet when there is no drift score).

Example:
    >>> cond = Condition(And((Compare("<", Metric("success_rate"), Number(0.95)),
    ...                       Not(Compare(">", FeatureScore("age"), Number(0.2))))))
    >>> str(cond)
    "success_rate < 0.95 and not feature_score('age') > 0.2"
    >>> cond.evaluate({"success_rate": 0.9}, {"age": 0.1}), cond.evaluate({"success_rate": 0.9})
    (True, False)
    >>> sorted(cond.names), sorted(cond.features)
    (['success_rate'], ['age'])
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from mlops_jupyter.errors import ValidationError

__all__ = [
    "COMPARISONS",
    "FEATURE_SCORE",
    "METRICS",
    "And",
    "Compare",
    "Condition",
    "FeatureScore",
    "Metric",
    "Node",
    "Not",
    "Number",
    "Or",
    "Value",
]

METRICS: tuple[str, ...] = (
    "drift_score",
    "success_rate",
    "error_rate",
    "avg_latency",
    "p95_latency",
    "prediction_count",
)
"""The metric names a condition may read."""

FEATURE_SCORE = "feature_score"
COMPARISONS: tuple[str, ...] = ("<", "<=", ">", ">=", "==", "!=")


# --------------------------------------------------------------------------- the tree


@dataclass(frozen=True)
class Number:
    """A numeric literal."""

    value: float


@dataclass(frozen=True)
class Metric:
    """One of :data:`METRICS`."""

    name: str


@dataclass(frozen=True)
class FeatureScore:
    """``feature_score('<feature>')``: one feature's drift score."""

    feature: str


@dataclass(frozen=True)
class Compare:
    """``left <op> right`` on two values."""

    op: str
    left: Value
    right: Value


@dataclass(frozen=True)
class Not:
    """``not operand``."""

    operand: Node


@dataclass(frozen=True)
class And:
    """``a and b and ...`` (two or more operands)."""

    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """``a or b or ...`` (two or more operands)."""

    operands: tuple[Node, ...]


Value = Number | Metric | FeatureScore
Node = Compare | Not | And | Or

_PRECEDENCE = {Or: 1, And: 2, Not: 3, Compare: 4}


def _fmt_number(v: float) -> str:
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def quote(s: str) -> str:
    """``s`` in single quotes, or in double quotes when it holds a single quote."""
    return f"'{s}'" if "'" not in s else f'"{s}"'


def _render(node: Node | Value, min_prec: int = 0) -> str:
    if isinstance(node, Number):
        return _fmt_number(node.value)
    if isinstance(node, Metric):
        return node.name
    if isinstance(node, FeatureScore):
        return f"{FEATURE_SCORE}({quote(node.feature)})"
    if isinstance(node, Compare):
        text = f"{_render(node.left)} {node.op} {_render(node.right)}"
    elif isinstance(node, Not):
        text = f"not {_render(node.operand, _PRECEDENCE[Not])}"
    elif isinstance(node, And):
        text = " and ".join(_render(o, _PRECEDENCE[And]) for o in node.operands)
    else:
        text = " or ".join(_render(o, _PRECEDENCE[Or]) for o in node.operands)
    return f"({text})" if _PRECEDENCE[type(node)] < min_prec else text


_Truth = bool | None  # None = unknown


def _lookup(mapping: Mapping[str, float] | None, key: str, what: str) -> float | None:
    if mapping is None or key not in mapping:
        return None
    v = mapping[key]
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ValidationError(
            f"The value of {what} {key!r} must be a number; got {type(v).__name__}.",
            value=v,
            allowed="an int or float (missing or NaN means unknown)",
        )
    f = float(v)
    return None if math.isnan(f) else f


def _value(node: Value, values: Mapping[str, float] | None, feature_scores: Mapping[str, float] | None) -> float | None:
    if isinstance(node, Number):
        return node.value
    if isinstance(node, Metric):
        return _lookup(values, node.name, "metric")
    return _lookup(feature_scores, node.feature, "feature score")


_OPS = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def _truth(node: Node, values: Mapping[str, float] | None, feature_scores: Mapping[str, float] | None) -> _Truth:
    if isinstance(node, Compare):
        a = _value(node.left, values, feature_scores)
        b = _value(node.right, values, feature_scores)
        return None if a is None or b is None else bool(_OPS[node.op](a, b))
    if isinstance(node, Not):
        t = _truth(node.operand, values, feature_scores)
        return None if t is None else not t
    results = [_truth(o, values, feature_scores) for o in node.operands]
    decisive = isinstance(node, Or)  # True decides an `or`, False decides an `and`
    if any(r is decisive for r in results):
        return decisive
    return None if any(r is None for r in results) else not decisive


def _walk(node: Node | Value) -> Iterator[Node | Value]:
    yield node
    if isinstance(node, Compare):
        yield from _walk(node.left)
        yield from _walk(node.right)
    elif isinstance(node, Not):
        yield from _walk(node.operand)
    elif isinstance(node, (And, Or)):
        for o in node.operands:
            yield from _walk(o)


@dataclass(frozen=True)
class Condition:
    """A parsed alert condition.

    Attributes:
        root: the tree (:class:`Compare`, :class:`Not`, :class:`And` or :class:`Or`).
        text: the text it was parsed from (``str(condition)`` is the canonical form).

    Two conditions are equal when their trees are, whatever their spacing or redundant
    parentheses.
    """

    root: Node
    text: str = field(default="", compare=False)

    @property
    def names(self) -> frozenset[str]:
        """The metric names (:data:`METRICS`) the condition reads."""
        return frozenset(n.name for n in _walk(self.root) if isinstance(n, Metric))

    @property
    def features(self) -> frozenset[str]:
        """The feature names used in ``feature_score('...')``."""
        return frozenset(n.feature for n in _walk(self.root) if isinstance(n, FeatureScore))

    def evaluate(
        self, values: Mapping[str, float] | None = None, feature_scores: Mapping[str, float] | None = None
    ) -> bool:
        """Whether the condition holds for these metric values.

        Args:
            values: metric name -> number (e.g. ``{"drift_score": 0.12}``). Missing names
                and NaN are unknown (see the module docstring); extra names are ignored.
            feature_scores: feature name -> drift score, for ``feature_score('...')``.

        Returns:
            True only when the condition is definitely true.

        Raises:
            ValidationError: a value used by the condition is not a number.

        Example:
            >>> from mlops_jupyter.monitoring.alerts.grammar import parse_condition
            >>> c = parse_condition("drift_score > 0.1 or feature_score('age') > 0.2")
            >>> c.evaluate({"drift_score": 0.05}, {"age": 0.3}), c.evaluate({})
            (True, False)
        """
        for mapping, what in ((values, "values"), (feature_scores, "feature_scores")):
            if mapping is not None and not isinstance(mapping, Mapping):
                raise ValidationError(
                    f"{what} must be a mapping of name to number; got {type(mapping).__name__}.",
                    value=type(mapping).__name__,
                    allowed="a dict such as {'drift_score': 0.12}",
                )
        return _truth(self.root, values, feature_scores) is True

    def __str__(self) -> str:
        return _render(self.root)
