"""Make a report: execute a notebook with parameters, export it, log it with provenance.

Layout of the run's artifacts::

    report/NAME.ipynb            the executed notebook (failed cell marked)
    report/NAME.html             the self-contained HTML
    provenance/provenance.json   cells in execution order, parameters, git, packages
    provenance/source/NAME.ipynb the notebook file as it was on disk
    provenance/git.diff          uncommitted changes of the notebook and its local modules

Tags: ``mlops.kind=report``, ``mlops.report.status`` (``ok``/``failed``),
``mlops.report.html`` / ``mlops.report.ipynb`` (artifact paths in the run),
``mlops.report.html_uri``, ``mlops.report.path`` (the local HTML file),
``mlops.report.notebook``, ``mlops.report.failed_cell`` and ``mlops.report.error`` when
it failed, ``mlops.git.commit`` / ``mlops.git.dirty`` in a git repository.

Model versions created while the notebook runs carry ``mlops.report_run_id`` and
``mlops.report`` (the kernel gets ``MLOPS_REPORT_RUN_ID`` / ``MLOPS_REPORT_PATH``), so
``get_lineage`` links each version back to its report.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlops_jupyter.config.settings import reports_dir
from mlops_jupyter.config.times import iso_from_datetime
from mlops_jupyter.notebook.reports.execute import execute_notebook
from mlops_jupyter.notebook.reports.html import export_html
from mlops_jupyter.notebook.reports.params import inject_parameters
from mlops_jupyter.notebook.reports.provenance import git_info, sha256_file

DEFAULT_EXPERIMENT = "reports"
ENV_RUN_ID = "MLOPS_REPORT_RUN_ID"
ENV_PATH = "MLOPS_REPORT_PATH"


def make_report(
    notebook: str | os.PathLike[str],
    params: Mapping[str, Any] | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    tenant: str | None = None,
    home: str | os.PathLike[str] | None = None,
    experiment: str | None = None,
    kernel_name: str | None = None,
    timeout: int = 600,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Execute ``notebook`` headless and log it as a report run; see the module docstring.

    Returns:
        ``{"status": "ok"|"failed", "run_id", "experiment_name", "html", "ipynb",
        "failure", "seconds", "artifacts"}``.
    """
    import nbformat

    from mlops_jupyter.api import create_experiment_tracker
    from mlops_jupyter.config import env
    from mlops_jupyter.errors import NotFoundError

    src = Path(notebook).expanduser().resolve()
    if not src.is_file():
        raise NotFoundError(
            f"Notebook {str(notebook)!r} does not exist.", value=str(notebook), allowed="an .ipynb file"
        )
    params = dict(params or {})
    tracker = create_experiment_tracker(tenant_id=tenant, storage_path=home)
    settings = tracker.settings
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out_dir = (
        Path(out).expanduser().resolve() if out else reports_dir(Path(settings.home).resolve()) / f"{src.stem}-{stamp}"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, ipynb_path = out_dir / f"{src.stem}.html", out_dir / f"{src.stem}.ipynb"

    nb = nbformat.read(src, as_version=4)
    # widget state saved with the source is stale (and makes the HTML export load the widget
    # manager); the executed widgets' static views are what the report shows
    nb.metadata.pop("widgets", None)
    injected_at = inject_parameters(nb, params)
    exp = experiment or DEFAULT_EXPERIMENT
    run = tracker.start_experiment(
        exp,
        run_name=f"report-{src.stem}",
        tags={
            "mlops.kind": "report",
            "mlops.report.notebook": str(src),
            "mlops.report.status": "running",
            "mlops.report.path": str(html_path),
        },
    )
    try:
        if params:
            tracker.log_params(params, run=run)
        kernel_env = dict(os.environ)
        kernel_env.update({ENV_RUN_ID: run.run_id, ENV_PATH: str(html_path)})
        if tenant:
            kernel_env[env.MLOPS_TENANT] = tenant
        if home:
            kernel_env[env.MLOPS_HOME] = str(Path(home).resolve())
        kernel_env.pop("JPY_SESSION_NAME", None)
        kernel_env["JPY_SESSION_NAME"] = str(src)  # autolog names the session after the notebook
        result = execute_notebook(
            nb, src.parent, env=kernel_env, kernel_name=kernel_name, timeout=timeout, progress=progress
        )
        nb.metadata["mlops_report"] = {
            **nb.metadata.get("mlops_report", {}),
            "run_id": run.run_id,
            "status": "ok" if result.ok else "failed",
            "parameters": params,
        }
        nbformat.write(nb, ipynb_path)
        html_path.write_text(export_html(nb, result.failure, title=src.stem), encoding="utf-8")

        git = git_info(src, result.probe.get("module_files", []))
        provenance = {
            "notebook": {"path": str(src), "sha256": sha256_file(src)},
            "parameters": params,
            "injected_cell": injected_at,
            "status": "ok" if result.ok else "failed",
            "failure": result.failure,
            "seconds": result.seconds,
            "executed_at": iso_from_datetime(datetime.now(timezone.utc)),
            "cells": result.cells,
            "git": {k: v for k, v in git.items() if k != "diff"} if git else None,
            "kernel": {k: result.probe.get(k) for k in ("python", "executable", "error") if k in result.probe},
            "packages": result.probe.get("packages", {}),
            "host": {"platform": platform.platform(), "cli_python": sys.version.split()[0]},
            "report": {
                "html": f"report/{html_path.name}",
                "ipynb": f"report/{ipynb_path.name}",
                "local_html": str(html_path),
            },
        }
        with tempfile.TemporaryDirectory(prefix="mlops-report-") as tmp:
            pdir = Path(tmp) / "provenance"
            (pdir / "source").mkdir(parents=True)
            (pdir / "provenance.json").write_text(json.dumps(provenance, indent=2, default=str))
            shutil.copy(src, pdir / "source" / src.name)
            if git is not None:
                (pdir / "git.diff").write_text(git["diff"])
            rdir = Path(tmp) / "report"
            rdir.mkdir()
            shutil.copy(html_path, rdir / html_path.name)
            shutil.copy(ipynb_path, rdir / ipynb_path.name)
            tracker.log_artifact(pdir, run=run)
            tracker.log_artifact(rdir, run=run)
            tracker.flush()  # artifacts are copied in the background: before tmp goes
        tags = {
            "mlops.report.status": "ok" if result.ok else "failed",
            "mlops.report.html": f"report/{html_path.name}",
            "mlops.report.ipynb": f"report/{ipynb_path.name}",
            "mlops.report.html_uri": f"{run.artifact_uri}/report/{html_path.name}",
            "mlops.report.seconds": str(result.seconds),
        }
        if git is not None:
            tags.update({"mlops.git.commit": git["commit"] or "", "mlops.git.dirty": str(git["dirty"]).lower()})
        if result.failure:
            tags["mlops.report.failed_cell"] = str(result.failure["cell_index"])
            tags["mlops.report.error"] = f"{result.failure.get('ename')}: {result.failure.get('evalue')}"[:5000]
        tracker.set_tags(tags, run=run)
    except BaseException as exc:
        try:
            tracker.set_tags(
                {"mlops.report.status": "failed", "mlops.report.error": f"{type(exc).__name__}: {exc}"[:5000]}, run=run
            )
        finally:
            tracker.end_experiment(status="failed", run=run)
        raise
    tracker.end_experiment(status="completed" if result.ok else "failed", run=run)
    return {
        "status": "ok" if result.ok else "failed",
        "run_id": run.run_id,
        "experiment_name": exp,
        "tenant": settings.tenant,
        "html": str(html_path),
        "ipynb": str(ipynb_path),
        "failure": result.failure,
        "seconds": result.seconds,
        "artifact_uri": run.artifact_uri,
    }
