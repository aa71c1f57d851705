"""A store for the panel tests (tests/test_widgets.py, tests/browser/): runs to compare,
two model versions deployed with a previous version to roll back to, and drifted
predictions with an alert that fired."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

TENANT = "acme"
MODEL = "iris"
EXPERIMENT = "sweep"


def log_runs(tracker: Any, n: int, experiment: str = EXPERIMENT, seed: int = 0) -> None:
    """``n`` finished runs with params ``max_depth``/``lr``/``model`` and metrics
    ``accuracy``/``f1``/``loss`` (accuracy rises with max_depth, so the best is known)."""
    import random

    rng = random.Random(seed)
    for i in range(n):
        depth = rng.randint(2, 20)
        run = tracker.start_experiment(experiment, run_name=f"run-{i}")
        tracker.log_params(
            {"max_depth": depth, "lr": round(rng.uniform(0.001, 0.3), 4), "model": rng.choice(["rf", "gb", "lr"])},
            run=run,
        )
        acc = 0.6 + depth / 60 + rng.uniform(0, 0.02)
        tracker.log_metrics({"accuracy": acc, "f1": acc - 0.03, "loss": 1 - acc}, run=run)
        tracker.end_experiment(run=run, wait=False)
    tracker.flush()


def drifted_predictions(X: Any, n: int, seed: int = 0) -> Any:
    """``n`` predictions over the last 20 minutes by versions 1.0.0 and 1.1.0, with
    ``sepal length (cm)`` shifted by +1.5 (drift) and 2 % failures."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = X.sample(n, replace=True, random_state=seed).reset_index(drop=True)
    rows["sepal length (cm)"] += 1.5
    now = time.time()
    rows["timestamp"] = np.sort(now - rng.uniform(0, 1200, n))
    rows["prediction_time"] = rng.gamma(2.0, 0.002, n)
    rows["success"] = rng.uniform(0, 1, n) > 0.02
    rows["version"] = np.where(rng.uniform(0, 1, n) < 0.5, "1.0.0", "1.1.0")
    rows["environment"] = "production"
    return rows


def seed_panel_store(home: Path, *, n_runs: int = 40, n_predictions: int = 3000, deploy: bool = True) -> dict[str, Any]:
    """Fill ``home`` (tenant ``acme``) for the panels; with ``deploy`` this starts its gateway.

    - experiment ``sweep``: ``n_runs`` runs (see :func:`log_runs`);
    - model ``iris``: 1.0.0 (logistic regression) and its child 1.1.0 (a depth-2 tree), both
      with the iris features as reference data;
    - with ``deploy``: ``production`` served 1.0.0, now 1.1.0 at 100 % (so a rollback goes
      back to 1.0.0), and ``staging`` serves 1.0.0;
    - ``n_predictions`` drifted predictions and the alert ``drift_score > 0.1`` (action
      ``log``), fired by one ``check_drift``.
    """
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    from mlops_jupyter import create_mlops_pipeline

    X, y = load_iris(return_X_y=True, as_frame=True)
    p = create_mlops_pipeline(EXPERIMENT, tenant_id=TENANT, storage_path=home)
    log_runs(p.tracker, n_runs)
    v = p.versioning
    v.create_version(
        MODEL,
        model=LogisticRegression(max_iter=500).fit(X, y),
        reference_data=X,
        metadata={"training_data": "iris.csv", "algorithm": "logistic regression"},
    )
    v.create_version(
        MODEL,
        model=DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, y),
        reference_data=X,
        metadata={"training_data": "iris.csv", "algorithm": "decision tree"},
    )
    if deploy:
        d = p.deployment
        for version, env in (("1.0.0", "production"), ("1.1.0", "production"), ("1.0.0", "staging")):
            r = d.deploy_model(MODEL, version, env, traffic_percentage=100)
            assert r["status"] == "deployed", r
    if n_predictions:
        m = p.monitoring
        m.track_predictions(MODEL, drifted_predictions(X, n_predictions))
        m.set_alert(MODEL, "drift_score > 0.1", action="log")
        m.evaluate_alerts(MODEL)  # fires it (a check only reads, issue 16)
        m.wait_for_alert_actions()
    return {"home": home, "pipeline": p, "X": X, "y": y}
