"""Request methods: the ones a route may refuse (405 with ``Allow``) and the ones the gateway
does not recognise at all (501, RFC 9110 15.6.2), which :mod:`.http` answers before routing.

llhttp parses a fixed list of methods (RFC 9110's, WebDAV's, RTSP's, PURGE, QUERY...) and
refuses any other token at its first byte off that list, without saying which token: the
request line is then looked for in the bytes at hand (:func:`unknown_method`), after what
earlier packets held of the method when it began in one of them (:func:`method_head`).
"""

from __future__ import annotations

import re

import httptools

KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"))
"""RFC 9110's methods and PATCH (RFC 5789): one a route does not take is 405 with ``Allow``. Any
other (one llhttp parses, or a token it does not know) is 501, then close."""
SERVED_METHODS = "GET, HEAD, POST"
METHOD_TOKEN = re.compile(rb"(?:\A|\n)([!#$%&'*+.^_`|~0-9A-Za-z-]+)(?: |\Z)")
"""A request line's method: an RFC 9110 token at the start of a line, then a space (or the end
of the bytes at hand: a long one is parsed a slice at a time)."""
NAME_MAX = 64
"""Characters of an unknown method's name repeated in the answer."""
HEAD_MAX = 128
"""Bytes kept of a method token still arriving (llhttp refuses an unknown one within its
first 20 bytes: no method it knows is longer)."""
_TOKEN_TAIL = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]*\Z")


def unknown_method(data: bytes | memoryview) -> str | None:
    """The method of the request whose method llhttp refused in ``data``, if it is a well-formed
    token (then 501, else the bytes are garbage: 400); None if it is not found in ``data``.

    llhttp knows a fixed list of methods and refuses any other token at its first byte off that
    list; the token is the first at the start of a line in ``data`` that a fresh llhttp refuses.

    Example:
        >>> unknown_method(b"GET /ping HTTP/1.1\\r\\nHost: x\\r\\n\\r\\nBREW /pot HTTP/1.1\\r\\n")
        'BREW'
        >>> unknown_method(bytes.fromhex("1603010200")) is None
        True
    """
    for m in METHOD_TOKEN.finditer(bytes(data)):
        try:
            httptools.HttpRequestParser(None).feed_data(m.group(1) + b" / HTTP/1.1\r\n")
        except httptools.HttpParserInvalidMethodError:
            return m.group(1).decode("ascii")
    return None


def method_head(before: bytes, data: bytes | memoryview) -> bytes:
    """What has arrived so far of a request's method that ``data`` (a packet, or a slice of
    one) ended inside of: ``before`` (what earlier packets held of it) continued by ``data``
    when ``data`` is all token characters, else the token characters that end ``data``.
    Kept so a method split across packets is still named by :func:`unknown_method`.

    Example:
        >>> method_head(b"", b"GET /ping HTTP/1.1\\r\\n\\r\\nBR")
        b'BR'
        >>> method_head(b"BR", b"E")
        b'BRE'
    """
    end = bytes(data[-HEAD_MAX:])
    tail = _TOKEN_TAIL.search(end).group()
    head = before + tail if len(tail) == len(end) == len(data) else tail
    return head[:HEAD_MAX]


def not_implemented_text(method: str) -> str:
    """The message of the 501 answer to ``method`` (its name capped to :data:`NAME_MAX` characters).

    Example:
        >>> not_implemented_text("BREW")[:40]
        "The method 'BREW' is not implemented her"
    """
    if len(method) > NAME_MAX:
        method = f"{method[:NAME_MAX]}... (cut: {len(method)} characters in all)"
    return (
        f"The method {method!r} is not implemented here; the gateway serves {SERVED_METHODS} "
        "(each route's 405 answer says which in its Allow header)."
    )
