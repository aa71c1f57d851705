"""Monitoring through the public API on a real store: the prediction log, windows,
references, drift correctness against scipy, performance metrics and edge cases."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlops_jupyter import create_model_monitoring
from mlops_jupyter.errors import (
    InvalidNameError,
    InvalidWindowError,
    TenantAccessError,
    ValidationError,
)
from mlops_jupyter.monitoring.predlog import PredictionLog

SEED_KEYS = {"drift_detected", "drift_score", "performance_metrics"}
EXTRA_KEYS = {"features", "method", "n_reference", "n_current", "threshold", "reference_source", "window"}
PERF_KEYS = {
    "avg_latency",
    "success_rate",
    "p50_latency",
    "p95_latency",
    "p99_latency",
    "error_count",
    "error_rate",
    "prediction_count",
    "per_version",
}


class Clock:
    """A controllable clock: ``clock()`` is now, ``clock.advance(s)`` moves it."""

    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def frame(n: int, seed: int, shift: dict[str, float] | None = None) -> pd.DataFrame:
    """Ten features, 8 numeric and 2 categorical, from one generator (``shift`` moves means)."""
    rng = np.random.default_rng(seed)
    shift = shift or {}
    data = {f"x{i}": rng.normal(shift.get(f"x{i}", 0.0), 1.0, n) for i in range(8)}
    data["plan"] = rng.choice(["free", "pro", "team"], n, p=[0.5, 0.3, 0.2])
    data["region"] = rng.choice(["eu", "us", "apac", "latam"], n)
    return pd.DataFrame(data)


def predictions(features: pd.DataFrame, seed: int = 0, **extra) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = features.copy()
    df.insert(0, "prediction_time", rng.gamma(2.0, 0.005, len(df)))
    df.insert(1, "success", rng.random(len(df)) > 0.02)
    for k, v in extra.items():
        df[k] = v
    return df


@pytest.fixture
def mon(home):
    return create_model_monitoring(tenant_id="acme")


# -- the seed's step 5 ----------------------------------------------------------------------
def test_the_seeds_step_5_works_as_written(mon):
    mon.track_prediction(
        model_id="ticket_classifier",
        prediction_time=0.15,
        success=True,
        input_features={"priority": 1, "category": "technical"},
    )
    result = mon.check_drift(model_id="ticket_classifier", threshold=0.1)
    assert set(result) >= SEED_KEYS | EXTRA_KEYS
    assert result["drift_detected"] is False
    perf = result["performance_metrics"]
    assert set(perf) >= PERF_KEYS
    assert perf["avg_latency"] == pytest.approx(0.15) and perf["success_rate"] == 1.0
    assert perf["prediction_count"] == 1 and perf["error_count"] == 0
    # a single prediction is its own reference (the first N): nothing later to compare yet
    assert result["reference_source"] == "first_predictions" and result["status"] == "no_data"
    assert "first 1 logged predictions" in result["reason"] and result["drift_score"] is None


def test_empty_model_gives_a_clear_result_not_a_crash(mon):
    result = mon.check_drift("never_seen")
    assert result["status"] == "unknown_model" and "never_seen" in result["reason"]
    assert result["drift_detected"] is False and result["drift_score"] is None
    assert result["performance_metrics"]["prediction_count"] == 0
    assert result["performance_metrics"]["success_rate"] is None and result["n_current"] == 0
    assert mon.performance("never_seen")["per_version"] == {}
    assert mon.timeseries("never_seen").empty
    ref, cur = mon.window_data("never_seen")
    assert ref.empty and cur.empty


def test_a_typo_in_the_model_id_says_the_model_is_not_known_and_lists_the_models(mon):
    mon.track_prediction("ticket_classifier", 0.01, True, {"x": 1.0})
    mon.set_reference("churn", pd.DataFrame({"x": [1.0, 2.0]}))
    r = mon.check_drift("ticket_clasifier")
    assert r["status"] == "unknown_model" and r["drift_detected"] is False
    assert "not known" in r["reason"] and "'churn', 'ticket_classifier'" in r["reason"]
    assert "No predictions" not in r["reason"]
    assert mon.check_drift("churn")["status"] == "no_data"  # known (a reference), just no traffic yet


def test_a_window_longer_than_a_year_is_accepted(mon):
    mon.track_prediction("old", 0.01, True, {"x": 1.0})
    assert mon.check_drift("old", window="400d")["window"]["span"] == "400d"
    assert mon.performance("old", window="1000d")["prediction_count"] == 1


def test_predictions_without_features_report_no_features(mon):
    for _ in range(3):
        mon.track_prediction("m", 0.01, True)
    r = mon.check_drift("m")
    assert r["status"] == "no_features" and "input_features" in r["reason"]
    assert r["performance_metrics"]["prediction_count"] == 3


# -- drift correctness -----------------------------------------------------------------------
def test_ks_and_chi_square_equal_scipy_on_the_arrays_read_from_the_store(mon):
    mon.set_reference("churn", frame(3000, seed=1))
    mon.track_predictions("churn", predictions(frame(12_000, seed=2, shift={"x3": 0.3})), version="1.0.0")
    result = mon.check_drift("churn", window=12_000)
    assert result["status"] == "ok" and result["reference_source"] == "set_reference"
    ref, cur = mon.window_data("churn", window=12_000)
    assert len(ref) == 3000 and len(cur) == result["n_current"] == 12_000
    for i in range(8):
        f = result["features"][f"x{i}"]
        expected = stats.ks_2samp(ref[f"x{i}"].to_numpy(), cur[f"x{i}"].to_numpy())
        assert f["method"] == "ks+psi"
        assert f["statistic"] == pytest.approx(expected.statistic, abs=1e-12)
        assert f["p_value"] == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-300)
    for name in ("plan", "region"):
        f = result["features"][name]
        cats = sorted(ref[name].unique())
        table = [[int((ref[name] == c).sum()) for c in cats], [int((cur[name] == c).sum()) for c in cats]]
        expected = stats.chi2_contingency(table)
        assert f["method"] == "chi2+jensen_shannon"
        assert f["statistic"] == pytest.approx(expected.statistic, rel=1e-9)
        assert f["p_value"] == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-300)


def test_identical_distributions_are_not_flagged_and_a_one_sd_shift_ranks_first(mon):
    mon.set_reference("same", frame(10_000, seed=3))
    mon.track_predictions("same", predictions(frame(10_000, seed=4)))
    same = mon.check_drift("same", window=10_000)
    assert same["drift_detected"] is False and same["drift_score"] < 0.1 and same["drifted_features"] == []

    mon.set_reference("moved", frame(10_000, seed=3))
    mon.track_predictions("moved", predictions(frame(10_000, seed=4, shift={"x5": 1.0})))
    moved = mon.check_drift("moved", window=10_000)
    assert moved["drift_detected"] is True and moved["drifted_features"] == ["x5"]
    assert next(iter(moved["features"])) == "x5"
    assert moved["drift_score"] == moved["features"]["x5"]["effect"] > 0.5
    assert moved["threshold"] == 0.1 and "PSI" in moved["method"]


def test_edge_columns_all_nan_unseen_categories_and_features_missing_from_the_reference(mon):
    ref = frame(2000, seed=5)[["x0", "plan"]]
    mon.set_reference("edge", ref)
    cur = frame(500, seed=6)[["x0", "plan"]]
    cur["plan"] = np.where(np.arange(500) % 5 == 0, "enterprise", cur["plan"])  # unseen category
    cur["empty"] = np.nan  # all-NaN column
    cur["new_feature"] = 1.5  # not in the reference
    mon.track_predictions("edge", predictions(cur))
    r = mon.check_drift("edge")
    assert r["status"] == "ok"
    assert r["features"]["plan"]["unseen_examples"] == ["enterprise"]
    assert r["features"]["plan"]["unseen_fraction"] == pytest.approx(0.2)
    assert r["features"]["plan"]["drifted"] is True
    assert "not in the reference" in r["skipped"]["new_feature"]
    assert "empty" in r["skipped"] and any("'empty'" in w for w in r["warnings"])


def test_a_single_row_is_low_sample_with_its_statistics(mon):
    mon.set_reference("one", frame(1000, seed=7))
    mon.track_predictions("one", predictions(frame(1, seed=8, shift={"x5": 5.0})))
    r = mon.check_drift("one")
    assert r["status"] == "low_sample" and r["n_current"] == 1 and r["rows_needed"] == 99
    assert r["drift_detected"] is False and r["drift_score"] is None and r["drifted_features"] == []
    assert "at least 100" in r["reason"] and "x5" in r["features"]
    assert any("unreliable" in w for w in r["warnings"])


def test_low_sample_minimum_is_a_setting_and_a_bad_value_is_named(mon, monkeypatch):
    from mlops_jupyter.errors import InvalidSettingError

    mon.set_reference("few", frame(1000, seed=7))
    mon.track_predictions("few", predictions(frame(60, seed=8, shift={"x5": 3.0})))
    assert mon.check_drift("few")["status"] == "low_sample"
    monkeypatch.setenv("MLOPS_DRIFT_MIN_ROWS", "50")
    r = mon.check_drift("few")
    assert r["status"] == "ok" and r["drift_detected"] is True and r["drifted_features"] == ["x5"]
    monkeypatch.setenv("MLOPS_DRIFT_MIN_ROWS", "many")
    with pytest.raises(InvalidSettingError, match="MLOPS_DRIFT_MIN_ROWS"):
        mon.check_drift("few")


def test_no_shared_feature_is_not_comparable(mon):
    mon.set_reference("disjoint", pd.DataFrame({"a": [1.0, 2.0, 3.0]}))
    mon.track_prediction("disjoint", 0.01, True, {"b": 1.0})
    r = mon.check_drift("disjoint")
    assert r["status"] == "not_comparable" and "No feature could be compared" in r["reason"]
    assert r["drift_detected"] is False


# -- references -------------------------------------------------------------------------------
def test_first_predictions_form_the_reference_when_there_is_none(home):
    mon = create_model_monitoring(tenant_id="acme")
    mon.reference_rows = 500
    rng = np.random.default_rng(0)
    for i in range(1500):
        x = rng.normal(0.0 if i < 1000 else 2.0)
        mon.track_prediction("firsts", 0.01, True, {"x": x, "c": "a" if i % 2 else "b"}, timestamp=1_700_000_000 + i)
    r = mon.check_drift("firsts")  # the last 1000 against the first 500
    assert r["reference_source"] == "first_predictions" and r["n_reference"] == 500
    assert r["n_current"] == 1000 and r["drift_detected"] and next(iter(r["features"])) == "x"
    r = mon.check_drift("firsts", window=1200)  # overlaps the first 500: only the later 1000 count
    assert r["n_current"] == 1000


def test_set_reference_for_a_version_wins_over_the_model_wide_one(mon):
    mon.set_reference("svc", frame(1000, seed=1))
    mon.set_reference("svc", frame(1000, seed=1, shift={"x0": 3.0}), version="2.0.0")
    mon.track_predictions("svc", predictions(frame(1000, seed=2)), version="2.0.0")
    r = mon.check_drift("svc")
    assert r["reference_source"] == "set_reference" and r["reference_version"] == "2.0.0"
    assert r["drifted_features"] == ["x0"]
    r = mon.check_drift("svc", version="2.0.0")
    assert r["reference_version"] == "2.0.0"
    with pytest.raises(ValidationError, match="non-empty"):
        mon.set_reference("svc", pd.DataFrame())
    with pytest.raises(ValidationError, match="version"):
        mon.set_reference("svc", frame(10, seed=1), version="../x")


def test_the_versions_reference_data_is_used_by_default(home, iris, fitted):
    from mlops_jupyter import create_model_versioning

    X, _ = iris
    create_model_versioning(tenant_id="acme").create_version("iris", model=fitted, reference_data=X)
    mon = create_model_monitoring(tenant_id="acme")
    shifted = X.sample(600, replace=True, random_state=0).reset_index(drop=True)
    shifted["petal length (cm)"] += 2.0
    mon.track_predictions("iris", predictions(shifted), version="1.0.0")
    r = mon.check_drift("iris")
    assert r["reference_source"] == "version" and r["reference_version"] == "1.0.0"
    assert r["n_reference"] == len(X) and next(iter(r["features"])) == "petal length (cm)"


# -- windows, versions, performance -----------------------------------------------------------
def test_windows_last_n_time_spans_and_versions(home):
    clock = Clock()
    mon = create_model_monitoring(tenant_id="acme")
    mon.clock = clock
    t0 = clock()
    lat_a = np.full(300, 0.010)
    lat_b = np.linspace(0.0, 1.0, 101)
    mon.track_predictions(
        "ab",
        pd.DataFrame({"prediction_time": lat_a, "success": True, "x": 1.0, "timestamp": t0 - 7200 + np.arange(300)}),
        version="1.0.0",
    )
    mon.track_predictions(
        "ab",
        pd.DataFrame(
            {
                "prediction_time": lat_b,
                "success": [True] * 90 + [False] * 11,
                "x": 2.0,
                "timestamp": t0 - 600 + np.arange(101),
            }
        ),
        version="1.1.0",
    )
    perf = mon.performance("ab", window="1h")  # only 1.1.0's 101 predictions are that recent
    assert perf["prediction_count"] == 101 and list(perf["per_version"]) == ["1.1.0"]
    assert perf["p50_latency"] == pytest.approx(np.percentile(lat_b, 50))
    assert perf["p95_latency"] == pytest.approx(np.percentile(lat_b, 95))
    assert perf["p99_latency"] == pytest.approx(np.percentile(lat_b, 99))
    assert perf["error_count"] == 11 and perf["error_rate"] == pytest.approx(11 / 101)
    both = mon.performance("ab", window="3h")
    assert both["prediction_count"] == 401 and set(both["per_version"]) == {"1.0.0", "1.1.0"}
    assert both["per_version"]["1.0.0"]["avg_latency"] == pytest.approx(0.010)
    assert both["per_version"]["1.1.0"]["success_rate"] == pytest.approx(90 / 101)
    assert mon.performance("ab", window=50)["prediction_count"] == 50
    assert mon.performance("ab", version="1.0.0")["prediction_count"] == 300
    assert mon.performance("ab", window="10s")["prediction_count"] == 0
    r = mon.check_drift("ab", window="2h", version="1.1.0")
    assert r["window"]["type"] == "span" and r["window"]["span"] == "2h" and r["version"] == "1.1.0"
    assert r["performance_metrics"]["prediction_count"] == 101
    ts = mon.timeseries("ab", freq="1h", window="3h")
    assert list(ts.columns) == ["time", "version", "count", "avg_latency", "p95_latency", "success_rate"]
    assert ts.groupby("version")["count"].sum().to_dict() == {"1.0.0": 300, "1.1.0": 101}
    with pytest.raises(ValidationError, match="freq"):
        mon.timeseries("ab", freq="fortnightly")


@pytest.mark.parametrize("window", [0, -5, True, "soon", "1 week", 2.5, "0s"])
def test_bad_windows_are_refused_with_what_is_allowed(mon, window):
    with pytest.raises(InvalidWindowError) as ei:
        mon.check_drift("m", window=window)
    assert "Allowed:" in str(ei.value) and "1h" in str(ei.value)


def test_bad_arguments_raise_typed_errors_naming_the_value(mon):
    with pytest.raises(InvalidNameError):
        mon.track_prediction("../etc", 0.1, True)
    for bad in (-1, float("nan"), float("inf"), "fast", True):
        with pytest.raises(ValidationError, match="prediction_time"):
            mon.track_prediction("m", bad, True)
    with pytest.raises(ValidationError, match="success"):
        mon.track_prediction("m", 0.1, "yes")
    with pytest.raises(ValidationError, match="input_features"):
        mon.track_prediction("m", 0.1, True, input_features=[1, 2])
    with pytest.raises(ValidationError, match="threshold"):
        mon.check_drift("m", threshold=-1)
    with pytest.raises(ValidationError, match="prediction_time"):
        mon.track_predictions("m", pd.DataFrame({"success": [True]}))
    with pytest.raises(ValidationError, match="row 1"):
        mon.track_predictions("m", pd.DataFrame({"prediction_time": [0.1, -2.0], "success": [True, True]}))
    with pytest.raises(ValidationError, match="row 0"):
        mon.track_predictions("m", [{"prediction_time": 0.1, "success": "maybe"}])
    with pytest.raises(ValidationError, match="table"):
        mon.track_predictions("m", 42)


def test_tracking_takes_dicts_lists_numpy_values_and_keeps_types(mon):
    mon.track_prediction(
        "types",
        np.float32(0.5),
        np.bool_(True),
        {"n": np.int64(3), "s": "a", "b": True},
        prediction=np.array([0.1, 0.9]),
        version="1.0.0",
        timestamp="2026-01-01T00:00:00Z",
        environment="staging",
    )
    assert (
        mon.track_predictions(
            "types", [{"prediction_time": 0.2, "success": 1, "n": 4, "s": "b", "b": False, "prediction": 1}]
        )
        == 1
    )
    assert mon.track_predictions("types", pd.DataFrame({"prediction_time": [], "success": []})) == 0
    mon.flush()
    df = PredictionLog(mon.settings.home, background=False).read("acme", "types")
    assert df["feature.n"].tolist() == [3, 4] and df["feature.s"].tolist() == ["a", "b"]
    assert df["version"].tolist() == ["1.0.0", "unversioned"] and df["environment"].tolist() == ["staging", ""]
    assert df["timestamp"].iloc[0] == pd.Timestamp("2026-01-01T00:00:00Z")


def test_tenants_do_not_see_each_others_predictions(home):
    a = create_model_monitoring(tenant_id="tenant_a")
    b = create_model_monitoring(tenant_id="tenant_b")
    a.track_prediction("shared_name", 0.1, True, {"x": 1.0})
    assert a.performance("shared_name")["prediction_count"] == 1
    assert b.performance("shared_name")["prediction_count"] == 0
    rule = a.set_alert("shared_name", "error_rate > 0.5", "log")
    assert b.list_alert_rules() == [] and b.alerts() == []
    with pytest.raises(TenantAccessError):
        b.delete_alert(rule["alert_id"])


# -- the log: never lost, compaction, concurrent readers ---------------------------------------
def test_tracked_predictions_are_not_lost_when_the_process_exits(home):
    code = (
        "from mlops_jupyter import create_model_monitoring\n"
        "m = create_model_monitoring(tenant_id='acme')\n"
        "for i in range(5000):\n"
        "    m.track_prediction('exit', 0.001, True, {'x': i})\n"
        "import pandas as pd\n"
        "m.track_predictions('exit', pd.DataFrame({'prediction_time': [0.1] * 100, 'success': True, 'x': 1}))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)  # exits without any flush call
    assert create_model_monitoring(tenant_id="acme").performance("exit", window=10_000)["prediction_count"] == 5100


def test_compaction_merges_parts_and_readers_never_see_a_row_twice(tmp_path):
    log = PredictionLog(tmp_path, background=False)
    start = int(time.time()) - 5000  # recent: older rows would fall to the retention policy
    for i in range(40):
        for j in range(25):
            log.append_row("t", "m", start + i * 25 + j, "1.0.0", "", 0.01, True, {"x": float(i * 25 + j)})
        log.flush()
    folder = tmp_path / "predictions" / "t" / "m"
    assert len(list(folder.glob("part-*.parquet"))) == 40
    seen: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        other = PredictionLog(tmp_path, background=False)
        while not stop.is_set():
            seen.append(other.read_table("t", "m", columns=["feature.x"]).num_rows)

    th = threading.Thread(target=reader)
    th.start()
    try:
        time.sleep(0.05)
        out = log.compact("t", "m")
        time.sleep(0.05)
    finally:
        stop.set()
        th.join()
    assert out == {"merged_files": 40, "written_files": 1, "rows": 1000, "deleted_files": 0, "dropped_rows": 0}
    assert len(list(folder.glob("part-*.parquet"))) == 1
    assert seen and set(seen) == {1000}
    t = log.read_table("t", "m", last_n=10, columns=["feature.x"])
    assert t["feature.x"].to_pylist() == [float(v) for v in range(990, 1000)]
    t = log.read_table("t", "m", first_n=3, columns=["feature.x"])
    assert t["feature.x"].to_pylist() == [0.0, 1.0, 2.0]
    assert log.compact("t", "m")["merged_files"] == 0  # nothing small left
    assert log.row_count("t", "m") == 1000


def test_last_n_is_exact_when_parts_interleave_in_time(tmp_path):
    log = PredictionLog(tmp_path, background=False)
    for j in range(100):  # written first, but later in time
        log.append_row("t", "m", 2_000 + j, "v", "", 0.0, True, {"x": 2_000 + j})
    log.flush()
    for j in range(100):  # written second, earlier in time
        log.append_row("t", "m", 1_000 + j, "v", "", 0.0, True, {"x": 1_000 + j})
    log.flush()
    t = log.read_table("t", "m", last_n=150)
    assert t["feature.x"].to_pylist() == list(range(1_050, 1_100)) + list(range(2_000, 2_100))
    t = log.read_table("t", "m", last_n=5, version="v")
    assert t["feature.x"].to_pylist() == list(range(2_095, 2_100))
    t = log.read_table("t", "m", since=1_090, until=2_005)
    assert t["feature.x"].to_pylist() == list(range(1_090, 1_100)) + list(range(2_000, 2_006))


# -- asking the home's gateway to flush before a read ---------------------------------------------
def flush_server(status: int):
    """A stand-in gateway answering ``POST /admin/flush`` with ``status``; records what it got."""
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    got: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            got.append((self.path, self.headers["Authorization"]))
            body = json.dumps({"ok": status == 200, "rows": 0}).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, got


def write_gateway_info(home, pid: int, port: int) -> None:
    """``gateway.json`` as a gateway serving ``home`` writes it."""
    import json

    (home / "gateway.json").write_text(
        json.dumps({"pid": pid, "host": "127.0.0.1", "port": port, "url": f"http://127.0.0.1:{port}"})
    )


def test_a_read_asks_the_running_gateway_to_flush_and_fails_loudly_when_it_cannot(home, mon):
    import os
    import socket

    from mlops_jupyter.deployment.tokens import admin_token
    from mlops_jupyter.errors import GatewayError

    mon.track_prediction("g", 0.1, True, {"x": 1.0})
    assert mon.check_drift("g")["performance_metrics"]["prediction_count"] == 1  # no gateway.json: no-op
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_gateway_info(home, dead.pid, 9)  # a gateway that was killed: nothing to ask
    assert mon.performance("g")["prediction_count"] == 1

    ok, got = flush_server(200)
    try:
        write_gateway_info(home, os.getpid(), ok.server_address[1])
        assert mon.performance("g")["prediction_count"] == 1
        assert got == [("/admin/flush", f"Bearer {admin_token(home)}")]
    finally:
        ok.shutdown()
        ok.server_close()

    failing, _ = flush_server(500)
    url = f"http://127.0.0.1:{failing.server_address[1]}"
    try:
        write_gateway_info(home, os.getpid(), failing.server_address[1])
        with pytest.raises(GatewayError, match="HTTP 500") as ei:
            mon.check_drift("g")
        assert url in str(ei.value) and ei.value.value == url and ei.value.reason == "gateway_flush_failed"
    finally:
        failing.shutdown()
        failing.server_close()

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    write_gateway_info(home, os.getpid(), port)
    mon.set_alert("g", "error_rate > 0.5", "log")  # so that evaluate_alerts reads
    for read in (lambda: mon.window_data("g"), lambda: mon.timeseries("g"), lambda: mon.evaluate_alerts()):
        with pytest.raises(GatewayError, match="could not be reached") as ei:
            read()
        assert ei.value.reason == "gateway_unreachable" and f"127.0.0.1:{port}" in str(ei.value)
    mon.sync_gateway = False
    assert mon.check_drift("g")["performance_metrics"]["prediction_count"] == 1


def test_a_snapshot_reads_each_window_once_at_one_moment_and_syncs_the_gateway_once(home, mon):
    import os

    mon.set_reference("s", frame(300, 0))
    mon.track_predictions("s", predictions(frame(300, 1)))
    mon.flush()
    reads = []
    read_table = mon.predlog.read_table

    def counting_read_table(*args, **kwargs):
        reads.append(kwargs.get("version"))
        return read_table(*args, **kwargs)

    mon.predlog.read_table = counting_read_table
    ok, got = flush_server(200)
    try:
        write_gateway_info(home, os.getpid(), ok.server_address[1])
        with mon.snapshot():
            drift = mon.check_drift("s", window=300)
            mon.track_predictions("s", predictions(frame(50, 2)))
            mon.flush()  # written meanwhile: not part of this moment
            ref, cur = mon.window_data("s", window=300)
            series = mon.timeseries("s", freq="1h", window=300)
            perf = mon.performance("s", window=300)
        assert len(got) == 1  # the gateway was asked to write its buffer once, before the reads
        assert reads == [None]  # one read of the window for the four calls
        assert drift["n_current"] == len(cur) == 300 and len(ref) == 300
        assert perf["prediction_count"] == int(series["count"].sum()) == 300
        assert perf == drift["performance_metrics"]
        # after the block, reads are fresh again: the 50 new predictions are in the window
        assert mon.performance("s", window=300)["prediction_count"] == 300
        assert mon.performance("s", window=350)["prediction_count"] == 350
        assert len(got) == 3 and reads == [None, None, None]
    finally:
        mon.predlog.read_table = read_table
        ok.shutdown()
        ok.server_close()


def test_timeseries_rows_are_in_time_then_version_order_whatever_the_logs_categories():
    from mlops_jupyter.monitoring.performance import timeseries

    df = pd.DataFrame(
        {
            "timestamp": pd.to_datetime([0, 1, 2, 61, 62, 63], unit="s", utc=True),
            # the log reads versions as categories in the order they were first written
            "version": pd.Categorical(["2.0.0", "1.0.0", "2.0.0", "1.0.0", "2.0.0", "1.0.0"], ["2.0.0", "1.0.0"]),
            "latency_s": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
            "success": [True, True, False, True, True, True],
        }
    )
    out = timeseries(df, "1min")
    assert out["version"].tolist() == ["1.0.0", "2.0.0", "1.0.0", "2.0.0"]
    assert out["count"].tolist() == [1, 2, 2, 1]
    assert out["success_rate"].tolist() == [1.0, 0.5, 1.0, 1.0]
    assert out["p95_latency"].tolist() == pytest.approx([0.1, 0.19, 0.49, 0.4])
    assert out.equals(timeseries(df.assign(version=df["version"].astype(str)), "1min"))
