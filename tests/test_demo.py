"""``mlops-jupyter demo``: the guide's complete example, steps 1 to 6, run twice on one store
as ``make demo`` is (a real gateway, real requests, drift, an alert that fires)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import gateway_home


def run_demo(home: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("MLOPS_HOME", "MLOPS_TENANT", "MLFLOW_TRACKING_URI")}
    proc = subprocess.run(
        [sys.executable, "-m", "mlops_jupyter.cli", "demo", "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def section(out: str, title: str):
    """The JSON printed under the ``== title`` line."""
    start = out.index(f"== {title}")
    body = out[out.index("\n", start) + 1 :]
    end = body.find("\n== ")
    return json.loads(body[: end if end >= 0 else None].split("\n\nThe model is served")[0])


def test_the_demo_runs_steps_1_to_6_twice_on_one_store(tmp_path_factory: pytest.TempPathFactory, template_db: Path):
    with gateway_home(tmp_path_factory, template_db, "demo") as home:
        first = run_demo(home)
        for step in range(1, 7):
            assert f"== Step {step}" in first
        assert section(first, "Step 4: deploy_model()")["status"] == "deployed"
        drift = section(first, "Step 5: check_drift(threshold=0.1)")
        assert drift["drift_detected"] is True and drift["reference_source"] == "version"
        assert drift["performance_metrics"]["prediction_count"] == 501  # 500 served + the guide's one
        alert = section(first, 'Alerting: set_alert("drift_score > 0.1", action="notify_team")')
        assert alert["condition"] == "drift_score > 0.1" and alert["action"] == "notify_team"
        [fired] = section(first, "evaluate_alerts()")
        assert fired["state"] == "firing" and fired["delivery"] == "queued"  # delivered off-thread (issue 16)
        [latest] = section(first, "alerts(): the latest alert")
        assert latest["delivery"] == "undelivered"  # nothing registered under notify_team
        assert re.search(r"curl -s -H \"Authorization: Bearer \$\(cat .*tenant-default\.token\)\"", first)
        assert f"mlops-jupyter serve --stop --home {home}" in first

        second = run_demo(home)
        deployed = section(second, "Step 4: deploy_model()")
        assert deployed["version"] == "1.1.0" and deployed["traffic"] == {"1.1.0": 100}
        assert (
            section(second, 'Alerting: set_alert("drift_score > 0.1", action="notify_team")')["alert_id"]
            == alert["alert_id"]
        )  # the same rule, not a second one
