"""The prediction log on its own, on real files: the three ways in read back with their
types, windowed reads, row counts, compaction under readers, two processes writing into one
home, the flush at exit, and the flush contract (flush() returns only once everything
appended before it is readable, even while the background thread is writing)."""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlops_jupyter.errors import InvalidTenantError, ValidationError
from mlops_jupyter.monitoring.predlog import ALL_FEATURES, COMPACT_ON_READ, ROW_GROUP_ROWS, PredictionLog

T0 = 1_800_000_000.0
WAIT = 60.0  # the longest any test waits for an event that must happen (a stuck test, not a slow one)


def us(t: float) -> pd.Timestamp:
    return pd.Timestamp(round(t * 1_000_000), unit="us", tz="UTC")


def parts(home: Path, tenant: str = "t", model: str = "m") -> list[Path]:
    return sorted((home / "predictions" / tenant / model).glob("part-*.parquet"))


def run_python(code: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err


# -- the three ways in, read back ----------------------------------------------------------------
def test_append_append_row_and_append_table_read_back_with_their_types(tmp_path):
    log = PredictionLog(tmp_path, background=False)
    log.append(
        "t",
        "m",
        version="1.0.0",
        environment="production",
        latency_s=0.001,
        success=True,
        features=np.array([[1.0, 2.0], [3.0, 4.0]]),
        columns=["a", "b"],
        output=np.array([0, 1]),
        timestamp=T0,
    )
    log.append("t", "m", version="1.1.0", latency_s=0.002, success=False, error="bad input", timestamp=T0 + 1)
    log.append_row(
        "t", "m", T0 + 2, "1.1.0", "staging", 0.003, True, {"a": 5.0, "b": 6.0, "n": 7, "s": "x", "flag": True}, 1
    )
    log.append_row("t", "m", T0 + 3, "1.1.0", "staging", 0.004, True, None, None)
    batch = pa.table(
        {
            "timestamp": pa.array([us(T0 + 4), us(T0 + 5)], type=pa.timestamp("us", tz="UTC")),
            "version": ["2.0.0", "2.0.0"],
            "environment": ["", ""],
            "latency_s": [0.005, 0.006],
            "success": [True, True],
            "error": pa.nulls(2, pa.string()),
            "feature.a": [8.0, 9.0],
            "prediction": [1, 0],
        }
    )
    log.append_table("t", "m", batch)
    assert not (tmp_path / "predictions").exists()  # nothing written on the caller's path

    assert log.flush() == 7
    assert len(parts(tmp_path)) == 1 and log.flush() == 0
    df = log.read("t", "m")
    assert len(df) == 7 and df["timestamp"].is_monotonic_increasing
    assert str(df["timestamp"].dtype) == "datetime64[us, UTC]" and df["timestamp"].iloc[0] == us(T0)
    assert df["version"].tolist() == ["1.0.0"] * 2 + ["1.1.0"] * 3 + ["2.0.0"] * 2
    assert df["environment"].tolist() == ["production"] * 2 + ["", "staging", "staging", "", ""]
    assert df["latency_s"].tolist() == [0.001, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006]
    assert df["success"].tolist() == [True, True, False, True, True, True, True]
    assert df["error"].iloc[2] == "bad input" and df["error"].drop(index=2).isna().all()
    assert df["feature.a"].iloc[[0, 1, 3, 5, 6]].tolist() == [1.0, 3.0, 5.0, 8.0, 9.0]
    assert df["feature.a"].iloc[[2, 4]].isna().all()
    assert df["feature.n"].iloc[3] == 7 and df["feature.s"].iloc[3] == "x" and df["feature.flag"].iloc[3]
    assert df["prediction"].iloc[[0, 1, 3, 5, 6]].tolist() == [0, 1, 1, 1, 0]
    ids = df["request_id"]
    assert ids.iloc[0] == ids.iloc[1] and ids.iloc[1:].is_unique  # one request, two rows

    t = log.read_table("t", "m")
    types = {f.name: f.type for f in t.schema}
    assert types["feature.n"] == pa.int64() and types["feature.flag"] == pa.bool_()
    assert types["feature.a"] == pa.float64() and types["prediction"] == pa.int64()
    assert pa.types.is_dictionary(types["version"]) and pa.types.is_dictionary(types["feature.s"])  # text
    assert pa.types.is_string(log.read_table("t", "m", dictionary=False).schema.field("version").type)


def test_append_takes_any_feature_shape_and_keeps_outputs(tmp_path):
    log = PredictionLog(tmp_path, background=False)
    log.append(
        "t", "m", version="1", latency_s=0.1, success=True, features={"a": 5.0, "c": "x"}, output="yes", timestamp=T0
    )
    log.append(
        "t",
        "m",
        version="1",
        latency_s=0.1,
        success=True,
        features=[{"a": 1.0}, {"c": "y"}],
        output=[1, [2, 3]],
        timestamp=T0 + 1,
    )
    log.append(
        "t",
        "m",
        version="1",
        latency_s=0.1,
        success=True,
        features=pd.DataFrame({"a": [6.0], "b": [7.0]}),
        output=pd.Series([1]),
        timestamp=T0 + 2,
    )
    log.append(
        "t",
        "m",
        version="1",
        latency_s=0.1,
        success=True,
        features=[[1.0, 2.0]],
        columns=["a", "b"],
        output=pd.DataFrame({"p": [0.25]}),
        timestamp=T0 + 3,
    )
    assert log.flush() == 5
    df = log.read("t", "m")
    assert df["feature.c"].fillna("-").tolist() == ["x", "-", "y", "-", "-"]
    assert df["feature.a"].iloc[[0, 1, 3, 4]].tolist() == [5.0, 1.0, 6.0, 1.0] and np.isnan(df["feature.a"].iloc[2])
    assert df["feature.b"].iloc[[3, 4]].tolist() == [7.0, 2.0]
    assert df["prediction"].tolist() == ["yes", "1", "[2, 3]", "1", '{"p": 0.25}']  # mixed: kept as text


def test_a_full_buffer_drops_the_oldest_and_a_bad_record_only_its_own_group(tmp_path, caplog):
    log = PredictionLog(tmp_path, background=False, max_buffered=3)
    for i in range(5):
        log.append_row("t", "m", T0 + i, "1", "", 0.1, True, {"i": i})
    assert log.dropped == 2
    log.append("../escape", "m", version="1", latency_s=0.1, success=True)
    with caplog.at_level(logging.WARNING, logger="mlops_jupyter.monitoring.predlog"):
        assert log.flush() == 3
    assert log.dropped == 3 and "could not write 1 prediction record" in caplog.text
    assert log.read("t", "m")["feature.i"].tolist() == [2, 3, 4]
    assert not (tmp_path / "escape").exists()


# -- windows and counts ----------------------------------------------------------------------------
@pytest.fixture
def two_parts(tmp_path):
    """Two parts whose times interleave: 0..99 s then 50..149 s after T0, x = the second."""
    log = PredictionLog(tmp_path, background=False)
    for j in range(0, 100):
        log.append_row("t", "m", T0 + j, "a", "", 0.0, True, {"x": j})
    log.flush()
    for j in range(50, 150):
        log.append_row("t", "m", T0 + j + 0.5, "b", "", 0.0, True, {"x": j + 0.5})
    log.flush()
    return log


def test_windowed_reads_are_exact_when_parts_interleave_in_time(two_parts):
    log = two_parts
    full = log.read_table("t", "m").to_pandas()
    assert len(full) == 200 and full["timestamp"].is_monotonic_increasing
    x = full["feature.x"]
    assert log.read_table("t", "m", last_n=30)["feature.x"].to_pylist() == x.iloc[-30:].tolist()
    assert log.read_table("t", "m", first_n=30)["feature.x"].to_pylist() == x.iloc[:30].tolist()
    assert log.read_table("t", "m", last_n=0).num_rows == 0
    since, until = T0 + 60, T0 + 70.5
    want = full[(full["timestamp"] >= us(since)) & (full["timestamp"] <= us(until))]["feature.x"].tolist()
    assert log.read_table("t", "m", since=since, until=until)["feature.x"].to_pylist() == want
    assert (
        log.read_table("t", "m", since=us(since).isoformat(), until=us(until).to_pydatetime())["feature.x"].to_pylist()
        == want
    )
    assert log.read_table("t", "m", since=since, last_n=3)["feature.x"].to_pylist() == x.iloc[-3:].tolist()
    assert log.read_table("t", "m", last_n=5, version="a")["feature.x"].to_pylist() == [95, 96, 97, 98, 99]
    assert log.read_table("t", "m", first_n=2, version="b")["feature.x"].to_pylist() == [50.5, 51.5]
    assert len(log.read("t", "m", since=T0 + 140)) == 10
    assert len(log.read("t", "m", last_n=7)) == 7
    t = log.read_table("t", "m", last_n=4, columns=["latency_s", ALL_FEATURES])
    assert t.column_names == ["timestamp", "latency_s", "feature.x"]


def test_windowed_reads_skip_row_groups_and_stay_exact_across_them(tmp_path):
    n = 2 * ROW_GROUP_ROWS + 1000
    log = PredictionLog(tmp_path, background=False)
    ts = (T0 + np.arange(n) / 1000.0) * 1_000_000
    log.append_table(
        "t",
        "m",
        pa.table(
            {
                "timestamp": pa.array(ts.astype(np.int64), type=pa.timestamp("us", tz="UTC")),
                "version": ["1"] * n,
                "latency_s": np.zeros(n),
                "success": np.ones(n, bool),
                "feature.i": np.arange(n),
            }
        ),
    )
    assert log.flush() == n
    assert pq.read_metadata(parts(tmp_path)[0]).num_row_groups == 3
    assert log.read_table("t", "m", last_n=10)["feature.i"].to_pylist() == list(range(n - 10, n))
    assert log.read_table("t", "m", first_n=ROW_GROUP_ROWS + 1)["feature.i"].to_pylist()[-1] == ROW_GROUP_ROWS
    lo = T0 + (ROW_GROUP_ROWS - 5) / 1000.0
    got = log.read_table("t", "m", since=lo, until=lo + 0.009)["feature.i"].to_pylist()
    assert got == list(range(ROW_GROUP_ROWS - 5, ROW_GROUP_ROWS + 5))
    assert log.read_table("t", "m", last_n=3, version="1")["feature.i"].to_pylist() == [n - 3, n - 2, n - 1]


def test_row_count_counts_buffered_and_stored_rows_and_checks_its_arguments(two_parts, tmp_path):
    log = two_parts
    assert log.row_count("t", "m") == 200
    log.append(
        "t",
        "m",
        version="c",
        latency_s=0.0,
        success=True,
        features=np.ones((3, 1)),
        columns=["x"],
        output=np.zeros(3),
        timestamp=T0,
    )
    assert log.row_count("t", "m") == 203  # what this object buffered is flushed first
    assert PredictionLog(tmp_path, background=False).row_count("t", "m") == 203
    assert log.row_count("t", "nothing") == 0 and log.read_table("t", "nothing").num_rows == 0
    assert log.read("t", "nothing").empty and "version" in log.read("t", "nothing").columns
    with pytest.raises(InvalidTenantError):
        log.row_count("../t", "m")
    for bad in (
        {"last_n": -1},
        {"first_n": 1.5},
        {"last_n": True},
        {"last_n": 1, "first_n": 1},
        {"since": "not a time"},
        {"until": float("nan")},
    ):
        with pytest.raises(ValidationError):
            log.read_table("t", "m", **bad)


# -- compaction -------------------------------------------------------------------------------------
def small_parts(log: PredictionLog, n_parts: int, rows: int = 25) -> int:
    for i in range(n_parts):
        for j in range(rows):
            k = i * rows + j
            log.append_row("t", "m", T0 + k, "1.0.0", "", 0.01, True, {"x": float(k)})
        log.flush()
    return n_parts * rows


def test_compaction_merges_small_parts_into_fewer_with_the_same_rows(tmp_path):
    log = PredictionLog(tmp_path, background=False)
    n = small_parts(log, 30)
    before = log.read_table("t", "m", dictionary=False)
    assert len(parts(tmp_path)) == 30
    out = log.compact("t", "m", target_rows=300)
    assert out == {"merged_files": 30, "written_files": 3, "rows": n, "deleted_files": 0, "dropped_rows": 0}
    after = parts(tmp_path)
    assert len(after) == 3 and all("-c" in p.name for p in after)
    assert not list((tmp_path / "predictions" / "t" / "m").glob(".*.tmp"))
    assert log.read_table("t", "m", dictionary=False).equals(before)
    nothing = {"merged_files": 0, "written_files": 0, "rows": 0, "deleted_files": 0, "dropped_rows": 0}
    assert log.compact("t", "m") == nothing  # nothing small enough
    assert log.compact("t", "nothing") == nothing


def test_a_reader_compacts_first_when_there_are_too_many_parts(tmp_path):
    log = PredictionLog(tmp_path, background=False)
    n = small_parts(log, COMPACT_ON_READ + 1, rows=2)
    assert len(parts(tmp_path)) == COMPACT_ON_READ + 1
    assert log.read_table("t", "m", last_n=3)["feature.x"].to_pylist() == [n - 3.0, n - 2.0, n - 1.0]
    assert len(parts(tmp_path)) == 1 and log.row_count("t", "m") == n


def test_readers_during_compaction_see_every_row_exactly_once(tmp_path, monkeypatch):
    log = PredictionLog(tmp_path, background=False)
    n = small_parts(log, 40)
    reads: list[tuple[int, int]] = []  # (rows, distinct request ids) of each read
    cond = threading.Condition()
    stop = threading.Event()

    def reader() -> None:
        other = PredictionLog(tmp_path, background=False)
        while not stop.is_set():
            t = other.read_table("t", "m", columns=["request_id", "feature.x"])
            with cond:
                reads.append((t.num_rows, len(set(t["request_id"].to_pylist()))))
                cond.notify_all()

    def wait_for_reads(k: int) -> None:  # k more reads than now
        with cond:
            target = len(reads) + k
            assert cond.wait_for(lambda: len(reads) >= target, timeout=WAIT)

    real_read_table = pq.read_table
    paused = []

    def read_source(*args, **kwargs):  # the compactor reads its sources: let readers run meanwhile
        if not paused:
            paused.append(True)
            wait_for_reads(3)
        return real_read_table(*args, **kwargs)

    monkeypatch.setattr(pq, "read_table", read_source)
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for th in readers:
        th.start()
    try:
        out = log.compact("t", "m")
        wait_for_reads(3)
    finally:
        stop.set()
        for th in readers:
            th.join(WAIT)
    assert out["merged_files"] == 40 and out["written_files"] == 1 and out["rows"] == n and len(parts(tmp_path)) == 1
    assert paused and len(reads) >= 6
    assert set(reads) == {(n, n)}


# -- processes and exit ------------------------------------------------------------------------------
def test_two_processes_append_into_one_home_and_every_row_is_kept(tmp_path):
    code = """
        import numpy as np
        from mlops_jupyter.monitoring.predlog import PredictionLog

        log = PredictionLog(".", flush_interval=0.01)
        for i in range(3000):
            log.append_row("t", "m", 1_800_000_000.0 + i, "1", "", 0.001, True, {"i": i, "who": "%s"})
            if i %% 200 == 0:
                log.append("t", "m", version="1", latency_s=0.001, success=True,
                           features=np.ones((2, 3)), columns=["a", "b", "c"], output=np.zeros(2))
            if i %% 500 == 0:
                log.compact("t", "m", min_files=2)
                log.read_table("t", "m", last_n=10)
        # no flush, no close: the rest is written at exit
    """
    procs = [run_python(code % who, tmp_path) for who in ("p1", "p2")]
    for p in procs:
        finish(p)
    log = PredictionLog(tmp_path, background=False)
    per_process = 3000 + 2 * 15
    assert log.row_count("t", "m") == 2 * per_process
    df = log.read("t", "m")
    assert len(df) == 2 * per_process
    assert df["feature.who"].value_counts().to_dict() == {"p1": 3000, "p2": 3000}
    assert df["request_id"].nunique() == 2 * (3000 + 15)  # one id per request, none shared


def test_what_is_buffered_is_written_when_the_process_exits(tmp_path):
    code = """
        import numpy as np, pyarrow as pa
        from mlops_jupyter.monitoring.predlog import PredictionLog

        log = PredictionLog(".", flush_interval=3600)  # the background thread never gets to it
        for i in range(1000):
            log.append_row("t", "m", 1_800_000_000.0 + i, "1", "", 0.001, True, {"i": i})
        log.append("t", "m", version="1", latency_s=0.001, success=True, features=np.ones((5, 2)),
                   columns=["a", "b"], output=np.zeros(5))
        log.append_table("t", "m", pa.table({"timestamp": pa.array([0] * 7, pa.timestamp("us", tz="UTC")),
                                             "latency_s": [0.1] * 7, "success": [True] * 7}))
    """
    finish(run_python(code, tmp_path))
    assert PredictionLog(tmp_path, background=False).row_count("t", "m") == 1012


def test_close_writes_what_is_left_and_is_idempotent(tmp_path):
    log = PredictionLog(tmp_path, flush_interval=3600)
    log.append_row("t", "m", T0, "1", "", 0.1, True, {"x": 1})
    log.close()
    log.close()
    assert PredictionLog(tmp_path, background=False).row_count("t", "m") == 1


# -- the flush contract ------------------------------------------------------------------------------
WAYS_IN = {
    "append": lambda log, n: log.append(
        "t",
        "m",
        version="1",
        latency_s=0.001,
        success=True,
        features=np.ones((n, 2)),
        columns=["a", "b"],
        output=np.zeros(n),
        timestamp=T0,
    ),
    "append_row": lambda log, n: log.append_row("t", "m", T0, "1", "", 0.001, True, {"a": 1}, 0),
    "append_table": lambda log, n: log.append_table(
        "t",
        "m",
        pa.table(
            {
                "timestamp": pa.array([0] * n, pa.timestamp("us", tz="UTC")),
                "latency_s": [0.1] * n,
                "success": [True] * n,
            }
        ),
    ),
}


@pytest.mark.parametrize("way_in", sorted(WAYS_IN))
def test_flush_waits_for_the_background_thread_that_is_writing(tmp_path, monkeypatch, way_in):
    """The background thread has taken the buffer and is still writing it when flush() is
    called: flush() must not return before those rows are readable. The thread is held
    inside the Parquet writer until flush() has had every chance to return early, so the
    outcome does not depend on timing: an early return sees 0 rows, a correct flush all."""
    rows = 1 if way_in == "append_row" else 50
    writing, release = threading.Event(), threading.Event()
    real_write_table = pq.write_table

    def write_table(table, where, *args, **kwargs):
        mine = str(where).startswith(str(tmp_path)) and threading.current_thread().name == "mlops-predlog"
        if mine and not writing.is_set():
            writing.set()
            release.wait(WAIT)
        return real_write_table(table, where, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", write_table)
    log = PredictionLog(tmp_path, flush_interval=0.01)
    WAYS_IN[way_in](log, rows)  # one call: the background thread takes all of it or none
    assert writing.wait(WAIT), "the background thread did not flush"
    seen: list[int] = []

    def flush_then_count() -> None:
        log.flush()
        seen.append(PredictionLog(tmp_path, background=False).row_count("t", "m"))

    caller = threading.Thread(target=flush_then_count)
    caller.start()
    caller.join(0.5)  # an early return happens now, while the writer is still held
    release.set()
    caller.join(WAIT)
    log.close()
    assert seen == [rows]


def test_flush_returns_only_when_the_callers_rows_are_readable_under_load(tmp_path):
    """Several threads append and flush while the background thread flushes every
    millisecond; after each of its flushes a thread finds all it appended on disk."""
    log = PredictionLog(tmp_path, flush_interval=0.001)
    short: list[tuple[str, int, int]] = []

    def worker(model: str) -> None:
        reader = PredictionLog(tmp_path, background=False)
        appended = 0
        for _ in range(40):
            for _ in range(5):
                log.append_row("t", model, T0 + appended, "1", "", 0.0, True, {"i": appended})
                appended += 1
            log.flush()
            got = reader.row_count("t", model)
            if got != appended:
                short.append((model, appended, got))

    workers = [threading.Thread(target=worker, args=(f"m{i}",)) for i in range(3)]
    for th in workers:
        th.start()
    for th in workers:
        th.join(WAIT * 3)
    log.close()
    assert short == []


# -- the write-ahead log (gateway workers): torn records, replay, no duplicates, the spool ---------
def _features(home: Path, tenant: str = "t", model: str = "m") -> list[int]:
    return sorted(PredictionLog(home, background=False).read(tenant, model)["feature.i"].tolist())


def _wal_files(home: Path) -> list[Path]:
    return sorted((home / "predictions" / ".wal").glob("*"))


def test_a_torn_last_record_is_dropped_and_the_records_before_it_kept():
    from mlops_jupyter.monitoring.predlog.wal import decode_records, encode_record

    recs = [encode_record("r", (T0 + i, "t", "m", "1", "", 0.0, True, {"i": i}, None, None)) for i in range(3)]
    data = b"".join(recs)
    assert [r[1][7]["i"] for r in decode_records(data)[0]] == [0, 1, 2]
    for cut in (1, 7, len(recs[2]) - 1):  # inside the header, inside the payload, one byte short
        got, torn = decode_records(data[:-cut])
        assert [r[1][7]["i"] for r in got] == [0, 1] and torn == len(recs[2]) - cut
    flipped = bytearray(data)
    flipped[-2] ^= 0xFF  # a bad checksum on the last record
    got, torn = decode_records(bytes(flipped))
    assert len(got) == 2 and torn == len(recs[2])


def test_a_requests_arrays_come_back_from_the_write_ahead_log_with_their_dtypes():
    """The gateway's records (NumPy features and output) are written with their arrays as raw
    bytes (kind "Q") and read back as the same arrays; other shapes stay plain pickles."""
    from mlops_jupyter.monitoring.predlog.wal import decode_records, encode_record

    x = np.array([[5.1, 3.5], [6.2, np.pi]])
    labels = np.array(["setosa", "virginica"])
    ints = np.array([0, 2], dtype=np.int32)
    recs = [
        (T0, "t", "m", "1", "prod", 0.001, True, x, ["a", "b"], labels, None),
        (T0, "t", "m", "1", "prod", 0.001, True, x[:1], ["a", "b"], ints[:1], None),
        (T0, "t", "m", "1", "", 0.002, False, {"a": 1.0}, None, None, "boom"),
    ]
    framed = [encode_record("q", r) for r in recs]
    kinds = [pickle.loads(f[8:])[0] for f in framed]  # past the <length><crc32> header
    assert kinds == ["Q", "Q", "q"]  # arrays as raw bytes; a dict of features stays a pickle
    data = b"".join(framed)
    got, torn = decode_records(data)
    assert torn == 0 and [k for k, _ in got] == ["q", "q", "q"]
    (_, a), (_, b), (_, c) = got
    assert a[7].dtype == np.float64 and a[7].tolist() == x.tolist() and a[9].tolist() == ["setosa", "virginica"]
    assert b[7].shape == (1, 2) and b[9].dtype == np.int32 and b[9].tolist() == [0]
    assert c == recs[2]
    assert a[:7] == recs[0][:7] and a[8] == ["a", "b"] and a[10] is None


def test_a_batch_appended_at_once_is_replayed_like_one_flushed(tmp_path):
    """``append_many`` (one lock, one write for a micro-batch) then SIGKILL: the replayed rows
    equal those of the same batch flushed normally, arrays and all."""
    code = """
        import os, signal, sys
        import numpy as np
        from mlops_jupyter.monitoring.predlog import PredictionLog, request_record
        log = PredictionLog(sys.argv[1], background=False, wal=True)
        x = np.arange(12, dtype=float).reshape(6, 2)
        recs = [request_record("t", "m", version="1", environment="prod", latency_s=0.001, success=True,
                               features=x[i : i + 2], columns=["i", "j"], output=np.array([i, i + 1]),
                               timestamp={T0} + i) for i in range(0, 6, 2)]
        log.append_many(recs)
        if sys.argv[2] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        log.close()
        """
    homes = {}
    for how in ("kill", "flush"):
        home = tmp_path / how
        home.mkdir()
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code.format(T0=T0)), str(home), how], timeout=WAIT)
        assert proc.returncode == (-9 if how == "kill" else 0)
        homes[how] = PredictionLog(home, background=False).read("t", "m")
    kept = ["feature.i", "feature.j", "prediction", "version", "environment", "success"]
    assert homes["kill"]["feature.i"].tolist() == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    pd.testing.assert_frame_equal(homes["kill"][kept], homes["flush"][kept])


def test_a_writer_killed_with_sigkill_loses_nothing_and_its_torn_tail_is_dropped(tmp_path):
    """A real process appends 500 rows with the WAL on (no flush), writes half a record and is
    SIGKILLed; the next reader folds its segment into the log: 500 rows, each once."""
    proc = run_python(
        f"""
        import os, signal
        from mlops_jupyter.monitoring.predlog import PredictionLog
        log = PredictionLog({str(tmp_path)!r}, background=False, wal=True)
        for i in range(500):
            log.append_row("t", "m", {T0} + i, "1", "", 0.0, True, {{"i": i}})
        os.write(log._segment.fd, b"\\x40\\x00\\x00\\x00garbage")  # a torn record, as a kill mid-write leaves
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        tmp_path,
    )
    proc.communicate(timeout=WAIT)
    assert proc.returncode == -9 and not parts(tmp_path)
    assert len(_wal_files(tmp_path)) == 1
    assert _features(tmp_path) == list(range(500))
    assert _wal_files(tmp_path) == [] and _features(tmp_path) == list(range(500))  # replayed once


@pytest.mark.parametrize("renamed", [0, 1, 2])
def test_a_flush_killed_between_its_steps_is_completed_once_by_the_replay(tmp_path, renamed):
    """The writer dies after its parts are written (temporary names) and after ``renamed`` of
    the two renames (0: before the commit marker): the replay publishes each row once."""
    from mlops_jupyter.monitoring.predlog.wal import publish, write_marker

    log = PredictionLog(tmp_path, background=False, wal=True)
    for i in range(10):
        log.append_row("t", "m" if i % 2 else "n", T0 + i, "1", "", 0.0, True, {"i": i})
    seg = log._segment
    with log._buf_lock:
        rows, log._rows = log._rows, []
    from mlops_jupyter.monitoring.predlog.buffer import _by_model

    _, renames, _ = log._write_groups(_by_model([], rows, []), publish=False)
    assert len(renames) == 2
    if renamed:
        write_marker(seg, renames)
        publish(renames[:renamed])
    seg.close()  # the process is gone: its lock with it
    log._segment = None
    assert _features(tmp_path, model="m") == [1, 3, 5, 7, 9]
    assert _features(tmp_path, model="n") == [0, 2, 4, 6, 8]
    assert _wal_files(tmp_path) == []


def test_an_unwritable_log_spools_reports_and_writes_everything_once_writable(tmp_path, caplog):
    """The log folder replaced by a file (unwritable, even for root): flushes keep the rows,
    say why, log once; past the spool bound the oldest are dropped and counted; once the
    folder is back every kept row is written once."""
    log = PredictionLog(tmp_path, background=False, wal=True, max_buffered=50)
    log.append_row("t", "m", T0, "1", "", 0.0, True, {"i": 0})
    assert log.flush() == 1 and log.write_error is None
    root = tmp_path / "predictions"
    aside = tmp_path / "aside"
    root.rename(aside)
    root.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="mlops_jupyter.monitoring.predlog"):
        for i in range(1, 41):
            log.append_row("t", "m", T0 + i, "1", "", 0.0, True, {"i": i})
            assert log.flush() == 0
        assert log.write_error and "write-ahead log" in log.write_error and log.spooled == 40
        for i in range(41, 61):
            log.append_row("t", "m", T0 + i, "1", "", 0.0, True, {"i": i})
    assert log.dropped == 10 and log.spooled == 50
    assert caplog.text.count("prediction log degraded") == 1 and caplog.text.count("dropped 1 prediction") == 1
    assert caplog.text.count("dropped") == 1  # once per interval, not once per row
    root.unlink()
    aside.rename(root)
    assert log.flush() == 50 and log.write_error is None and log.spooled == 0
    log.close()
    assert _features(tmp_path) == [0, *range(11, 61)]
    assert _wal_files(tmp_path) == []


# -- tiers, retention, interrupted swaps ------------------------------------------------------------
def test_compaction_merges_in_tiers(tmp_path):
    log = PredictionLog(tmp_path, background=False)
    k = 0
    for _cycle in range(8):  # eight cycles, each: 8 small parts merged into one tier-1 part
        for _ in range(8):
            for _ in range(20):
                log.append_row("t", "m", T0 + k, "1.0.0", "", 0.01, True, {"x": float(k)})
                k += 1
            log.flush()
        log.compact("t", "m", small_rows=100, target_rows=1000)
    # tier 0 (< 100 rows) merged into 160-row parts (tier 1); the next pass merges those eight
    assert len(parts(tmp_path)) == 8
    assert log.compact("t", "m", small_rows=100, target_rows=1000)["merged_files"] == 8
    names = parts(tmp_path)
    assert len(names) == 1 and log.row_count("t", "m") == k == 1280
    assert log.read_table("t", "m", columns=["feature.x"])["feature.x"].to_pylist() == [float(i) for i in range(k)]


def test_retention_drops_old_rows_and_keeps_the_newest_per_model(tmp_path, monkeypatch):
    import time as _time

    log = PredictionLog(tmp_path, background=False)
    now = _time.time()
    for day in range(10, 0, -1):  # one part per day, 10 days ago to 1 day ago, 100 rows each
        for j in range(100):
            log.append_row("t", "m", now - day * 86400 + j, "1.0.0", "", 0.01, True, {"d": float(day)})
        log.flush()
    monkeypatch.setenv("MLOPS_PREDLOG_MAX_AGE_DAYS", "5.5")
    out = log.compact("t", "m")
    assert (out["deleted_files"], out["dropped_rows"]) == (5, 500)
    assert sorted(set(log.read_table("t", "m")["feature.d"].to_pylist())) == [1.0, 2.0, 3.0, 4.0, 5.0]
    monkeypatch.setenv("MLOPS_PREDLOG_MAX_AGE_DAYS", "0")
    monkeypatch.setenv("MLOPS_PREDLOG_MAX_ROWS", "250")
    out = log.compact("t", "m")
    assert out["dropped_rows"] == 250 and log.row_count("t", "m") == 250  # 2 parts deleted, 1 cut in half
    assert log.read_table("t", "m", first_n=1)["feature.d"].to_pylist() == [3.0]


def test_a_compaction_killed_mid_swap_never_shows_a_row_twice(tmp_path):
    import json
    import os

    from mlops_jupyter.monitoring.predlog.parts import SWAP_INTENT, part_name, write_parquet

    log = PredictionLog(tmp_path, background=False)
    n = small_parts(log, 4)
    folder = tmp_path / "predictions" / "t" / "m"
    sources = parts(tmp_path)
    # what a compactor killed after renaming its merged part in but before deleting the sources leaves
    merged = log.read_table("t", "m", dictionary=False)
    name = part_name(10**13, 1, merged=True)
    write_parquet(merged, folder, name)
    (folder / SWAP_INTENT).write_text(json.dumps({"merged": name, "sources": [p.name for p in sources]}))
    assert log.read_table("t", "m").num_rows == n and log.row_count("t", "m") == n
    log.compact("t", "m")  # finishes the swap
    assert [p.name for p in parts(tmp_path)] == [name] and not (folder / SWAP_INTENT).exists()
    # killed before the rename: the intent names a merged part that is not there; sources count
    (folder / SWAP_INTENT).write_text(json.dumps({"merged": "part-gone.parquet", "sources": [name]}))
    assert log.read_table("t", "m").num_rows == n
    os.unlink(folder / SWAP_INTENT)


def test_appends_after_close_are_written_and_version_filter_tolerates_parts_without_versions(tmp_path):
    log = PredictionLog(tmp_path, background=True)
    log.close()
    log.append_row("t", "m", T0, "1.0.0", "", 0.01, True, {"x": 1.0})
    log.append("t", "m", version="1.0.0", latency_s=0.01, success=True, features={"x": 2.0}, timestamp=T0 + 1)
    assert PredictionLog(tmp_path, background=False).read_table("t", "m").num_rows == 2
    # a part without a version column (an older writer): reading one version skips it
    folder = tmp_path / "predictions" / "t" / "m"
    pq.write_table(
        pa.table({"timestamp": pa.array([10**15], pa.timestamp("us", tz="UTC"))}),
        folder / "part-00000000000001-1-000001.parquet",
    )
    assert PredictionLog(tmp_path, background=False).read_table("t", "m", version="1.0.0").num_rows == 2
