"""MLflow's sqlite schema, known in one module (storage/mlflow_sql.py): its checks, the bulk
write path and the fast run read, against a real MLflow DB."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import pytest

import mlops_jupyter
from mlops_jupyter.config.names import Tenancy
from mlops_jupyter.storage import mlflow_sql


def client_for(db: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{db}")


@pytest.fixture
def db(tmp_path, template_db) -> Path:
    d = tmp_path / "mlflow.db"
    shutil.copy(template_db, d)
    return d


def test_schema_checks(db, tmp_path):
    assert mlflow_sql.bulk_schema_ok(db) and mlflow_sql.read_schema_ok(db)
    # a NOT NULL column without a default that the bulk path does not write: refused
    changed = tmp_path / "changed.db"
    shutil.copy(db, changed)
    con = sqlite3.connect(changed)
    con.execute("ALTER TABLE params ADD COLUMN origin TEXT NOT NULL DEFAULT 'x'")  # has a default: fine
    con.commit()
    assert mlflow_sql.bulk_schema_ok(changed)
    con.execute("CREATE TABLE p2 (key TEXT, value TEXT, run_uuid TEXT, origin TEXT NOT NULL)")
    con.execute("DROP TABLE params")
    con.execute("ALTER TABLE p2 RENAME TO params")
    con.commit()
    con.close()
    assert not mlflow_sql.bulk_schema_ok(changed) and not mlflow_sql.read_schema_ok(changed)
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert not mlflow_sql.bulk_schema_ok(empty) and not mlflow_sql.read_schema_ok(empty)


def _experiment(db: Path, tenancy: Tenancy, name: str) -> str:
    return client_for(db).create_experiment(tenancy.experiment_name(name), tags={"mlops.tenant": tenancy.tenant})


def test_bulk_writes_are_what_mlflow_reads_and_replay_safely(db):
    acme = Tenancy("acme")
    exp = _experiment(db, acme, "e")
    ops = [
        {
            "k": "run",
            "id": "r1" * 16,
            "exp": exp,
            "name": "first",
            "user": "me",
            "start": 1000,
            "art": "file:///tmp/a",
            "tags": {"mlops.tenant": "acme"},
        },
        {
            "k": "log",
            "id": "r1" * 16,
            "ts": 1001,
            "step": 0,
            "m": {"loss": 0.5},
            "p": {"depth": "3"},
            "t": {"note": "x"},
        },
        {"k": "log", "id": "r1" * 16, "ts": 1002, "step": 2, "m": {"loss": 0.2}},
        {"k": "log", "id": "r1" * 16, "ts": 1003, "step": 1, "m": {"loss": 0.9}},  # lower step: not the latest
        {"k": "end", "id": "r1" * 16, "status": "FINISHED", "end": 2000},
    ]
    sink = mlflow_sql.SqliteSink(db)
    sink.write(ops)
    sink.write(ops)  # a journal replayed after a crash: nothing doubled
    sink.close()
    run = client_for(db).get_run("r1" * 16)
    assert run.info.status == "FINISHED" and run.info.end_time == 2000 and run.info.run_name == "first"
    assert run.data.params == {"depth": "3"} and run.data.tags["note"] == "x"
    assert run.data.metrics == {"loss": 0.2}
    assert len(client_for(db).get_metric_history("r1" * 16, "loss")) == 3


def test_read_runs_applies_tenancy_exclusions_and_limits(db):
    acme, other = Tenancy("acme"), Tenancy("other")
    e1, e2, e3 = _experiment(db, acme, "a"), _experiment(db, acme, "bookkeeping"), _experiment(db, other, "a")
    ops = []
    for i, (exp, tenant) in enumerate(((e1, "acme"), (e1, "acme"), (e2, "acme"), (e3, "other"), (e1, "other"))):
        rid = f"{i:032d}"
        ops.append(
            {
                "k": "run",
                "id": rid,
                "exp": exp,
                "name": f"r{i}",
                "user": "me",
                "start": 1000 + i,
                "art": "file:///tmp/a",
                "tags": {"mlops.tenant": tenant, "kind": str(i)},
            }
        )
        ops.append({"k": "log", "id": rid, "ts": 1, "step": 0, "m": {"m": float(i)}, "p": {"p": str(i)}})
    mlflow_sql.SqliteSink(db).write(ops)

    rows = mlflow_sql.read_runs(db, acme, max_results=100, tag_keys=["kind"])
    assert sorted(rows.experiments.values()) == ["acme/a", "acme/bookkeeping"]
    assert [r[1] for r in rows.runs] == ["r2", "r1", "r0"]  # newest first; r4 is tagged 'other'
    assert dict(zip(mlflow_sql.RUN_COLUMNS, rows.runs[0]))["start_time"] == 1002
    assert sorted(p[2] for p in rows.params) == ["0", "1", "2"] and sorted(t[2] for t in rows.tags) == ["0", "1", "2"]
    rows = mlflow_sql.read_runs(db, acme, exclude_experiments=["bookkeeping"], max_results=1)
    assert [r[1] for r in rows.runs] == ["r1"] and [m[2] for m in rows.metrics] == [1.0]
    rows = mlflow_sql.read_runs(db, acme, experiment="bookkeeping", exclude_experiments=["bookkeeping"], max_results=10)
    assert [r[1] for r in rows.runs] == ["r2"]  # named: excluded no more
    assert mlflow_sql.read_runs(db, acme, max_results=10, run_ids=[f"{0:032d}", f"{3:032d}"]).runs[0][1] == "r0"
    assert mlflow_sql.read_runs(db, Tenancy("nobody"), max_results=10) == mlflow_sql.RunRows({}, [], [], [], [])


# MLflow's table and column names, in SQL, anywhere in the package but the one module
_SCHEMA_SQL = re.compile(
    r"\b(run_uuid|latest_metrics|experiment_tags)\b"
    r"|\b(FROM|INTO|UPDATE|JOIN)\s+(runs|params|metrics|tags|experiments)\b"
)


def test_mlflows_schema_is_known_in_one_module_only():
    root = Path(mlops_jupyter.__file__).parent
    offenders = [
        f"{p.relative_to(root)}:{n}"
        for p in sorted(root.rglob("*.py"))
        if p.name != "mlflow_sql.py"
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if _SCHEMA_SQL.search(line)
    ]
    assert offenders == []
