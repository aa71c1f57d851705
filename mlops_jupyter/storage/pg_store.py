"""MLflow's PostgreSQL store with metric points written in bulk: a store plugin for a team's server.

A team's ``mlflow server`` over PostgreSQL spends most of a ``log_batch`` of 1 000 metrics
(113-139 ms of its Python) in MLflow's ORM: one ``SqlMetric`` object per point, a read
and lock of each key's latest value, then a flush. This store is MLflow's own
``SqlAlchemyStore`` with that one step replaced: the batch's points go in one multi-row
``INSERT ... ON CONFLICT DO NOTHING`` and its newest value per key in one
``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` newer, in the same transaction. Everything else
(runs, params, tags, the registry, validation, the deadlock retry, MLflow's auth app) is
MLflow's code, and the rows are the ones MLflow writes: its UI and clients read them as usual.

Semantics kept from MLflow's ``_log_metrics_once``:

- every point is validated by MLflow's own validator, and the run must be active;
- a point already stored (same key, timestamp, step, value, NaN flag: the table's primary
  key) is skipped, in the batch and against the table;
- NaN is stored as 0 with ``is_nan``, +/-inf as the largest finite float;
- a key's latest value is the point with the greatest ``(step, timestamp, value)``; keys are
  upserted in sorted order so concurrent batches lock them in the same order.

The statements and the schema they need live with the rest of MLflow's private schema, in
:mod:`mlops_jupyter.storage.mlflow_sql`.

Used by naming the scheme ``mlops+`` before the database URL, on the server (the package
installed in its environment; entry points ``mlflow.tracking_store`` and
``mlflow.model_registry_store``)::

    mlflow server --backend-store-uri mlops+postgresql+psycopg://USER@HOST/DB ...

The registry store of such a URI is MLflow's own, on the same database.

MLflow loads its store plugins while ``mlflow.tracking`` is being imported, so this module
imports nothing of MLflow at its top: the store classes are made at the first call.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

from mlops_jupyter.storage import mlflow_sql

log = logging.getLogger(__name__)

PREFIX = "mlops+"
SCHEMES = ("mlops+postgresql", "mlops+postgresql+psycopg", "mlops+postgresql+psycopg2")


def database_url(store_uri: str) -> str:
    """The SQLAlchemy URL behind a ``mlops+postgresql...`` store URI.

    >>> database_url("mlops+postgresql+psycopg://u@127.0.0.1:5432/db")
    'postgresql+psycopg://u@127.0.0.1:5432/db'
    >>> database_url("sqlite:///x.db")
    Traceback (most recent call last):
    ...
    ValueError: store URI 'sqlite:///x.db': the scheme must be mlops+postgresql[+psycopg|+psycopg2]
    """
    scheme = store_uri.split("://", 1)[0]
    if scheme not in SCHEMES:
        raise ValueError(f"store URI {store_uri!r}: the scheme must be mlops+postgresql[+psycopg|+psycopg2]")
    return store_uri[len(PREFIX) :]


class BulkMetricsMixin:
    """MLflow's metric write in two statements (module docstring); everything else is MLflow's.

    ``bulk`` is False (MLflow's own write everywhere) when the database is not PostgreSQL or
    its schema is not the one the statements write (``mlflow_sql.pg_schema_ok``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bulk = self.db_type == "postgresql" and _schema_ok(self.engine)
        if not self.bulk:
            log.warning(
                "mlops_jupyter: %s: MLflow's own metric write (its schema is not the one expected)",
                self.engine.url.render_as_string(hide_password=True),
            )

    def log_batch(self, run_id: str, metrics: list[Any], params: list[Any], tags: list[Any]) -> None:
        """A batch of metrics only (what a tracker streams) is checked and written in one
        transaction; any other batch is MLflow's ``log_batch`` (its metrics still in bulk)."""
        if (
            not self.bulk
            or params
            or tags
            or not metrics
            or any(getattr(m, "model_id", None) is not None for m in metrics)
        ):
            return super().log_batch(run_id, metrics, params, tags)
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INTERNAL_ERROR
        from mlflow.store.tracking import sqlalchemy_store as base

        base._validate_run_id(run_id)
        metrics, _, _ = base._validate_batch_log_data(metrics, [], [])
        base._validate_batch_log_limits(metrics, [], [])
        try:
            self._run_with_deadlock_retry(self._store_points, run_id, metrics)
        except MlflowException:
            raise
        except Exception as e:
            raise MlflowException(e, INTERNAL_ERROR) from e

    def _log_metrics_once(self, run_id: str, metrics: list[Any]) -> None:
        if not self.bulk:
            return super()._log_metrics_once(run_id, metrics)
        from mlflow.utils.validation import _validate_metric

        single = len(metrics) == 1
        for idx, m in enumerate(metrics):
            _validate_metric(m.key, m.value, m.timestamp, m.step, path="" if single else f"metrics[{idx}]")
        self._store_points(run_id, metrics)

    def _store_points(self, run_id: str, metrics: list[Any]) -> None:
        """The run checked active, its new points inserted and the newest per key upserted, in
        one transaction. A point is ``(key, timestamp, step, value, is_nan)``: the table's key."""
        points: dict[tuple, None] = {}
        for m in metrics:
            is_nan, value = self.sanitize_metric_value(m.value)
            points[(m.key, int(m.timestamp), int(m.step), float(value), is_nan)] = None
        latest: dict[str, tuple] = {}
        for p in points:
            held = latest.get(p[0])
            if held is None or (p[2], p[1], p[3]) > (held[2], held[1], held[3]):
                latest[p[0]] = p
        with self.ManagedSessionMaker(read_only=False) as session:
            db = session.connection()
            self._check_run_is_active(self._run_stage(session, db, run_id))
            if not points:
                return
            db.exec_driver_sql(mlflow_sql.PG_INSERT_POINTS, mlflow_sql.pg_point_columns(run_id, list(points)))
            newest = [latest[k] for k in sorted(latest)]
            db.exec_driver_sql(mlflow_sql.PG_UPSERT_LATEST, mlflow_sql.pg_point_columns(run_id, newest))

    def _run_stage(self, session: Any, db: Any, run_id: str) -> Any:
        """The run as ``_check_run_is_active`` needs it: one column by SQL when runs are not
        scoped (MLflow's ``_get_run`` builds the whole ORM row), else MLflow's ``_get_run``
        (a workspace-aware store adds its workspace filter there)."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        if type(self)._get_query is not SqlAlchemyStore._get_query:
            return self._get_run(session, run_id)
        run = mlflow_sql.pg_run_stage(db, run_id)
        if run is None:  # MLflow's own words (SqlAlchemyStore._get_run)
            raise MlflowException(f"Run with id={run_id} not found", RESOURCE_DOES_NOT_EXIST)
        return run


def _schema_ok(engine: Any) -> bool:
    with engine.connect() as db:
        return mlflow_sql.pg_schema_ok(db)


# What the mixin calls or replaces of MLflow's store (private API): an MLflow without one of
# them gets its own store back, unchanged.
MLFLOW_STORE_API = (
    "_log_metrics_once",
    "_run_with_deadlock_retry",
    "sanitize_metric_value",
    "_check_run_is_active",
    "_get_run",
    "_get_query",
)
MLFLOW_VALIDATORS = ("_validate_run_id", "_validate_batch_log_data", "_validate_batch_log_limits")


@functools.cache
def store_class(base: type) -> type:
    """``base`` (MLflow's ``SqlAlchemyStore`` or its workspace-aware subclass) with the bulk
    write, or ``base`` itself when this MLflow lacks what the write relies on."""
    from mlflow.store.tracking import sqlalchemy_store

    missing = [n for n in MLFLOW_STORE_API if not hasattr(base, n)]
    missing += [n for n in MLFLOW_VALIDATORS if not hasattr(sqlalchemy_store, n)]
    if missing:
        log.warning("mlops_jupyter: MLflow's store has no %s: its own metric write is used", ", ".join(missing))
        return base
    return type(f"PostgresBulk{base.__name__}", (BulkMetricsMixin, base), {"__module__": __name__})


def tracking_store(store_uri: str, artifact_uri: str | None = None) -> Any:
    """The ``mlflow.tracking_store`` entry point: MLflow's builder, with the bulk metric write."""
    from mlflow.environment_variables import MLFLOW_ENABLE_WORKSPACES
    from mlflow.tracking._tracking_service import utils

    if artifact_uri is None:  # as MLflow's builder: inside the server, the server's artifact root
        artifact_uri = os.environ.get(utils._SERVER_ARTIFACT_ROOT_ENV_VAR, utils.DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH)
    if MLFLOW_ENABLE_WORKSPACES.get():
        from mlflow.store.tracking.sqlalchemy_workspace_store import WorkspaceAwareSqlAlchemyStore as base
    else:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as base
    return store_class(base)(database_url(store_uri), artifact_uri)


def registry_store(store_uri: str, tracking_uri: str | None = None) -> Any:
    """The ``mlflow.model_registry_store`` entry point: MLflow's own registry on the same database."""
    from mlflow.tracking._model_registry.utils import _get_sqlalchemy_store

    return _get_sqlalchemy_store(database_url(store_uri))
