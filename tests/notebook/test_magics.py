"""``%mlops`` magics in a real in-process IPython shell on a real MLflow store.

Every subcommand is driven through ``run_cell`` (which raises on error, see conftest's
``TestingShell``); user mistakes must be IPython ``UsageError``s of one line, asserted on
``ExecutionResult.error_in_exec``. What the magics store is read back through a plain
``mlflow.MlflowClient``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from IPython.core.error import UsageError

from mlops_jupyter.errors import (
    InvalidMetricError,
    InvalidTenantError,
    RunStateError,
    ValidationError,
)


# -- helpers ---------------------------------------------------------------------------
@pytest.fixture
def client(home: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def magics(ip):
    from mlops_jupyter.notebook.magics import get_magics

    return get_magics(ip)


def flush(ip) -> None:
    magics(ip).pipeline.flush()


def usage_error(ip, cell: str) -> UsageError:
    """Run a cell that must fail with a one-line ``UsageError``; return the error."""
    result = ip.run_failing(cell)
    err = result.error_in_exec
    assert isinstance(err, UsageError), f"{cell!r} raised {type(err).__name__}: {err}"
    assert "\n" not in str(err), f"not one line: {err}"
    return err


def runs_in(client, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}"
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


# -- loading -----------------------------------------------------------------------------
def test_load_ext_imports_nothing_heavy_and_is_fast():
    # A fresh interpreter with a fresh IPython shell: the acceptance bound is 150 ms;
    # the assertion leaves slack for a loaded machine and prints the measured value.
    code = (
        "import json, sys, time\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "t0 = time.perf_counter()\n"
        "ip.run_line_magic('load_ext', 'mlops_jupyter')\n"
        "dt = time.perf_counter() - t0\n"
        "heavy = sorted(m for m in ('mlflow', 'sklearn', 'scipy', 'altair') if m in sys.modules)\n"
        "print(json.dumps({'ms': dt * 1000, 'heavy': heavy,\n"
        "                  'line': 'mlops' in ip.magics_manager.magics['line'],\n"
        "                  'cell': 'mlops' in ip.magics_manager.magics['cell']}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"%load_ext mlops_jupyter took {got['ms']:.1f} ms in a fresh shell (goal < 150 ms)")
    assert got["heavy"] == []
    assert got["line"] and got["cell"]
    assert got["ms"] < 400


def test_load_ext_registers_magic_and_configurable_once(mlops_ip):
    from mlops_jupyter.notebook.magics.magic import MLOpsMagics

    m = magics(mlops_ip)
    assert isinstance(m, MLOpsMagics)
    assert m in mlops_ip.configurables
    mlops_ip.run_cell("%load_ext mlops_jupyter")  # already loaded: nothing new
    mlops_ip.run_cell("%reload_ext mlops_jupyter")
    assert sum(isinstance(c, MLOpsMagics) for c in mlops_ip.configurables) == 1
    mlops_ip.run_cell("%unload_ext mlops_jupyter")
    assert "mlops" not in mlops_ip.magics_manager.magics["line"]
    assert not any(isinstance(c, MLOpsMagics) for c in mlops_ip.configurables)


# -- init / status / autolog -------------------------------------------------------------
def test_init_sets_traits_and_returns_status(mlops_ip, home):
    r = mlops_ip.run_cell("%mlops init --tenant acme --experiment churn").result
    m = magics(mlops_ip)
    assert (m.tenant, m.experiment) == ("acme", "churn")
    assert r["tenant"] == "acme" and r["experiment_name"] == "churn"
    assert r["home"] == str(home) and r["tracking_uri"] == f"sqlite:///{home / 'mlflow.db'}"
    assert m.pipeline.settings.tenant == "acme"
    assert "<table>" in r._repr_html_() and "acme" in r._repr_html_()


def test_init_with_a_bad_tenant_is_a_usage_error_naming_the_error(mlops_ip):
    mlops_ip.run_cell("%mlops init --tenant acme")
    err = usage_error(mlops_ip, "%mlops init --tenant 'bad tenant!'")
    assert str(err).startswith("InvalidTenantError: ")
    assert "bad tenant!" in str(err)
    assert isinstance(err.mlops_error, InvalidTenantError)
    assert magics(mlops_ip).tenant == "acme"  # validated before anything changed


def test_status_shows_tenant_store_experiment_autolog_and_gateway(mlops_ip, home):
    s = mlops_ip.run_cell("%mlops status").result
    assert s["tenant"] == "default"
    assert s["home"] == str(home)
    assert s["experiment_name"] == "notebook"  # no notebook name found in a plain shell
    assert s["active_run"] == ""
    assert s["autolog"] == "off"
    assert "gateway" in s


def test_autolog_on_and_off(mlops_ip):
    on = mlops_ip.run_cell("%mlops autolog on").result
    assert on["autolog"] == "on"
    hooks = [cb for cb in mlops_ip.events.callbacks["pre_run_cell"] if getattr(cb, "__self__", None) is not None]
    assert any(type(cb.__self__).__name__ == "CellAutolog" for cb in hooks)
    assert mlops_ip.run_cell("%mlops status").result["autolog"] == "on"
    off = mlops_ip.run_cell("%mlops autolog off").result
    assert off["autolog"] == "off"
    assert not any(
        type(getattr(cb, "__self__", None)).__name__ == "CellAutolog"
        for cb in mlops_ip.events.callbacks["pre_run_cell"]
    )
    assert mlops_ip.run_cell("%mlops status").result["autolog"] == "off"


# -- runs ----------------------------------------------------------------------------------
def test_start_and_end_runs(mlops_ip, client):
    mlops_ip.run_cell("team = 'vision'")
    started = mlops_ip.run_cell("%mlops start baseline --tag owner=ana --tag team=team").result
    assert started["run_name"] == "baseline"
    assert mlops_ip.run_cell("%mlops status").result["active_run"] == "baseline"
    ended = mlops_ip.run_cell("%mlops end").result
    assert ended["status"] == "completed" and ended["run_id"] == started["run_id"]
    mlops_ip.run_cell("%mlops start broken")
    assert mlops_ip.run_cell("%mlops end --status failed").result["status"] == "failed"

    runs = {r.info.run_name: r for r in runs_in(client, "default/notebook")}
    assert runs["baseline"].info.status == "FINISHED"
    assert runs["baseline"].data.tags["owner"] == "ana"
    assert runs["baseline"].data.tags["team"] == "vision"  # from the notebook variable
    assert runs["broken"].info.status == "FAILED"


def test_end_without_a_run_is_a_usage_error(mlops_ip):
    err = usage_error(mlops_ip, "%mlops end")
    assert str(err).startswith("RunStateError: ")
    assert isinstance(err.mlops_error, RunStateError)


def test_params_and_metrics_from_literals_and_notebook_variables(mlops_ip, client):
    mlops_ip.run_cell("depth = 7\nscore = 0.875")
    mlops_ip.run_cell("%mlops start p")
    params = mlops_ip.run_cell("%mlops params lr=0.1 max_depth=depth solver=lbfgs").result
    assert params == {"lr": "0.1", "max_depth": "7", "solver": "lbfgs"}
    metrics = mlops_ip.run_cell("%mlops metrics accuracy=0.9 f1=score").result
    assert metrics == {"accuracy": 0.9, "f1": 0.875}
    mlops_ip.run_cell("%mlops metrics accuracy=0.95 --step 1")
    run_id = mlops_ip.run_cell("%mlops end").result["run_id"]

    run = client.get_run(run_id)
    assert run.data.params == {"lr": "0.1", "max_depth": "7", "solver": "lbfgs"}
    assert run.data.metrics == {"accuracy": 0.95, "f1": 0.875}
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "accuracy")] == [(0, 0.9), (1, 0.95)]


def test_metric_that_is_not_a_number_is_a_usage_error(mlops_ip):
    mlops_ip.run_cell("label = 'spam'")
    mlops_ip.run_cell("%mlops start m")
    err = usage_error(mlops_ip, "%mlops metrics accuracy=high")
    assert "accuracy" in str(err) and "neither a number nor a notebook variable" in str(err)
    err = usage_error(mlops_ip, "%mlops metrics accuracy=label")  # a variable, but a string
    assert str(err).startswith("InvalidMetricError: ")
    assert isinstance(err.mlops_error, InvalidMetricError)
    err = usage_error(mlops_ip, "%mlops metrics accuracy")
    assert "KEY=VALUE" in str(err)
    mlops_ip.run_cell("%mlops end")


def test_params_without_an_open_run_is_a_usage_error(mlops_ip):
    err = usage_error(mlops_ip, "%mlops params lr=0.1")
    assert isinstance(err.mlops_error, RunStateError)


# -- %%mlops run ---------------------------------------------------------------------------
def test_cell_run_runs_the_body_in_one_run_and_returns_the_last_value(mlops_ip, client, tmp_path):
    mlops_ip.run_cell("suffix = 'v2'")
    body = "alpha = 0.5\nbeta = alpha * 4\nbeta + 1\n"
    result = mlops_ip.run_cell(f"%%mlops run fit-{{suffix}} --tag stage=dev --tag data=suffix\n{body}")
    assert result.result == 3.0
    assert mlops_ip.user_ns["beta"] == 2.0  # the body ran in the notebook namespace
    assert magics(mlops_ip).pipeline.tracker.active_run is None  # the run ended

    (run,) = runs_in(client, "default/notebook")
    assert run.info.run_name == "fit-v2"
    assert run.info.status == "FINISHED"
    assert run.data.tags["stage"] == "dev" and run.data.tags["data"] == "v2"
    assert run.data.params == {"alpha": "0.5"}  # literal assignments only, not beta
    src = client.download_artifacts(run.info.run_id, "cell.py", dst_path=str(tmp_path))
    assert Path(src).read_text() == body


def test_cell_run_failure_marks_the_run_failed_and_propagates(mlops_ip, client):
    result = mlops_ip.run_failing("%%mlops run risky\nx = 1\nraise ValueError('bad data')\n")
    assert isinstance(result.error_in_exec, ValueError)
    assert str(result.error_in_exec) == "bad data"
    assert magics(mlops_ip).pipeline.tracker.active_run is None

    (run,) = runs_in(client, "default/notebook")
    assert run.info.run_name == "risky"
    assert run.info.status == "FAILED"
    assert run.data.tags["mlops.error"] == "ValueError: bad data"
    assert run.data.tags["mlops.error_type"] == "ValueError"


@pytest.mark.parametrize(
    "cell,got",
    [
        ("%%mlops walk\nx = 1\n", "got 'walk'"),
        ("%%mlops\nx = 1\n", "got nothing after %%mlops"),
        ("%%mlops --tag a=1\nx = 1\n", "got '--tag a=1'"),
    ],
)
def test_cell_magic_with_a_bad_verb_is_a_usage_error(mlops_ip, cell, got):
    err = usage_error(mlops_ip, cell)
    assert str(err) == f"%%mlops: the cell magic's one verb is run: %%mlops run [NAME] [--tag K=V ...]; {got}."
    assert "x" not in mlops_ip.user_ns


def test_cell_magic_usage_errors_name_the_cell_magic(mlops_ip):
    err = usage_error(mlops_ip, "%%mlops run a b\nx = 1\n")
    assert str(err).startswith("%%mlops run: unrecognized arguments: b. Usage: %%mlops run [--tag K=V] [name]")
    assert "x" not in mlops_ip.user_ns


# -- %mlops runs ---------------------------------------------------------------------------
@pytest.fixture
def three_runs(mlops_ip):
    """Runs a (0.7), b (0.9), c (0.8) in 'notebook' and d (0.95) in 'other'."""
    for name, acc in (("a", 0.7), ("b", 0.9), ("c", 0.8)):
        mlops_ip.run_cell(f"%mlops start {name}\n%mlops metrics accuracy={acc}\n%mlops params tag={name}\n%mlops end")
    mlops_ip.run_cell("%mlops init --experiment other")
    mlops_ip.run_cell("%mlops start d\n%mlops metrics accuracy=0.95\n%mlops end")
    mlops_ip.run_cell("%mlops init --experiment notebook")
    return mlops_ip


def test_runs_returns_a_list_of_run_dicts(three_runs):
    three_runs.run_cell("runs = %mlops runs")
    runs = three_runs.user_ns["runs"]
    assert isinstance(runs, list) and all(isinstance(r, dict) for r in runs)
    assert [r["run_name"] for r in runs] == ["c", "b", "a"]  # newest first
    for r in runs:
        assert {
            "run_id",
            "run_name",
            "experiment_name",
            "status",
            "start_time",
            "end_time",
            "duration",
            "params",
            "metrics",
            "tags",
        } <= set(r)
        assert r["experiment_name"] == "notebook" and r["status"] == "completed"
    assert runs[1]["metrics"] == {"accuracy": 0.9} and runs[1]["params"] == {"tag": "b"}
    html = runs._repr_html_()
    assert html.count("<tr>") == 1 + 3  # header + one row per run
    for name in ("metrics.accuracy", "params.tag", ">a<", ">b<", ">c<", "0.9"):
        assert name in html


def test_runs_sort_top_where_experiment_and_all(three_runs):
    def names(line: str) -> list[str]:
        return [r["run_name"] for r in three_runs.run_cell(line).result]

    assert names("%mlops runs --sort accuracy") == ["b", "c", "a"]
    assert names("%mlops runs --sort accuracy --asc") == ["a", "c", "b"]
    assert names("%mlops runs --sort metrics.accuracy --top 2") == ["b", "c"]
    assert names('%mlops runs --where "metrics.accuracy > 0.75" --sort accuracy') == ["b", "c"]
    assert names("%mlops runs --experiment other") == ["d"]
    assert names("%mlops runs --all --sort accuracy") == ["d", "b", "c", "a"]
    assert names("%mlops runs --all --sort accuracy --top 1") == ["d"]


def test_runs_bad_arguments_are_usage_errors(three_runs):
    err = usage_error(three_runs, '%mlops runs --where "metrics.accuracy >"')
    assert isinstance(err.mlops_error, ValidationError)
    assert "--top" in str(usage_error(three_runs, "%mlops runs --top 0"))
    assert "invalid int value" in str(usage_error(three_runs, "%mlops runs --top many"))
    # a metric no run has is a typo, not an order (MLflow would list the runs unsorted)
    assert str(usage_error(three_runs, "%mlops runs --sort acuracy")) == (
        "%mlops runs --sort acuracy: none of the 3 run(s) listed has the metric 'acuracy'; their metrics: accuracy"
    )
    assert "has the param 'nope'; their params: tag" in str(usage_error(three_runs, "%mlops runs --sort params.nope"))


# -- versioning ----------------------------------------------------------------------------
def test_register_versions_lineage_and_rollback(mlops_ip, fitted, iris, client):
    X, _ = iris
    mlops_ip.push({"clf": fitted, "X": X, "owner": "ana"})
    v1 = mlops_ip.run_cell("%mlops register clf --model iris --meta owner=owner --meta stage=dev --reference X").result
    assert v1["version"] == "1.0.0" and v1["model_id"] == "iris"
    assert v1["metadata"] == {"owner": "ana", "stage": "dev"}
    v2 = mlops_ip.run_cell("%mlops register clf --model iris").result
    assert v2["version"] == "1.1.0" and v2["parent"] == "1.0.0"

    versions = mlops_ip.run_cell("%mlops versions iris").result
    assert [v["version"] for v in versions] == ["1.0.0", "1.1.0"]
    assert versions[0]["has_reference"] and not versions[1]["has_reference"]
    assert "1.1.0" in versions._repr_html_()

    lineage = mlops_ip.run_cell("%mlops lineage iris").result
    assert lineage.lineage["edges"] == [("1.0.0", "1.1.0")]
    assert [v["version"] for v in lineage] == ["1.0.0", "1.1.0"]

    back = mlops_ip.run_cell("%mlops rollback iris --to 1.0.0").result
    assert back["version"] == "1.0.0" and back["rolled_back"]
    assert mlops_ip.run_cell("%mlops lineage iris").result.lineage["live"] == {"production": "1.0.0"}
    rm = client.get_registered_model("default.iris")
    assert str(rm.aliases["production"]) == str(v1["registry_version"])


def test_register_missing_variables_are_usage_errors(mlops_ip, fitted):
    err = usage_error(mlops_ip, "%mlops register nothing_here --model iris")
    assert "nothing_here" in str(err)
    mlops_ip.push({"clf": fitted})
    err = usage_error(mlops_ip, "%mlops register clf --model iris --reference no_data")
    assert "no_data" in str(err)
    assert "--model" in str(usage_error(mlops_ip, "%mlops register clf"))


def test_rollback_without_a_target_or_deployment_is_a_usage_error(mlops_ip, fitted):
    mlops_ip.push({"clf": fitted})
    mlops_ip.run_cell("%mlops register clf --model iris")
    err = usage_error(mlops_ip, "%mlops rollback iris")
    assert "iris" in str(err) and "production" in str(err)  # not deployed there: nothing to roll back


def test_deploy_commands_surface_core_errors_as_usage_errors(mlops_ip):
    err = usage_error(mlops_ip, "%mlops deploy no_such_model 1.0.0 --traffic 50")
    assert str(err).startswith(f"{type(err.mlops_error).__name__}: ") and "no_such_model" in str(err)
    assert "frame" in str(usage_error(mlops_ip, "%mlops predict iris frame"))  # no such notebook variable


def test_deploy_target_flag_renders_kserve_and_a_bad_target_names_the_allowed_ones(mlops_ip, fitted, home):
    # kserve renders a manifest without a cluster (status "rendered"): no Ray, no gateway
    mlops_ip.push({"clf": fitted})
    mlops_ip.run_cell("%mlops register clf --model iris")
    r = mlops_ip.run_cell("%mlops deploy iris 1.0.0 --env staging --target kserve").result
    assert r["target"] == "kserve" and r["status"] == "rendered" and r["version"] == "1.0.0"
    manifest = Path(r["target_status"]["manifest"])
    assert manifest == home / "kserve" / "default" / "staging" / "iris.yaml" and manifest.is_file()
    assert "kind: InferenceService" in manifest.read_text()
    assert magics(mlops_ip).pipeline.deployment.target.name == "local"  # the pipeline's own target is unchanged
    assert magics(mlops_ip).deployment_for("kserve").get_deployment("iris", "staging")["target"] == "kserve"
    err = usage_error(mlops_ip, "%mlops deploy iris 1.0.0 --target k8s")
    assert str(err).startswith("ValidationError: ") and "'k8s'" in str(err)
    assert err.mlops_error.allowed == ["local", "ray", "kserve"]
    assert "'local', 'ray', 'kserve'" in str(err)
    assert "--target" in mlops_ip.run_cell("%mlops help deploy").result


def test_drift_and_alert_magics_run_on_the_monitoring_api(mlops_ip):
    import numpy as np
    import pandas as pd

    mon = magics(mlops_ip).pipeline.monitoring
    rng = np.random.default_rng(0)
    mon.set_reference("iris", pd.DataFrame({"x": rng.normal(size=1000)}))
    mon.track_predictions(
        "iris", pd.DataFrame({"prediction_time": 0.01, "success": True, "x": rng.normal(1.5, 1.0, 300)})
    )
    rule = mlops_ip.run_cell('%mlops alert iris "drift_score > 0.1" --action notify_team').result
    assert rule["condition"] == "drift_score > 0.1" and rule["state"] == "inactive"
    result = mlops_ip.run_cell("%mlops drift iris --threshold 0.2 --window 100").result
    assert result["drift_detected"] is True and result["threshold"] == 0.2 and result["n_current"] == 100
    assert result["window"]["size"] == 100 and "drift of iris" in result.title
    assert [a["state"] for a in result["alerts"]] == ["inactive"]  # a check only reads (issue 16)
    assert mlops_ip.run_cell("%mlops drift iris --window 1h").result["window"]["span"] == "1h"


def test_drift_and_alert_mistakes_are_one_line_usage_errors(mlops_ip):
    err = usage_error(mlops_ip, "%mlops drift iris --window soon")
    assert str(err).startswith("InvalidWindowError: ") and "1h" in str(err)
    err = usage_error(mlops_ip, "%mlops alert iris \"__import__('os') > 1\" --action log")
    assert str(err).startswith("AlertRuleError: ") and "position 0" in str(err) and "drift_score" in str(err)
    err = usage_error(mlops_ip, '%mlops alert iris "drift_score > 0.1" --action "webhook:ftp://x"')
    assert str(err).startswith("InvalidAlertActionError: ")
    usage_error(mlops_ip, '%mlops alert iris "drift_score > 0.1"')  # --action is required


# -- help and errors -------------------------------------------------------------------------
def test_help_lists_every_subcommand(mlops_ip):
    from mlops_jupyter.notebook.magics.commands import COMMANDS

    text = mlops_ip.run_cell("%mlops help").result
    for name in COMMANDS:
        assert f"  {name}" in text
    assert "%%mlops run" in text
    assert mlops_ip.run_cell("%mlops").result == text  # no subcommand: the same help
    sub = mlops_ip.run_cell("%mlops help runs").result
    assert sub.startswith("usage: %mlops runs") and "--where" in sub and "--top" in sub
    assert "nope" in str(usage_error(mlops_ip, "%mlops help nope"))


def test_unknown_subcommand_is_one_line_naming_the_real_ones(mlops_ip):
    err = str(usage_error(mlops_ip, "%mlops deploi iris 1.0.0"))
    assert "'deploi'" in err
    for name in ("init", "runs", "deploy", "help"):
        assert name in err


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("%mlops start", "required: name"),
        ("%mlops autolog maybe", "invalid choice: 'maybe'"),
        ("%mlops end --status weird", "invalid choice: 'weird'"),
        ("%mlops params", "required: K=V"),
        ("%mlops metrics acc=1 --step two", "invalid int value"),
        ("%mlops versions", "required: MODEL_ID"),
        ("%mlops deploy iris", "required: VERSION"),
        ("%mlops register clf --model iris --bump huge", "invalid choice: 'huge'"),
        ("%mlops runs --colour red", "unrecognized arguments"),
        ('%mlops start "unclosed', "cannot parse"),
    ],
)
def test_argument_errors_are_one_line_usage_errors(mlops_ip, line, expected):
    err = str(usage_error(mlops_ip, line))
    assert expected in err
    assert err.startswith("%mlops")


# -- %config ---------------------------------------------------------------------------------
def test_config_tenant_changes_where_runs_go(mlops_ip, client):
    mlops_ip.run_cell("%mlops start before\n%mlops end")
    mlops_ip.run_cell('%config MLOpsMagics.tenant = "acme"')
    assert magics(mlops_ip).tenant == "acme"
    assert mlops_ip.run_cell("%mlops status").result["tenant"] == "acme"
    mlops_ip.run_cell("%mlops start after\n%mlops end")

    (before,) = runs_in(client, "default/notebook")
    (after,) = runs_in(client, "acme/notebook")
    assert before.info.run_name == "before" and before.data.tags["mlops.tenant"] == "default"
    assert after.info.run_name == "after" and after.data.tags["mlops.tenant"] == "acme"
    assert [r["run_name"] for r in mlops_ip.run_cell("%mlops runs").result] == ["after"]


def test_config_help_lists_the_traits(mlops_ip, capsys):
    mlops_ip.run_cell("%config MLOpsMagics")
    out = capsys.readouterr().out
    for trait in ("tenant", "uri", "experiment", "home", "autolog_on_start"):
        assert f"MLOpsMagics.{trait}" in out
