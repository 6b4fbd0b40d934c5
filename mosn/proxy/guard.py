"""Codec robustness for protocols whose codecs do not guard themselves (HTTP/1,
HTTP/2, any plugin's): an exception a codec raises is counted
(``protocol.<name>.codec_error``), logged at most once per interval with the plugin's
name, and answered in the protocol, while every other connection and request goes on.

A protocol that answers its codec's failures itself (the RPC engine: it has an
``errors`` attribute, a :class:`ProtocolErrors`) is not wrapped; the proxy only gives
it the ``ProtocolErrors`` that counts. Any other protocol is wrapped in a
:class:`GuardedProtocol`, which watches its codecs at every place the proxy and the
connection call them:

- bytes in: a codec that raises out of ``on_data``/``on_eof`` is reported by the
  connection (``on_filter_error``); the guard asks the codec to answer with the
  protocol's internal error (the optional ``on_codec_error()`` of a server codec:
  HTTP/1 answers 500 after the responses before it, HTTP/2 sends GOAWAY
  INTERNAL_ERROR) and the connection closes; a codec without it is closed cleanly;
- calls from the proxy (``send_headers`` ... on a stream): each goes through a small
  wrapper, so a failure is pinned on the codec that raised, not on whichever
  connection's callback was on the stack. A server stream's failure fails its
  connection as above; a client stream's closes the upstream connection, whose
  streams are then reset and answered by the proxy (502, or a retry).
"""

from __future__ import annotations

from typing import Any, Callable

from mosn.network.filter import CloseType, ConnectionCallbacks
from mosn.stream.errors import ProtocolErrors
from mosn.stream.types import (
    ClientStream,
    Headers,
    NewStream,
    RequestHead,
    ResponseHandler,
    ServerStream,
    StreamResetReason,
)

_ANSWERED = "answered with the protocol's internal error; the connection is closed"
_CLOSED = "the connection is closed"


class GuardedProtocol:
    """``protocol`` with its codecs watched (see the module's docstring). Everything
    else it has (``upgrades``, ``upgrade_token``, ``alpn`` ...) is its own."""

    def __init__(self, protocol: Any, errors: ProtocolErrors) -> None:
        self.protocol = protocol
        self.errors = errors
        self.name = protocol.name
        self.multiplexed = protocol.multiplexed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.protocol, name)

    def match(self, data: bytes) -> Any:
        return self.protocol.match(data)

    def server(self, conn: Any, new_stream: NewStream) -> Any:
        guard = ServerGuard(self.errors, conn)
        guard.codec = self.protocol.server(conn, guard.streams(new_stream))
        conn.add_callbacks(guard)
        return guard.codec

    def upgrade(self, conn: Any, new_stream: NewStream, head: RequestHead, data: bytes) -> bool:
        """A connection handed over by another protocol (HTTP/1.1 ``Upgrade``)."""
        guard = ServerGuard(self.errors, conn)
        taken = self.protocol.upgrade(conn, guard.streams(new_stream), head, data)
        if taken:
            guard.codec = conn.read_filters[-1]  # the server codec the protocol installed
            conn.add_callbacks(guard)
        return taken

    def client(self, conn: Any, on_idle: Callable[[], None]) -> "GuardedClientCodec":
        codec = self.protocol.client(conn, on_idle)
        guard = ClientGuard(self.errors, conn)
        conn.add_callbacks(guard)
        return GuardedClientCodec(codec, guard)


class ServerGuard(ConnectionCallbacks):
    """Watches one downstream connection's server codec."""

    __slots__ = ("errors", "conn", "codec", "failed")

    def __init__(self, errors: ProtocolErrors, conn: Any) -> None:
        self.errors = errors
        self.conn = conn
        self.codec: Any = None
        self.failed = False

    def streams(self, new_stream: NewStream) -> NewStream:
        """``new_stream`` handing the proxy guarded server streams."""
        return GuardedCallbacks(new_stream, self)

    def on_filter_error(self, error: Exception) -> bool:
        if self.codec not in self.conn.read_filters:
            return False  # handed over to another protocol (an HTTP/1.1 upgrade)
        self.fail(error, "on_data")
        return True

    def fail(self, exc: Exception, where: str) -> None:
        conn = self.conn
        on_codec_error = getattr(self.codec, "on_codec_error", None)
        if self.failed or on_codec_error is None:
            # Failing again while answering: nothing more is asked of this codec.
            self.errors.codec_error(exc, where, _CLOSED)
            conn.close(CloseType.NO_FLUSH if self.failed else CloseType.FLUSH_WRITE)
            self.failed = True
            return
        self.failed = True
        self.errors.codec_error(exc, where, _ANSWERED)
        try:
            on_codec_error()
        except Exception:
            conn.close(CloseType.NO_FLUSH)


class GuardedCallbacks:
    """The proxy's ``ServerCallbacks`` for a guarded codec: each new stream is handed
    over guarded; everything else of the contract (``request_headers_timeout``,
    ``on_request_headers_timeout`` ...) is the proxy's own."""

    __slots__ = ("new_stream", "guard")

    def __init__(self, new_stream: NewStream, guard: ServerGuard) -> None:
        self.new_stream = new_stream
        self.guard = guard

    def __call__(self, stream: ServerStream) -> Any:
        return self.new_stream(GuardedStream(stream, self.guard))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.new_stream, name)


class ClientGuard(ConnectionCallbacks):
    """Watches one upstream connection's client codec: a failure closes the connection
    (its streams are reset and their requests answered or retried by the proxy)."""

    __slots__ = ("errors", "conn")

    def __init__(self, errors: ProtocolErrors, conn: Any) -> None:
        self.errors = errors
        self.conn = conn

    def on_filter_error(self, error: Exception) -> bool:
        self.fail(error, "on_data")
        return True

    def fail(self, exc: Exception, where: str) -> None:
        self.errors.codec_error(exc, where, "the upstream connection is closed")
        self.conn.close(CloseType.NO_FLUSH)


class GuardedStream:
    """A codec's stream (server or client side) whose every call is watched: a failure
    goes to its connection's guard."""

    __slots__ = ("stream", "guard")

    def __init__(self, stream: ServerStream | ClientStream,
                 guard: "ServerGuard | ClientGuard") -> None:
        self.stream = stream
        self.guard = guard

    def send_headers(self, head: Any, end_stream: bool) -> None:
        try:
            self.stream.send_headers(head, end_stream)
        except Exception as exc:
            self.guard.fail(exc, "send_headers")

    def send_data(self, data: bytes, end_stream: bool) -> None:
        try:
            self.stream.send_data(data, end_stream)
        except Exception as exc:
            self.guard.fail(exc, "send_data")

    def send_trailers(self, trailers: Headers) -> None:
        try:
            self.stream.send_trailers(trailers)
        except Exception as exc:
            self.guard.fail(exc, "send_trailers")

    def reset(self, reason: StreamResetReason) -> None:
        try:
            self.stream.reset(reason)
        except Exception as exc:
            self.guard.fail(exc, "reset")

    def read_disable(self, disable: bool) -> None:
        try:
            self.stream.read_disable(disable)
        except Exception as exc:
            self.guard.fail(exc, "read_disable")


class GuardedClientCodec:
    """A client codec whose streams are watched; the pool sees the codec's answers."""

    __slots__ = ("codec", "guard", "multiplexed")

    def __init__(self, codec: Any, guard: ClientGuard) -> None:
        self.codec = codec
        self.guard = guard
        self.multiplexed = codec.multiplexed

    def new_stream(self, handler: ResponseHandler) -> GuardedStream:
        return GuardedStream(self.codec.new_stream(handler), self.guard)

    def active_streams(self) -> int:
        return self.codec.active_streams()

    def reusable(self) -> bool:
        return self.codec.reusable()
