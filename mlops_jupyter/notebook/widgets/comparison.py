"""ComparisonPanel: compare runs: a sortable, paged table, a metric and a param picker,
bar / scatter / parallel-coordinates views, the best run marked.

Widgets, traits and observers live here; what the panel computes from its runs is in
:mod:`.comparison_data`, what it shows (the chart of a view, HTML) in :mod:`.comparison_view`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets
from traitlets import Bool, Enum, Int, List, Unicode, observe, validate

from mlops_jupyter.notebook.widgets import comparison_data as data
from mlops_jupyter.notebook.widgets import comparison_view as views
from mlops_jupyter.notebook.widgets._base import Panel, PathLike, resolve_pipeline, split_positional
from mlops_jupyter.notebook.widgets._offline import chart_widget
from mlops_jupyter.notebook.widgets._table import RunTable
from mlops_jupyter.notebook.widgets.comparison_data import (
    HOUSEKEEPING_METRICS,
    MAX_TABLE_METRICS,
    MAX_TABLE_PARAMS,
    PREFERRED_METRICS,
)

# the constants now live in comparison_data; still importable from here
__all__ = ["HOUSEKEEPING_METRICS", "MAX_TABLE_METRICS", "MAX_TABLE_PARAMS", "PREFERRED_METRICS", "ComparisonPanel"]


class ComparisonPanel(Panel):
    """Compare runs of an experiment (or given runs).

    Args:
        experiment: the experiment whose runs to show (default: the pipeline's experiment if
            it names one, else every experiment of the tenant).
        runs: show these runs instead: what ``list_experiments()`` or ``%mlops runs``
            returns, or a DataFrame like ``mlflow.search_runs``'. Refresh re-reads them
            from the store.
        pipeline: the pipeline to read through (default: one built from ``tenant_id``,
            ``mlflow_uri``, ``storage_path`` as the factories do).
        metric, param: what the chart shows first (default: a usual metric such as
            ``accuracy``, and the first param).
        view: ``bar``, ``scatter`` or ``parallel``.
        page_size: table rows per page.
        max_points: most runs a chart draws; beyond that a random sample (the best run
            always in it), which the panel says on screen.

    Traits: ``experiment``, ``metric``, ``param``, ``view``, ``higher_is_better``,
    ``sort_by``, ``ascending``, ``page``, ``page_size``, ``selected`` (run ids; when some
    are selected the chart shows only those), ``best_run_id``, ``n_runs``.

    Example:
        >>> panel = ComparisonPanel("ticket_classifier", pipeline=pipeline, metric="accuracy")
        >>> panel.view = "scatter"; panel.param = "max_depth"
        >>> panel.best_run["run_name"]
        'cell-12'
    """

    experiment = Unicode(None, allow_none=True)
    metric = Unicode("")
    param = Unicode("")
    view = Enum(("bar", "scatter", "parallel", "steps"), default_value="bar")
    #: Show every param in the table, also those that never vary across the runs.
    all_params = Bool(False)
    higher_is_better = Bool(True)
    sort_by = Unicode("")
    ascending = Bool(False)
    page = Int(0)
    page_size = Int(25)
    selected = List(Unicode())
    max_points = Int(2000)
    best_run_id = Unicode(None, allow_none=True, read_only=True)
    n_runs = Int(0, read_only=True)

    _events = ("refresh", "error", "select", "report")

    def __init__(
        self,
        *args: Any,
        experiment: str | None = None,
        runs: Any = None,
        pipeline: Any = None,
        tenant_id: str | None = None,
        mlflow_uri: str | None = None,
        storage_path: PathLike | None = None,
        metric: str | None = None,
        param: str | None = None,
        view: str = "bar",
        page_size: int = 25,
        max_points: int = 2000,
        max_runs: int = 100_000,
    ) -> None:
        # ComparisonPanel("exp"), ComparisonPanel(pipeline, "exp"), ComparisonPanel(pipeline, experiment="exp"),
        # ComparisonPanel(runs) and ComparisonPanel(pipeline, runs)
        pipeline, got = split_positional(
            "ComparisonPanel", args, ("experiment", "runs"), {"experiment": experiment, "runs": runs}, pipeline
        )
        experiment, runs = got["experiment"], got["runs"]
        if experiment is not None and not isinstance(experiment, str):
            if runs is not None:
                raise TypeError(f"ComparisonPanel() experiment must be a name, got {type(experiment).__name__}")
            experiment, runs = None, experiment
        p = resolve_pipeline(pipeline, tenant_id=tenant_id, mlflow_uri=mlflow_uri, storage_path=storage_path)
        super().__init__(p)
        import pandas as pd

        self.max_runs = max_runs
        self._given = runs
        self._given_ids: list[str] | None = None
        self.frame = pd.DataFrame()
        self.metrics: list[str] = []
        self.params: list[str] = []
        #: the metric the experiment's runs are ranked by (its ``mlops.sort_metric`` tag), if any
        self.sort_metric: str | None = None
        self._chart_rows = 0
        self._chart_note = ""
        self._sorted: Any = None
        self._ready = False
        self._syncing = False
        with self.hold_trait_notifications():
            self.experiment = experiment
            self.view = view
            self.page_size = page_size
            self.max_points = max_points

        self.metric_dropdown = widgets.Dropdown(description="metric", layout=widgets.Layout(width="240px"))
        self.goal_dropdown = widgets.Dropdown(  # described: a screen reader names the select (axe select-name)
            options=[("higher is better", True), ("lower is better", False)],
            description="goal",
            style={"description_width": "initial"},
            layout=widgets.Layout(width="190px"),
        )
        self.param_dropdown = widgets.Dropdown(description="param", layout=widgets.Layout(width="240px"))
        self.view_buttons = widgets.ToggleButtons(
            options=[("Bar", "bar"), ("Scatter", "scatter"), ("Parallel", "parallel"), ("Steps", "steps")],
            tooltips=["metric by run", "metric vs param", "params and metric by run", "metric by step, per run"],
            style={"button_width": "80px"},
        )
        self.all_params_box = widgets.Checkbox(
            description="all params",
            indent=False,
            layout=widgets.Layout(width="auto"),
            tooltip="also show params that never vary across these runs",
        )
        self.sessions: Any = None
        self._history: dict[tuple[str, str], list[tuple[int, float]]] = {}
        self.table = RunTable()
        self.prev_button = widgets.Button(description="◀ prev", layout=widgets.Layout(width="80px"))
        self.next_button = widgets.Button(description="next ▶", layout=widgets.Layout(width="80px"))
        self.page_label = widgets.HTML()
        self.clear_button = widgets.Button(description="Clear selection", layout=widgets.Layout(width="auto"))
        self.report_button = widgets.Button(
            description="Open report",
            disabled=True,
            layout=widgets.Layout(width="auto"),
            tooltip="show the selected report run's HTML (mlops-jupyter report)",
        )
        self.report_view = widgets.HTML()
        self.summary = widgets.HTML()
        self.chart_note = widgets.HTML()
        self.chart = chart_widget()
        self.chart.add_class("mlops-chart")
        self.prev_button.on_click(lambda _b: self.prev_page())
        self.next_button.on_click(lambda _b: self.next_page())
        self.clear_button.on_click(lambda _b: self.select([]))
        self.report_button.on_click(lambda _b: self.open_report())
        self.children = [
            widgets.HBox([self.title, self.refresh_button], layout=widgets.Layout(justify_content="space-between")),
            self.summary,
            widgets.HBox([self.metric_dropdown, self.goal_dropdown, self.param_dropdown]),
            widgets.HBox([self.view_buttons, self.all_params_box, self.clear_button, self.report_button]),
            self.chart_note,
            self.chart,
            self.table,
            widgets.HBox([self.prev_button, self.page_label, self.next_button]),
            self.status,
            self.report_view,
        ]
        self.add_class("mlops-comparison")
        self.refresh_first(metric, param)

    # -- loading -----------------------------------------------------------------------
    def refresh_first(self, metric: str | None, param: str | None) -> None:
        try:
            self._load()
        except Exception as exc:
            self.fail("load", exc)
        self._pick_defaults(metric, param)
        self._link()
        self._ready = True
        self._render()

    def _load(self) -> None:
        from mlops_jupyter.tracking.runs_query import experiment_sort_metric, frame_from_runs, runs_frame

        tracker = self.pipeline.tracker
        if self._given is not None and self._given_ids is None:
            given = frame_from_runs(self._given)
            self._given_ids = [str(r) for r in given["run_id"].dropna()]
            fresh = (
                runs_frame(tracker, experiment_name=None, max_results=self.max_runs, run_ids=self._given_ids)
                if self._given_ids
                else given.iloc[0:0]
            )
            # runs not in this tenant's store (e.g. a frame from elsewhere) are shown as given
            missing = given[~given["run_id"].astype(str).isin(set(fresh["run_id"].astype(str)))]
            df = fresh if missing.empty else frame_from_runs(data.concat_runs(fresh, missing))
        elif self._given_ids is not None:
            df = runs_frame(tracker, experiment_name=None, max_results=self.max_runs, run_ids=self._given_ids)
        else:
            df = runs_frame(tracker, experiment_name=self.experiment, max_results=self.max_runs)
        df, self.sessions = data.without_sessions(data.with_cell_durations(df.reset_index(drop=True)))
        self.frame = df
        self.sort_metric = experiment_sort_metric(tracker, self._one_experiment(df))
        self._history.clear()
        self.metrics = data.names(df.columns, "metrics.")
        self.params = data.names(df.columns, "params.")
        self.set_trait("n_runs", len(df))
        self.page = self.page  # clamped to the new number of pages
        ids = set(self.frame["run_id"].astype(str))
        if any(s not in ids for s in self.selected):
            self.selected = [s for s in self.selected if s in ids]
        if self.metric and self.metric not in self.metrics:
            self.metric = data.default_metric(self.metrics, self.sort_metric)
        if self.param and self.param not in self.params:
            self.param = data.default_param(self.params, self.frame)

    def _one_experiment(self, frame: Any) -> str | None:
        """The experiment whose sort metric applies: the panel's, else the one all its runs share."""
        if self.experiment:
            return self.experiment
        names = set(frame["experiment_name"].dropna().astype(str)) if len(frame) else set()
        return names.pop() if len(names) == 1 else None

    def _pick_defaults(self, metric: str | None, param: str | None) -> None:
        with self.hold_trait_notifications():
            self.metric = (
                metric.removeprefix("metrics.") if metric else data.default_metric(self.metrics, self.sort_metric)
            )
            self.param = param.removeprefix("params.") if param else data.default_param(self.params, self.frame)
            self.higher_is_better = data.higher_is_better_for(self.metric)
            self.sort_by, self.ascending = data.default_sort(self.metric, self.higher_is_better)

    def _link(self) -> None:
        self._sync_options()
        widgets.link((self, "higher_is_better"), (self.goal_dropdown, "value"))
        widgets.link((self, "view"), (self.view_buttons, "value"))
        widgets.link((self, "all_params"), (self.all_params_box, "value"))
        widgets.link((self, "sort_by"), (self.table, "sort_by"))
        widgets.link((self, "ascending"), (self.table, "ascending"))
        widgets.link((self, "selected"), (self.table, "selected"))
        self.metric_dropdown.observe(lambda c: self._syncing or setattr(self, "metric", c["new"] or ""), "value")
        self.param_dropdown.observe(lambda c: self._syncing or setattr(self, "param", c["new"] or ""), "value")
        self.observe(lambda c: self._syncing or self._sync_options(), ["metric", "param"])

    def _sync_options(self) -> None:
        """Dropdown options follow the loaded runs; values follow the traits (ipywidgets
        resets a dropdown's value when its options change: that is ignored here)."""
        metric_opts, param_opts = self.metrics or [""], self.params or [""]
        self._syncing = True
        try:
            if list(self.metric_dropdown.options) != metric_opts:
                self.metric_dropdown.options = metric_opts
            if list(self.param_dropdown.options) != param_opts:
                self.param_dropdown.options = param_opts
        finally:
            self._syncing = False
        self.metric_dropdown.value = self.metric if self.metric in metric_opts else metric_opts[0]
        self.param_dropdown.value = self.param if self.param in param_opts else param_opts[0]

    def bus_topics(self) -> set[str]:
        """Runs logged in this kernel (cell autolog, the magics) refresh the panel."""
        from mlops_jupyter.notebook.widgets import _bus

        return {_bus.runs_topic(self.pipeline.settings.tenant)}

    # -- public actions ----------------------------------------------------------------
    def select(self, run_ids: Sequence[str]) -> None:
        """Select runs (by id); the chart then shows only them. ``[]`` clears."""
        self.selected = [str(r) for r in run_ids]

    def on_select(self, callback: Callable[..., Any], remove: bool = False) -> None:
        """Call ``callback(panel, run_ids)`` when the selection changes."""
        self._on("select", callback, remove)

    def next_page(self) -> None:
        self.page = min(self.page + 1, self.n_pages - 1)

    def prev_page(self) -> None:
        self.page = max(self.page - 1, 0)

    @property
    def n_pages(self) -> int:
        return data.n_pages(self.n_runs, self.page_size)

    @property
    def best_run(self) -> dict[str, Any] | None:
        """The best run for ``metric`` (as a row dict), or None."""
        return data.run_row(self.frame, self.best_run_id)

    @property
    def page_rows(self) -> Any:
        """The current page of the sorted runs (a DataFrame)."""
        return data.page_of(self._sorted_frame(), self.page, self.page_size)

    # -- observers ---------------------------------------------------------------------
    @validate("page")
    def _clamp_page(self, proposal: Any) -> int:
        return data.clamp_page(proposal["value"], self.n_pages)

    @validate("page_size", "max_points")
    def _positive(self, proposal: Any) -> int:
        v = int(proposal["value"])
        if v < 1:
            from traitlets import TraitError

            raise TraitError(f"{proposal['trait'].name} must be >= 1, got {v}")
        return v

    @observe("metric")
    def _metric_changed(self, change: Any) -> None:
        if not self._ready:
            return
        with self.hold_trait_notifications():
            self.higher_is_better = data.higher_is_better_for(self.metric)
            if change["old"] and self.sort_by == f"metrics.{change['old']}" and self.metric:
                self.sort_by, self.ascending = f"metrics.{self.metric}", not self.higher_is_better
        self._sorted = None
        self._render()

    @observe("higher_is_better")
    def _goal_changed(self, change: Any) -> None:
        if self._ready:
            if self.sort_by == f"metrics.{self.metric}":
                self.ascending = not self.higher_is_better
            self._render()

    @observe("all_params")
    def _all_params_changed(self, change: Any) -> None:
        if self._ready:
            self._render_chart()
            self._render_table()

    @observe("param", "view")
    def _chart_changed(self, change: Any) -> None:
        if self._ready:
            self._render_chart()
            self._render_controls()

    @observe("sort_by", "ascending")
    def _sort_changed(self, change: Any) -> None:
        if self._ready:
            self._sorted = None
            self.page = 0
            self._render_table()

    @observe("page", "page_size")
    def _page_changed(self, change: Any) -> None:
        if self._ready:
            self._render_table()

    @observe("selected")
    def _selection_changed(self, change: Any) -> None:
        if self._ready:
            self._render_summary()
            self._render_chart()
            self._render_table()
            self._render_controls()
        self._fire("select", list(self.selected))

    @observe("experiment")
    def _experiment_changed(self, change: Any) -> None:
        if self._ready:
            self.refresh()

    # -- rendering ---------------------------------------------------------------------
    def _render(self) -> None:
        self._sorted = None
        self._compute_best()
        self._sync_options()
        self._render_summary()
        self._render_chart()
        self._render_table()
        self._render_controls()

    def _compute_best(self) -> None:
        self.set_trait("best_run_id", data.best_run_id(self.frame, self.metric, self.higher_is_better))

    def _where(self) -> str:
        if self._given_ids is not None:
            exps = sorted({str(e) for e in self.frame.get("experiment_name", []) if e})
            return f"runs of {exps[0]!r}" if len(exps) == 1 else "given runs"
        exp = self.experiment or self.pipeline.settings.experiment_name
        return f"experiment {exp!r}" if exp else "all experiments"

    def _where_html(self) -> str | None:
        """The experiment linked to its MLflow page (when a UI is known)."""
        from mlops_jupyter.notebook.magics import ui

        exp = self.experiment or self.pipeline.settings.experiment_name
        if self._given_ids is not None or not exp or ui.current_url() is None:
            return None
        return f"experiment {ui.experiment_link(self.pipeline, exp)}"

    def _render_summary(self) -> None:
        self.title.value = views.title_html(self._where(), self.pipeline.settings.tenant, self._where_html())
        self.summary.value = views.summary_html(
            self.n_runs, self.metric, self.best_run, len(self.selected), self._session_text()
        )

    def _session_text(self) -> str:
        """The notebook session(s) these cell runs belong to, shown as such (not as runs)."""
        s = self.sessions
        if s is None or not len(s):
            return ""
        live = s[s["status"].astype(str) == "running"]
        row = (live if len(live) else s).iloc[0]
        state = "open" if len(live) else "ended"
        more = f" (+{len(s) - 1} earlier)" if len(s) > 1 else ""
        return f"session {row.get('run_name') or row['run_id'][:8]} ({state}){more}"

    def _chart_frame(self) -> tuple[Any, str]:
        """The runs the chart draws, and what the panel says about them."""
        return data.chart_runs(self.frame, self.selected, self.max_points, self.best_run_id)

    def build_chart(self) -> Any:
        """The altair chart of the current view (pure data -> chart, see :mod:`charts`)."""
        df, note = self._chart_frame()
        self._chart_rows = len(df)
        chart, self._chart_note = views.view_chart(
            df,
            note,
            view=self.view,
            metric=self.metric,
            param=self.param,
            params=self.params if self.all_params else data.varying_params(self.frame, self.params),
            best_run_id=self.best_run_id,
            higher_is_better=self.higher_is_better,
            history=self.step_history(df) if self.view == "steps" else None,
        )
        return chart

    def step_history(self, runs: Any = None) -> Any:
        """The current metric's points by step (``run_id``, ``label``, ``step``, ``value``)
        for the chart's runs: the selected ones, else the best ``charts.MAX_STEP_RUNS``."""
        import pandas as pd

        from mlops_jupyter.notebook.widgets import charts

        runs = self._chart_frame()[0] if runs is None else runs
        col = f"metrics.{self.metric}"
        if not self.metric or col not in runs.columns:
            return pd.DataFrame(columns=["run_id", "label", "step", "value"])
        if not self.selected:
            runs = data.sort_runs(runs, col, not self.higher_is_better)
        runs = runs[runs[col].notna()].head(charts.MAX_STEP_RUNS)
        client = self.pipeline.tracker.store.client
        rows = []
        for rid, label in zip(runs["run_id"].astype(str), charts.run_labels(runs)):
            key = (rid, self.metric)
            if key not in self._history:
                points = client.get_metric_history(rid, self.metric)
                self._history[key] = sorted((int(m.step), float(m.value)) for m in points)
            rows += [(rid, label, step, value) for step, value in self._history[key]]
        return pd.DataFrame(rows, columns=["run_id", "label", "step", "value"])

    def _render_chart(self) -> None:
        chart = self.build_chart()
        self.chart.chart = chart
        self.chart_note.value = views.note_html(self._chart_note)

    _render_charts = _render_chart  # a new chart theme redraws the one chart (and its note)

    def _sorted_frame(self) -> Any:
        if self._sorted is None:
            self._sorted = data.sort_runs(self.frame, self.sort_by, self.ascending)
        return self._sorted

    def table_columns(self) -> list[tuple[str, str, bool]]:
        """(key, label, numeric) of the table's columns: run, status, duration, cell, then
        the chosen metric and param first among up to 6 metrics and 6 params (params that
        never vary are hidden unless ``all_params``)."""
        return data.table_columns(self.frame, self.metric, self.param, self.metrics, self.params, self.all_params)

    @staticmethod
    def _run_url() -> Any:
        """Runs link to their MLflow page when a UI is known (``%mlops ui``, a server)."""
        from mlops_jupyter.notebook.magics import ui

        base = ui.current_url()
        return (lambda rid: ui.run_url(rid, base)) if base else None

    def _render_table(self) -> None:
        cols = self.table_columns()
        rows = data.table_rows(self.page_rows, cols, self.best_run_id, run_url=self._run_url())
        with self.table.hold_sync():
            self.table.columns = [{"key": k, "label": label, "numeric": num} for k, label, num in cols]
            self.table.rows = rows
            self.table.caption = data.table_caption(
                self.page * self.page_size, len(rows), self.n_runs, self.sort_by, self.ascending
            )
        self.page_label.value = f"<span style='padding:0 8px'>page {self.page + 1} of {self.n_pages}</span>"
        self.prev_button.disabled = self.page <= 0
        self.next_button.disabled = self.page >= self.n_pages - 1

    def _render_controls(self) -> None:
        self.param_dropdown.disabled = self.view == "bar"
        self.clear_button.disabled = not self.selected
        self.report_button.disabled = self._selected_report() is None

    # -- reports -----------------------------------------------------------------------
    def _selected_report(self) -> tuple[str, str] | None:
        """(run id, HTML path) of the one selected run, if it is a report run."""
        return data.report_of(self.frame, self.selected)

    def on_report(self, callback: Any, remove: bool = False) -> None:
        """Call ``callback(panel, run_id, html_path)`` when a report is opened."""
        self._on("report", callback, remove)

    def open_report(self, run_id: str | None = None) -> None:
        """Show a report run's self-contained HTML below the table (default: the selected
        run). Reports come from ``mlops-jupyter report`` / ``%mlops report``; their runs carry
        the HTML's path in the tag ``mlops.report.path``."""
        try:
            if run_id is not None:
                self.select([run_id])
            picked = self._selected_report()
            if picked is None:
                raise ValueError("select one run that has a report (the 'report' column)")
            rid, path = picked
            with open(path, encoding="utf-8") as f:
                content = f.read()
        except Exception as exc:
            self.fail("open report", exc)
            return
        self.report_view.value = views.report_html(rid, path, content)
        self.show(f"report of run {rid} opened", "ok")
        self._fire("report", rid, path)

    # -- static view -------------------------------------------------------------------
    def static_html(self) -> str:
        return views.static_view(
            self._where(),
            self.summary.value,
            self._chart_note,
            self.chart.chart,
            self.page_rows,
            self.table_columns(),
            self.best_run_id,
            self.table.caption,
            run_url=self._run_url(),
        )

    def __repr__(self) -> str:
        return f"<ComparisonPanel {self._where()} runs={self.n_runs} metric={self.metric!r} view={self.view!r}>"
