"""``%mlops`` subcommands: each a small function ``(args, magics) -> value`` with its parser.

The notebook layer is a thin skin: every command calls the core API (pipeline, tracker,
versioning, deployment, monitoring) and never touches MLflow directly.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from mlops_jupyter.notebook.magics.parser import MagicArgumentParser, parse_pairs
from mlops_jupyter.notebook.magics.views import DriftResult, Result, RunsTable, Table

if TYPE_CHECKING:
    from mlops_jupyter.notebook.magics.magic import MLOpsMagics


@dataclass
class Command:
    name: str
    summary: str
    build: Callable[[MagicArgumentParser], None]
    run: Callable[[argparse.Namespace, MLOpsMagics], Any]

    def parser(self) -> MagicArgumentParser:
        p = MagicArgumentParser(self.name, self.summary)
        self.build(p)
        return p


COMMANDS: dict[str, Command] = {}


def command(name: str, summary: str, build: Callable[[MagicArgumentParser], None] = lambda p: None):
    def deco(fn: Callable[[argparse.Namespace, MLOpsMagics], Any]) -> Callable:
        COMMANDS[name] = Command(name, summary, build, fn)
        return fn

    return deco


def _changed(m: MLOpsMagics, model_id: str | None = None) -> None:
    """Tell the kernel's live panels that a model (or, with no model, the runs) changed."""
    from mlops_jupyter.notebook.widgets import _bus

    tenant = m.pipeline.settings.tenant
    _bus.publish(_bus.model_topic(tenant, model_id) if model_id else _bus.runs_topic(tenant))


def _var(m: MLOpsMagics, name: str, what: str) -> Any:
    if name not in m.shell.user_ns:
        raise UsageError(f"{what}: no notebook variable named {name!r}")
    return m.shell.user_ns[name]


# -- settings and session --------------------------------------------------------------
def _init_args(p: MagicArgumentParser) -> None:
    p.add_argument("--tenant", help="tenant id (slug)")
    p.add_argument("--uri", help="MLflow tracking URI, e.g. http://127.0.0.1:5000")
    p.add_argument("--experiment", help="experiment for runs of this notebook")
    p.add_argument("--home", help="storage folder of the embedded store")


@command("init", "Choose tenant, store and experiment for this kernel (also the panels' and factories').", _init_args)
def cmd_init(a: argparse.Namespace, m: MLOpsMagics) -> Result:
    """Also the kernel's defaults: later factories and panels use this tenant and store
    (see ``MLOpsMagics.export_env``); MLflow's import and the store warm up meanwhile."""
    from mlops_jupyter.notebook.magics.progress import warm_up

    m.configure(tenant=a.tenant, uri=a.uri, experiment=a.experiment, home=a.home)
    status = cmd_status(a, m)
    warm_up(m.pipeline, m.shell)  # last: nothing in this cell may import MLflow meanwhile
    return status


@command("status", "Show tenant, store, experiment, active run, autolog and gateway.")
def cmd_status(a: argparse.Namespace, m: MLOpsMagics) -> Result:
    p = m.pipeline
    run = p.tracker.active_run
    info = {**p.settings.describe(), "active_run": run.run_name if run else ""}
    info["tenant_isolation"] = p.tracker.isolation().describe()
    info.update(m.autolog.status() if m.autolog_obj is not None else {"autolog": "off"})
    try:
        info["gateway"] = p.deployment.gateway_status()
    except Exception as exc:  # deployment feature not built, or gateway down
        info["gateway"] = f"unavailable ({exc})"
    return Result(info, "mlops status")


def _autolog_args(p: MagicArgumentParser) -> None:
    p.add_argument("state", choices=["on", "off"])


@command("autolog", "Cells that log params, fit a model, log metrics or fail become runs (on|off).", _autolog_args)
def cmd_autolog(a: argparse.Namespace, m: MLOpsMagics) -> Result:
    if a.state == "on":
        m.autolog.enable()
    elif m.autolog_obj is not None:
        m.autolog_obj.disable()
    return Result(m.autolog.status() if m.autolog_obj is not None else {"autolog": "off"}, "autolog")


# -- runs ------------------------------------------------------------------------------
def _start_args(p: MagicArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("--tag", action="append", metavar="K=V", help="tag (repeatable)")


@command("start", "Start a run: %mlops start NAME [--tag k=v ...]", _start_args)
def cmd_start(a: argparse.Namespace, m: MLOpsMagics) -> Result:
    tags = {k: str(v) for k, v in parse_pairs(a.tag, m.shell.user_ns, "--tag").items()}
    run = m.pipeline.tracker.start_experiment(m.pipeline.settings.experiment_name, tags=tags, run_name=a.name)
    return Result({"run_id": run.run_id, "run_name": run.run_name, "experiment": run.experiment_name}, "run started")


def _end_args(p: MagicArgumentParser) -> None:
    p.add_argument("--status", default="completed", choices=["completed", "failed", "killed"])


@command("end", "End the current run: %mlops end [--status failed]", _end_args)
def cmd_end(a: argparse.Namespace, m: MLOpsMagics) -> Result:
    return Result(m.pipeline.tracker.end_experiment(status=a.status), "run ended")


def _pairs_args(p: MagicArgumentParser) -> None:
    p.add_argument("pairs", nargs="+", metavar="K=V")


@command("params", "Log params: %mlops params k=v ... (literals or notebook variables)", _pairs_args)
def cmd_params(a: argparse.Namespace, m: MLOpsMagics) -> Result:
    values = parse_pairs(a.pairs, m.shell.user_ns, "%mlops params")
    m.pipeline.tracker.log_params(values)
    return Result({k: str(v) for k, v in values.items()}, "params logged")


def _metrics_args(p: MagicArgumentParser) -> None:
    p.add_argument("pairs", nargs="+", metavar="K=V")
    p.add_argument("--step", type=int, default=None)


@command("metrics", "Log metrics: %mlops metrics k=v ... [--step N]", _metrics_args)
def cmd_metrics(a: argparse.Namespace, m: MLOpsMagics) -> Result:
    values = parse_pairs(a.pairs, m.shell.user_ns, "%mlops metrics", numeric=True)
    m.pipeline.tracker.log_metrics(values, step=a.step)
    return Result(values, "metrics logged")


def _runs_args(p: MagicArgumentParser) -> None:
    p.add_argument("--experiment", help="experiment name (default: this notebook's)")
    p.add_argument("--all", action="store_true", help="every experiment of the tenant")
    p.add_argument("--sort", metavar="METRIC", help="sort by this metric, best (highest) first")
    p.add_argument("--asc", action="store_true", help="with --sort: lowest first")
    p.add_argument("--top", type=int, default=None, metavar="N")
    p.add_argument("--where", metavar="FILTER", help='MLflow filter, e.g. "metrics.accuracy > 0.9"')


@command("runs", "List and compare runs.", _runs_args)
def cmd_runs(a: argparse.Namespace, m: MLOpsMagics) -> Table:
    if a.top is not None and a.top < 1:
        raise UsageError(f"%mlops runs: --top must be >= 1, got {a.top}")
    order = None
    if a.sort:
        key = a.sort if "." in a.sort else f"metrics.{a.sort}"
        order = [f"{key} {'ASC' if a.asc else 'DESC'}"]
    from mlops_jupyter.notebook.magics.progress import is_cold, progress

    tracker = m.pipeline.tracker
    name = None if a.all else a.experiment
    with progress("loading runs (first use: importing MLflow and opening the store) ...", when=is_cold(m.pipeline)):
        if a.all:
            runs = _all_runs(tracker, a.where, order, a.top)
        else:
            runs = tracker.list_experiments(
                experiment_name=name, filter_string=a.where, order_by=order, max_results=a.top or 10000
            )
    # cell autolog's session run is the notebook session, not a run to compare
    runs = [r for r in runs if (r.get("tags") or {}).get("mlops.kind") != "session"]
    if a.sort:
        _check_sort_key(a.sort, key, runs)
    metric_keys = sorted({k for r in runs for k in r["metrics"]})[:8]
    param_keys = sorted({k for r in runs for k in r["params"]})[:8]
    cols = (
        ["run_name", "status", "start_time", "duration"]
        + [f"metrics.{k}" for k in metric_keys]
        + [f"params.{k}" for k in param_keys]
    )
    title = f"runs of {name or ('all experiments' if a.all else m.pipeline.settings.experiment_name)}"
    return RunsTable(runs, cols, title, pipeline=m.pipeline, experiment=name)  # a ComparisonPanel in Jupyter


def _check_sort_key(given: str, key: str, runs: list[dict[str, Any]]) -> None:
    """A ``--sort`` metric (or param) that none of the runs listed has is a typo, not an order:
    MLflow would list them in its default order without a word."""
    section, _, field = key.partition(".")
    if section not in ("metrics", "params") or not runs or any(field in r[section] for r in runs):
        return
    known = sorted({k for r in runs for k in r[section]})
    raise UsageError(
        f"%mlops runs --sort {given}: none of the {len(runs)} run(s) listed has the {section[:-1]} {field!r}; "
        f"their {section}: {', '.join(known) or 'none'}"
    )


def _all_runs(tracker: Any, where: str | None, order: list[str] | None, top: int | None) -> list[dict[str, Any]]:
    from mlops_jupyter.config.settings import Settings
    from mlops_jupyter.tracking.tracker import ExperimentTracker

    s = tracker.settings
    t = ExperimentTracker(Settings(s.tenant, s.tracking_uri, s.home))
    return t.list_experiments(filter_string=where, order_by=order, max_results=top or 10000)


# -- versioning ------------------------------------------------------------------------
def _register_args(p: MagicArgumentParser) -> None:
    p.add_argument("var", metavar="VAR", help="notebook variable holding the fitted model")
    p.add_argument("--model", required=True, metavar="MODEL_ID")
    p.add_argument("--meta", action="append", metavar="K=V")
    p.add_argument("--reference", metavar="DATA_VAR", help="DataFrame variable kept as drift reference")
    p.add_argument("--version", help="explicit semantic version")
    p.add_argument("--bump", choices=["major", "minor", "patch"], default="minor")
    p.add_argument("--run", metavar="RUN_ID", help="the run the model came from (default: the run that fitted VAR)")


@command(
    "register", "Version a model: %mlops register VAR --model MODEL_ID [--meta k=v] [--reference DATA]", _register_args
)
def cmd_register(a: argparse.Namespace, m: MLOpsMagics) -> Result:
    model = _var(m, a.var, "%mlops register")
    ref = _var(m, a.reference, "%mlops register --reference") if a.reference else None
    meta = parse_pairs(a.meta, m.shell.user_ns, "--meta")
    from mlops_jupyter.notebook.magics.autolog import fitted_by

    run_id = a.run or fitted_by(model)  # the run of the cell that fitted VAR, not the last run
    v = m.pipeline.versioning.create_version(
        a.model, model=model, metadata=meta, reference_data=ref, version=a.version, bump=a.bump, run_id=run_id
    )
    _changed(m, a.model)
    return Result(v, f"{a.model} {v['version']} registered")


def _model_args(p: MagicArgumentParser) -> None:
    p.add_argument("model_id", metavar="MODEL_ID")


_VERSION_COLS = ["version", "created_at", "parent", "aliases", "sha256", "run_id", "data_sources"]


@command("versions", "List a model's versions.", _model_args)
def cmd_versions(a: argparse.Namespace, m: MLOpsMagics) -> Table:
    return Table(m.pipeline.versioning.list_versions(a.model_id), _VERSION_COLS, f"versions of {a.model_id}")


@command("lineage", "Show a model's version graph.", _model_args)
def cmd_lineage(a: argparse.Namespace, m: MLOpsMagics) -> Table:
    lin = m.pipeline.versioning.get_lineage(a.model_id)
    t = Table(lin["versions"], _VERSION_COLS + ["metadata"], f"lineage of {a.model_id} (live: {lin['live']})")
    t.lineage = lin  # type: ignore[attr-defined]
    return t


# -- deployment and monitoring ---------------------------------------------------------
def _deploy_args(p: MagicArgumentParser) -> None:
    p.add_argument("model_id", metavar="MODEL_ID")
    p.add_argument("version", metavar="VERSION")
    p.add_argument("--env", default="production")
    p.add_argument("--traffic", type=int, default=100, metavar="PERCENT")
    p.add_argument(
        "--target",
        default=None,
        metavar="TARGET",
        help="where it runs: local, ray or kserve (default: the pipeline's, $MLOPS_DEPLOY_TARGET or local)",
    )


@command(
    "deploy",
    "Deploy a version: %mlops deploy MODEL VERSION [--env production] [--traffic 50] [--target local|ray|kserve]",
    _deploy_args,
)
def cmd_deploy(a: argparse.Namespace, m: MLOpsMagics) -> Result:
    from mlops_jupyter.notebook.magics.progress import progress

    deployment = m.deployment_for(a.target)  # a bad name: the API's ValidationError naming the allowed ones
    where = f"{a.env} on {deployment.target.name}"
    with progress(f"deploying {a.model_id} {a.version} to {where} (the first deploy starts the target) ..."):
        r = deployment.deploy_model(a.model_id, a.version, environment=a.env, traffic_percentage=a.traffic)
    _changed(m, a.model_id)
    return Result(r, f"deploy {a.model_id} {a.version}")


def _rollback_args(p: MagicArgumentParser) -> None:
    p.add_argument("model_id", metavar="MODEL_ID")
    p.add_argument("--to", metavar="VERSION")
    p.add_argument("--env", default="production")


@command("rollback", "Roll back: %mlops rollback MODEL [--to VERSION] [--env production]", _rollback_args)
def cmd_rollback(a: argparse.Namespace, m: MLOpsMagics) -> Result:
    from mlops_jupyter.errors import FeatureNotAvailableError, NotFoundError

    try:
        r = m.pipeline.deployment.rollback(a.model_id, a.env, to_version=a.to)
    except (FeatureNotAvailableError, NotFoundError) as exc:
        # Nothing deployed in that environment (or no deployment feature): with --to, roll
        # the model's live alias back instead (versioning.rollback_model).
        if a.to is None:
            if isinstance(exc, NotFoundError):
                raise
            raise UsageError(
                "%mlops rollback: give --to VERSION (rolling back a live deployment to its previous "
                "version needs the deployment feature)"
            ) from None
        r = m.pipeline.versioning.rollback_model(a.model_id, a.to)
    _changed(m, a.model_id)
    return Result(r, f"rollback {a.model_id}")


def _deployments_args(p: MagicArgumentParser) -> None:
    p.add_argument("--env", default=None)


@command("deployments", "List deployments: %mlops deployments [--env ENV]", _deployments_args)
def cmd_deployments(a: argparse.Namespace, m: MLOpsMagics) -> Table:
    deps = m.pipeline.deployment.list_deployments(a.env)
    return Table(deps, ["model_id", "environment", "version", "traffic", "status", "target", "endpoint"], "deployments")


def _predict_args(p: MagicArgumentParser) -> None:
    p.add_argument("model_id", metavar="MODEL_ID")
    p.add_argument("data", metavar="DATA_VAR")
    p.add_argument("--env", default="production")


@command("predict", "Call a deployed model: %mlops predict MODEL DATA_VAR [--env production]", _predict_args)
def cmd_predict(a: argparse.Namespace, m: MLOpsMagics) -> Any:
    data = _var(m, a.data, "%mlops predict")
    return m.pipeline.deployment.client(a.model_id, a.env).predict(data)


def _drift_args(p: MagicArgumentParser) -> None:
    p.add_argument("model_id", metavar="MODEL_ID")
    p.add_argument("--threshold", type=float, default=0.1)
    p.add_argument("--window", default=None, help="last N predictions or a span like 1h")


@command(
    "drift", "Check drift: %mlops drift MODEL [--threshold 0.1] [--window N] (a DriftPanel in Jupyter)", _drift_args
)
def cmd_drift(a: argparse.Namespace, m: MLOpsMagics) -> Result:
    window: Any = int(a.window) if a.window and a.window.isdigit() else a.window
    return DriftResult(
        m.pipeline.monitoring.check_drift(a.model_id, threshold=a.threshold, window=window),
        f"drift of {a.model_id}",
        pipeline=m.pipeline,
        model_id=a.model_id,
        threshold=a.threshold,
        window=window,
    )


PANELS = ("runs", "drift", "deploy")


def _panel_args(p: MagicArgumentParser) -> None:
    p.add_argument("kind", choices=PANELS, help="which panel")
    p.add_argument("model_id", nargs="?", metavar="MODEL_ID", help="the model (drift and deploy)")
    p.add_argument("--experiment", help="runs: this experiment (default: this notebook's)")
    p.add_argument("--threshold", type=float, default=0.1, help="drift: threshold")
    p.add_argument("--window", default=None, help="drift: last N predictions or a span like 1h")


@command("panel", "Show a panel: %mlops panel runs|drift MODEL|deploy MODEL", _panel_args)
def cmd_panel(a: argparse.Namespace, m: MLOpsMagics) -> Any:
    from mlops_jupyter.notebook import widgets

    if a.kind != "runs" and not a.model_id:
        raise UsageError(f"%mlops panel {a.kind}: give the model, e.g. %mlops panel {a.kind} ticket_classifier")
    if a.kind == "runs":
        return widgets.ComparisonPanel(a.experiment, pipeline=m.pipeline)
    if a.kind == "drift":
        window: Any = int(a.window) if a.window and a.window.isdigit() else a.window
        return widgets.DriftPanel(a.model_id, pipeline=m.pipeline, threshold=a.threshold, window=window)
    return widgets.DeployPanel(a.model_id, pipeline=m.pipeline)


@command("ui", "Start (or reuse) the MLflow UI on this store and show its link: %mlops ui")
def cmd_ui(a: argparse.Namespace, m: MLOpsMagics) -> Any:
    from mlops_jupyter.notebook.magics import ui
    from mlops_jupyter.notebook.magics.progress import progress

    p = m.pipeline
    with progress("starting the MLflow UI ...", when=ui.current_url() is None) as say:
        p.tracker.flush()  # creates the store if this is its first use
        proc = ui.start_ui(p.settings, progress=say)
    return UILink(proc.url, p.settings.tenant)


class UILink(str):
    """The MLflow UI's URL, shown as a link in Jupyter (``str`` for scripts and tests)."""

    def __new__(cls, url: str, tenant: str) -> UILink:
        obj = super().__new__(cls, url)
        obj.tenant = tenant  # type: ignore[attr-defined]
        return obj

    def __repr__(self) -> str:
        return f"MLflow UI: {self!s}"

    def _repr_html_(self) -> str:
        import html

        u = html.escape(str(self))
        return (
            f"<div class='mlops-ui-link'>MLflow UI: <a href='{u}' target='_blank' rel='noopener'>{u}</a> "
            f"<span style='color: var(--jp-ui-font-color2)'>(experiments of tenant "
            f"{html.escape(self.tenant)} are named <code>{html.escape(self.tenant)}/…</code>)</span></div>"  # type: ignore[attr-defined]
        )


def _alert_args(p: MagicArgumentParser) -> None:
    p.add_argument("model_id", metavar="MODEL_ID")
    p.add_argument("condition", metavar="CONDITION")
    p.add_argument(
        "--action",
        required=True,
        metavar="NAME",
        help="log, webhook:URL, rollback[:ENV] or a name given to register_action",
    )
    p.add_argument("--cooldown", default="5m", help="least time between two firings (default 5m)")
    p.add_argument(
        "--for",
        dest="for_",
        default="0s",
        metavar="DURATION",
        help="how long the condition must hold before it fires (default 0s)",
    )
    p.add_argument("--severity", default="warning", choices=["info", "warning", "critical"])


@command("alert", 'Set an alert: %mlops alert MODEL "drift_score > 0.1" --action notify_team', _alert_args)
def cmd_alert(a: argparse.Namespace, m: MLOpsMagics) -> Result:
    from mlops_jupyter.errors import AlertRuleError

    try:
        rule = m.pipeline.monitoring.set_alert(
            a.model_id, a.condition, a.action, cooldown=a.cooldown, for_=a.for_, severity=a.severity
        )
    except AlertRuleError as exc:  # its message shows a caret on a second line: keep one line here
        where = f" at position {exc.position}" if exc.position is not None else ""
        err = UsageError(f"AlertRuleError: {exc.problem}{where} of {a.condition!r}. Allowed: {exc.allowed}.")
        err.mlops_error = exc  # type: ignore[attr-defined]
        raise err from None
    _changed(m, a.model_id)
    return Result(rule, f"alert {rule['alert_id']} on {a.model_id}")


def _report_args(p: MagicArgumentParser) -> None:
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    p.add_argument("--out", help="folder for the executed .ipynb and the HTML")
    p.add_argument("--notebook", help="the .ipynb to run (default: this notebook's saved copy)")


@command(
    "report",
    "Run this notebook's saved copy headless as a report: %mlops report [-p NAME VALUE] [--out DIR]",
    _report_args,
)
def cmd_report(a: argparse.Namespace, m: MLOpsMagics) -> Result:
    from mlops_jupyter.notebook.magics.report import report_from_magic

    return Result(report_from_magic(a, m), "mlops report")


def _help_args(p: MagicArgumentParser) -> None:
    p.add_argument("subcommand", nargs="?")


@command("help", "Show subcommands, or one subcommand's usage.", _help_args)
def cmd_help(a: argparse.Namespace, m: MLOpsMagics) -> HelpText:
    if a.subcommand:
        if a.subcommand not in COMMANDS:
            raise UsageError(f"%mlops help: unknown subcommand {a.subcommand!r}; one of: {', '.join(COMMANDS)}")
        return HelpText(COMMANDS[a.subcommand].parser().format_help())
    width = max(len(n) for n in COMMANDS)
    lines = ["%mlops SUBCOMMAND [ARGS]   (also %%mlops run [NAME] for a cell run)", ""]
    lines += [f"  {n:<{width}}  {c.summary}" for n, c in COMMANDS.items()]
    lines += ["", "%mlops help SUBCOMMAND for its arguments."]
    return HelpText("\n".join(lines))


class HelpText(str):
    def __repr__(self) -> str:
        return str(self)
