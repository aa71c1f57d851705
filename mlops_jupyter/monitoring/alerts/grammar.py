"""Alert conditions in a tiny, safe grammar: the tokenizer and the parser.

A condition is parsed by a hand-written tokenizer and recursive-descent parser into a small
tree; nothing is ever passed to ``eval``, ``exec``, ``compile`` or Python's ``ast``. The
grammar (lowest precedence first, as in Python)::

    condition  := or_expr END
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := value (">" | ">=" | "<" | "<=" | "==" | "!=") value
                | "(" or_expr ")"
    value      := NUMBER | "-" NUMBER | METRIC | "feature_score" "(" STRING ")"
                | "(" value ")"

``METRIC`` is one of :data:`METRICS` (``drift_score``, ``success_rate``, ``error_rate``,
``avg_latency``, ``p95_latency``, ``prediction_count``); ``feature_score('age')`` is one
feature's drift score. Strings (in single or double quotes, no escapes) appear only as
``feature_score``'s argument. Comparisons do not chain (``0.1 < drift_score < 0.5`` is
refused; write ``0.1 < drift_score and drift_score < 0.5``). A condition is at most
:data:`MAX_LENGTH` characters and nests at most :data:`MAX_DEPTH` parentheses / ``not``.
Anything else is refused with :class:`~mlops_jupyter.errors.AlertRuleError`, whose message
shows the condition with a caret under the offending character and what is allowed.

The result is a :class:`~mlops_jupyter.monitoring.alerts.tree.Condition`: a tree of frozen
dataclasses (re-exported here) evaluated with three-valued logic, so a metric that could
not be computed never makes a condition true (see :mod:`~mlops_jupyter.monitoring.alerts.tree`).
Durations (``cooldown``, ``for_``) are read by :mod:`~mlops_jupyter.monitoring.alerts.durations`.

Example:
    >>> cond = parse_condition("success_rate < 0.95 and (avg_latency > 0.2 or drift_score > 0.1)")
    >>> cond.evaluate({"success_rate": 0.9, "avg_latency": 0.5, "drift_score": 0.0})
    True
    >>> sorted(cond.names)
    ['avg_latency', 'drift_score', 'success_rate']
    >>> str(parse_condition("not(drift_score>.1)or(error_rate>=0.05)"))
    'not drift_score > 0.1 or error_rate >= 0.05'
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NoReturn

from mlops_jupyter.errors import AlertRuleError
from mlops_jupyter.monitoring.alerts.tree import (
    COMPARISONS,
    FEATURE_SCORE,
    METRICS,
    And,
    Compare,
    Condition,
    FeatureScore,
    Metric,
    Node,
    Not,
    Number,
    Or,
    Value,
    quote,
)

__all__ = [
    "ALLOWED",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "METRICS",
    "And",
    "Compare",
    "Condition",
    "FeatureScore",
    "Metric",
    "Not",
    "Number",
    "Or",
    "parse_condition",
]

MAX_LENGTH = 500
MAX_DEPTH = 20
MAX_FEATURE_NAME = 200
_KEYWORDS = ("and", "or", "not")

ALLOWED = (
    "the names " + ", ".join(METRICS) + ", feature_score('<feature>'); numbers (0.1, 5, "
    "1e-3, -2); comparisons " + " ".join(COMPARISONS) + "; and, or, not; parentheses; e.g. "
    "'success_rate < 0.95 and avg_latency > 0.2'"
)
"""What a condition may contain, as shown in every :class:`AlertRuleError`."""


# --------------------------------------------------------------------------- tokenizer


@dataclass(frozen=True)
class _Token:
    kind: str  # NUMBER NAME KEYWORD STRING OP LPAREN RPAREN COMMA MINUS END ERROR
    text: str
    pos: int
    value: float = 0.0


_NUMBER_RE = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HINTS = {
    "=": "'=' alone is not a comparison; use '=='",
    "!": "use 'not' instead of '!'",
    "&": "use 'and' instead of '&'",
    "|": "use 'or' instead of '|'",
    ".": "attribute access is not allowed",
    "[": "indexing and lists are not allowed",
    "]": "indexing and lists are not allowed",
    ";": "only one condition, no statements",
    ":": "no lambdas, slices or statements",
    "+": "arithmetic is not allowed",
    "*": "arithmetic is not allowed",
    "/": "arithmetic is not allowed",
    "%": "arithmetic is not allowed",
}


def _tokens(text: str) -> Iterator[_Token]:
    """Yield tokens; a character that starts no token yields one ERROR token and stops."""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
            continue
        if ch.isdigit() or (ch == "." and i + 1 < n and text[i + 1].isdigit()):
            m = _NUMBER_RE.match(text, i)
            assert m is not None
            end = m.end()
            if end < n and (text[end].isalnum() or text[end] in "_."):
                yield _Token("ERROR", f"malformed number {text[i : end + 1]!r}", end)
                return
            value = float(m.group())
            if not math.isfinite(value):
                yield _Token("ERROR", f"number {m.group()!r} is too large", i)
                return
            yield _Token("NUMBER", m.group(), i, value)
            i = end
        elif ch.isascii() and (ch.isalpha() or ch == "_"):
            m = _NAME_RE.match(text, i)
            assert m is not None
            word = m.group()
            yield _Token("KEYWORD" if word in _KEYWORDS else "NAME", word, i)
            i = m.end()
        elif ch in "'\"":
            end = text.find(ch, i + 1)
            if end < 0:
                yield _Token("ERROR", "unterminated string", i)
                return
            body = text[i + 1 : end]
            bad = next((k for k, c in enumerate(body) if not c.isprintable()), None)
            if bad is not None:
                yield _Token("ERROR", "control character in a string", i + 1 + bad)
                return
            yield _Token("STRING", body, i)
            i = end + 1
        elif text.startswith(("<=", ">=", "==", "!="), i):
            yield _Token("OP", text[i : i + 2], i)
            i += 2
        elif ch in "<>":
            yield _Token("OP", ch, i)
            i += 1
        elif ch in "(),-":
            yield _Token({"(": "LPAREN", ")": "RPAREN", ",": "COMMA", "-": "MINUS"}[ch], ch, i)
            i += 1
        else:
            hint = _HINTS.get(ch)
            reason = f"unexpected character {ch!r}" + (f" ({hint})" if hint else "")
            yield _Token("ERROR", reason, i)
            return
    yield _Token("END", "", n)


# --------------------------------------------------------------------------- parser


def _snippet(text: str, pos: int, width: int = 40) -> tuple[str, int]:
    """The part of ``text`` around ``pos`` (printable) and the caret's column in it."""
    start, end = max(0, pos - width), min(len(text), pos + width)
    shown = "".join(c if c.isprintable() else " " for c in text[start:end])
    prefix = "..." if start > 0 else ""
    suffix = "..." if end < len(text) else ""
    return prefix + shown + suffix, len(prefix) + pos - start


def _fail(text: str, pos: int | None, reason: str) -> NoReturn:
    snippet, column = (None, 0) if pos is None else _snippet(text, pos)
    raise AlertRuleError(reason, text=text, position=pos, allowed=ALLOWED, snippet=snippet, caret_column=column)


def _describe(tok: _Token) -> str:
    if tok.kind == "END":
        return "the end of the condition"
    if tok.kind == "STRING":
        return f"the string {quote(tok.text)}"
    return repr(tok.text)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self._it = _tokens(text)
        self.tok: _Token = next(self._it)
        self.depth = 0
        self._check()

    def _check(self) -> None:
        if self.tok.kind == "ERROR":
            _fail(self.text, self.tok.pos, self.tok.text)

    def advance(self) -> _Token:
        tok = self.tok
        if tok.kind != "END":
            self.tok = next(self._it)
            self._check()
        return tok

    def fail(self, reason: str, tok: _Token | None = None) -> NoReturn:
        _fail(self.text, (tok or self.tok).pos, reason)

    def enter(self, tok: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"nested more than {MAX_DEPTH} levels deep", tok)

    def need_condition(self, node: Node | Value, start: _Token) -> Node:
        """``node`` if it is a condition; a bare value is refused where it ends."""
        if isinstance(node, (Number, Metric, FeatureScore)):
            before = self.text[start.pos : self.tok.pos].strip()
            self.fail(f"expected a comparison ({' '.join(COMPARISONS)}) after {before!r}, got {_describe(self.tok)}")
        return node

    # condition := or_expr END
    def condition(self) -> Node:
        start = self.tok
        node = self.need_condition(self.or_expr(), start)
        if self.tok.kind != "END":
            if self.tok.kind == "RPAREN":
                self.fail("unbalanced ')'")
            hint = ""
            if self.tok.kind == "NAME" and self.tok.text.lower() in ("and", "or"):
                hint = f" (did you mean {self.tok.text.lower()!r}? keywords are lowercase)"
            self.fail(f"expected 'and', 'or' or the end of the condition, got {_describe(self.tok)}{hint}")
        return node

    # or_expr := and_expr ("or" and_expr)*; a lone value passes through for "(value)".
    def or_expr(self) -> Node | Value:
        start = self.tok
        first = self.and_expr()
        if not (self.tok.kind == "KEYWORD" and self.tok.text == "or"):
            return first
        items = [self.need_condition(first, start)]
        while self.tok.kind == "KEYWORD" and self.tok.text == "or":
            self.advance()
            start = self.tok
            items.append(self.need_condition(self.and_expr(), start))
        return Or(_flatten(items, Or))

    def and_expr(self) -> Node | Value:
        start = self.tok
        first = self.not_expr()
        if not (self.tok.kind == "KEYWORD" and self.tok.text == "and"):
            return first
        items = [self.need_condition(first, start)]
        while self.tok.kind == "KEYWORD" and self.tok.text == "and":
            self.advance()
            start = self.tok
            items.append(self.need_condition(self.not_expr(), start))
        return And(_flatten(items, And))

    def not_expr(self) -> Node | Value:
        if self.tok.kind == "KEYWORD" and self.tok.text == "not":
            self.enter(self.advance())
            start = self.tok
            node = Not(self.need_condition(self.not_expr(), start))
            self.depth -= 1
            return node
        return self.comparison()

    # comparison := value OP value | "(" or_expr ")"
    def comparison(self) -> Node | Value:
        start = self.tok
        left = self.operand()
        if self.tok.kind != "OP":
            if isinstance(left, (Number, Metric, FeatureScore)) and not (self.tok.kind == "RPAREN" and self.depth > 0):
                self.need_condition(left, start)  # a value alone: refused here
            return left  # a condition, or "(value)" that the enclosing operand closes
        if not isinstance(left, (Number, Metric, FeatureScore)):
            self.fail("a condition cannot be compared; put the comparison inside the parentheses")
        op = self.advance().text
        right_tok = self.tok
        right = self.operand()
        if not isinstance(right, (Number, Metric, FeatureScore)):
            self.fail("expected a number or a metric after the comparison, not a condition", right_tok)
        if self.tok.kind == "OP":
            self.fail(f"comparisons do not chain; combine them with 'and' instead of {self.tok.text!r}")
        return Compare(op, left, right)

    def operand(self) -> Node | Value:
        tok = self.tok
        if tok.kind == "NUMBER":
            self.advance()
            return Number(tok.value)
        if tok.kind == "MINUS":
            self.advance()
            if self.tok.kind != "NUMBER":
                self.fail(f"'-' is only allowed before a number, got {_describe(self.tok)}")
            return Number(-self.advance().value)
        if tok.kind == "LPAREN":
            self.enter(self.advance())
            inner = self.or_expr()
            if self.tok.kind != "RPAREN":
                self.fail(f"expected ')' to close the '(' at position {tok.pos}, got {_describe(self.tok)}")
            self.advance()
            self.depth -= 1
            return inner
        if tok.kind == "NAME":
            if tok.text == FEATURE_SCORE:
                return self.feature_score()
            if tok.text in METRICS:
                self.advance()
                if self.tok.kind == "LPAREN":
                    self.fail(f"{tok.text} is a value, not a function; calls are not allowed")
                return Metric(tok.text)
            self.fail(_unknown(tok.text), tok)
        if tok.kind == "STRING":
            self.fail("a string is only allowed as the argument of feature_score('<feature>')")
        if tok.kind == "KEYWORD":
            self.fail(f"expected a number, a metric or '(', got the keyword {tok.text!r}")
        self.fail(f"expected a number, a metric or '(', got {_describe(tok)}")

    def feature_score(self) -> FeatureScore:
        name_tok = self.advance()
        if self.tok.kind != "LPAREN":
            self.fail("feature_score needs a feature name in quotes, e.g. feature_score('age')")
        self.advance()
        arg = self.tok
        if arg.kind != "STRING":
            self.fail(
                f"feature_score takes one feature name in quotes, e.g. feature_score('age'), got {_describe(arg)}"
            )
        if not arg.text.strip() or len(arg.text) > MAX_FEATURE_NAME:
            self.fail(f"a feature name must be 1 to {MAX_FEATURE_NAME} characters, not blank")
        self.advance()
        if self.tok.kind != "RPAREN":
            self.fail(
                f"feature_score takes exactly one feature name; expected ')' to close "
                f"the call at position {name_tok.pos}, got {_describe(self.tok)}"
            )
        self.advance()
        return FeatureScore(arg.text)


def _flatten(items: list[Node], kind: type[And] | type[Or]) -> tuple[Node, ...]:
    """``a and (b and c)`` is ``a and b and c``: one operator node per chain."""
    out: list[Node] = []
    for item in items:
        out.extend(item.operands if isinstance(item, kind) else (item,))
    return tuple(out)


def _unknown(name: str) -> str:
    known = [*METRICS, FEATURE_SCORE, *_KEYWORDS]
    close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.6)
    return f"unknown name {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def parse_condition(text: str) -> Condition:
    """Parse an alert condition (see the module docstring for the grammar).

    Args:
        text: e.g. ``"drift_score > 0.1"`` or ``"success_rate < 0.95 and avg_latency > 0.2"``.

    Returns:
        A :class:`Condition`; ``str()`` of it is the canonical text, which parses back to an
        equal condition.

    Raises:
        AlertRuleError: the text is not a string, is empty, longer than :data:`MAX_LENGTH`,
            nested deeper than :data:`MAX_DEPTH`, or uses anything outside the grammar. The
            message shows the text with a caret under the offending character, its
            ``.position``, and what is allowed.

    Example:
        >>> c = parse_condition("not drift_score>0.1 and (success_rate < .95)")
        >>> str(c)
        'not drift_score > 0.1 and success_rate < 0.95'
        >>> try:
        ...     parse_condition("drift_score > 0.1; import os")
        ... except AlertRuleError as e:
        ...     print(e.position, str(e).splitlines()[1:3])
        17 ['    drift_score > 0.1; import os', '                     ^']
    """
    if not isinstance(text, str):
        _fail(repr(text)[:80], None, f"a condition must be a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        _fail(text, MAX_LENGTH, f"the condition is {len(text)} characters long; the limit is {MAX_LENGTH}")
    if not text.strip():
        _fail(text, 0, "the condition is empty")
    parser = _Parser(text)
    return Condition(parser.condition(), text)
