"""Fuzzing the gateway's request parser and its scoring-JSON decoder (hypothesis, seeded).

Against a real gateway on 127.0.0.1: mangled request heads (random bytes spliced into a
valid request, sent in random pieces) and random JSON bodies never get a 500 (a 4xx, or 505
for an HTTP version other than 1.x), never hang
the connection, and the gateway answers a valid request after each. In process: the
decoder of big bodies (:func:`~mlops_jupyter.gateway.decoding.loads_yielding`) agrees with
``json.loads`` on any text, valid or not.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from conftest import Http, gateway_home, path, split_body
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_jupyter.gateway.decoding import loads_yielding

ROW = [5.1, 3.5, 1.4, 0.2]
FUZZ = settings(
    derandomize=True, max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, template_db: Path):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from mlops_jupyter import create_model_deployment, create_model_versioning

    with pytest.MonkeyPatch.context() as mp, gateway_home(tmp_path_factory, template_db, "fuzz") as home:
        mp.setenv("MLOPS_GATEWAY_WORKERS", "1")
        mp.setenv("MLOPS_GATEWAY_HEADER_TIMEOUT", "1")
        mp.setenv("MLOPS_GATEWAY_BODY_TIMEOUT", "1")
        X, y = load_iris(return_X_y=True, as_frame=True)
        v = create_model_versioning(tenant_id="acme", storage_path=home)
        v.create_version("iris", model=LogisticRegression(max_iter=300).fit(X, y), reference_data=X)
        d = create_model_deployment(tenant_id="acme", storage_path=home)
        assert d.deploy_model("iris", "1.0.0")["status"] == "deployed"
        port = json.loads((home / "gateway.json").read_text())["port"]
        yield {"port": port, "token": d.get_token()}


def exchange(port: int, pieces: list[bytes], timeout: float = 5.0) -> bytes:
    """Send ``pieces`` (one packet each) on a new connection, close our side, read it all."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for p in pieces:
                s.sendall(p)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the gateway answered and closed early
        got = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
        else:
            pytest.fail(f"the gateway kept the connection open for {timeout} s: {pieces!r}")
        return got


def statuses(answer: bytes) -> list[int]:
    return [int(line.split()[1]) for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


def assert_still_serves(gw) -> None:
    c = Http(gw["port"], gw["token"])
    assert c.call("POST", path(), split_body([ROW]))[0] == 200
    c.close()


def valid_request(token: str) -> bytes:
    body = json.dumps(split_body([ROW])).encode()
    return (
        f"POST {path()} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


NASTY = st.sampled_from(
    [b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b"\x00", b"\xff", b"Content-Length: 5\r\n", b"Content-Length: -1\r\n",
     b"Transfer-Encoding: chunked\r\n", b"\r\n\r\n", b"HTTP/1.1", b"GET / HTTP/1.1\r\n", b" Authorization: x\r\n",
     b"Expect: 100-continue\r\n", b"Connection: close\r\n", b"9" * 30]
)  # fmt: skip


@FUZZ
@given(
    cut=st.integers(0, 400),
    drop=st.integers(0, 20),
    insert=st.lists(st.one_of(NASTY, st.binary(max_size=12)), max_size=4),
    splits=st.lists(st.integers(1, 64), max_size=6),
)
def test_mangled_requests_never_get_a_500_nor_hang(gw, cut, drop, insert, splits):
    data = valid_request(gw["token"])
    cut = min(cut, len(data))
    data = data[:cut] + b"".join(insert) + data[cut + drop :]
    pieces, k = [], 0
    for n in splits:
        pieces.append(data[k : k + n])
        k += n
    pieces.append(data[k:])
    answer = exchange(gw["port"], [p for p in pieces if p])
    assert all(code < 500 or code in (501, 505) for code in statuses(answer)), answer[:300]  # 501: a mangled method
    assert_still_serves(gw)


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=30,
)
FORMATS = st.sampled_from(["dataframe_split", "dataframe_records", "instances", "inputs", "params", "other"])


@FUZZ
@given(
    payload=st.one_of(
        JSON,
        st.dictionaries(FORMATS, JSON, max_size=2),
        st.builds(
            lambda rows, cols: {"dataframe_split": {"columns": cols, "data": rows}},
            st.lists(st.lists(JSON_SCALARS, min_size=3, max_size=5), max_size=4),
            st.one_of(st.none(), st.lists(st.sampled_from(["sepal length (cm)", "sepal width (cm)", "x"]), max_size=5)),
        ),
    ),
    garble=st.one_of(st.none(), st.binary(max_size=6)),
)
def test_random_scoring_bodies_get_200_or_400_never_500(gw, payload, garble):
    body = json.dumps(payload).encode()
    if garble is not None:
        body = body[: len(body) // 2] + garble + body[len(body) // 2 :]
    c = Http(gw["port"], gw["token"])
    status, _, out = c.call("POST", path(), raw=body)
    c.close()
    assert status in (200, 400), (status, out)
    if status == 400:
        assert out["error_code"] in ("BAD_REQUEST", "MALFORMED_JSON") and len(out["message"]) < 1200
    assert_still_serves(gw)


@settings(derandomize=True, max_examples=400, deadline=None)
@given(
    text=st.one_of(
        st.recursive(
            JSON_SCALARS,
            lambda inner: st.one_of(
                st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=4), inner, max_size=4)
            ),
            max_leaves=40,
        ).map(lambda v: json.dumps({"instances": v, "x": {"data": [v, [v]]}})),
        st.text(alphabet='[]{},:" 0123456789.eE+-NaInfityrulsf\\\n', max_size=60),
    ),
    cut=st.integers(0, 80),
)
def test_the_big_body_decoder_agrees_with_json_loads(text, cut):
    for candidate in (text, text[:cut] + text[cut + 1 :]):
        try:
            expected = ("ok", repr(json.loads(candidate)))
        except ValueError:
            expected = ("error",)
        try:
            got = ("ok", repr(loads_yielding(candidate)))
        except ValueError:
            got = ("error",)
        assert got == expected, candidate
