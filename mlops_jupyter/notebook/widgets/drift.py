"""DriftPanel: per-feature drift against the threshold, reference vs current distribution
of a chosen feature, latency and success rate over time, and the alert history."""

from __future__ import annotations

import html
import math
from contextlib import ExitStack
from typing import Any

import ipywidgets as widgets
from traitlets import Dict, Float, List, Unicode, observe, validate

from mlops_jupyter.monitoring.alerts.describe import delivery_text
from mlops_jupyter.notebook.widgets import charts, theme
from mlops_jupyter.notebook.widgets._base import Panel, PathLike, resolve_pipeline, split_positional
from mlops_jupyter.notebook.widgets._offline import chart_widget
from mlops_jupyter.notebook.widgets.static import chart_html, fmt, html_table, panel_html

#: Columns of the alert history table; ``delivery`` is the action's delivery as one line
#: (:func:`~mlops_jupyter.monitoring.alerts.describe.delivery_text`, as the sidebar shows it).
ALERT_COLUMNS = ("fired_at", "condition", "severity", "state", "action", "delivery", "resolved_at")
MAX_ALERTS = 50
#: Charts sit two abreast.
CHART_WIDTH = 400


def parse_window(text: Any) -> Any:
    """The window box's text as ``check_drift`` takes it: ``""`` -> None (the default),
    ``"5000"`` -> 5000 (the last N predictions), anything else (``"1h"``) as it is."""
    if text is None:
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    s = str(text).strip()
    if not s:
        return None
    return int(s) if s.isdigit() else s


_FREQS = (
    (1, "1s"),
    (2, "2s"),
    (5, "5s"),
    (10, "10s"),
    (15, "15s"),
    (30, "30s"),
    (60, "1min"),
    (120, "2min"),
    (300, "5min"),
    (600, "10min"),
    (900, "15min"),
    (1800, "30min"),
    (3600, "1h"),
    (7200, "2h"),
    (21600, "6h"),
    (43200, "12h"),
    (86400, "1D"),
    (604800, "7D"),
)
MAX_BUCKETS = 60


def auto_freq(window: Any) -> str:
    """A time bucket giving at most :data:`MAX_BUCKETS` points over ``check_drift``'s window
    (its ``start`` and ``end``); ``1min`` when they are unknown."""
    import pandas as pd

    try:
        span = (pd.Timestamp(window["end"]) - pd.Timestamp(window["start"])).total_seconds()
    except (TypeError, KeyError, ValueError):
        return "1min"
    if math.isnan(span) or span <= 0:  # a missing start or end, or an empty window
        return "1min"
    for seconds, freq in _FREQS:
        if span / seconds <= MAX_BUCKETS:
            return freq
    return _FREQS[-1][1]


def window_text(window: Any) -> str:
    """``check_drift``'s ``window`` (a dict: type, size or span, start, end) in words."""
    if not isinstance(window, dict):
        return str(window)
    if window.get("type") == "last":
        what = f"last {window.get('size'):,} predictions" if isinstance(window.get("size"), int) else "last predictions"
    else:
        what = f"last {window.get('span') or window.get('spec') or window.get('size') or ''}".strip()
    start, end = window.get("start"), window.get("end")
    if start and end:
        what += f" ({str(start)[:19].replace('T', ' ')} to {str(end)[:19].replace('T', ' ')} UTC)"
    return what


class DriftPanel(Panel):
    """Watch one model's drift, performance and alerts.

    Args:
        model_id: the tenant's model.
        pipeline: the pipeline to read through (default: one built from ``tenant_id``,
            ``mlflow_uri``, ``storage_path`` as the factories do).
        threshold: drift threshold (as ``check_drift``).
        window: the current window: None (the monitoring default), the last N
            predictions, or a span such as ``"1h"``.
        version: only predictions served by this version.
        freq: time bucket of the performance charts (``"1min"``, ``"1h"``...); ``"auto"``
            (default) picks one that gives at most 60 points over the window.

    Traits: ``model`` (the model id: ipywidgets owns ``model_id``),
    ``threshold``, ``window`` (text, as typed in its box),
    ``version``, ``feature`` (the one whose distribution is shown), ``freq``, ``result``
    (the last ``check_drift`` result), ``features`` (names, most drifted first),
    ``alerts``.

    Example:
        >>> panel = DriftPanel("ticket_classifier", pipeline=pipeline, threshold=0.1)
        >>> panel.result["drift_detected"], panel.features[:2]
        (True, ['message_length', 'priority'])
        >>> panel.feature = "priority"   # the distribution chart follows
    """

    model = Unicode()
    threshold = Float(0.1)
    window = Unicode("")
    version = Unicode(None, allow_none=True)
    feature = Unicode("")
    freq = Unicode("auto")
    result = Dict(allow_none=True, default_value=None, read_only=True)
    features = List(Unicode(), read_only=True)
    alerts = List(Dict(), read_only=True)

    def __init__(
        self,
        *args: Any,
        model_id: str | None = None,
        model: str | None = None,
        pipeline: Any = None,
        tenant_id: str | None = None,
        mlflow_uri: str | None = None,
        storage_path: PathLike | None = None,
        threshold: float = 0.1,
        window: Any = None,
        version: str | None = None,
        freq: str = "auto",
        drift: Any = None,
        **kw: Any,
    ) -> None:
        # DriftPanel("m"), DriftPanel(pipeline, "m"), DriftPanel(pipeline, model_id="m")
        pipeline, got = split_positional("DriftPanel", args, ("model_id",), {"model_id": model_id or model}, pipeline)
        model_id = got["model_id"]
        if kw:
            raise TypeError(f"DriftPanel() got unexpected arguments {sorted(kw)}")
        p = resolve_pipeline(pipeline, tenant_id=tenant_id, mlflow_uri=mlflow_uri, storage_path=storage_path)
        from mlops_jupyter.config.names import validate_model_id

        super().__init__(p)
        self._ready = False
        self.model = validate_model_id(model_id)
        self.threshold = threshold
        self.window = "" if window is None else str(window)
        self.version = version
        self.freq = freq
        self.reference: Any = None
        self.current: Any = None
        self.timeseries: Any = None
        self._errors: dict[str, str] = {}

        self.summary = widgets.HTML()
        self.performance_html = widgets.HTML()
        self.alerts_html = widgets.HTML()
        self.threshold_slider = widgets.FloatSlider(
            value=self.threshold,
            min=0.0,
            max=max(1.0, self.threshold),
            step=0.01,
            description="threshold",
            readout_format=".2f",
            continuous_update=False,
            layout=widgets.Layout(width="300px"),
        )
        self.window_text = widgets.Text(
            value=self.window,
            description="window",
            placeholder="last 1000 (default), 5000, 30m, 1h",
            continuous_update=False,
            layout=widgets.Layout(width="260px"),
        )
        self.feature_dropdown = widgets.Dropdown(
            description="distribution of", style={"description_width": "initial"}, layout=widgets.Layout(width="300px")
        )
        self.scores_chart = chart_widget()
        self.distribution_chart = chart_widget()
        self.timeline_chart = chart_widget()
        for c in (self.scores_chart, self.distribution_chart, self.timeline_chart):
            c.add_class("mlops-chart")
        self.children = [
            widgets.HBox([self.title, self.refresh_button], layout=widgets.Layout(justify_content="space-between")),
            self.summary,
            widgets.HBox([self.threshold_slider, self.window_text, self.feature_dropdown]),
            widgets.HBox([self.scores_chart, self.distribution_chart]),
            self.performance_html,
            # wraps rather than scrolls: a scrolling box with nothing focusable is out of keyboard reach
            widgets.HBox(
                [self.timeline_chart, self.alerts_html], layout=widgets.Layout(flex_flow="row wrap", overflow="visible")
            ),
            self.status,
        ]
        self.add_class("mlops-drift")
        widgets.link((self, "threshold"), (self.threshold_slider, "value"))
        widgets.link((self, "window"), (self.window_text, "value"))
        self.feature_dropdown.observe(self._feature_from_dropdown, "value")
        try:
            self._load(drift=drift)
        except Exception as exc:
            self.fail("load", exc)
        self._ready = True
        self._render()

    # -- loading -----------------------------------------------------------------------
    @property
    def monitoring(self) -> Any:
        return self.pipeline.monitoring

    def _call(self, part: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """One monitoring call; its error is kept for the status line, not raised, so the
        other parts of the panel still show."""
        try:
            out = fn(*args, **kwargs)
        except Exception as exc:
            self._errors[part] = f"{type(exc).__name__}: {exc}"
            return None
        self._errors.pop(part, None)
        return out

    def _load(self, drift: Any = None) -> None:
        from mlops_jupyter.monitoring.windows import parse_window as check_window

        self._errors = {}
        window = parse_window(self.window)
        if drift is None and self._call("window", check_window, window) is None:
            self.set_trait("result", None)  # a bad window is one error, not one per part
            return
        with ExitStack() as stack:  # the parts read the window once, at one moment
            if self._call("window", stack.enter_context, self.monitoring.snapshot()) is None:
                self.set_trait("result", None)  # the gateway could not write its buffer first
                return
            self._load_parts(drift, window)

    def _load_parts(self, drift: Any, window: Any) -> None:
        self._check(drift)
        data = self._call("distributions", self.monitoring.window_data, self.model, window=window, version=self.version)
        self.reference, self.current = data if data is not None else (None, None)
        freq = auto_freq((self.result or {}).get("window")) if self.freq == "auto" else self.freq
        self.timeseries = self._call(
            "performance over time", self.monitoring.timeseries, self.model, freq=freq, window=window
        )
        alerts = self._call("alerts", self.monitoring.alerts, self.model)
        self.set_trait("alerts", [dict(a) for a in (alerts or [])])

    def _check(self, drift: Any = None) -> None:
        result = (
            drift
            if drift is not None
            else self._call(
                "drift",
                self.monitoring.check_drift,
                self.model,
                threshold=self.threshold,
                window=parse_window(self.window),
                version=self.version,
            )
        )
        self.set_trait("result", dict(result) if result is not None else None)
        feats = list(((result or {}).get("features") or {}).keys())
        self.set_trait("features", feats)
        if self.feature not in feats:
            self.feature = feats[0] if feats else ""

    def _render_status(self) -> None:
        if self._errors:
            self.show("; ".join(f"{k}: {v}" for k, v in self._errors.items()), "error")
        elif self.error:
            self.show("", "info")

    # -- observers ---------------------------------------------------------------------
    @validate("threshold")
    def _check_threshold(self, proposal: Any) -> float:
        v = float(proposal["value"])
        if not v >= 0:  # as check_drift: a finite number >= 0
            from traitlets import TraitError

            raise TraitError(f"threshold must be a number >= 0, got {v}")
        slider = getattr(self, "threshold_slider", None)
        if slider is not None and v > slider.max:  # the slider grows rather than clamp the value
            slider.max = v
        return v

    def _feature_from_dropdown(self, change: Any) -> None:
        if change["new"] is not None and self._ready and not getattr(self, "_syncing", False):
            self.feature = change["new"]

    @observe("feature")
    def _feature_changed(self, change: Any) -> None:
        if self._ready:
            self._render_distribution()

    @observe("threshold")
    def _threshold_changed(self, change: Any) -> None:
        if self._ready:
            self._check()
            self._render()

    @observe("window", "version", "freq", "model")
    def _window_changed(self, change: Any) -> None:
        if self._ready:
            self.refresh()

    # -- rendering ---------------------------------------------------------------------
    def _render(self) -> None:
        from mlops_jupyter.notebook.magics import ui

        self.title.value = (
            f"<b style='font-size:14px'>Drift · {ui.model_link(self.pipeline, self.model)}</b> "
            f"<span style='color:{theme.MUTED}'>· tenant {html.escape(self.pipeline.settings.tenant)}</span>"
        )
        self._syncing = True
        try:
            self.feature_dropdown.options = list(self.features) or [""]
        finally:
            self._syncing = False
        self.feature_dropdown.value = self.feature if self.feature in self.features else (self.features or [""])[0]
        self.summary.value = self.summary_html()
        self.performance_html.value = self.performance_table()
        self.alerts_html.value = self.alerts_table()
        self._render_charts()
        self._render_status()

    def _render_charts(self) -> None:
        self.scores_chart.chart = self.build_scores_chart()
        self._render_distribution()
        self.timeline_chart.chart = self.build_timeline_chart()

    def _render_distribution(self) -> None:
        self.distribution_chart.chart = self.build_distribution_chart()

    def summary_html(self) -> str:
        r = self.result
        if not r:
            return "<i>no drift result</i>"
        detected = bool(r.get("drift_detected"))
        badge = (
            f"<b style='color:{charts.RED}'>drift detected</b>"
            if detected
            else f"<b style='color:{charts.GREEN}'>no drift</b>"
        )
        score, thr = r.get("drift_score"), r.get("threshold", self.threshold)
        parts = [badge, f"score <b>{fmt(score)}</b> vs threshold {fmt(thr)}"]
        feats = r.get("features") or {}
        n_drifted = sum(1 for f in feats.values() if f.get("drifted"))
        if feats:
            parts.append(f"{n_drifted} of {len(feats)} features drifted")
        parts.append(
            f"current {r.get('n_current', 0):,} vs reference {r.get('n_reference', 0):,} rows"
            if isinstance(r.get("n_current"), int) and isinstance(r.get("n_reference"), int)
            else ""
        )
        if r.get("reference_source"):
            parts.append(f"reference: {html.escape(str(r['reference_source']))}")
        if r.get("window") is not None:
            parts.append(f"window: {html.escape(window_text(r['window']))}")
        out = " · ".join(p for p in parts if p)
        if r.get("method"):
            out += f"<div style='color:{theme.MUTED}; font-size:11px'>{html.escape(str(r['method']))}</div>"
        if r.get("status") not in (None, "ok"):
            out += (
                f"<div style='color:{theme.WARN}'>{html.escape(str(r.get('status')))}: "
                f"{html.escape(str(r.get('reason') or ''))}</div>"
            )
        return out

    def build_scores_chart(self) -> Any:
        feats = (self.result or {}).get("features") or {}
        if not feats:
            status = (self.result or {}).get("status")
            why = "the check failed: see the status line" if self._errors else str(status or "not checked yet")
            return charts._empty(f"no drift scores ({why.replace('_', ' ')})")
        return charts.drift_scores(feats, (self.result or {}).get("threshold", self.threshold), width=CHART_WIDTH)

    def build_distribution_chart(self) -> Any:
        ref, cur, f = self.reference, self.current, self.feature
        if (
            not f
            or ref is None
            or cur is None
            or f not in getattr(ref, "columns", [])
            or f not in getattr(cur, "columns", [])
        ):
            return charts._empty("no distribution to show" + (f" for {f!r}" if f else ""))
        kind = ((self.result or {}).get("features") or {}).get(f, {}).get("kind")
        kind = {
            "numerical": "numeric",
            "number": "numeric",
            "categorical": "categorical",
            "category": "categorical",
            "numeric": "numeric",
        }.get(str(kind))
        return charts.distribution(ref[f], cur[f], feature=f, kind=kind, width=CHART_WIDTH)

    def build_timeline_chart(self) -> Any:
        return charts.performance_timeline(self.timeseries, width=CHART_WIDTH)

    def performance_table(self) -> str:
        pm = (self.result or {}).get("performance_metrics") or {}
        if not pm:
            return ""
        keys = (
            "prediction_count",
            "success_rate",
            "error_count",
            "avg_latency",
            "p50_latency",
            "p95_latency",
            "p99_latency",
        )
        header = ["version"] + [k.replace("_latency", " latency (ms)").replace("_", " ") for k in keys]

        def row(name: str, m: dict[str, Any]) -> list[Any]:
            out: list[Any] = [name]
            for k in keys:
                v = m.get(k)
                if k.endswith("latency") and isinstance(v, (int, float)):
                    v = v * 1000.0
                elif k == "success_rate" and isinstance(v, (int, float)):
                    v = f"{v:.2%}"
                out.append(v)
            return out

        rows = [row("all", pm)]
        for v, m in (pm.get("per_version") or {}).items():
            rows.append(row(str(v), m or {}))
        return html_table(rows, header, caption="performance in the window")

    def alerts_table(self) -> str:
        if not self.alerts:
            return f"<div style='color:{theme.MUTED}'><i>no alerts fired</i></div>"
        shown = self.alerts[:MAX_ALERTS]  # newest first, as monitoring.alerts() returns them
        rows = [[delivery_text(a) if c == "delivery" else a.get(c) for c in ALERT_COLUMNS] for a in shown]
        firing = [i for i, a in enumerate(shown) if a.get("state") in ("firing", "pending")]
        return html_table(
            rows,
            list(ALERT_COLUMNS),
            caption=f"alert history ({len(self.alerts)}, newest first)",
            highlight=firing,
            mark=theme.ALERT,
        )

    # -- static view -------------------------------------------------------------------
    def static_html(self) -> str:
        return panel_html(
            f"Drift · {self.model} · tenant {self.pipeline.settings.tenant}",
            [
                f"<div>{self.summary.value}</div>",
                chart_html(self.scores_chart.chart, "drift scores"),
                chart_html(self.distribution_chart.chart, f"distribution of {self.feature}"),
                self.performance_html.value,
                chart_html(self.timeline_chart.chart, "latency and success rate"),
                self.alerts_html.value,
                f"<div>{self.status.value}</div>" if self.error else "",
            ],
        )

    def __repr__(self) -> str:
        r = self.result or {}
        return (
            f"<DriftPanel {self.model!r} drift_detected={r.get('drift_detected')} "
            f"score={r.get('drift_score')} features={len(self.features)}>"
        )
