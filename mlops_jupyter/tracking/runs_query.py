"""Runs as one pandas DataFrame, fast enough for a panel over ten thousand runs.

``ExperimentTracker.list_experiments`` goes through ``MlflowClient.search_runs``, which
builds an ORM object per param, metric and tag: about 5 s for 10 000 runs on the embedded
sqlite store. A comparison panel needs a table, not objects, so on the embedded store
this module asks storage for the rows straight from MLflow's tables
(:func:`mlops_jupyter.storage.mlflow_sql.read_runs`: runs, params, latest metrics, a few
tags) and pivots them in pandas, which takes a small fraction of that. Other stores (an
MLflow server, PostgreSQL) go through ``list_experiments``.

The same runs as ``list_experiments`` either way: only experiments named ``{tenant}/...``
*and* tagged with the tenant, only runs tagged with the tenant, only active (not deleted)
runs, and the bookkeeping experiments (``model-registry``) only when asked for by name.
Params are MLflow's strings in both paths (as in ``mlflow.search_runs``): a column can hold
runs that logged ``10`` and runs that logged ``"auto"``, and the panels convert numeric
columns themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from mlops_jupyter.errors import ValidationError
from mlops_jupyter.storage import mlflow_sql
from mlops_jupyter.tracking.key_metrics import (  # noqa: F401 (re-exported: the panels import them here)
    HOUSEKEEPING_METRICS,
    PREFERRED_METRICS,
    SORT_METRIC_TAG,
    key_metric,
    key_metrics,
)
from mlops_jupyter.tracking.tracker import BOOKKEEPING_EXPERIMENTS

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from mlops_jupyter.tracking.tracker import ExperimentTracker

#: Columns every frame has, in this order, before the ``params.*`` and ``metrics.*`` ones.
BASE_COLUMNS = (
    "run_id",
    "run_name",
    "experiment_name",
    "status",
    "start_time",
    "end_time",
    "duration",
    "cell",
    "cell_id",
    "kind",
    "parent_run_id",
    "report",
)
#: Tags read into columns (MLflow's parent-run tag, and what cell autolog records).
_TAGS = {
    "mlflow.parentRunId": "parent_run_id",
    "mlops.execution_count": "_count",
    "mlops.cell_id": "cell_id",
    "mlops.kind": "kind",
    "mlops.report.path": "report",
}
_STATUS = {
    "FINISHED": "completed",
    "FAILED": "failed",
    "KILLED": "killed",
    "RUNNING": "running",
    "SCHEDULED": "scheduled",
}


def runs_frame(
    tracker: ExperimentTracker,
    experiment_name: str | None = None,
    max_results: int = 100_000,
    run_ids: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The tenant's runs, newest first, one row per run.

    Args:
        tracker: the tracker whose store and tenant are read.
        experiment_name: only this experiment (default: the tracker's experiment if its
            settings name one, else every experiment of the tenant but the bookkeeping ones).
        max_results: at most this many runs (the newest).
        run_ids: only these runs (others, and other tenants' runs, are left out).

    Returns:
        A DataFrame with :data:`BASE_COLUMNS` (``start_time``/``end_time`` as UTC
        timestamps, ``duration`` in seconds, ``cell`` as ``[n]`` and ``cell_id`` (JupyterLab's id
        of the cell) for cell runs), then
        ``params.<key>`` (strings, as MLflow stores them) and ``metrics.<key>`` (floats,
        the latest value) columns, each group sorted by key.

    Example:
        >>> df = runs_frame(pipeline.tracker)
        >>> df[["run_name", "metrics.accuracy"]].head()
    """
    if not isinstance(max_results, int) or isinstance(max_results, bool) or max_results < 1:
        raise ValidationError(f"Invalid max_results {max_results!r}.", value=max_results, allowed="an int >= 1")
    ids = None if run_ids is None else [str(r) for r in run_ids]
    tracker.flush()
    db = tracker.store.sqlite_db
    if db is not None and db.is_file() and mlflow_sql.read_schema_ok(db):
        return _from_sqlite(tracker, experiment_name, max_results, ids)
    return _from_client(tracker, experiment_name, max_results, ids)


def frame_from_runs(runs: Sequence[dict[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """A runs frame from what ``list_experiments`` (or ``%mlops runs``) returns, or from a
    DataFrame shaped like ``mlflow.search_runs``' (``params.*``/``metrics.*`` columns).
    Params become the strings MLflow stores (``str(value)``), as in :func:`runs_frame`."""
    import pandas as pd

    if isinstance(runs, pd.DataFrame):
        df = runs.copy()
        if "run_name" not in df.columns and "tags.mlflow.runName" in df.columns:
            df["run_name"] = df["tags.mlflow.runName"]
        if "status" in df.columns:
            df["status"] = df["status"].map(lambda s: _STATUS.get(s, s) if isinstance(s, str) else s)
        return _finish(df)
    rows = []
    for r in runs:
        tags = r.get("tags") or {}
        row = {
            k: r.get(k)
            for k in ("run_id", "run_name", "experiment_name", "status", "start_time", "end_time", "duration")
        }
        row["parent_run_id"] = r.get("parent_run_id") or tags.get("mlflow.parentRunId")
        row["kind"] = tags.get("mlops.kind")
        row["_count"] = tags.get("mlops.execution_count")
        row["cell_id"] = tags.get("mlops.cell_id")
        row["report"] = tags.get("mlops.report.path")
        row.update({f"params.{k}": v if isinstance(v, str) else str(v) for k, v in (r.get("params") or {}).items()})
        row.update({f"metrics.{k}": v for k, v in (r.get("metrics") or {}).items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in ("start_time", "end_time"):
        if col in df.columns:
            df[col] = pd.to_datetime(df[col], utc=True, errors="coerce")
    return _finish(df)


# -- the embedded store: rows from MLflow's tables ---------------------------------------
def _from_sqlite(
    tracker: ExperimentTracker, experiment_name: str | None, max_results: int, run_ids: list[str] | None
) -> pd.DataFrame:
    import pandas as pd

    tenancy = tracker.tenancy
    name = experiment_name or tracker.settings.experiment_name
    rows = mlflow_sql.read_runs(
        tracker.store.sqlite_db,
        tenancy,
        experiment=name,
        exclude_experiments=BOOKKEEPING_EXPERIMENTS,
        max_results=max_results,
        run_ids=run_ids,
        tag_keys=list(_TAGS),
    )
    if not rows.experiments:
        return _finish(pd.DataFrame(columns=list(BASE_COLUMNS)))
    exps = {i: tenancy.plain_experiment_name(n) for i, n in rows.experiments.items()}
    runs = pd.DataFrame.from_records(rows.runs, columns=list(mlflow_sql.RUN_COLUMNS), coerce_float=True)
    runs["experiment_name"] = runs.pop("experiment_id").map(lambda i: exps.get(int(i)))
    runs["status"] = runs["status"].map(lambda s: _STATUS.get(s, str(s).lower()))
    start, end = runs["start_time"], runs["end_time"]
    runs["duration"] = ((end - start) / 1000.0).where(end.notna() & start.notna())
    runs["start_time"] = pd.to_datetime(start, unit="ms", utc=True)
    runs["end_time"] = pd.to_datetime(end, unit="ms", utc=True)
    runs = runs.set_index("run_id", drop=False)
    wide = [runs]
    for long_rows, prefix, numeric in ((rows.params, "params.", False), (rows.metrics, "metrics.", True)):
        if long_rows:
            long = pd.DataFrame(long_rows, columns=["run_id", "key", "value"])
            piv = long.pivot(index="run_id", columns="key", values="value")
            piv.columns = [prefix + str(c) for c in piv.columns]
            wide.append(piv.astype(float) if numeric else piv)
    if rows.tags:
        long = pd.DataFrame(rows.tags, columns=["run_id", "key", "value"])
        piv = long.pivot(index="run_id", columns="key", values="value").rename(columns=_TAGS)
        wide.append(piv)
    df = pd.concat(wide, axis=1, join="outer").loc[runs.index] if len(wide) > 1 else runs
    return _finish(df.reset_index(drop=True))


def _from_client(
    tracker: ExperimentTracker, experiment_name: str | None, max_results: int, run_ids: list[str] | None
) -> pd.DataFrame:
    runs = tracker.list_experiments(experiment_name=experiment_name, max_results=max_results)
    if run_ids is not None:
        want = set(run_ids)
        runs = [r for r in runs if r["run_id"] in want]
    return frame_from_runs(runs)


def _finish(df: pd.DataFrame) -> pd.DataFrame:
    """Base columns first (added when missing), a ``cell`` label, then params and metrics."""
    import pandas as pd

    if "_count" in df.columns:
        df["cell"] = df["_count"].map(lambda c: f"[{c}]" if c not in (None, "") and not pd.isna(c) else "")
    df = df.drop(columns=[c for c in ("_count",) if c in df.columns])
    for col in BASE_COLUMNS:
        if col not in df.columns:
            df[col] = "" if col in ("cell", "cell_id", "report") else None
    df["report"] = df["report"].fillna("").astype(str)  # the local HTML of a report run
    df["cell_id"] = df["cell_id"].fillna("").astype(str)  # JupyterLab's id of the cell (cell autolog)
    for col in ("start_time", "end_time"):
        if not pd.api.types.is_datetime64_any_dtype(df[col]):
            df[col] = pd.to_datetime(df[col], utc=True, errors="coerce")
    df["duration"] = pd.to_numeric(df["duration"], errors="coerce")
    params = sorted(c for c in df.columns if isinstance(c, str) and c.startswith("params."))
    metrics = sorted(c for c in df.columns if isinstance(c, str) and c.startswith("metrics."))
    for c in metrics:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df[list(BASE_COLUMNS) + params + metrics].reset_index(drop=True)


def sort_metric_of(experiment: Any) -> str | None:
    """The metric an MLflow experiment's runs are ranked by (its tag), or None."""
    value = (getattr(experiment, "tags", None) or {}).get(SORT_METRIC_TAG)
    return str(value) if value else None


def experiment_sort_metric(tracker: ExperimentTracker, experiment_name: str | None) -> str | None:
    """The sort metric of the tenant's experiment ``experiment_name`` (None: no such
    experiment of this tenant, no tag, or no name)."""
    if not experiment_name:
        return None
    tenancy = tracker.tenancy
    db = tracker.store.sqlite_db
    if db is not None and db.is_file() and mlflow_sql.read_schema_ok(db):  # as runs_frame: no MLflow import
        return mlflow_sql.read_experiment_tag(db, tenancy, experiment_name, SORT_METRIC_TAG)
    exp = tracker.store.client.get_experiment_by_name(tenancy.experiment_name(experiment_name))
    return sort_metric_of(exp) if exp is not None and tenancy.owns_experiment(exp) else None
