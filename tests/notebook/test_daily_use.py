"""What a daily user of the notebook layer expects (issue 15), in a real IPython shell on a
real store: one tenant per kernel, keyword forms, panels that follow the kernel, charts
that read at a glance, a quiet run list, lineage to the run that fitted the model, links,
theme colours, keyboard reach, progress on slow first steps."""

from __future__ import annotations

import json
import os
import re
import threading

import pytest


def _log(p, name: str, params: dict, metrics: dict, steps: dict | None = None) -> str:
    run = p.tracker.start_experiment("churn", run_name=name)
    p.tracker.log_params(params)
    for key, values in (steps or {}).items():
        for step, v in enumerate(values):
            p.tracker.log_metrics({key: v}, step=step)
    p.tracker.log_metrics(metrics)
    p.tracker.end_experiment()
    return run.run_id


@pytest.fixture
def churn(home):
    """Tenant acme, experiment churn: three runs; C never varies, max_depth does."""
    from mlops_jupyter import create_mlops_pipeline

    p = create_mlops_pipeline("churn", tenant_id="acme")
    ids = [
        _log(
            p,
            f"r{i}",
            {"max_depth": d, "C": 1.0, "solver": s},
            {"accuracy": acc},
            {"loss": [1 / (k + d) for k in range(4)]},
        )
        for i, (d, s, acc) in enumerate([(3, "lbfgs", 0.944), (5, "lbfgs", 0.972), (8, "saga", 0.95)])
    ]
    return p, ids


# -- 1. one tenant everywhere ---------------------------------------------------------------
def test_init_tenant_is_the_default_of_every_factory_and_panel(mlops_ip, home):
    mlops_ip.run_cell("%mlops init --tenant acme --experiment churn")
    mlops_ip.run_cell("%mlops start first\n")
    mlops_ip.run_cell("%mlops metrics accuracy=0.9")
    mlops_ip.run_cell("%mlops end")
    mlops_ip.run_cell(
        "from mlops_jupyter.widgets import ComparisonPanel\n"
        "from mlops_jupyter import create_experiment_tracker\n"
        "panel = ComparisonPanel('churn')\n"
        "tracker = create_experiment_tracker()"
    )
    panel = mlops_ip.user_ns["panel"]
    assert panel.pipeline.settings.tenant == "acme" and panel.n_runs == 1
    assert "tenant acme" in panel.title.value
    assert mlops_ip.user_ns["tracker"].settings.tenant == "acme"

    from mlops_jupyter.notebook import kernel_state

    state = json.loads(repr(kernel_state()))  # what the lab reads: text/plain is plain JSON
    assert state["tenant"] == "acme" and state["experiment"] == "churn" and state["initialized"] is True
    assert state["autolog"] == "off" and state["home"] == str(home)
    mlops_ip.run_cell("%unload_ext mlops_jupyter")  # the process gets its own defaults back
    assert "MLOPS_TENANT" not in os.environ


# -- 9. keyword forms and panels that follow the kernel -------------------------------------
def test_panels_accept_the_pipeline_first_and_keywords(churn):
    from mlops_jupyter.notebook.widgets import ComparisonPanel, DeployPanel, DriftPanel

    p, _ = churn
    assert ComparisonPanel(p, experiment="churn").n_runs == 3
    assert ComparisonPanel(p, "churn").n_runs == ComparisonPanel("churn", pipeline=p).n_runs == 3
    assert DriftPanel(p, model_id="churn").model == "churn"
    assert DeployPanel(p, model_id="churn").model == DeployPanel(p, "churn").model == "churn"
    with pytest.raises(TypeError, match="multiple values for argument 'model_id'"):
        DeployPanel(p, "churn", model_id="other")
    with pytest.raises(TypeError, match="pipeline twice"):
        DriftPanel(p, "churn", pipeline=p)


def test_a_change_in_one_panel_or_magic_refreshes_the_other_live_panels(mlops_ip, fitted):
    from mlops_jupyter.notebook.magics import get_magics
    from mlops_jupyter.notebook.widgets import DeployPanel

    mlops_ip.run_cell("%mlops init --tenant acme")
    pipeline = get_magics(mlops_ip).pipeline
    mlops_ip.push({"model": fitted})
    mlops_ip.run_cell("%mlops register model --model iris_bus")
    first, second, other = (
        DeployPanel(pipeline, "iris_bus"),
        DeployPanel(pipeline, "iris_bus"),
        DeployPanel(pipeline, "other"),
    )
    assert [v["version"] for v in second.versions] == ["1.0.0"]
    refreshed = []
    second.on_refresh(lambda panel: refreshed.append(panel))
    other.on_refresh(lambda panel: refreshed.append(panel))

    mlops_ip.run_cell("%mlops register model --model iris_bus")  # the kernel changed the model
    assert [v["version"] for v in second.versions] == ["1.0.0", "1.1.0"] == [v["version"] for v in first.versions]
    assert refreshed == [second]  # the other model's panel was not reloaded

    refreshed.clear()
    assert first.changed() == 1  # what a deploy / rollback in the first panel does
    assert refreshed == [second]
    second.close()
    assert first.changed() == 0  # a closed panel follows nothing


def test_panels_can_refresh_every_n_seconds(churn):
    from mlops_jupyter.notebook.widgets import ComparisonPanel

    p, _ = churn
    panel = ComparisonPanel(p, experiment="churn")
    done = threading.Event()
    panel.on_refresh(lambda _p: done.set())
    panel.refresh_every = 0.05
    try:
        assert done.wait(30), "no timed refresh"
    finally:
        panel.refresh_every = 0
    panel.close()


# -- 2. the static view travels with the widget -----------------------------------------------
def test_every_panel_bundle_has_the_static_view_and_says_how_to_get_the_live_one(churn):
    from mlops_jupyter.notebook.widgets import ComparisonPanel, DeployPanel, DriftPanel

    p, _ = churn
    for panel, kind in ((ComparisonPanel(p, experiment="churn"), "comparison"), (DeployPanel(p, "churn"), "deploy")):
        bundle = panel._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle
        assert f"data-mlops-panel='{kind}'" in bundle["text/html"]
        assert "Run the cell to get the live panel back" in bundle["text/html"]
    drift = DriftPanel(p, model_id="churn")
    assert "Run the cell to get the live panel back" in drift._repr_mimebundle_()["text/html"]


# -- 3. charts that read at a glance ----------------------------------------------------------
def test_metric_axes_are_zoomed_and_labelled_and_params_that_vary_come_first(churn):
    from mlops_jupyter.notebook.widgets import ComparisonPanel

    p, _ = churn
    panel = ComparisonPanel(p, experiment="churn")
    x = panel.build_chart().to_dict()["layer"][0]["encoding"]["x"]
    lo, hi = x["scale"]["domain"]
    assert 0.93 < lo < 0.944 and 0.972 < hi < 0.98  # 0.944 vs 0.972 fill the axis
    assert x["title"].startswith("accuracy (axis zoomed")
    # the scatter's param is the one that varies most (max_depth: 3 values), not "C" (first alphabetically)
    assert panel.param == "max_depth"
    panel.view = "scatter"
    y = panel.build_chart().to_dict()["layer"][0]["encoding"]["y"]
    assert y["scale"]["domain"][0] > 0.9
    # parallel coordinates: only params that vary (C is always 1.0)
    panel.view = "parallel"
    axes = {r["axis"] for d in panel.build_chart().to_dict()["datasets"].values() for r in d if "axis" in r}
    assert {"max_depth", "solver", "accuracy"} <= axes and "C" not in axes
    # the table hides the constant param unless asked
    keys = [c["key"] for c in panel.table.columns]
    assert "params.max_depth" in keys and "params.C" not in keys
    panel.all_params = True
    assert "params.C" in [c["key"] for c in panel.table.columns]


def test_metrics_logged_with_steps_get_a_line_per_run(churn):
    from mlops_jupyter.notebook.widgets import ComparisonPanel

    p, ids = churn
    panel = ComparisonPanel(p, experiment="churn", metric="loss", view="steps")
    spec = panel.build_chart().to_dict()
    assert spec["mark"]["type"] == "line" and spec["encoding"]["x"]["field"] == "step"
    (points,) = [d for d in spec["datasets"].values() if d and "step" in d[0]]
    assert len(points) == 12 and {r["run_id"] for r in points} == set(ids)
    assert sorted(r["value"] for r in points if r["run_id"] == ids[0]) == sorted(1 / (k + 3) for k in range(4))
    panel.metric = "accuracy"  # logged once per run: said, not drawn
    assert "was not logged over steps" in json.dumps(panel.build_chart().to_dict())


# -- 4. a run list without noise ----------------------------------------------------------------
def test_the_session_is_not_a_row_and_quiet_cells_are_counted(autolog_ip):
    autolog_ip.run_cell("%mlops init --experiment churn")
    autolog_ip.run_cell("%mlops autolog on")
    autolog_ip.run_cell("max_depth = 4", cell_id="a")
    autolog_ip.run_cell("total = max_depth * 2", cell_id="b")  # computes only: not a run
    autolog_ip.run_cell(
        "from mlops_jupyter.widgets import ComparisonPanel\npanel = ComparisonPanel('churn')", cell_id="c"
    )
    panel = autolog_ip.user_ns["panel"]
    assert panel.n_runs == 1 and list(panel.frame["kind"]) == ["cell"]
    assert re.search(r"session \S+ \(open\)", panel.summary.value)
    status = autolog_ip.run_cell("%mlops status").result
    assert status["cells_logged"] == 1 and status["cells_not_logged"] == 2
    autolog_ip.run_cell("%mlops start manual\nlr = 0.1", cell_id="e")  # an explicit run opened in a cell wins
    assert autolog_ip.run_cell("%mlops status").result["active_run"] == "manual"
    autolog_ip.run_cell("%mlops end")
    # the live panel follows: a cell that logs refreshes it (in the background, off the cell's path)
    refreshed = threading.Event()
    panel.on_refresh(lambda _p: refreshed.set())
    autolog_ip.run_cell("n_estimators = 50", cell_id="d")
    assert refreshed.wait(60) and panel.n_runs == 3  # cells a and d, and the manual run
    assert "cells_not_logged" not in panel.metrics  # the session's own metric is not a run's
    runs = autolog_ip.run_cell("%mlops runs").result
    assert len(runs) == 3 and all(r["tags"].get("mlops.kind") != "session" for r in runs)


# -- lineage: the run that fitted the model ---------------------------------------------------
def test_register_links_the_version_to_the_run_that_fitted_the_variable(autolog_ip, iris):
    X, y = iris
    autolog_ip.push({"X": X, "y": y})
    autolog_ip.run_cell(
        "from sklearn.ensemble import RandomForestClassifier\nfrom sklearn.linear_model import LogisticRegression"
    )
    autolog_ip.run_cell("rf = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)", cell_id="rf")
    autolog_ip.run_cell("lr = LogisticRegression(max_iter=300).fit(X, y)", cell_id="lr")
    from mlops_jupyter.notebook.magics.autolog import fitted_by

    rf_run, lr_run = fitted_by(autolog_ip.user_ns["rf"]), fitted_by(autolog_ip.user_ns["lr"])
    assert rf_run and lr_run and rf_run != lr_run
    v = autolog_ip.run_cell("%mlops register rf --model forest").result
    assert v["run_id"] == rf_run  # not the last run (lr's cell)
    v2 = autolog_ip.run_cell(f"%mlops register rf --model forest --run {lr_run}").result
    assert v2["run_id"] == lr_run  # --run overrides
    assert fitted_by(object()) is None


# -- 5. links ----------------------------------------------------------------------------------
def _group_cmdlines(pgid: int) -> list[str]:
    """The command lines of the processes in process group ``pgid`` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                if not entry.isdigit() or int(f.read().rsplit(")", 1)[1].split()[2]) != pgid:
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                out.append(f.read().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile, or not a process
    return out


def test_mlops_ui_starts_one_mlflow_ui_on_the_store_and_panels_link_to_it(mlops_ip, churn):
    import urllib.request

    from mlops_jupyter.notebook.magics import ui
    from mlops_jupyter.notebook.widgets import ComparisonPanel

    p, ids = churn
    try:
        url = mlops_ip.run_cell("%mlops ui").result
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url) and "<a href=" in url._repr_html_()
        proc = ui._UIS[p.settings.tracking_uri].proc
        assert mlops_ip.run_cell("%mlops ui").result == url and ui._UIS[p.settings.tracking_uri].proc is proc
        # the UI is the server and its uvicorn worker: no job runner and huey consumers beside it
        assert not [c for c in _group_cmdlines(proc.pid) if "mlflow.server.jobs" in c]
        with urllib.request.urlopen(f"{url}/api/2.0/mlflow/runs/get?run_id={ids[0]}", timeout=30) as r:
            assert json.load(r)["run"]["info"]["run_id"] == ids[0]  # the UI reads our store
        panel = ComparisonPanel(p, experiment="churn")
        row = panel.table.rows[0]
        assert row["url"] == f"{url}/#/runs/{row['id']}" and row["links"][0] == row["url"]
        assert f"{url}/#/runs/" in panel.static_html()
        assert f"{url}/#/experiments/" in panel.title.value  # the experiment links to its page
        from mlops_jupyter.notebook.widgets import DeployPanel

        assert f"{url}/#/models/acme" in DeployPanel(p, "churn").title.value
        from mlops_jupyter.notebook import kernel_state

        assert json.loads(kernel_state())["ui_url"] == url
    finally:
        ui.stop_all()
    assert proc.poll() is not None


# -- 6. theme colours, 8. keyboard --------------------------------------------------------------
def test_panel_html_uses_jupyterlab_colours_and_charts_follow_the_theme(churn):
    from mlops_jupyter.errors import ValidationError
    from mlops_jupyter.notebook.widgets import ComparisonPanel, DeployPanel, theme
    from mlops_jupyter.notebook.widgets._table import _CSS

    p, _ = churn
    html = ComparisonPanel(p, experiment="churn").static_html() + DeployPanel(p, "churn").static_html() + _CSS
    bare = re.findall(r"(?:color|background)\s*:\s*#[0-9a-fA-F]{3,6}", html)
    assert bare == []  # every colour is a var(--jp-...) (with a fallback inside)
    assert "color-mix(in srgb, var(--jp-warn-color1" in html
    theme.set_theme("dark")
    try:
        spec = ComparisonPanel(p, experiment="churn").chart.spec  # what the live chart draws
    finally:
        theme.set_theme("light")
    assert spec["config"]["axis"]["labelColor"] == "#e0e0e0" and spec["config"]["background"] == "transparent"
    with pytest.raises(ValidationError, match="light"):
        theme.set_theme("solarized")


def _chart_ink(chart_widget) -> tuple[str, str]:
    """The label colour and the background a live chart draws with."""
    config = chart_widget.spec["config"]
    return config["axis"]["labelColor"], config["background"]


def test_a_new_chart_theme_redraws_the_charts_of_every_live_panel_and_keeps_their_state(churn):
    import altair as alt

    from mlops_jupyter.notebook.widgets import ComparisonPanel, DeployPanel, DriftPanel, theme

    p, ids = churn
    theme.set_theme("light")
    notebook_theme = alt.theme.active
    alt.theme.enable("default")  # the notebook's own charts keep their altair theme throughout
    try:
        comparison, deploy, drift = (
            ComparisonPanel(p, experiment="churn"),
            DeployPanel(p, "churn"),
            DriftPanel(p, "churn"),
        )
        charts = [comparison.chart, deploy.chart, drift.scores_chart, drift.distribution_chart, drift.timeline_chart]
        comparison.select(ids[:2])
        loaded = [panel.loaded_at for panel in (comparison, deploy, drift)]
        assert {_chart_ink(c) for c in charts} == {("#1f1f1f", "transparent")}  # themed from the first chart
        redrawn: list[str] = []
        for c in charts:
            c.observe(lambda change: redrawn.append(change["name"]), "spec")

        theme.set_theme("dark")
        assert {_chart_ink(c) for c in charts} == {("#e0e0e0", "transparent")}
        assert len(redrawn) == len(charts)  # each chart redrawn once, at once
        dark = json.dumps([c.spec for c in charts])
        assert '"black"' not in dark and "#333" not in dark  # no dark ink left on the dark page
        assert comparison.selected == ids[:2] and comparison._chart_rows == 2  # the selection stays
        assert [panel.loaded_at for panel in (comparison, deploy, drift)] == loaded  # no reload from the store

        theme.set_theme("dark")  # the lab says so after every cell: nothing to redraw
        assert len(redrawn) == len(charts)
        deploy.close()
        theme.set_theme("light")
        assert {_chart_ink(c) for c in charts if c is not deploy.chart} == {("#1f1f1f", "transparent")}
        assert _chart_ink(deploy.chart)[0] == "#e0e0e0"  # a closed panel follows nothing
        assert alt.theme.active == "default"

        # a chart equal to the one shown sends nothing when assigned: the panel asks it to follow
        from mlops_jupyter.notebook.widgets._offline import chart_widget

        def plain():
            return alt.Chart(alt.Data(values=[{"x": 1}])).mark_point().encode(x="x:Q")

        same = chart_widget(plain())
        theme.set_theme("dark")
        same.chart = plain()
        assert _chart_ink(same)[0] == "#1f1f1f"
        assert same.follow_theme() is True and _chart_ink(same)[0] == "#e0e0e0"
        assert same.follow_theme() is False
    finally:
        theme.set_theme("light")
        alt.theme.enable(notebook_theme)


def test_table_headers_and_rows_are_reachable_with_the_keyboard():
    from mlops_jupyter.notebook.widgets._table import _ESM

    for needle in ("th.tabIndex = 0", "aria-sort", "tr.tabIndex = 0", 'e.key === "Enter"', "aria-label"):
        assert needle in _ESM


# -- 7. feedback on slow steps ---------------------------------------------------------------------
def test_a_cold_first_runs_shows_progress_at_once_and_init_warms_up(mlops_ip):
    from IPython.utils.capture import capture_output

    from mlops_jupyter.notebook.magics import get_magics
    from mlops_jupyter.notebook.magics.progress import is_cold, progress, warm_up

    with capture_output() as out, progress("loading runs ...") as say:
        say("still loading ...")
    shown = [o.data.get("text/plain", "") for o in out.outputs]
    assert shown[0] == "⏳ loading runs ..."
    mlops_ip.run_cell("%mlops init --tenant acme")
    m = get_magics(mlops_ip)
    warm_up(m.pipeline).join(60)
    assert not is_cold(m.pipeline)  # MLflow imported and the store open before the first command


# -- 1. the lab reads a kernel's tenant (a real kernel, as JupyterLab asks it) ----------------------
def test_a_real_kernel_answers_its_tenant_to_a_silent_request(home, monkeypatch):
    from jupyter_client.manager import start_new_kernel

    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("MLOPS_CHART_THEME", "dark")  # what the lab sets in a kernel under JupyterLab Dark
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        for code in ("%load_ext mlops_jupyter", "%mlops init --tenant acme --experiment churn", "%mlops autolog on"):
            reply = kc.execute_interactive(code, timeout=120, output_hook=lambda _m: None)
            assert reply["content"]["status"] == "ok", reply["content"]
        expr = '__import__("mlops_jupyter.notebook", fromlist=["kernel_state"]).kernel_state()'
        chart_theme = '__import__("mlops_jupyter.notebook.widgets.theme", fromlist=["current"]).current()'
        reply = kc.execute_interactive(
            "", silent=True, store_history=False, user_expressions={"mlops": expr, "theme": chart_theme}, timeout=60
        )
        assert reply["content"]["user_expressions"]["theme"]["data"]["text/plain"] == "'dark'"  # from the 1st chart
        answer = reply["content"]["user_expressions"]["mlops"]
        assert answer["status"] == "ok", answer
        state = json.loads(answer["data"]["text/plain"])  # plain JSON, no Python quoting
        assert state["tenant"] == "acme" and state["autolog"] == "on" and state["experiment"] == "churn"
        reply = kc.execute_interactive("%mlops status", timeout=60, output_hook=lambda _m: None)
        status = kc.execute_interactive(
            "",
            silent=True,
            user_expressions={"s": "get_ipython().magics_manager.registry['MLOpsMagics'].autolog.status()"},
        )["content"]["user_expressions"]["s"]["data"]["text/plain"]
        assert "'cells_logged': 0" in status  # the silent request was no cell run
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# -- 10. the demo's stop command runs from any shell ------------------------------------------------
def test_the_printed_command_runs_outside_the_venv():
    import subprocess

    from mlops_jupyter.cli import runnable_command

    cmd = runnable_command()
    out = subprocess.run(
        f"{cmd} --version", shell=True, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, timeout=120
    )
    assert out.returncode == 0 and "mlops-jupyter" in out.stdout, (cmd, out.stderr)
