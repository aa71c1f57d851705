"""Headless execution with progress: one kernel, cells in order, stop at the first error.

Built on nbclient's documented step API (``setup_kernel`` + ``execute_cell``), so progress
(cell n of N, elapsed time) is reported as each cell finishes. Widgets are executed with
``store_widget_state=False``: their outputs keep the static view (inline SVG/HTML) that the
HTML export shows. After the cells, a probe (not added to the notebook) asks the kernel
which modules it imported (files, for the git diff) and their distributions' versions.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FAILED_TAG = "mlops-report-failed"
ERROR_CELL_TAG = "mlops-report-error"
#: cells that would run a report of this notebook from inside it (``%mlops report``)
_SELF_REPORT = re.compile(r"^\s*(?:[A-Za-z_]\w*\s*=\s*)?%mlops\s+report\b", re.M)

SETUP = r"""
def __mlops_report_setup():
    import importlib.util
    if importlib.util.find_spec("altair") and importlib.util.find_spec("vl_convert"):
        import altair
        altair.renderers.enable("svg")
__mlops_report_setup()
del __mlops_report_setup
"""

PROBE = r"""
def __mlops_report_probe():
    import json, sys, importlib.metadata as md
    files = sorted({getattr(m, "__file__", None) or "" for m in list(sys.modules.values())} - {""})
    tops = {n.split(".")[0] for n in list(sys.modules)}
    try:
        dists = md.packages_distributions()
    except Exception:
        dists = {}
    versions = {}
    for top in sorted(tops):
        for d in dists.get(top, []):
            try:
                versions[d] = md.version(d)
            except Exception:
                pass
    print(json.dumps({"module_files": files, "packages": versions, "python": sys.version.split()[0],
                      "executable": sys.executable}))
__mlops_report_probe()
del __mlops_report_probe
"""


@dataclass
class Execution:
    """What happened: the cells in the order they ran, the failure (if any), the probe."""

    cells: list[dict[str, Any]] = field(default_factory=list)
    failure: dict[str, Any] | None = None
    probe: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failure is None


def _error_of(cell: Any) -> dict[str, Any]:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return {"ename": out.get("ename"), "evalue": out.get("evalue")}
    return {"ename": "CellExecutionError", "evalue": ""}


def _run_quiet(client: Any, source: str, timeout: int = 120) -> str:
    """Run code in the kernel outside the notebook (no cell, no execution count); its stdout."""
    from jupyter_core.utils import run_sync

    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["header"]["msg_type"] == "stream" and msg["content"].get("name") == "stdout":
            out.append(msg["content"]["text"])

    run_sync(client.kc.execute_interactive)(source, store_history=False, timeout=timeout, output_hook=hook)
    return "".join(out)


def execute_notebook(
    nb: Any,
    cwd: Path,
    env: dict[str, str] | None = None,
    kernel_name: str | None = None,
    timeout: int = 600,
    progress: Callable[[str], None] | None = None,
) -> Execution:
    """Execute ``nb`` in place; never raises for a failing cell (see ``Execution.failure``)."""
    from nbclient import NotebookClient
    from nbclient.exceptions import (
        CellExecutionError,
        CellTimeoutError,
        DeadKernelError,
    )

    kernel = kernel_name or nb.metadata.get("kernelspec", {}).get("name") or "python3"
    ipc_dir = tempfile.TemporaryDirectory(prefix="mlops-report-kernel-")
    client = NotebookClient(
        nb,
        kernel_name=kernel,
        timeout=timeout,
        store_widget_state=False,
        record_timing=True,
        allow_errors=False,
        resources={"metadata": {"path": str(cwd)}},
        config=_local_kernel_config(ipc_dir.name),
    )
    result = Execution()
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    total = len(code)
    started = time.perf_counter()
    say = progress or (lambda s: None)
    with client.setup_kernel(**({"env": env} if env is not None else {})):
        try:  # charts as inline SVG (altair's default HTML output loads Vega from a CDN)
            _run_quiet(client, SETUP)
        except Exception:  # a kernel without altair, or another language
            pass
        for n, index in enumerate(code, 1):
            cell = nb.cells[index]
            if _SELF_REPORT.search(cell.source):
                say(f"[{n}/{total}] cell {index}: skipped (%mlops report)  {time.perf_counter() - started:.1f}s")
                result.cells.append({"index": index, "status": "skipped", "source": cell.source})
                continue
            t0 = time.perf_counter()
            try:
                client.execute_cell(cell, index)
                status = "ok"
            except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
                status = "failed"
                err = _error_of(cell)
                if isinstance(exc, (CellTimeoutError, DeadKernelError)):
                    err = {"ename": type(exc).__name__, "evalue": str(exc)[:500]}
                result.failure = {
                    "cell_index": index,
                    "code_cell": n,
                    "execution_count": cell.get("execution_count"),
                    **err,
                }
            took = time.perf_counter() - t0
            result.cells.append(
                {
                    "index": index,
                    "execution_count": cell.get("execution_count"),
                    "status": status,
                    "seconds": round(took, 3),
                    "source": cell.source,
                }
            )
            say(f"[{n}/{total}] cell {index}: {status} in {took:.1f}s, elapsed {time.perf_counter() - started:.1f}s")
            if status == "failed":
                break
        try:
            text = _run_quiet(client, PROBE)
            result.probe = json.loads(text.strip().splitlines()[-1])
        except Exception as exc:  # a dead kernel: provenance without the kernel's view
            result.probe = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    ipc_dir.cleanup()
    result.seconds = round(time.perf_counter() - started, 3)
    if result.failure is not None:
        mark_failure(nb, result.failure)
    return result


def _local_kernel_config(folder: str) -> Any:
    """The report's kernel talks over local IPC sockets in ``folder``, not TCP: nothing is
    reachable from the network, and ipykernel has no reason to print its "running over TCP
    without encryption" warning among the report's progress lines."""
    from traitlets.config import Config

    c = Config()
    c.KernelManager.transport = "ipc"
    c.KernelManager.ip = os.path.join(folder, "kernel")
    return c


def mark_failure(nb: Any, failure: dict[str, Any]) -> None:
    """Tag the failing cell and put a visible error cell right before it (as papermill)."""
    import nbformat

    index = failure["cell_index"]
    cell = nb.cells[index]
    cell.metadata.setdefault("tags", [])
    if FAILED_TAG not in cell.metadata["tags"]:
        cell.metadata["tags"].append(FAILED_TAG)
    note = nbformat.v4.new_markdown_cell(
        '<span id="mlops-failed-cell"></span>\n\n'
        f'<div style="color:#8e0000;font-weight:bold">The report stopped here: this cell failed with '
        f"{failure.get('ename')}: {str(failure.get('evalue', ''))[:300]}. Later cells were not run.</div>"
    )
    note.metadata["tags"] = [ERROR_CELL_TAG]
    nb.cells.insert(index, note)
    nb.metadata.setdefault("mlops_report", {})["failed_cell"] = index
