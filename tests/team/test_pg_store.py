"""The bulk metric store (``mlops+postgresql+psycopg://``, mlops_jupyter/storage/pg_store.py)
against MLflow's own ``SqlAlchemyStore``, both on the session's PostgreSQL.

Every test runs the same calls on both stores, each on its own copy of MLflow's migrated
schema, and compares what they stored (every row of ``metrics`` and ``latest_metrics``) and
how they failed (exception type, error code, message); once through each driver the store's
schemes name: psycopg 3 (``+psycopg``) and psycopg2 (``+psycopg2``, and SQLAlchemy's default
for a bare ``postgresql://``, the URI most MLflow servers are started with). The servers in ``conftest.py`` run
this store behind MLflow's basic-auth app (the tenant tests), so the server path is covered
there.
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.server


DRIVERS = ("psycopg", "psycopg2")


def _url(team, database: str, driver: str) -> str:
    """A copy of the migrated schema, as a SQLAlchemy URL through ``driver``."""
    url = team.postgres.create_database(database, template="mlflow_template")
    return url.replace("postgresql+psycopg://", f"postgresql+{driver}://", 1)


def _stores(team, driver: str):
    """MLflow's store and ours, each on a fresh copy of the migrated schema, both through ``driver``."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from mlops_jupyter.storage.pg_store import tracking_store

    name = uuid.uuid4().hex[:8]
    theirs = SqlAlchemyStore(_url(team, f"stock_{name}", driver), "/tmp/a")
    ours = tracking_store("mlops+" + _url(team, f"bulk_{name}", driver))
    assert ours.bulk and ours.engine.url.drivername == f"postgresql+{driver}"
    return theirs, ours


def _run(store) -> str:
    exp = store.create_experiment(f"e-{uuid.uuid4().hex[:8]}")
    return store.create_run(exp, "u", 0, [], "r").info.run_id


def _rows(store, run_id: str) -> tuple[list, list]:
    with store.engine.connect() as c:
        q = "SELECT key, value, timestamp, step, is_nan FROM {} WHERE run_uuid = %s ORDER BY 1, 2, 3, 4, 5"
        return (
            list(c.exec_driver_sql(q.format("metrics"), (run_id,)).all()),
            list(c.exec_driver_sql(q.format("latest_metrics"), (run_id,)).all()),
        )


def _outcome(fn):
    try:
        fn()
    except Exception as e:
        return (type(e).__name__, getattr(e, "error_code", None), str(e))
    return None


@pytest.fixture(scope="module", params=DRIVERS)
def stores(team, request):
    theirs, ours = _stores(team, request.param)
    yield theirs, ours
    theirs.engine.dispose()
    ours.engine.dispose()


@pytest.mark.parametrize(
    ("scheme", "driver"),
    [
        ("postgresql+psycopg", "postgresql+psycopg"),
        ("postgresql+psycopg2", "postgresql+psycopg2"),
        ("postgresql", "postgresql"),  # SQLAlchemy's default driver: psycopg2
    ],
)
def test_the_entry_point_builds_our_store_and_importing_mlflow_stays_quiet(team, scheme, driver):
    """MLflow loads store plugins while ``mlflow.tracking`` is being imported: a plugin that
    imports MLflow at its top makes every ``import mlflow`` in the environment warn, and one
    that imports the whole product slows every MLflow process (by 0.3 s, measured). Every
    scheme registered in pyproject.toml builds our store on its driver."""
    code = (
        "import mlflow.store.tracking.sqlalchemy_store\n"
        "from mlflow.tracking._tracking_service.utils import _get_store\n"
        "from mlflow.tracking._model_registry.utils import _get_store as registry\n"
        "import sys; s = _get_store(sys.argv[1]); r = registry(sys.argv[1])\n"
        "print(type(s).__name__, type(r).__module__, s.engine.url.drivername, s.bulk)\n"
        "print('mlops_jupyter.api' in sys.modules)"
    )
    uri = "mlops+" + team.postgres.url("mlflow_template").replace("postgresql+psycopg", scheme, 1)
    out = subprocess.run([sys.executable, "-c", code, uri], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Failure attempting to register store" not in out.stderr, out.stderr[-2000:]
    assert out.stdout.split() == [
        "PostgresBulkSqlAlchemyStore",
        "mlflow.store.model_registry.sqlalchemy_store",
        driver,
        "True",
        "False",  # the plugin alone: none of the product's parts imported into every MLflow process
    ]


point = st.tuples(
    st.sampled_from(["loss", "acc", "a/b", "x"]),
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True, width=64),
        st.sampled_from([0.0, 1.0, -1.0, math.nan, math.inf, -math.inf]),
    ),
    st.integers(0, 3),  # timestamp: few values, so equal (step, timestamp) pairs and exact duplicates occur
    st.integers(-2, 3),  # step
)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(point, min_size=0, max_size=12), min_size=1, max_size=5), single=st.booleans())
def test_what_is_stored_is_what_mlflow_stores(stores, batches, single):
    """Random batches, with duplicates within and across batches, NaN, +/-inf, out-of-order
    steps and ties: the same rows in ``metrics`` and the same ``latest_metrics``."""
    from mlflow.entities import Metric

    theirs, ours = stores
    runs = {s: _run(s) for s in stores}
    for batch in batches:
        for store in stores:
            metrics = [Metric(k, v, t, s) for k, v, t, s in batch]
            if single:
                for m in metrics:
                    store.log_metric(runs[store], m)
            else:
                store.log_batch(runs[store], metrics, [], [])
    assert _rows(ours, runs[ours]) == _rows(theirs, runs[theirs])


def test_a_batch_with_params_and_tags_is_mlflows_own_and_still_stored_alike(stores):
    from mlflow.entities import Metric, Param, RunTag

    runs = {s: _run(s) for s in stores}
    for store in stores:
        store.log_batch(
            runs[store], [Metric("m", 1.5, 1, 2), Metric("m", 0.5, 1, 1)], [Param("p", "1")], [RunTag("t", "v")]
        )
        run = store.get_run(runs[store])
        assert run.data.params == {"p": "1"} and run.data.tags["t"] == "v" and run.data.metrics == {"m": 1.5}
    theirs, ours = stores
    assert _rows(ours, runs[ours]) == _rows(theirs, runs[theirs])


@pytest.mark.parametrize(
    "case",
    [
        "missing run",
        "deleted run",
        "bad key",
        "non-numeric value",
        "bad step",
        "step past int64",
        "timestamp past int64",
        "over the batch limit",
    ],
)
def test_bad_calls_fail_as_mlflows_and_write_nothing(stores, case):
    from mlflow.entities import Metric

    runs = {s: _run(s) for s in stores}
    good = Metric("ok", 1.0, 1, 1)
    batch = {
        "missing run": [good],
        "deleted run": [good],
        "bad key": [good, Metric("../up", 1.0, 1, 1)],
        "non-numeric value": [good, Metric("v", "high", 1, 1)],
        "bad step": [good, Metric("s", 1.0, 1, "one")],
        "step past int64": [good, Metric("s", 1.0, 1, 2**63)],  # a foreign client's; ours refuses it at the call
        "timestamp past int64": [good, Metric("t", 1.0, -(2**63) - 1, 1)],
        "over the batch limit": [Metric(f"m{i}", 1.0, 1, 1) for i in range(1001)],
    }[case]
    outcomes = []
    for store in stores:
        run_id = "0" * 32 if case == "missing run" else runs[store]
        if case == "deleted run":
            store.delete_run(run_id)
        failed = _outcome(lambda s=store, r=run_id: s.log_batch(r, batch, [], []))
        outcomes.append(failed and (*failed[:2], failed[2].replace(run_id, "RUN")))
        if case != "missing run":
            assert _rows(store, run_id) == ([], [])
    assert outcomes[0] is not None and outcomes[0][:2] == outcomes[1][:2]
    if case in ("missing run", "deleted run"):
        assert outcomes[0][2] == outcomes[1][2]


def test_concurrent_batches_into_one_run_keep_every_point_and_the_newest_value(stores):
    """Four threads log interleaved steps of the same keys into one run: no deadlock error,
    every point stored once, ``latest_metrics`` holding the greatest step."""
    from mlflow.entities import Metric

    _, ours = stores
    run_id = _run(ours)
    errors: list[BaseException] = []
    keys = [f"k{i}" for i in range(40)]

    def log(offset: int) -> None:
        try:
            for b in range(10):
                step = b * 4 + offset
                ours.log_batch(run_id, [Metric(k, float(step), 0, step) for k in reversed(keys)], [], [])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=log, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads), "a batch still waits on a lock after 60 s"
    points, latest = _rows(ours, run_id)
    assert len(points) == 40 * 40
    assert latest == [(k, 39.0, 0, 39, False) for k in sorted(keys)]


def test_another_schema_or_mlflow_gets_mlflows_own_write(team, caplog):
    """A ``metrics`` table with a column the statements do not write (a later MLflow schema):
    the store says so once and writes through MLflow's code, which still stores every point.
    An MLflow whose store lacks a method the write relies on gets its own class back."""
    from mlflow.entities import Metric

    from mlops_jupyter.storage.pg_store import store_class, tracking_store

    url = team.postgres.create_database(f"later_{uuid.uuid4().hex[:8]}", template="mlflow_template")
    with caplog.at_level("WARNING", logger="mlops_jupyter.storage.pg_store"):
        import sqlalchemy

        engine = sqlalchemy.create_engine(url)
        with engine.begin() as c:
            c.exec_driver_sql("ALTER TABLE metrics ADD COLUMN origin varchar(20)")
        engine.dispose()
        store = tracking_store("mlops+" + url)
    assert store.bulk is False
    assert "MLflow's own metric write (its schema is not the one expected)" in caplog.text
    run_id = _run(store)
    store.log_batch(run_id, [Metric("m", 2.0, 1, 1), Metric("m", 1.0, 1, 0)], [], [])
    assert _rows(store, run_id) == ([("m", 1.0, 1, 0, False), ("m", 2.0, 1, 1, False)], [("m", 2.0, 1, 1, False)])
    store.engine.dispose()

    class OldStore:  # an MLflow without _log_metrics_once and the rest
        pass

    assert store_class(OldStore) is OldStore


def test_with_workspaces_a_batch_reaches_only_its_own_workspaces_runs(team, tmp_path, monkeypatch):
    """``MLFLOW_ENABLE_WORKSPACES``: the entry point builds the bulk write on MLflow's
    workspace-aware store. A batch logged in the run's workspace is stored; the same call
    from another workspace fails as MLflow's own store fails it (the run is not found
    there) and writes nothing; both stores end with the same rows."""
    from mlflow.entities import Metric, Workspace
    from mlflow.store.tracking.sqlalchemy_workspace_store import WorkspaceAwareSqlAlchemyStore
    from mlflow.tracking._workspace.registry import get_workspace_store
    from mlflow.utils.workspace_context import WorkspaceContext

    from mlops_jupyter.storage.pg_store import tracking_store

    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
    name = uuid.uuid4().hex[:8]
    theirs_url = team.postgres.create_database(f"ws_stock_{name}", template="mlflow_template")
    ours_url = team.postgres.create_database(f"ws_bulk_{name}", template="mlflow_template")
    theirs = WorkspaceAwareSqlAlchemyStore(theirs_url, str(tmp_path / "theirs"))
    ours = tracking_store("mlops+" + ours_url, str(tmp_path / "ours"))
    assert isinstance(ours, WorkspaceAwareSqlAlchemyStore) and ours.bulk
    results = []
    for store, url in ((theirs, theirs_url), (ours, ours_url)):
        workspaces = get_workspace_store(url)
        for ws in ("team-a", "team-b"):
            workspaces.create_workspace(Workspace(name=ws))
        with WorkspaceContext("team-a"):
            run_id = _run(store)
            store.log_batch(run_id, [Metric("m", 1.0, 1, 0), Metric("m", 2.0, 2, 1)], [], [])
        with WorkspaceContext("team-b"):
            refused = _outcome(lambda s=store, r=run_id: s.log_batch(r, [Metric("m", 9.0, 3, 2)], [], []))
        results.append((refused, _rows(store, run_id)))
        store.engine.dispose()
    (theirs_refused, theirs_rows), (ours_refused, ours_rows) = results
    assert theirs_refused is not None and ours_refused is not None, "a batch crossed workspaces"
    assert ours_refused[:2] == theirs_refused[:2] == ("MlflowException", "RESOURCE_DOES_NOT_EXIST")
    assert ours_refused[2].split("=")[0] == theirs_refused[2].split("=")[0] == "Run with id"
    assert ours_rows == theirs_rows == ([("m", 1.0, 1, 0, False), ("m", 2.0, 2, 1, False)], [("m", 2.0, 2, 1, False)])
