"""The ``%mlops`` line magic and ``%%mlops`` cell magic: a router over subcommands.

Settings are traitlets (``%config MLOpsMagics.tenant = "acme"``). Loading the extension
imports nothing heavy and does no I/O; the pipeline is built on first use.
"""

from __future__ import annotations

import ast
import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from traitlets import Bool, TraitError, Unicode, observe, validate

from mlops_jupyter.errors import MLOpsError


def as_usage_error(exc: MLOpsError) -> UsageError:
    """A core error as a ``UsageError`` (IPython shows it as one line, no traceback).

    The message starts with the error's type; the original is kept as ``.mlops_error``.
    """
    err = UsageError(f"{type(exc).__name__}: {exc}")
    err.mlops_error = exc  # type: ignore[attr-defined]
    return err


@magics_class
class MLOpsMagics(Magics):
    """``%mlops`` magics. Traits are set with ``%config MLOpsMagics.<name> = ...``."""

    tenant = Unicode("", help="Tenant id (default: $MLOPS_TENANT or 'default').").tag(config=True)
    uri = Unicode("", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or the embedded store).").tag(
        config=True
    )
    experiment = Unicode("", help="Experiment for this notebook's runs (default: the notebook's name).").tag(
        config=True
    )
    home = Unicode("", help="Storage folder of the embedded store (default: $MLOPS_HOME or ./.mlops).").tag(config=True)
    autolog_on_start = Bool(False, help="Turn cell autolog on when the extension loads.").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._pipeline: Any = None
        self._deployments: dict[tuple[int, str], tuple[Any, Any]] = {}  # (pipeline, target) -> deployment
        self.autolog_obj: Any = None
        self._env_before: dict[str, str | None] = {}

    # -- settings and pipeline ---------------------------------------------------------
    @validate("tenant", "uri", "experiment", "home")
    def _check_setting(self, proposal: Any) -> str:
        """Refuse a bad ``%config MLOpsMagics.<trait>`` value when it is set, not later."""
        from mlops_jupyter.config.settings import resolve_settings

        values = {k: getattr(self, k) for k in ("tenant", "uri", "experiment", "home")}
        values[proposal["trait"].name] = proposal["value"]
        try:
            resolve_settings(
                values["tenant"] or None, values["uri"] or None, values["experiment"] or None, values["home"] or None
            )
        except MLOpsError as exc:
            raise TraitError(f"MLOpsMagics.{proposal['trait'].name}: {exc}") from None
        return proposal["value"]

    @observe("tenant", "uri", "experiment", "home")
    def _settings_changed(self, change: Any) -> None:
        self._reset()

    def _reset(self) -> None:
        if self.autolog_obj is not None:
            was_on = self.autolog_obj.enabled
            self.autolog_obj.close()
            self.autolog_obj = None
        else:
            was_on = False
        self._pipeline = None
        if was_on:
            self.autolog.enable()

    def configure(self, **values: str | None) -> None:
        """Set several traits at once, validating them together before applying."""
        from mlops_jupyter.config.settings import resolve_settings

        new = {k: (v if v is not None else getattr(self, k)) for k, v in values.items()}
        resolve_settings(new["tenant"] or None, new["uri"] or None, new["experiment"] or None, new["home"] or None)
        with self.hold_trait_notifications():
            for k, v in new.items():
                setattr(self, k, v)
        self._reset()
        self.export_env()

    def export_env(self) -> None:
        """Make this kernel's tenant, store and home the defaults of every factory and panel.

        The core resolves settings from arguments, then the environment: ``%mlops init``
        writes ``MLOPS_TENANT`` (and ``MLOPS_HOME`` / ``MLFLOW_TRACKING_URI`` when given) into
        the kernel process, so ``ComparisonPanel("churn")`` or ``create_mlops_pipeline(...)``
        in a later cell uses the same tenant as the magics without being told.
        """
        import os

        from mlops_jupyter.config import env

        for trait, var in (("tenant", env.MLOPS_TENANT), ("home", env.MLOPS_HOME), ("uri", env.MLFLOW_TRACKING_URI)):
            value = getattr(self, trait)
            if value:
                self._env_before.setdefault(var, os.environ.get(var))
                os.environ[var] = os.path.abspath(os.path.expanduser(value)) if trait == "home" else value

    def restore_env(self) -> None:
        """Give the process back the defaults it had before ``%mlops init`` (``%unload_ext``)."""
        import os

        for var, value in self._env_before.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        self._env_before.clear()

    @property
    def pipeline(self) -> Any:
        if self._pipeline is None:
            from mlops_jupyter.api import create_mlops_pipeline
            from mlops_jupyter.notebook.magics.autolog import notebook_name

            name = self.experiment or notebook_name(self.shell) or "notebook"
            self._pipeline = create_mlops_pipeline(
                name,
                tenant_id=self.tenant or None,
                mlflow_uri=self.uri or None,
                storage_path=self.home or None,
            )
        return self._pipeline

    def deployment_for(self, target: str | None) -> Any:
        """The pipeline's deployment, or one on another target (``%mlops deploy --target``).

        A deployment on another target shares the pipeline's settings and versioning and is
        kept per pipeline, so a target's state (a started Ray, its URL) lives across cells.
        The name is checked by ``ModelDeployment``: a bad one is the Python API's error."""
        p = self.pipeline
        if target is None or target == p.deployment.target.name:
            return p.deployment
        key = (id(p), target)
        if key not in self._deployments or self._deployments[key][0] is not p:
            from mlops_jupyter.deployment.deployment import ModelDeployment

            self._deployments[key] = (p, ModelDeployment(p.settings, target=target, versioning=p.versioning))
        return self._deployments[key][1]

    def use_pipeline(self, pipeline: Any) -> None:
        """Make the magics (and autolog) act on an existing pipeline."""
        if self.autolog_obj is not None:
            self.autolog_obj.close()
            self.autolog_obj = None
        self._pipeline = pipeline

    @property
    def autolog(self) -> Any:
        if self.autolog_obj is None:
            from mlops_jupyter.notebook.magics.autolog import CellAutolog

            self.autolog_obj = CellAutolog(self.shell, self.pipeline)
        return self.autolog_obj

    # -- the magic ---------------------------------------------------------------------
    @line_cell_magic
    def mlops(self, line: str = "", cell: str | None = None) -> Any:
        """MLOps in the notebook. ``%mlops help`` lists the subcommands."""
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%mlops: cannot parse {line!r}: {exc}") from None
        if cell is not None:
            return self._cell_run(argv, cell)
        from mlops_jupyter.notebook.magics.commands import COMMANDS

        if not argv:
            argv = ["help"]
        name, rest = argv[0], argv[1:]
        cmd = COMMANDS.get(name)
        if cmd is None:
            raise UsageError(
                f"%mlops: unknown subcommand {name!r}; one of: {', '.join(COMMANDS)} (%mlops help SUBCOMMAND)"
            )
        args = cmd.parser().parse(rest)
        try:
            return cmd.run(args, self)
        except MLOpsError as exc:
            raise as_usage_error(exc) from None

    def _cell_run(self, argv: list[str], cell: str) -> Any:
        """``%%mlops run [NAME] [--tag k=v ...]``: the cell body runs inside one run."""
        from mlops_jupyter.notebook.magics.commands import MagicArgumentParser, parse_pairs

        if not argv or argv[0] != "run":
            got = f"got {' '.join(argv)!r}" if argv else "got nothing after %%mlops"
            raise UsageError(f"%%mlops: the cell magic's one verb is run: %%mlops run [NAME] [--tag K=V ...]; {got}.")
        p = MagicArgumentParser(
            "run", "Run the cell inside one run: %%mlops run [NAME] [--tag k=v ...]", magic="%%mlops"
        )
        p.add_argument("name", nargs="?")
        p.add_argument("--tag", action="append", metavar="K=V")
        args = p.parse(argv[1:])
        tags = {k: str(v) for k, v in parse_pairs(args.tag, self.shell.user_ns, "--tag").items()}
        tracker = self.pipeline.tracker
        try:
            run = tracker.start_experiment(
                self.pipeline.settings.experiment_name,
                tags={**tags, "mlops.kind": "cell-run"},
                run_name=args.name or f"cell-{self.shell.execution_count}",
            )
        except MLOpsError as exc:
            raise as_usage_error(exc) from None
        from mlops_jupyter.tracking import notebook_capture as capture

        source = self.shell.transform_cell(cell)
        try:
            value = _exec_cell(self.shell, source)
        except BaseException as exc:
            tracker.set_tags(
                {"mlops.error": f"{type(exc).__name__}: {exc}"[:8000], "mlops.error_type": type(exc).__name__}, run=run
            )
            tracker.log_text(cell, "cell.py", run=run)
            tracker.end_experiment(status="failed", run=run)
            raise
        tree = capture.parse(source)
        params = capture.literal_params(tree)
        from mlops_jupyter.notebook.magics.autolog import remember_fit

        for fit in capture.sklearn_fits(tree, self.shell.user_ns):
            remember_fit(fit["estimator"], run.run_id)
            tracker.log_metrics(fit["metrics"], run=run) if fit["metrics"] else None
            params.update({k: v for k, v in fit["params"].items() if k not in params})
        params = {k: v for k, v in params.items() if k not in run.params}
        if params:
            tracker.log_params(params, run=run)
        tracker.log_text(cell, "cell.py", run=run)
        if run.is_open:
            tracker.end_experiment(run=run)
        return value


def _exec_cell(shell: Any, source: str) -> Any:
    """Execute ``source`` in the user namespace; return the last expression's value (like a cell)."""
    tree = ast.parse(source)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    ns = shell.user_ns
    exec(compile(tree, "<%%mlops run>", "exec"), ns)
    if last is not None:
        return eval(compile(last, "<%%mlops run>", "eval"), ns)
    return None
