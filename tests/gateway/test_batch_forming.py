"""How a micro-batch is formed: after the event loop's next poll for input.

The gateway runs here in the test process (its event loop in a thread, on a port of
127.0.0.1), so the test can hold the loop inside the turn that read a first request, send
the other requests meanwhile, and let it go on: the race a busy worker meets all the time
(the others arrive while it handles the first), made deterministic.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import termios
import threading
import time

from conftest import Http, gateway_in_process, path, split_body

CLIENTS = 8


def waiting(sock) -> int:
    """Bytes received on a socket and not read yet."""
    buf = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, buf)
    return buf[0]


def test_requests_sent_while_the_loop_handles_the_first_join_its_batch(home, iris):
    """A batch is cut after the loop's next poll, so what the other connections sent while
    it handled the first request is read into the same ``predict`` call. Cut in the next
    turn before its reads (``call_soon``), the first request went alone: 2 calls, not 1."""
    from sklearn.linear_model import LogisticRegression

    from mlops_jupyter import create_model_versioning
    from mlops_jupyter.config.settings import resolve_settings
    from mlops_jupyter.deployment.deployment import ModelDeployment
    from mlops_jupyter.gateway.http import HttpConnection
    from mlops_jupyter.gateway.target import InProcessTarget

    X, y = iris
    model = LogisticRegression(max_iter=500).fit(X, y)
    create_model_versioning(tenant_id="acme", storage_path=home).create_version("iris", model=model, reference_data=X)
    clients: list[Http] = []
    with gateway_in_process(home) as gw:
        loop = gw.loop
        server = asyncio.run_coroutine_threadsafe(
            loop.create_server(lambda: HttpConnection(gw), "127.0.0.1", 0), loop
        ).result(10)
        try:
            port = server.sockets[0].getsockname()[1]
            gw.info = {"url": f"http://127.0.0.1:{port}", "port": port, "host": "127.0.0.1"}
            d = ModelDeployment(resolve_settings(tenant_id="acme", storage_path=home), target=InProcessTarget(gw))
            assert d.deploy_model("iris", "1.0.0", "production")["status"] == "deployed"
            token = d.get_token()
            clients = [Http(port, token) for _ in range(CLIENTS)]
            bodies = [split_body([row]) for row in X.to_numpy()[:CLIENTS].round(1).tolist()]
            for c, body in zip(clients, bodies):  # every connection accepted, the version warm
                assert c.call("POST", path("iris"), body)[0] == 200
            stats = next(s for k, s in gw.stats.items() if k.model_id == "iris")

            def counts() -> tuple[int, int]:
                """Read on the loop: an answer is sent before its predict call is counted."""

                async def read() -> tuple[int, int]:
                    return stats.executions, stats.requests

                return asyncio.run_coroutine_threadsafe(read(), loop).result(10)

            calls0, requests0 = counts()

            first_read, others_sent = threading.Event(), threading.Event()
            mark = gw._mark

            def hold_after_the_first(lv):  # runs on the loop, in the turn that read the request
                mark(lv)
                if not first_read.is_set():
                    first_read.set()
                    others_sent.wait(30)

            gw._mark = hold_after_the_first
            clients[0].send("POST", path("iris"), bodies[0])
            assert first_read.wait(30), "the gateway never read the first request"
            for c, body in zip(clients[1:], bodies[1:]):
                c.send("POST", path("iris"), body)
            # wait until the gateway's side of every connection holds its request (the loop
            # is held, so the bytes wait in the sockets; FIONREAD counts them)
            socks = [conn.transport.get_extra_info("socket") for conn in list(gw.connections)]
            deadline = time.monotonic() + 30
            while sum(waiting(sock) > 0 for sock in socks) < CLIENTS - 1:
                assert time.monotonic() < deadline, [waiting(sock) for sock in socks]
                time.sleep(0.01)
            others_sent.set()
            answers = [c.receive() for c in clients]
            assert [status for status, _, _ in answers] == [200] * CLIENTS
            expected = model.predict(X.iloc[:CLIENTS].round(1)).tolist()
            assert [out["predictions"] for _, _, out in answers] == [[p] for p in expected]
            calls, requests = counts()
            assert requests - requests0 == CLIENTS
            assert calls - calls0 == 1, f"{calls - calls0} predict calls for {CLIENTS} requests"
        finally:
            for c in clients:
                c.close()
            loop.call_soon_threadsafe(server.close)
