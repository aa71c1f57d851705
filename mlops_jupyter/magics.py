"""``%mlops``: for now a stub that says which subcommands come with the magics feature.

The full magic (issue #5: ``init``, ``autolog``, ``start``/``end``, ``runs``, ``register``,
``deploy``, ...) replaces this module. Until then the Python API does everything.
"""

from __future__ import annotations

from typing import Any

COMING = (
    "init", "status", "autolog", "start", "end", "params", "metrics", "run", "runs", "register",
    "versions", "lineage", "deploy", "rollback", "deployments", "predict", "drift", "alert", "help",
)


def _mlops(line: str = "", cell: str | None = None) -> None:
    from IPython.core.error import UsageError

    raise UsageError(
        "%mlops subcommands (" + ", ".join(COMING) + ") come with the magics feature and are not "
        "built yet. Use the Python API meanwhile: "
        "from mlops_jupyter import create_mlops_pipeline; p = create_mlops_pipeline('name')."
    )


def register(ipython: Any) -> None:
    ipython.register_magic_function(_mlops, magic_kind="line_cell", magic_name="mlops")


def unregister(ipython: Any) -> None:
    for kind in ("line", "cell"):
        ipython.magics_manager.magics[kind].pop("mlops", None)
