"""Self-contained HTML from an executed notebook: no CDN scripts, images inline.

nbconvert's ``lab`` template is used with ``embed_images`` (markdown images become data
URIs; outputs already are). Script and stylesheet tags that would fetch from the network
(require.js, MathJax, the widget manager, mermaid) are removed: widget outputs show their
static view (executed with ``store_widget_state=False``, so no widget state is embedded).
A failed report gets a banner at the top linking to the failing cell.
"""

from __future__ import annotations

import html as _html
import re
from typing import Any

_SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.S | re.I)
_REMOTE_LINK = re.compile(r"<link\b[^>]*\bhref=[\"']?(?:https?:)?//[^>]*>", re.I)
_REMOTE_SRC = re.compile(r"\bsrc=[\"']?(?:https?:)?//", re.I)
_REMOTE_BODY = re.compile(
    r"""(?:import\s[^;]*?from\s*["']https?://|import\(\s*["']https?://|["']https?://[^"']+\.m?js["']"""
    r"""|["']https?://(?:cdn\.|cdnjs\.|unpkg\.com|esm\.sh|[^"']*jsdelivr)|\brequire(?:js)?\.config\s*\()""",
    re.I,
)
BANNER_ID = "mlops-report-failed"


def strip_remote(html: str) -> str:
    """Remove every script or stylesheet that loads something from the network."""

    def keep(m: re.Match[str]) -> str:
        attrs, body = m.group(1), m.group(2)
        if _REMOTE_SRC.search(attrs) or _REMOTE_BODY.search(body):
            return ""
        return m.group(0)

    return _REMOTE_LINK.sub("", _SCRIPT.sub(keep, html))


def failure_banner(failure: dict[str, Any]) -> str:
    cell = failure.get("cell_index")
    ename = _html.escape(str(failure.get("ename", "Error")))
    evalue = _html.escape(str(failure.get("evalue", ""))[:500])
    return (
        f'<div id="{BANNER_ID}" class="mlops-report-banner" role="alert" style="background:#fde2e1;'
        'border:2px solid #c62828;color:#8e0000;padding:12px 16px;margin:8px;font:14px sans-serif">'
        f"<strong>Report failed</strong> at cell {cell}"
        + (f" (In [{failure['execution_count']}])" if failure.get("execution_count") else "")
        + " "
        f'(<a href="#mlops-failed-cell">jump to it</a>): {ename}: {evalue}</div>'
    )


def export_html(nb: Any, failure: dict[str, Any] | None = None, title: str | None = None) -> str:
    """The executed notebook as one self-contained HTML page."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", embed_images=True)
    resources = {"metadata": {"name": title or "report"}}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    body = strip_remote(body)
    if failure:
        body = re.sub(r"(<body\b[^>]*>)", lambda m: m.group(1) + failure_banner(failure), body, count=1, flags=re.I)
    return body
