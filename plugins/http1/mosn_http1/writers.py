"""HTTP/1 writers: messages to bytes, with the framing decisions (h11's
``_writers.py`` role). No socket, transport, connection or loop here: a writer turns
a head, body bytes, trailers into the bytes to send, and keeps the state of its half
of the exchange in :mod:`mosn_http1.state`'s table.

How a body is framed (RFC 9112 6): by the head's ``content-length`` when it has one,
else ``chunked`` (HTTP/1.1), else by closing the connection (an HTTP/1.0 response);
no body at all for ``HEAD``, ``1xx``, ``204`` and ``304`` (RFC 9110 6.4.1). The
stream adapters (:mod:`mosn_http1.server`, :mod:`mosn_http1.client`) subclass these,
so a stream carries its writer's state without another object per request.
"""

from __future__ import annotations

from mosn.stream.types import Headers, RequestHead, ResponseHead
from mosn_http1 import frames
from mosn_http1.readers import NO_BODY_STATUSES
from mosn_http1.state import (
    CLIENT,
    DATA,
    END,
    HEAD,
    HEAD_END,
    IDLE,
    INTERIM,
    SERVER,
    SWITCH,
    TABLE,
    advance,
)

IDENTITY, CHUNKED, NO_BODY = 0, 1, 2
"""How a body is written: as it is (a length, or the connection's close, ends it),
in chunks, or not at all."""
_REQUEST = TABLE[CLIENT]
_RESPONSE = TABLE[SERVER]
# The writers look the next state up in these rows themselves (``advance`` is called
# only to refuse): one call fewer on the path every message takes.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
"""Methods whose empty request still gets ``content-length: 0`` (RFC 9110 8.6: a
server may answer 411 to one without it)."""


class ResponseWriter:
    """The server role's half: one response, to a request read with ``method``."""

    __slots__ = ("method", "http10", "keep_alive", "upgrade", "close_after", "framing",
                 "response")

    def __init__(self, method: str, http10: bool, keep_alive: bool, upgrade: bool) -> None:
        self.method = method
        self.http10 = http10
        self.keep_alive = keep_alive
        """The request lets another follow it (RFC 9112 9.3)."""
        self.upgrade = upgrade
        """The request offered an upgrade (or is a ``CONNECT``)."""
        self.close_after = not keep_alive
        """The connection closes once this response is written."""
        self.framing = IDENTITY
        self.response = IDLE
        """The response's state (``SERVER`` role)."""

    def write_head(self, head: ResponseHead, end_stream: bool, last: bool) -> bytes:
        """The bytes of ``head``; ``last``: no request follows this one on the
        connection (it closes after). A 1xx head is an interim response: ``100`` is
        the codec's own business (and HTTP/1.0 gets none, RFC 9110 15.2): empty."""
        status = head.status
        if status < 200 and status != 101:
            self.response = advance(SERVER, self.response, INTERIM)
            if status == 100 or self.http10:
                return b""
            lines, _, _ = frames.field_lines(head.headers.items())
            return frames.head(frames.status_line(status, head.reason), lines)
        lines, has_length, connection = frames.field_lines(head.headers.items())
        if connection is not None and "close" in connection:
            self.close_after = True
        tunnel = False
        if status == 101 or (self.method == "CONNECT" and status < 300):
            if self.upgrade:
                tunnel = True  # both bodies are now the raw bytes of each direction
            else:
                self.framing = NO_BODY
                self.close_after = True
        elif self.method == "HEAD" or status in NO_BODY_STATUSES:
            self.framing = NO_BODY
        elif self.upgrade:
            self.close_after = True  # refused: what follows the request is not HTTP
        if self.framing != NO_BODY and not has_length and not tunnel:
            if end_stream:
                lines.append("content-length: 0\r\n")
            elif self.http10:
                self.close_after = True  # the body ends when the connection does
            else:
                self.framing = CHUNKED
                lines.append("transfer-encoding: chunked\r\n")
        if last:
            self.close_after = True
        if self.close_after:
            if connection is None:
                lines.append("connection: close\r\n")
        elif self.http10 and connection is None:
            lines.append("connection: keep-alive\r\n")
        event = SWITCH if tunnel else HEAD_END if end_stream else HEAD
        state = _RESPONSE[self.response][event]
        self.response = state if state >= 0 else advance(SERVER, self.response, event)
        return frames.head(frames.status_line(status, head.reason), lines)

    def write_data(self, data: bytes, end_stream: bool) -> bytes:
        """The bytes of body ``data`` (the last ones with ``end_stream``)."""
        event = END if end_stream else DATA
        state = _RESPONSE[self.response][event]
        self.response = state if state >= 0 else advance(SERVER, self.response, event)
        framing = self.framing
        if framing == IDENTITY:
            return data
        if framing == CHUNKED:
            return frames.chunk(data, end_stream)
        return b""

    def write_trailers(self, trailers: Headers) -> bytes:
        """The end of the body with ``trailers``: a chunked body's trailer section;
        a body framed by length or by close has no place for them (dropped)."""
        self.response = advance(SERVER, self.response, END)
        if self.framing == CHUNKED:
            return frames.trailers(trailers.items())
        return b""


class RequestWriter:
    """The client role's half: one request on an upstream connection."""

    __slots__ = ("method", "upgrade", "chunked", "keep_alive", "request")

    def __init__(self) -> None:
        self.method = ""
        self.upgrade = False
        """The request offers an upgrade (``Connection: upgrade``) or is a CONNECT."""
        self.chunked = False
        self.keep_alive = True
        """The request did not say ``Connection: close``."""
        self.request = IDLE
        """The request's state (``CLIENT`` role)."""

    def write_head(self, head: RequestHead, end_stream: bool) -> bytes:
        """The bytes of ``head``, always as HTTP/1.1 (the proxy's side is its own hop),
        with ``Host`` from the head's authority (required, RFC 9112 3.2)."""
        method = self.method = head.method
        authority = head.authority
        lines, has_length, connection = frames.field_lines(
            head.headers.items(), "host" if authority else "")
        if authority or "host" not in head.headers:
            lines.insert(0, f"host: {authority}\r\n")
        if connection is not None:
            if "close" in connection:
                self.keep_alive = False
            # RFC 9110 7.8: an upgrade request names ``upgrade`` in Connection.
            self.upgrade = "upgrade" in connection
        if method == "CONNECT":
            self.upgrade = True
        if end_stream:
            if not has_length and method in BODY_METHODS:
                lines.append("content-length: 0\r\n")
        elif not has_length and not self.upgrade:
            self.chunked = True
            lines.append("transfer-encoding: chunked\r\n")
        event = HEAD_END if end_stream else HEAD
        state = _REQUEST[self.request][event]
        self.request = state if state >= 0 else advance(CLIENT, self.request, event)
        return frames.head(f"{method} {head.path or '/'} HTTP/1.1\r\n", lines)

    def write_data(self, data: bytes, end_stream: bool) -> bytes:
        event = END if end_stream else DATA
        state = _REQUEST[self.request][event]
        self.request = state if state >= 0 else advance(CLIENT, self.request, event)
        return frames.chunk(data, end_stream) if self.chunked else data

    def write_trailers(self, trailers: Headers) -> bytes:
        """A chunked body's trailer section; after a body framed by Content-Length
        they have no place and are dropped."""
        self.request = advance(CLIENT, self.request, END)
        if self.chunked:
            return frames.trailers(trailers.items())
        return b""
