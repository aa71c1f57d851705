"""The gateway against hostile clients (issue 12), on 127.0.0.1 with bounded loops.

One gateway (one worker, small timeouts so the tests are quick) serves the module; each test
plays one attack of the issue and asserts the fixed behaviour: memory bounded, other
clients' latency bounded, idle sockets closed, strict framing, bounded logs when file
descriptors run out, bad values answered 400 and counted as client errors.

Latency bounds are the issue's (p99 under 50 ms) measured with a Python client on a
shared 2-core machine: they hold with a wide margin on an idle one (p99 of a few ms).
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import IRIS_FEATURES as FEATURES
from conftest import Http, gateway_home, path, split_body

from mlops_jupyter.deployment import tokens as auth

ROW = [5.1, 3.5, 1.4, 0.2]
TIMEOUT_S = 1.5
LIMITS = {
    "MLOPS_GATEWAY_WORKERS": "1",
    "MLOPS_GATEWAY_HEADER_TIMEOUT": str(TIMEOUT_S),
    "MLOPS_GATEWAY_IDLE_TIMEOUT": str(TIMEOUT_S),
    "MLOPS_GATEWAY_BODY_TIMEOUT": str(TIMEOUT_S),
    "MLOPS_GATEWAY_REQUEST_TIMEOUT": "10",
    "MLOPS_GATEWAY_MAX_HEADER_BYTES": "8192",
    "MLOPS_GATEWAY_MAX_BODY_BYTES": str(16 * 1024 * 1024),
    "MLOPS_GATEWAY_MAX_INFLIGHT_BODY_BYTES": str(64 * 1024 * 1024),
    "MLOPS_GATEWAY_WRITE_BUFFER_BYTES": str(64 * 1024),
}
P99_BOUND_S = 0.050


class Slow:
    """A classifier taking 20 ms per call (a model doing I/O or native work); 12 s on a 777."""

    def fit(self, X, y):
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        return self

    def predict(self, X):
        a = np.asarray(X, dtype=float)
        time.sleep(12.0 if (a[:, 0] == 777).any() else 0.02)
        return np.zeros(len(a), dtype=int)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, template_db: Path):
    with gateway_home(tmp_path_factory, template_db, "hostile") as home:
        with pytest.MonkeyPatch.context() as mp:
            for k, v in LIMITS.items():
                mp.setenv(k, v)
            info = _deploy(home)
        yield info


def _deploy(home: Path) -> dict[str, Any]:
    import cloudpickle
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from mlops_jupyter import create_model_deployment, create_model_versioning

    X, y = load_iris(return_X_y=True, as_frame=True)
    v = create_model_versioning(tenant_id="acme", storage_path=home)
    v.create_version("iris", model=LogisticRegression(max_iter=500).fit(X, y), reference_data=X)

    class SlowClassifier(Slow, ClassifierMixin, BaseEstimator):
        pass

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        v.create_version("slow", model=SlowClassifier().fit(X, y), reference_data=X)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    d = create_model_deployment(tenant_id="acme", storage_path=home)
    for model_id, env in (("iris", "production"), ("iris", "values"), ("slow", "production")):
        assert d.deploy_model(model_id, "1.0.0", environment=env)["status"] == "deployed"
    info = json.loads((home / "gateway.json").read_text())
    return {
        "home": home,
        "port": info["port"],
        "pid": info["pid"],
        "token": d.get_token(),
        "admin": auth.admin_token(home),
    }


# -- helpers -------------------------------------------------------------------------------
def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the gateway's workers), in MB."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(next(x for x in status.splitlines() if x.startswith("VmRSS:")).split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue
    return total / 1024


def probe(gw: dict[str, Any], n: int = 200, model: str = "iris") -> list[float]:
    """Latencies (s) of ``n`` valid predictions, one after another on one keep-alive connection."""
    c = Http(gw["port"], gw["token"])
    body = split_body([ROW])
    out = []
    for _ in range(n):
        t = time.perf_counter()
        status, _, _ = c.call("POST", path(model), body)
        out.append(time.perf_counter() - t)
        assert status == 200
    c.close()
    return out


def p99(lat: list[float]) -> float:
    return float(np.percentile(lat, 99))


def assert_p99_holds(gw: dict[str, Any], lat: list[float], bound: float = P99_BOUND_S, pct: int = 99) -> None:
    """The ``pct`` percentile of ``lat`` (measured under an attack) under ``bound``, or, on a
    machine so busy that the same client without any attack is slower than that, under 3x
    that baseline."""
    got = float(np.percentile(lat, pct))
    if got < bound:
        return
    base = float(np.percentile(probe(gw, 200), pct))
    assert got < max(bound, 3 * base), f"p{pct} {got * 1000:.1f} ms under attack, {base * 1000:.1f} ms without"


def raw(port: int, data: bytes, timeout: float = 10.0) -> tuple[bytes, bool]:
    """Send ``data`` on a new connection; (everything answered, whether the server closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        return read_until_closed(s, timeout)


def read_until_closed(s: socket.socket, timeout: float) -> tuple[bytes, bool]:
    got = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            return got, False
        except ConnectionResetError:
            return got, True
        if not chunk:
            return got, True
        got += chunk
    return got, False


def head(method: str, target: str, *lines: str) -> bytes:
    return (f"{method} {target} HTTP/1.1\r\nHost: x\r\n" + "".join(f"{x}\r\n" for x in lines) + "\r\n").encode()


@contextmanager
def sockets(port: int, n: int) -> Iterator[list[socket.socket]]:
    socks = []
    try:
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        yield socks
    finally:
        for s in socks:
            s.close()


ATTACKER = r"""
import json, select, socket, sys, threading, time
mode, port, n, arg = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].encode()
def closed_answer(s, timeout):
    got, end = b"", time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            c = s.recv(65536)
        except socket.timeout:
            break
        except OSError:
            return got, True
        if not c:
            return got, True
        got += c
    return got, False
if mode == "slowloris":  # n sockets start a request and trickle a byte per 0.1 s into one header
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
    for s in socks:
        s.sendall(arg)
        s.setblocking(False)
    print("ready", flush=True)
    open_ = set(socks)
    answers, end = {}, time.monotonic() + 30
    while open_ and time.monotonic() < end:
        for s in list(open_):
            try:
                c = s.recv(65536)
            except BlockingIOError:
                try:
                    s.send(b"a")
                except OSError:
                    pass
                continue
            except OSError:
                c = b""
            if not c:
                open_.discard(s)
            else:
                answers[s] = answers.get(s, b"") + c
        time.sleep(0.1)
    print(json.dumps({"answered_408": sum(a.startswith(b"HTTP/1.1 408 ") for a in answers.values()),
                      "closed": n - len(open_)}), flush=True)
elif mode == "bytes":  # n clients send their request one byte per packet
    out = []
    def one(i):
        s = socket.create_connection(("127.0.0.1", port), timeout=20)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = (b"GET /ping HTTP/1.1\r\nHost: x\r\n" + (b"".join(b"X-%d: v\r\n" % k for k in range(12000))
                if i % 2 else b"X-Long: " + b"b" * 100000 + b"\r\n") + b"\r\n")
        try:
            for k in range(len(data)):
                s.send(data[k:k + 1])
        except OSError:
            pass
        out.append(closed_answer(s, 10)[0][:12].decode())
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    print("ready", flush=True)
    [t.start() for t in ts]
    [t.join() for t in ts]
    print(json.dumps({"answers": out}), flush=True)
elif mode == "flood":  # one socket pipelines n GET /health and never reads
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.connect(("127.0.0.1", port))
    s.settimeout(2)
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    sent = 0
    print("ready", flush=True)
    try:
        while sent < n * len(request):
            sent += s.send(request * 2000)
    except OSError:
        pass
    dropped, end = False, time.monotonic() + float(arg) + 30
    while not dropped and time.monotonic() < end:
        try:
            s.send(request)
            time.sleep(0.1)
        except OSError:
            dropped = True
    print(json.dumps({"requests_sent": sent // len(request), "dropped": dropped}), flush=True)
"""


@contextmanager
def attacker(mode: str, port: int, n: int, arg: bytes | str = "") -> Iterator[dict[str, Any]]:
    """Run an attack in its own process (so its work does not slow the probing client in
    this one); yields once it is under way; its report is in the dict after the block."""
    proc = subprocess.Popen(
        [sys.executable, "-c", ATTACKER, mode, str(port), str(n), arg if isinstance(arg, str) else arg.decode()],
        stdout=subprocess.PIPE,
        text=True,
    )
    report: dict[str, Any] = {}
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield report
        out, _ = proc.communicate(timeout=60)
        report.update(json.loads(out))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def metric(text: str, *needles: str) -> int:
    lines = [x for x in text.splitlines() if all(n in x for n in needles) and not x.startswith("#")]
    return sum(int(float(x.split()[-1])) for x in lines)


# -- framing -------------------------------------------------------------------------------
def test_ambiguous_framing_is_400_and_the_connection_is_closed(gw):
    tok = f"Authorization: Bearer {gw['token']}"
    target = path()
    body = json.dumps(split_body([ROW]))
    cases = {
        "two Content-Length": head("POST", target, tok, f"Content-Length: {len(body)}", f"Content-Length: {len(body)}")
        + body.encode(),
        "Content-Length list": head("POST", target, tok, f"Content-Length: {len(body)}, {len(body)}") + body.encode(),
        "Content-Length sign": head("POST", target, tok, f"Content-Length: +{len(body)}") + body.encode(),
        "Content-Length hex": head("POST", target, tok, "Content-Length: 0x10") + body.encode(),
        "obs-fold authenticates nothing": b"GET "
        + path(suffix="").encode()
        + b" HTTP/1.1\r\nHost: x\r\nX-A: a\r\n "
        + tok.encode()
        + b"\r\n\r\n",
        "bare LF": f"GET {path(suffix='')} HTTP/1.1\n{tok}\nHost: x\n\n".encode(),
        "bare LF in a header": b"GET /ping HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
        "Transfer-Encoding with Content-Length": head(
            "POST", target, tok, "Transfer-Encoding: chunked", f"Content-Length: {len(body)}"
        )
        + b"0\r\n\r\n",
        "two Authorization": head("GET", path(suffix=""), tok, tok),
        "garbage": b"HELLO\r\n\r\n",
    }
    for name, data in cases.items():
        got, closed = raw(gw["port"], data)
        assert got.startswith(b"HTTP/1.1 400 "), (name, got[:200])
        assert closed, name
        assert got.count(b"HTTP/1.1 ") == 1, name  # nothing smuggled behind it was answered
        assert b'"error_code": "BAD_REQUEST"' in got, name
    # chunked alone is decoded (tests/gateway/test_chunked_bodies.py): an empty body is no JSON
    chunked = head("POST", target, tok, "Transfer-Encoding: chunked", "Connection: close") + b"0\r\n\r\n"
    got, closed = raw(gw["port"], chunked)
    assert got.startswith(b"HTTP/1.1 400 ") and b"MALFORMED_JSON" in got and closed
    got, closed = raw(gw["port"], b"GET /ping HTTP/2.0\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 505 ") and closed
    # a 100 KB header line is 431 whether it comes in one packet or many
    line = "X-Big: " + "a" * 100_000
    got, closed = raw(gw["port"], head("GET", "/ping", line))
    assert got.startswith(b"HTTP/1.1 431 ") and closed
    with socket.create_connection(("127.0.0.1", gw["port"]), timeout=10) as s:
        data = head("GET", "/ping", line)
        for k in range(0, 20_000, 1000):
            s.sendall(data[k : k + 1000])
        got, closed = read_until_closed(s, 10)
    assert got.startswith(b"HTTP/1.1 431 ") and closed
    assert Http(gw["port"]).call("GET", "/ping")[0] == 200


# -- bodies, auth before the body, in-flight budget ---------------------------------------
def test_held_8_mib_bodies_without_a_token_cost_no_memory(gw):
    before = rss_mb(gw["pid"])
    with sockets(gw["port"], 40) as socks:
        for s in socks:
            s.sendall(head("POST", path(), f"Content-Length: {8 * 1024 * 1024}", "Content-Type: application/json"))
            s.sendall(b"[" + b"1," * 500_000)  # 1 MB of the body, then the client holds
        for s in socks:
            got, _ = read_until_closed(s, 10)
            assert got.startswith(b"HTTP/1.1 401 "), got[:100]
        grown = rss_mb(gw["pid"]) - before
    assert grown < 100, f"the gateway grew by {grown:.0f} MB"
    # with a valid token, bodies held at once are bounded by the in-flight budget: 503 past it
    tok = f"Authorization: Bearer {gw['token']}"
    with sockets(gw["port"], 12) as socks:
        answers = []
        for s in socks:
            s.sendall(head("POST", path(), tok, f"Content-Length: {8 * 1024 * 1024}"))
        for s in socks:
            s.settimeout(0.5)
            try:
                answers.append(s.recv(200))
            except TimeoutError:
                answers.append(b"")  # admitted: waiting for its body
        refused = [a for a in answers if a.startswith(b"HTTP/1.1 503 ")]
        assert len(refused) == 12 - 8 and all(b"Retry-After: 1" in a for a in refused), answers
    assert probe(gw, 5)


def test_the_token_is_checked_before_the_body_is_read(gw):
    # a client that sends only the headers of a body gets its 401/403 at once, then the close
    for token, status in ((None, b"401"), ("not-a-token", b"401"), (auth.admin_token(gw["home"]), None)):
        lines = [f"Content-Length: {1024 * 1024}"] + ([f"Authorization: Bearer {token}"] if token else [])
        with socket.create_connection(("127.0.0.1", gw["port"]), timeout=10) as s:
            s.sendall(head("POST", path(), *lines))
            if status is None:  # the admin token may: the gateway waits for the body
                s.settimeout(0.5)
                with pytest.raises(TimeoutError):
                    s.recv(100)
                continue
            got, closed = read_until_closed(s, 10)
            assert got.startswith(b"HTTP/1.1 " + status) and b"Connection: close" in got and closed


# -- slow and idle clients -----------------------------------------------------------------
def test_idle_sockets_are_closed_after_the_timeouts(gw):
    with socket.create_connection(("127.0.0.1", gw["port"]), timeout=10) as s:
        t = time.monotonic()
        got, closed = read_until_closed(s, 10)  # sends nothing
        assert got == b"" and closed and TIMEOUT_S * 0.8 <= time.monotonic() - t < TIMEOUT_S + 3
    with socket.create_connection(("127.0.0.1", gw["port"]), timeout=10) as s:
        s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")  # one request, then idle
        t = time.monotonic()
        got, closed = read_until_closed(s, 10)
        assert got.startswith(b"HTTP/1.1 200 ") and closed and time.monotonic() - t >= TIMEOUT_S * 0.8
    with socket.create_connection(("127.0.0.1", gw["port"]), timeout=10) as s:
        s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        got, closed = read_until_closed(s, 10)
        assert got.startswith(b"HTTP/1.1 408 ") and closed
    with socket.create_connection(("127.0.0.1", gw["port"]), timeout=10) as s:
        s.sendall(head("POST", path(), f"Authorization: Bearer {gw['token']}", "Content-Length: 100") + b"{")
        got, closed = read_until_closed(s, 10)  # body never finished
        assert got.startswith(b"HTTP/1.1 408 ") and closed


def test_a_1000_socket_slowloris_does_not_slow_valid_requests(gw):
    start = "POST " + path() + " HTTP/1.1\r\nHost: x\r\nX-Slow: "
    with attacker("slowloris", gw["port"], 1000, start) as report:
        lat = probe(gw, 300)
    assert_p99_holds(gw, lat)
    assert report == {"answered_408": 1000, "closed": 1000}


def test_headers_sent_byte_by_byte_are_counted_and_do_not_slow_others(gw):
    # 16 clients: 12 000 header lines or one 100 KB line, one byte per packet
    with attacker("bytes", gw["port"], 16) as report:
        lat = probe(gw, 200)
    # each is refused once its head passes the limit (431), or, if a busy machine makes it
    # send too slowly to get there, when the header timeout ends (408); none is left open
    answers = report["answers"]
    assert len(answers) == 16 and set(answers) <= {"HTTP/1.1 431", "HTTP/1.1 408"} and "HTTP/1.1 431" in answers
    # the issue measured others' p50 at 119 ms under this attack (every packet re-parsed
    # every header); the attacker's packets now cost O(1) each. (Its 16 threads sending
    # without pause take a core of their own here, so the tail is the machine's, not asserted.)
    assert_p99_holds(gw, lat, 0.010, pct=50)


def test_a_pipelining_flood_that_never_reads_is_bounded(gw):
    before = rss_mb(gw["pid"])
    with attacker("flood", gw["port"], 4_000_000, str(TIMEOUT_S)) as report:
        lat = probe(gw, 300)
        grown = rss_mb(gw["pid"]) - before
    assert_p99_holds(gw, lat)
    assert grown < 100, f"the gateway grew by {grown:.0f} MB"
    # it stopped reading the flood (most of 4 million requests never left the client), and
    # dropped the connection whose answers were not read after the idle timeout
    # (what it sent beyond that waits in the kernel's socket buffers, not in the gateway)
    assert report["requests_sent"] < 2_000_000 and report["dropped"], report


# -- file descriptors ------------------------------------------------------------------------
def start_limited_gateway(tmp_path: Path, nofile: int, **settings: str) -> tuple[subprocess.Popen, int, Path, int]:
    """A 1-worker gateway with ``nofile`` file descriptors: (process, port, log file, worker pid)."""
    home = tmp_path / "store"
    home.mkdir()
    logf = tmp_path / "gateway.log"
    env = dict(os.environ, MLOPS_GATEWAY_WORKERS="1", **settings)

    def limit_fds() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    with open(logf, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlops_jupyter.gateway", "--home", str(home)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=limit_fds,
        )
    deadline = time.monotonic() + 60
    while not (home / "gateway.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, logf.read_text()[-2000:]
        time.sleep(0.1)
    info = json.loads((home / "gateway.json").read_text())
    assert Http(info["port"]).call("GET", "/ping")[0] == 200
    return proc, info["port"], logf, info["worker_pids"][0]


def test_out_of_file_descriptors_logs_a_counted_line_per_interval_and_recovers(tmp_path: Path):
    """A gateway with 160 file descriptors, a connection cap of 120 set above them and 300
    clients at once.

    The clients hold their sockets, so the gateway runs out of descriptors: accept errors are
    logged once per interval with a count (not a traceback per attempt), every client gets an
    answer or a close, and it serves after.
    """
    proc, port, logf, _ = start_limited_gateway(
        tmp_path,
        160,
        MLOPS_GATEWAY_MAX_CONNECTIONS="120",
        MLOPS_GATEWAY_HEADER_TIMEOUT="2",
        MLOPS_GATEWAY_IDLE_TIMEOUT="2",
        MLOPS_GATEWAY_ACCEPT_ERROR_INTERVAL="30",
    )
    try:
        size0 = logf.stat().st_size
        answers: list[bytes] = []
        with sockets(port, 300) as socks:
            for s in socks:
                got, closed = read_until_closed(s, 20)
                assert closed or got, "a client hung"
                answers.append(got)
        assert any(answers) and all(a == b"" or a.startswith((b"HTTP/1.1 503 ", b"HTTP/1.1 408 ")) for a in answers)
        assert all(b"Retry-After: 1" in a for a in answers if a.startswith(b"HTTP/1.1 503 "))
        assert Http(port).call("GET", "/ping")[0] == 200
        text = logf.read_text()[size0:]
        refused = [x for x in text.splitlines() if "accept(s) refused" in x]
        assert len(refused) in (1, 2), text[-3000:]
        assert "socket.accept() out of system resource" not in text and len(text) < 50_000, text[-3000:]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_flood_over_the_connection_cap_keeps_the_descriptors_reserved_for_the_logs(tmp_path: Path):
    """300 clients hold their sockets against a cap of 40: 40 are served, at most
    OVERFLOW_MAX more get 503 with Retry-After while they linger, the rest are closed at once
    without an answer. Half a second later, with every client still holding its socket, the
    worker holds at most cap + OVERFLOW_MAX descriptors more than before (refusals that all
    lingered would hold 300 for 2 s), and it serves after."""
    from mlops_jupyter.gateway.http_state import OVERFLOW_MAX

    proc, port, logf, worker = start_limited_gateway(
        tmp_path, 400, MLOPS_GATEWAY_MAX_CONNECTIONS="40", MLOPS_GATEWAY_HEADER_TIMEOUT="30"
    )

    def open_fds() -> int:
        return len(os.listdir(f"/proc/{worker}/fd"))

    try:
        fds0 = open_fds()
        answers: list[bytes] = []
        with sockets(port, 300) as socks:
            time.sleep(0.5)  # every connection accepted (or closed) by now
            held = open_fds()
            for s in socks[40:]:  # the first 40 are served: they wait for a request
                got, closed = read_until_closed(s, 10)
                assert closed, "a client over the cap hung"
                answers.append(got)
        busy = [a for a in answers if a]
        assert busy and len(busy) <= OVERFLOW_MAX + 5, len(busy)  # + those freed meanwhile
        assert all(a.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in a for a in busy)
        assert held <= fds0 + 40 + OVERFLOW_MAX, (fds0, held)
        assert Http(port).call("GET", "/ping")[0] == 200
        assert "accept(s) refused" not in logf.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# -- big requests and slow models ------------------------------------------------------------
def test_a_million_row_request_does_not_block_others(gw):
    body = ('{"instances": [' + ",".join(["[5,3,1,0]"] * 1_000_000) + "]}").encode()
    result: dict[str, Any] = {}

    def big() -> None:
        c = Http(gw["port"], gw["token"])
        t = time.perf_counter()
        status, _, out = c.call("POST", path(), raw=body)
        result.update(status=status, n=len(out["predictions"]), s=time.perf_counter() - t)

    t = threading.Thread(target=big)
    t.start()
    lat = []
    while t.is_alive() and len(lat) < 2000:
        lat += probe(gw, 20)
    t.join()
    assert result["status"] == 200 and result["n"] == 1_000_000
    # before: others waited for the whole request (0.76 s on an idle machine); now no
    # request waits more than a fraction of it. What is left of the tail is the GIL held
    # by single C calls on 10-40 MB buffers (the write-ahead log's pickle of the request)
    assert len(lat) >= 20 and max(lat) < result["s"] / 4, (max(lat), result)
    assert_p99_holds(gw, lat, 0.005, pct=50)
    assert_p99_holds(gw, lat, 5 * P99_BOUND_S)


def test_a_slow_model_delays_only_itself_and_a_stuck_one_gets_504(gw):
    stuck: dict[str, Any] = {}

    def hang() -> None:
        c = Http(gw["port"], gw["token"])
        t = time.perf_counter()
        # over BATCH_MAX_ROWS rows: predicted alone, never in the same micro-batch as others
        rows = [[777, 1, 1, 1]] * 5000
        stuck["status"], _, stuck["out"] = c.call("POST", path("slow"), split_body(rows))
        stuck["s"] = time.perf_counter() - t

    t = threading.Thread(target=hang)
    t.start()
    slow = probe(gw, 10, model="slow")  # the same model still answers (another slot)
    fast = probe(gw, 200)
    t.join()
    assert stuck["status"] == 504 and stuck["out"]["error_code"] == "TIMEOUT", stuck
    assert 9 < stuck["s"] < 13
    assert min(slow) >= 0.02
    assert_p99_holds(gw, fast, 0.005, pct=50)  # the fast route does not wait for the stuck one
    from mlops_jupyter.monitoring.predlog import PredictionLog

    assert Http(gw["port"], gw["admin"]).call("POST", "/admin/flush", {})[0] == 200
    plog = PredictionLog(gw["home"], background=False)
    try:  # the model ran past its deadline: a model error, logged (so it counts in error_rate)
        df = plog.read("acme", "slow")
        assert df.loc[~df["success"], "error"].str.contains("did not finish within 10 s").any()
    finally:
        plog.close()


# -- bad values are client errors ---------------------------------------------------------------
def test_non_finite_null_and_out_of_range_values_are_400_naming_column_and_row(gw):
    c = Http(gw["port"], gw["token"])
    admin = Http(gw["port"], gw["admin"])
    before = admin.call("GET", "/metrics")[2]
    bad_values = ["NaN", "Infinity", "-Infinity", "1e999", "null", "1" + "0" * 400]
    for bad in bad_values:
        rows = f"[[5.1, 3.5, 1.4, 0.2], [5.1, 3.5, {bad}, 0.2]]"
        raw_body = f'{{"dataframe_split": {{"columns": {json.dumps(FEATURES)}, "data": {rows}}}}}'
        status, _, out = c.call("POST", path(env="values"), raw=raw_body.encode())
        assert status == 400 and out["error_code"] == "BAD_REQUEST", (bad, out)
        assert "'petal length (cm)'" in out["message"] and "row 1" in out["message"], out
    # the same on the path that parses big bodies in the pool
    pad = ", ".join(["[5.1, 3.5, 1.4, 0.2]"] * 5000)
    status, _, out = c.call("POST", path(env="values"), raw=f'{{"instances": [{pad}, [1, 2, NaN, 4]]}}'.encode())
    assert status == 400 and "row 5000" in out["message"] and "'petal length (cm)'" in out["message"], out
    after = admin.call("GET", "/metrics")[2]
    labels = ('environment="values"', 'model="iris"')
    assert metric(after, "mlops_errors_total", *labels, 'kind="model"') == metric(
        before, "mlops_errors_total", *labels, 'kind="model"'
    )
    assert (
        metric(after, "mlops_errors_total", *labels, 'kind="client"')
        - metric(before, "mlops_errors_total", *labels, 'kind="client"')
        == len(bad_values) + 1
    )


def test_a_huge_bad_cell_is_not_echoed_whole(gw):
    from mlops_jupyter.monitoring.predlog import PredictionLog

    cell = "x" * 7_000_000
    c = Http(gw["port"], gw["token"])
    body = json.dumps(split_body([[5.1, cell, 1.4, 0.2]])).encode()
    status, headers, out = c.call("POST", path(env="values"), raw=body)
    assert status == 400 and "'sepal width (cm)'" in out["message"] and "7000002 characters" in out["message"]
    assert int(headers["content-length"]) < 2048
    assert Http(gw["port"], gw["admin"]).call("POST", "/admin/flush", {})[0] == 200
    plog = PredictionLog(gw["home"], background=False)
    try:  # every request sent to "values" was refused as the client's error: none is a prediction
        df = plog.read("acme", "iris")
        assert len(df) and not (df["environment"] == "values").any()
    finally:
        plog.close()


# --- durability and workers (A2) ---
# A gateway with two worker processes behind one port: they share the port, follow every
# change by revision, answer a sticky key with the same version, add their counters up in
# /metrics; a worker killed with SIGKILL under load loses no answered prediction; a log
# that cannot be written makes /health "degraded" and its rows are written once it can be.

_WORKERS = 2
_DEADLINE = 60.0  # the longest any wait below may take (a stuck test, not a slow one)
_COLUMN = "feature.sepal length (cm)"


@pytest.fixture(scope="module")
def workers_gw(tmp_path_factory, template_db):
    """Two workers (``MLOPS_GATEWAY_WORKERS=2``); iris 1.0.0 in ``production``, a 50/50
    split of 1.0.0 and 1.1.0 in ``ab``; tenant ``other`` with its own iris."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    from mlops_jupyter import create_model_deployment, create_model_versioning
    from mlops_jupyter.deployment import tokens as auth
    from mlops_jupyter.deployment.targets.local_process import read_info

    with gateway_home(tmp_path_factory, template_db, "workers") as home:
        X, y = load_iris(return_X_y=True, as_frame=True)
        v = create_model_versioning(tenant_id="acme", storage_path=home)
        v.create_version("iris", model=LogisticRegression(max_iter=300).fit(X, y), reference_data=X)
        v.create_version("iris", model=DecisionTreeClassifier(max_depth=1, random_state=0).fit(X, y), reference_data=X)
        create_model_versioning(tenant_id="other", storage_path=home).create_version(
            "iris", model=LogisticRegression(max_iter=300).fit(X, y), reference_data=X
        )
        d = create_model_deployment(tenant_id="acme", storage_path=home)
        with pytest.MonkeyPatch.context() as mp:  # the first deploy starts the gateway
            mp.setenv("MLOPS_GATEWAY_WORKERS", str(_WORKERS))
            assert d.deploy_model("iris", "1.0.0", environment="production")["status"] == "deployed"
        d.deploy_model("iris", "1.0.0", environment="ab")
        assert d.deploy_model("iris", "1.1.0", environment="ab", traffic_percentage=50)["traffic"] == {
            "1.0.0": 50,
            "1.1.0": 50,
        }
        other = create_model_deployment(tenant_id="other", storage_path=home)
        assert other.deploy_model("iris", "1.0.0")["status"] == "deployed"
        info = read_info(home)
        assert info["workers"] == _WORKERS and len(info["worker_pids"]) == _WORKERS
        yield {
            "home": home,
            "port": info["port"],
            "d": d,
            "token": d.get_token(),
            "other_token": other.get_token(),
            "admin": auth.admin_token(home),
        }


def _by_worker(gw, token: str, want: int = _WORKERS, tries: int = 200) -> dict[int, Http]:
    """One keep-alive connection to each worker, told apart by the pid ``/health`` reports."""
    conns: dict[int, Http] = {}
    for _ in range(tries):
        c = Http(gw["port"], token)
        c.token = gw["admin"]
        status, _, body = c.call("GET", "/health")
        c.token = token
        assert status == 200
        if body["worker_pid"] in conns:
            c.close()
        else:
            conns[body["worker_pid"]] = c
        if len(conns) == want:
            return conns
    raise AssertionError(f"reached only workers {sorted(conns)} in {tries} connections")


def _metric(text: str, prefix: str) -> int:
    lines = [x for x in text.splitlines() if x.startswith(prefix)]
    assert len(lines) == 1, (prefix, lines)
    return int(float(lines[0].split()[-1]))


def test_health_without_a_token_says_only_ok_and_the_details_need_one(workers_gw):
    status, _, body = Http(workers_gw["port"]).call("GET", "/health")
    assert status == 200 and body == {"status": "ok"}
    status, _, body = Http(workers_gw["port"], workers_gw["token"]).call("GET", "/health")
    info = json.loads((workers_gw["home"] / "gateway.json").read_text())
    assert body["status"] == "ok" and body["pid"] == info["pid"] and body["workers"] == _WORKERS
    assert body["worker_pid"] in info["worker_pids"] and body["deployments"] == 3


def test_workers_share_the_port_and_follow_a_change_before_it_is_answered(workers_gw):
    conns = _by_worker(workers_gw, workers_gw["token"])
    d = workers_gw["d"]
    r = d.deploy_model("iris", "1.1.0", environment="follow")
    assert r["status"] == "deployed"
    for c in conns.values():  # the answer came once every worker serves it
        status, _, body = c.call("GET", path(env="follow", suffix=""))
        assert status == 200 and body["traffic"] == {"1.1.0": 100} and body["revision"] == r["revision"]
        assert c.call("POST", path(env="follow"), split_body([[5.1, 3.5, 1.4, 0.2]]))[0] == 200
    d.undeploy("iris", "follow")
    for c in conns.values():
        assert c.call("POST", path(env="follow"), split_body([[5.1, 3.5, 1.4, 0.2]]))[0] == 404


def test_a_sticky_key_gets_the_same_version_whichever_worker_answers(workers_gw):
    conns = list(_by_worker(workers_gw, workers_gw["token"]).values())
    seen: dict[str, set[str]] = {}
    for k in range(24):
        for c in conns:
            status, headers, _ = c.call(
                "POST", path(env="ab"), split_body([[5.1, 3.5, 1.4, 0.2]]), headers={"X-Request-Key": f"user-{k}"}
            )
            assert status == 200
            seen.setdefault(f"user-{k}", set()).add(headers["x-model-version"])
    assert all(len(v) == 1 for v in seen.values()), seen
    assert {next(iter(v)) for v in seen.values()} == {"1.0.0", "1.1.0"}  # the split still splits


def test_metrics_add_up_every_worker_and_a_tenant_sees_only_its_own(workers_gw):
    admin = Http(workers_gw["port"], workers_gw["admin"])
    labels = 'tenant="acme",environment="production",model="iris",version="1.0.0"'
    text = admin.call("GET", "/metrics")[2]
    before = _metric(text, f"mlops_requests_total{{{labels}}}")
    calls = _metric(text, f"mlops_model_executions_total{{{labels}}}")
    conns = _by_worker(workers_gw, workers_gw["token"])
    for c in conns.values():
        for _ in range(15):
            assert c.call("POST", path(), split_body([[5.1, 3.5, 1.4, 0.2]]))[0] == 200
        assert c.call("POST", path(), raw=b"{not json")[0] == 400
    text = admin.call("GET", "/metrics")[2]
    assert _metric(text, f"mlops_requests_total{{{labels}}}") == before + 16 * _WORKERS
    # one request at a time: each its own predict call; the bad body never reached the model
    assert _metric(text, f"mlops_model_executions_total{{{labels}}}") == calls + 15 * _WORKERS
    assert _metric(text, "mlops_gateway_workers") == _WORKERS
    assert 'mlops_gateway_responses_total{code="200"}' in text
    mine = Http(workers_gw["port"], workers_gw["token"]).call("GET", "/metrics")[2]
    assert 'tenant="other"' not in mine and "code=" not in mine  # no gateway-wide status codes
    assert _metric(mine, 'mlops_gateway_responses_total{tenant="acme",class="4xx"}') >= _WORKERS
    theirs = Http(workers_gw["port"], workers_gw["other_token"]).call("GET", "/metrics")[2]
    assert 'tenant="acme"' not in theirs
    assert _metric(theirs, 'mlops_gateway_responses_total{tenant="other",class="4xx"}') == 0


@contextmanager
def _health_load(conns: list[Http]) -> Iterator[tuple[list[int | None], list[int], list[Exception]]]:
    """Each of ``conns`` (admin token) sends ``GET /health`` in a loop on a thread of its own
    until the block ends. Yields ``where`` (the worker pid of each connection's last answer),
    ``broken`` (how often each connection broke: its client reconnects, as HTTP clients do)
    and ``errors`` (a non-200 answer or anything else; it stops every thread)."""
    import http.client

    where: list[int | None] = [None] * len(conns)
    broken = [0] * len(conns)
    errors: list[Exception] = []
    stop = threading.Event()

    def drive(i: int) -> None:
        c = conns[i]
        try:
            while not stop.is_set():
                try:
                    status, _, body = c.call("GET", "/health")
                except (OSError, http.client.HTTPException):
                    broken[i] += 1
                    c.close()
                    continue
                assert status == 200, body
                where[i] = body["worker_pid"]
        except Exception as exc:  # reported by the caller
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=drive, args=(i,)) for i in range(len(conns))]
    for t in threads:
        t.start()
    try:
        yield where, broken, errors
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        for c in conns:
            c.close()


def test_keep_alive_connections_piled_on_one_worker_are_spread_over_both(workers_gw):
    """The kernel hashes connections to workers whatever their load (``SO_REUSEPORT``); four
    busy keep-alive connections that all landed on one worker end up two on each: that
    worker closes its excess after an answer (``Connection: close``), the client reconnects
    and nothing fails. Once even, nothing more is closed."""
    port, admin = workers_gw["port"], workers_gw["admin"]

    def rebalanced() -> int:
        c = Http(port, admin)
        try:
            return _metric(c.call("GET", "/metrics")[2], "mlops_gateway_connections_rebalanced_total")
        finally:
            c.close()

    piled: list[Http] = []
    first = None
    for _ in range(400):  # connect until four land on the worker the first one reached
        c = Http(port, admin)
        pid = c.call("GET", "/health")[2]["worker_pid"]
        first = first or pid
        if pid == first:
            piled.append(c)
        else:
            c.close()
        if len(piled) == 4:
            break
    assert len(piled) == 4
    closed_before = rebalanced()
    with _health_load(piled) as (where, broken, errors):

        def spread() -> list[int]:
            return sorted(where.count(p) for p in set(where) if p is not None)

        deadline = time.monotonic() + _DEADLINE
        while not errors and time.monotonic() < deadline and spread() != [2, 2]:
            time.sleep(0.05)
        even = spread()
        closed = rebalanced() - closed_before
        time.sleep(2.0)  # ten windows more under the same load: even stays even
        closed_later = rebalanced() - closed_before
        settled = spread()
    assert not errors, errors
    assert broken == [0] * 4  # closed after an answer, never under a request
    assert even == [2, 2], where
    assert closed >= 2  # at least the two that moved (a closed one may land back on the same worker)
    assert closed_later == closed and settled == [2, 2], (closed, closed_later, where)


def _flush(gw) -> dict:
    status, _, body = Http(gw["port"], gw["admin"]).call("POST", "/admin/flush")
    assert status == 200, body
    return body


def _logged(gw, env: str) -> list[float]:
    from mlops_jupyter.monitoring.predlog import PredictionLog

    df = PredictionLog(gw["home"], background=False).read("acme", "iris")
    return df.loc[df["environment"] == env, _COLUMN].tolist()


def test_an_unwritable_log_makes_health_degraded_and_its_spooled_rows_are_written_later(workers_gw):
    d = workers_gw["d"]
    d.deploy_model("iris", "1.0.0", environment="spool")
    conns = list(_by_worker(workers_gw, workers_gw["token"]).values())
    root = workers_gw["home"] / "predictions"
    aside = workers_gw["home"] / "predictions-aside"
    root.rename(aside)
    root.write_text("a file where the log's folder was: unwritable, even for root")
    try:
        for i in range(20):
            assert conns[i % 2].call("POST", path(env="spool"), split_body([[2000.0 + i, 3.5, 1.4, 0.2]]))[0] == 200
        _flush(workers_gw)  # every worker tries now, and fails
        assert Http(workers_gw["port"]).call("GET", "/health")[2] == {"status": "degraded"}
        body = Http(workers_gw["port"], workers_gw["admin"]).call("GET", "/health")[2]
        assert body["status"] == "degraded" and body["prediction_log"]["spooled"] >= 20
        assert any("prediction log" in r and "write-ahead log" in r for r in body["reasons"]), body["reasons"]
        text = Http(workers_gw["port"], workers_gw["admin"]).call("GET", "/metrics")[2]
        assert _metric(text, "mlops_prediction_log_degraded") == _WORKERS
        assert _metric(text, "mlops_prediction_log_write_failures_total") >= _WORKERS
        assert _metric(text, "mlops_prediction_log_spooled") >= 20
    finally:
        root.unlink()
        aside.rename(root)
    _flush(workers_gw)
    assert Http(workers_gw["port"], workers_gw["admin"]).call("GET", "/health")[2]["reasons"] == []
    assert sorted(_logged(workers_gw, "spool")) == [2000.0 + i for i in range(20)]
    text = Http(workers_gw["port"], workers_gw["admin"]).call("GET", "/metrics")[2]
    assert _metric(text, "mlops_prediction_log_degraded") == 0 and _metric(text, "mlops_prediction_log_spooled") == 0


def test_a_worker_killed_under_load_loses_no_answered_prediction(workers_gw):
    """Four clients send predictions (each on a new connection, so both workers serve them),
    each with its own number in a feature; after 200 answers one worker gets SIGKILL. Every
    number answered 200 is in the log exactly once; the only extra rows are requests the
    killed worker logged but could not answer (at most one per client)."""
    import signal

    from mlops_jupyter.deployment.targets.local_process import read_info

    home = workers_gw["home"]
    workers_gw["d"].deploy_model("iris", "1.0.0", environment="durable")
    answered: list[float] = []
    lock = threading.Lock()
    enough = threading.Event()
    per_client, clients = 150, 4

    def client(k: int) -> None:
        for i in range(per_client):
            x = 10_000.0 * (k + 1) + i
            c = Http(workers_gw["port"], workers_gw["token"])
            try:
                status = c.call("POST", path(env="durable"), split_body([[x, 3.5, 1.4, 0.2]]))[0]
            except OSError:  # the killed worker's connections
                continue
            finally:
                c.close()
            if status == 200:
                with lock:
                    answered.append(x)
                    if len(answered) >= 200:
                        enough.set()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    assert enough.wait(_DEADLINE)
    victim = read_info(home)["worker_pids"][0]
    os.kill(victim, signal.SIGKILL)
    for t in threads:
        t.join(_DEADLINE * 2)
    assert not any(t.is_alive() for t in threads)
    # the supervisor starts a new worker, which replays the dead one's log before it serves
    deadline = time.monotonic() + _DEADLINE
    while True:
        pids = read_info(home)["worker_pids"]
        if victim not in pids and all((home / "gateway.workers" / f"{p}.json").exists() for p in pids):
            break
        assert time.monotonic() < deadline, "the killed worker was not replaced"
        time.sleep(0.05)
    _flush(workers_gw)
    logged = _logged(workers_gw, "durable")
    assert len(logged) == len(set(logged)), "a row was logged twice"
    assert set(answered) <= set(logged) and len(answered) == len(set(answered))
    assert len(set(logged) - set(answered)) <= clients
    assert len(answered) > 200  # the load went on after the kill
    assert not list((home / "predictions" / ".wal").glob(f"{victim}-*"))  # its segments were folded in


def test_a_worker_restarted_after_a_crash_gets_its_share_of_the_busy_connections(workers_gw):
    """Four keep-alive clients (each reconnecting when its connection breaks, as HTTP clients
    do); one worker gets SIGKILL, so its clients reconnect to the other, the only one left.
    Once the supervisor has replaced it, the survivor hands it two of the four."""
    import signal

    from mlops_jupyter.deployment.targets.local_process import read_info

    home, port, admin = workers_gw["home"], workers_gw["port"], workers_gw["admin"]
    victim = read_info(home)["worker_pids"][0]
    with _health_load([Http(port, admin) for _ in range(4)]) as (where, broken, errors):
        deadline = time.monotonic() + _DEADLINE
        while None in where and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(victim, signal.SIGKILL)
        while time.monotonic() < deadline:
            pids = read_info(home)["worker_pids"]
            if victim not in pids and sorted(where.count(p) for p in pids) == [2, 2]:
                break
            time.sleep(0.05)
        spread = {p: where.count(p) for p in read_info(home)["worker_pids"]}
    assert not errors, errors
    assert victim not in spread and sorted(spread.values()) == [2, 2], (victim, spread, where)
    assert sum(broken) <= 8, broken  # only the connections the kill broke (a retry may meet it too)
