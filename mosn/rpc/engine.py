"""The multiplexed RPC engine: any :class:`FrameCodec` as a protocol of the proxy.

Server side: frames are decoded as they arrive; heartbeats are answered here; each
request becomes a stream whose head carries the routing headers (for the router) and
the frame itself. Client side: each upstream connection gives every request its own
id (wrapping, skipping ids still in flight), patches it into a copy of the frame,
and matches responses back by id. A response travels back the same way, its id
patched to the one the client used. The proxy's own failures (no route, timeout,
lost connection ...) become the protocol's error replies through the codec's status
mapping. Bodies are never decoded.

What the engine guarantees a codec (docs/rpc.md):
- Frames decoded before bytes that cannot be a frame are served and answered; then
  the codec's error reply (``FrameError.reply``) is written and the connection closed.
  Nothing after the bad bytes is read.
- An exception from any codec method (a bug, not a ``FrameError``) never escapes: it
  is counted (``protocol.<name>.codec_error``) and logged at most once per interval
  with the plugin's name; a request it concerns gets the protocol's error reply when
  the codec can still make one, and a connection whose bytes it cannot decode is
  closed once the requests read before are answered. Other connections go on.
- Backpressure: a client whose responses pile up (its connection above the write
  buffer's high watermark) is not read until they drain; the clients feeding an
  upstream connection above its high watermark are not read until it drains.
- Bytes held (a partial frame, every request until it is answered, with the objects
  it keeps) count against the process's buffer budget (:mod:`mosn.network.budget`).
"""

from __future__ import annotations

from typing import Any, Callable

from mosn.network.filter import CloseType, ConnectionCallbacks, ConnectionEvent, FilterStatus, \
    ReadFilter
from mosn.rpc.codec import Frame, FrameCodec, FrameError, FrameKind
from mosn.stream.errors import ProtocolErrors
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
_ONEWAY = FrameKind.ONEWAY
_RESPONSE = FrameKind.RESPONSE
_HEARTBEAT = FrameKind.HEARTBEAT
_ONEWAY_DONE = ResponseHead(200)
"""What the client side reports for a oneway request once it is sent."""
CODEC_FAILURE_STATUS = 500
"""The proxy's status for a request whose response the codec failed on (mapped to the
protocol's status by ``error_status``, as every failure the proxy answers)."""
REQUEST_OVERHEAD = 3 * 1024
"""Bytes a request in flight keeps beside its frame (its streams on both sides, head,
headers, upstream try), counted with the frame against the buffer budget so that a
flood of small requests is bounded too: 20,000 bolt requests of 164 bytes in flight
to a host that never answers grew the process by 63 MiB, 3.2 KiB each."""
OVERLOAD_STATUS = 503
OVERLOAD_FLAG = "OM"
"""How a request is answered when the overload manager sheds its connection: 503 with
Envoy's flag for the overload manager (codecs map it to their "busy" status)."""


def rpc_protocol(codec: FrameCodec) -> "RpcProtocol":
    """The proxy's ``Protocol`` for a frame codec (what an RPC plugin registers)."""
    return RpcProtocol(codec)


class RpcProtocol:
    def __init__(self, codec: FrameCodec) -> None:
        self.codec = codec
        self.name = codec.name
        self.multiplexed = codec.multiplexed
        self.errors = ProtocolErrors(codec.name)
        """Where the engine reports the codec's failures; the proxy sets one that
        counts them and names the plugin (a protocol with ``errors`` answers its
        codec's exceptions itself)."""

    def match(self, data: bytes) -> MatchResult:
        return self.codec.match(data)

    def server(self, conn: Any, new_stream: NewStream) -> "RpcServerConnection":
        return RpcServerConnection(self, conn, new_stream)

    def client(self, conn: Any, on_idle: Callable[[], None]) -> "RpcClientConnection":
        return RpcClientConnection(self, conn, on_idle)


def _decode(codec: FrameCodec, buffer: bytearray, frames: list[Frame]) -> Exception | None:
    """Decode every whole frame in ``buffer`` into ``frames``; what stopped the
    decoding if not the end of the bytes (a ``FrameError``, or whatever the codec raised)."""
    try:
        while buffer:
            frame = codec.decode(buffer)
            if frame is None:
                return None
            frames.append(frame)
    except Exception as exc:
        return exc
    return None


# -- server side (downstream) ---------------------------------------------------------


class RpcServerConnection(ReadFilter, ConnectionCallbacks):
    """The server side of one client connection. States: reading; failing (bytes that
    are not a frame came, or the codec broke: nothing more is read, the requests read
    before are answered, then the last reply is written and the connection closed);
    closed."""

    __slots__ = ("codec", "conn", "new_stream", "errors", "buffer", "held", "streams",
                 "closed", "failing", "above", "going_away", "migrating")

    def __init__(self, protocol: RpcProtocol, conn: Any, new_stream: NewStream) -> None:
        self.codec = protocol.codec
        self.errors = protocol.errors
        self.conn = conn
        self.new_stream = new_stream
        self.buffer = bytearray()
        self.held = 0
        """Bytes of ``buffer`` (a partial frame) held against the budget."""
        self.streams: set[RpcServerStream] = set()
        self.closed = False
        self.failing: bytes | None = None
        """Once failing: the reply to write before closing (empty: none)."""
        self.above = False
        self.going_away = False
        self.migrating: Callable[[], None] | None = None
        """Set while stopping for a migration: called once no request is in flight."""
        conn.add_read_filter(self)
        conn.add_callbacks(self)

    # -- migration (ReadFilter): frames delimit themselves, so reading stops at once
    # and the partial frame in the buffer goes with the connection; the requests in
    # flight are answered here first (none is lost or answered twice).

    def stop_for_migration(self, at_safe_point: Callable[[], None]) -> bool:
        if self.going_away or self.failing is not None or self.closed:
            return False
        self.conn.read_disable(True)
        if self.streams:
            self.migrating = at_safe_point
        else:
            at_safe_point()
        return True

    def unprocessed(self) -> bytes:
        return bytes(self.buffer)

    def resume_after_migration(self) -> None:
        self.migrating = None
        self.conn.read_disable(False)

    def go_away(self) -> None:
        """The ServerCodec contract: the codec's goaway frame, if it has one (an
        optional ``goaway() -> bytes``), then close once no request is in flight; a
        request that still comes meanwhile is answered first."""
        if self.going_away or self.closed:
            return
        self.going_away = True
        goaway = getattr(self.codec, "goaway", None)
        if goaway is not None:
            self.conn.write(goaway())
        self.close_if_idle()

    def close_if_idle(self) -> None:
        if self.going_away and not self.streams and not self.closed:
            self.conn.close(CloseType.FLUSH_WRITE)

    def on_data(self, data: bytes) -> FilterStatus:
        if self.failing is not None or self.closed:
            return _STOP  # nothing after a bad frame is read
        buffer = self.buffer
        buffer += data
        frames: list[Frame] = []
        failure = _decode(self.codec, buffer, frames)
        for frame in frames:
            if self.closed:
                return _STOP
            kind = frame.kind
            if kind is _REQUEST or kind is _ONEWAY:
                self._request(frame)
            elif kind is _HEARTBEAT:
                self._heartbeat(frame)
            # Responses, heartbeat replies and goaways from a client mean nothing here.
        if failure is not None:
            self._decode_failed(failure)
        elif len(buffer) != self.held and buffer is self.buffer:  # not dropped meanwhile
            self.conn.hold(len(buffer) - self.held)
            self.held = len(buffer)
        return _STOP

    def _request(self, frame: Frame) -> None:
        stream = RpcServerStream(self, frame)
        self.streams.add(stream)
        self.conn.hold(len(frame.data) + REQUEST_OVERHEAD)
        stream.handler = self.new_stream(stream)
        headers = frame.headers
        head = RequestHead(headers.get("method", ""), "", headers.get("service", ""), "",
                           Headers(headers.items()), "", frame.timeout, frame)
        stream.handler.on_headers(head, True)

    def _heartbeat(self, frame: Frame) -> None:
        try:
            reply = self.codec.heartbeat_reply(frame)
        except Exception as exc:
            self.errors.codec_error(exc, "heartbeat_reply", _CLOSING)
            self._fail(b"")
            return
        self.conn.write(reply)

    def _decode_failed(self, exc: Exception) -> None:
        if isinstance(exc, FrameError):
            self.errors.protocol_error(True, exc)
            self._fail(exc.reply or b"")
        else:
            self.errors.codec_error(exc, "decode", _CLOSING)
            self._fail(b"")

    def _fail(self, reply: bytes) -> None:
        """Read no more; close once the requests read are answered, after ``reply``."""
        if self.failing is not None or self.closed:
            return
        self.failing = reply
        self._release_buffer()
        self.conn.read_disable(True)
        if not self.streams:
            self._close_failed()

    def _close_failed(self) -> None:
        if self.failing:
            self.conn.write(self.failing)
        self.conn.close(CloseType.FLUSH_WRITE)

    def _release_buffer(self) -> None:
        self.buffer = bytearray()
        if self.held:
            self.conn.hold(-self.held)
            self.held = 0

    def stream_done(self, stream: "RpcServerStream") -> None:
        self.streams.discard(stream)
        self.conn.hold(-len(stream.request.data) - REQUEST_OVERHEAD)
        if self.migrating is not None and not self.streams:
            # After this answer is written (the callback pauses reading and waits
            # for the write buffer to empty).
            at_safe_point, self.migrating = self.migrating, None
            at_safe_point()
        if self.failing is not None and not self.streams and not self.closed:
            self._close_failed()
        elif self.going_away:
            self.conn.loop.call_soon(self.close_if_idle)  # after this answer is written

    def on_filter_error(self, exc: Exception) -> bool:
        """Something under ``on_data`` raised out of it (the codec in a call not
        guarded above, or the proxy): handled like a codec that cannot decode."""
        self.errors.codec_error(exc, "handling a client's bytes", _CLOSING)
        self._fail(b"")
        return True

    def on_shed(self) -> None:
        """The overload manager closes this connection: each request read and not yet
        answered gets the protocol's overload status first."""
        self._release_buffer()
        for stream in list(self.streams):
            if stream.request.kind is _REQUEST:
                stream.error(OVERLOAD_STATUS, (OVERLOAD_FLAG,), "mosn: overloaded")

    def on_eof(self) -> bool:
        return False

    def on_event(self, event: ConnectionEvent) -> None:
        if event.is_close and not self.closed:
            self.closed = True
            self.buffer = bytearray()
            for stream in list(self.streams):
                stream.lost()

    def on_above_write_buffer_high_watermark(self) -> None:
        """The client does not read its responses: read no more of its requests."""
        if not self.above:
            self.above = True
            self.conn.read_disable(True)

    def on_below_write_buffer_low_watermark(self) -> None:
        if self.above:
            self.above = False
            self.conn.read_disable(False)


_CLOSING = "the connection is closed once the requests read before are answered"


class RpcServerStream:
    """One request from a client; the proxy answers it through here."""

    __slots__ = ("owner", "request", "handler", "answered", "disabled", "replying")

    def __init__(self, owner: RpcServerConnection, request: Frame) -> None:
        self.owner = owner
        self.request = request
        self.handler: Any = None
        self.answered = False
        self.replying = 0
        """The status of a local reply whose text is still to come (its message)."""
        self.disabled = 0
        """``read_disable(True)`` calls not yet undone (an upstream connection above its
        high watermark); undone when the stream ends."""

    def send_headers(self, head: ResponseHead, end_stream: bool) -> None:
        if self.answered:
            return
        owner = self.owner
        frame = head.frame
        if frame is not None and frame.kind is _RESPONSE:
            if self.request.kind is not _ONEWAY and not owner.closed:
                self._respond(frame)
        elif self.request.kind is not _ONEWAY:
            if not end_stream:  # a local reply: its text, next, says why
                self.replying = head.status
                return
            self.error(head.status, tuple(getattr(self.handler, "response_flags", ())),
                       f"mosn: {head.status}")
        self._done()

    def _respond(self, frame: Frame) -> None:
        owner = self.owner
        data = bytearray(frame.data)
        try:
            owner.codec.set_request_id(data, self.request.request_id)
        except Exception as exc:
            owner.errors.codec_error(exc, "set_request_id", "the request is answered with "
                                     "the protocol's error status")
            self.error(CODEC_FAILURE_STATUS, (), "mosn: codec error")
            return
        owner.conn.write(data)

    def error(self, http_status: int, flags: tuple[str, ...], message: str) -> None:
        """Write the protocol's error reply for ``http_status``; if the codec cannot
        make one, close the connection (after what was written)."""
        owner = self.owner
        if owner.closed:
            return
        if http_status == 408:
            http_status = 504  # the stream idle timeout: the protocol's timeout status
        codec = owner.codec
        try:
            reply = codec.error_reply(self.request, codec.error_status(http_status, flags),
                                      message)
        except Exception as exc:
            owner.errors.codec_error(exc, "error_reply", "the connection is closed")
            owner.conn.close(CloseType.FLUSH_WRITE)
            return
        owner.conn.write(reply)

    def send_data(self, data: bytes, end_stream: bool) -> None:
        """An RPC response is whole in its head; the text of a local reply is the
        error reply's message (where the protocol's error frame has one)."""
        status = self.replying
        if status and not self.answered:
            self.replying = 0
            text = data.decode("utf-8", "replace").strip()
            self.error(status, tuple(getattr(self.handler, "response_flags", ())),
                       f"mosn: {status} {text}" if text else f"mosn: {status}")
            self._done()

    def send_trailers(self, trailers: Headers) -> None:
        if self.replying:
            self.send_data(b"", True)

    def reset(self, reason: StreamResetReason) -> None:
        """Multiplexed: one stream cannot be reset, so the caller gets an error reply."""
        if self.answered:
            return
        if self.request.kind is not _ONEWAY:
            status = 504 if reason is StreamResetReason.LOCAL_RESET else 502
            self.error(status, tuple(getattr(self.handler, "response_flags", ())),
                       f"mosn: {status}")
        self._done()

    def read_disable(self, disable: bool) -> None:
        """Counted per stream, so the stream releases only what it asked for."""
        if self.answered:
            return
        if disable:
            self.disabled += 1
            self.owner.conn.read_disable(True)
        elif self.disabled:
            self.disabled -= 1
            self.owner.conn.read_disable(False)

    def lost(self) -> None:
        """The client's connection closed before the answer."""
        if not self.answered:
            handler = self.handler
            self._done()
            if handler is not None:
                handler.on_reset(StreamResetReason.CONNECTION_TERMINATION)

    def _done(self) -> None:
        self.answered = True
        self.handler = None  # no cycle through the proxy's stream: freed as it ends
        while self.disabled:
            self.disabled -= 1
            self.owner.conn.read_disable(False)
        self.owner.stream_done(self)


# -- client side (upstream) -----------------------------------------------------------


class RpcClientConnection(ReadFilter, ConnectionCallbacks):
    """One upstream connection. Requests from many downstream connections arrive in
    separate callbacks of one loop turn; they are written together at the end of it
    (one system call for many requests instead of one each)."""

    __slots__ = ("codec", "conn", "on_idle", "errors", "multiplexed", "buffer", "held",
                 "streams", "next_id", "going_away", "closed", "above", "_outgoing",
                 "heartbeats")

    def __init__(self, protocol: RpcProtocol, conn: Any, on_idle: Callable[[], None]) -> None:
        self.codec = protocol.codec
        self.errors = protocol.errors
        self.conn = conn
        self.on_idle = on_idle
        self.multiplexed = self.codec.multiplexed
        self.buffer = bytearray()
        self.held = 0
        self.streams: dict[int, RpcClientStream] = {}
        self.next_id = 0
        self.going_away = False
        self.closed = False
        self.above = False
        """Above the write buffer's high watermark: the callers of new streams are not
        read until it drains."""
        self._outgoing: list[bytes | bytearray] = []
        self.heartbeats: dict[int, Callable[[bool], None]] = {}
        """Our heartbeats waiting for their replies, by id: each one's callback."""
        conn.add_read_filter(self)
        conn.add_callbacks(self)

    def heartbeat(self, answered: Callable[[bool], None]) -> bool:
        """Send the codec's heartbeat request (a cluster's ``keepalive``); False when
        the codec makes none or the connection is closed. ``answered(ok)`` is called
        once its reply comes (ok: the status maps to 200), or with False when the
        connection closes first; how long to wait is the caller's."""
        make = getattr(self.codec, "heartbeat", None)
        if make is None or self.closed:
            return False
        data = bytearray(make())
        request_id = self.allocate_id()
        self.codec.set_request_id(data, request_id)
        self.heartbeats[request_id] = answered
        self.send(data)
        return True

    def _heartbeat_answered(self, frame: Frame) -> None:
        answered = self.heartbeats.pop(frame.request_id, None)
        if answered is not None:
            answered(self.codec.http_status(frame.status) == 200)

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
        streams, top, heartbeats = self.streams, self.codec.max_request_id, self.heartbeats
        while True:
            self.next_id = self.next_id + 1 if self.next_id < top else 1
            if self.next_id not in streams and (not heartbeats or self.next_id not in heartbeats):
                return self.next_id

    # the connection

    def on_data(self, data: bytes) -> FilterStatus:
        if self.closed:
            return _STOP
        buffer = self.buffer
        buffer += data
        frames: list[Frame] = []
        failure = _decode(self.codec, buffer, frames)
        for frame in frames:
            kind = frame.kind
            if kind is _RESPONSE:
                stream = self.streams.pop(frame.request_id, None)
                if stream is not None:  # else: its caller gave up (timeout, reset)
                    stream.respond(frame)
            elif kind is _HEARTBEAT:
                try:
                    reply = self.codec.heartbeat_reply(frame)
                except Exception as exc:
                    failure = failure or exc
                    break
                self.conn.write(reply)
            elif kind is FrameKind.GOAWAY:
                self.going_away = True  # in-flight requests finish; no new ones
            elif kind is FrameKind.HEARTBEAT_REPLY and self.heartbeats:
                try:
                    self._heartbeat_answered(frame)
                except Exception as exc:
                    failure = failure or exc
                    break
        if failure is not None:
            if isinstance(failure, FrameError):
                self.errors.protocol_error(False, failure)
            else:
                self.errors.codec_error(failure, "decoding a response",
                                        "the upstream connection is closed")
            self.buffer = bytearray()
            self.conn.close(CloseType.NO_FLUSH)  # its streams are reset by on_event
        elif len(buffer) != self.held and not self.closed:
            self.conn.hold(len(buffer) - self.held)
            self.held = len(buffer)
        return _STOP

    def on_filter_error(self, exc: Exception) -> bool:
        self.errors.codec_error(exc, "handling a host's bytes", "the upstream connection is closed")
        self.conn.close(CloseType.NO_FLUSH)
        return True

    def on_eof(self) -> bool:
        return False

    def on_event(self, event: ConnectionEvent) -> None:
        if event.is_close and not self.closed:
            self.closed = True
            self.buffer = bytearray()
            self._outgoing = []
            streams, self.streams = self.streams, {}
            for stream in streams.values():
                stream.end()
                handler, stream.handler = stream.handler, None
                handler.on_reset(StreamResetReason.CONNECTION_TERMINATION)
            heartbeats, self.heartbeats = self.heartbeats, {}
            for answered in heartbeats.values():
                answered(False)

    def on_above_write_buffer_high_watermark(self) -> None:
        self.above = True
        for stream in list(self.streams.values()):
            stream.pause(True)

    def on_below_write_buffer_low_watermark(self) -> None:
        self.above = False
        for stream in list(self.streams.values()):
            stream.pause(False)


class RpcClientStream:
    __slots__ = ("owner", "handler", "request_id", "ended", "paused")

    def __init__(self, owner: RpcClientConnection, handler: ResponseHandler) -> None:
        self.owner = owner
        self.handler: Any = handler
        self.request_id = 0
        self.ended = False
        self.paused = False
        """This stream asked its caller to stop reading (the connection is above its
        high watermark); asked to go on when it drains or the stream ends."""

    def send_headers(self, head: RequestHead, end_stream: bool) -> None:
        owner = self.owner
        frame = head.frame
        if frame is None or owner.closed:
            # An HTTP request cannot become an RPC frame without a converter.
            self._fail()
            return
        data = bytearray(frame.data)
        oneway = frame.kind is _ONEWAY
        request_id = owner.allocate_id()
        try:
            owner.codec.set_request_id(data, request_id)
        except Exception as exc:
            owner.errors.codec_error(exc, "set_request_id",
                                     "the request is answered with the protocol's error status")
            self._fail()
            return
        if oneway:
            owner.send(data)
            self.ended = True
            self.handler.on_headers(_ONEWAY_DONE, True)
            self._idle()
            return
        self.request_id = request_id
        owner.streams[request_id] = self
        owner.send(data)
        if owner.above:
            self.pause(True)

    def _fail(self) -> None:
        self.ended = True
        self.handler.on_reset(StreamResetReason.PROTOCOL_ERROR)
        self._idle()

    def respond(self, frame: Frame) -> None:
        owner = self.owner
        try:
            status = owner.codec.http_status(frame.status)
        except Exception as exc:
            owner.errors.codec_error(exc, "http_status", "the response is answered as 502")
            self.end()
            self.handler.on_reset(StreamResetReason.PROTOCOL_ERROR)
            self._idle()
            return
        head = ResponseHead(status, Headers(frame.headers.items()), "", frame)
        self.end()
        self.handler.on_headers(head, True)
        self._idle()

    def send_data(self, data: bytes, end_stream: bool) -> None:
        pass

    def send_trailers(self, trailers: Headers) -> None:
        pass

    def reset(self, reason: StreamResetReason) -> None:
        """The caller gave up: forget the id (a late response is dropped)."""
        if not self.ended:
            self.end()
            self.owner.streams.pop(self.request_id, None)
            self._idle()

    def read_disable(self, disable: bool) -> None:
        pass

    def pause(self, pause: bool) -> None:
        if pause is not self.paused and not self.ended:
            self.paused = pause
            if pause:
                self.handler.on_above_write_buffer_high_watermark()
            else:
                self.handler.on_below_write_buffer_low_watermark()

    def end(self) -> None:
        """No more to this stream: give back the pause it holds."""
        if self.paused:
            self.paused = False
            self.handler.on_below_write_buffer_low_watermark()
        self.ended = True

    def _idle(self) -> None:
        self.handler = None  # no cycle through the proxy's request: freed as it ends
        if not self.owner.closed:
            self.owner.on_idle()
