"""HTTP/2 stream connections on an HTTP/2 engine.

The engine (``engine``: nghttp2, or h2 in pure Python) is the protocol's state
machine: frames, HPACK, stream states, flow-control windows, the send queues. The
codecs here adapt it to a mosn connection and to the stream contracts.
``ServerConnection`` sits on a downstream connection and turns each request stream
into a ``ServerStream`` handed to ``new_stream``; ``ClientConnection`` sits on an
upstream connection and carries many ``ClientStream``s at once (``multiplexed``),
never more than the peer's SETTINGS_MAX_CONCURRENT_STREAMS (the engine holds the
others until a stream ends).

Flow control runs end to end (RFC 9113 5.2): received DATA is acknowledged (the
window reopened) as soon as it is handed on, unless the stream's reader asked to stop
(``read_disable``, which the proxy calls when the other side's stream buffers too
much); then the acknowledgement waits, and the peer runs out of window. Data to send
waits in the engine for the peer's window; above ``stream_buffer_limit`` bytes the
stream tells its handler to stop feeding it. So a slow reader on one side throttles
the sender on the other, one stream at a time, with at most a window and a buffer
held per stream.

Writes are batched: whatever the engine has to send is written once per read, or
once per loop turn when the other side of the proxy made it.

A stream is over for its codec once its handler has nothing more to hear: a server
stream when its response's end is queued (the engine sends the rest, and tells the
client with RST_STREAM NO_ERROR to stop sending a request still coming, RFC 9113
8.1); a client stream when its response has ended (the rest of a request still
going out is cancelled). An upstream's GOAWAY resets the streams above its last
stream id, and a REFUSED_STREAM those it names, as ``REFUSED_STREAM``: never
processed, so the proxy sends them again on another connection (RFC 9113 8.7).
"""

from __future__ import annotations

import re
import struct
from typing import Any, Callable

from mosn.network.filter import (
    CloseType,
    ConnectionCallbacks,
    ConnectionEvent,
    FilterStatus,
    ReadFilter,
)
from mosn.stream.types import (
    Headers,
    RequestHandler,
    RequestHead,
    ResponseHandler,
    ResponseHead,
    StreamResetReason,
)
from mosn_http2 import frames
from mosn_http2.config import Limits
from mosn_http2.engine import engine_factory
from mosn_http2.heads import HeaderBlockWatch
from mosn_http2.mapping import received_reset, reset_code
from mosn_http2.matcher import PREFACE
from mosn_http2.wire import (
    ASSUMED_PEER_MAX_STREAMS,
    CANCEL,
    CLOSED,
    DATA,
    DRAINED,
    ENHANCE_YOUR_CALM,
    EVENT_KINDS,
    GOAWAY,
    INTERNAL_ERROR,
    NO_ERROR,
    PING_ACK,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    REQUEST,
    RESET,
    RESPONSE,
    SETTINGS,
    SETTINGS_ENABLE_CONNECT_PROTOCOL,
    SETTINGS_MAX_CONCURRENT_STREAMS,
    TRAILERS,
    UNLIMITED_STREAMS,
    Handler,
)

_STOP = FilterStatus.STOP
_RST_STREAM = struct.Struct(">xHBBII")  # a frame header (length < 64 KiB) and an error code
_FLUSH = CloseType.FLUSH_WRITE
_REMOTE_RESET = StreamResetReason.REMOTE_RESET
_REFUSED = StreamResetReason.REFUSED_STREAM
_TERMINATED = StreamResetReason.CONNECTION_TERMINATION
_PROTOCOL_ERROR = StreamResetReason.PROTOCOL_ERROR
_OVERFLOW = StreamResetReason.OVERFLOW

PREMATURE_RESET_MIN_STREAMS = 500
"""Streams a client opens before its share of streams reset before their response
began is judged (Envoy's ``premature_reset_total_stream_count``): more than half, and
the connection is closed (the "rapid reset" attack, CVE-2023-44487, costs the proxy
an upstream request per stream while no stream stays open)."""
GOAWAY_QUIESCE_WAIT = 1.0
"""Seconds a graceful shutdown holds the connection's output for the answer to the PING
it sends before its first GOAWAY (RFC 9113 6.7: a client must answer; one that has not
by then gets the GOAWAY anyway, and only the race the wait avoids is back)."""
_GOAWAY_NOTICE = struct.pack(">HBBBLLL", 0, 8, 0x7, 0, 0, UNLIMITED_STREAMS, NO_ERROR)
"""GOAWAY, last stream id 2^31-1, NO_ERROR: the first of a graceful shutdown (nghttp2's
``nghttp2_submit_shutdown_notice``), written by the codec so that it goes out ahead of
what the engine holds."""
GOAWAY_NOTICE_WAIT = 5.0
"""Seconds the second GOAWAY of a graceful shutdown waits at most for the answer to
the PING sent with the first (a client that does not answer PINGs gets it then):
Envoy's ``drain_timeout`` default; nghttp2 advises a round trip, which the PING's
answer ends the wait on. Less (1 s was tried) refused streams of a client starved of
CPU on a loaded machine for longer than that."""
HTTP1_REQUEST = re.compile(rb"[A-Z]{1,20} ").match
"""The start of an HTTP/1.x request line (a method, a space), where the HTTP/2
preface should be."""
HTTP2_ONLY_BODY = b"this listener speaks HTTP/2 only\n"
HTTP2_ONLY_RESPONSE = (b"HTTP/1.1 505 HTTP Version Not Supported\r\ncontent-type: text/plain\r\n"
                       b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                       % (len(HTTP2_ONLY_BODY), HTTP2_ONLY_BODY))
"""The answer to an HTTP/1.x request on an HTTP/2 listener, rather than frames that
an HTTP/1.x client would take for an HTTP/0.9 response."""


def _ignore(sid: int, end: bool, value: Any) -> None:
    """The handler of the events a codec has no use for."""


class _Stream:
    """What both kinds of stream share: the ends of its two halves, the reader's
    pauses, and the buffer watermark. (Its attributes and those of the classes below
    are declared in codec.pxd: C fields of extension types in the compiled build.)"""

    def __init__(self, codec: "_Codec", handler: Any) -> None:
        self.codec = codec
        self.id = 0
        self.handler = handler
        self.end_queued = False
        self.remote_done = False
        self.disabled = 0
        self.above = False
        """The engine holds more than the buffer limit of this stream's data."""
        self.told = False
        """What the handler was last told: above the watermark or not."""
        self.closed = False

    def send_data(self, data: bytes, end_stream: bool) -> None:
        if self.closed or self.end_queued or not self.id:
            return
        codec = self.codec
        above = codec.engine.data(self.id, data, end_stream)
        if not codec._scheduled:
            codec._schedule()
        if above and not self.above:
            self.above = True
            self._watermark()
        if end_stream:
            self.end_queued = True
            codec._local_end(self)

    def send_trailers(self, trailers: Headers) -> None:
        if self.closed or self.end_queued or not self.id:
            return
        codec = self.codec
        codec.engine.trailers(self.id, trailers.items())
        if not codec._scheduled:
            codec._schedule()
        self.end_queued = True
        codec._local_end(self)

    def reset(self, reason: StreamResetReason) -> None:
        """Abandon the stream: RST_STREAM to the peer; the handler hears nothing more."""
        if self.closed:
            return
        self.handler = None
        codec = self.codec
        if self.id:
            codec._reset(self, reset_code(reason))
        else:
            codec._close_stream(self)

    def read_disable(self, disable: bool) -> None:
        """Counted: while any pause is held, received data is not acknowledged."""
        if disable:
            self.disabled += 1
            if self.disabled == 1 and self.id and not self.closed:
                self.codec.engine.pause(self.id, True)
        elif self.disabled:
            self.disabled -= 1
            if not self.disabled and self.id and not self.closed:
                codec = self.codec
                codec.engine.pause(self.id, False)
                codec._schedule()

    def _watermark(self) -> None:
        above = self.codec._above or self.above
        handler = self.handler
        if above != self.told and handler is not None:
            self.told = above
            if above:
                handler.on_above_write_buffer_high_watermark()
            else:
                handler.on_below_write_buffer_low_watermark()


class _Codec:
    """What both codecs share: an engine on a connection, reading, flushing, timers.
    The connection's filter and callbacks interfaces are added by the public classes
    at the end (an extension type has no Python base)."""

    client_side = False

    def __init__(self, conn: Any, limits: Limits, upgrade: bytes | None = None,
                 upgrade_head: bool = False) -> None:
        self.conn = conn
        self.limits = limits
        self.engine = engine_factory(limits.engine)(self.client_side, limits, upgrade, upgrade_head)
        self.streams: dict[int, Any] = {}
        handlers: list[Handler] = [_ignore] * EVENT_KINDS
        for kind, handle in self._event_handlers().items():
            handlers[kind] = handle
        self._handlers = handlers
        self._receiving = False
        self._scheduled = False
        self._above = False
        self._closed = False
        self._held = False
        """Nothing is written (a graceful shutdown waits for a PING's answer)."""
        self._going_away = False
        self._reads = 0
        self._ping_reads = -1
        """``_reads`` when the last PING went out; -1: none is waiting for its answer."""
        self._pings = 0
        self._ping_acks = 0
        """PINGs sent, and answers to them received (a peer answers in order)."""
        self._keepalive_timer: Any = None
        self._idle_timer: Any = None
        self._idle_since = 0.0
        conn.add_read_filter(self)
        conn.add_callbacks(self)
        loop = conn.loop
        if limits.keepalive_interval:
            self._keepalive_timer = loop.call_later(limits.keepalive_interval, self._keepalive)
        if limits.idle_timeout:
            self._idle_since = loop.time()
            self._idle_timer = loop.call_later(limits.idle_timeout, self._check_idle)

    def _callbacks(self) -> Any:
        """The proxy's callbacks (``new_stream`` or ``on_idle``), for their optional
        ``on_protocol_error``."""
        raise NotImplementedError

    def _event_handlers(self) -> dict[int, Handler]:
        return {
            DATA: self._on_data,
            TRAILERS: self._on_trailers,
            RESET: self._on_reset,
            CLOSED: self._on_closed,
            GOAWAY: self._on_goaway,
            DRAINED: self._on_drained,
            PING_ACK: self._on_ping_ack,
        }

    # -- ReadFilter ---------------------------------------------------------------------

    def on_data(self, data: bytes) -> FilterStatus:
        if self._closed:
            return _STOP
        self._reads += 1
        self._receiving = True
        try:
            ok = self.engine.receive(data, self._handlers)
        finally:
            self._receiving = False
        if not ok:
            self._fail("a connection error")
            return _STOP
        self._flush()
        return _STOP

    def on_eof(self) -> bool:
        return False  # the peer is gone: close, and every open stream is reset

    # -- ConnectionCallbacks ---------------------------------------------------------------

    def on_event(self, event: ConnectionEvent) -> None:
        if not event.is_close or self._closed:
            return
        self._closed = True
        self._stop_timers()
        self._drop_all(_TERMINATED)
        self.engine.close()

    def _drop_all(self, reason: StreamResetReason) -> None:
        for s in list(self.streams.values()):
            self._drop(s, reason)

    def on_above_write_buffer_high_watermark(self) -> None:
        self._above = True
        for s in list(self.streams.values()):
            s._watermark()

    def on_below_write_buffer_low_watermark(self) -> None:
        self._above = False
        for s in list(self.streams.values()):
            s._watermark()

    # -- events shared by both sides ---------------------------------------------------

    def _on_data(self, sid: int, end: bool, data: bytes) -> None:
        s = self.streams.get(sid)
        if s is None:
            return
        if end:
            s.remote_done = True
        handler = s.handler
        if handler is not None:
            handler.on_data(data, end)
        if end:
            self._remote_end(s)

    def _on_trailers(self, sid: int, end: bool, fields: frames.Fields) -> None:
        s = self.streams.get(sid)
        if s is None:
            return
        try:
            trailers = frames.trailers(fields)
        except frames.MalformedFields:
            self._malformed(s)
            return
        s.remote_done = True
        if s.handler is not None:
            s.handler.on_trailers(trailers)
        self._remote_end(s)

    def _on_reset(self, sid: int, end: bool, code: int) -> None:
        s = self.streams.get(sid)
        if s is not None:
            self._drop(s, _REMOTE_RESET)

    def _on_closed(self, sid: int, end: bool, code: int) -> None:
        """The engine closed the stream: a malformed message, or a request the peer
        never took (REFUSED_STREAM)."""
        s = self.streams.get(sid)
        if s is not None:
            self._drop(s, _REFUSED if code == REFUSED_STREAM else _PROTOCOL_ERROR)

    def _on_goaway(self, last_stream_id: int, end: bool, code: int) -> None:
        raise NotImplementedError

    def _on_drained(self, sid: int, end: bool, value: Any) -> None:
        s = self.streams.get(sid)
        if s is not None and s.above:
            s.above = False
            s._watermark()

    # -- sending ------------------------------------------------------------------------

    def _schedule(self) -> None:
        """Write what the engine has to send: after the current read, or on the next
        loop turn."""
        if not self._scheduled and not self._receiving and not self._closed:
            self._scheduled = True
            self.conn.loop.call_soon(self._flush_scheduled)

    def _flush_scheduled(self) -> None:
        self._scheduled = False
        self._flush()

    def _flush(self) -> None:
        if self._closed or self._held:
            return
        engine = self.engine
        data = engine.send()
        if data:
            self.conn.write(data)
        engine.report(self._handlers)
        if engine.finished() and not self._closed:
            if engine.failed:
                self._fail("a connection error")  # the engine answered it itself
            else:
                self._close_connection()

    # -- ending streams -----------------------------------------------------------------

    def _local_end(self, s: _Stream) -> None:
        """The end of what this side sends on ``s`` is queued."""
        raise NotImplementedError

    def _remote_end(self, s: _Stream) -> None:
        """The peer's side of ``s`` ended."""
        raise NotImplementedError

    def _reset(self, s: _Stream, code: int) -> None:
        if not self._closed:
            # What was queued on the stream before goes out first: an engine drops a
            # reset stream's frames not yet written.
            self._flush()
            self.engine.reset(s.id, code)
            self._schedule()
        self._close_stream(s)

    def _malformed(self, s: _Stream) -> None:
        """The peer sent a malformed header block on ``s`` (RFC 9113 8.1.1): reset it
        with PROTOCOL_ERROR, and tell its handler."""
        handler = s.handler
        s.handler = None
        self._reset(s, PROTOCOL_ERROR)
        if handler is not None:
            handler.on_reset(_PROTOCOL_ERROR)

    def _drop(self, s: _Stream, reason: StreamResetReason) -> None:
        """The stream is gone under its handler (a reset, or the connection)."""
        handler = s.handler
        s.handler = None
        self._close_stream(s)
        if handler is not None:
            handler.on_reset(reason)

    def _close_stream(self, s: _Stream) -> None:
        if s.closed:
            return
        s.closed = True
        s.handler = None
        if s.id:
            self.streams.pop(s.id, None)
            if s.disabled and not self._closed:
                self.engine.pause(s.id, False)  # the connection's window still counts it
                self._schedule()
        if not self.streams:
            self._idle_since = self.conn.loop.time()
        self._stream_closed(s)

    def _stream_closed(self, s: _Stream) -> None:
        pass

    def _close_connection(self) -> None:
        """Close once what the engine has queued (a last response, a GOAWAY) is
        written; the close event then resets whatever streams are left."""
        data = self.engine.send()
        if data and not self._closed:
            self.conn.write(data)
        self.conn.close(_FLUSH)

    def _fail(self, reason: object = None) -> None:
        """The peer broke the protocol (or abused it; ``reason`` says how, and it is
        counted) or this codec failed (no ``reason``): every stream is reset, the
        GOAWAY the engine queued is sent, and the connection closed."""
        if reason is not None:
            report = getattr(self._callbacks(), "on_protocol_error", None)
            if report is not None:
                report(reason)
        data = self.engine.send()
        self._closed = True
        self._stop_timers()
        self._drop_all(_PROTOCOL_ERROR)
        if data:
            self.conn.write(data)
        self.conn.close(_FLUSH)

    # -- keepalive and idle timeout ------------------------------------------------------

    def _keepalive(self) -> None:
        """PING the peer (Envoy's ``connection_keepalive``); its answer, or any frame,
        within ``keepalive_timeout`` keeps the connection."""
        if self._closed:
            return
        self._ping_reads = self._reads
        self._ping()
        self._flush()
        self._keepalive_timer = self.conn.loop.call_later(self.limits.keepalive_timeout,
                                                          self._keepalive_expired)

    def _keepalive_expired(self) -> None:
        if self._closed or self._ping_reads < 0:
            return
        if self._reads == self._ping_reads:
            self._closed = True  # nothing came: the peer is gone, or the path to it
            self._stop_timers()
            self._drop_all(_TERMINATED)
            self.conn.close(CloseType.NO_FLUSH)
            return
        self._ping_reads = self._reads  # frames came, the answer is behind them: wait on
        self._keepalive_timer = self.conn.loop.call_later(self.limits.keepalive_timeout,
                                                          self._keepalive_expired)

    def _ping(self) -> None:
        self._pings += 1
        self.engine.ping()

    def _on_ping_ack(self, sid: int, end: bool, value: Any) -> None:
        self._ping_acks += 1
        if self._ping_reads < 0 or self._closed:
            return
        self._ping_reads = -1
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
        self._keepalive_timer = self.conn.loop.call_later(self.limits.keepalive_interval,
                                                          self._keepalive)

    def _check_idle(self) -> None:
        if self._closed:
            return
        idle = self.limits.idle_timeout
        loop = self.conn.loop
        if self._busy():
            wait = idle
        else:
            wait = self._idle_since + idle - loop.time()
            if wait <= 0:
                self._idle_timer = None
                self._idle_expired()
                return
        self._idle_timer = loop.call_later(wait, self._check_idle)

    def _busy(self) -> bool:
        return bool(self.streams)

    def _idle_expired(self) -> None:
        raise NotImplementedError

    def _stop_timers(self) -> None:
        for timer in (self._keepalive_timer, self._idle_timer):
            if timer is not None:
                timer.cancel()
        self._keepalive_timer = self._idle_timer = None


# -- server side ---------------------------------------------------------------------


class ServerStream(_Stream):
    """One request stream of a downstream connection and the way to answer it."""

    def __init__(self, codec: "ServerConnection", stream_id: int) -> None:
        # _Stream.__init__'s fields, set here: one call less per request.
        self.codec = codec
        self.id = stream_id
        self.handler = None
        self.end_queued = self.remote_done = self.above = self.told = self.closed = False
        self.disabled = 0
        self.headers_sent = False
        self.tunnel = False
        """An extended CONNECT (RFC 8441): the request is an upgrade, the answer
        its ``101`` (sent as 200)."""

    def send_headers(self, head: ResponseHead, end_stream: bool) -> None:
        if self.closed or self.headers_sent:
            return
        if head.status < 200 and not (self.tunnel and head.status == 101):
            return  # interim responses (1xx) are not forwarded
        self.headers_sent = True
        codec = self.codec
        if self.tunnel:
            status, items = frames.tunnel_response(head)
        else:
            status, items = head.status, head.headers.items()
        if codec.engine.respond(self.id, status, items, end_stream) < 0:
            codec._drop(self, _TERMINATED)  # the engine no longer has the stream
            return
        if not codec._scheduled:
            codec._schedule()
        if end_stream:
            self.end_queued = True
            codec._local_end(self)

    def __repr__(self) -> str:
        return f"<http2.ServerStream {self.id} closed={self.closed}>"


class _ServerCodec(_Codec):
    """The server codec (``ServerConnection`` below)."""

    def __init__(self, conn: Any, new_stream: Callable[[ServerStream], RequestHandler],
                 limits: Limits = Limits(), upgrade: tuple[RequestHead, bytes] | None = None,
                 ) -> None:
        super().__init__(conn, limits, upgrade[1] if upgrade else None,
                         upgrade is not None and upgrade[0].method == "HEAD")
        self.new_stream = new_stream
        self._head_timeout: float | None = getattr(new_stream, "request_headers_timeout", None)
        """Seconds a stream's header block may take (the ServerCallbacks contract)."""
        self._heads = HeaderBlockWatch()
        self._head_sid = 0
        """The stream whose header block is open (its first byte read), 0 if none."""
        self._head_timer: Any = None
        self._head_stalled = False
        """A header block timed out: nothing after it can be read, so the connection
        closes once the streams taken before it are done."""
        transport = getattr(conn, "transport", None)
        tls = transport is not None and transport.get_extra_info("sslcontext") is not None
        self._scheme = "https" if tls else "http"
        self._opened = 0
        self._premature = 0
        """Streams the client reset before their response began."""
        self._read_paused = False
        self._preface = b""
        """The client's first bytes while they could still be the preface; None after."""
        self._drain_ping = 0
        """The PING of a graceful shutdown's current step (0: none sent)."""
        self._drain_timer: Any = None
        if upgrade is None:
            return  # SETTINGS go out once the client's first bytes are HTTP/2's (see on_data)
        self._flush()
        # RFC 9113 3.1 (RFC 7540 3.2): the upgraded request is stream 1, half-closed
        # (remote); its response goes out as HTTP/2.
        head = upgrade[0]
        s = ServerStream(self, 1)
        s.remote_done = True
        self.streams[1] = s
        s.handler = new_stream(s)
        s.handler.on_headers(head, True)

    def _event_handlers(self) -> dict[int, Handler]:
        return super()._event_handlers() | {REQUEST: self._on_request}

    # -- ServerCodec ----------------------------------------------------------------------

    def go_away(self) -> None:
        """A graceful shutdown in three steps, two of them Envoy's drain and nghttp2's:

        1. A PING, and nothing more written until it is answered (or
           ``GOAWAY_QUIESCE_WAIT``): the answer proves that the client has read every
           response sent before it.
        2. A GOAWAY with last stream id 2^31-1, written ahead of what was held, and a
           PING. It reaches the client with no stream ending ahead of it in the same
           read: a client that opens a new stream as one ends (h2load does, in its
           stream-close callback) would otherwise decide on a stream that its HTTP/2
           library, having read the GOAWAY next, refuses to send (nghttp2 closes it
           REFUSED_STREAM unsent), a failed request no server can answer.
        3. Once that PING is answered (or after ``GOAWAY_NOTICE_WAIT``) the client has
           read the first GOAWAY and opens no more streams, so the final GOAWAY names
           the last stream taken without refusing one the client sent meanwhile.

        The streams taken finish, then the connection closes (RFC 9113 6.8)."""
        if self._going_away or self._closed or self._drain_ping:
            return
        self._flush()
        self._ping()
        self._flush()
        self._held = True
        self._drain_step(GOAWAY_QUIESCE_WAIT)

    def _drain_step(self, wait: float) -> None:
        """Wait for the answer to the PING just sent, at most ``wait`` seconds."""
        self._drain_ping = self._pings
        self._drain_timer = self.conn.loop.call_later(wait, self._drain_expired)

    def _drain_expired(self) -> None:
        """The wait is over, but what came meanwhile is read first: a process busy for
        the whole wait has the PING's answer unread, behind streams the client sent
        before it read the first GOAWAY. Two loop turns: uvloop runs timers and
        ``call_soon`` callbacks before it polls for input, so the second turn's comes
        after a poll."""
        self._drain_timer = None
        loop = self.conn.loop
        loop.call_soon(loop.call_soon, self._drain_due, self._drain_ping)

    def _drain_due(self, ping: int) -> None:
        """The step waiting for PING number ``ping`` goes on, unless its answer came."""
        if ping == self._drain_ping:
            self._drain_next()

    def _drain_next(self) -> None:
        self._drain_ping = 0
        if self._held:
            self._notice()
        else:
            self._goaway_now()

    def _notice(self) -> None:
        """Step 2: the first GOAWAY, ahead of what was held, and a PING."""
        self._cancel_drain_timer()
        if self._closed or not self._held:
            return
        self._held = False
        self.conn.write(_GOAWAY_NOTICE)
        self._ping()
        self._flush()
        self._drain_step(GOAWAY_NOTICE_WAIT)

    def _cancel_drain_timer(self) -> None:
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None

    def _goaway_now(self, force: bool = False) -> None:
        """GOAWAY (NO_ERROR) naming the last stream taken: those finish, later ones
        are refused (and counted), and the connection closes once none is left.
        ``force``: even if the connection is already going away (the client's GOAWAY,
        or ours)."""
        self._cancel_drain_timer()
        self._held = False
        if self._closed or (self._going_away and not force):
            return
        self._going_away = True
        self.engine.goaway(NO_ERROR)
        self._heads.refuse_new_streams()
        self._flush()

    def _callbacks(self) -> Any:
        return self.new_stream

    def on_shed(self) -> None:
        """The overload manager closes this connection: each stream not yet answered
        gets ``503`` (its handler reset), then GOAWAY, before the close."""
        if self._closed:
            return
        for s in list(self.streams.values()):
            if s.headers_sent or s.closed:
                continue
            handler = s.handler
            s.handler = None
            s.send_headers(ResponseHead(503, Headers([("content-length", "0")])), True)
            if handler is not None:
                handler.on_reset(_OVERFLOW)
        self._goaway_now(force=True)

    def _on_ping_ack(self, sid: int, end: bool, value: Any) -> None:
        super()._on_ping_ack(sid, end, value)
        if self._drain_ping and self._ping_acks >= self._drain_ping:
            self._drain_next()

    def on_codec_error(self) -> None:
        """This codec raised (a bug): GOAWAY INTERNAL_ERROR (RFC 9113 7), every stream
        reset, and the connection closed."""
        self.engine.goaway(INTERNAL_ERROR)
        self._fail()

    # -- ReadFilter ---------------------------------------------------------------------

    def on_data(self, data: bytes) -> FilterStatus:
        if self._closed:
            return _STOP
        if self._preface is not None and not self._is_preface(data):
            return _STOP
        sid = self._heads.feed(data)
        if sid != self._head_sid:
            self._head_opened(sid)
        return super().on_data(data)

    def on_event(self, event: ConnectionEvent) -> None:
        if event.is_close:
            for timer in (self._head_timer, self._drain_timer):
                if timer is not None:
                    timer.cancel()
            self._head_timer = self._drain_timer = None
            refused, self._heads.refused = self._heads.refused, 0
            report = getattr(self.new_stream, "on_refused_streams", None)
            if refused and report is not None:
                report(refused)
        super().on_event(event)

    # -- the request header timeout -------------------------------------------------

    def _head_opened(self, sid: int) -> None:
        """Stream ``sid``'s header block is open after a read (it is timed from now:
        the read that opened it came just now, and its bytes are no activity for the
        connection's idle timeout), or none is (``sid`` 0)."""
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._head_sid = sid
        conn = self.conn
        if sid and self._head_timeout:
            self._head_timer = conn.loop.call_later(self._head_timeout, self._head_expired)
        conn.count_reads_as_activity(not sid)

    def _head_expired(self) -> None:
        """``request_headers_timeout``: the stream is reset. Nothing after its header
        block can be read until the block is whole (RFC 9113 6.10), so the connection
        is also sent GOAWAY: streams in flight finish, then it closes. The engine may
        not have seen the stream yet, so its RST_STREAM is written here, and the
        connection closed here, not when the engine is done (it waits for the block)."""
        self._head_timer = None
        if self._closed:
            return
        report = getattr(self.new_stream, "on_request_headers_timeout", None)
        if report is not None:
            report()
        self._flush()
        self.conn.write(_RST_STREAM.pack(4, 0x3, 0, self._head_sid, CANCEL))
        self._goaway_now()
        self._head_stalled = True
        if not self.streams:
            self._close_connection()

    def _stream_closed(self, s: _Stream) -> None:
        if self._head_stalled and not self.streams:
            self._close_connection()

    def _is_preface(self, data: bytes) -> bool:
        """While the preface may still be coming: False (and the connection answered
        505 and closed) when what came is an HTTP/1.x request instead."""
        seen = self._preface + data[:len(PREFACE) - len(self._preface)]
        if PREFACE.startswith(seen):
            self._preface = seen if len(seen) < len(PREFACE) else None
            return True
        self._preface = None
        if HTTP1_REQUEST(seen) is None:
            return True  # not HTTP/1 either: the engine answers it with GOAWAY
        self._closed = True
        self._stop_timers()
        self.conn.write(HTTP2_ONLY_RESPONSE)
        self.conn.close(_FLUSH)
        return False

    # -- events -----------------------------------------------------------------------

    def _on_request(self, sid: int, end: bool, fields: frames.Fields) -> None:
        try:
            head = frames.request_head(fields, self._scheme)
        except frames.MalformedFields:
            self.engine.reset(sid, PROTOCOL_ERROR)  # RFC 9113 8.1.1
            return
        self._opened += 1
        s = ServerStream(self, sid)
        s.remote_done = end
        s.tunnel = bool(fields[4])  # :protocol: an extended CONNECT
        self.streams[sid] = s
        handler = s.handler = self.new_stream(s)
        if self._above:
            s._watermark()
        handler.on_headers(head, end)

    def _on_goaway(self, last_stream_id: int, end: bool, code: int) -> None:
        """The client will open no more streams; those open finish first."""
        self._going_away = True
        if code:
            self._close_connection()

    def _on_reset(self, sid: int, end: bool, code: int) -> None:
        s = self.streams.get(sid)
        if s is None:
            return
        if not s.headers_sent:
            self._premature += 1
            if self._opened >= PREMATURE_RESET_MIN_STREAMS and self._premature * 2 > self._opened:
                self.engine.goaway(ENHANCE_YOUR_CALM)
                self._fail("streams reset before their response (rapid reset)")
                return
        self._drop(s, _REMOTE_RESET)

    # -- ending -------------------------------------------------------------------------

    def _local_end(self, s: _Stream) -> None:
        # The response is all queued: the engine sends the rest (and resets a request
        # still coming, RFC 9113 8.1); the handler has nothing more to hear.
        self._close_stream(s)

    def _remote_end(self, s: _Stream) -> None:
        pass  # the response decides when the stream is over

    def _idle_expired(self) -> None:
        self._goaway_now()  # and closed once the streams it names are done (none)

    def on_above_write_buffer_high_watermark(self) -> None:
        # The client is not reading what it asked for: read no more from it either
        # (its PINGs and SETTINGS would otherwise queue answers without bound).
        if not self._read_paused:
            self._read_paused = True
            self.conn.read_disable(True)
        super().on_above_write_buffer_high_watermark()

    def on_below_write_buffer_low_watermark(self) -> None:
        if self._read_paused:
            self._read_paused = False
            self.conn.read_disable(False)
        super().on_below_write_buffer_low_watermark()


# -- client side ---------------------------------------------------------------------


class ClientStream(_Stream):
    """One request sent on an upstream connection, and its response coming back."""

    def __init__(self, codec: "ClientConnection", handler: ResponseHandler) -> None:
        # _Stream.__init__'s fields, set here: one call less per request.
        self.codec = codec
        self.id = 0
        self.handler = handler
        self.end_queued = self.remote_done = self.above = self.told = self.closed = False
        self.disabled = 0
        self.answered = False
        """The response's head came."""
        self.headers_only = False
        """The request ended with its head: its end went out with its HEADERS."""
        self.upgrade: RequestHead | None = None
        """An upgrade request sent as an extended CONNECT (RFC 8441): its answer is
        turned back into the ``101`` the other side waits for."""

    def send_headers(self, head: RequestHead, end_stream: bool) -> None:
        if self.closed or self.id:
            return
        codec = self.codec
        if codec._closed or codec._going_away:
            codec._drop(self, _REFUSED)  # never sent: safe to send elsewhere
            return
        upgrade = frames.is_upgrade(head)
        if upgrade and not codec._settings_received:
            # Whether it goes as an extended CONNECT depends on the peer's SETTINGS.
            codec._awaiting_settings.append((self, head, end_stream))
            return
        tunnel = upgrade and codec._connect_protocol
        items = frames.tunnel_request_fields(head) if tunnel else head.headers.items()
        sid = codec.engine.request(frames.request_pseudo(head, tunnel), items, end_stream)
        if sid < 0:
            codec._drop(self, _REFUSED)
            return
        self.id = sid
        codec.streams[sid] = self
        if tunnel:
            self.upgrade = head
        if end_stream:
            self.end_queued = self.headers_only = True
        if not codec._scheduled:
            codec._schedule()

    def __repr__(self) -> str:
        return f"<http2.ClientStream {self.id} closed={self.closed}>"


class _ClientCodec(_Codec):
    """The client codec (``ClientConnection`` below)."""

    client_side = True
    multiplexed = True

    def __init__(self, conn: Any, on_idle: Callable[[], None], limits: Limits = Limits()) -> None:
        super().__init__(conn, limits)
        self.on_idle = on_idle
        self._active = 0
        """Streams handed out and not yet over."""
        self._peer_max = ASSUMED_PEER_MAX_STREAMS
        self._connect_protocol = False
        """The peer takes extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL, RFC 8441)."""
        self._settings_received = False
        self._awaiting_settings: list[tuple[ClientStream, RequestHead, bool]] = []
        """Upgrade requests held until the peer's SETTINGS say how to send them."""
        self._flush()

    def _callbacks(self) -> Any:
        return self.on_idle

    def _event_handlers(self) -> dict[int, Handler]:
        return super()._event_handlers() | {RESPONSE: self._on_response,
                                            SETTINGS: self._on_settings}

    # -- ClientCodec ----------------------------------------------------------------------

    def new_stream(self, handler: ResponseHandler) -> ClientStream:
        s = ClientStream(self, handler)
        self._active += 1
        if self._above:
            s._watermark()
        return s

    def active_streams(self) -> int:
        return self._active

    def reusable(self) -> bool:
        return not self._closed and not self._going_away and self._active < self._peer_max

    # -- events -----------------------------------------------------------------------

    def _on_response(self, sid: int, end: bool, fields: frames.Fields) -> None:
        s = self.streams.get(sid)
        if s is None:
            return
        try:
            head = frames.response_head(fields)
        except frames.MalformedFields:
            self._malformed(s)
            return
        if s.upgrade is not None:
            head = frames.upgraded_response(head, s.upgrade)
        s.answered = True
        if end:
            s.remote_done = True
        if s.handler is not None:
            s.handler.on_headers(head, end)
        if end:
            self._remote_end(s)

    def _on_reset(self, sid: int, end: bool, code: int) -> None:
        s = self.streams.get(sid)
        if s is not None:
            self._drop(s, received_reset(code))

    def _on_settings(self, sid: int, end: bool, value: Any) -> None:
        engine = self.engine
        self._peer_max = min(engine.remote_setting(SETTINGS_MAX_CONCURRENT_STREAMS),
                             UNLIMITED_STREAMS)
        self._connect_protocol = engine.remote_setting(SETTINGS_ENABLE_CONNECT_PROTOCOL) == 1
        self._settings_received = True
        held, self._awaiting_settings = self._awaiting_settings, []
        for s, head, end in held:
            s.send_headers(head, end)

    def _on_goaway(self, last_stream_id: int, end: bool, code: int) -> None:
        """No new streams here; those above ``last_stream_id`` were never processed
        (RFC 9113 6.8): reset as REFUSED_STREAM, for the proxy to send again."""
        self._going_away = True
        for s in [s for s in self.streams.values() if s.id > last_stream_id]:
            self._drop(s, _REFUSED)
        if self.streams and not self._closed:
            # A PING asks whether the upstream still reads: one that stopped after its
            # GOAWAY (hypercorn, which then answers none of the streams it named until
            # its idle timeout closes the connection) closes the connection on it, and
            # the streams without a response are dealt with now (see _drop_all).
            self.engine.ping()

    def _drop_all(self, reason: StreamResetReason) -> None:
        held, self._awaiting_settings = self._awaiting_settings, []
        for s, _, _ in held:
            self._drop(s, _REFUSED)  # never sent
        if reason is not _TERMINATED:
            super()._drop_all(reason)
            return
        # The connection ended with streams open: after the upstream's GOAWAY
        # (hypercorn closes at once after its GOAWAY), or with a GOAWAY never read (on
        # TLS, a write that fails on a connection the upstream reset makes the event
        # loop close it with what the upstream sent before still unread), or with none.
        # Those with no response yet may or may not have been processed, as on an
        # HTTP/1.1 connection closed under a request (RFC 9113 8.7: only an idempotent
        # request may be sent again).
        for s in list(self.streams.values()):
            self._drop(s, _TERMINATED if s.answered else StreamResetReason.CLOSED_BEFORE_RESPONSE)

    # -- ending -------------------------------------------------------------------------

    def _local_end(self, s: _Stream) -> None:
        pass  # the response decides when the stream is over

    def _remote_end(self, s: _Stream) -> None:
        if s.closed:
            return
        if s.end_queued and (s.headers_only or self.engine.local_closed(s.id)):
            self._close_stream(s)
        else:
            self._reset(s, CANCEL)  # the response is complete: the rest is not wanted

    def _stream_closed(self, s: _Stream) -> None:
        self._active -= 1
        if not self._closed:
            self.on_idle()

    def _busy(self) -> bool:
        return self._active > 0

    def _idle_expired(self) -> None:
        self._closed = True
        self._stop_timers()
        self.conn.close(_FLUSH)


class ServerConnection(_ServerCodec, ReadFilter, ConnectionCallbacks):
    """The server codec of one downstream connection (``Protocol.server``)."""

    __slots__ = ()


class ClientConnection(_ClientCodec, ReadFilter, ConnectionCallbacks):
    """The client codec of one upstream connection (``Protocol.client``)."""

    __slots__ = ()
