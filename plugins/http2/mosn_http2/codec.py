"""HTTP/2 stream connections on h2.

h2's ``H2Connection`` is the protocol's state machine (frames, HPACK, stream states,
flow-control windows); the codecs here adapt it to a mosn connection and to the
stream contracts. ``ServerConnection`` sits on a downstream connection and turns each
request stream into a ``ServerStream`` handed to ``new_stream``; ``ClientConnection``
sits on an upstream connection and carries many ``ClientStream``s at once
(``multiplexed``), never more than the peer's SETTINGS_MAX_CONCURRENT_STREAMS.

Flow control runs end to end (RFC 9113 5.2): received DATA is acknowledged (the
window reopened) as soon as it is handed on, unless the stream's reader asked to stop
(``read_disable``, which the proxy calls when the other side's stream buffers too
much); then the acknowledgement waits, and the peer runs out of window. Data to send
waits in its stream for the peer's window; above ``stream_buffer_limit`` bytes the
stream tells its handler to stop feeding it. So a slow reader on one side throttles
the sender on the other, one stream at a time, with at most a window and a buffer
held per stream.

Writes are batched: whatever h2 has to send is written once per read, or once per
loop turn when the other side of the proxy made it.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Any, Callable

from h2 import events as ev
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
)

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
from mosn_http2.compression import Decoder, Encoder
from mosn_http2.heads import HeaderBlockWatch
from mosn_http2.mapping import reset_code

_STOP = FilterStatus.STOP
_FLUSH = CloseType.FLUSH_WRITE
_REMOTE_RESET = StreamResetReason.REMOTE_RESET
_TERMINATED = StreamResetReason.CONNECTION_TERMINATION

ASSUMED_PEER_MAX_STREAMS = 100
"""Streams opened upstream before the peer's SETTINGS says how many it takes: the
least a peer should allow (RFC 9113 6.5.2), so a burst is not refused."""
UNLIMITED_STREAMS = 2**31 - 1
"""h2's own inbound stream limit: out of the way, see ``_start``."""
PROTOCOL_DEFAULT_WINDOW = 65535
"""The connection window every HTTP/2 connection starts with (RFC 9113 6.9.2)."""
STREAM_SWEEP_MIN = 64
"""Streams h2 may hold, closed ones included, before it first drops the closed ones."""
FRAME_HEADER_SIZE = 9
"""Bytes of a frame's header: length (3), type, flags, stream id (4) (RFC 9113 4.1)."""
PREMATURE_RESET_MIN_STREAMS = 500
"""Streams a client opens before its share of streams reset before their response
began is judged (Envoy's ``premature_reset_total_stream_count``): more than half, and
the connection is closed (the "rapid reset" attack, CVE-2023-44487, costs the proxy
an upstream request per stream while no stream stays open)."""


_PLAIN_FRAME_TYPES = {DataFrame: 0x0, HeadersFrame: 0x1, ContinuationFrame: 0x9}
"""Frames the codecs send that carry only their data (RFC 9113 6.1, 6.2, 6.10)..."""
_PLAIN_FLAGS = {"END_STREAM": 0x1, "END_HEADERS": 0x4}
"""... as long as no flag but these is set (no PADDED, no PRIORITY)."""
_FRAME_HEADER = struct.Struct(">HBBBL")
"""Length (24 bits, split 16 + 8), type, flags, stream id (RFC 9113 4.1)."""


class _H2Connection(H2Connection):
    """h2's connection with four changes: a GOAWAY, sent or received, no longer
    closes its state machine. h2 refuses every frame after one, while RFC 9113 6.8
    has the streams it covers run to completion; the codecs refuse new streams
    themselves. Header blocks are encoded and decoded by ``compression``, several
    times faster than by hpack alone. h2 no longer counts its open streams on every
    new one (see ``_open_streams``). And plain HEADERS, DATA and CONTINUATION frames
    are written without hyperframe's ``serialize`` (see ``_prepare_for_sending``)."""

    def __init__(self, config: H2Configuration) -> None:
        super().__init__(config)
        self.encoder = Encoder()  # type: ignore[assignment]
        self.decoder = Decoder()
        self.decoder.max_header_list_size = self.DEFAULT_MAX_HEADER_LIST_SIZE
        self._sweep_at = STREAM_SWEEP_MIN

    def _open_streams(self, remainder: int) -> int:
        # h2 calls this for every stream opened either way, to hold
        # SETTINGS_MAX_CONCURRENT_STREAMS, and it walks every stream to count them
        # and drop the closed ones. The codecs hold the limits themselves (the
        # server refuses a stream over its limit, the client queues one over the
        # peer's), so only the sweep is needed: done once the streams have doubled
        # since the last one, it costs O(1) a stream and keeps at most twice the
        # open streams.
        if len(self.streams) >= self._sweep_at:
            super()._open_streams(remainder)
            self._sweep_at = max(2 * len(self.streams), STREAM_SWEEP_MIN)
        return 0

    def _prepare_for_sending(self, frames: list[Any]) -> None:
        # hyperframe's serialize() builds padding and priority fields, joins them, and
        # asks each frame's Flags set about every flag its type defines: three frames a
        # request spent about a tenth of the proxy's CPU there. The frames h2 builds
        # for the codecs' headers and data have no padding and no priority, so their
        # 9-byte header is packed here and their data follows as it is; any other
        # frame goes through serialize().
        out = bytearray()
        for frame in frames:
            kind = _PLAIN_FRAME_TYPES.get(frame.__class__)
            bits = 0
            if kind is not None and not getattr(frame, "pad_length", 0):
                for flag in frame.flags:
                    bit = _PLAIN_FLAGS.get(flag)
                    if bit is None:
                        kind = None
                        break
                    bits |= bit
            if kind is None:
                out += frame.serialize()
                continue
            data = frame.data
            n = frame.body_len = len(data)
            out += _FRAME_HEADER.pack(n >> 8, n & 0xFF, kind, bits, frame.stream_id & 0x7FFFFFFF)
            out += data
        self._data_to_send += out

    def _receive_goaway_frame(self, frame: Any) -> Any:
        state = self.state_machine.state
        result = super()._receive_goaway_frame(frame)
        self.state_machine.state = state
        return result


def _config(client_side: bool) -> H2Configuration:
    # Inbound fields are validated by ``frames`` as it maps them (a malformed block is
    # a stream error, RFC 9113 8.1.1), at a fraction of the cost of h2's checks;
    # outbound ones are built correct by ``frames`` (lower-case names, no
    # connection-specific fields), so h2's second pass over them is skipped.
    return H2Configuration(
        client_side=client_side, header_encoding=None,
        validate_outbound_headers=False, normalize_outbound_headers=False,
        validate_inbound_headers=False, normalize_inbound_headers=False)


def _settings(limits: Limits, client_side: bool, max_streams: int) -> Settings:
    values = {
        SettingCodes.MAX_CONCURRENT_STREAMS: max_streams,
        SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
        SettingCodes.MAX_FRAME_SIZE: limits.max_frame_size,
        SettingCodes.INITIAL_WINDOW_SIZE: limits.initial_window_size,
    }
    if client_side:
        values[SettingCodes.ENABLE_PUSH] = 0  # the proxy has nowhere to put a push
    return Settings(client=client_side, initial_values=values)


class _Stream:
    """What both kinds of stream share: the data waiting for the peer's window, the
    acknowledgements held back for a paused reader, and the two halves' ends."""

    __slots__ = ("codec", "id", "handler", "out", "out_bytes", "end_queued", "trailers",
                 "local_done", "remote_done", "unacked", "disabled", "above", "closed")

    def __init__(self, codec: "_Codec", handler: Any) -> None:
        self.codec = codec
        self.id = 0
        self.handler = handler
        self.out: deque[bytes] = deque()
        self.out_bytes = 0
        self.end_queued = False
        self.trailers: frames.HeaderList | None = None
        self.local_done = False
        self.remote_done = False
        self.unacked = 0
        self.disabled = 0
        self.above = False
        self.closed = False

    def send_data(self, data: bytes, end_stream: bool) -> None:
        if self.closed or self.end_queued:
            return
        if data:
            self.out.append(data)
            self.out_bytes += len(data)
        self.end_queued = end_stream
        self.codec._pump(self)

    def send_trailers(self, trailers: Headers) -> None:
        if self.closed or self.end_queued:
            return
        self.trailers = frames.trailer_fields(trailers)
        self.end_queued = True
        self.codec._pump(self)

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
        elif self.disabled:
            self.disabled -= 1
            if not self.disabled and self.unacked and not self.closed:
                unacked, self.unacked = self.unacked, 0
                self.codec._acknowledge(self.id, unacked)

    def _watermark(self) -> None:
        codec = self.codec
        limit = codec.limits.stream_buffer_limit
        above = codec._above or self.out_bytes > (limit // 2 if self.above else limit)
        handler = self.handler
        if above != self.above and handler is not None:
            self.above = above
            if above:
                handler.on_above_write_buffer_high_watermark()
            else:
                handler.on_below_write_buffer_low_watermark()


class _Codec(ReadFilter, ConnectionCallbacks):
    """What both codecs share: h2 on a connection, reading, flushing, flow control."""

    __slots__ = ("conn", "limits", "h2", "streams", "_blocked", "_receiving", "_scheduled",
                 "_above", "_closed", "_going_away")

    client_side = False

    def __init__(self, conn: Any, limits: Limits) -> None:
        self.conn = conn
        self.limits = limits
        self.h2 = _H2Connection(_config(self.client_side))
        self.streams: dict[int, Any] = {}
        self._blocked: set[_Stream] = set()
        """Streams with data waiting for the peer's window."""
        self._receiving = False
        self._scheduled = False
        self._above = False
        self._closed = False
        self._going_away = False
        conn.add_read_filter(self)
        conn.add_callbacks(self)

    def _start(self, upgrade_settings: bytes | None = None) -> None:
        h2, limits = self.h2, self.limits
        h2.local_settings = _settings(limits, self.client_side, limits.max_concurrent_streams)
        if upgrade_settings is None:
            h2.initiate_connection()
        else:
            h2.initiate_upgrade_connection(upgrade_settings)
        # The SETTINGS frame is written: h2 would now treat a stream over the
        # advertised limit as a connection error, where RFC 9113 5.1.2 lets the
        # receiver refuse just that stream, which the server codec does itself.
        h2.local_settings = _settings(limits, self.client_side, UNLIMITED_STREAMS)
        # h2 applies these two only when our SETTINGS is acknowledged; they hold now.
        h2.max_inbound_frame_size = limits.max_frame_size
        h2.decoder.max_header_list_size = limits.max_header_list_size
        extra = limits.connection_window_size - PROTOCOL_DEFAULT_WINDOW
        if extra > 0:
            h2.increment_flow_control_window(extra)
        self._flush()

    # -- ReadFilter ---------------------------------------------------------------------

    def on_data(self, data: bytes) -> FilterStatus:
        if self._closed:
            return _STOP
        self._receiving = True
        try:
            try:
                events = self.h2.receive_data(data)
            except ProtocolError:
                self._fail()  # h2 has queued the GOAWAY with the error's code
                return _STOP
            if self._oversized_frame_coming():
                self.h2.close_connection(ErrorCodes.FRAME_SIZE_ERROR)
                self._fail()
                return _STOP
            handlers = self._HANDLERS
            for event in events:
                handle = handlers.get(type(event))
                if handle is not None:
                    handle(self, event)
        finally:
            self._receiving = False
        self._flush()
        return _STOP

    def on_eof(self) -> bool:
        return False  # the peer is gone: close, and every open stream is reset

    def _oversized_frame_coming(self) -> bool:
        """h2 checks a frame's length against SETTINGS_MAX_FRAME_SIZE only once the
        whole frame is in its buffer, so a peer announcing 16 MiB would be buffered
        that far first: the header of the frame being read is checked here, as soon
        as it is in (RFC 9113 4.2: FRAME_SIZE_ERROR)."""
        pending = self.h2.incoming_buffer._data
        return len(pending) >= FRAME_HEADER_SIZE and \
            int.from_bytes(pending[:3], "big") > self.h2.max_inbound_frame_size

    # -- ConnectionCallbacks ---------------------------------------------------------------

    def on_event(self, event: ConnectionEvent) -> None:
        if not event.is_close or self._closed:
            return
        self._closed = True
        self._drop_all(_TERMINATED)

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

    def _on_data(self, event: ev.DataReceived) -> None:
        s = self.streams.get(event.stream_id)
        if s is None:
            self._acknowledge(event.stream_id, event.flow_controlled_length)
            return
        if s.disabled:
            s.unacked += event.flow_controlled_length
        elif event.flow_controlled_length:
            self.h2.acknowledge_received_data(event.flow_controlled_length, s.id)
        end = event.stream_ended is not None
        s.remote_done = end
        if s.handler is not None:
            s.handler.on_data(event.data, end)
        if end:
            self._ended(s)

    def _on_trailers(self, event: ev.TrailersReceived) -> None:
        s = self.streams.get(event.stream_id)
        if s is None:
            return
        try:
            fields = frames.trailers(event.headers)
        except frames.MalformedFields:
            self._malformed(s)
            return
        s.remote_done = True
        if s.handler is not None:
            s.handler.on_trailers(fields)
        self._ended(s)

    def _on_stream_ended(self, event: ev.StreamEnded) -> None:
        s = self.streams.get(event.stream_id)
        if s is None or s.remote_done:
            return  # told with its HEADERS, DATA or trailers already
        s.remote_done = True
        if s.handler is not None:
            s.handler.on_data(b"", True)
        self._ended(s)

    def _on_stream_reset(self, event: ev.StreamReset) -> None:
        s = self.streams.get(event.stream_id)
        if s is not None:
            self._drop(s, _REMOTE_RESET)

    def _on_window_updated(self, event: ev.WindowUpdated) -> None:
        if event.stream_id:
            s = self.streams.get(event.stream_id)
            if s is not None and s.out:
                self._pump(s)
        else:
            for s in list(self._blocked):
                self._pump(s)

    def _on_settings(self, event: ev.RemoteSettingsChanged) -> None:
        if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            for s in list(self._blocked):
                self._pump(s)

    # -- sending ------------------------------------------------------------------------

    def _pump(self, s: _Stream) -> None:
        """Send what the stream has queued, as far as the peer's windows allow."""
        if not s.id or s.closed:
            s._watermark()
            return
        h2 = self.h2
        out = s.out
        if out:
            window = h2.local_flow_control_window(s.id)
            size = h2.max_outbound_frame_size
            while out and window > 0:
                chunk = out[0]
                n = len(chunk)
                if n > window or n > size:
                    n = min(window, size)
                    out[0] = chunk[n:]
                    chunk = chunk[:n]
                else:
                    out.popleft()
                last = not out and s.end_queued and s.trailers is None
                h2.send_data(s.id, chunk, end_stream=last)
                window -= n
                s.out_bytes -= n
                s.local_done = last
            if out:
                self._blocked.add(s)
            else:
                self._blocked.discard(s)
        if not out and s.end_queued and not s.local_done:
            if s.trailers is not None:
                h2.send_headers(s.id, s.trailers, end_stream=True)
            else:
                h2.end_stream(s.id)
            s.local_done = True
        s._watermark()
        self._schedule()
        if s.local_done:
            self._ended(s)

    def _acknowledge(self, stream_id: int, size: int) -> None:
        """Reopen the windows for ``size`` bytes handed on (the connection's alone
        once the stream is gone: h2 takes care of that)."""
        if size and not self._closed:
            self.h2.acknowledge_received_data(size, stream_id)
            self._schedule()

    def _schedule(self) -> None:
        """Write what h2 has to send: after the current read, or on the next loop turn."""
        if not self._scheduled and not self._receiving and not self._closed:
            self._scheduled = True
            self.conn.loop.call_soon(self._flush_scheduled)

    def _flush_scheduled(self) -> None:
        self._scheduled = False
        self._flush()

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self._closed:
            self.conn.write(data)

    # -- ending streams -----------------------------------------------------------------

    def _ended(self, s: _Stream) -> None:
        """One half of ``s`` ended: close it once both have, or reset it early."""
        if s.closed:
            return
        if s.local_done and s.remote_done:
            self._close_stream(s)
        elif self._ends_early(s):
            self._reset(s, self._EARLY_END_CODE)

    def _ends_early(self, s: _Stream) -> bool:
        raise NotImplementedError

    _EARLY_END_CODE = ErrorCodes.NO_ERROR

    def _reset(self, s: _Stream, code: int) -> None:
        if not self._closed:
            try:
                self.h2.reset_stream(s.id, code)
            except ProtocolError:
                pass  # h2 already saw it closed (both ends crossed on the wire)
            self._schedule()
        self._close_stream(s)

    def _malformed(self, s: _Stream) -> None:
        """The peer sent a malformed header block on ``s`` (RFC 9113 8.1.1): reset it
        with PROTOCOL_ERROR, and tell its handler."""
        handler = s.handler
        s.handler = None
        self._reset(s, ErrorCodes.PROTOCOL_ERROR)
        if handler is not None:
            handler.on_reset(StreamResetReason.PROTOCOL_ERROR)

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
        s.out.clear()
        self._blocked.discard(s)
        if s.unacked:
            unacked, s.unacked = s.unacked, 0
            self._acknowledge(s.id, unacked)  # the connection's window still counts it
        if s.id:
            self.streams.pop(s.id, None)
        self._stream_closed(s)

    def _stream_closed(self, s: _Stream) -> None:
        raise NotImplementedError

    def _close_connection(self) -> None:
        """Close once what h2 has queued (a last response, a GOAWAY) is written; the
        close event then resets whatever streams are left."""
        data = self.h2.data_to_send()
        if data:
            self.conn.write(data)
        self.conn.close(_FLUSH)

    def _fail(self) -> None:
        """The peer broke the protocol (or abused it): every stream is reset, the GOAWAY
        h2 queued is sent, and the connection closed."""
        self._closed = True
        self._drop_all(StreamResetReason.PROTOCOL_ERROR)
        self._close_connection()

    _HANDLERS: dict[type, Callable[[Any, Any], None]] = {}


# -- server side ---------------------------------------------------------------------


class ServerStream(_Stream):
    """One request stream of a downstream connection and the way to answer it."""

    __slots__ = ("headers_sent",)

    def __init__(self, codec: "ServerConnection", stream_id: int) -> None:
        super().__init__(codec, None)
        self.id = stream_id
        self.headers_sent = False

    def send_headers(self, head: ResponseHead, end_stream: bool) -> None:
        if self.closed or self.headers_sent or head.status < 200:
            return  # interim responses (1xx) are not forwarded
        self.headers_sent = True
        codec = self.codec
        codec.h2.send_headers(self.id, frames.response_fields(head), end_stream=end_stream)
        if end_stream:
            self.end_queued = self.local_done = True
            codec._schedule()
            codec._ended(self)
        else:
            codec._schedule()

    def __repr__(self) -> str:
        return f"<http2.ServerStream {self.id} closed={self.closed}>"


class ServerConnection(_Codec):
    """The server codec of one downstream connection (``Protocol.server``)."""

    __slots__ = ("new_stream", "_scheme", "_last_stream_id", "_read_paused", "_opened",
                 "_premature", "_head_timeout", "_heads", "_head_sid", "_head_timer")

    def __init__(self, conn: Any, new_stream: Callable[[ServerStream], RequestHandler],
                 limits: Limits = Limits(), upgrade: tuple[RequestHead, bytes] | None = None,
                 ) -> None:
        super().__init__(conn, limits)
        self.new_stream = new_stream
        self._head_timeout: float | None = getattr(new_stream, "request_headers_timeout", None)
        """Seconds a stream's header block may take (the ServerCallbacks contract)."""
        self._heads = HeaderBlockWatch()
        self._head_sid = 0
        """The stream whose header block is open (its first byte read), 0 if none."""
        self._head_timer: Any = None
        transport = getattr(conn, "transport", None)
        tls = transport is not None and transport.get_extra_info("sslcontext") is not None
        self._scheme = "https" if tls else "http"
        self._last_stream_id = UNLIMITED_STREAMS
        self._read_paused = False
        self._opened = 0
        self._premature = 0
        """Streams the client reset before their response began."""
        if upgrade is None:
            self._start()
            return
        head, settings = upgrade
        self._start(settings)
        # RFC 9113 3.1 (RFC 7540 3.2): the upgraded request is stream 1, half-closed
        # (remote); its response goes out as HTTP/2.
        s = ServerStream(self, 1)
        s.remote_done = True
        self.streams[1] = s
        s.handler = new_stream(s)
        s.handler.on_headers(head, True)

    # -- ServerCodec ----------------------------------------------------------------------

    def go_away(self) -> None:
        """GOAWAY (NO_ERROR) naming the last stream taken: those finish, later ones
        are refused, and the connection closes once none is left (RFC 9113 6.8)."""
        if self._going_away or self._closed:
            return
        self._going_away = True
        self._last_stream_id = self.h2.highest_inbound_stream_id
        self._flush()
        self.conn.write(GoAwayFrame(0, last_stream_id=self._last_stream_id).serialize())
        if not self.streams:
            self._close_connection()

    def on_codec_error(self) -> None:
        """This codec raised (a bug): GOAWAY INTERNAL_ERROR (RFC 9113 7), every stream
        reset, and the connection closed."""
        self.h2.close_connection(ErrorCodes.INTERNAL_ERROR)
        self._fail()
    # -- the request header timeout -------------------------------------------------

    def on_data(self, data: bytes) -> FilterStatus:
        if not self._closed:
            sid = self._heads.feed(data)
            if sid != self._head_sid:
                self._head_opened(sid)
        return super().on_data(data)

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
        is also sent GOAWAY: streams in flight finish, then it closes."""
        self._head_timer = None
        if self._closed:
            return
        report = getattr(self.new_stream, "on_request_headers_timeout", None)
        if report is not None:
            report()
        self._flush()
        self.conn.write(RstStreamFrame(
            self._head_sid, error_code=reset_code(StreamResetReason.LOCAL_RESET)).serialize())
        self.go_away()

    def on_event(self, event: ConnectionEvent) -> None:
        if event.is_close and self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_event(event)

    # -- events -----------------------------------------------------------------------

    def _on_request(self, event: ev.RequestReceived) -> None:
        sid = event.stream_id
        if sid > self._last_stream_id or len(self.streams) >= self.limits.max_concurrent_streams:
            # RFC 9113 5.1.2 / 6.8: refused, never processed, safe to retry.
            self._reset_unopened(sid, ErrorCodes.REFUSED_STREAM)
            return
        try:
            head = frames.request_head(event.headers, self._scheme)
        except frames.MalformedFields:
            self._reset_unopened(sid, ErrorCodes.PROTOCOL_ERROR)  # RFC 9113 8.1.1
            return
        self._opened += 1
        s = ServerStream(self, sid)
        end = event.stream_ended is not None
        s.remote_done = end
        self.streams[sid] = s
        handler = s.handler = self.new_stream(s)
        if self._above:
            s._watermark()
        handler.on_headers(head, end)

    def _reset_unopened(self, sid: int, code: int) -> None:
        """Reset a stream no handler was given (refused, or its request malformed)."""
        try:
            self.h2.reset_stream(sid, code)
        except ProtocolError:
            pass  # h2 closed it already: a later frame of the same read broke its rules

    def _on_goaway(self, event: ev.ConnectionTerminated) -> None:
        """The client will open no more streams; those open finish first."""
        self._going_away = True
        if event.error_code or not self.streams:
            self._close_connection()

    def _on_client_reset(self, event: ev.StreamReset) -> None:
        s = self.streams.get(event.stream_id)
        if s is None:
            return
        if not s.headers_sent:
            self._premature += 1
            if self._opened >= PREMATURE_RESET_MIN_STREAMS and self._premature * 2 > self._opened:
                self.h2.close_connection(ErrorCodes.ENHANCE_YOUR_CALM)
                self._fail()
                return
        self._drop(s, _REMOTE_RESET)

    _HANDLERS = {
        ev.RequestReceived: _on_request,
        ev.DataReceived: _Codec._on_data,
        ev.TrailersReceived: _Codec._on_trailers,
        ev.StreamEnded: _Codec._on_stream_ended,
        ev.StreamReset: _on_client_reset,
        ev.WindowUpdated: _Codec._on_window_updated,
        ev.RemoteSettingsChanged: _Codec._on_settings,
        ev.ConnectionTerminated: _on_goaway,
    }

    # -- ending -------------------------------------------------------------------------

    def _ends_early(self, s: _Stream) -> bool:
        # RFC 9113 8.1: a response complete before its request asks the client, with
        # RST_STREAM NO_ERROR, to stop sending the rest.
        return s.local_done and not s.remote_done

    def _stream_closed(self, s: _Stream) -> None:
        if self._going_away and not self.streams and not self._closed:
            self._close_connection()

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

    __slots__ = ("head_fields",)

    def __init__(self, codec: "ClientConnection", handler: ResponseHandler) -> None:
        super().__init__(codec, handler)
        self.head_fields: frames.HeaderList | None = None
        """The request's header list while the stream waits for a free slot."""

    def send_headers(self, head: RequestHead, end_stream: bool) -> None:
        if self.closed or self.id or self.head_fields is not None:
            return
        self.head_fields = frames.request_fields(head)
        self.end_queued = end_stream
        self.codec._open(self)

    def __repr__(self) -> str:
        return f"<http2.ClientStream {self.id} closed={self.closed}>"


class ClientConnection(_Codec):
    """The client codec of one upstream connection (``Protocol.client``)."""

    __slots__ = ("on_idle", "_active", "_open_streams", "_peer_max", "_waiting")

    client_side = True
    multiplexed = True
    _EARLY_END_CODE = ErrorCodes.CANCEL

    def __init__(self, conn: Any, on_idle: Callable[[], None], limits: Limits = Limits()) -> None:
        super().__init__(conn, limits)
        self.on_idle = on_idle
        self._active = 0
        """Streams handed out and not yet over (sent or waiting)."""
        self._open_streams = 0
        """Streams sent to the peer and not yet closed."""
        self._peer_max = ASSUMED_PEER_MAX_STREAMS
        self._waiting: deque[ClientStream] = deque()
        """Streams with their request head ready, waiting for the peer to take one more."""
        self._start()

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

    # -- opening streams ----------------------------------------------------------------

    def _open(self, s: ClientStream) -> None:
        if self._closed:
            self._drop(s, _TERMINATED)
        elif self._open_streams < self._peer_max and not self._waiting:
            self._send_head(s)
        else:
            self._waiting.append(s)

    def _send_head(self, s: ClientStream) -> None:
        h2 = self.h2
        s.id = h2.get_next_available_stream_id()
        self.streams[s.id] = s
        self._open_streams += 1
        fields, s.head_fields = s.head_fields, None
        end = s.end_queued and not s.out and s.trailers is None
        h2.send_headers(s.id, fields, end_stream=end)
        s.local_done = end
        self._pump(s)

    def _open_waiting(self) -> None:
        waiting = self._waiting
        while waiting and self._open_streams < self._peer_max and not self._closed:
            s = waiting.popleft()
            if not s.closed:
                self._send_head(s)

    def _drop_all(self, reason: StreamResetReason) -> None:
        waiting = list(self._waiting)
        self._waiting.clear()
        super()._drop_all(reason)
        for s in waiting:
            self._drop(s, reason)

    # -- events -----------------------------------------------------------------------

    def _on_response(self, event: ev.ResponseReceived) -> None:
        s = self.streams.get(event.stream_id)
        if s is None:
            return
        try:
            head = frames.response_head(event.headers)
        except frames.MalformedFields:
            self._malformed(s)
            return
        end = event.stream_ended is not None
        s.remote_done = end
        if s.handler is not None:
            s.handler.on_headers(head, end)
        if end:
            self._ended(s)

    def _on_settings(self, event: ev.RemoteSettingsChanged) -> None:
        # No MAX_CONCURRENT_STREAMS in the peer's SETTINGS: no limit (RFC 9113 6.5.2).
        self._peer_max = min(self.h2.remote_settings.max_concurrent_streams, UNLIMITED_STREAMS)
        super()._on_settings(event)
        self._open_waiting()

    def _on_goaway(self, event: ev.ConnectionTerminated) -> None:
        """No new streams here; those above ``last_stream_id`` were never processed
        (RFC 9113 6.8) and are reset for the proxy to retry or fail."""
        self._going_away = True
        last = event.last_stream_id if event.last_stream_id is not None else 0
        refused = [s for s in self.streams.values() if s.id > last]
        refused.extend(self._waiting)
        self._waiting.clear()
        for s in refused:
            self._drop(s, _REMOTE_RESET)
        if not self.streams and not self._closed:
            self._close_connection()

    _HANDLERS = {
        ev.ResponseReceived: _on_response,
        ev.DataReceived: _Codec._on_data,
        ev.TrailersReceived: _Codec._on_trailers,
        ev.StreamEnded: _Codec._on_stream_ended,
        ev.StreamReset: _Codec._on_stream_reset,
        ev.WindowUpdated: _Codec._on_window_updated,
        ev.RemoteSettingsChanged: _on_settings,
        ev.ConnectionTerminated: _on_goaway,
    }

    # -- ending -------------------------------------------------------------------------

    def _ends_early(self, s: _Stream) -> bool:
        # The response is complete and nobody wants the rest of the request.
        return s.remote_done and not s.local_done

    def _stream_closed(self, s: _Stream) -> None:
        self._active -= 1
        if s.id:
            self._open_streams -= 1
        if self._closed:
            return
        self._open_waiting()
        self.on_idle()
        if self._going_away and not self.streams and not self._closed:
            self._close_connection()
