"""DeployPanel: a model's versions with lineage, what serves in each environment, and
one-click deploy / promote / rollback through the deployment API."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets
from traitlets import Dict, Int, List, Unicode, observe

from mlops_jupyter.notebook.widgets import charts, theme
from mlops_jupyter.notebook.widgets._base import Panel, PathLike, resolve_pipeline, split_positional
from mlops_jupyter.notebook.widgets._offline import chart_widget
from mlops_jupyter.notebook.widgets.static import chart_html, html_table, panel_html

DEFAULT_ENVIRONMENTS = ("production", "staging")
ACTIONS = ("deploy", "promote", "rollback")
#: The traffic and lineage charts sit side by side.
CHART_WIDTH = 360


def traffic_text(traffic: dict[str, int] | None) -> str:
    """``{'1.0.0': 50, '1.1.0': 50}`` as ``1.0.0 50% · 1.1.0 50%``."""
    return " · ".join(f"{v} {p}%" for v, p in (traffic or {}).items()) or "nothing"


class DeployPanel(Panel):
    """Deploy, promote and roll back one model from the notebook.

    Args:
        model_id: the tenant's model.
        pipeline: the pipeline to act through (default: one built from ``tenant_id``,
            ``mlflow_uri``, ``storage_path`` as the factories do).
        environments: environments offered besides those the model is deployed in
            (default ``production`` and ``staging``).
        confirm_environments: environments where an action asks for confirmation first
            (default ``["production"]``).

    Controls: ``version_dropdown``, ``environment_dropdown``, ``traffic_slider`` (the share
    the chosen version gets; the versions already there share the rest), ``deploy_button``
    (deploy the version at that share), ``promote_button`` (the version takes 100 %),
    ``rollback_button`` (back to the previously live version), ``confirm_button`` /
    ``cancel_button`` (shown while an action waits for confirmation), ``refresh_button``,
    and ``status``. Every action goes through ``pipeline.deployment``, shows its result or
    its error in ``status``, then reloads the panel from the store.

    Traits: ``model`` (the model id: ipywidgets owns ``model_id``),
    ``version``, ``environment``, ``traffic``, ``pending`` (the
    action awaiting confirmation), ``deployments`` (this model's, as ``list_deployments``
    returns them), ``versions``, ``last_result``.

    Example:
        >>> panel = DeployPanel("ticket_classifier", pipeline=pipeline)
        >>> panel.rollback_button.click()   # production: asks first
        >>> panel.confirm_button.click()    # acts, shows the result, reloads
        >>> panel.live["production"]
        {'1.0.0': 100}
    """

    model = Unicode()
    version = Unicode("")
    environment = Unicode("production")
    traffic = Int(100)
    pending = Unicode("")
    confirm_environments = List(Unicode(), default_value=["production"])
    deployments = List(Dict(), read_only=True)
    versions = List(Dict(), read_only=True)
    last_result = Dict(allow_none=True, default_value=None)

    _events = ("refresh", "error", "deploy", "promote", "rollback")

    def __init__(
        self,
        *args: Any,
        model_id: str | None = None,
        model: str | None = None,
        pipeline: Any = None,
        tenant_id: str | None = None,
        mlflow_uri: str | None = None,
        storage_path: PathLike | None = None,
        environments: Sequence[str] = DEFAULT_ENVIRONMENTS,
        confirm_environments: Sequence[str] = ("production",),
        **kw: Any,
    ) -> None:
        # DeployPanel("m"), DeployPanel(pipeline, "m"), DeployPanel(pipeline, model_id="m")
        pipeline, got = split_positional("DeployPanel", args, ("model_id",), {"model_id": model_id or model}, pipeline)
        model_id = got["model_id"]
        if kw:
            raise TypeError(f"DeployPanel() got unexpected arguments {sorted(kw)}")
        p = resolve_pipeline(pipeline, tenant_id=tenant_id, mlflow_uri=mlflow_uri, storage_path=storage_path)
        from mlops_jupyter.config.names import validate_model_id

        super().__init__(p)
        self.model = validate_model_id(model_id)
        self.confirm_environments = list(confirm_environments)
        self.extra_environments = list(environments)
        self.lineage: dict[str, Any] = {}
        self._ready = False
        self._syncing = False

        self.live_html = widgets.HTML()
        self.versions_html = widgets.HTML()
        self.chart = chart_widget()
        self.chart.add_class("mlops-chart")
        self.version_dropdown = widgets.Dropdown(description="version", layout=widgets.Layout(width="230px"))
        self.environment_dropdown = widgets.Dropdown(
            description="environment",
            options=list(environments),
            style={"description_width": "initial"},
            layout=widgets.Layout(width="260px"),
        )
        self.traffic_slider = widgets.IntSlider(
            value=100,
            min=0,
            max=100,
            step=5,
            description="traffic %",
            continuous_update=False,
            layout=widgets.Layout(width="340px"),
        )
        self.deploy_button = widgets.Button(
            description="Deploy",
            icon="rocket",
            button_style="primary",
            tooltip="deploy the version with this share of the traffic",
        )
        self.promote_button = widgets.Button(
            description="Promote",
            icon="arrow-up",
            button_style="success",
            tooltip="send 100 % of the environment's traffic to the version",
        )
        self.rollback_button = widgets.Button(
            description="Rollback",
            icon="undo",
            button_style="warning",
            tooltip="send 100 % back to the previously live version",
        )
        self.confirm_label = widgets.HTML()
        self.confirm_button = widgets.Button(description="Confirm", button_style="danger", icon="check")
        self.cancel_button = widgets.Button(description="Cancel", icon="times")
        self.confirm_box = widgets.HBox(
            [self.confirm_label, self.confirm_button, self.cancel_button],
            layout=widgets.Layout(display="none", align_items="center"),
        )
        for name in ("deploy", "promote", "rollback", "confirm", "cancel"):
            getattr(self, f"{name}_button").add_class(f"mlops-{name}")
        self.deploy_button.on_click(lambda _b: self.deploy())
        self.promote_button.on_click(lambda _b: self.promote())
        self.rollback_button.on_click(lambda _b: self.rollback())
        self.confirm_button.on_click(lambda _b: self.confirm())
        self.cancel_button.on_click(lambda _b: self.cancel())

        self.children = [
            widgets.HBox([self.title, self.refresh_button], layout=widgets.Layout(justify_content="space-between")),
            self.live_html,
            self.chart,
            self.versions_html,
            widgets.HBox([self.version_dropdown, self.environment_dropdown, self.traffic_slider]),
            widgets.HBox([self.deploy_button, self.promote_button, self.rollback_button]),
            self.confirm_box,
            self.status,
        ]
        self.add_class("mlops-deploy-panel")
        try:
            self._load()
        except Exception as exc:
            self.fail("load", exc)
        self._sync_options()
        self.version_dropdown.value = self.version or None
        self.environment_dropdown.value = self.environment
        self.version_dropdown.observe(self._from_widget("version"), "value")
        self.environment_dropdown.observe(self._from_widget("environment"), "value")
        self.observe(lambda c: setattr(self.version_dropdown, "value", c["new"] or None), "version")
        self.observe(self._to_environment_dropdown, "environment")
        widgets.link((self, "traffic"), (self.traffic_slider, "value"))
        self._ready = True
        self._render()

    # -- loading -----------------------------------------------------------------------
    def _load(self) -> None:
        p = self.pipeline
        versions = p.versioning.list_versions(self.model)
        self.lineage = p.versioning.get_lineage(self.model)
        deps = [d for d in p.deployment.list_deployments() if d["model_id"] == self.model]
        self.set_trait("versions", versions)
        self.set_trait("deployments", sorted(deps, key=lambda d: d["environment"]))
        if self._ready:
            self._sync_options()

    def _sync_options(self) -> None:
        """Dropdown options follow the store; the chosen version and environment stay
        chosen (ipywidgets resets a dropdown's value when its options change)."""
        version, env = self.version, self.environment
        newest_first = [v["version"] for v in reversed(self.versions)]
        opts = [(f"{v} (latest)" if i == 0 else v, v) for i, v in enumerate(newest_first)]
        envs = list(
            dict.fromkeys(
                [d["environment"] for d in self.deployments] + self.extra_environments + ([env] if env else [])
            )
        )
        self._syncing = True
        try:
            if list(self.version_dropdown.options) != opts:
                self.version_dropdown.options = opts
            if list(self.environment_dropdown.options) != envs:
                self.environment_dropdown.options = envs
        finally:
            self._syncing = False
        self.version = version if version in newest_first else (newest_first[0] if newest_first else "")
        self.environment = env
        if self._ready:
            self.version_dropdown.value = self.version or None
            self.environment_dropdown.value = self.environment

    def _from_widget(self, name: str) -> Callable[[Any], None]:
        def handler(change: Any) -> None:
            if not self._syncing and change["new"] is not None:
                setattr(self, name, change["new"])

        return handler

    def _to_environment_dropdown(self, change: Any) -> None:
        if change["new"] not in self.environment_dropdown.options:
            self._sync_options()
        self.environment_dropdown.value = change["new"]

    @property
    def live(self) -> dict[str, dict[str, int]]:
        """Environment -> traffic split of this model, as loaded last."""
        return {d["environment"]: dict(d["traffic"]) for d in self.deployments}

    def deployment_in(self, environment: str | None = None) -> dict[str, Any] | None:
        env = environment or self.environment
        return next((d for d in self.deployments if d["environment"] == env), None)

    # -- actions -----------------------------------------------------------------------
    def on_deploy(self, callback: Callable[..., Any], remove: bool = False) -> None:
        """Call ``callback(panel, result)`` after a deploy (result None when it failed)."""
        self._on("deploy", callback, remove)

    def on_promote(self, callback: Callable[..., Any], remove: bool = False) -> None:
        """Call ``callback(panel, result)`` after a promote."""
        self._on("promote", callback, remove)

    def on_rollback(self, callback: Callable[..., Any], remove: bool = False) -> None:
        """Call ``callback(panel, result)`` after a rollback."""
        self._on("rollback", callback, remove)

    def deploy(self, confirmed: bool = False) -> dict[str, Any] | None:
        """Deploy ``version`` to ``environment`` with ``traffic`` % (as the Deploy button).

        In a confirm environment this only asks (``pending``), unless ``confirmed``.
        Returns the deployment API's result, or None (asked, refused or failed).
        """
        return self._request("deploy", confirmed)

    def promote(self, confirmed: bool = False) -> dict[str, Any] | None:
        """Send 100 % of ``environment``'s traffic to ``version`` (as the Promote button)."""
        return self._request("promote", confirmed)

    def rollback(self, confirmed: bool = False) -> dict[str, Any] | None:
        """Send 100 % of ``environment``'s traffic back to the previously live version."""
        return self._request("rollback", confirmed)

    def confirm(self) -> dict[str, Any] | None:
        """Carry out the pending action (as the Confirm button)."""
        action = self.pending
        if not action:
            self.show("nothing to confirm", "warn")
            return None
        self.pending = ""
        return self._perform(action)

    def cancel(self) -> None:
        """Drop the pending action (as the Cancel button)."""
        if self.pending:
            what = self.pending
            self.pending = ""
            self.show(f"{what} cancelled; nothing changed", "info")

    def _request(self, action: str, confirmed: bool) -> dict[str, Any] | None:
        if self.busy:
            return None
        if not confirmed and self.environment in self.confirm_environments:
            self.pending = action
            self.show(f"{self.describe(action)}: confirm or cancel", "warn")
            return None
        self.pending = ""
        return self._perform(action)

    def describe(self, action: str) -> str:
        """What ``action`` would do, in words (shown when asking for confirmation)."""
        env, m = self.environment, self.model
        if action == "deploy":
            return f"Deploy {m} {self.version} to {env} with {self.traffic}% of its traffic"
        if action == "promote":
            return f"Send 100% of {m}'s traffic in {env} to {self.version}"
        dep = self.deployment_in()
        target = dep.get("rollback_to") if dep else None
        now = traffic_text(dep["traffic"]) if dep else "nothing"
        return f"Roll back {m} in {env} (now {now}) to " + (target or "the previously live version")

    def _perform(self, action: str) -> dict[str, Any] | None:
        from mlops_jupyter.errors import DeploymentError

        d = self.pipeline.deployment
        env, m = self.environment, self.model
        result = None
        self.busy = True
        self.show(f"{self.describe(action)}…", "info")
        try:
            if action == "deploy":
                result = d.deploy_model(m, self.version, environment=env, traffic_percentage=self.traffic)
            elif action == "promote":
                result = d.deploy_model(m, self.version, environment=env, traffic_percentage=100)
            elif action == "rollback":
                result = d.rollback(m, env)
            else:
                raise ValueError(f"unknown action {action!r}")
            if result.get("status") not in ("deployed", None):
                raise DeploymentError(
                    f"{result.get('status')}: {result.get('reason')}; what served before "
                    f"keeps serving ({traffic_text(result.get('traffic'))})"
                )
            self.last_result = dict(result)
            verb = {"deploy": "Deployed", "promote": "Promoted", "rollback": "Rolled back"}[action]
            what = f"{m} {result.get('version')}" if action != "rollback" else f"{m} to {result.get('version')}"
            self.show(
                f"{verb} {what} in {env}: now {traffic_text(result.get('traffic'))} "
                f"(revision {result.get('revision')})",
                "ok",
            )
        except Exception as exc:
            result = None
            self.last_result = None
            self.fail(action, exc)
        finally:
            self.busy = False
            self._reload_after_action()
        self._fire(action, result)
        if result is not None:
            self.changed()  # other live panels of this model follow (kernel-wide bus)
        return result

    def _reload_after_action(self) -> None:
        """Reload from the store, keeping the action's message in ``status``."""
        try:
            self._load()
            self._render()
        except Exception as exc:
            self.fail("refresh", exc)

    # -- observers ---------------------------------------------------------------------
    @observe("version", "environment", "traffic")
    def _choice_changed(self, change: Any) -> None:
        if self._syncing:
            return
        if self.pending:  # what was asked no longer matches what is shown
            self.cancel()
        if self._ready:
            self._render_controls()

    @observe("pending")
    def _pending_changed(self, change: Any) -> None:
        action = change["new"]
        self.confirm_box.layout.display = "flex" if action else "none"
        self.confirm_label.value = (
            f"<b style='color:{theme.ERROR}; padding-right:8px'>{html.escape(self.describe(action))}?</b>"
            if action
            else ""
        )

    @observe("busy")
    def _busy_changed(self, change: Any) -> None:
        if self._ready:
            self._render_controls()

    # -- rendering ---------------------------------------------------------------------
    def _render(self) -> None:
        self._render_title()
        self._render_live()
        self._render_versions()
        self._render_charts()
        self._render_controls()

    def _render_charts(self) -> None:
        self.chart.chart = self.build_chart()

    def _render_title(self) -> None:
        from mlops_jupyter.notebook.magics import ui

        self.title.value = (
            f"<b style='font-size:14px'>Deploy · {ui.model_link(self.pipeline, self.model)}</b> "
            f"<span style='color:{theme.MUTED}'>· tenant {html.escape(self.pipeline.settings.tenant)}</span>"
        )

    def build_chart(self) -> Any:
        """Traffic by environment above the version graph (pure data -> chart)."""
        import altair as alt

        return alt.hconcat(
            charts.traffic_split(self.deployments, width=CHART_WIDTH),
            charts.version_lineage(self.lineage, self.live, width=CHART_WIDTH),
        ).resolve_scale(color="independent")  # versions vs live/idle: two colour scales

    def _live_table(self) -> str:
        header = list(self._LIVE_HEADER)
        rows = [
            [
                d["environment"],
                d.get("target") or "",  # where it runs: local, ray or kserve
                d["status"],
                traffic_text(d["traffic"]),
                d.get("revision"),
                d.get("updated_at"),
                d["endpoint"],
                d.get("reason") or "",
            ]
            for d in self.deployments
        ]
        if not any(r[-1] for r in rows):  # a reason column only when something is failed or degraded
            header, rows = header[:-1], [r[:-1] for r in rows]
        at = header.index("endpoint")  # endpoints are links
        links = [[r[at] if j == at else None for j in range(len(r))] for r in rows]
        return html_table(rows, header, caption="live deployments", links=links)

    _LIVE_HEADER = ("environment", "target", "status", "traffic", "revision", "updated", "endpoint", "reason")
    _VERSION_HEADER = ("version", "parent", "created", "serving", "sha256", "run", "data")

    def _version_rows(self) -> list[list[Any]]:
        live: dict[str, list[str]] = {}
        for env, table in self.live.items():
            for v, pct in table.items():
                live.setdefault(v, []).append(f"{env} {pct}%")
        rows = []
        for v in reversed(self.versions):
            rows.append(
                [
                    v["version"],
                    v.get("parent") or "",
                    v.get("created_at") or "",
                    ", ".join(live.get(v["version"], [])),
                    (v.get("sha256") or "")[:12],
                    (v.get("run_id") or "")[:8],
                    ", ".join(map(str, v.get("data_sources") or [])),
                ]
            )
        return rows

    def _render_live(self) -> None:
        if not self.deployments:
            self.live_html.value = f"<i>{html.escape(self.model)} is not deployed yet.</i>"
            return
        self.live_html.value = self._live_table()

    def _versions_table(self) -> str:
        """The versions, newest first, live ones highlighted; versions and runs link to
        their MLflow pages when a UI is known."""
        from mlops_jupyter.notebook.magics import ui

        rows = self._version_rows()
        name = self.pipeline.tracker.tenancy.model_name(self.model)
        links = []
        for v in reversed(self.versions):
            run = v.get("run_id") or ""
            links.append([ui.model_url(name, v.get("registry_version")) or None] + [None] * 4 + [ui.run_url(run)])
        return html_table(
            rows,
            self._VERSION_HEADER,
            caption="versions (newest first)",
            highlight=[i for i, r in enumerate(rows) if r[3]],
            mark=theme.LIVE,
            links=links,
        )

    def _render_versions(self) -> None:
        self.versions_html.value = self._versions_table()

    def _render_controls(self) -> None:
        busy = self.busy
        has = self.deployment_in() is not None
        for b in (self.deploy_button, self.promote_button):
            b.disabled = busy or not self.version
        self.rollback_button.disabled = busy or not has
        self.rollback_button.tooltip = (
            "send 100 % back to the previously live version"
            if has
            else f"{self.model} is not deployed in {self.environment}"
        )
        self.confirm_button.disabled = self.cancel_button.disabled = busy
        self.refresh_button.disabled = busy

    # -- static view -------------------------------------------------------------------
    def static_html(self) -> str:
        live = (
            self._live_table() if self.deployments else f"<p><i>{html.escape(self.model)} is not deployed yet.</i></p>"
        )
        versions = self._versions_table()
        return panel_html(
            f"Deploy · {self.model} · tenant {self.pipeline.settings.tenant}",
            [
                live,
                chart_html(self.chart.chart, "traffic and versions"),
                versions,
                f"<div>{self.status.value}</div>" if self.message else "",
            ],
        )

    def __repr__(self) -> str:
        return f"<DeployPanel {self.model!r} live={self.live}>"
