"""Parameter injection as papermill does it.

The notebook's cell tagged ``parameters`` holds the defaults; the given values go into a new
code cell tagged ``injected-parameters`` inserted right after it (at the top when no cell is
tagged ``parameters``). A previous ``injected-parameters`` cell is replaced.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"


def parse_value(text: str) -> Any:
    """A ``-p name value`` value: a Python literal (``10``, ``0.5``, ``True``, ``None``,
    ``[1, 2]``, ``'x'``) when it parses as one, else the string itself (as papermill)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def parameters_source(params: Mapping[str, Any]) -> str:
    lines = ["# Parameters"]
    for name, value in params.items():
        if not str(name).isidentifier():
            from mlops_jupyter.errors import ValidationError

            raise ValidationError(f"Invalid parameter name {name!r}.", value=name, allowed="a Python identifier")
        lines.append(f"{name} = {value!r}")
    return "\n".join(lines) + "\n"


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def inject_parameters(nb: Any, params: Mapping[str, Any]) -> int | None:
    """Insert the ``injected-parameters`` cell into ``nb`` (in place).

    Returns:
        The index of the injected cell, or None when ``params`` is empty.
    """
    import nbformat

    nb.cells = [c for c in nb.cells if INJECTED_TAG not in _tags(c)]
    if not params:
        return None
    cell = nbformat.v4.new_code_cell(parameters_source(params))
    cell.metadata["tags"] = [INJECTED_TAG]
    at = next((i + 1 for i, c in enumerate(nb.cells) if PARAMETERS_TAG in _tags(c)), 0)
    nb.cells.insert(at, cell)
    return at
