"""``%mlops report``: the current notebook's saved copy, executed as a report.

The notebook file is found as cell autolog names its session: VS Code's
``__vsc_ipynb_file__``, ``JPY_SESSION_NAME`` (set by the Jupyter server for the kernel), or
the server's sessions API. The last *saved* copy is executed (save first) in a fresh kernel
by ``mlops-jupyter report`` in a subprocess, with this notebook's tenant and store; cells
that run ``%mlops report`` are skipped there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def notebook_file(shell: Any) -> Path | None:
    """The current notebook's file, if it can be found on disk."""
    from mlops_jupyter.notebook.magics.autolog import session_path_from_server

    raws = [r for r in (shell.user_ns.get("__vsc_ipynb_file__"), os.environ.get("JPY_SESSION_NAME")) if r]
    for raw in raws or [session_path_from_server()]:
        if not raw:
            continue
        p = Path(str(raw)).expanduser()
        for c in [p] if p.is_absolute() else [Path.cwd() / p, Path.cwd() / p.name]:
            if c.suffix == ".ipynb" and c.is_file():
                return c.resolve()
    return None


def report_from_magic(args: argparse.Namespace, magics: Any) -> dict[str, Any]:
    from IPython.core.error import UsageError

    nb = Path(args.notebook).expanduser() if args.notebook else notebook_file(magics.shell)
    if nb is None:
        raise UsageError(
            "%mlops report: cannot find this notebook's file (no JPY_SESSION_NAME, VS Code variable "
            "or Jupyter server session for this kernel). Save the notebook and give it: "
            "%mlops report --notebook PATH.ipynb"
        )
    if not nb.is_file():
        raise UsageError(f"%mlops report: {str(nb)!r} is not a file")
    settings = magics.pipeline.settings
    cmd = [
        sys.executable,
        "-m",
        "mlops_jupyter.cli",
        "report",
        str(nb),
        "--json",
        "--quiet",
        "--tenant",
        settings.tenant,
        "--home",
        str(settings.home),
    ]
    for name, value in args.parameter:
        cmd += ["-p", name, value]
    if args.out:
        cmd += ["--out", args.out]
    env = {k: v for k, v in os.environ.items() if k not in ("MLOPS_REPORT_RUN_ID", "MLOPS_REPORT_PATH")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    try:
        result = json.loads(proc.stdout[proc.stdout.index("{") :])
    except ValueError:
        raise UsageError(f"%mlops report failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}") from None
    out = {k: result.get(k) for k in ("status", "html", "ipynb", "run_id", "experiment_name", "seconds")}
    out["notebook"] = str(nb)
    if result.get("failure"):
        f = result["failure"]
        out["failed_cell"] = f"{f.get('cell_index')}: {f.get('ename')}: {f.get('evalue')}"
    return out
