"""The panels without a browser: built on a real store (and a real gateway for the
DeployPanel), driven by setting traits and clicking buttons, checked against the store,
the gateway and the chart specs."""

from __future__ import annotations

import pytest
from conftest import gateway_home
from panel_data import EXPERIMENT, MODEL, TENANT, log_runs, seed_panel_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, template_db):
    """Tenant acme: 60 runs, iris 1.0.0 and 1.1.0 (production: 1.0.0 then 1.1.0; staging:
    1.0.0), 3 000 drifted predictions and a fired alert; a gateway."""
    with gateway_home(tmp_path_factory, template_db, "panels") as home:
        yield seed_panel_store(home, n_runs=60, n_predictions=3000)


def served(store, env: str = "production", n: int = 20) -> set[str]:
    """The versions that answered ``n`` predictions at the endpoint (``X-Model-Version``)."""
    client = store["pipeline"].deployment.client(MODEL, env)
    try:
        return {(client.predict(store["X"].head(1)), client.last_version)[1] for _ in range(n)}
    finally:
        client.close()


def spec_rows(chart, *keys: str) -> list[dict]:
    for values in chart.to_dict()["datasets"].values():
        if values and all(k in values[0] for k in keys):
            return values
    raise AssertionError(f"no dataset with {keys}")


# -- ComparisonPanel -------------------------------------------------------------------------
def test_comparison_table_sorts_pages_and_marks_the_best_run(store):
    from mlops_jupyter.notebook.widgets import ComparisonPanel

    p = store["pipeline"]
    panel = ComparisonPanel(EXPERIMENT, pipeline=p, page_size=25)
    df = panel.frame
    assert panel.n_runs == 60 and panel.n_pages == 3 and panel.metric == "accuracy" and panel.view == "bar"
    best = df.loc[df["metrics.accuracy"].idxmax()]
    assert panel.best_run_id == best["run_id"] and panel.best_run["run_name"] == best["run_name"]
    assert f"★ {best['metrics.accuracy']:.4g}" in panel.summary.value
    # sorted by the metric, best first; the best row is flagged for the browser
    rows = panel.table.rows
    assert len(rows) == 25 and rows[0]["id"] == best["run_id"] and rows[0]["best"] and not rows[1]["best"]
    keys = [c["key"] for c in panel.table.columns]
    assert keys[:4] == ["run_name", "status", "start_time", "duration"]  # no "cell": not cell runs
    assert keys[4] == "metrics.accuracy" and "params.max_depth" in keys
    acc = [float(r["cells"][4]) for r in rows]
    assert acc == sorted(acc, reverse=True)
    assert panel.table.caption == "runs 1–25 of 60, sorted by accuracy descending"
    # paging
    panel.next_button.click()
    assert panel.page == 1 and panel.table.caption.startswith("runs 26–50 of 60")
    panel.next_button.click()
    assert len(panel.table.rows) == 10 and panel.next_button.disabled
    panel.next_button.click()
    assert panel.page == 2  # clamped
    # a header click in the browser sets sort_by: numeric params sort as numbers (2 < 10)
    panel.table.sort_by, panel.table.ascending = "params.max_depth", True
    assert panel.page == 0 and panel.sort_by == "params.max_depth"
    col = keys.index("params.max_depth")
    depths = [int(r["cells"][col]) for r in panel.table.rows]
    assert depths == sorted(depths) and depths[0] == int(df["params.max_depth"].astype(int).min())
    # a loss: lower is better, the best run and the direction follow
    panel.metric = "loss"
    assert panel.higher_is_better is False and panel.goal_dropdown.value is False
    assert panel.best_run_id == df.loc[df["metrics.loss"].idxmin(), "run_id"]
    panel.metric_dropdown.value = "f1"  # the dropdown drives the trait
    assert panel.metric == "f1" and panel.higher_is_better is True


def test_comparison_views_follow_metric_param_and_selection(store):
    from mlops_jupyter.notebook.widgets import ComparisonPanel

    panel = ComparisonPanel(EXPERIMENT, pipeline=store["pipeline"], metric="accuracy", param="max_depth")
    bar = panel.chart.chart.to_dict()
    assert [layer["mark"]["type"] for layer in bar["layer"]] == ["bar", "text"]
    bars = spec_rows(panel.chart.chart, "label", "value", "best")
    assert len(bars) == 30 and bars[0]["run_id"] == panel.best_run_id and bars[0]["best"]
    assert panel.chart_note.value and "best 30 of 60" in panel.chart_note.value
    assert panel.param_dropdown.disabled  # the bar view has no param axis

    panel.view_buttons.value = "scatter"
    assert panel.view == "scatter" and not panel.param_dropdown.disabled
    spec = panel.chart.chart.to_dict()
    assert spec["layer"][0]["encoding"]["x"]["type"] == "quantitative"
    assert spec["layer"][0]["encoding"]["x"]["title"] == "max_depth"
    assert len(spec_rows(panel.chart.chart, "param", "value")) == 60
    panel.param = "model"
    assert panel.chart.chart.to_dict()["layer"][0]["encoding"]["x"]["type"] == "nominal"

    panel.view = "parallel"
    lines = spec_rows(panel.chart.chart, "run_id", "axis", "norm")
    assert {r["axis"] for r in lines} == {"model", "lr", "max_depth", "accuracy"}
    assert [r["axis"] for r in lines[:4]] == ["model"] * 4  # the chosen param is the first axis

    # selecting runs (the table's checkboxes set `selected`) narrows the chart to them
    picked = list(panel.frame["run_id"][:3])
    seen = []
    panel.on_select(lambda p, ids: seen.append(ids))
    panel.table.selected = picked
    assert panel.selected == picked and seen[-1] == picked
    assert {r["run_id"] for r in spec_rows(panel.chart.chart, "run_id", "axis")} == set(picked)
    assert "the 3 selected runs" in panel.chart_note.value and "<b>3</b> selected" in panel.summary.value
    assert not panel.clear_button.disabled
    panel.clear_button.click()
    assert (
        panel.selected == []
        and panel.table.selected == []
        and len({r["run_id"] for r in spec_rows(panel.chart.chart, "run_id", "axis")}) == 60
    )


def test_thousands_of_runs_are_paged_and_the_chart_sample_is_said_on_screen(home):
    from mlops_jupyter import create_experiment_tracker
    from mlops_jupyter.notebook.widgets import ComparisonPanel

    tracker = create_experiment_tracker(tenant_id=TENANT, storage_path=home)
    log_runs(tracker, 2500, seed=3)
    panel = ComparisonPanel(storage_path=home, tenant_id=TENANT, max_points=400, page_size=50)
    assert panel.n_runs == 2500 and panel.n_pages == 50 and len(panel.table.rows) == 50
    panel.view = "scatter"
    pts = spec_rows(panel.chart.chart, "run_id", "param", "value")
    assert len(pts) == 400 and panel.best_run_id in {p["run_id"] for p in pts}
    assert "a random sample of 400 of 2,500 runs (the best run always included)" in panel.chart_note.value
    panel.view = "parallel"
    assert len({r["run_id"] for r in spec_rows(panel.chart.chart, "run_id", "axis")}) == 300
    assert "300 lines drawn at random" in panel.chart_note.value
    html = panel.static_html()
    assert "a random sample of 400 of 2,500 runs" in html and "data:image/svg+xml;base64," in html
    assert html.count("<tr") == 51  # header + one page


def test_refresh_reloads_runs_and_given_runs_stay_the_given_ones(home):
    from mlops_jupyter import create_experiment_tracker
    from mlops_jupyter.notebook.widgets import ComparisonPanel

    tracker = create_experiment_tracker(tenant_id=TENANT, storage_path=home)
    log_runs(tracker, 5)
    given = tracker.list_experiments(EXPERIMENT)[:2]
    all_panel = ComparisonPanel(EXPERIMENT, storage_path=home, tenant_id=TENANT)
    given_panel = ComparisonPanel(runs=given, storage_path=home, tenant_id=TENANT)
    assert all_panel.n_runs == 5 and given_panel.n_runs == 2
    assert set(given_panel.frame["run_id"]) == {r["run_id"] for r in given}
    refreshed = []
    all_panel.on_refresh(lambda p: refreshed.append(p.n_runs))
    with tracker.start_experiment(EXPERIMENT, run_name="late") as run:
        tracker.log_metrics({"accuracy": 0.999, "auc": 0.5})
        tracker.log_params({"max_depth": 99})
    all_panel.refresh_button.click()
    given_panel.refresh()
    assert refreshed == [6] and all_panel.best_run_id == run.run_id and "auc" in all_panel.metric_dropdown.options
    assert given_panel.n_runs == 2
    # another tenant's store view is empty, and says so
    other = ComparisonPanel(storage_path=home, tenant_id="other")
    assert other.n_runs == 0 and other.table.caption == "no runs" and other.best_run is None
    assert "no metrics" in str(other.chart.chart.to_dict()["datasets"])


def test_report_runs_open_their_html_from_the_comparison_panel(home, tmp_path):
    """Runs made by ``mlops-jupyter report`` carry ``mlops.report.path``: the panel shows a
    report column, and Open report shows that HTML below the table."""
    from mlops_jupyter import create_experiment_tracker
    from mlops_jupyter.notebook.widgets import ComparisonPanel

    page = tmp_path / "train.html"
    page.write_text('<html><body><h1>Quarterly "churn" report</h1><svg></svg></body></html>')
    tracker = create_experiment_tracker(tenant_id=TENANT, storage_path=home)
    log_runs(tracker, 2)
    with tracker.start_experiment(
        EXPERIMENT, run_name="report-train", tags={"mlops.kind": "report", "mlops.report.path": str(page)}
    ) as rep:
        tracker.log_metrics({"accuracy": 0.5})
    panel = ComparisonPanel(EXPERIMENT, storage_path=home, tenant_id=TENANT)
    opened = []
    panel.on_report(lambda p, rid, path: opened.append((rid, path)))
    assert ("report", "report", False) in panel.table_columns()
    assert panel.report_button.disabled  # nothing selected
    plain = next(r for r in panel.frame["run_id"] if r != rep.run_id)
    panel.select([plain])
    assert panel.report_button.disabled  # a run without a report
    panel.select([rep.run_id])
    assert not panel.report_button.disabled
    panel.report_button.click()
    assert opened == [(rep.run_id, str(page))]
    assert (
        "<iframe srcdoc=" in panel.report_view.value and "Quarterly &quot;churn&quot; report" in panel.report_view.value
    )
    page.unlink()  # a report whose file is gone: the error shows, nothing breaks
    panel.open_report(rep.run_id)
    assert "open report failed" in panel.message and "FileNotFoundError" in panel.message


def test_runs_frame_matches_list_experiments_and_keeps_tenants_apart(store, home):
    import math

    from mlops_jupyter import create_experiment_tracker
    from mlops_jupyter.tracking.runs_query import frame_from_runs, runs_frame

    t = store["pipeline"].tracker
    fast = runs_frame(t).set_index("run_id")
    slow = frame_from_runs(t.list_experiments()).set_index("run_id")
    assert set(fast.index) == set(slow.index) and len(fast) == 60
    cols = [
        "run_name",
        "experiment_name",
        "status",
        "params.max_depth",
        "params.model",
        "metrics.accuracy",
        "metrics.loss",
    ]
    assert fast.loc[slow.index, cols].equals(slow[cols])
    assert all(math.isclose(a, b) for a, b in zip(fast.loc[slow.index, "duration"], slow["duration"]))
    assert (fast.loc[slow.index, "start_time"] == slow["start_time"]).all()
    assert runs_frame(t, run_ids=list(fast.index[:3])).shape[0] == 3
    other = create_experiment_tracker(tenant_id="other", storage_path=store["home"])
    assert runs_frame(other).empty and runs_frame(other, run_ids=list(fast.index)).empty
    assert runs_frame(t, experiment_name="nope").empty


# -- DriftPanel (before the DeployPanel tests: their requests reach the prediction log) -------
def test_a_runs_key_metric_is_the_experiments_sort_metric_in_the_panel_and_the_sidebar(store):
    """One rule (``runs_query.key_metrics``) for the ComparisonPanel's default metric and the
    key metric the sidebar shows first (the server extension's ``key_metrics``): the
    experiment's ``mlops.sort_metric`` tag, else the usual quality metrics, never the
    cell bookkeeping."""
    from panel_data import log_runs

    from mlops_jupyter import create_experiment_tracker
    from mlops_jupyter.config.settings import resolve_settings
    from mlops_jupyter.notebook.widgets import ComparisonPanel
    from mlops_jupyter.server.service import MLOpsService
    from mlops_jupyter.tracking.runs_query import SORT_METRIC_TAG, key_metrics

    p = store["pipeline"]  # scoped to "sweep": another tracker logs into "ranked"
    log_runs(create_experiment_tracker(tenant_id=TENANT, storage_path=store["home"]), 4, experiment="ranked", seed=3)
    assert ComparisonPanel("ranked", pipeline=p).metric == "accuracy"  # no tag: a usual metric
    exp_id = p.tracker.store.experiment_id(p.tracker.tenancy, "ranked")
    p.tracker.store.client.set_experiment_tag(exp_id, SORT_METRIC_TAG, "loss")
    panel = ComparisonPanel("ranked", pipeline=p)
    assert panel.sort_metric == "loss" and panel.metric == "loss" and panel.higher_is_better is False
    assert panel.sort_by == "metrics.loss" and panel.ascending is True  # the lowest loss first
    # a frame of runs (no experiment named) that all belong to it: the same
    assert ComparisonPanel(panel.frame, pipeline=p).metric == "loss"
    # the sidebar's runs, as the server extension sends them: the same key metric first
    service = MLOpsService(resolve_settings(tenant_id=TENANT, storage_path=store["home"]))
    try:
        runs = service.runs("ranked")["runs"]
        assert len(runs) == 4 and all(r["key_metrics"] == ["loss", "accuracy", "f1"] for r in runs)
        assert service.runs("sweep", limit=1)["runs"][0]["key_metrics"][0] == "accuracy"
    finally:
        service.close()
    assert key_metrics(["cell_duration_s", "throughput", "f1"]) == ["f1", "throughput", "cell_duration_s"]


def test_without_a_sort_metric_a_runs_key_metric_is_the_last_one_logged(store):
    """The sidebar's key metric of a run whose experiment names no sort metric: the metric it
    logged last (not a usual one logged earlier, never the cell bookkeeping); metrics logged in
    one call: the usual quality metric among them."""
    from mlops_jupyter import create_experiment_tracker
    from mlops_jupyter.config.settings import resolve_settings
    from mlops_jupyter.server.service import MLOpsService

    t = create_experiment_tracker(tenant_id=TENANT, storage_path=store["home"])
    t.start_experiment("latest", run_name="fit-then-serve")
    t.log_metrics({"cell_duration_s": 0.2, "loss": 0.3, "accuracy": 0.91}, step=0)
    t.log_metrics({"latency_ms": 3.5}, step=1)
    t.end_experiment()
    t.start_experiment("latest", run_name="one-call")
    t.log_metrics({"loss": 0.3, "accuracy": 0.91, "throughput": 120.0}, step=0)
    t.end_experiment()
    logged = {r["run_name"]: list(r["metrics"]) for r in t.list_experiments("latest")}
    assert logged["fit-then-serve"] == ["cell_duration_s", "loss", "accuracy", "latency_ms"]  # in logging order
    service = MLOpsService(resolve_settings(tenant_id=TENANT, storage_path=store["home"]))
    try:
        runs = {r["run_name"]: r["key_metrics"] for r in service.runs("latest")["runs"]}
    finally:
        service.close()
    assert runs["fit-then-serve"] == ["latency_ms", "accuracy", "loss", "cell_duration_s"]
    assert runs["one-call"][0] == "accuracy"


def test_delivery_text_says_what_an_alert_action_did():
    """The DriftPanel's and the sidebar's line for an alert's action delivery."""
    from mlops_jupyter.monitoring.alerts.describe import delivery_text

    base = {"alert_id": "a", "model_id": "churn", "condition": "error_rate > 0.1", "state": "firing"}
    ok, timed_out = {"n": 2, "ok": True, "status": 204}, {"n": 1, "ok": False, "error": "timed out after 10 s"}
    assert delivery_text(base) == ""  # no action delivery recorded
    rolled = {"ok": True, "environment": "production", "version": "1.0.0", "attempts": [{"n": 1, "ok": True}]}
    assert (
        delivery_text({**base, "action": "rollback", "delivery": "delivered", "action_result": rolled})
        == "rolled back churn production to 1.0.0 (1 attempt)"
    )
    skipped = {**rolled, "skipped": "the previous version 2.0.0 is newer than the live 1.0.0; not rolling forward"}
    assert delivery_text(
        {**base, "action": "rollback:production", "delivery": "delivered", "action_result": skipped}
    ).startswith("rollback of churn production skipped: the previous version 2.0.0 is newer")
    hook = {**base, "action": "webhook:http://hook", "delivery": "delivered"}
    assert (
        delivery_text({**hook, "action_result": {"ok": True, "status": 204, "attempts": [timed_out, ok]}})
        == "webhook:http://hook delivered (HTTP 204, 2 attempts)"
    )
    pager = {**base, "action": "pager", "action_result": {"attempts": [timed_out]}}
    assert delivery_text({**pager, "delivery": "retrying"}) == "pager retrying: attempt 1 failed: timed out after 10 s"
    assert delivery_text({**pager, "delivery": "failed"}) == "pager failed (1 attempt): timed out after 10 s"
    assert delivery_text({**base, "action": "log", "delivery": "queued", "action_result": {}}) == "log queued"
    held = {"ok": False, "reason": "no action registered under 'notify'"}
    assert (
        delivery_text({**base, "action": "notify", "delivery": "undelivered", "action_result": held})
        == "notify undelivered: no action registered under 'notify'"
    )


def test_drift_panel_shows_scores_distributions_performance_and_alerts(store):
    from mlops_jupyter.notebook.widgets import DriftPanel

    store["pipeline"].monitoring.evaluate_alerts(MODEL)  # a check only reads (issue 16): evaluating fires
    panel = DriftPanel(MODEL, pipeline=store["pipeline"])
    r = panel.result
    assert r["drift_detected"] and panel.features[0] == "sepal length (cm)" == panel.feature
    assert "drift detected" in panel.summary.value and "last 1,000 predictions" in panel.summary.value
    scores = spec_rows(panel.scores_chart.chart, "feature", "score", "status")
    assert [s["feature"] for s in scores] == list(r["features"])
    assert scores[0]["status"] == "drifted" and scores[0]["score"] == pytest.approx(r["drift_score"])
    assert spec_rows(panel.scores_chart.chart, "threshold")[0]["threshold"] == 0.1
    # the shifted feature: current sits right of the reference
    hist = spec_rows(panel.distribution_chart.chart, "source", "start", "share")
    mean = {
        s: sum((h["start"] + h["end"]) / 2 * h["share"] for h in hist if h["source"] == s)
        for s in ("reference", "current")
    }
    assert mean["current"] - mean["reference"] == pytest.approx(1.5, abs=0.3)
    panel.feature_dropdown.value = "petal width (cm)"
    assert panel.feature == "petal width (cm)"
    assert "petal width (cm)" in panel.distribution_chart.chart.to_dict()["title"]
    # performance: overall and per version, and over time
    perf = panel.performance_html.value
    assert "1.0.0" in perf and "1.1.0" in perf and "1,000" in perf
    lat = spec_rows(panel.timeline_chart.chart, "latency_ms", "stat")
    assert {x["version"] for x in lat} == {"1.0.0", "1.1.0"} and all(x["latency_ms"] > 0.01 for x in lat)
    # the alert that fired
    assert panel.alerts and panel.alerts[0]["condition"] == "drift_score > 0.1"
    assert "alert history" in panel.alerts_html.value and "drift_score &gt; 0.1" in panel.alerts_html.value
    # its action's delivery as a line (as the sidebar says it), not the raw action_result
    assert "log delivered (1 attempt)" in panel.alerts_html.value
    assert "idempotency_key" not in panel.alerts_html.value and "{" not in panel.alerts_html.value
    html = panel.static_html()
    assert html.count("data:image/svg+xml;base64,") == 3 and "performance in the window" in html


def test_threshold_and_window_recompute_drift(store):
    from mlops_jupyter.notebook.widgets import DriftPanel

    panel = DriftPanel(MODEL, pipeline=store["pipeline"], window=200)
    assert panel.result["n_current"] == 200 and panel.window_text.value == "200"
    top = panel.result["drift_score"]
    panel.threshold_slider.value = 1.0
    assert panel.threshold == 1.0 and panel.result["threshold"] == 1.0
    assert panel.result["drift_detected"] == (top > 1.0)
    panel.threshold = 5.0  # above the slider's range: the slider grows, the value is kept
    assert panel.threshold_slider.max == 5.0 and panel.threshold_slider.value == 5.0
    assert panel.result["threshold"] == 5.0
    panel.threshold = 0.1
    panel.window_text.value = "50"
    assert panel.result["n_current"] == 50 and len(panel.current) == 50
    panel.window = "bad window"
    assert "InvalidWindowError" in panel.error
    panel.window = ""
    assert panel.error == "" and panel.result["n_current"] == 1000


# -- DeployPanel -----------------------------------------------------------------------------
def test_deploy_panel_shows_versions_lineage_and_what_serves_where(store):
    from mlops_jupyter.notebook.widgets import DeployPanel

    panel = DeployPanel(MODEL, pipeline=store["pipeline"])
    live = panel.live
    assert live["staging"] == {"1.0.0": 100} and "production" in live
    assert [v for _, v in panel.version_dropdown.options] == ["1.1.0", "1.0.0"]  # newest first
    assert panel.version == "1.1.0" and panel.environment == "production"
    assert set(panel.environment_dropdown.options) >= {"production", "staging"}
    assert "live deployments" in panel.live_html.value and "/tenants/acme/staging/models/iris" in panel.live_html.value
    # where each deployment runs, next to its environment (local, ray or kserve)
    assert {d["target"] for d in panel.deployments} == {"local"}
    assert ">environment</th><th scope='col'" in panel.live_html.value and ">target</th>" in panel.live_html.value
    assert panel.live_html.value.count(">local</td>") == len(panel.deployments)
    assert "1.0.0" in panel.versions_html.value and "iris.csv" in panel.versions_html.value
    spec = panel.chart.chart.to_dict()
    assert spec["resolve"]["scale"]["color"] == "independent"
    traffic = spec_rows(panel.chart.chart, "environment", "version", "percent")
    split = {(r["environment"].split(" ")[0], r["version"], r["percent"]) for r in traffic}
    assert ("staging", "1.0.0", 100) in split
    nodes = {r["version"]: r for r in spec_rows(panel.chart.chart, "version", "x", "state")}
    assert nodes["1.1.0"]["parent"] == "1.0.0" and nodes["1.0.0"]["state"] == "live"
    html = panel._repr_mimebundle_()["text/html"]
    assert html.count("data:image/svg+xml;base64,") == 1 and "versions (newest first)" in html
    assert panel._repr_mimebundle_()["application/vnd.jupyter.widget-view+json"]["model_id"] == panel.model_id


def test_deploy_in_production_asks_first_then_the_endpoint_serves_the_split(store):
    from mlops_jupyter.notebook.widgets import DeployPanel

    d = store["pipeline"].deployment
    d.deploy_model(MODEL, "1.0.0", "production", traffic_percentage=100)
    panel = DeployPanel(MODEL, pipeline=store["pipeline"])
    deployed = []
    panel.on_deploy(lambda p, r: deployed.append(r))
    panel.version, panel.traffic = "1.1.0", 40
    panel.deploy_button.click()
    assert panel.pending == "deploy" and panel.confirm_box.layout.display == "flex"
    assert "Deploy iris 1.1.0 to production with 40% of its traffic?" in panel.confirm_label.value
    assert d.get_deployment(MODEL, "production")["traffic"] == {"1.0.0": 100}  # nothing yet
    assert deployed == []
    panel.confirm_button.click()
    assert panel.pending == "" and panel.confirm_box.layout.display == "none"
    assert d.get_deployment(MODEL, "production")["traffic"] == {"1.0.0": 60, "1.1.0": 40}
    assert panel.live["production"] == {"1.0.0": 60, "1.1.0": 40}  # reloaded from the store
    assert panel.error == ""
    assert panel.message.startswith("Deployed iris 1.1.0 in production: now 1.0.0 60% · 1.1.0 40%")
    assert "mlops-ok" in panel.status.value and deployed[0]["traffic"] == {"1.0.0": 60, "1.1.0": 40}
    assert panel.last_result["status"] == "deployed"
    assert served(store, n=60) == {"1.0.0", "1.1.0"}
    assert {
        r["version"]: r["percent"]
        for r in spec_rows(panel.chart.chart, "environment", "version", "percent")
        if r["environment"].startswith("production")
    } == {"1.0.0": 60, "1.1.0": 40}


def test_rollback_restores_the_previous_version_at_the_endpoint(store):
    from mlops_jupyter.notebook.widgets import DeployPanel

    d = store["pipeline"].deployment
    d.deploy_model(MODEL, "1.0.0", "production", traffic_percentage=100)
    d.deploy_model(MODEL, "1.1.0", "production", traffic_percentage=100)
    assert served(store) == {"1.1.0"}
    panel = DeployPanel(MODEL, pipeline=store["pipeline"])
    rolled = []
    panel.on_rollback(lambda p, r: rolled.append(r))
    panel.rollback_button.click()
    assert panel.pending == "rollback"
    assert "Roll back iris in production (now 1.1.0 100%) to 1.0.0?" in panel.confirm_label.value
    assert served(store) == {"1.1.0"}
    panel.confirm_button.click()
    assert served(store) == {"1.0.0"}
    assert d.get_deployment(MODEL, "production")["traffic"] == {"1.0.0": 100}
    assert panel.live["production"] == {"1.0.0": 100} and rolled[0]["version"] == "1.0.0"
    assert panel.message.startswith("Rolled back iris to 1.0.0 in production: now 1.0.0 100%")
    nodes = {r["version"]: r for r in spec_rows(panel.chart.chart, "version", "x", "state")}
    assert nodes["1.1.0"]["state"] == "idle" and "production 100%" in nodes["1.0.0"]["live"]


def test_a_bad_traffic_value_shows_an_error_and_changes_nothing(store):
    from mlops_jupyter.notebook.widgets import DeployPanel

    d = store["pipeline"].deployment
    before = d.get_deployment(MODEL, "production")
    served_before = served(store)
    panel = DeployPanel(MODEL, pipeline=store["pipeline"])
    errors = []
    panel.on_error(lambda p, action, exc: errors.append((action, type(exc).__name__)))
    panel.version, panel.traffic = "1.1.0", 0
    assert panel.traffic_slider.value == 0
    assert panel.deploy(confirmed=True) is None
    assert "deploy failed: ValidationError: Invalid traffic_percentage 0" in panel.error
    assert "mlops-error" in panel.status.value and errors == [("deploy", "ValidationError")]
    after = d.get_deployment(MODEL, "production")
    assert after["traffic"] == before["traffic"] and after["revision"] == before["revision"]
    assert panel.live["production"] == before["traffic"] and served(store) == served_before
    assert not panel.busy and not panel.deploy_button.disabled


def test_cancel_or_changing_a_control_drops_the_pending_action(store):
    from mlops_jupyter.notebook.widgets import DeployPanel

    d = store["pipeline"].deployment
    before = d.get_deployment(MODEL, "production")["revision"]
    panel = DeployPanel(MODEL, pipeline=store["pipeline"])
    panel.promote_button.click()
    assert panel.pending == "promote"
    panel.cancel_button.click()
    assert panel.pending == "" and "promote cancelled; nothing changed" in panel.message
    panel.deploy_button.click()
    panel.version_dropdown.value = "1.0.0"  # what was asked no longer matches the controls
    assert panel.pending == "" and panel.confirm_box.layout.display == "none"
    assert panel.confirm() is None and "nothing to confirm" in panel.message
    assert d.get_deployment(MODEL, "production")["revision"] == before


def test_other_environments_act_in_one_click_and_rollback_needs_a_deployment(store):
    from mlops_jupyter.errors import NotFoundError
    from mlops_jupyter.notebook.widgets import DeployPanel

    d = store["pipeline"].deployment
    panel = DeployPanel(MODEL, pipeline=store["pipeline"], environments=["production", "staging", "canary"])
    panel.environment = "canary"
    assert panel.rollback_button.disabled and "not deployed in canary" in panel.rollback_button.tooltip
    panel.version = "1.0.0"
    panel.promote_button.click()  # no confirmation outside production
    assert panel.pending == "" and d.get_deployment(MODEL, "canary")["traffic"] == {"1.0.0": 100}
    assert not panel.rollback_button.disabled and panel.live["canary"] == {"1.0.0": 100}
    panel.version, panel.traffic = "1.1.0", 25
    panel.deploy_button.click()
    assert d.get_deployment(MODEL, "canary")["traffic"] == {"1.0.0": 75, "1.1.0": 25}
    assert served(store, "canary", 60) == {"1.0.0", "1.1.0"}
    panel.rollback_button.click()
    assert d.get_deployment(MODEL, "canary")["traffic"] == {"1.0.0": 100}
    assert served(store, "canary") == {"1.0.0"}
    # a new environment typed in code joins the dropdown
    panel.environment = "qa"
    assert "qa" in panel.environment_dropdown.options and panel.environment_dropdown.value == "qa"
    with pytest.raises(NotFoundError):
        d.get_deployment(MODEL, "qa")


def test_panels_never_keep_stale_state(store):
    from mlops_jupyter.notebook.widgets import DeployPanel

    d = store["pipeline"].deployment
    d.deploy_model(MODEL, "1.0.0", "stale", traffic_percentage=100)
    a = DeployPanel(MODEL, pipeline=store["pipeline"])
    b = DeployPanel(MODEL, pipeline=store["pipeline"])
    a.environment = b.environment = "stale"
    a.version, a.traffic = "1.1.0", 50
    a.deploy_button.click()
    assert a.live["stale"] == {"1.0.0": 50, "1.1.0": 50}
    # b follows what a did in this kernel (the panels' kernel-wide bus), without a refresh
    assert b.live["stale"] == {"1.0.0": 50, "1.1.0": 50} and "1.0.0 50% · 1.1.0 50%" in b.live_html.value
    d.rollback(MODEL, "stale")  # behind both panels' backs, through the API
    b.rollback_button.click()  # acting reloads: b sees the API's rollback, then its own error
    assert "no earlier version to roll back to" in b.error and b.live["stale"] == {"1.0.0": 100}


def test_an_unknown_model_shows_the_error_in_the_panel(store):
    from mlops_jupyter.notebook.widgets import DeployPanel, DriftPanel

    panel = DeployPanel("nope", pipeline=store["pipeline"])
    assert "ModelNotFoundError" in panel.error and "'iris'" in panel.error  # the message lists the models
    assert panel.version_dropdown.options == () and panel.deploy_button.disabled
    drift = DriftPanel("nope", pipeline=store["pipeline"])
    # monitoring names the reason (a model id with no versions: unknown_model)
    assert drift.result["status"] == "unknown_model" and "no drift scores" in str(drift.scores_chart.chart.to_dict())


# -- magics ------------------------------------------------------------------------------------
def test_magics_return_values_that_display_as_panels(mlops_ip, home):
    from mlops_jupyter import create_mlops_pipeline
    from mlops_jupyter.notebook.widgets import ComparisonPanel, DeployPanel, DriftPanel

    p = create_mlops_pipeline("notebook", storage_path=home)
    log_runs(p.tracker, 4, experiment="notebook")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    p.versioning.create_version(MODEL, model=LogisticRegression(max_iter=300).fit(X, y), reference_data=X)
    p.monitoring.track_predictions(MODEL, X.assign(prediction_time=0.01, success=True).head(50))

    mlops_ip.run_cell("runs = %mlops runs")
    runs = mlops_ip.user_ns["runs"]
    assert isinstance(runs, list) and len(runs) == 4  # still the list
    assert runs._repr_mimebundle_() is None  # not in a kernel: the usual table
    panel = runs.panel()
    assert isinstance(panel, ComparisonPanel) and set(panel.frame["run_id"]) == {r["run_id"] for r in runs}

    drift = mlops_ip.run_cell("%mlops drift iris --threshold 0.2").result
    assert isinstance(drift, dict) and drift["threshold"] == 0.2
    dpanel = drift.panel()
    assert isinstance(dpanel, DriftPanel) and dpanel.threshold == 0.2 and dpanel.result["threshold"] == 0.2

    dep = mlops_ip.run_cell("%mlops panel deploy iris").result
    assert isinstance(dep, DeployPanel) and dep.model == MODEL and dep.live == {}
    assert isinstance(mlops_ip.run_cell("%mlops panel runs").result, ComparisonPanel)
    assert isinstance(mlops_ip.run_cell("%mlops panel drift iris --window 20").result, DriftPanel)
    err = mlops_ip.run_failing("%mlops panel deploy")
    assert "give the model" in str(err.error_in_exec)


def test_in_a_kernel_panels_display_as_widgets_with_a_static_view(home, tmp_path, monkeypatch):
    """A real kernel (nbclient): each panel's output holds the widget view and the static
    HTML (SVG images, tables), and an HTML export without widget state shows the latter."""
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from mlops_jupyter import create_mlops_pipeline

    p = create_mlops_pipeline(EXPERIMENT, tenant_id=TENANT, storage_path=home)
    log_runs(p.tracker, 6)
    X, y = load_iris(return_X_y=True, as_frame=True)
    p.versioning.create_version(MODEL, model=LogisticRegression(max_iter=300).fit(X, y), reference_data=X)
    p.monitoring.track_predictions(MODEL, X.assign(prediction_time=0.01, success=True))
    monkeypatch.setenv("MLOPS_TENANT", TENANT)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(c)
        for c in (
            "%load_ext mlops_jupyter\n%mlops init --experiment sweep",
            "%mlops runs",
            "%mlops drift iris",
            "%mlops panel deploy iris",
            "runs = %mlops runs\nlen(runs)",
        )
    ]
    NotebookClient(
        nb,
        kernel_name="python3",
        timeout=120,
        store_widget_state=False,
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    for i, text in ((1, "runs of sweep (6)"), (2, "'drift_detected'"), (3, "DeployPanel")):
        (out,) = [o for o in nb.cells[i].outputs if o["output_type"] == "execute_result"]
        data = out["data"]
        assert len(data["application/vnd.jupyter.widget-view+json"]["model_id"]) == 32
        static = data["text/html"]
        assert static.startswith("<div class='mlops-static'") and "data:image/svg+xml;base64," in static
        assert text in data["text/plain"]  # the value's own text for terminals
    assert nb.cells[4].outputs[0]["data"]["text/plain"] == "6"  # the value is still the list
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert html.count('class="mlops-static"') == 3 and "Drift · iris" in html and "run-5" in html
