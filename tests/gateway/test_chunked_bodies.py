"""``Transfer-Encoding: chunked`` request bodies (RFC 9112 7), on 127.0.0.1 with bounded loops.

Go's net/http, ``requests`` with a generator body and streaming Java/Node clients send them;
the gateway answered 411. Now llhttp decodes them, and every limit holds although the body's
size is known only as it arrives: 413 as soon as the count passes ``max_body_bytes`` (the
gateway never holds more), the in-flight budget reserved as bytes arrive (503), the body
timeout for the whole body (408), the token checked from the headers before any body byte
(401), trailer fields never taken as headers, framing between data bounded (431).
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import gateway_home, path, split_body
from test_hostile_clients import ROW, head, read_until_closed, rss_mb
from test_http_edges import recv_answer

MAX_BODY = 256 * 1024
INFLIGHT = 2 * 1024 * 1024
TIMEOUT_S = 1.5
BODY = json.dumps(split_body([ROW, [6.7, 3.0, 5.2, 2.3]])).encode()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, template_db: Path):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from mlops_jupyter import create_model_deployment, create_model_versioning

    with pytest.MonkeyPatch.context() as mp, gateway_home(tmp_path_factory, template_db, "chunked") as home:
        for k, v in {
            "WORKERS": "1",
            "MAX_HEADER_BYTES": "8192",
            "MAX_BODY_BYTES": str(MAX_BODY),
            "MAX_INFLIGHT_BODY_BYTES": str(INFLIGHT),
            "BODY_TIMEOUT": str(TIMEOUT_S),
        }.items():
            mp.setenv(f"MLOPS_GATEWAY_{k}", v)
        X, y = load_iris(return_X_y=True, as_frame=True)
        v = create_model_versioning(tenant_id="acme", storage_path=home)
        v.create_version("iris", model=LogisticRegression(max_iter=500).fit(X, y))
        d = create_model_deployment(tenant_id="acme", storage_path=home)
        assert d.deploy_model("iris", "1.0.0")["status"] == "deployed"
        info = json.loads((home / "gateway.json").read_text())
        yield {"port": info["port"], "pid": info["pid"], "token": d.get_token()}


def chunks(data: bytes, size: int, ext: bytes = b"", trailer: bytes = b"") -> bytes:
    """``data`` as chunks of ``size`` bytes (each size line with ``ext``), the last chunk, ``trailer``."""
    out = b"".join(
        b"%x%s\r\n%s\r\n" % (len(data[k : k + size]), ext, data[k : k + size]) for k in range(0, len(data), size)
    )
    return out + b"0\r\n" + trailer + b"\r\n"


def chunked_head(gw, *lines: str, token: bool = True) -> bytes:
    auth = [f"Authorization: Bearer {gw['token']}"] if token else []
    return head("POST", path(), *auth, "Content-Type: application/json", "Transfer-Encoding: chunked", *lines)


def predictions(answer: bytes) -> list:
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])["predictions"]


def connect(gw, sndbuf: int | None = None) -> socket.socket:
    s = socket.socket()
    if sndbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    s.settimeout(10)
    s.connect(("127.0.0.1", gw["port"]))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


@pytest.fixture(scope="module")
def expected(gw) -> list:
    """The Content-Length answer every chunked form of BODY must equal."""
    c = http.client.HTTPConnection("127.0.0.1", gw["port"], timeout=10)
    c.request("POST", path(), body=BODY, headers={"Authorization": f"Bearer {gw['token']}"})
    r = c.getresponse()
    answer = json.loads(r.read())
    c.close()
    assert r.status == 200, answer
    return answer["predictions"]


def test_a_chunked_prediction_equals_the_content_length_one(gw, expected):
    # what http.client (and requests) send for a generator body: Transfer-Encoding: chunked
    c = http.client.HTTPConnection("127.0.0.1", gw["port"], timeout=10)
    for size in (1, 7, len(BODY)):
        pieces = (BODY[k : k + size] for k in range(0, len(BODY), size))
        c.request("POST", path(), body=pieces, headers={"Authorization": f"Bearer {gw['token']}"}, encode_chunked=True)
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["predictions"] == expected, size
    c.close()
    # with Expect: 100-continue (curl's way to upload chunked), the 100 comes before the body
    with connect(gw) as s:
        s.sendall(chunked_head(gw, "Expect: 100-continue"))
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(chunks(BODY, 64))
        assert predictions(recv_answer(s)) == expected


def test_chunks_split_at_every_byte_boundary(gw, expected):
    data = chunked_head(gw) + chunks(BODY, 40, ext=b";a=1")
    with connect(gw) as s:  # one keep-alive connection: every answer must keep it in step
        for k in range(1, len(data)):
            s.sendall(data[:k])
            s.sendall(data[k:])
            assert predictions(recv_answer(s)) == expected, k
        for b in data:  # and one byte per packet
            s.sendall(bytes([b]))
        assert predictions(recv_answer(s)) == expected


def test_a_body_of_one_byte_chunks_is_decoded_over_several_loop_turns(gw, expected):
    # 1-byte chunks cost a parser callback each: the gateway decodes 1024 per turn (the rest
    # of the read waits, reading paused) so others are served in between; the body is whole
    body = BODY[:-1] + b" " * 60_000 + b"}"
    with connect(gw) as s:
        s.sendall(chunked_head(gw) + chunks(body, 1) + head("GET", "/ping"))  # and a request behind it
        assert predictions(recv_answer(s)) == expected
        assert recv_answer(s).startswith(b"HTTP/1.1 200 ")


def test_chunk_extensions_are_accepted_and_ignored(gw, expected):
    for ext in (b";name", b";name=value", b';q="a \\" b";x=1'):
        with connect(gw) as s:
            s.sendall(chunked_head(gw) + chunks(BODY, 50, ext=ext))
            got = recv_answer(s)
        assert predictions(got) == expected, (ext, got[:200])


def test_trailer_fields_are_never_taken_as_headers(gw, expected):
    # merged, a second Authorization would be 400 and a text/plain Content-Type 415
    trailer = b"Authorization: Bearer wrong\r\nContent-Type: text/plain\r\nX-Request-Key: k\r\n"
    with connect(gw) as s:
        s.sendall(chunked_head(gw) + chunks(BODY, 100, trailer=trailer))
        assert predictions(recv_answer(s)) == expected
    # and a token in the trailer authenticates nothing: 401 from the headers, before the body
    with connect(gw) as s:
        s.sendall(chunked_head(gw, token=False))
        got, closed = read_until_closed(s, 10)
    assert got.startswith(b"HTTP/1.1 401 ") and b"Connection: close" in got and closed


def test_malformed_chunked_framing_is_answered_and_closed(gw):
    one = chunks(BODY, 64)
    cases = {
        b"zz\r\n": 400,  # size not hex
        b"-1\r\n": 400,
        b"0x10\r\n": 400,
        b"1 2\r\n": 400,
        b"5 ;bws=1\r\n": 400,  # llhttp's strict default (Node's): no whitespace after the size
        b"fffffffffffffffffff\r\n": 400,  # overflows
        b"3\r\nabcX\r\n": 400,  # no CRLF after the data
        b"3\nabc\n0\n\n": 400,  # bare LF
        b"1;" + b"e" * 20_000 + b"\r\nx\r\n0\r\n\r\n": 431,  # an extension past max_header_bytes
        b"0\r\nX-T: " + b"t" * 20_000 + b"\r\n\r\n": 431,  # a trailer past max_header_bytes
    }
    for body, status in cases.items():
        with connect(gw) as s:
            s.sendall(chunked_head(gw) + body)
            got, closed = read_until_closed(s, 10)
        assert got.startswith(b"HTTP/1.1 %d " % status) and closed, (body[:30], got[:300])
        assert got.count(b"HTTP/1.1 ") == 1
    # another coding before chunked is not decoded here: 415, from the headers
    for te, status in (("gzip, chunked", 415), ("chunked, chunked", 400)):
        data = head("POST", path(), f"Authorization: Bearer {gw['token']}", f"Transfer-Encoding: {te}")
        with connect(gw) as s:
            s.sendall(data + one)
            got, closed = read_until_closed(s, 10)
        assert got.startswith(b"HTTP/1.1 %d " % status) and closed, (te, got[:300])


def test_a_slow_chunked_body_gets_408_within_the_body_timeout(gw):
    # the timeout is for the whole body: a chunk every 0.2 s does not extend it
    with connect(gw) as s:
        s.sendall(chunked_head(gw))
        t = time.monotonic()
        for _ in range(int(3 * TIMEOUT_S / 0.2)):
            try:
                s.sendall(b"1\r\n \r\n")
            except OSError:
                break
            if select.select([s], [], [], 0.2)[0]:
                break
        got, closed = read_until_closed(s, 10)
        took = time.monotonic() - t
    assert got.startswith(b"HTTP/1.1 408 ") and closed, got[:200]
    assert TIMEOUT_S * 0.8 <= took < TIMEOUT_S + 3, took


def stream_until_answered(gw, total: int, sent: list[int], answers: list[bytes]) -> None:
    """Send a chunked body of ``total`` bytes in 64 KiB chunks, stopping once an answer comes."""
    piece = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    with connect(gw, sndbuf=65536) as s:
        s.sendall(chunked_head(gw))
        n = 0
        while n < total and not select.select([s], [], [], 0)[0]:
            try:
                s.sendall(piece)
            except OSError:
                break
            n += len(piece)
        sent.append(n)
        answers.append(read_until_closed(s, 10)[0])


def test_a_chunked_body_over_the_limit_is_413_as_it_passes_and_never_held(gw):
    before = rss_mb(gw["pid"])
    total = 64 * 1024 * 1024  # offered by each of 8 clients at once: 512 MiB if it were held
    sent: list[int] = []
    answers: list[bytes] = []
    threads = [threading.Thread(target=stream_until_answered, args=(gw, total, sent, answers)) for _ in range(8)]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    grown = rss_mb(gw["pid"]) - before
    assert len(answers) == 8 and all(a.startswith(b"HTTP/1.1 413 ") for a in answers), [a[:100] for a in answers]
    assert max(sent) < total // 4, sent  # answered as the count passed, not after the whole body
    assert grown < 50, f"the gateway grew by {grown:.0f} MB"


def test_chunked_bodies_held_at_once_are_bounded_by_the_inflight_budget(gw, expected):
    # 12 clients each send 200 KiB of a body and hold it: 10 fit the 2 MiB budget
    pad = 200 * 1024
    body = BODY[:-1] + b" " * pad + b"}"
    first, rest = chunks(body[: pad + 10], 8192)[:-5], chunks(body[pad + 10 :], 8192)
    socks = [connect(gw) for _ in range(12)]
    try:
        for s in socks:
            s.sendall(chunked_head(gw) + first)
        refused: set[socket.socket] = set()
        deadline = time.monotonic() + 10
        while len(refused) < 2 and time.monotonic() < deadline:  # each refusal is answered at once
            refused |= set(select.select(socks, [], [], deadline - time.monotonic())[0])
        answers = []
        for s in socks:
            if s not in refused:
                try:
                    s.sendall(rest)
                except OSError:
                    pass
            answers.append(read_until_closed(s, 3)[0] if s in refused else recv_answer(s))
    finally:
        for s in socks:
            s.close()
    ok = [a for a in answers if a.startswith(b"HTTP/1.1 200 ")]
    busy = [a for a in answers if a.startswith(b"HTTP/1.1 503 ")]
    assert len(ok) + len(busy) == 12 and len(busy) >= 2 and len(ok) * pad <= INFLIGHT, [a[:60] for a in answers]
    assert all(b"Retry-After: 1" in a for a in busy)
    assert all(predictions(a) == expected for a in ok)
