"""``%mlops ui``: the MLflow UI on this kernel's store, and links to its pages.

One ``mlflow server`` subprocess per store, on 127.0.0.1 and a free port, started on the
first ``%mlops ui`` and reused by later calls (and stopped when the kernel exits). When the
store already is a tracking server (``http(s)://``), that server is the UI and nothing is
started. :func:`current_url` is what the panels use to turn runs, experiments and models
into links (no UI known: no links).
"""

from __future__ import annotations

import atexit
import html
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

#: Most seconds ``%mlops ui`` waits for a fresh MLflow UI to answer.
START_TIMEOUT_S = float(os.environ.get("MLOPS_UI_START_TIMEOUT", "90"))


@dataclass
class UIProcess:
    """A running MLflow UI: its URL, the store it shows, and the process (None for a remote server)."""

    url: str
    store_uri: str
    proc: subprocess.Popen[bytes] | None = None
    log_path: str = ""

    @property
    def alive(self) -> bool:
        return self.proc is None or self.proc.poll() is None


_UIS: dict[str, UIProcess] = {}
_CURRENT: str | None = None


def current_url() -> str | None:
    """The URL of the MLflow UI of this kernel's store, if one is known (``%mlops ui`` ran,
    or the store is a tracking server)."""
    ui = _UIS.get(_CURRENT or "")
    if ui is not None and ui.alive:
        return ui.url
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_ui(settings: Any, progress: Any = None) -> UIProcess:
    """The MLflow UI of ``settings``' store, started if needed (same process on later calls)."""
    global _CURRENT
    uri = settings.tracking_uri
    ui = _UIS.get(uri)
    if ui is not None and ui.alive:
        _CURRENT = uri
        return ui
    if uri.startswith(("http://", "https://")):
        ui = UIProcess(uri.rstrip("/"), uri)
    else:
        ui = _spawn(uri, str(settings.artifact_root), progress)
    _UIS[uri] = ui
    _CURRENT = uri
    return ui


def _spawn(uri: str, artifact_root: str, progress: Any) -> UIProcess:
    port = _free_port()
    log = tempfile.NamedTemporaryFile(prefix="mlops-ui-", suffix=".log", delete=False)  # noqa: SIM115
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    cmd += ["--backend-store-uri", uri, "--default-artifact-root", artifact_root]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=_ui_env())
    log.close()
    ui = UIProcess(f"http://127.0.0.1:{port}", uri, proc, log.name)
    atexit.register(stop_ui, ui)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _healthy(ui.url):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_ui(ui)
            with open(ui.log_path, encoding="utf-8", errors="replace") as f:
                tail = f.read()[-1500:]
            from mlops_jupyter.errors import MLOpsError

            raise MLOpsError(f"the MLflow UI did not start on {ui.url}:\n{tail}", value=uri, reason="ui_not_started")
        if progress is not None:
            progress(f"starting the MLflow UI on {ui.url} ...")
        time.sleep(0.25)  # polling a starting subprocess: there is no event to wait on
    return ui


def _ui_env() -> dict[str, str]:
    """The UI's environment: MLflow 3's server also launches a job runner and seven huey
    consumer processes (LLM judges, trace roll-ups: nothing a notebook's run browser uses),
    each importing MLflow, which about doubled the UI's start-up time on 2 cores; they are
    off (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``) unless the user's environment sets it."""
    return {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def stop_ui(ui: UIProcess) -> None:
    """Stop a UI this kernel started (a remote server is left alone)."""
    if ui.proc is None or ui.proc.poll() is not None:
        return
    try:
        os.killpg(ui.proc.pid, 15)
        ui.proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(ui.proc.pid, 9)
        except ProcessLookupError:
            pass
        ui.proc.wait()


def stop_all() -> None:
    """Stop every UI this kernel started (used by tests and at exit)."""
    global _CURRENT
    for ui in list(_UIS.values()):
        stop_ui(ui)
    _UIS.clear()
    _CURRENT = None


# -- links -----------------------------------------------------------------------------
def run_url(run_id: str, base: str | None = None) -> str | None:
    """MLflow's page of a run (its direct route, no experiment id needed)."""
    base = base or current_url()
    return f"{base}/#/runs/{urllib.parse.quote(str(run_id))}" if base and run_id else None


def experiment_url(experiment_id: str, base: str | None = None) -> str | None:
    base = base or current_url()
    return f"{base}/#/experiments/{urllib.parse.quote(str(experiment_id))}" if base and experiment_id else None


def model_url(registered_name: str, version: Any = None, base: str | None = None) -> str | None:
    """MLflow's page of a registered model, or of one of its versions (MLflow's number)."""
    base = base or current_url()
    if not base or not registered_name:
        return None
    url = f"{base}/#/models/{urllib.parse.quote(str(registered_name), safe='')}"
    return f"{url}/versions/{urllib.parse.quote(str(version))}" if version not in (None, "") else url


def link(text: str, url: str | None, label: str | None = None) -> str:
    """``text`` as an HTML link opening in a new tab (plain escaped text when no URL)."""
    t = html.escape(str(text))
    if not url:
        return t
    aria = f' aria-label="{html.escape(label)}"' if label else ""
    return f'<a href="{html.escape(url)}" target="_blank" rel="noopener"{aria}>{t}</a>'


def model_link(pipeline: Any, model_id: str) -> str:
    """``model_id`` as HTML, linked to its registered model's MLflow page when a UI is known."""
    url = model_url(pipeline.tracker.tenancy.model_name(model_id))
    return link(model_id, url, f"{model_id} in MLflow")


def experiment_link(pipeline: Any, experiment: str) -> str:
    """``experiment`` (the tenant's name for it) as HTML, linked to MLflow's page of it
    when a UI is known and the experiment exists."""
    if current_url() is None:
        return html.escape(experiment)
    try:
        exp = pipeline.tracker.store.client.get_experiment_by_name(pipeline.tracker.tenancy.experiment_name(experiment))
    except Exception:  # a name the tenant cannot have: plain text
        exp = None
    return link(experiment, experiment_url(exp.experiment_id) if exp is not None else None, f"{experiment} in MLflow")
