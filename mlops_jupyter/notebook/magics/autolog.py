"""Cell autolog: each executed cell that logs something becomes an MLflow run, child of
one session run.

A cell becomes a run when it logs something (top-level literal params, a scikit-learn
fit, explicit tracker calls) or fails; cells that only display, predict or read data are
counted in the session run (metric ``cells_not_logged``) instead, so the run list holds
what a user compares. ``pre_run_cell`` sets a deferred run (opened by the first explicit
tracker call of the cell); ``post_run_cell`` records status, duration, literal params,
scikit-learn fits (and which run fitted which object, for ``%mlops register``), the
source (artifact) and ends the run without waiting for the store: the background writer stores it, and its journal
keeps it safe if the kernel is killed. The hooks can never break the kernel: an error
inside them is reported once, and autolog turns itself off after repeated failures.
"""

from __future__ import annotations

import os
import re
import sys
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from mlops_jupyter.tracking import notebook_capture as capture
from mlops_jupyter.tracking.tracker import ActiveRun, ExperimentTracker, set_ambient_run

if TYPE_CHECKING:
    from mlops_jupyter.api import MLOpsPipeline

SKIP_MARK = "# mlops: skip"
MAX_FAILURES = 3
#: The cell's source is kept whole as the artifact ``cell.py``, and its start as the tag
#: ``mlops.cell_source`` (for the sidebar's run detail, without an artifact read).
CELL_SOURCE_TAG_CHARS = 5000
_MLOPS_LINE = re.compile(r"^(?:[A-Za-z_]\w*\s*=\s*)?%mlops\b")  # `%mlops ...` or `runs = %mlops runs`
# How far ``shell.execution_count`` is ahead of the running cell's own count in
# ``pre_run_cell``: 1 on IPython versions that advance it before running the cell
# (ipython#15088), 0 on older ones. Learned from ``post_run_cell``'s result.
_COUNT_AHEAD = 1


def notebook_name(shell: Any) -> str | None:
    """The notebook's file name if it can be found: VS Code's variable, ``JPY_SESSION_NAME``,
    or the Jupyter server's sessions API."""
    path = shell.user_ns.get("__vsc_ipynb_file__") or os.environ.get("JPY_SESSION_NAME")
    if not path:
        path = session_path_from_server()
    if not path:
        return None
    base = os.path.basename(str(path))
    return base[:-6] if base.endswith(".ipynb") else base


def session_path_from_server() -> str | None:
    """Ask running Jupyter servers which session owns this kernel (best effort, 1 s)."""
    try:
        import json
        import urllib.request

        from ipykernel.connect import get_connection_file
        from jupyter_server.serverapp import list_running_servers

        kernel_id = os.path.basename(get_connection_file()).split("-", 1)[1].rsplit(".", 1)[0]
        for srv in list_running_servers():
            url = f"{srv['url'].rstrip('/')}/api/sessions"
            req = urllib.request.Request(url, headers={"Authorization": f"token {srv.get('token', '')}"})
            with urllib.request.urlopen(req, timeout=1) as resp:
                for sess in json.load(resp):
                    if sess.get("kernel", {}).get("id") == kernel_id:
                        return sess.get("path") or sess.get("notebook", {}).get("path")
    except Exception:
        return None
    return None


def should_skip(raw: str) -> bool:
    """Empty cells, cells marked ``# mlops: skip``, and cells that only run ``%mlops``."""
    lines = [ln.strip() for ln in raw.strip().splitlines()]
    if not lines:
        return True
    if lines[0].lower().startswith(SKIP_MARK):
        return True
    if lines[0].startswith("%%mlops"):
        return True  # an explicit run cell is its own run
    code = [ln for ln in lines if ln and not ln.startswith("#")]
    return all(_MLOPS_LINE.match(ln) for ln in code)


class CellAutolog:
    """Registers IPython hooks that log each executed cell as a run."""

    def __init__(self, shell: Any, pipeline: MLOpsPipeline) -> None:
        self.shell = shell
        self.pipeline = pipeline
        self.enabled = False
        self.failures = 0
        self.disabled_reason: str | None = None
        self.parent: ActiveRun | None = None
        self._session_tracker: ExperimentTracker | None = None
        self._cell: tuple[ActiveRun, float, Any] | None = None
        self._warned = False
        self.cells_logged = 0
        self.cells_not_logged = 0

    # -- switching ---------------------------------------------------------------------
    def enable(self) -> None:
        if not self.enabled:
            self.shell.events.register("pre_run_cell", self.pre_run_cell)
            self.shell.events.register("post_run_cell", self.post_run_cell)
            self._warm_up()
        self.enabled, self.failures, self.disabled_reason, self._warned = True, 0, None, False

    def _warm_up(self) -> None:
        """Open the store in the background (MLflow import, DB creation: seconds on a fresh
        store), so the first logged cell does not pay for it."""
        from mlops_jupyter.notebook.magics.progress import warm_up

        warm_up(self.pipeline, self.shell)

    def disable(self, reason: str | None = None) -> None:
        if self.enabled:
            for name, cb in (("pre_run_cell", self.pre_run_cell), ("post_run_cell", self.post_run_cell)):
                try:
                    self.shell.events.unregister(name, cb)
                except ValueError:
                    pass
        self.enabled = False
        self.disabled_reason = reason
        if self._cell is not None:
            self._finish_cell(None)

    def close(self) -> None:
        """Turn off and end the session run."""
        self.disable()
        if self.parent is not None and self.parent.is_open:
            self.parent.end()
        self.parent = None

    # -- hooks -------------------------------------------------------------------------
    def pre_run_cell(self, info: Any) -> None:
        try:
            self._start_cell(info)
        except Exception as exc:  # never break the kernel
            self._cell = None
            self._failed(exc)

    def post_run_cell(self, result: Any) -> None:
        try:
            self._finish_cell(result)
        except Exception as exc:
            self._failed(exc)
        finally:
            set_ambient_run(None)

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        what = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"  # one line
        if not self._warned:
            self._warned = True
            print(
                f"mlops autolog: a cell could not be logged ({what}). The cell itself "
                f"ran normally; autolog turns itself off after {MAX_FAILURES} failures.",
                file=sys.stderr,
            )
        if self.failures >= MAX_FAILURES:
            self.disable(reason=f"turned off after {self.failures} failures; last: {what}")
            print(f"mlops autolog: off ({self.disabled_reason}). `%mlops autolog on` to retry.", file=sys.stderr)

    # -- work --------------------------------------------------------------------------
    def _parent(self) -> ActiveRun:
        if self.parent is None or not self.parent.is_open:
            tracker = self._session_tracker = ExperimentTracker(self.pipeline.settings)
            name = notebook_name(self.shell) or f"session-{datetime.now(timezone.utc):%Y-%m-%d-%H%M%S}"
            self.parent = tracker.start_experiment(
                self.pipeline.settings.experiment_name,
                run_name=name,
                tags={"mlops.kind": "session", "mlops.notebook": name},
            )
        return self.parent

    def _start_cell(self, info: Any) -> None:
        self._cell = None
        raw = getattr(info, "raw_cell", "") or ""
        if getattr(info, "silent", False) or should_skip(raw):
            return
        tracker = self.pipeline.tracker
        if tracker.active_run is not None:
            return  # an explicit run (%mlops start / tracker.start_experiment) is open: it wins
        shell_count = self.shell.execution_count
        count = shell_count - _COUNT_AHEAD if getattr(info, "store_history", False) else shell_count
        cell_id = getattr(info, "cell_id", None) or ""
        tags = {"mlops.kind": "cell", "mlops.cell_id": cell_id, "mlops.execution_count": count}

        def open_run() -> ActiveRun:
            return tracker.start_experiment(
                self.pipeline.settings.experiment_name, tags=tags, run_name=f"cell-{count}", parent=self._parent()
            )

        deferred = capture.DeferredRun(tracker, open_run)
        set_ambient_run(deferred)
        self._cell = (deferred, time.perf_counter(), raw, shell_count, count)

    def _finish_cell(self, result: Any) -> None:
        """End the cell's run, or count the cell in the session when it logged nothing.

        A cell is a run when it logged something (literal params, a scikit-learn fit,
        explicit tracker calls) or failed; cells that only show, predict or read data are
        counted in the session run's ``cells_not_logged`` metric instead."""
        if self._cell is None:
            return
        global _COUNT_AHEAD
        deferred, t0, raw, shell_count, count = self._cell
        self._cell = None
        real_count = getattr(result, "execution_count", None)
        if real_count is not None and getattr(result.info, "store_history", False):
            _COUNT_AHEAD = shell_count - real_count
        duration = time.perf_counter() - t0
        err = None if result is None else (result.error_in_exec or result.error_before_exec)
        source = self.shell.transform_cell(raw) if "%" in raw or "!" in raw else raw
        tree = capture.parse(source)
        params = capture.literal_params(tree)
        fits = capture.sklearn_fits(tree, self.shell.user_ns) if ".fit(" in raw else []
        if deferred.run is None and self.pipeline.tracker.active_run is not None:
            return  # the cell opened an explicit run (%mlops start ...): it wins, as in _start_cell
        if deferred.run is None and not (params or fits or err is not None):
            self._count_quiet_cell()
            return
        run = deferred.materialize()
        if not run.is_open:
            return
        self._log_cell(run, params, fits, err, duration, raw, count, real_count)

    def _count_quiet_cell(self) -> None:
        self.cells_not_logged += 1
        parent = self._parent()
        parent.log_metrics({"cells_not_logged": self.cells_not_logged}, step=self.cells_not_logged)

    def _log_cell(
        self,
        run: ActiveRun,
        params: dict[str, Any],
        fits: list[dict[str, Any]],
        err: BaseException | None,
        duration: float,
        raw: str,
        count: int,
        real_count: int | None,
    ) -> None:
        tracker = self.pipeline.tracker
        params = {k: v for k, v in params.items() if k not in run.params}
        for fit in fits:
            params.update({k: v for k, v in fit["params"].items() if k not in params and k not in run.params})
        if params:
            try:
                tracker.log_params(params, run=run)
            except Exception:
                # a value changed between re-executions of the same run is not an error here
                tracker.log_params(
                    {k: v for k, v in params.items() if k not in run.params and len(str(v)) <= 6000}, run=run
                )
        metrics = {"cell_duration_s": duration}
        for fit in fits:
            metrics.update(fit["metrics"])
        tracker.log_metrics(metrics, run=run)
        tags = {"mlops.cell.duration_s": f"{duration:.6f}", "mlops.cell_source": raw[:CELL_SOURCE_TAG_CHARS]}
        if real_count is not None and real_count != count:
            tags["mlops.execution_count"] = str(real_count)
        if fits:
            tags["mlops.cell.estimators"] = ",".join(f"{f['name']}={type(f['estimator']).__name__}" for f in fits)
        if err is not None:
            tags["mlops.error"] = f"{type(err).__name__}: {err}"[:8000]
            tags["mlops.error_type"] = type(err).__name__
        tracker.set_tags(tags, run=run)
        tracker.log_text(raw, "cell.py", run=run)
        if err is not None:  # the FAILED run keeps the whole exception, not just its line
            import traceback

            tracker.log_text("".join(traceback.format_exception(err)), "error.txt", run=run)
        tracker.end_experiment(status="failed" if err is not None else "completed", run=run, wait=False)
        for fit in fits:
            remember_fit(fit["estimator"], run.run_id)
            _save_model_later(run, fit)
        self.cells_logged += 1
        from mlops_jupyter.notebook.widgets import _bus

        _bus.publish(_bus.runs_topic(self.pipeline.settings.tenant), background=True)  # live ComparisonPanels

    def status(self) -> dict[str, Any]:
        return {
            "autolog": "on" if self.enabled else "off",
            "autolog_reason": self.disabled_reason or "",
            "session_run": self.parent.run_id if self.parent is not None else "",
            "cells_logged": self.cells_logged,
            "cells_not_logged": self.cells_not_logged,
        }


_FITTED: dict[int, tuple[Any, str]] = {}


def remember_fit(estimator: Any, run_id: str) -> None:
    """Note that ``run_id`` fitted ``estimator`` (by identity; forgotten with the object)."""
    import weakref

    key = id(estimator)
    try:
        ref: Any = weakref.ref(estimator, lambda _r, key=key: _FITTED.pop(key, None))
    except TypeError:  # not weak-referenceable: keep the object itself
        ref = lambda est=estimator: est  # noqa: E731
    _FITTED[key] = (ref, run_id)


def fitted_by(obj: Any) -> str | None:
    """The id of the run that last fitted ``obj`` (cell autolog or ``%%mlops run``), or None."""
    entry = _FITTED.get(id(obj))
    if entry is None or entry[0]() is not obj:
        return None
    return entry[1]


_EXECUTOR: Any = None


def _save_model_later(run: ActiveRun, fit: dict[str, Any]) -> None:
    """Save the fitted model into the cell run's artifacts (``model/``) off the cell's path."""
    global _EXECUTOR
    import copy
    from concurrent.futures import ThreadPoolExecutor

    if _EXECUTOR is None:
        _EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlops-autolog-model")
    try:
        est = copy.deepcopy(fit["estimator"])  # later cells may refit the same object
    except Exception:
        return
    store, uri = run.tracker.store, run.artifact_uri
    name = fit["name"] or "model"

    def save() -> None:
        import tempfile
        from pathlib import Path

        from mlops_jupyter.registry.artifacts import save_model

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model"
            save_model(est, path)
            store.log_artifact(uri, str(path), f"models/{name}" if name != "model" else None)

    _EXECUTOR.submit(save)


def wait_for_models(timeout: float = 60.0) -> None:
    """Block until fitted models queued by autolog are saved (used at exit and in tests)."""
    if _EXECUTOR is not None:
        fut = _EXECUTOR.submit(lambda: None)
        fut.result(timeout=timeout)
