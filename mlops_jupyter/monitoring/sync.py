"""Asking the home's gateway to write what it has buffered, before a monitoring read.

The gateway buffers the predictions it serves and writes them about once a second. So that
a read sees them at once, a reader first asks it to flush:

1. ``{home}/gateway.json`` (written by a running gateway, removed when it stops) names its
   ``pid``, ``host`` and ``port``. No file, or a ``pid`` that no longer exists (a gateway
   that was killed), means no gateway runs for the home: nothing to ask, nothing buffered.
2. ``POST /admin/flush`` with ``Authorization: Bearer <admin token>`` (the home's
   ``admin`` token) and body ``{}``. The gateway writes its buffer off its event loop and
   answers ``200 {"ok": true, "rows": n}`` once the rows are on disk.
3. Any other answer, or no answer within :data:`FLUSH_TIMEOUT` seconds, is a
   :class:`~mlops_jupyter.errors.GatewayError` naming the gateway's URL and the status:
   reading on would silently miss predictions the gateway has accepted.

It costs about a millisecond when a gateway runs and a file lookup when none does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mlops_jupyter.config.processes import pid_alive
from mlops_jupyter.errors import GatewayError

FLUSH_TIMEOUT = 5.0
"""Seconds to wait for the gateway's answer."""


def flush_gateway(home: str | os.PathLike[str], timeout: float = FLUSH_TIMEOUT) -> int | None:
    """Ask the gateway of ``home`` (if one runs) to write its buffered predictions now.

    Returns:
        The rows it wrote, or None when no gateway runs for the home.

    Raises:
        GatewayError: a gateway runs but answered non-2xx, or could not be reached
            (``.value`` is its URL; ``.reason`` is ``gateway_flush_failed`` or
            ``gateway_unreachable``).
    """
    from mlops_jupyter.deployment.targets.local_process import read_info

    info = read_info(home)
    if not info or not info.get("port") or not _process_exists(info.get("pid")):
        return None
    import http.client
    import json

    from mlops_jupyter.config.settings import connect_host
    from mlops_jupyter.deployment import tokens

    host = connect_host(info.get("host") or "")
    url = f"http://{host}:{info['port']}"
    try:
        conn = http.client.HTTPConnection(host, int(info["port"]), timeout=timeout)
        try:
            conn.request(
                "POST",
                "/admin/flush",
                body=b"{}",
                headers={"Authorization": f"Bearer {tokens.admin_token(home)}", "Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise GatewayError(
            f"The gateway of {Path(home)} at {url} (pid {info.get('pid')}) could not be reached "
            f"to flush its buffered predictions: {type(exc).__name__}: {exc}. If it is not running, "
            "`mlops-jupyter serve --stop` clears its gateway.json.",
            value=url,
            reason="gateway_unreachable",
        ) from exc
    if not 200 <= resp.status < 300:
        shown = body[:300].decode("utf-8", "replace")
        raise GatewayError(
            f"The gateway of {Path(home)} at {url} answered HTTP {resp.status} to POST /admin/flush: {shown}",
            value=url,
            reason="gateway_flush_failed",
        )
    try:
        rows = json.loads(body).get("rows")
    except (ValueError, AttributeError):
        rows = None
    return rows if isinstance(rows, int) else 0


def _process_exists(pid: Any) -> bool:
    """Whether a process ``pid`` exists (True when it cannot be told)."""
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return True  # no pid recorded: ask the port
    return pid <= 0 or pid_alive(pid)
