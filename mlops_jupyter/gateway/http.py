"""The gateway's HTTP/1.1 protocol: one asyncio ``Protocol`` per connection, nothing else.

This module is the only one that knows the wire format; the rest of the gateway sees a
request as ``dispatch(conn, method, target, headers, body)`` and answers with
``conn.respond(status, body, ctype, extra)``. (A later change replaces the hand-written
parser below with a maintained one; the swap stays inside this module.)

What is spoken:

- requests are parsed from the connection's buffer one at a time and answered strictly in
  order (keep-alive; HTTP/1.1 keeps the connection unless ``Connection: close``, HTTP/1.0
  only with ``Connection: keep-alive``); while one is being answered the next waits in the
  buffer;
- header names are lower-cased, values stripped; a request line that is not three words, a
  protocol other than ``HTTP/1.x`` or a header line without ``:`` gets 400 and the
  connection is closed;
- bodies need ``Content-Length`` (``Transfer-Encoding`` gets 411); ``Expect: 100-continue``
  gets ``100 Continue`` once the head is complete;
- limits: the head at most :data:`MAX_HEADER` bytes (else 431), the body at most
  :data:`MAX_BODY` (else 413: the announced body is read and dropped, up to
  :data:`MAX_DRAIN` bytes, then the connection is closed);
- every answer has ``Content-Type`` and ``Content-Length``, plus ``Connection: close`` when
  the connection ends after it; error bodies are ``{"error_code", "message"}`` JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any, Protocol

log = logging.getLogger("mlops_jupyter.gateway")

MAX_BODY = 8 * 1024 * 1024
MAX_HEADER = 64 * 1024
MAX_DRAIN = 64 * 1024 * 1024

REASONS = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    409: b"Conflict",
    411: b"Length Required",
    413: b"Payload Too Large",
    415: b"Unsupported Media Type",
    422: b"Unprocessable Entity",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
    505: b"HTTP Version Not Supported",
}


def error_body(code: str, message: str) -> bytes:
    """The JSON body of an error answer.

    Example:
        >>> error_body("NOT_FOUND", "No such path.")
        b'{"error_code": "NOT_FOUND", "message": "No such path."}'
    """
    return json.dumps({"error_code": code, "message": message}).encode()


class Application(Protocol):
    """What a connection needs from the application it serves."""

    connections: set[HttpConnection]
    codes: dict[int, int]

    def dispatch(self, conn: HttpConnection, method: str, target: str, headers: Mapping[str, str], body: bytes) -> None:
        """Answer one request (now, or later through ``conn.respond``)."""


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; requests are answered strictly in order."""

    __slots__ = ("buf", "busy", "drain", "gw", "in_loop", "keep_alive", "transport")

    def __init__(self, gw: Application) -> None:
        self.gw = gw
        self.transport: Any = None
        self.buf = bytearray()
        self.busy = False
        self.keep_alive = True
        self.drain = 0
        self.in_loop = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.gw.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.gw.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.drain:
            n = min(self.drain, len(data))
            self.drain -= n
            data = data[n:]
            if self.drain == 0 and self.transport is not None:
                self.transport.close()
            return
        self.buf += data
        if not self.busy:
            self.process()

    def process(self) -> None:
        if self.in_loop:
            return
        self.in_loop = True
        try:
            while not self.busy and self.transport is not None and self.buf:
                if not self._one():
                    break
        finally:
            self.in_loop = False

    def _one(self) -> bool:
        """Parse and dispatch one request; False if more bytes are needed."""
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEADER:
                self.fail(431, "HEADERS_TOO_LARGE", f"Request headers exceed {MAX_HEADER} bytes.")
            return False
        try:
            head = bytes(buf[:end]).decode("latin-1")
            lines = head.split("\r\n")
            method, target, proto = lines[0].split(" ")
            if not proto.startswith("HTTP/1."):
                raise ValueError(proto)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                k, sep, v = line.partition(":")
                if not sep:
                    raise ValueError(line)
                headers[k.strip().lower()] = v.strip()
        except ValueError:
            self.fail(400, "BAD_REQUEST", "Malformed HTTP request line or header.")
            return False
        if "transfer-encoding" in headers:
            self.fail(411, "LENGTH_REQUIRED", "Chunked request bodies are not supported; send Content-Length.")
            return False
        try:
            length = int(headers.get("content-length", "0"))
            if length < 0:
                raise ValueError
        except ValueError:
            self.fail(400, "BAD_REQUEST", f"Invalid Content-Length {headers.get('content-length')!r}.")
            return False
        if length > MAX_BODY:
            have = len(buf) - end - 4
            self.drain = min(max(length - have, 0), MAX_DRAIN)
            self.buf = bytearray()
            self.keep_alive = False
            self.busy = True
            self.respond(
                413,
                error_body(
                    "PAYLOAD_TOO_LARGE",
                    f"The request body has {length} bytes; at most "
                    f"{MAX_BODY} bytes ({MAX_BODY // (1024 * 1024)} MiB) are accepted.",
                ),
            )
            if self.drain == 0 and self.transport is not None:
                self.transport.close()
            return False
        total = end + 4 + length
        if len(buf) < total:
            if headers.get("expect", "").lower() == "100-continue" and len(buf) == end + 4:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return False
        body = bytes(buf[end + 4 : total])
        del buf[:total]
        conn_hdr = headers.get("connection", "").lower()
        self.keep_alive = conn_hdr != "close" if proto == "HTTP/1.1" else conn_hdr == "keep-alive"
        self.busy = True
        try:
            self.gw.dispatch(self, method, target, headers, body)
        except Exception as exc:  # a bug must not kill the connection or the process
            log.exception("gateway: unhandled error on %s %s", method, target.split("?")[0])
            if self.busy:
                self.respond(500, error_body("INTERNAL_ERROR", f"{type(exc).__name__}: {exc}"))
        return True

    def fail(self, status: int, code: str, message: str) -> None:
        self.keep_alive = False
        self.buf = bytearray()
        self.busy = True
        self.respond(status, error_body(code, message))

    def respond(self, status: int, body: bytes, ctype: bytes = b"application/json", extra: bytes = b"") -> None:
        t = self.transport
        self.busy = False
        self.gw.codes[status] = self.gw.codes.get(status, 0) + 1
        if t is None:
            return
        t.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n%s"
            % (
                status,
                REASONS.get(status, b"Unknown"),
                ctype,
                len(body),
                extra,
                b"" if self.keep_alive else b"Connection: close\r\n",
                body,
            )
        )
        if not self.keep_alive:
            if not self.drain:
                t.close()
            return
        if self.buf and not self.in_loop:
            self.process()
