"""Live charts with no network: ``altair.JupyterChart`` on vl-convert's Vega bundle.

``JupyterChart`` (an anywidget) imports vega-embed from a CDN unless
``JupyterChart.enable_offline()`` swaps its module for a self-contained bundle built by
vl-convert. Building it takes about 2 s, so the bundle is cached on disk per altair and
vl-convert version (``$XDG_CACHE_HOME/mlops-jupyter``, else ``~/.cache/mlops-jupyter``);
later kernels read it in milliseconds. Any problem with the cache falls back to
``enable_offline()``.
"""

from __future__ import annotations

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


def chart_widget(chart: Any = None) -> Any:
    """A ``JupyterChart`` for ``chart`` that renders offline, without vega-embed's actions
    menu (its links lead to the network)."""
    import altair as alt

    ensure_offline()
    return alt.JupyterChart(chart, embed_options={"actions": False})
