"""The multiplexed RPC engine: any :class:`FrameCodec` as a protocol of the proxy.

Server side: frames are decoded as they arrive; heartbeats are answered here; each
request becomes a stream whose head carries the routing headers (for the router) and
the frame itself. Client side: each upstream connection gives every request its own
id (wrapping, skipping ids still in flight), patches it into a copy of the frame,
and matches responses back by id. A response travels back the same way, its id
patched to the one the client used. The proxy's own failures (no route, timeout,
lost connection ...) become the protocol's error replies through the codec's status
mapping. Bodies are never decoded.
"""

from __future__ import annotations

from typing import Any, Callable

from mosn.network.filter import CloseType, ConnectionCallbacks, ConnectionEvent, FilterStatus, \
    ReadFilter
from mosn.rpc.codec import Frame, FrameCodec, FrameError, FrameKind
from mosn.stream.types import (
    Headers,
    MatchResult,
    NewStream,
    RequestHead,
    ResponseHandler,
    ResponseHead,
    StreamResetReason,
)

__all__ = ["RpcProtocol", "rpc_protocol"]

_STOP = FilterStatus.STOP
_REQUEST = FrameKind.REQUEST
_RESPONSE = FrameKind.RESPONSE
_ONEWAY_DONE = ResponseHead(200)
"""What the client side reports for a oneway request once it is sent."""


def rpc_protocol(codec: FrameCodec) -> "RpcProtocol":
    """The proxy's ``Protocol`` for a frame codec (what an RPC plugin registers)."""
    return RpcProtocol(codec)


class RpcProtocol:
    def __init__(self, codec: FrameCodec) -> None:
        self.codec = codec
        self.name = codec.name
        self.multiplexed = codec.multiplexed

    def match(self, data: bytes) -> MatchResult:
        return self.codec.match(data)

    def server(self, conn: Any, new_stream: NewStream) -> "RpcServerConnection":
        return RpcServerConnection(self.codec, conn, new_stream)

    def client(self, conn: Any, on_idle: Callable[[], None]) -> "RpcClientConnection":
        return RpcClientConnection(self.codec, conn, on_idle)


def _decode_all(codec: FrameCodec, buffer: bytearray, data: bytes) -> list[Frame]:
    buffer += data
    frames = []
    while buffer:
        frame = codec.decode(buffer)
        if frame is None:
            break
        frames.append(frame)
    return frames


# -- server side (downstream) ---------------------------------------------------------


class RpcServerConnection(ReadFilter, ConnectionCallbacks):
    __slots__ = ("codec", "conn", "new_stream", "buffer", "streams", "closed")

    def __init__(self, codec: FrameCodec, conn: Any, new_stream: NewStream) -> None:
        self.codec = codec
        self.conn = conn
        self.new_stream = new_stream
        self.buffer = bytearray()
        self.streams: set[RpcServerStream] = set()
        self.closed = False
        conn.add_read_filter(self)
        conn.add_callbacks(self)

    def on_data(self, data: bytes) -> FilterStatus:
        try:
            frames = _decode_all(self.codec, self.buffer, data)
        except FrameError as exc:
            self._protocol_error(exc)
            return _STOP
        for frame in frames:
            kind = frame.kind
            if kind is _REQUEST or kind is FrameKind.ONEWAY:
                self._request(frame)
            elif kind is FrameKind.HEARTBEAT:
                self.conn.write(self.codec.heartbeat_reply(frame))
            # Responses, heartbeat replies and goaways from a client mean nothing here.
        return _STOP

    def _request(self, frame: Frame) -> None:
        stream = RpcServerStream(self, frame)
        self.streams.add(stream)
        stream.handler = self.new_stream(stream)
        headers = frame.headers
        head = RequestHead(headers.get("method", ""), "", headers.get("service", ""), "",
                           Headers(headers.items()), "", frame.timeout, frame)
        stream.handler.on_headers(head, True)

    def _protocol_error(self, exc: FrameError) -> None:
        if exc.reply:
            self.conn.write(exc.reply)
        self.conn.close(CloseType.FLUSH_WRITE)

    def on_eof(self) -> bool:
        return False

    def on_event(self, event: ConnectionEvent) -> None:
        if event.is_close and not self.closed:
            self.closed = True
            for stream in list(self.streams):
                stream.lost()

    def on_above_write_buffer_high_watermark(self) -> None:
        for stream in list(self.streams):
            if stream.handler is not None:
                stream.handler.on_above_write_buffer_high_watermark()

    def on_below_write_buffer_low_watermark(self) -> None:
        for stream in list(self.streams):
            if stream.handler is not None:
                stream.handler.on_below_write_buffer_low_watermark()


class RpcServerStream:
    """One request from a client; the proxy answers it through here."""

    __slots__ = ("owner", "request", "handler", "answered")

    def __init__(self, owner: RpcServerConnection, request: Frame) -> None:
        self.owner = owner
        self.request = request
        self.handler: Any = None
        self.answered = False

    def send_headers(self, head: ResponseHead, end_stream: bool) -> None:
        if self.answered:
            return
        self._done()
        if self.request.kind is FrameKind.ONEWAY:
            return
        owner = self.owner
        frame = head.frame
        if frame is not None and frame.kind is _RESPONSE:
            data = bytearray(frame.data)
            owner.codec.set_request_id(data, self.request.request_id)
            owner.conn.write(data)
            return
        self._error(head.status)

    def _error(self, http_status: int) -> None:
        codec = self.owner.codec
        flags = tuple(getattr(self.handler, "response_flags", ()))
        status = codec.error_status(http_status, flags)
        self.owner.conn.write(codec.error_reply(self.request, status, f"mosn: {http_status}"))

    def send_data(self, data: bytes, end_stream: bool) -> None:
        """An RPC response is whole in its head; the body of a local reply is text
        for HTTP clients and has no place in the protocol's error frame."""

    def send_trailers(self, trailers: Headers) -> None:
        pass

    def reset(self, reason: StreamResetReason) -> None:
        """Multiplexed: one stream cannot be reset, so the caller gets an error reply."""
        if self.answered:
            return
        self._done()
        if self.request.kind is not FrameKind.ONEWAY and not self.owner.closed:
            self._error(504 if reason is StreamResetReason.LOCAL_RESET else 502)

    def read_disable(self, disable: bool) -> None:
        """A request is read whole; there is no body to pause."""

    def lost(self) -> None:
        """The client's connection closed before the answer."""
        if not self.answered:
            self._done()
            if self.handler is not None:
                self.handler.on_reset(StreamResetReason.CONNECTION_TERMINATION)

    def _done(self) -> None:
        self.answered = True
        self.owner.streams.discard(self)


# -- client side (upstream) -----------------------------------------------------------


class RpcClientConnection(ReadFilter, ConnectionCallbacks):
    """One upstream connection. Requests from many downstream connections arrive in
    separate callbacks of one loop turn; they are written together at the end of it
    (one system call for many requests instead of one each)."""

    __slots__ = ("codec", "conn", "on_idle", "multiplexed", "buffer", "streams", "next_id",
                 "going_away", "closed", "_outgoing")

    def __init__(self, codec: FrameCodec, conn: Any, on_idle: Callable[[], None]) -> None:
        self.codec = codec
        self.conn = conn
        self.on_idle = on_idle
        self.multiplexed = codec.multiplexed
        self.buffer = bytearray()
        self.streams: dict[int, RpcClientStream] = {}
        self.next_id = 0
        self.going_away = False
        self.closed = False
        self._outgoing: list[bytes | bytearray] = []
        conn.add_read_filter(self)
        conn.add_callbacks(self)

    def send(self, data: bytes | bytearray) -> None:
        if not self._outgoing:
            self.conn.loop.call_soon(self._flush)
        self._outgoing.append(data)

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if not self.closed:
            self.conn.write(outgoing[0] if len(outgoing) == 1 else b"".join(outgoing))

    # ClientCodec

    def new_stream(self, handler: ResponseHandler) -> "RpcClientStream":
        return RpcClientStream(self, handler)

    def active_streams(self) -> int:
        return len(self.streams)

    def reusable(self) -> bool:
        return not (self.going_away or self.closed)

    def allocate_id(self) -> int:
        """The next request id on this connection: wraps at the protocol's maximum and
        skips ids whose requests are still in flight."""
        streams, top = self.streams, self.codec.max_request_id
        while True:
            self.next_id = self.next_id + 1 if self.next_id < top else 1
            if self.next_id not in streams:
                return self.next_id

    # the connection

    def on_data(self, data: bytes) -> FilterStatus:
        try:
            frames = _decode_all(self.codec, self.buffer, data)
        except FrameError:
            self.conn.close(CloseType.NO_FLUSH)  # its streams are reset by on_event
            return _STOP
        for frame in frames:
            kind = frame.kind
            if kind is _RESPONSE:
                stream = self.streams.pop(frame.request_id, None)
                if stream is not None:  # else: its caller gave up (timeout, reset)
                    stream.respond(frame)
            elif kind is FrameKind.HEARTBEAT:
                self.conn.write(self.codec.heartbeat_reply(frame))
            elif kind is FrameKind.GOAWAY:
                self.going_away = True  # in-flight requests finish; no new ones
        return _STOP

    def on_eof(self) -> bool:
        return False

    def on_event(self, event: ConnectionEvent) -> None:
        if event.is_close and not self.closed:
            self.closed = True
            streams, self.streams = self.streams, {}
            for stream in streams.values():
                stream.handler.on_reset(StreamResetReason.CONNECTION_TERMINATION)

    def on_above_write_buffer_high_watermark(self) -> None:
        for stream in list(self.streams.values()):
            stream.handler.on_above_write_buffer_high_watermark()

    def on_below_write_buffer_low_watermark(self) -> None:
        for stream in list(self.streams.values()):
            stream.handler.on_below_write_buffer_low_watermark()


class RpcClientStream:
    __slots__ = ("owner", "handler", "request_id", "ended")

    def __init__(self, owner: RpcClientConnection, handler: ResponseHandler) -> None:
        self.owner = owner
        self.handler = handler
        self.request_id = 0
        self.ended = False

    def send_headers(self, head: RequestHead, end_stream: bool) -> None:
        owner = self.owner
        frame = head.frame
        if frame is None or owner.closed:
            # An HTTP request cannot become an RPC frame without a converter.
            self.ended = True
            self.handler.on_reset(StreamResetReason.PROTOCOL_ERROR)
            self._idle()
            return
        data = bytearray(frame.data)
        if frame.kind is FrameKind.ONEWAY:
            owner.codec.set_request_id(data, owner.allocate_id())
            owner.send(data)
            self.ended = True
            self.handler.on_headers(_ONEWAY_DONE, True)
            self._idle()
            return
        self.request_id = owner.allocate_id()
        owner.codec.set_request_id(data, self.request_id)
        owner.streams[self.request_id] = self
        owner.send(data)

    def respond(self, frame: Frame) -> None:
        self.ended = True
        head = ResponseHead(self.owner.codec.http_status(frame.status),
                            Headers(frame.headers.items()), "", frame)
        self.handler.on_headers(head, True)
        self._idle()

    def send_data(self, data: bytes, end_stream: bool) -> None:
        pass

    def send_trailers(self, trailers: Headers) -> None:
        pass

    def reset(self, reason: StreamResetReason) -> None:
        """The caller gave up: forget the id (a late response is dropped)."""
        if not self.ended:
            self.ended = True
            self.owner.streams.pop(self.request_id, None)
            self._idle()

    def read_disable(self, disable: bool) -> None:
        pass

    def _idle(self) -> None:
        if not self.owner.closed:
            self.owner.on_idle()
