"""Which HTTP engine for the gateway: the candidates on the same model, one run.

Every candidate serves the same thing: ``POST /invocations`` with a 1-row ``dataframe_split``
body, decoded with ``json.loads`` and predicted by the same scikit-learn LogisticRegression
(iris), answered as ``{"predictions": [...]}``. Only the HTTP engine differs:

- ``httptools-asyncio``: llhttp (through httptools) inside an asyncio ``Protocol``;
- ``httptools-uvloop``: the same protocol on uvloop's event loop;
- ``uvicorn``: uvicorn (httptools, uvloop) with a raw ASGI app, no framework;
- ``granian-rsgi``: granian (Rust hyper) with its RSGI interface, 1 worker.

Measured with ``wrk``: requests/s at 8 connections and p50 at 1 connection. This is the
measurement issue 12 asked for before choosing the gateway's parser.

Usage: python benchmarks/http_engines.py [--duration 5]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from serving import run_wrk, wait_ping

BODY = json.dumps({"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[5.1, 3.5, 1.4, 0.2]]}})
LUA = f"wrk.method = 'POST'\nwrk.body = '{BODY}'\nwrk.headers['Content-Type'] = 'application/json'\n"


def _model():
    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    m = LogisticRegression(max_iter=500).fit(X, y)

    def predict(body: bytes) -> bytes:
        if not body:
            return b"\n"
        rows = json.loads(body)["dataframe_split"]["data"]
        out = m.predict(np.asarray(rows, dtype=np.float64)).tolist()
        return b'{"predictions": ' + json.dumps(out).encode() + b"}"

    return predict


def serve_httptools(port: int, use_uvloop: bool) -> None:
    import asyncio

    import httptools

    predict = _model()

    class Conn(asyncio.Protocol):
        def connection_made(self, t):
            self.t = t
            self.p = httptools.HttpRequestParser(self)
            self.body = []

        def on_body(self, b):
            self.body.append(b)

        def on_message_complete(self):
            out = predict(b"".join(self.body))
            self.body = []
            self.t.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(out), out)
            )

        def data_received(self, data):
            self.p.feed_data(data)

    if use_uvloop:
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    loop.run_until_complete(loop.create_server(Conn, "127.0.0.1", port, backlog=1024))
    loop.run_forever()


def asgi_app_factory():
    predict = _model()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        chunks = []
        more = True
        while more:
            m = await receive()
            chunks.append(m.get("body", b""))
            more = m.get("more_body", False)
        out = predict(b"".join(chunks))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": out})

    return app


def rsgi_app_factory():
    predict = _model()

    async def app(scope, proto):
        body = await proto()
        out = predict(body)
        proto.response_bytes(200, [("content-type", "application/json")], out)

    return app


def serve(engine: str, port: int) -> None:
    if engine.startswith("httptools"):
        serve_httptools(port, engine.endswith("uvloop"))
    elif engine == "uvicorn":
        import uvicorn

        uvicorn.run(
            asgi_app_factory(),
            host="127.0.0.1",
            port=port,
            http="httptools",
            loop="uvloop",
            log_level="warning",
            access_log=False,
        )
    elif engine == "granian-rsgi":
        from granian.constants import Interfaces
        from granian.server import Server

        Server(
            f"{Path(__file__).stem}:rsgi_app_factory",
            address="127.0.0.1",
            port=port,
            interface=Interfaces.RSGI,
            workers=1,
            factory=True,
            log_enabled=False,
        ).serve()


ENGINES = ("httptools-asyncio", "httptools-uvloop", "uvicorn", "granian-rsgi")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--serve", nargs=2, metavar=("ENGINE", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0
    script = Path(tempfile.mkdtemp(prefix="mlops-bench-engines-")) / "post.lua"
    script.write_text(LUA)
    rows = []
    for engine in ENGINES:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", engine, str(port)],
            cwd=Path(__file__).parent,
            env=dict(os.environ, PYTHONPATH=str(Path(__file__).parent)),
        )
        try:
            wait_ping(port, timeout=60, proc=proc)
            url = f"http://127.0.0.1:{port}/invocations"
            run_wrk(url, script, 8, 2, 1)
            many = run_wrk(url, script, 8, 2, args.duration)
            one = run_wrk(url, script, 1, 1, args.duration)
            rows.append((engine, many["rps"], one["p50_ms"], one["p99_ms"]))
            print(f"{engine:<18} {many['rps']:>9.0f} req/s @8   p50 {one['p50_ms']:.3f} ms @1", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            time.sleep(0.3)
    print("\n| engine | req/s at 8 connections | p50 at 1 connection (ms) | p99 at 1 (ms) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.0f} | {r[2]:.3f} | {r[3]:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
