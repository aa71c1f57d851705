"""The ``mlops-jupyter`` command line.

Subcommands:

- ``demo``: runs the getting-started guide's complete example, steps 1 to 6, end to end
  on the embedded store: pipeline, experiment tracking, versioning a real classifier
  trained on synthetic support tickets, deploying it behind the local gateway, real
  requests through its endpoint (drifting tickets) and ``track_prediction``,
  ``check_drift``, and an alert ``set_alert("drift_score > 0.1", action="notify_team")``
  that fires; it prints every returned dict, the endpoint with a curl example and how to
  stop the gateway.
- ``serve``: starts (detached), stops (``--stop``) or inspects (``status``) the serving
  gateway of a storage home.

Example:
    $ mlops-jupyter demo --home /tmp/mlops-demo --tenant tenant_123
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from mlops_jupyter.errors import MLOpsError

PROG = "mlops-jupyter"
EXIT_MLOPS_ERROR = 2

MODEL_ID = "ticket_classifier"
PIPELINE_NAME = "ticket_classifier_pipeline"
EXPERIMENT_NAME = "ticket_classifier_v1"
PARAMS = {"model": "random_forest", "n_estimators": 100, "max_depth": 10}
N_TICKETS = 2000
N_REQUESTS = 20
ROWS_PER_REQUEST = 25
TRAFFIC_DRIFT = 0.8


def _print_step(title: str, value: Any = None) -> None:
    print(f"\n== {title}")
    if value is not None:
        print(json.dumps(value, indent=2, sort_keys=False, default=str))


def cmd_demo(args: argparse.Namespace) -> int:
    """``mlops-jupyter demo``: the guide's complete example (steps 1 to 6) on a real model."""
    import pickle

    from mlops_jupyter.api import (
        create_experiment_tracker,
        create_mlops_pipeline,
        create_model_deployment,
        create_model_monitoring,
        create_model_versioning,
    )
    from mlops_jupyter.config.settings import models_dir
    from mlops_jupyter.datasets import FEATURES, make_support_tickets, train_ticket_classifier

    started = time.perf_counter()
    where = {"tenant_id": args.tenant, "storage_path": args.home}

    pipeline = create_mlops_pipeline(pipeline_name=PIPELINE_NAME, **where)
    _print_step("Step 1: create_mlops_pipeline()", pipeline.describe())

    versioning = create_model_versioning(**where)
    # Each demo run trains on the next batch of tickets (seed = versions made so far), so
    # a second run makes version 1.1.0 from new data and the runs differ.
    batch = len(versioning.list_versions(MODEL_ID)) if MODEL_ID in versioning.list_models() else 0
    training_data = f"make_support_tickets(n={N_TICKETS}, seed={batch})"

    tracker = create_experiment_tracker(**where)
    tracker.start_experiment(experiment_name=EXPERIMENT_NAME, tags={"model_type": "classification"})
    try:
        df = make_support_tickets(n=N_TICKETS, seed=batch)
        params = dict(PARAMS)
        model, metrics = train_ticket_classifier(df, model=params.pop("model"), **params)
        tracker.log_params({**PARAMS, "data_seed": batch})
        tracker.log_metrics(metrics)
    except BaseException:
        tracker.end_experiment(status="failed")  # not left open (it would end FINISHED at exit)
        raise
    run = tracker.end_experiment()
    _print_step("Step 2: experiment tracking (start_experiment, log_params, log_metrics, end_experiment)", run)

    model_path = models_dir(pipeline.settings.home) / f"{MODEL_ID}.pkl"
    model_path.parent.mkdir(parents=True, exist_ok=True)
    with open(model_path, "wb") as f:
        pickle.dump(model, f)
    version = versioning.create_version(
        model_id=MODEL_ID,
        model_path=str(model_path),
        metadata={"training_data": training_data, "metrics": metrics, "params": PARAMS},
        reference_data=df[list(FEATURES)],
        run_id=run["run_id"],
    )
    _print_step(f"Step 3: create_version() from {model_path}", version)

    # Step 4: deploy the new version behind the local gateway (started on demand).
    deployment = create_model_deployment(**where)
    deployed = deployment.deploy_model(
        model_id=MODEL_ID,
        version=version["version"],
        environment="production",
        config={"replicas": 3, "resources": {"cpu": "2", "memory": "4Gi"}},
    )
    _print_step("Step 4: deploy_model()", deployed)
    if deployed["status"] != "deployed":
        print(f"\nThe deployment failed: {deployed['reason']}", file=sys.stderr)
        return 1

    # Step 5: monitoring. The guide's own call, then real requests through the endpoint:
    # tickets from a drifting generator (the gateway logs every prediction).
    monitoring = create_model_monitoring(**where)
    monitoring.track_prediction(
        model_id=MODEL_ID,
        prediction_time=0.15,
        success=True,
        input_features={"priority": 1, "category": "technical"},
    )
    incoming = make_support_tickets(n=N_REQUESTS * ROWS_PER_REQUEST, seed=1000 + batch, drift=TRAFFIC_DRIFT)
    served: dict[str, int] = {}
    with deployment.client(MODEL_ID, "production") as client:
        for i in range(N_REQUESTS):
            rows = incoming.iloc[i * ROWS_PER_REQUEST : (i + 1) * ROWS_PER_REQUEST][list(FEATURES)]
            client.predict(rows)
            served[client.last_version] = served.get(client.last_version, 0) + len(rows)
    _print_step(
        f"Step 5: {N_REQUESTS} requests of {ROWS_PER_REQUEST} drifting tickets "
        f"(make_support_tickets(drift={TRAFFIC_DRIFT})) through the endpoint; rows per version",
        served,
    )
    drift_status = monitoring.check_drift(MODEL_ID, threshold=0.1)
    _print_step("Step 5: check_drift(threshold=0.1)", drift_status)
    alert = monitoring.set_alert(model_id=MODEL_ID, condition="drift_score > 0.1", action="notify_team")
    _print_step('Alerting: set_alert("drift_score > 0.1", action="notify_team")', alert)
    _print_step(
        "evaluate_alerts() (the gateway also evaluates them as traffic arrives)",
        monitoring.evaluate_alerts(MODEL_ID),
    )
    monitoring.wait_for_alert_actions()  # actions run on their own threads
    history = monitoring.alerts(MODEL_ID, limit=1)
    _print_step(
        "alerts(): the latest alert (notify_team has no callable registered in this process, so it "
        "is recorded as undelivered until monitoring.register_action('notify_team', fn))",
        history,
    )

    # Step 6: use the output.
    if drift_status["drift_detected"]:
        print(
            f"\n== Step 6: drift detected (drift_score {drift_status['drift_score']:.3f} > 0.1 in "
            f"{', '.join(drift_status['drifted_features'])}): trigger_retraining(). Run `make demo` again to "
            "train the next version on new data."
        )
    else:
        print(f"\n== Step 6: no drift ({drift_status['status']}): nothing to retrain.")

    runs = tracker.list_experiments(experiment_name=EXPERIMENT_NAME)
    scored = [r for r in runs if "accuracy" in r["metrics"]]
    if scored:
        best = max(scored, key=lambda r: r["metrics"]["accuracy"])
        _print_step(
            f"Best of {len(runs)} run(s) of {EXPERIMENT_NAME!r} by accuracy (list_experiments())",
            {k: best[k] for k in ("run_id", "run_name", "status", "start_time", "metrics", "params")},
        )
    _print_step(f"get_lineage({MODEL_ID!r})", versioning.get_lineage(MODEL_ID))
    from mlops_jupyter.deployment import tokens as auth

    ticket = json.dumps({"dataframe_records": incoming[list(FEATURES)].head(1).to_dict(orient="records")})
    token_file = auth.secrets_dir(pipeline.settings.home) / f"tenant-{pipeline.settings.tenant}.token"
    print(
        f"\nThe model is served at {deployed['endpoint']} (the gateway keeps running). Try:\n"
        f"  curl -s -H \"Authorization: Bearer $(cat {token_file})\" -H 'Content-Type: application/json' \\\n"
        f"       -d '{ticket}' \\\n"
        f"       {deployed['endpoint']}/invocations\n"
        f"Stop the gateway with: {runnable_command()} serve --stop --home {shlex.quote(str(pipeline.settings.home))}"
    )
    print(f"\nDone in {time.perf_counter() - started:.1f} s. Store: {pipeline.settings.home}")
    return 0


def runnable_command() -> str:
    """How to run ``mlops-jupyter`` from any shell: the bare name when it is on PATH as
    this interpreter's script, else that script's absolute path (a venv not activated),
    else ``python -m mlops_jupyter.cli`` with this interpreter's absolute path."""
    import shutil
    from pathlib import Path

    script = Path(sys.executable).with_name(PROG)
    found = shutil.which(PROG)
    if found and script.is_file() and Path(found).resolve() == script.resolve():
        return PROG
    if script.is_file():
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m mlops_jupyter.cli"


def _home(value: str) -> str:
    """argparse type of ``--home``: a folder, or a path where one can be made."""
    if os.path.exists(value) and not os.path.isdir(value):
        raise argparse.ArgumentTypeError(f"{value!r} exists and is not a folder")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="A Jupyter-native MLOps workbench on MLflow.")
    from mlops_jupyter._version import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser(
        "demo",
        help="run the getting-started steps 1-6 on a real model and print the results",
        description="Create a pipeline, track a training run, version the model, deploy it, send it "
        "drifting traffic, check drift and set an alert, printing every result. Run it again to "
        "train, deploy and monitor the next version.",
    )
    demo.add_argument(
        "--home", metavar="PATH", default=None, type=_home, help="storage folder (default: $MLOPS_HOME or ./.mlops)"
    )
    demo.add_argument("--tenant", metavar="T", default=None, help="tenant id (default: $MLOPS_TENANT or 'default')")
    demo.set_defaults(func=cmd_demo)

    from mlops_jupyter.cli.serve import add_serve_parser

    add_serve_parser(sub)
    from mlops_jupyter.notebook.reports.cli import add_report_parser

    add_report_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mlops-jupyter`` console script.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 on a usage error or an :class:`MLOpsError`
        (reported as one line on stderr).

    Example:
        >>> main(["demo", "--home", "/tmp/mlops-demo"])  # doctest: +SKIP
        0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    # MLflow logs at INFO by default ("Creating initial MLflow database tables..."); keep
    # the demo's output to its results unless the user asks for MLflow's logs.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except MLOpsError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_MLOPS_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
