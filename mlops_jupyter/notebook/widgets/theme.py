"""Colours of the panels as JupyterLab CSS variables, and matching altair themes.

Every colour a panel's HTML uses is a ``var(--jp-...)`` with a light fallback (for
nbviewer, GitHub or an HTML report, where JupyterLab's variables do not exist), so the
panels follow JupyterLab's light and dark themes. Highlighted rows mix the accent into the
page's own background (``color-mix``), so their text keeps the theme's contrast: a light
tint under dark text in the light theme, a dark tint under light text in the dark one.

Charts are drawn by Vega, which cannot read CSS variables: :func:`set_theme` picks the
altair theme (``mlops-light`` or ``mlops-dark``: transparent background, text and grid in
the theme's colours). The JupyterLab extension calls it when the lab's theme changes, and
sets ``$MLOPS_CHART_THEME`` (``light``/``dark``) in every kernel it connects to, so the first
panel of a kernel started under JupyterLab Dark is dark from its first chart. A change of
theme redraws the charts of every live panel of the kernel (published on :mod:`._bus`).
Panel charts are always serialised under the panel theme (:func:`applied`), whatever altair
theme the notebook's own charts use (:func:`enable` gives them the panel theme, if wanted).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mlops_jupyter.notebook.widgets import _bus

TEXT = "var(--jp-ui-font-color1, #1f1f1f)"
MUTED = "var(--jp-ui-font-color2, #616161)"
BORDER = "var(--jp-border-color2, #e0e0e0)"
BORDER_STRONG = "var(--jp-border-color1, #bdbdbd)"
BACKGROUND = "var(--jp-layout-color0, #ffffff)"
HOVER = "var(--jp-layout-color2, #eeeeee)"
LINK = "var(--jp-content-link-color, #1976d2)"
OK = "var(--jp-success-color0, #2e7d32)"
WARN = "var(--jp-warn-color0, #b26a00)"
ERROR = "var(--jp-error-color1, #c62828)"


def tint(accent: str, percent: int = 22) -> str:
    """A row background: ``accent`` mixed into the page background (keeps text contrast)."""
    return f"color-mix(in srgb, {accent} {percent}%, {BACKGROUND})"


#: The best run, the live version.
HIGHLIGHT = tint("var(--jp-warn-color1, #ff9800)")
#: Selected runs.
SELECTED = tint("var(--jp-brand-color1, #2196f3)")
#: The live version of a model.
LIVE = tint("var(--jp-success-color1, #4caf50)")
#: A fired alert.
ALERT = tint("var(--jp-error-color1, #f44336)")

_PALETTES = {
    "light": {"text": "#1f1f1f", "muted": "#616161", "grid": "#e0e0e0", "domain": "#9e9e9e", "paper": "#ffffff"},
    "dark": {"text": "#e0e0e0", "muted": "#bdbdbd", "grid": "#424242", "domain": "#757575", "paper": "#111111"},
}
_current = os.environ.get("MLOPS_CHART_THEME", "light") if os.environ.get("MLOPS_CHART_THEME") in _PALETTES else "light"


def chart_config(name: str) -> dict[str, Any]:
    """The altair theme ``mlops-<name>``: a transparent background and the theme's colours.

    >>> chart_config("dark")["config"]["axis"]["labelColor"]
    '#e0e0e0'
    """
    p = _PALETTES[name]
    return {
        "config": {
            "background": "transparent",
            "view": {"stroke": "transparent"},
            "axis": {
                "labelColor": p["text"],
                "titleColor": p["text"],
                "gridColor": p["grid"],
                "domainColor": p["domain"],
                "tickColor": p["domain"],
            },
            "legend": {"labelColor": p["text"], "titleColor": p["text"]},
            "title": {"color": p["text"], "subtitleColor": p["muted"]},
            "text": {"color": p["text"]},
        }
    }


def paper() -> str:
    """The background of a static chart (an SVG image has no page colour to inherit)."""
    return _PALETTES[_current]["paper"]


def current() -> str:
    """The chart theme in use: ``light`` or ``dark``."""
    return _current


def set_theme(name: str) -> str:
    """Use the ``light`` or ``dark`` chart theme from now on; when that is a change, every
    live panel of the kernel redraws its charts at once (only its charts: its data and
    selections stay). The lab extension calls this after every cell, so an unchanged theme
    redraws nothing.

    Raises:
        ValidationError: another name.
    """
    global _current
    if name not in _PALETTES:
        from mlops_jupyter.errors import ValidationError

        raise ValidationError(f"Unknown chart theme {name!r}.", value=name, allowed=sorted(_PALETTES))
    changed, _current = name != _current, name
    if changed:
        _bus.publish(_bus.CHART_THEME)
    return name


@functools.cache
def _register() -> None:
    """Register the panel themes with altair, once per process (``alt.theme.names()``
    reads the installed packages' entry points each time: ~27 ms a call)."""
    import altair as alt

    names = alt.theme.names()
    for n in _PALETTES:
        if f"mlops-{n}" not in names:
            alt.theme.register(f"mlops-{n}", enable=False)(lambda n=n: chart_config(n))


def enable() -> None:
    """Turn the current panel theme on for the notebook's own altair charts too (opt-in:
    panels never change the altair theme the notebook uses; idempotent)."""
    import altair as alt

    _register()
    alt.theme.enable(f"mlops-{_current}")


_APPLY_LOCK = threading.RLock()


@contextmanager
def applied() -> Iterator[None]:
    """The current panel theme in force while a panel chart becomes a Vega-Lite spec; the
    altair theme in use before (the notebook's own, e.g. ``alt.theme.enable("dark")``)
    comes back afterwards. Panels refresh in threads too, hence the lock."""
    import altair as alt

    with _APPLY_LOCK:
        _register()
        with alt.theme.enable(f"mlops-{_current}"):
            yield
