"""The stream layer's vocabulary: heads, headers, and the contracts between a
protocol's stream connections and the proxy.

A protocol plugin turns a connection's bytes into *streams* (one request and its
response) and back. The proxy never sees bytes of an L7 protocol, only these calls:

downstream (server side)                      upstream (client side)
  codec -> RequestHandler.on_headers/...        proxy -> ClientStream.send_headers/...
  proxy -> ServerStream.send_headers/...        codec -> ResponseHandler.on_headers/...

Every ``on_*``/``send_*`` call that ends the message passes ``end_stream=True``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol as TypingProtocol


class Headers:
    """An ordered multi-map of header fields with lower-case names.

    Built by codecs from the wire (names lowered there, once); ``get`` returns the
    first value, ``get_all`` every value, ``set`` replaces, ``add`` appends.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = list(items)

    @classmethod
    def from_flat(cls, fields: list[str], start: int = 0) -> "Headers":
        """Headers from field text laid out flat, ``[name, value, name, value, ...]``,
        from index ``start`` on: how a codec that collects a block's fields in one
        pass (the HTTP/2 engines, their pseudo-header fields first) hands them over,
        without pairing them itself. Names are taken as they are (lower-case).
        ValueError if a name has no value."""
        if (len(fields) - start) & 1:
            raise ValueError(f"a name without a value in a flat field list: {fields[-1]!r}")
        return cls(zip(fields[start::2], fields[start + 1::2]))

    def get(self, name: str, default: str | None = None) -> str | None:
        for k, v in self._items:
            if k == name:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self._items if k == name]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: str) -> None:
        self.set(name, value)

    def __delitem__(self, name: str) -> None:
        self.remove(name)

    def __contains__(self, name: object) -> bool:
        return any(k == name for k, _ in self._items)

    def __iter__(self) -> Iterator[str]:
        seen = set()
        for k, _ in self._items:
            if k not in seen:
                seen.add(k)
                yield k

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def set(self, name: str, value: str) -> None:
        items = [(k, v) for k, v in self._items if k != name]
        items.append((name, value))
        self._items = items

    def add(self, name: str, value: str) -> None:
        self._items.append((name, value))

    def remove(self, name: str) -> None:
        self._items = [(k, v) for k, v in self._items if k != name]

    def retain(self, keep: Callable[[str, str], bool]) -> None:
        """Keep only the fields ``keep(name, value)`` is true for, in their order."""
        self._items = [(k, v) for k, v in self._items if keep(k, v)]

    def setdefault(self, name: str, value: str) -> str:
        current = self.get(name)
        if current is None:
            self._items.append((name, value))
            return value
        return current

    def pop(self, name: str, default: str | None = None) -> str | None:
        value = self.get(name, default)
        self.remove(name)
        return value

    def items(self) -> list[tuple[str, str]]:
        """Every field in order, repeated names included."""
        return self._items

    def keys(self) -> Iterator[str]:
        return iter(self)

    def copy(self) -> "Headers":
        return Headers(self._items)


@dataclass(slots=True)
class RequestHead:
    """A request's first part. ``path`` is the request target with its query string;
    ``authority`` is Host (HTTP/1) or ``:authority`` (HTTP/2). ``headers`` holds the
    regular fields only (no pseudo-headers, no Host)."""

    method: str
    path: str
    authority: str = ""
    scheme: str = "http"
    headers: Headers = field(default_factory=Headers)
    version: str = "1.1"
    """``"1.0"``, ``"1.1"`` or ``"2"``: what the peer spoke."""
    timeout: float | None = None
    """Seconds the client says it will wait (gRPC's ``grpc-timeout``, bolt's timeout
    field); the proxy's timeout is the shorter of this and the route's."""
    frame: Any = None
    """An RPC protocol's decoded frame (:class:`mosn.rpc.Frame`), forwarded as it is
    when both sides speak that protocol; None for HTTP."""


@dataclass(slots=True)
class ResponseHead:
    status: int
    headers: Headers = field(default_factory=Headers)
    reason: str = ""
    frame: Any = None
    """An RPC protocol's response frame; None for HTTP and for the proxy's own replies."""


class StreamResetReason(enum.Enum):
    CONNECTION_FAILURE = "connection_failure"
    """The upstream connection could not be made."""
    CONNECTION_TERMINATION = "connection_termination"
    """The connection under the stream closed before the stream ended."""
    LOCAL_RESET = "local_reset"
    REMOTE_RESET = "remote_reset"
    """The peer reset the stream (HTTP/2 RST_STREAM)."""
    PROTOCOL_ERROR = "protocol_error"
    """The peer sent something the codec could not parse."""
    OVERFLOW = "overflow"
    REFUSED_STREAM = "refused_stream"
    """The peer did not process the request: HTTP/2 REFUSED_STREAM, a stream above
    the last stream id of the peer's GOAWAY, or one never sent (RFC 9113 8.7): any
    request may be sent again, on another connection."""
    CLOSED_BEFORE_RESPONSE = "closed_before_response"
    """A reused connection closed before any byte of the response came (an HTTP/1.1
    keep-alive connection the server closed as the request went out): the request
    may or may not have been processed, so only an idempotent one may be sent again
    (RFC 9110 9.2.2)."""


class CodecError(Exception):
    """The peer broke the protocol. ``status`` is what to answer (HTTP-like: 400,
    431, 413 ...); after it the codec closes the connection."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# -- contracts -------------------------------------------------------------------------
# Python Protocols (structural types) for documentation and type checking; the
# codec and proxy classes implement them without inheriting.


class RequestHandler(TypingProtocol):
    """The proxy's side of a downstream stream: what the server codec calls."""

    def on_headers(self, head: RequestHead, end_stream: bool) -> None: ...
    def on_data(self, data: bytes, end_stream: bool) -> None: ...
    def on_trailers(self, trailers: Headers) -> None: ...
    def on_reset(self, reason: StreamResetReason) -> None: ...
    def on_above_write_buffer_high_watermark(self) -> None:
        """The client reads slower than the response is produced: stop feeding it."""
    def on_below_write_buffer_low_watermark(self) -> None: ...


class ServerStream(TypingProtocol):
    """A server codec's stream: how the proxy answers one request."""

    def send_headers(self, head: ResponseHead, end_stream: bool) -> None: ...
    def send_data(self, data: bytes, end_stream: bool) -> None: ...
    def send_trailers(self, trailers: Headers) -> None: ...
    def reset(self, reason: StreamResetReason) -> None:
        """Abandon the stream (HTTP/1: close the connection after what is sent)."""
    def read_disable(self, disable: bool) -> None:
        """Stop (or resume) reading this request's body; counted like the connection's."""


class ResponseHandler(TypingProtocol):
    """The proxy's side of an upstream stream: what the client codec calls."""

    def on_headers(self, head: ResponseHead, end_stream: bool) -> None: ...
    def on_data(self, data: bytes, end_stream: bool) -> None: ...
    def on_trailers(self, trailers: Headers) -> None: ...
    def on_reset(self, reason: StreamResetReason) -> None: ...
    def on_above_write_buffer_high_watermark(self) -> None:
        """The upstream takes the request body slower than it comes: stop reading it."""
    def on_below_write_buffer_low_watermark(self) -> None: ...


class ClientStream(TypingProtocol):
    """A client codec's stream: how the proxy sends one request upstream."""

    def send_headers(self, head: RequestHead, end_stream: bool) -> None: ...
    def send_data(self, data: bytes, end_stream: bool) -> None: ...
    def send_trailers(self, trailers: Headers) -> None: ...
    def reset(self, reason: StreamResetReason) -> None: ...
    def read_disable(self, disable: bool) -> None:
        """Stop (or resume) reading this response's body."""


class ServerCodec(TypingProtocol):
    """Installed on a downstream connection by ``Protocol.server``.

    Optional: ``on_codec_error()``, called (once) after the codec raised an exception
    it did not mean to (a bug, not a ``CodecError``): answer what can be answered with
    the protocol's internal error (HTTP/1: 500 after the responses before it; HTTP/2:
    GOAWAY INTERNAL_ERROR) and close. A codec without it is closed cleanly. Either
    way the failure is counted and logged by the proxy (:mod:`mosn.proxy.guard`).
    """

    def go_away(self) -> None:
        """Finish the streams in flight, accept no new ones, then close."""


def go_away(conn: Any) -> bool:
    """Ask the server codec on a downstream connection to finish what it has and close
    (HTTP/1: ``connection: close`` after the requests read; HTTP/2: GOAWAY; RPC: its
    goaway frame if it has one, closed once idle). False when no codec there has
    ``go_away`` (a connection whose protocol is not known yet, or not L7)."""
    asked = False
    for f in list(conn.read_filters):
        ask = getattr(f, "go_away", None)
        if ask is not None:
            ask()
            asked = True
    return asked


class ClientCodec(TypingProtocol):
    """Built on an upstream connection by ``Protocol.client``; the pool drives it."""

    multiplexed: bool
    """True when many streams share the connection at once (HTTP/2, RPC)."""

    def new_stream(self, handler: ResponseHandler) -> ClientStream: ...
    def active_streams(self) -> int: ...
    def reusable(self) -> bool:
        """True when the connection may carry another stream now (HTTP/1: the last
        response ended cleanly and neither side said ``Connection: close``)."""


class MatchResult(enum.Enum):
    MATCH = "match"
    NO_MATCH = "no_match"
    NEED_MORE = "need_more"


NewStream = Callable[["ServerStream"], "RequestHandler"]
"""What ``Protocol.server`` gets to start a stream for each request. The proxy passes
a :class:`ServerCallbacks`; a codec reads its optional parts with ``getattr`` (tests
may pass a plain function)."""


class ServerCallbacks(TypingProtocol):
    """The proxy's side of one downstream connection, as a server codec sees it (Envoy's
    ``ServerConnectionCallbacks``): called with a new stream, it returns that stream's
    handler; and it says how long a request head may take."""

    request_headers_timeout: float | None
    """Seconds from the first byte of a request head to its last (HTTP/2: of a
    stream's header block); None: no limit. Past it the codec answers the request
    (HTTP/1: ``408`` and close; HTTP/2: RST_STREAM, then GOAWAY, since nothing after
    that block can be read) and calls ``on_request_headers_timeout``. While a head is
    incomplete, its bytes do not count as activity for the connection's idle timeout
    (``Connection.count_reads_as_activity``)."""

    def __call__(self, stream: "ServerStream") -> "RequestHandler": ...

    def on_request_headers_timeout(self) -> None:
        """A request head took longer than ``request_headers_timeout`` (for stats)."""

    def on_protocol_error(self, reason: object) -> None:
        """The client broke the protocol (a malformed request, a head over the limits,
        an HTTP/2 connection error); the codec answers it in the protocol and closes
        (for stats: ``protocol.<name>.downstream_cx_protocol_error``)."""

    def on_refused_streams(self, count: int) -> None:
        """``count`` streams the client opened after the connection's last GOAWAY
        named its last stream were refused, never processed (RFC 9113 6.8); called
        as the connection closes (for stats:
        ``listener.<name>.downstream_rq_refused_after_goaway``)."""


class IdleCallbacks(TypingProtocol):
    """What a client codec is given as ``on_idle``: called each time a stream ends
    while the connection stays open. A codec reads its optional parts with
    ``getattr`` (tests may pass a plain function)."""

    def __call__(self) -> None: ...

    def on_protocol_error(self, reason: object) -> None:
        """The host broke the protocol (a malformed response); the codec closes the
        connection (for stats: ``protocol.<name>.upstream_cx_protocol_error``)."""


class Protocol(TypingProtocol):
    """What a ``mosn_protocols`` extension's factory returns.

    ``server(conn, new_stream)`` installs a server codec on a downstream connection
    (as its read filter and callbacks); for every request it calls
    ``new_stream(server_stream)`` and feeds the returned handler.
    ``client(conn, on_idle)`` builds a client codec on a connected upstream
    connection; the codec calls ``on_idle()`` each time a stream ends (response
    complete, or reset) while the connection stays open, and the pool then asks
    ``reusable()`` to decide whether to give it another stream or close it. Both
    sides report a peer that broke the protocol through the optional
    ``on_protocol_error`` of ``new_stream`` (:class:`ServerCallbacks`) and ``on_idle``
    (:class:`IdleCallbacks`).

    Optional, for HTTP/1.1 ``Upgrade`` between installed protocols (RFC 9110 7.8):
    a protocol that can take a connection over has ``upgrade_token`` (``"h2c"``) and
    ``upgrade(conn, new_stream, head, data) -> bool`` (answer the upgrade request
    ``head`` on the taken-over connection, then read ``data`` and on; False leaves
    the connection untouched); a protocol that can hand one over has an ``upgrades``
    dict, which the proxy fills with a hand-over per token. A protocol offered on TLS
    by ALPN names its protocol id in ``alpn`` (``"h2"``).

    Optional, for the proxy: ``semantics``, a ``mosn.proxy.ProtocolSemantics`` saying
    what the proxy does differently for this protocol's requests and replies (HTTP's
    path normalization, forwarding fields and local replies); without it the
    protocol's heads are opaque frames, forwarded as they are.
    """

    name: str
    multiplexed: bool
    """True when a connection carries many streams at once (the pool opens fewer)."""

    def match(self, data: bytes) -> MatchResult: ...
    def server(self, conn: Any, new_stream: NewStream) -> ServerCodec: ...
    def client(self, conn: Any, on_idle: Callable[[], None]) -> ClientCodec: ...
