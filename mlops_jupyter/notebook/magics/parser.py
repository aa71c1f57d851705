"""argparse for magics: errors become IPython ``UsageError``s (one line, no traceback)."""

from __future__ import annotations

import argparse
import ast
from collections.abc import Mapping
from typing import Any, NoReturn

from IPython.core.error import UsageError


class MagicArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise ``UsageError`` instead of exiting."""

    def __init__(self, command: str, description: str, magic: str = "%mlops", **kwargs: Any) -> None:
        super().__init__(
            prog=f"{magic} {command}", description=description, add_help=False, exit_on_error=False, **kwargs
        )

    def error(self, message: str) -> NoReturn:
        usage = " ".join(self.format_usage().split()[1:])  # argparse wraps long usages: keep one line
        raise UsageError(f"{self.prog}: {message}. Usage: {usage}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError(message or f"{self.prog}: invalid arguments")

    def parse(self, argv: list[str]) -> argparse.Namespace:
        try:
            return self.parse_args(argv)
        except argparse.ArgumentError as exc:
            self.error(str(exc))


def parse_pairs(
    pairs: list[str] | None, user_ns: Mapping[str, Any], what: str, numeric: bool = False
) -> dict[str, Any]:
    """``["k=v", ...]`` to a dict. ``v`` is a Python literal, else a notebook variable, else
    (unless ``numeric``) the plain string."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{what}: expected KEY=VALUE, got {pair!r} (e.g. max_depth=10 or lr=learning_rate)")
        try:
            value: Any = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            if raw.isidentifier() and raw in user_ns:
                value = user_ns[raw]
            elif numeric:
                raise UsageError(f"{what}: {key}={raw!r} is neither a number nor a notebook variable") from None
            else:
                value = raw
        out[key] = value
    return out
