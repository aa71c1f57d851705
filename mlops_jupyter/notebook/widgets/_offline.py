"""Live charts with no network: ``altair.JupyterChart`` on vl-convert's Vega bundle.

``JupyterChart`` (an anywidget) imports vega-embed from a CDN unless
``JupyterChart.enable_offline()`` swaps its module for a self-contained bundle built by
vl-convert. Building it takes about 2 s, so the bundle is cached on disk per altair and
vl-convert version (``$XDG_CACHE_HOME/mlops-jupyter``, else ``~/.cache/mlops-jupyter``);
later kernels read it in milliseconds. Any problem with the cache falls back to
``enable_offline()``.

A panel's chart widget turns every chart it is given into a spec under the panel theme
(:func:`.theme.applied`): dark charts in JupyterLab Dark from the first one, with no
white Vega-Lite background, whatever altair theme the notebook's own charts use.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_LOCK = threading.Lock()


def _cache_file() -> Path:
    import altair
    import vl_convert

    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlops-jupyter"
    return root / f"jupyterchart-altair{altair.__version__}-vlc{vl_convert.__version__}.js"


def ensure_offline() -> None:
    """Make every ``altair.JupyterChart`` load Vega from the bundle, not from a CDN."""
    import altair as alt

    cls = alt.JupyterChart
    if getattr(cls, "_is_offline", False):
        return
    with _LOCK:
        if getattr(cls, "_is_offline", False):
            return
        try:
            path = _cache_file()
            if path.is_file() and path.stat().st_size > 100_000:
                cls._esm = path.read_text(encoding="utf-8")
                cls._is_offline = True
                return
        except Exception as exc:  # pragma: no cover - a broken cache only costs time
            log.debug("mlops_jupyter: offline chart bundle cache unreadable: %s", exc)
        cls.enable_offline()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(cls._esm, encoding="utf-8")
            os.replace(tmp, path)
        except Exception as exc:  # pragma: no cover - read-only home: rebuild next time
            log.debug("mlops_jupyter: could not cache the offline chart bundle: %s", exc)


@functools.cache
def _panel_chart_class() -> type:
    import altair as alt
    import traitlets

    from mlops_jupyter.notebook.widgets import theme

    class PanelChart(alt.JupyterChart):
        """A ``JupyterChart`` whose spec always carries the panel theme."""

        #: The panel theme its spec was made in.
        drawn_in = ""

        @traitlets.observe("chart")
        def _on_change_chart(self, change: Any) -> None:
            with theme.applied():
                super()._on_change_chart(change)
                self.drawn_in = theme.current()

        def follow_theme(self) -> bool:
            """Make the spec again if it was made in another theme (True when it was).
            Assigning a chart equal to the one shown sends nothing, hence this."""
            if self.chart is None or self.drawn_in == theme.current():
                return False
            self._on_change_chart(traitlets.Bunch(name="chart", old=self.chart, new=self.chart, owner=self))
            return True

    return PanelChart


def chart_widget(chart: Any = None) -> Any:
    """A ``JupyterChart`` for ``chart`` that renders offline, in the panel theme, without
    vega-embed's actions menu (its links lead to the network)."""
    ensure_offline()
    return _panel_chart_class()(chart, embed_options={"actions": False})
