"""The package surface: lazy imports, the five factories, the extension hook, stubs, limits."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import mlops_jupyter
from mlops_jupyter.errors import FeatureNotAvailableError, MLOpsError

HEAVY = ("mlflow", "sklearn", "scipy", "altair", "IPython", "ipywidgets", "pandas")


def test_import_mlops_jupyter_imports_no_heavy_module():
    code = (
        "import json, sys\n"
        "import mlops_jupyter\n"
        "import mlops_jupyter.api, mlops_jupyter.errors, mlops_jupyter.config.env\n"
        f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_load_ext_in_a_real_shell_imports_no_heavy_module():
    # load_ipython_extension must only register; it may not pull in mlflow & co.
    code = (
        "import json, sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_line_magic('load_ext', 'mlops_jupyter')\n"
        "assert 'mlops' in ip.magics_manager.magics['line']\n"
        f"print(json.dumps(sorted(m for m in {['mlflow', 'sklearn', 'scipy', 'altair']!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_five_factories_import_from_the_package():
    from mlops_jupyter import (
        create_experiment_tracker,
        create_mlops_pipeline,
        create_model_deployment,
        create_model_monitoring,
        create_model_versioning,
    )

    for f in (
        create_mlops_pipeline,
        create_experiment_tracker,
        create_model_versioning,
        create_model_deployment,
        create_model_monitoring,
    ):
        assert callable(f)
        assert f.__name__ in mlops_jupyter.__all__
    assert {"load_ipython_extension", "unload_ipython_extension", "__version__"} <= set(mlops_jupyter.__all__)
    assert isinstance(mlops_jupyter.__version__, str) and mlops_jupyter.__version__.count(".") == 2


PUBLIC_PATHS = {
    # what the README and the notebooks import: it keeps working whatever moves inside
    "mlops_jupyter": [
        "create_mlops_pipeline",
        "create_experiment_tracker",
        "create_model_versioning",
        "create_model_deployment",
        "create_model_monitoring",
        "load_ipython_extension",
        "unload_ipython_extension",
        "__version__",
        "_jupyter_server_extension_points",
        "_jupyter_labextension_paths",
    ],
    "mlops_jupyter.widgets": ["ComparisonPanel", "DriftPanel", "DeployPanel"],
    "mlops_jupyter.errors": [
        "MLOpsError",
        "ValidationError",
        "TenantAccessError",
        "NotFoundError",
        "DeploymentError",
        "AlertRuleError",
    ],
    "mlops_jupyter.datasets": ["make_support_tickets", "train_ticket_classifier", "FEATURES"],
    "mlops_jupyter.cli": ["main"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC_PATHS))
def test_public_import_paths_keep_working(module):
    names = PUBLIC_PATHS[module]
    code = f"import {module} as m\nprint([n for n in {names!r} if not hasattr(m, n)])\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_cli_and_the_gateway_run_as_modules():
    out = subprocess.run(
        [sys.executable, "-m", "mlops_jupyter.cli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and mlops_jupyter.__version__ in out.stdout + out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "mlops_jupyter.gateway", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "--home" in out.stdout


def test_factories_return_objects_bound_to_the_tenant(home):
    from mlops_jupyter import (
        create_experiment_tracker,
        create_mlops_pipeline,
        create_model_deployment,
        create_model_monitoring,
        create_model_versioning,
    )

    p = create_mlops_pipeline("ticket_classifier_pipeline", tenant_id="tenant_123")
    assert p.tenant_id == "tenant_123"
    assert p.settings.experiment_name == "ticket_classifier_pipeline"
    assert p.tracker.settings is p.settings and p.versioning.settings is p.settings
    for f in (create_experiment_tracker, create_model_versioning, create_model_deployment, create_model_monitoring):
        assert f(tenant_id="tenant_123").settings.tenant == "tenant_123"


@pytest.fixture
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    InteractiveShell.clear_instance()
    ip = InteractiveShell.instance()
    yield ip
    mlops_jupyter.unload_ipython_extension(ip)
    from conftest import forget_shell

    forget_shell(ip)
    InteractiveShell.clear_instance()


def test_load_ipython_extension_registers_mlops_magic(shell):
    from IPython.core.error import UsageError

    assert "mlops" not in shell.magics_manager.magics["line"]
    mlops_jupyter.load_ipython_extension(shell)
    assert "mlops" in shell.magics_manager.magics["line"]
    assert "mlops" in shell.magics_manager.magics["cell"]
    # a subcommand that does not exist: one UsageError line that names the real ones
    with pytest.raises(UsageError) as ei:
        shell.run_line_magic("mlops", "no_such_subcommand")
    msg = str(ei.value)
    assert "no_such_subcommand" in msg
    for sub in ("autolog", "deploy", "rollback", "runs", "help"):
        assert sub in msg
    mlops_jupyter.unload_ipython_extension(shell)
    assert "mlops" not in shell.magics_manager.magics["line"]
    assert "mlops" not in shell.magics_manager.magics["cell"]


def test_load_ext_through_the_shell(shell):
    shell.run_line_magic("load_ext", "mlops_jupyter")
    assert "mlops" in shell.magics_manager.magics["line"]
    res = shell.run_cell("%mlops no_such_subcommand")
    # IPython turns UsageError into a one-line message, not a traceback: the cell fails.
    assert not res.success
    assert type(res.error_in_exec).__name__ == "UsageError"


def test_feature_not_available_error_contract():
    e = FeatureNotAvailableError("check_drift", "monitoring")
    assert isinstance(e, NotImplementedError) and isinstance(e, MLOpsError)
    assert "check_drift()" in str(e) and "monitoring" in str(e) and "nothing was done" in str(e)
    with pytest.raises(NotImplementedError):
        raise e


# The seed's monitoring calls, exactly as written in its step 5 and "Alerting" (their
# behaviour is covered in tests/test_monitoring.py and tests/test_alerts.py).
def test_monitoring_keeps_the_seeds_signatures_and_output_keys(home):
    from mlops_jupyter import create_model_monitoring

    m = create_model_monitoring(tenant_id="tenant_123")
    assert (
        m.track_prediction(
            model_id="ticket_classifier",
            prediction_time=0.15,
            success=True,
            input_features={"priority": 1, "category": "technical"},
        )
        is None
    )
    drift = m.check_drift(model_id="ticket_classifier", threshold=0.1)
    assert {"drift_detected", "drift_score", "performance_metrics"} <= set(drift)
    assert {"avg_latency", "success_rate"} <= set(drift["performance_metrics"])
    alert = m.set_alert(model_id="ticket_classifier", condition="drift_score > 0.1", action="notify_team")
    assert alert["condition"] == "drift_score > 0.1" and alert["action"] == "notify_team"
    assert not drift["drift_detected"]  # the guide's step 6 branch: nothing to retrain


def test_validation_limits_equal_mlflow():
    from mlflow.utils import validation as mv

    from mlops_jupyter.tracking import validation as ours

    assert ours.MAX_PARAM_VAL_LENGTH == mv.MAX_PARAM_VAL_LENGTH
    assert ours.MAX_TAG_VAL_LENGTH == mv.MAX_TAG_VAL_LENGTH
    assert ours.MAX_ENTITY_KEY_LENGTH == mv.MAX_ENTITY_KEY_LENGTH


def test_errors_keep_value_and_allowed():
    from mlops_jupyter.errors import InvalidTenantError, ValidationError, one_of

    e = InvalidTenantError("prod!", "it contains '!'")
    assert e.value == "prod!"
    assert "'prod!'" in str(e) and "Allowed:" in str(e)
    assert isinstance(e, ValueError) and isinstance(e, MLOpsError)
    with pytest.raises(ValidationError, match=r"'prod!'.*'staging', 'production'"):
        one_of("prod!", ["staging", "production"], "environment")
