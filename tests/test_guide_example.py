"""The guide's "Complete Example", pasted as written, runs and gives what the guide promises.

The code is read from the guide at test time (``seed/getting-started.md``, section "Complete
Example", then the "Experiment Analysis" snippet), so the test follows the guide, not a copy
of it. Only two things are added around it, both things a reader must do anyway:

- the import line names the guide's home project (``src.core.machine_learning.mlops``); it
  is mapped to ``mlops_jupyter`` (the only change to the guide's code);
- a preamble writes the model file the example versions (``./models/ticket_classifier.pkl``,
  a pickled scikit-learn model trained on generated data) and defines
  ``trigger_retraining`` (called only if drift is detected, so a missing name cannot hide).

It runs in a subprocess whose working directory is a fresh temporary folder, with
``MLOPS_HOME``, ``MLOPS_TENANT`` and ``MLFLOW_TRACKING_URI`` unset: the embedded default
store ``./.mlops`` is created there, as for a reader trying the guide. The gateway the
example starts is stopped at the end, whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

# the API contract, in ../shared beside the repository (as CI lays it out)
GUIDE = Path(
    os.environ.get("MLOPS_GUIDE", Path(__file__).resolve().parents[2] / "shared" / "seed" / "getting-started.md")
)
GUIDE_IMPORT = "src.core.machine_learning.mlops"

PREAMBLE = """\
import pickle
from pathlib import Path

from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

X, y = make_classification(n_samples=200, n_features=4, random_state=0)
Path("models").mkdir(exist_ok=True)
with open("models/ticket_classifier.pkl", "wb") as f:
    pickle.dump(LogisticRegression(max_iter=500).fit(X, y), f)

RETRAINED = []


def trigger_retraining():
    RETRAINED.append(True)
"""

EPILOGUE = """
import json

print("RESULT " + json.dumps({
    "n_experiments": len(experiments),
    "best_experiment": best_experiment,
    "version": version,
    "deployment": deployment.get_deployment("ticket_classifier", "production"),
    "drift_status": drift_status,
    "retrained": bool(RETRAINED),
}, default=str))
"""


def code_block(markdown: str, heading: str) -> str:
    """The first python code block after the heading line ``heading`` (exactly)."""
    lines = markdown.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == heading)
    except StopIteration:
        raise AssertionError(f"the guide {GUIDE} has no heading {heading!r}") from None
    m = re.search(r"^```python\n(.*?)^```", "\n".join(lines[start + 1 :]) + "\n", re.S | re.M)
    assert m, f"no python code block after {heading!r} in {GUIDE}"
    return m.group(1)


def guide_script() -> str:
    assert GUIDE.is_file(), f"the guide {GUIDE} is missing: ../shared must lie beside the repository"
    text = GUIDE.read_text()
    example = code_block(text, "## Complete Example")
    first = example.splitlines()[0]
    assert first == f"from {GUIDE_IMPORT} import (", first  # the one line that is changed
    assert example.count(GUIDE_IMPORT) == 1
    example = example.replace(GUIDE_IMPORT, "mlops_jupyter", 1)
    analysis = code_block(text, "### 1. Experiment Analysis")
    assert "tracker.list_experiments()" in analysis and "best_experiment = max(" in analysis
    return "\n".join(
        [
            PREAMBLE,
            "# -- the guide's Complete Example --",
            example,
            "# -- the guide's Experiment Analysis --",
            analysis,
            EPILOGUE,
        ]
    )


def stop_the_gateway(home: Path) -> None:
    from mlops_jupyter.deployment.targets.local_process import read_info, stop_gateway

    try:
        stop_gateway(home)
    except Exception:  # never leave a gateway behind
        info = read_info(home)
        if info:
            os.kill(info["pid"], signal.SIGKILL)


def run_the_guide(tmp_path: Path, tracking_uri: str | None = None) -> tuple[dict, Path]:
    """Run the guide's example as a reader would, in a fresh folder (with ``tracking_uri``
    as ``MLFLOW_TRACKING_URI`` if given); its RESULT line and the folder."""
    script = tmp_path / "guide_example.py"
    script.write_text(guide_script())
    work = tmp_path / "reader"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MLOPS_HOME", "MLOPS_TENANT", "MLFLOW_TRACKING_URI")}
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    try:
        proc = subprocess.run(
            [sys.executable, str(script)], cwd=work, env=env, capture_output=True, text=True, timeout=600
        )
    finally:
        stop_the_gateway(work / ".mlops")
    assert proc.returncode == 0, f"the guide's example failed:\n{proc.stderr[-4000:]}"
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, proc.stdout[-2000:]
    return json.loads(line[len("RESULT ") :]), work


def test_the_guides_complete_example_runs_as_written(tmp_path: Path):
    out, work = run_the_guide(tmp_path)

    assert (work / ".mlops" / "mlflow.db").is_file()  # the embedded default, in the reader's folder
    # Experiment Analysis: the user's one run, typed as logged (the guide's output shape)
    assert out["n_experiments"] == 1
    best = out["best_experiment"]
    assert best["metrics"] == {"accuracy": 0.95, "f1_score": 0.93}
    assert best["params"] == {"n_estimators": 100, "max_depth": 10}
    assert best["status"] == "completed" and best["experiment_name"] == "ticket_classifier_v1"
    # versioning and deployment
    assert out["version"]["version"] == "1.0.0" and out["version"]["model_id"] == "ticket_classifier"
    dep = out["deployment"]
    assert dep["status"] == "deployed" and dep["environment"] == "production"
    assert dep["traffic"] == {"1.0.0": 100}
    # monitoring: the guide's result keys
    drift = out["drift_status"]
    assert {"drift_detected", "drift_score", "performance_metrics"} <= set(drift)
    assert {"avg_latency", "success_rate"} <= set(drift["performance_metrics"])
    assert out["retrained"] is drift["drift_detected"]
