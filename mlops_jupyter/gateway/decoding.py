"""Decoding a huge scoring body without holding the GIL for its whole length.

``json.loads`` of a 10 MB body is one C call: it holds the GIL for about 0.3 s, and so
stops the gateway's event loop (and every other client) even when it runs in a worker
thread. :func:`loads_yielding` gives the same result (and raises ``ValueError`` where
``json.loads`` does) but walks the outer containers in Python and hands each small inner
value (a row, a record, a number) to the stdlib's C scanner: the GIL is held for a few
microseconds at a time, so the interpreter's thread switch lets the event loop run every
few milliseconds. Rows of plain numbers are decoded a block of :data:`BLOCK_CHARS` at a time, so it costs
little more than ``json.loads``; the gateway uses it for big bodies only.

The same goes for turning a million rows into a float matrix: :func:`matrix_in_slices`
converts slices of rows, not the whole list in one numpy call.

And what a decoded value may be where a number is needed: :func:`bad_number` says why a
value is not a finite number in the float range (``NaN``, ``Infinity``, ``1e999``, ``null``,
a 400-digit integer), :func:`show` shows a value cut short (a 7 MB cell is not echoed).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_WS = re.compile(r"[ \t\n\r]*")
_scan_once = json.JSONDecoder().scan_once
OUTER_LEVELS = 3
"""Container levels walked in Python: body -> format -> rows (then each row in C)."""
BLOCK_CHARS = 64 * 1024
"""Characters of rows of plain numbers decoded per C call."""
SLICE_ROWS = 4096
"""Rows converted per numpy call by :func:`matrix_in_slices`."""


def _fail(msg: str, s: str, i: int) -> ValueError:
    return json.JSONDecodeError(msg, s, i)


def _value(s: str, i: int, depth: int) -> tuple[Any, int]:
    i = _WS.match(s, i).end()
    c = s[i : i + 1]
    if depth < OUTER_LEVELS and c == "[":
        return _array(s, i + 1, depth + 1)
    if depth < OUTER_LEVELS and c == "{":
        return _object(s, i + 1, depth + 1)
    try:
        return _scan_once(s, i)
    except StopIteration as exc:
        raise _fail("Expecting value", s, exc.value) from None


def _block(s: str, i: int) -> tuple[list[Any], int] | None:
    """The whole elements in the next :data:`BLOCK_CHARS` characters from ``i``, decoded in one
    C call, and where they end; None if the window has strings or objects (their brackets
    could be text), or does not decode (then the caller goes element by element)."""
    w = s[i : i + BLOCK_CHARS]
    cut = w.rfind("]") + 1
    if cut == 0:
        return None
    sub = w[:cut]
    if '"' in sub or "{" in sub or sub.count("[") != sub.count("]"):
        return None
    try:
        return json.loads(f"[{sub}]"), i + cut
    except ValueError:
        return None


def _array(s: str, i: int, depth: int) -> tuple[list[Any], int]:
    out: list[Any] = []
    i = _WS.match(s, i).end()
    if s[i : i + 1] == "]":
        return out, i + 1
    while True:
        got = _block(s, i) if depth >= 2 else None
        if got is not None:
            out.extend(got[0])
            i = got[1]
        else:
            v, i = _value(s, i, depth)
            out.append(v)
        i = _WS.match(s, i).end()
        c = s[i : i + 1]
        if c == "]":
            return out, i + 1
        if c != ",":
            raise _fail("Expecting ',' delimiter", s, i)
        i += 1


def _object(s: str, i: int, depth: int) -> tuple[dict[str, Any], int]:
    out: dict[str, Any] = {}
    i = _WS.match(s, i).end()
    if s[i : i + 1] == "}":
        return out, i + 1
    while True:
        if s[i : i + 1] != '"':
            raise _fail("Expecting property name enclosed in double quotes", s, i)
        key, i = _scan_once(s, i)
        i = _WS.match(s, i).end()
        if s[i : i + 1] != ":":
            raise _fail("Expecting ':' delimiter", s, i)
        v, i = _value(s, i + 1, depth)
        out[key] = v
        i = _WS.match(s, i).end()
        c = s[i : i + 1]
        if c == "}":
            return out, i + 1
        if c != ",":
            raise _fail("Expecting ',' delimiter", s, i)
        i = _WS.match(s, i + 1).end()


def loads_yielding(body: bytes | str) -> Any:
    """``json.loads(body)``, holding the GIL only briefly at a time (see the module docstring).

    Example:
        >>> loads_yielding(b'{"instances": [[1, 2.5], [3, NaN]], "params": {}}')
        {'instances': [[1, 2.5], [3, nan]], 'params': {}}
        >>> loads_yielding("[1, 2,]")
        Traceback (most recent call last):
        ...
        json.decoder.JSONDecodeError: Expecting value: line 1 column 7 (char 6)
    """
    s = body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body
    if s.startswith("\ufeff"):
        raise _fail("Unexpected UTF-8 BOM (decode using utf-8-sig)", s, 0)
    v, i = _value(s, 0, 0)
    i = _WS.match(s, i).end()
    if i != len(s):
        raise _fail("Extra data", s, i)
    return v


def matrix_in_slices(rows: list[Any]) -> Any:
    """``numpy.asarray(rows)`` for a long list of rows, converted a slice at a time.

    Raises ``ValueError`` for ragged or nested rows, as ``numpy.asarray`` does.
    """
    import numpy as np

    first = np.asarray(rows[:SLICE_ROWS])
    if first.ndim != 2 or first.dtype.kind not in "biuf":
        return np.asarray(rows)  # not a plain matrix: let the caller's checks name the problem
    out = np.empty((len(rows), first.shape[1]), dtype=np.float64)
    out[: len(first)] = first
    for k in range(SLICE_ROWS, len(rows), SLICE_ROWS):
        part = np.asarray(rows[k : k + SLICE_ROWS])
        if part.ndim != 2 or part.shape[1] != first.shape[1] or part.dtype.kind not in "biuf":
            return np.asarray(rows)
        out[k : k + len(part)] = part
    return out


def pos_in_row(idx: list[int] | None, j: int) -> int:
    """Where column ``j`` of the model's order is in a request row (``idx``: the reordering)."""
    return idx[j] if idx is not None else j


def show(x: Any, limit: int = 80) -> str:
    """A value as the client wrote it, cut to ``limit`` characters (a 7 MB cell is not echoed)."""
    if x is None:
        return "null"
    if isinstance(x, bool):
        return f"{'true' if x else 'false'} (bool)"
    if isinstance(x, float) and not math.isfinite(x):
        return "NaN" if x != x else ("Infinity (or a number beyond the float range)" if x > 0 else "-Infinity")
    text = repr(x)
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text)} characters)"
    return f"{text} ({type(x).__name__})"


def bad_number(x: Any, allow_bool: bool = True) -> tuple[str, str] | None:
    """``(what is expected, what was given)`` if ``x`` is not a finite number in float range, else None.

    Example:
        >>> bad_number(1.5) is None, bad_number(None), bad_number(10**400)
        (True, ('numbers', 'null'), ('numbers in the float range', 'a 401-digit integer'))
        >>> bad_number(float("nan"))
        ('finite numbers', 'NaN')
    """
    if isinstance(x, bool):
        return None if allow_bool else ("numbers", show(x))
    if isinstance(x, int):
        try:
            float(x)
        except OverflowError:
            return "numbers in the float range", f"a {len(str(abs(x)))}-digit integer"
        return None
    if isinstance(x, float):
        return None if math.isfinite(x) else ("finite numbers", show(x))
    return "numbers", show(x)
