"""Keep-alive connections spread evenly over the serving workers.

The workers share the port with ``SO_REUSEPORT``: the kernel hands each new connection to
one of them by a hash of its addresses, whatever their load. A client pool of 8 keep-alive
connections lands 4/4 on two workers only 27 % of the time, and 6/2 or worse 29 %; then one
worker's core does most of the work while the other waits (measured with the serving
benchmark's model: 8 600-10 650 requests/s on 6/2 and 7/1 splits, 11 750-13 060 on 4/4). A
worker restarted after a crash gets no connection at all until clients open new ones.

So each worker counts its *busy* connections, those it answered during the last window of
``MLOPS_GATEWAY_BALANCE_INTERVAL`` seconds and that are still open (idle ones cost nothing,
so they do not count).
Its agent (:class:`~.cluster.Agent`) publishes the count in the worker's status file and
reads the other live workers' counts. A worker holding more than its share,
``ceil(total / live workers)``, closes the excess after their next answer
(``Connection: close``, RFC 9112 9.6): the clients open new connections, which the kernel
hashes anew, so a few windows level the workers. Never closed that way: a connection with
a request behind the answer (pipelined or partly received), which would lose it.

A worker decides again only once every peer has published a window that started after its
last decision, so nobody acts on counts taken before the clients reconnected (which would
close more than the excess, back and forth). A worker whose event loop did not run during
a whole window (stalled: a long pause of the process, a blocking call) publishes no count
instead of its 0 answers, and decides nothing: the others would otherwise take it for idle
and close their connections towards it, where the clients' new connections would wait.
Closed connections are counted (``mlops_gateway_connections_rebalanced_total``);
``MLOPS_GATEWAY_BALANCE_INTERVAL=0`` turns this off.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_jupyter.gateway.http_state import HttpState


def excess(own: int, others: Iterable[int]) -> int:
    """How many of its ``own`` busy connections a worker should close, given the other
    workers' counts: what it holds over ``ceil(total / workers)``.

    >>> excess(6, [2])
    2
    >>> excess(5, [3])
    1
    >>> excess(4, [3])  # 7 over 2 workers: 4 is a fair share
    0
    >>> excess(9, [])  # alone
    0
    >>> excess(3, [0, 0, 0])
    2
    """
    counts = [own, *others]
    fair = -(-sum(counts) // len(counts))
    return max(0, own - fair)


class Balancer:
    """A worker's side of the balancing (module docstring); run by its agent thread.

    Args:
        state: the worker's :class:`~.http_state.HttpState` (its connections count their
            answers in ``state.window``; the loop closes ``state.shed`` of them).
        interval: seconds per window (``MLOPS_GATEWAY_BALANCE_INTERVAL``).
    """

    def __init__(self, state: HttpState, interval: float) -> None:
        self.state = state
        self.interval = interval
        self.started = time.monotonic()  # the current window's start (monotonic: one clock for all processes)
        self.busy: int | None = 0  # busy connections in the last complete window (None: the loop stalled)
        self.busy_from = self.started  # when that window started
        self.decided = 0.0  # when this worker last asked to close connections
        # a callback numbered ``pinged`` is posted to the loop at each window's start; the loop
        # notes the number of the last one it ran in ``ponged``
        self.pinged = self.ponged = 0

    def due(self, now: float) -> bool:
        return now - self.started >= self.interval

    def roll(self, now: float) -> None:
        """End the current window: its busy count becomes the published one, or None when the
        loop did not run the callback posted at the window's start (it stalled all along)."""
        alive = self.ponged == self.pinged
        busy = self.state.roll_window()
        self.busy, self.busy_from = (busy if alive else None), self.started
        self.started = now
        loop = self.state.loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._pong, self.pinged + 1)
                self.pinged += 1
            except RuntimeError:  # the loop closed: the worker is stopping
                pass

    def _pong(self, n: int) -> None:
        self.ponged = n

    def status(self) -> dict[str, Any]:
        """What the worker's status file says of it (see :meth:`decide`)."""
        return {"busy": self.busy, "busy_from": self.busy_from}

    def decide(self, peers: Mapping[int, Mapping[str, Any]]) -> int:
        """Ask the loop to close this worker's excess (``state.shed``), from the live peers'
        statuses; returns the number asked. Peers without a count (stalled, or a worker of an
        older version) are left out; nothing is decided while this worker is stalled, nor while
        a peer's or this worker's count may predate the last decision."""
        counts = []
        for st in peers.values():
            busy, since = st.get("busy"), st.get("busy_from")
            if not isinstance(busy, int) or not isinstance(since, (int, float)):
                continue
            if since <= self.decided:
                return 0
            counts.append(busy)
        if not counts or self.busy is None or self.busy_from <= self.decided:
            return 0
        n = excess(self.busy, counts)
        self.state.shed = n
        if n:
            self.decided = time.monotonic()
        return n
