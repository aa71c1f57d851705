"""Connection balancing between workers (gateway.balance) when one worker's event loop stalls.

The end-to-end balancing (four connections piled on one worker end up two and two) is in
``test_hostile_clients.py``; here one worker's side runs against a real event loop in a
thread, which the test holds still for a whole window.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from mlops_jupyter.config.settings import GatewayLimits
from mlops_jupyter.gateway.balance import Balancer
from mlops_jupyter.gateway.http_state import HttpState


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def turned(loop: asyncio.AbstractEventLoop) -> None:
    """Return once the loop has run every callback posted before this call."""
    asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(10)


def busy_window(state: HttpState, n: int) -> None:
    """``n`` connections answered in the current window (as the loop counts them)."""
    state.window_busy += n


def test_a_worker_whose_loop_stalled_a_whole_window_publishes_no_count_and_sheds_nothing(loop):
    state = HttpState(GatewayLimits())
    state.loop = loop
    b = Balancer(state, interval=0.2)
    t = b.started
    busy_window(state, 4)
    b.roll(t + 0.2)  # the first window: the loop ran (nothing was posted before it)
    turned(loop)
    assert b.status()["busy"] == 4

    release = threading.Event()
    loop.call_soon_threadsafe(release.wait, 10)  # the loop stalls (a long pause, a blocking call)
    busy_window(state, 0)
    b.roll(t + 0.4)  # this window started while the loop still ran: its count stands
    assert b.status()["busy"] == 0
    b.roll(t + 0.6)  # a whole window without the loop running: no count, not 0
    assert b.status() == {"busy": None, "busy_from": t + 0.4}
    # the stalled worker decides nothing, and a peer leaves it out: 4 connections alone are
    # not over a fair share, where against a published 0 they were 2 over
    state.window_busy = 0
    assert b.decide({123: {"busy": 0, "busy_from": t + 0.6}}) == 0 and state.shed == 0
    peer = Balancer(HttpState(GatewayLimits()), interval=0.2)
    peer.busy, peer.busy_from = 4, t + 0.6
    assert peer.decide({456: b.status()}) == 0
    assert peer.decide({456: {"busy": 0, "busy_from": t + 0.6}}) == 2  # what a published 0 did

    release.set()
    turned(loop)  # the loop runs again, and the callback posted at the last window's start with it
    busy_window(state, 3)
    b.roll(t + 0.8)
    assert b.status()["busy"] == 3


def test_a_balancer_on_a_closed_loop_rolls_without_raising():
    state = HttpState(GatewayLimits())
    state.loop = asyncio.new_event_loop()
    state.loop.close()
    b = Balancer(state, interval=0.2)
    b.roll(time.monotonic())
    assert b.status()["busy"] == 0
