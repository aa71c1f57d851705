"""The notebook layer: ``%mlops`` magics and cell autolog (a thin skin over the core)."""

from __future__ import annotations

from typing import Any

_INSTANCES: dict[int, Any] = {}


def register(ipython: Any) -> Any:
    """Register ``%mlops`` on ``ipython`` (idempotent); returns the magics instance."""
    from mlops_jupyter.notebook.magics.magic import MLOpsMagics

    existing = _INSTANCES.get(id(ipython))
    if existing is not None:
        return existing
    magics = MLOpsMagics(shell=ipython)  # IPython's Magics.__init__ appends it to shell.configurables
    ipython.register_magics(magics)
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)
    _INSTANCES[id(ipython)] = magics
    if magics.autolog_on_start:
        magics.autolog.enable()
    return magics


def unregister(ipython: Any) -> None:
    magics = _INSTANCES.pop(id(ipython), None)
    if magics is None:
        return
    if magics.autolog_obj is not None:
        magics.autolog_obj.close()
    magics.restore_env()
    for kind in ("line", "cell"):
        ipython.magics_manager.magics[kind].pop("mlops", None)
    while magics in ipython.configurables:
        ipython.configurables.remove(magics)


def get_magics(ipython: Any) -> Any:
    """The magics instance of ``ipython``, registering it if needed."""
    return register(ipython)
