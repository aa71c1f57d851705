"""Unread answers cost bounded memory (issue 12): the send timeout and the per-worker budget.

A client may ask for big answers (a 1M-row prediction is tens of MB) on many connections and
never read them. One gateway (one worker, an 8 MiB budget of unread answer bytes, a 2 s send
timeout) serves a model whose answers are 8 MiB each; the clients' sockets have small
receive buffers, so what they do not read stays in the gateway's write buffers.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import Http, gateway_home, path, split_body
from test_hostile_clients import ROW, head, rss_mb

from mlops_jupyter.deployment import tokens as auth

ANSWER_ROWS = 128
CELL = "x" * 65536
"""Each row's prediction: 128 rows answer 8 MiB (the log keeps references to one string)."""
BUDGET = 8 * 1024 * 1024
SEND_TIMEOUT_S = 2.0
CONNECTIONS = 20


class Wide:
    """A classifier whose every prediction is a 64 KiB string (big answers from small requests)."""

    def fit(self, X, y):
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        return self

    def predict(self, X):
        return np.full(len(X), CELL, dtype=object)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, template_db: Path):
    import cloudpickle
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.datasets import load_iris

    from mlops_jupyter import create_model_deployment, create_model_versioning

    class WideClassifier(Wide, ClassifierMixin, BaseEstimator):
        pass

    with pytest.MonkeyPatch.context() as mp, gateway_home(tmp_path_factory, template_db, "outbound") as home:
        for k, v in {
            "MLOPS_GATEWAY_WORKERS": "1",
            "MLOPS_GATEWAY_WRITE_BUFFER_BYTES": str(64 * 1024),
            "MLOPS_GATEWAY_MAX_OUTBOUND_BYTES": str(BUDGET),
            "MLOPS_GATEWAY_SEND_TIMEOUT": str(SEND_TIMEOUT_S),
            # glibc: every block of 1 MiB or more its own mapping, unmapped when freed (by default
            # the threshold rises to 32 MiB once such a block is freed, and freed heap memory stays
            # in the process), so that the gateway's RSS follows the answers it holds
            "MALLOC_MMAP_THRESHOLD_": str(1 << 20),
        }.items():
            mp.setenv(k, v)
        X, y = load_iris(return_X_y=True, as_frame=True)
        v = create_model_versioning(tenant_id="acme", storage_path=home)
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        try:
            v.create_version("wide", model=WideClassifier().fit(X, y))
        finally:
            cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        d = create_model_deployment(tenant_id="acme", storage_path=home)
        assert d.deploy_model("wide", "1.0.0")["status"] == "deployed"
        info = json.loads((home / "gateway.json").read_text())
        yield {"port": info["port"], "pid": info["pid"], "token": d.get_token(), "admin": auth.admin_token(home)}


def metrics(gw) -> dict[str, float]:
    c = Http(gw["port"], gw["admin"])
    status, _, text = c.call("GET", "/metrics")
    c.close()
    assert status == 200
    return {
        x.split()[0]: float(x.split()[-1])
        for x in text.splitlines()
        if x.startswith(("mlops_gateway_send_timeouts_total", "mlops_gateway_outbound_closed_total", "mlops_requests"))
    }


def flush(gw) -> None:
    """Write the buffered prediction log now (its records of 8 MiB answers cost memory while written)."""
    c = Http(gw["port"], gw["admin"])
    assert c.call("POST", "/admin/flush")[0] == 200
    c.close()


def answered(m: dict[str, float]) -> int:
    return int(sum(v for k, v in m.items() if k.startswith("mlops_requests_total")))


def reader(gw) -> socket.socket:
    """A connection whose client reads little: its receive buffer is small, so unread answers
    stay in the gateway (not in the kernel)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", gw["port"]))
    return s


def ask(gw, s: socket.socket, rows: int = ANSWER_ROWS) -> int:
    """Send one request whose answer is ``rows`` * 64 KiB (8 MiB); the answer's length."""
    body = json.dumps(split_body([ROW] * rows)).encode()
    s.sendall(head("POST", path(model="wide"), f"Authorization: Bearer {gw['token']}", f"Content-Length: {len(body)}"))
    s.sendall(body)
    return len(b'{"predictions": []}') + rows * (len(CELL) + 2) + (rows - 1) * 2


def read_answer(s: socket.socket, timeout: float, got: bytes = b"") -> tuple[int, bool]:
    """(body bytes read, whether the connection was closed before the whole answer); ``got``:
    what was read of it already."""
    s.settimeout(timeout)
    while True:
        try:
            chunk = s.recv(1 << 20)
        except (ConnectionResetError, TimeoutError):
            chunk = b""
        if not chunk:
            return len(got), True
        got += chunk
        head_end = got.find(b"\r\n\r\n")
        if head_end >= 0:
            length = int(got[:head_end].split(b"Content-Length: ")[1].split(b"\r\n")[0])
            if len(got) >= head_end + 4 + length:
                return length, False


def test_unread_answers_past_the_budget_close_the_biggest_holders_and_memory_stays_bounded(gw):
    base = metrics(gw)
    socks = [reader(gw) for _ in range(CONNECTIONS)]
    try:
        size = 0
        for s in socks:  # answered one after another, so what is measured is what stays
            size = ask(gw, s)
            s.recv(1, socket.MSG_PEEK)  # its answer is written (whole, into the gateway's buffer)
        m = metrics(gw)
        closed = int(m["mlops_gateway_outbound_closed_total"] - base.get("mlops_gateway_outbound_closed_total", 0))
        # 20 answers of 8 MiB unread would be 160 MiB; the budget keeps 8 MiB of them (part of
        # each answer waits in the kernel's socket buffers, so more than one is kept)
        assert answered(m) == answered(base) + CONNECTIONS
        assert CONNECTIONS // 2 <= closed < CONNECTIONS, (closed, size)
        t = time.monotonic()
        fresh = Http(gw["port"])
        assert fresh.call("GET", "/ping")[0] == 200 and time.monotonic() - t < 1.0
        fresh.close()
        # the memory the gateway holds for these clients: its RSS now, less once every answer
        # is read (the prediction log written both times: its records of 8 MiB answers cost
        # memory of their own, kept by the allocator)
        flush(gw)
        held = rss_mb(gw["pid"])
        outcomes = [read_answer(s, 10) for s in socks]
        flush(gw)
        held -= rss_mb(gw["pid"])
        assert held < 8 + 24, f"the gateway held {held:.0f} MB of unread answers"
        # the connections kept got their whole answer once they read (unless the send timeout
        # closed them while the others were read); the others were cut
        m = metrics(gw)
        timed_out = m["mlops_gateway_send_timeouts_total"] - base.get("mlops_gateway_send_timeouts_total", 0)
        assert sum(cut for _, cut in outcomes) == closed + timed_out, outcomes
        assert all(n == size for n, cut in outcomes if not cut), outcomes
    finally:
        for s in socks:
            s.close()


def test_a_connection_whose_answers_drain_nothing_is_closed_after_the_send_timeout(gw):
    base = metrics(gw).get("mlops_gateway_send_timeouts_total", 0)
    # 4 MiB answers: more than the kernel's socket buffers take, under the budget together
    with reader(gw) as idle, reader(gw) as slow:
        size = ask(gw, idle, ANSWER_ROWS // 2)
        ask(gw, slow, ANSWER_ROWS // 2)
        t = time.monotonic()
        got = b""
        # the slow client reads a little every 0.2 s: it drains, so it is kept past the timeout
        while time.monotonic() - t < SEND_TIMEOUT_S * 2.5:
            got += slow.recv(16384)
            time.sleep(0.2)
        # the idle one read nothing: closed (its 4 MiB freed) after the timeout, and counted
        n, cut = read_answer(idle, 10)
        assert cut and n < size
        assert metrics(gw)["mlops_gateway_send_timeouts_total"] == base + 1
        n, cut = read_answer(slow, 10, got)
        assert not cut and n == size
