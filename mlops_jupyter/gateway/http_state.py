"""What all connections of one gateway process share: limits, the body budget, the timeout
sweep, the connection count, the budget of unread answers and the accept-error log (see
:mod:`.http` for the protocol).

Timeouts are checked by one sweep of all connections a few times per timeout (each
connection keeps a ``deadline`` and an ``expire()``), not by a timer per request. Accept
errors (EMFILE, ENFILE...) reach the loop's exception handler once per failed accept
(asyncio then pauses accepting for a second); they are counted and logged once per
``accept_error_interval`` with their count, never one traceback per attempt. The ``Date``
header every answer carries (RFC 9110 6.6.1) is formatted by the same sweep, not per answer.

Unread answers: a connection whose unsent answers pass ``write_buffer_bytes`` is paused
(:meth:`HttpState.hold`; below that mark an answer costs nothing here, so the hot path of small
answers is untouched). A paused connection that drains nothing for ``send_timeout`` seconds is
closed (checked by the sweep, counting the bytes still in the kernel's send queue too: a
client reading slowly drains those long before the gateway's buffer moves); and the paused
connections' unsent bytes together are kept under ``max_outbound_bytes``: when a new one
passes it, those holding the most are closed first until under it. (Connections under the
mark hold less than ``write_buffer_bytes`` each, at most ``max_connections`` of them; what the
kernel's socket buffers take is not the process' memory.) Both are counted (``/metrics``) and logged once per
``accept_error_interval`` with their count.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import resource
import struct
import termios
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


def unsent_bytes(transport: Any) -> int:
    """The bytes ``transport`` has not delivered: in its buffer and in the kernel's send queue
    (``SIOCOUTQ``: sent but not acknowledged, or not sent yet; 0 where it is not available)."""
    n = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    try:
        return n + struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except (AttributeError, OSError):
        return n


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


class Throttled:
    """A warning counted per event and logged at most once per ``interval`` seconds, with the count."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.count = 0
        self.logged_at = 0.0

    def add(self, n: int, fmt: str, *args: Any) -> None:
        """Count ``n`` events; log ``fmt % (count, interval, *args)`` if the interval has passed."""
        self.count += n
        now = time.monotonic()
        if now - self.logged_at >= self.interval:
            log.error(fmt, self.count, self.interval, *args)
            self.count = 0
            self.logged_at = now


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
        self.accept_errors = Throttled(limits.accept_error_interval)
        self.held: set[HttpConnection] = set()  # connections paused on unread answers (see hold)
        self.send_timeout = min(limits.send_timeout, limits.idle_timeout)
        self.send_timeouts = 0  # connections closed for draining nothing within send_timeout
        self.outbound_closed = 0  # connections closed past max_outbound_bytes
        self.closes = Throttled(limits.accept_error_interval)
        # connection balancing (see .balance): the connections answered in the current window
        # and still open (each marks itself with the window's number), and how many to close
        # after their next answer (set by the agent thread, taken by the loop)
        self.window = 0
        self.window_busy = 0
        self.shed = 0
        self.rebalanced = 0  # connections closed that way
        self._sweeper: asyncio.TimerHandle | None = None
        self._default_handler: Any = None
        self.sweep_every = max(0.05, min(1.0, limits.header_timeout / 4, self.send_timeout / 4))
        self.date = b""
        self._date_at = 0
        self.update_date()

    def roll_window(self) -> int:
        """Start a new balancing window; returns the busy connections of the one ending: those
        answered in it and still open. (Called by the agent thread: an answer counted at the
        same instant may land in either window.)"""
        busy = max(0, self.window_busy)
        self.window += 1
        self.window_busy = 0
        return busy

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
            self.accept_errors.add(
                1,
                "gateway: %d accept(s) refused by the system in the last %.0f s (%s); %d connections open",
                context.get("exception"),
                self.active,
            )
            return
        if self._default_handler is not None:
            self._default_handler(loop, context)
        else:
            loop.default_exception_handler(context)

    def hold(self, conn: HttpConnection) -> None:
        """``conn``'s unsent answers passed ``write_buffer_bytes``: count it among the held ones and,
        if they hold more than ``max_outbound_bytes`` together, close those holding the most
        (aborted: their unsent answers are freed at once) until under it."""
        self.held.add(conn)
        sizes = [(c.transport.get_write_buffer_size(), c) for c in self.held if c.transport is not None]
        total = sum(n for n, _ in sizes)
        budget = self.limits.max_outbound_bytes
        if total <= budget:
            return
        sizes.sort(key=lambda x: x[0], reverse=True)
        cut = 0
        for n, c in sizes:
            if total <= budget:
                break
            total -= n
            cut += 1
            self.held.discard(c)
            c.transport.abort()
        self.outbound_closed += cut
        self.closes.add(
            cut,
            "gateway: %d connection(s) closed in the last %.0f s holding unread answers past the %d-byte budget "
            "(%d bytes held now)",
            budget,
            total,
        )

    def send_timed_out(self, conn: HttpConnection) -> None:
        """Close ``conn``: its unread answers drained nothing for ``send_timeout`` seconds."""
        self.send_timeouts += 1
        self.held.discard(conn)
        conn.transport.abort()
        self.closes.add(
            1,
            "gateway: %d connection(s) closed in the last %.0f s: unread answers drained nothing in %g s",
            self.send_timeout,
        )

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
