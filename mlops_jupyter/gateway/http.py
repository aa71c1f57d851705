"""The gateway's HTTP/1.1 protocol: llhttp (through httptools) in one asyncio ``Protocol`` per connection.

This module is the only one that knows the wire format; the rest of the gateway sees a
request as ``dispatch(conn, method, target, headers, body)`` and answers with
``conn.respond(status, body, ctype, extra)``. Parsing is llhttp's (the parser of Node.js,
maintained and fuzzed), used through httptools; it was chosen by measurement
(``benchmarks/http_engines.py``: it was the fastest of httptools in this protocol,
uvicorn with a raw ASGI app and granian, on the same model) and because the limits below
need the protocol's hands on the socket.

Framing is strict RFC 9112, as llhttp is by default: a duplicate or malformed
``Content-Length``, an obs-folded header line, a bare LF, ``Transfer-Encoding`` together
with ``Content-Length``, a ``Transfer-Encoding`` whose last coding is not ``chunked``, a
malformed chunk size: 400 and the connection is closed. A ``Transfer-Encoding: chunked``
body (RFC 9112 7.1: a recipient MUST parse it; Go's net/http, requests with a generator
body and streaming Java/Node clients send it) is decoded by llhttp; another coding before
``chunked`` (``gzip, chunked``) is 415, as nothing here decompresses. Trailer fields are
read and dropped, never merged into the request's headers (a trailer ``Authorization``
authenticates nothing). A protocol other than HTTP/1.0 or 1.1 gets 505 (a request
line without one, 400); ``Upgrade``/``CONNECT`` are answered and the connection closed.
An HTTP/1.1 request without ``Host`` is 400 (RFC 9112 3.2); an absolute-form target
(``GET http://host/ping``, what proxies send) is served as its path and query. A HEAD is
answered as its GET would be, without the body (the application routes HEAD like GET).
``Expect: 100-continue`` is answered ``100 Continue`` once the request is admitted (its
401/403/404/405/413/503 instead, before any body byte, then the close: RFC 9110 10.1.1; a
client may send the body anyway, which must not be read as requests), after the answers to
the requests before it and only to HTTP/1.1 clients. A method the gateway does not
recognise is 501, then close (RFC 9110 15.6.2; :mod:`.methods`); a known one a route does
not take, 405 with ``Allow``. An HTTP/1.0 connection kept alive says so
(``Connection: keep-alive``), else such a client waits for the close. Every answer
carries ``Date`` (RFC 9110 6.6.1; formatted once a second by :class:`~.http_state.HttpState`).

Requests are answered strictly in order; pipelined ones wait in a queue, and while one
waits the connection is not read. Limits (:class:`~mlops_jupyter.config.settings.GatewayLimits`,
each a ``MLOPS_GATEWAY_*`` setting), each answered cleanly:

- header, body (the whole body, chunked or not) and keep-alive idle timeouts (408, 408, a
  silent close), checked by one
  sweep of all connections a few times per timeout rather than a timer per request;
- at most ``max_connections`` connections: one more gets ``503`` with ``Retry-After``;
  at most :data:`~.http_state.OVERFLOW_MAX` such refusals are pending at once (each lingers
  while its answer is read), further connections are closed without an answer, so a flood
  over the cap never takes the file descriptors kept for the logs;
- the request line and headers at most ``max_header_bytes``, counted as the parser
  completes them (so however the bytes arrive) and, for a line that never ends, as bytes
  received without one: 431 (414 when the target alone is longer); at most
  ``max_headers`` lines: 431;
- a body at most ``max_body_bytes`` (413), and all bodies held at once at most
  ``max_inflight_body_bytes`` (503 with ``Retry-After``): decided from ``Content-Length``
  before any body byte is kept, or for a chunked body counted as its bytes arrive (413 or
  503 as soon as the count passes, then close); the chunk-size lines, chunk extensions and
  trailer fields between two pieces of data at most ``max_header_bytes`` (431);
- authentication decided from the headers (``Application.admit``) before any body is
  buffered: 401/403, then close;
- write back-pressure: above ``write_buffer_bytes`` of unsent answers the connection is
  no longer read nor its queued requests answered, until the client reads; such a
  connection that drains nothing for ``send_timeout`` seconds is closed, and all their
  unsent answers together are kept under ``max_outbound_bytes`` by closing those holding
  the most (:meth:`~.http_state.HttpState.hold`), each counted in ``/metrics``;
- an answer that closes the connection half-closes it and drops what the client still
  sends for a short while (so the client reads the answer instead of a reset);
- accept errors (EMFILE, ENFILE...) are logged once per ``accept_error_interval`` with
  their count, never one traceback per attempt.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

import httptools

from mlops_jupyter.gateway.http_state import OVERFLOW_MAX, HttpState, unsent_bytes
from mlops_jupyter.gateway.methods import KNOWN_METHODS, method_head, not_implemented_text, unknown_method

log = logging.getLogger("mlops_jupyter.gateway")

ERROR_TEXT_MAX = 1024
"""Characters of an error message kept in answers and in the prediction log."""
LINGER_S = 2.0
"""Seconds a closing connection's further input is read and dropped, at most."""
LINGER_BYTES = 64 * 1024 * 1024
"""Bytes a closing connection may still send (and have dropped) before it is cut."""
FEED_BYTES = 2048
"""While parsed requests wait, received bytes are parsed this many at a time (the rest later)."""
PUMP_BATCH = 4
"""Queued requests of one connection answered per loop turn before others get theirs."""
PIECES_PER_TURN = 1024
"""Pieces of a chunked body decoded per loop turn before others get theirs (a body of
1-byte chunks costs ~0.35 us a piece: a 256 KiB read of them would hold the loop 15 ms)."""

REASONS = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    409: b"Conflict",
    411: b"Length Required",
    413: b"Payload Too Large",
    414: b"URI Too Long",
    415: b"Unsupported Media Type",
    422: b"Unprocessable Entity",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
}

# connection phases (what the sweep checks the deadline of)
IDLE, HEAD, BODY, BUSY, CLOSING = range(5)
NEVER = float("inf")
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
CLOSE = b"Connection: close\r\n"
KEEP_ALIVE = b"Connection: keep-alive\r\n"
"""Said to an HTTP/1.0 client whose connection stays open: without it, it waits for the close."""


def cap_text(text: str, limit: int = ERROR_TEXT_MAX) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was.

    Example:
        >>> cap_text("x" * 2000, 10)
        'xxxxxxxxxx... (cut: 2000 characters in all)'
        >>> cap_text("short")
        'short'
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... (cut: {len(text)} characters in all)"


def origin_form(url: bytes) -> str:
    """The path and query of an absolute-form request target (RFC 9112 3.2.2: a server MUST
    accept it), which proxies send; ``*`` (``OPTIONS *``) is kept as is.

    Example:
        >>> origin_form(b"http://127.0.0.1:8080/ping?x=1")
        '/ping?x=1'
        >>> origin_form(b"http://example.com")
        '/'
    """
    if url == b"*":
        return "*"
    u = httptools.parse_url(url)  # llhttp's URL parser; raises HttpParserInvalidURLError
    target = (u.path or b"/").decode("latin-1")
    return f"{target}?{u.query.decode('latin-1')}" if u.query else target


def transfer_coding_refusal(te: str) -> Refusal | None:
    """Why a request with ``Transfer-Encoding: te`` is refused, or None for plain ``chunked``.

    Not chunked last: the body has no length (RFC 9112 6.3: 400). Another coding before
    chunked (``gzip, chunked``): 415, as for an unsupported ``Content-Encoding`` (RFC 9110
    15.5.16), since the gateway does not decompress; the client can resend without it.

    Example:
        >>> transfer_coding_refusal("chunked") is None
        True
        >>> transfer_coding_refusal("gzip, chunked").status
        415
        >>> transfer_coding_refusal("chunked, gzip").status
        400
    """
    codings = [c.strip().lower() for c in te.split(",")]
    if codings[-1] != "chunked":  # RFC 9112 6.3: MUST be 400
        return Refusal(
            400,
            "BAD_REQUEST",
            f"Transfer-Encoding {te!r} does not end in chunked: the body has no length; "
            "send Content-Length or Transfer-Encoding: chunked.",
        )
    if len(codings) > 1:
        return Refusal(
            415,
            "UNSUPPORTED_TRANSFER_CODING",
            f"Transfer-Encoding {te!r}: only chunked is decoded here, not {', '.join(codings[:-1])}; "
            "send the body uncompressed, with Transfer-Encoding: chunked or Content-Length.",
        )
    return None


def error_body(code: str, message: str) -> bytes:
    """The JSON body of an error answer (the message capped by :func:`cap_text`).

    Example:
        >>> error_body("NOT_FOUND", "No such path.")
        b'{"error_code": "NOT_FOUND", "message": "No such path."}'
    """
    return json.dumps({"error_code": code, "message": cap_text(message)}).encode()


def not_implemented(method: str) -> Refusal:
    """The 501 of a method the gateway does not recognise (RFC 9110 15.6.2; see :mod:`.methods`)."""
    return Refusal(501, "NOT_IMPLEMENTED", not_implemented_text(method))


class Refusal(Exception):
    """A request answered with an error before its body is read; the connection closes."""

    def __init__(self, status: int, code: str, message: str, extra: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


class Application(Protocol):
    """What a connection needs from the application it serves."""

    connections: set[HttpConnection]
    codes: dict[int, int]
    http: HttpState

    def admit(self, method: str, target: str, headers: Mapping[str, str]) -> None:
        """Raise :class:`Refusal` if the request must not be read further (e.g. no valid token)."""

    def route_refusal(self, method: str, target: str) -> Refusal | None:
        """The 404 or 405 ``dispatch`` would answer, from the method and target alone (None: neither)."""

    def dispatch(self, conn: HttpConnection, method: str, target: str, headers: Mapping[str, str], body: bytes) -> None:
        """Answer one request (now, or later through ``conn.respond``)."""


class Request:
    """One parsed request waiting for (or getting) its answer."""

    __slots__ = ("body", "headers", "keep_alive", "legacy", "method", "reserved", "target")

    def __init__(self, method: str, target: str, headers: dict[str, str], keep_alive: bool, reserved: int) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.keep_alive = keep_alive
        self.reserved = reserved
        self.legacy = False  # HTTP/1.0: a kept-alive connection must be announced
        self.body: list[bytes] = []


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; requests are answered strictly in order."""

    __slots__ = (
        "acc",
        "backlog",
        "busy",
        "chunked",
        "closed_write",
        "continue_pending",
        "counted",
        "current",
        "deadline",
        "eof",
        "err",
        "gw",
        "head_bytes",
        "in_loop",
        "keep_alive",
        "lim",
        "linger_left",
        "loop",
        "method_head",
        "nheaders",
        "overflow",
        "parser",
        "phase",
        "pieces",
        "queue",
        "read_paused",
        "refusal",
        "req",
        "seen",
        "state",
        "transport",
        "unseen",
        "unsent",
        "url",
        "window",
        "write_paused",
    )

    def __init__(self, gw: Application) -> None:
        self.gw = gw
        self.state = gw.http
        self.lim = gw.http.limits
        self.transport: Any = None
        self.loop: Any = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[Request] = deque()
        self.backlog = b""
        self.current: Request | None = None
        self.req: Request | None = None
        self.busy = False
        self.chunked = False
        self.closed_write = False
        self.continue_pending = False
        self.keep_alive = True
        self.in_loop = False
        self.read_paused = False
        self.write_paused = False
        self.counted = False
        self.eof = False
        self.phase = IDLE
        self.deadline = NEVER
        self.err: Refusal | None = None
        self.refusal: Refusal | None = None
        self.url = b""
        self.method_head = b""  # the method so far, while the request line is still in it
        self.head_bytes = 0
        self.unseen = 0
        self.unsent = 0
        self.seen = False
        self.acc = 0
        self.nheaders = 0
        self.linger_left = 0
        self.overflow = False
        self.pieces = 0
        self.window = -1  # the balancing window in which it was last counted busy

    # -- connection lifecycle ------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.loop = loop = asyncio.get_running_loop()
        state = self.state
        state.attach(loop, self.gw.connections)
        self.gw.connections.add(self)
        transport.set_write_buffer_limits(high=self.lim.write_buffer_bytes, low=self.lim.write_buffer_bytes // 4)
        if state.active >= state.max_connections:
            if state.overflow >= OVERFLOW_MAX:  # a flood over the cap: no answer, no linger
                state.overflow_closed += 1
                transport.abort()
                return
            state.overflow += 1
            self.overflow = True
            self.keep_alive = False
            self.busy = True
            self.respond(
                503,
                error_body(
                    "TOO_MANY_CONNECTIONS",
                    f"The gateway serves at most {state.max_connections} connections at once; retry shortly.",
                ),
                extra=b"Retry-After: 1\r\n",
            )
            return
        state.active += 1
        self.counted = True
        self.deadline = loop.time() + self.lim.header_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.gw.connections.discard(self)
        if self.window == self.state.window:  # busy in this balancing window, and gone
            self.state.window_busy -= 1
        self.state.held.discard(self)
        if self.counted:
            self.state.active -= 1
            self.counted = False
        if self.overflow:
            self.state.overflow -= 1
            self.overflow = False
        self._drop_queue()
        for r in (self.current, self.req):
            if r is not None:
                self.state.inflight_body -= r.reserved
                r.reserved = 0

    def pause_writing(self) -> None:
        self.write_paused = True
        self.unsent = unsent_bytes(self.transport)
        self.deadline = min(self.deadline, self.loop.time() + self.state.send_timeout)
        self.state.hold(self)

    def resume_writing(self) -> None:
        self.write_paused = False
        self.state.held.discard(self)
        if self.phase == IDLE and not self.queue:
            self.deadline = self.loop.time() + self.lim.idle_timeout
        self.pump()

    def expire(self) -> None:
        """The sweep found this connection past its deadline."""
        t = self.transport
        if t is None:
            return
        if self.write_paused:  # closed unless the client read some of its answers since the last look
            left = unsent_bytes(t)
            if left < self.unsent:
                self.unsent = left
                self.deadline = self.loop.time() + self.state.send_timeout
            else:
                self.state.send_timed_out(self)
            return
        if self.phase in (IDLE, CLOSING, BUSY):
            t.close()
            return
        what = "headers" if self.phase == HEAD else "body"
        secs = self.lim.header_timeout if self.phase == HEAD else self.lim.body_timeout
        self._refuse(Refusal(408, "REQUEST_TIMEOUT", f"The request's {what} did not arrive within {secs:g} s."))

    def eof_received(self) -> bool | None:
        if self.phase == CLOSING or (not self.busy and not self.queue and not self.backlog):
            return None  # close
        self.eof = True  # closed by pump() once the pending answers are written
        return True  # keep the write side open until then

    # -- reading -------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.phase == CLOSING:
            self.linger_left -= len(data)
            if self.linger_left <= 0 and self.transport is not None:
                self.transport.abort()
            return
        if self.backlog:  # arrived before reading paused: parse it after what waits
            self.backlog += data
            return
        if len(data) <= FEED_BYTES:
            self._parse(data)
        else:
            self._feed(data)
        if self.queue:
            self.pump()
            # requests still queued wait behind one being answered (pipelining): read no
            # more until they are answered (a lone request costs no pause/resume syscalls)
            if self.queue and not self.read_paused and self.transport is not None:
                self.read_paused = True
                self.transport.pause_reading()

    def _feed(self, data: bytes) -> None:
        """Parse ``data`` a slice at a time; once requests are queued, or a turn's worth of chunk
        pieces is decoded, keep the rest for later, so one client pipelining thousands of
        requests or sending a body of 1-byte chunks costs the loop a slice per turn."""
        view = memoryview(data)
        k = 0
        self.pieces = 0
        while k < len(view) and self.phase != CLOSING and self.transport is not None:
            if self.queue or self.pieces > PIECES_PER_TURN:
                self.backlog = bytes(view[k:])
                if not self.queue:  # tiny chunks: the rest on a later turn, with reading paused
                    if not self.read_paused:
                        self.read_paused = True
                        self.transport.pause_reading()
                    self.loop.call_soon(self._resume_backlog)
                return
            self._parse(view[k : k + FEED_BYTES])
            k += FEED_BYTES

    def _resume_backlog(self) -> None:
        data, self.backlog = self.backlog, b""
        if data and self.transport is not None and self.phase != CLOSING:
            self._feed(data)
            if self.queue:
                self.pump()
            elif not self.backlog and self.read_paused and not self.busy:
                self.read_paused = False
                self.transport.resume_reading()

    def _parse(self, data: bytes | memoryview) -> None:
        self.seen = False
        self.acc = 0
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # no protocol switch here: answer what was read, then close
            if self.queue:
                self.queue[-1].keep_alive = False
                self.phase = CLOSING
                self.linger_left = LINGER_BYTES
            else:
                self._refuse(Refusal(400, "BAD_REQUEST", "Protocol upgrades and CONNECT are not served here."))
                return
        except Exception as exc:
            if self.transport is None:
                return
            method = None
            if isinstance(exc, httptools.HttpParserInvalidMethodError):
                # seen: the method's first byte is in this packet; else it began in earlier ones
                method = unknown_method(data if self.seen else self.method_head + bytes(data))
            err = self.err or (
                not_implemented(method) if method else Refusal(400, "BAD_REQUEST", f"Malformed HTTP request: {exc}.")
            )
            self.err = None
            self._refuse(err)
            return
        if self.phase == HEAD and not self.url:  # the request line is still in its method
            self.method_head = method_head(b"" if self.seen else self.method_head, data)
        if self.phase == HEAD:  # bytes of this head no callback has accounted for yet
            self.unseen = max(len(data) - self.acc, 0) if self.seen else self.unseen + len(data)
            if self.unseen + self.head_bytes > self.lim.max_header_bytes:
                self._refuse(self._too_large_head())
        elif self.chunked and self.phase == BODY:  # chunk-size lines, extensions, trailers since the last data
            self.unseen = max(len(data) - self.acc, 0) if self.seen else self.unseen + len(data)
            if self.unseen > self.lim.max_header_bytes:
                self._refuse(
                    Refusal(
                        431,
                        "HEADERS_TOO_LARGE",
                        f"The chunked body has more than {self.lim.max_header_bytes} bytes of chunk-size lines, "
                        "chunk extensions or trailer fields between two pieces of data.",
                    )
                )

    def _too_large_body(self, size: str) -> Refusal:
        lim = self.lim
        return Refusal(
            413,
            "PAYLOAD_TOO_LARGE",
            f"The request body has {size} bytes; at most {lim.max_body_bytes} bytes "
            f"({lim.max_body_bytes / (1024 * 1024):g} MiB) are accepted.",
        )

    def _reserve(self, req: Request, n: int) -> None:
        """Count ``n`` more body bytes of ``req`` in the budget of all bodies held at once (503 past it)."""
        state = self.state
        if state.inflight_body + n > self.lim.max_inflight_body_bytes:
            self.err = Refusal(
                503,
                "BUSY",
                "The gateway holds as many request bodies as it may at once; retry shortly.",
                b"Retry-After: 1\r\n",
            )
            raise self.err
        state.inflight_body += n
        req.reserved += n

    def _too_large_head(self) -> Refusal:
        return Refusal(
            431, "HEADERS_TOO_LARGE", f"The request line and headers exceed {self.lim.max_header_bytes} bytes."
        )

    # httptools callbacks (the parser calls them during feed_data)
    def on_message_begin(self) -> None:
        self.seen = True
        self.url = b""
        self.head_bytes = 0
        self.nheaders = 0
        self.unseen = 0
        self.chunked = False
        self.phase = HEAD
        self.req = Request("", "", {}, True, 0)
        self.deadline = self.loop.time() + self.lim.header_timeout

    def on_url(self, url: bytes) -> None:
        self.seen = True
        self.url += url
        self.head_bytes += len(url)
        self.acc += len(url)
        if self.head_bytes > self.lim.max_header_bytes:
            self.err = Refusal(414, "URI_TOO_LONG", f"The request target exceeds {self.lim.max_header_bytes} bytes.")
            raise self.err

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.phase != HEAD:  # a trailer field after a chunked body: never one of the request's headers
            return  # (its bytes count as framing in _parse)
        self.seen = True
        self.head_bytes += len(name) + len(value) + 4
        self.acc += len(name) + len(value) + 4
        self.nheaders += 1
        if self.head_bytes > self.lim.max_header_bytes:
            self.err = self._too_large_head()
            raise self.err
        if self.nheaders > self.lim.max_headers:
            self.err = Refusal(431, "HEADERS_TOO_LARGE", f"The request has more than {self.lim.max_headers} headers.")
            raise self.err
        key = name.decode("latin-1").lower()
        headers = self.req.headers
        if key in headers:
            if key in ("authorization", "host", "content-type", "x-request-key", "expect"):
                self.err = Refusal(400, "BAD_REQUEST", f"The header {key!r} is given more than once.")
                raise self.err
            headers[key] += ", " + value.decode("latin-1").strip()
        else:
            headers[key] = value.decode("latin-1").strip()

    def on_headers_complete(self) -> None:
        p = self.parser
        req = self.req
        version = p.get_http_version()
        if version == "0.9":  # a request line without a protocol
            self.err = Refusal(400, "BAD_REQUEST", "The request line has no HTTP version (HTTP/1.1 is served).")
            raise self.err
        if version not in ("1.1", "1.0"):
            self.err = Refusal(505, "HTTP_VERSION_NOT_SUPPORTED", f"HTTP/{version} is not served; use HTTP/1.1.")
            raise self.err
        req.method = p.get_method().decode("ascii")
        if req.method not in KNOWN_METHODS:
            self.err = not_implemented(req.method)
            raise self.err
        self.acc += len(req.method) + 14  # the request line's other bytes and the empty line
        if self.url[:1] == b"/":
            req.target = self.url.decode("latin-1")
        else:
            try:
                req.target = origin_form(self.url)
            except httptools.HttpParserInvalidURLError:  # CONNECT's host:port, a bare word...
                self.err = Refusal(
                    400,
                    "BAD_REQUEST",
                    f"The request target {self.url.decode('latin-1')!r} is neither a path nor an http(s) URL.",
                )
                raise self.err from None
        req.keep_alive = p.should_keep_alive()
        req.legacy = version == "1.0"
        headers = req.headers
        if version == "1.1" and "host" not in headers:  # RFC 9112 3.2: MUST be answered 400
            self.err = Refusal(400, "BAD_REQUEST", "An HTTP/1.1 request needs a Host header.")
            raise self.err
        if "transfer-encoding" in headers:
            self.err = transfer_coding_refusal(headers["transfer-encoding"])
            if self.err is not None:
                raise self.err
            self.chunked = True  # llhttp decodes the chunks; on_body counts them against the limits
        length = int(headers.get("content-length", "0"))  # llhttp checked it: digits only, once
        lim = self.lim
        if length > lim.max_body_bytes:
            self.err = self._too_large_body(str(length))
            raise self.err
        try:
            self.gw.admit(req.method, req.target, headers)
        except Refusal as exc:
            self.err = exc
            raise
        if length or self.chunked:
            expects = version == "1.1" and headers.get("expect", "").lower() == "100-continue"
            if expects:  # its 404/405 instead of 100 Continue: the client need not send the body
                self.err = self.gw.route_refusal(req.method, req.target)
                if self.err is not None:
                    raise self.err
            if length:
                self._reserve(req, length)
            self.phase = BODY
            self.deadline = self.loop.time() + lim.body_timeout
            if expects:
                # after the answers to the requests before it, never ahead of them (RFC 9110 15.2)
                if self.busy or self.queue:
                    self.continue_pending = True
                else:
                    self.transport.write(CONTINUE)

    def on_body(self, body: bytes) -> None:
        self.continue_pending = False  # the client did not wait for it
        self.acc += len(body)
        if self.chunked:
            self._chunk_data(body)
        else:
            self.req.body.append(body)

    def _chunk_data(self, body: bytes) -> None:
        """Keep a piece of chunked body once the limits allow it: its size is known only as it arrives.

        Pieces go into one ``bytearray`` (a body of a million one-byte chunks must not become a
        million ``bytes`` objects, each ~40 times its byte).
        """
        req = self.req
        n = len(body)
        if req.reserved + n > self.lim.max_body_bytes:
            self.err = self._too_large_body(f"more than {self.lim.max_body_bytes}")
            raise self.err
        self._reserve(req, n)
        self.seen = True
        self.pieces += 1
        if req.body:
            req.body[0] += body
        else:
            req.body.append(bytearray(body))

    def on_message_complete(self) -> None:
        req = self.req
        self.req = None
        if self.chunked and req.body:
            req.body[0] = bytes(req.body[0])
        self.continue_pending = False
        self.phase = BUSY
        self.deadline = NEVER
        self.queue.append(req)

    # -- answering -----------------------------------------------------------------------
    def pump(self) -> None:
        """Dispatch queued requests, one at a time, while the client reads the answers."""
        if self.in_loop:
            return
        self.in_loop = True
        turn = 0
        try:
            while not self.busy and self.queue and not self.write_paused and self.transport is not None:
                turn += 1
                if turn > PUMP_BATCH:  # let the other connections have the loop, then go on
                    self.loop.call_soon(self.pump)
                    return
                req = self.queue.popleft()
                self.current = req
                self.busy = True
                self.keep_alive = req.keep_alive
                body = b"".join(req.body) if len(req.body) != 1 else req.body[0]
                req.body = []
                try:
                    self.gw.dispatch(self, req.method, req.target, req.headers, body)
                except Exception as exc:  # a bug must not kill the connection or the process
                    log.exception("gateway: unhandled error on %s %s", req.method, req.target.split("?")[0])
                    if self.busy:
                        self.respond(500, error_body("INTERNAL_ERROR", f"{type(exc).__name__}: {exc}"))
        finally:
            self.in_loop = False
        if not self.busy and not self.queue and self.transport is not None:
            if self.refusal is not None:
                err, self.refusal = self.refusal, None
                self.close_with(err.status, err.code, err.message, err.extra)
                return
            if self.backlog:
                self.loop.call_soon(self._resume_backlog)
                return
            if self.eof:  # the client sent all it will send and has every answer
                self.transport.close()
                return
            if self.read_paused:
                self.read_paused = False
                self.transport.resume_reading()
            if self.continue_pending:  # the request after the ones just answered awaits it
                self.continue_pending = False
                self.transport.write(CONTINUE)
            if self.phase == BUSY:
                self.phase = IDLE
                if not self.write_paused:  # else the send timeout runs (resume_writing starts this one)
                    self.deadline = self.loop.time() + self.lim.idle_timeout

    def _refuse(self, err: Refusal) -> None:
        """Answer a request refused before (or while) its body arrives, then close.

        Requests before it that are still being answered are answered first (in order);
        meanwhile further input is dropped.
        """
        if self.busy or self.queue:
            self.refusal = err
            self.phase = CLOSING
            self.deadline = NEVER
            self.linger_left = LINGER_BYTES
            return
        self.close_with(err.status, err.code, err.message, err.extra)

    def _drop_queue(self) -> None:
        for r in self.queue:
            self.state.inflight_body -= r.reserved
            r.reserved = 0
        self.queue.clear()

    def close_with(self, status: int, code: str, message: str, extra: bytes = b"") -> None:
        """Answer now (whatever is queued) and close the connection after a linger."""
        self.keep_alive = False
        self.busy = True
        self.respond(status, error_body(code, message), extra=extra)

    def respond(self, status: int, body: bytes, ctype: bytes = b"application/json", extra: bytes = b"") -> None:
        t = self.transport
        self.busy = False
        cur = self.current
        length = len(body)
        if cur is not None:
            self.current = None
            if self.keep_alive:  # balancing the workers (see .balance): close or count this one
                st = self.state
                if st.shed > 0 and not self.queue and self.req is None and not self.backlog:
                    st.shed -= 1
                    st.rebalanced += 1
                    self.keep_alive = False
                elif self.window != st.window:
                    self.window = st.window
                    st.window_busy += 1
            if cur.method == "HEAD":  # the answer a GET would get, without its body (RFC 9110 9.3.2)
                body = b""
            if cur.reserved:
                self.state.inflight_body -= cur.reserved
                cur.reserved = 0
        codes = self.gw.codes
        codes[status] = codes.get(status, 0) + 1
        if t is None or self.closed_write:
            return
        t.write(
            b"HTTP/1.1 %d %s\r\n%sContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n%s"
            % (
                status,
                REASONS.get(status, b"Unknown"),
                self.state.date,
                ctype,
                length,
                extra,
                CLOSE if not self.keep_alive else KEEP_ALIVE if cur is not None and cur.legacy else b"",
                body,
            )
        )
        if not self.keep_alive:
            self._linger(t)
            return
        if not self.in_loop:
            self.pump()

    def _linger(self, t: Any) -> None:
        """Half-close after the last answer; drop further input for a while, then close."""
        self.phase = CLOSING
        self.closed_write = True
        self.refusal = None
        self._drop_queue()
        if self.req is not None:
            self.state.inflight_body -= self.req.reserved
            self.req.reserved = 0
            self.req = None
        self.linger_left = LINGER_BYTES
        self.deadline = self.loop.time() + min(LINGER_S, self.lim.idle_timeout)
        if self.read_paused:
            self.read_paused = False
            t.resume_reading()
        try:
            if t.can_write_eof():
                t.write_eof()
            else:
                t.close()
        except OSError:
            t.close()
