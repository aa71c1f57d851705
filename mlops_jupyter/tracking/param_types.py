"""The Python types of logged params, kept beside MLflow's strings so reads give them back.

MLflow stores every param as a string (``100`` becomes ``"100"``). When the tracker logs
params it records the type of each one that is not a string in a run tag, written in the
same batch as the params, and reads decode with it. Nothing is guessed from the text: a
param without a recorded type (a string, a value of another type, or a param logged by a
plain MLflow client) is returned as the string MLflow holds.

Format: the tag ``mlops.param_types`` holds a JSON object ``{param key: type}``, the type
one of :data:`TYPES`. A run with many typed params spreads the object over
``mlops.param_types``, ``mlops.param_types.1``, ``mlops.param_types.2``... each at most
MLflow's tag length (keys are placed in the order they were first logged, so a later
``log_params`` call rewrites the last part and adds parts, and never moves a key)::

    mlops.param_types = {"max_depth": "int", "lr": "float", "layers": "list"}

How each type is written and read back (``str(v)`` is what MLflow stores):

==========  ====================  ==============================================
type        Python values         read back with
==========  ====================  ==============================================
``int``     int, numpy integers   ``int(s)``
``float``   float, numpy floats   ``float(s)``
``bool``    bool, numpy bool      ``s == "True"``
``none``    None                  ``None``
``list``,   lists, tuples and     ``ast.literal_eval(s)``, recorded only when
``tuple``,  dicts of literals     that gives the value back at log time
``dict``
==========  ====================  ==============================================

A stored string that does not decode with its recorded type (a hand-edited DB) is returned
as the string.

Example:
    >>> tags = encode({"max_depth": 10, "lr": 0.1, "solver": "lbfgs", "layers": [64, 32]})
    >>> tags
    {'mlops.param_types': '{"max_depth":"int","lr":"float","layers":"list"}'}
    >>> decode({"max_depth": "10", "lr": "0.1", "solver": "lbfgs", "layers": "[64, 32]"}, tags)
    {'max_depth': 10, 'lr': 0.1, 'solver': 'lbfgs', 'layers': [64, 32]}
    >>> decode({"max_depth": "10"}, {})  # logged by a plain MLflow client
    {'max_depth': '10'}
"""

from __future__ import annotations

import ast
import json
import numbers
from collections.abc import Callable, Mapping
from typing import Any

TYPES_TAG = "mlops.param_types"
TYPES = ("int", "float", "bool", "none", "list", "tuple", "dict")
MAX_PART = 8000  # MLflow's tag value limit (tracking.validation.MAX_TAG_VAL_LENGTH)

_CONTAINERS = {list: "list", tuple: "tuple", dict: "dict"}


def type_of(value: Any) -> str | None:
    """The recorded type of a param value, or None when it stays a string."""
    if isinstance(value, str):
        return None
    if value is None:
        return "none"
    if isinstance(value, bool) or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")):
        return "bool"
    if isinstance(value, numbers.Integral):
        return "int"
    if isinstance(value, numbers.Real):
        return "float"
    name = _CONTAINERS.get(type(value))
    if name is not None:
        try:
            if ast.literal_eval(str(value)) == value:
                return name
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    return None


def is_types_tag(key: str) -> bool:
    """Whether a run tag is (a part of) the type record."""
    return key == TYPES_TAG or (key.startswith(TYPES_TAG + ".") and key[len(TYPES_TAG) + 1 :].isdigit())


def encode(values: Mapping[str, Any]) -> dict[str, str]:
    """The type-record tags for a run's params (every param logged so far, in order)."""
    types = {k: t for k, v in values.items() if (t := type_of(v)) is not None}
    if not types:
        return {}
    parts: list[dict[str, str]] = [{}]
    size = 2
    for k, t in types.items():
        item = len(json.dumps({k: t}, separators=(",", ":"))) - 1  # '"k":"t"' and a comma
        if parts[-1] and size + item > MAX_PART:
            parts.append({})
            size = 2
        parts[-1][k] = t
        size += item
    return {
        TYPES_TAG if i == 0 else f"{TYPES_TAG}.{i}": json.dumps(p, separators=(",", ":")) for i, p in enumerate(parts)
    }


def recorded(tags: Mapping[str, str]) -> dict[str, str]:
    """The ``{param key: type}`` record held by a run's tags (empty if none)."""
    out: dict[str, str] = {}
    for key in sorted((k for k in tags if is_types_tag(k)), key=lambda k: (k != TYPES_TAG, len(k), k)):
        try:
            part = json.loads(tags[key])
        except ValueError:
            continue
        if isinstance(part, dict):
            out.update({str(k): t for k, t in part.items() if t in TYPES})
    return out


def _literal(kind: type) -> Callable[[str], Any]:
    def read(s: str) -> Any:
        v = ast.literal_eval(s)
        if type(v) is not kind:
            raise ValueError(s)
        return v

    return read


def _none(s: str) -> None:
    if s != "None":
        raise ValueError(s)


def _bool(s: str) -> bool:
    if s not in ("True", "False"):
        raise ValueError(s)
    return s == "True"


_DECODERS: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "bool": _bool,
    "none": _none,
    "list": _literal(list),
    "tuple": _literal(tuple),
    "dict": _literal(dict),
}


def decode(params: Mapping[str, str], tags: Mapping[str, str]) -> dict[str, Any]:
    """A run's params (MLflow's strings) with the recorded types applied."""
    types = recorded(tags)
    if not types:
        return dict(params)
    out: dict[str, Any] = {}
    for k, s in params.items():
        t = types.get(k)
        if t is not None:
            try:
                out[k] = _DECODERS[t](s)
                continue
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                pass
        out[k] = s
    return out
