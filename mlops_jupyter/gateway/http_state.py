"""What all connections of one gateway process share: limits, the body budget, the timeout
sweep, the connection count and the accept-error log (see :mod:`.http` for the protocol).

Timeouts are checked by one sweep of all connections a few times per timeout (each
connection keeps a ``deadline`` and an ``expire()``), not by a timer per request. Accept
errors (EMFILE, ENFILE...) reach the loop's exception handler once per failed accept
(asyncio then pauses accepting for a second); they are counted and logged once per
``accept_error_interval`` with their count, never one traceback per attempt. The ``Date``
header every answer carries (RFC 9110 6.6.1) is formatted by the same sweep, not per answer.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from mlops_jupyter.config.settings import GatewayLimits

if TYPE_CHECKING:
    from mlops_jupyter.gateway.http import HttpConnection

log = logging.getLogger("mlops_jupyter.gateway")

FD_RESERVE = 64
"""File descriptors kept free of connections (logs, the state DB, model files...)."""
OVERFLOW_MAX = FD_RESERVE // 2
"""Connections over ``max_connections`` answered 503 at once (each holds its descriptor
while it lingers); past this, one more is closed without an answer."""


def effective_max_connections(limits: GatewayLimits) -> int:
    """``limits.max_connections``, or by default 4096 capped to the open-file limit minus a reserve.

    An explicit setting is taken as is (a warning is logged if the file limit is lower).
    """
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    room = max(soft - FD_RESERVE, 16) if soft != resource.RLIM_INFINITY else 1 << 20
    if limits.max_connections is None:
        return min(4096, room)
    if limits.max_connections > room:
        log.warning(
            "gateway: max_connections %d is above the open-file limit (%s) minus %d; accepts may fail",
            limits.max_connections,
            soft,
            FD_RESERVE,
        )
    return limits.max_connections


class HttpState:
    """What all connections of one gateway share: limits, the body budget, the sweep, accept errors."""

    def __init__(self, limits: GatewayLimits) -> None:
        self.limits = limits
        self.max_connections = effective_max_connections(limits)
        self.inflight_body = 0
        self.active = 0
        self.overflow = 0  # connections over the cap being answered 503 (see OVERFLOW_MAX)
        self.overflow_closed = 0  # connections over the cap closed without an answer
        self.loop: asyncio.AbstractEventLoop | None = None
        self.accept_errors = 0
        self.accept_errors_logged_at = 0.0
        self._sweeper: asyncio.TimerHandle | None = None
        self._default_handler: Any = None
        self.sweep_every = max(0.05, min(1.0, limits.header_timeout / 4, limits.idle_timeout / 4))
        self.date = b""
        self._date_at = 0
        self.update_date()

    def update_date(self) -> None:
        """Format the ``Date`` header line once per second (its resolution), not per answer."""
        now = int(time.time())
        if now != self._date_at:
            self._date_at = now
            self.date = b"Date: %s\r\n" % formatdate(now, usegmt=True).encode()

    def attach(self, loop: asyncio.AbstractEventLoop, conns: set[HttpConnection]) -> None:
        """Start the timeout sweep and the accept-error filter on ``loop`` (once)."""
        if self.loop is loop:
            return
        self.loop = loop
        self.update_date()
        self._default_handler = loop.get_exception_handler()
        loop.set_exception_handler(self._exception)
        self._sweeper = loop.call_later(self.sweep_every, self._sweep, conns)

    def _exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Count accept errors (EMFILE...) and log them once per interval; pass the rest on."""
        if str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            self.accept_errors += 1
            now = time.monotonic()
            if now - self.accept_errors_logged_at >= self.limits.accept_error_interval:
                exc = context.get("exception")
                log.error(
                    "gateway: %d accept(s) refused by the system in the last %.0f s (%s); %d connections open",
                    self.accept_errors,
                    self.limits.accept_error_interval,
                    exc,
                    self.active,
                )
                self.accept_errors = 0
                self.accept_errors_logged_at = now
            return
        if self._default_handler is not None:
            self._default_handler(loop, context)
        else:
            loop.default_exception_handler(context)

    def _sweep(self, conns: set[HttpConnection]) -> None:
        loop = self.loop
        self.update_date()
        now = loop.time()
        for c in [c for c in conns if c.deadline <= now]:
            c.expire()
        self._sweeper = loop.call_later(self.sweep_every, self._sweep, conns)

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
