"""The server adapter: a :class:`~mosn_http1.readers.RequestReader` and one
:class:`~mosn_http1.writers.ResponseWriter` a request, bound to a downstream
connection and to the proxy's streams.

``ServerConnection`` sits on the connection as its read filter and callbacks: each
request becomes a ``ServerStream`` handed to ``new_stream``, whose handler is fed the
head, the body chunks as they arrive, and the end. Pipelined requests are answered in
order: a response produced early is held (bounded) until the ones before it are
sent, and at most ``max_pipelined_requests`` are handed out at once.

HTTP/1 cannot end one stream alone: resetting a stream closes its connection, and a
response that ends before its request closes the connection after it (the rest of the
request cannot be told from the next one; Envoy does the same). An upgrade (``101``,
or ``2xx`` to ``CONNECT``) turns the connection into a byte tunnel. An upgrade to a
protocol the proxy speaks itself (``Upgrade: h2c`` with the Http2 plugin installed) is
not tunnelled: the connection is handed over to that protocol's codec with the
request (``Connection.hand_over``).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from mosn.network.filter import CloseType, ConnectionEvent
from mosn.stream.types import (
    Headers,
    RequestHandler,
    RequestHead,
    ResponseHead,
    StreamResetReason,
)
from mosn_http1 import frames
from mosn_http1.adapter import CORK_JOIN_LIMIT, FeedLoop, StreamIO
from mosn_http1.config import Limits
from mosn_http1.readers import RequestReader
from mosn_http1.state import (
    CLIENT,
    DONE,
    HEAD,
    HEAD_END,
    IDLE,
    RESET,
    SEND_BODY,
    SERVER,
    SWITCH,
    SWITCHED_PROTOCOL,
    advance,
)
from mosn_http1.state import END as END_INPUT
from mosn_http1.writers import ResponseWriter

_FLUSH = CloseType.FLUSH_WRITE
_TERMINATED = StreamResetReason.CONNECTION_TERMINATION
_PROTOCOL_ERROR = StreamResetReason.PROTOCOL_ERROR
_OVERFLOW = StreamResetReason.OVERFLOW
# Events of a request parsed while the pipeline was full, replayed when its turn comes.
_HEADERS, _DATA, _TRAILERS = 0, 1, 2

UPGRADE_OFFER_FIELDS = frozenset({"upgrade", "connection", "http2-settings"})
"""The fields of an upgrade offer, left out when the offer is not taken."""

TakeOver = Callable[[Any, RequestHead, bytes], bool]
"""Hands a connection and its upgrade request (read in full) over to another protocol,
with the bytes read after the request; False if that protocol declines the request."""


class ServerStream(ResponseWriter, StreamIO):
    """One request of a downstream connection and the way to answer it."""

    __slots__ = (
        "codec", "handler", "backlog", "request", "corked", "held", "held_bytes", "above",
        "disabled", "dead", "released",
    )

    def __init__(self, codec: "ServerConnection", method: str, http10: bool,
                 keep_alive: bool, upgrade: bool, request: int = IDLE) -> None:
        ResponseWriter.__init__(self, method, http10, keep_alive, upgrade)
        self.codec = codec
        self.handler: RequestHandler | None = None
        self.backlog: list[tuple[int, Any, bool]] | None = None
        self.request = request
        """The request's state (``CLIENT`` role): ``DONE`` once read in full."""
        self.corked: bytes | None = None
        self.held: list[bytes] | None = None
        self.held_bytes = 0
        self.above = False
        self.disabled = 0
        self.dead = False
        """Reset (by either side): the handler hears nothing more, sends are ignored."""
        self.released = False

    # -- ServerStream --------------------------------------------------------------------

    # A send the stream is past (after a reset by either side, or a second head) is
    # ignored, as the stream contract has it; the writer refuses one only a bug makes.

    def send_headers(self, head: ResponseHead, end_stream: bool) -> None:
        if self.dead or self.response != IDLE:
            return
        codec = self.codec
        data = self.write_head(head, end_stream, codec._going_away and codec._is_last(self))
        response = self.response
        if response == IDLE:  # an interim response
            if data:
                self._write(data)
            return
        tunnel = response == SWITCHED_PROTOCOL
        if end_stream or tunnel or codec._active is not self:
            self._write(data)
        else:
            # The body follows, most often within this same call from the proxy:
            # one write for both (flushed on the next loop turn if it does not).
            self.corked = data
            codec.conn.loop.call_soon(self._uncork)
        if tunnel:
            codec._open_tunnel(self)
        if end_stream:
            codec._response_done(self)

    def send_data(self, data: bytes, end_stream: bool) -> None:
        if self.dead or not IDLE < self.response < DONE:  # sending a body
            return
        out = self.write_data(data, end_stream)
        if out:
            self._write(out)
        if end_stream:
            self.codec._response_done(self)

    def send_trailers(self, trailers: Headers) -> None:
        if self.dead or not IDLE < self.response < DONE:  # sending a body
            return
        out = self.write_trailers(trailers)
        if out:
            self._write(out)
        self.codec._response_done(self)

    def reset(self, reason: StreamResetReason) -> None:
        """HTTP/1 cannot reset one stream: the connection closes once what was sent
        before this stream's turn has been written."""
        if self.dead or self.response >= DONE:
            return
        self.dead = True
        self.handler = None
        self.held = None
        self.held_bytes = 0
        self.close_after = True
        self.response = advance(SERVER, self.response, RESET)
        codec = self.codec
        codec._reading = False  # requests after this one would only be reset
        codec._response_done(self)

    def read_disable(self, disable: bool) -> None:
        if not self.released:
            self._read_disable(self.codec.conn, disable)

    # -- internal -----------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        codec = self.codec
        if codec._active is self:
            corked = self.corked
            if corked is not None:  # the head held back for this body
                self.corked = None
                if len(data) <= CORK_JOIN_LIMIT:
                    data = corked + data
                else:
                    codec.conn.write(corked)
            codec.conn.write(data)
            return
        # An earlier response is still being sent: keep this one for its turn.
        if self.held is None:
            self.held = []
        self.held.append(data)
        self.held_bytes += len(data)
        if self.held_bytes > codec._max_held and not self.above:
            codec._watermark(self)

    def _uncork(self) -> None:
        corked = self.corked
        if corked is not None:
            self.corked = None
            if self.codec._active is self:
                self.codec.conn.write(corked)

    def __repr__(self) -> str:
        return f"<http1.ServerStream {self.method} response={self.response} dead={self.dead}>"


class ServerConnection(FeedLoop):
    """The server codec of one downstream connection (``Protocol.server``)."""

    __slots__ = (
        "conn", "new_stream", "_reader", "_limits", "_scheme", "_max_pipelined",
        "_max_held", "_streams", "_active", "_current", "_deferred", "_reading",
        "_parsing", "_unparsed", "_paused", "_above", "_going_away", "_closed", "_tunnel",
        "_tunnel_open", "_tunnel_buffer", "_upgrades", "_switch", "_head_timeout",
        "_head_timer", "_slow_head", "_reparse", "_migrating", "_after_reads_due",
    )

    def __init__(self, conn: Any, new_stream: Callable[[ServerStream], RequestHandler],
                 limits: Limits = Limits(), upgrades: dict[str, TakeOver] | None = None,
                 ) -> None:
        self.conn = conn
        self.new_stream = new_stream
        self._upgrades = upgrades or {}
        """Upgrade token -> the hand-over to the protocol that speaks it."""
        self._switch: tuple[TakeOver, RequestHead] | None = None
        """The hand-over to make, and its request, once that request is read in full."""
        self._reparse: tuple[str, list[tuple[str, str]], str | None] | None = None
        """A request line and fields to read again, without an upgrade offer not taken."""
        transport = getattr(conn, "transport", None)
        tls = transport is not None and transport.get_extra_info("sslcontext") is not None
        self._scheme = "https" if tls else "http"
        self._limits = limits
        self._reader = RequestReader(self, limits, self._scheme)
        self._max_pipelined = limits.max_pipelined_requests
        self._max_held = limits.max_held_response_bytes
        self._streams: deque[ServerStream] = deque()
        """Streams whose responses are not all written, in request order."""
        self._active: ServerStream | None = None
        """The first of ``_streams``: the one whose response is being written."""
        self._current: ServerStream | None = None
        """The stream whose request is being read (head parsed, end not yet)."""
        self._deferred: deque[ServerStream] = deque()
        """Streams parsed while ``max_pipelined_requests`` were with the proxy."""
        self._reading = True
        self._parsing = False
        self._unparsed: list[bytes] = []
        self._paused = False
        self._above = False
        self._going_away = False
        self._closed = False
        self._tunnel: ServerStream | None = None
        self._tunnel_open = False
        self._tunnel_buffer: list[bytes] = []
        self._head_timeout: float | None = getattr(new_stream, "request_headers_timeout", None)
        """Seconds a request head may take from its first byte (the ServerCallbacks
        contract); armed only for a head a read left incomplete."""
        self._head_timer: Any = None
        self._slow_head = False
        """A read left the current request head incomplete."""
        self._migrating: Callable[[], None] | None = None
        self._after_reads_due = False
        """A migration waits for its safe point."""
        conn.add_read_filter(self)
        conn.add_callbacks(self)

    # -- migration (ReadFilter): the safe point is between requests, with every
    # response written; httptools keeps a partial message to itself, so a connection
    # in the middle of one waits for its end. Nothing is held unprocessed there.

    def stop_for_migration(self, at_safe_point: Callable[[], None]) -> bool:
        if self._closed or self._going_away or self._tunnel is not None \
                or self._switch is not None:
            return False
        self._migrating = at_safe_point
        self._after_reads_due = True
        self._after_reads()
        return True

    def resume_after_migration(self) -> None:
        self._migrating = None
        self._after_reads_due = False

    def _after_reads(self) -> None:
        if self._migrating is not None and self._current is None \
                and not self._reader.in_head and not self._streams and not self._deferred \
                and not self._unparsed and not self._parsing and self._reading:
            at_safe_point, self._migrating = self._migrating, None
            self._after_reads_due = False
            at_safe_point()

    # -- ServerCodec ----------------------------------------------------------------------

    def go_away(self) -> None:
        """Answer the requests already read (and the one being read), then close."""
        self._going_away = True
        if self._current is None:
            self._reading = False
            if not self._streams:
                self._close()

    def on_shed(self) -> None:
        """The overload manager closes this connection: the request whose response is
        due and not begun is answered ``503`` (its handler reset) before the close."""
        s = self._active
        if s is None or s.response != IDLE or s is self._tunnel:
            return
        self._reading = False
        if s is self._current:
            self._current = None
        if not s.dead:
            self._kill(s, _OVERFLOW)
        s._write(frames.error_response(503))
        self._response_done(s)

    def on_codec_error(self) -> None:
        """This codec raised (a bug): the request being read is answered 500 after the
        responses before it, then the connection closes (as for a protocol error)."""
        self._protocol_error(500)

    # -- ReadFilter ---------------------------------------------------------------------

    def on_eof(self) -> bool:
        self._reading = False
        tunnel = self._tunnel
        if tunnel is not None:
            if tunnel.dead:
                return False
            tunnel.request = advance(CLIENT, tunnel.request, END_INPUT)
            if self._tunnel_open:
                if tunnel.handler is not None:
                    tunnel.handler.on_data(b"", True)
            return tunnel.response < DONE
        s = self._current
        if s is not None:
            # The rest of this request will never come.
            self._current = None
            self._kill(s, _TERMINATED)
            self._response_done(s)
        if not self._streams:
            return False
        return True  # answer the requests that were read in full, then close

    # -- ConnectionCallbacks ---------------------------------------------------------------

    def on_event(self, event: ConnectionEvent) -> None:
        if not event.is_close or self._closed:
            return
        self._closed = True
        self._reading = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        streams = list(self._streams)
        self._streams.clear()
        self._deferred.clear()
        self._active = self._current = None
        for s in streams:
            self._release(s)
            if not s.dead and s.response < DONE and s.handler is not None:
                s.dead = True
                s.response = advance(SERVER, s.response, RESET)
                handler, s.handler = s.handler, None
                handler.on_reset(_TERMINATED)

    def on_above_write_buffer_high_watermark(self) -> None:
        self._above = True
        if self._active is not None:
            self._watermark(self._active)

    def on_below_write_buffer_low_watermark(self) -> None:
        self._above = False
        if self._active is not None:
            self._watermark(self._active)

    # -- reading: the reader's calls (mosn_http1.handlers.RequestHandler) --------------

    def _feed(self, data: bytes) -> None:
        if self._tunnel is not None:
            self._tunnel_data(data)
            return
        if not self._reading:
            return
        reader = self._reader
        reader.feed(data)
        if reader.in_head and not self._slow_head and self._reading:
            self._slow_head = True
            # Its bytes are no activity for the connection's idle timeout, and from now
            # (the read that began it came just now) it has ``_head_timeout``.
            self.conn.count_reads_as_activity(False)
            if self._head_timeout:
                self._time_head()

    # What comes after reading stopped (going away, closing, the last request read)
    # is ignored, but a request's end: it ends the request being read.

    def on_request(self, head: RequestHead, end_stream: bool, keep_alive: bool,
                   upgrade: bool, expect_continue: bool) -> None:
        if not self._reading:
            return
        if self._slow_head:
            self._slow_head = False
            self.conn.count_reads_as_activity(True)
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
        if upgrade and self._upgrades:
            fields = head.headers.items()
            take_over = self._upgrade_to(fields)
            if take_over is not None:
                self._switch = (take_over, head)
                return  # handed over when the reader stops at the request's end
            if self._offers_own_upgrade(fields):
                # An upgrade to a protocol served here that cannot be taken now (a body
                # comes first): the offer is ignored, as RFC 9110 7.8 lets a server do.
                # The reader stops at an upgrade request's head, so the request is read
                # again without the offer once it stops (see _read_again).
                reader = self._reader
                self._reparse = (f"{head.method} {reader.target} HTTP/{head.version}\r\n",
                                 [f for f in fields if f[0] not in UPGRADE_OFFER_FIELDS],
                                 reader.host)
                return
        # The request's state: the table's IDLE --HEAD_END--> DONE for a head that is
        # the whole request, IDLE --HEAD--> SEND_BODY for one whose body follows.
        s = ServerStream(self, head.method, head.version == "1.0", keep_alive, upgrade,
                         DONE if end_stream else SEND_BODY)
        self._streams.append(s)
        if self._active is None:
            self._active = s
        if expect_continue and not s.http10:
            s._write(frames.CONTINUE)  # Envoy's default: the proxy answers it itself
        if end_stream:
            if not keep_alive or self._going_away:
                self._reading = False  # no request may follow this one
            self._dispatch(s, head, True)
            return
        self._current = s
        self._dispatch(s, head, False)  # the body (or an upgrade's tunnel) is on its way

    def on_body(self, data: bytes, end_stream: bool) -> None:
        if end_stream:
            self._request_done(data, None)
            return
        if not self._reading:
            return
        s = self._current
        if s is None:
            return  # the request's stream was dropped (reset, or a hand-over's request)
        handler = s.handler
        if handler is not None:
            handler.on_data(data, False)
        elif s.backlog is not None:
            s.backlog.append((_DATA, data, False))

    def on_end(self, trailers: Headers | None) -> None:
        self._request_done(b"", trailers)

    def _request_done(self, data: bytes, trailers: Headers | None) -> None:
        """The request being read is complete: its last body bytes (``data``, maybe
        empty) or its trailers end it."""
        s = self._current
        if s is None:
            return
        self._current = None
        if not s.keep_alive or self._going_away:
            self._reading = False  # no request may follow this one
        if s.upgrade:
            # The request's body is the tunnel's (ended by EOF): its end is none.
            self._tunnel = s
            if data:
                self._deliver(s, _DATA, data, False)
            return
        s.request = DONE  # the table's SEND_BODY --END--> DONE
        if trailers is not None:
            self._deliver(s, _TRAILERS, trailers, True)
        else:
            self._deliver(s, _DATA, data, True)

    def on_upgraded(self, rest: bytes) -> None:
        """The reader stopped at an upgrade request: hand the connection over, read
        the request again without the offer, or carry the rest as the tunnel's."""
        if not self._reading:
            return
        if self._switch is not None:
            self._switch_protocol(rest)
        elif self._reparse is not None:
            self._read_again(rest)
        else:
            self._tunnel_data(rest)

    def on_error(self, status: int, reason: object) -> None:
        """The client broke the protocol: counted, and answered with ``status``."""
        if not self._reading:
            return
        report = getattr(self.new_stream, "on_protocol_error", None)
        if report is not None:
            report(reason)
        self._protocol_error(status)

    def _time_head(self) -> None:
        self._head_timer = self.conn.loop.call_later(self._head_timeout, self._head_expired)

    def _head_expired(self) -> None:
        """``request_headers_timeout``: ``408``, after the responses before it, then
        close (a slowloris client gets no more of the connection)."""
        self._head_timer = None
        if self._closed or not self._reader.in_head or not self._reading:
            return
        if self._paused:
            self._time_head()  # the codec stopped reading (a full pipeline), not the client
            return
        report = getattr(self.new_stream, "on_request_headers_timeout", None)
        if report is not None:
            report()
        self._protocol_error(408)

    # -- upgrades ---------------------------------------------------------------------

    def _upgrade_to(self, fields: list[tuple[str, str]]) -> TakeOver | None:
        """The hand-over for an ``Upgrade`` token this request offers (RFC 9110 7.8),
        if the connection can be handed over: nothing else in flight on it, and no
        request body (which would come in HTTP/1.1 framing first)."""
        if self._streams or self._current is not None:
            return None
        found = None
        for name, value in fields:
            if name == "upgrade":
                for token in value.split(","):
                    found = found or self._upgrades.get(token.strip().lower())
            elif (name == "content-length" and value.strip() != "0") \
                    or name == "transfer-encoding":
                return None
        return found

    def _offers_own_upgrade(self, fields: list[tuple[str, str]]) -> bool:
        return any(token.strip().lower() in self._upgrades
                   for name, value in fields if name == "upgrade" for token in value.split(","))

    def _read_again(self, rest: bytes) -> None:
        """Read the request whose upgrade offer was ignored again, without the offer,
        with its body and whatever follows it (``rest``), with a new reader."""
        line, fields, host = self._reparse  # type: ignore[misc]
        self._reparse = None
        rest += b"".join(self._unparsed)
        self._unparsed.clear()
        host_field = [f"host: {host}\r\n"] if host is not None else []
        head = frames.head(line, host_field + [f"{name}: {value}\r\n" for name, value in fields])
        self._reader = RequestReader(self, self._limits, self._scheme)
        self._feed(head + rest)

    def _switch_protocol(self, rest: bytes) -> None:
        """Hand the connection and its request over. Declined (the other protocol
        found the request unfit), the request is answered as plain HTTP/1.1, the last
        one on this connection (the reader reads nothing after an upgrade)."""
        take_over, head = self._switch  # type: ignore[misc]
        self._switch = None
        self._reading = False
        rest += b"".join(self._unparsed)
        self._unparsed.clear()
        conn = self.conn
        if conn.hand_over(self, lambda: take_over(conn, head, rest)):
            self._closed = True
            return
        head.headers.retain(lambda k, _: k not in ("upgrade", "connection"))
        s = ServerStream(self, head.method, False, False, False)
        s.request = advance(CLIENT, IDLE, HEAD_END)
        self._streams.append(s)
        self._active = s
        self._dispatch(s, head, True)

    # -- errors -------------------------------------------------------------------------

    def _protocol_error(self, status: int) -> None:
        """Answer what could not be read with ``status`` (after the responses before
        it), then close."""
        self._reading = False
        s = self._current
        self._current = None
        if s is not None and not s.dead:
            started = s.response != IDLE
            self._kill(s, _PROTOCOL_ERROR)
            if started:
                self._response_done(s)  # too late for a reply: close after what was sent
                return
        else:
            s = ServerStream(self, "GET", False, False, False)
            self._streams.append(s)
            if self._active is None:
                self._active = s
            s.dead = True
            s.response = advance(SERVER, s.response, RESET)
        s.close_after = True
        s._write(frames.error_response(status))
        self._response_done(s)

    def _kill(self, s: ServerStream, reason: StreamResetReason) -> None:
        """Drop a stream whose request cannot complete: its handler hears ``reason``;
        the connection closes when its turn to answer comes."""
        handler = s.handler
        s.dead = True
        s.handler = None
        s.close_after = True
        if s.backlog is not None:
            s.backlog = None
            self._deferred.remove(s)
        over = s.response >= DONE
        s.response = advance(SERVER, s.response, RESET)
        if handler is not None and not over:
            handler.on_reset(reason)

    # -- handing requests to the proxy ---------------------------------------------------

    def _dispatch(self, s: ServerStream, head: RequestHead, end_stream: bool) -> None:
        # Every stream in _streams but the deferred ones is with the proxy, s included.
        if self._deferred or len(self._streams) > self._max_pipelined:
            # Enough requests are with the proxy: this one waits, and so does reading.
            s.backlog = [(_HEADERS, head, end_stream)]
            self._deferred.append(s)
            self._pause(True)
            return
        handler = s.handler = self.new_stream(s)
        if self._above and s is self._active:
            self._watermark(s)
        handler.on_headers(head, end_stream)

    def _deliver(self, s: ServerStream, kind: int, value: Any, end_stream: bool) -> None:
        handler = s.handler
        if handler is not None:
            if kind == _DATA:
                handler.on_data(value, end_stream)
            else:
                handler.on_trailers(value)
        elif s.backlog is not None:
            s.backlog.append((kind, value, end_stream))

    def _dispatch_deferred(self) -> None:
        deferred = self._deferred
        while (deferred and len(self._streams) - len(deferred) < self._max_pipelined
               and not self._closed):
            s = deferred.popleft()
            events, s.backlog = s.backlog, None
            s.handler = self.new_stream(s)
            if self._above and s is self._active:
                self._watermark(s)
            for kind, value, end_stream in events:
                handler = s.handler
                if handler is None:
                    break  # it ended while being replayed
                if kind == _HEADERS:
                    handler.on_headers(value, end_stream)
                elif kind == _DATA:
                    handler.on_data(value, end_stream)
                else:
                    handler.on_trailers(value)
        if not deferred:
            self._pause(False)

    def _pause(self, pause: bool) -> None:
        if pause != self._paused and not self._closed:
            self._paused = pause
            self.conn.read_disable(pause)

    # -- writing responses in order ------------------------------------------------------

    def _response_done(self, s: ServerStream) -> None:
        if s.corked is not None:
            s._uncork()
        if s is self._active:
            self._next_response()

    def _next_response(self) -> None:
        streams = self._streams
        while True:
            s = streams.popleft()
            # Its turn is over before anything else runs: releasing it may deliver held
            # bytes or an EOF at once, and this stream must not be "done" again then.
            self._active = None
            if s.disabled:
                self._release(s)
            else:
                s.released = True
            request_done = s.request == DONE
            if s is self._tunnel and self._tunnel_open and not request_done and not s.dead:
                # The upstream side of the tunnel ended: half-close, read on to EOF.
                self.conn.write_eof()
                return
            # Over for the codec: the handler (the proxy's stream, which holds this
            # one) hears nothing more; dropping it lets both be freed by reference
            # counting rather than left to the garbage collector.
            s.handler = None
            if s.close_after or not request_done or (
                    not streams and not self._reading and self._current is None):
                # Closing after what was written; the streams behind this one (if any)
                # are reset when the connection's close event comes.
                self._close()
                return
            if not streams:
                break
            s = self._active = streams[0]
            if s.held:
                self.conn.write(b"".join(s.held))
                s.held = None
                s.held_bytes = 0
            self._watermark(s)
            if s.response < DONE:
                break
        if self._deferred:
            self._dispatch_deferred()
        if self._migrating is not None:
            self._after_reads()

    def _release(self, s: ServerStream) -> None:
        """The stream is over for the codec: undo the read disables it still holds."""
        if not s.released:
            s.released = True
            if s.disabled:
                s._release_reads(self.conn)

    def _watermark(self, s: ServerStream) -> None:
        above = (self._above and s is self._active) or s.held_bytes > self._max_held
        handler = s.handler
        if above != s.above and handler is not None:
            s.above = above
            if above:
                handler.on_above_write_buffer_high_watermark()
            else:
                handler.on_below_write_buffer_low_watermark()

    def _is_last(self, s: ServerStream) -> bool:
        """``s`` is the last request read (going away: none follows it)."""
        streams = self._streams
        return bool(streams) and streams[-1] is s

    def _close(self) -> None:
        self._reading = False
        self.conn.close(_FLUSH)

    # -- upgrade tunnel ---------------------------------------------------------------

    def _tunnel_data(self, data: bytes) -> None:
        tunnel = self._tunnel
        if tunnel is None or tunnel.dead or not data:
            return
        if self._tunnel_open:
            tunnel.handler.on_data(data, False)
        else:
            # Bytes sent before the upgrade is accepted: kept, and no more read, until then.
            self._tunnel_buffer.append(data)
            self._pause(True)

    def _open_tunnel(self, tunnel: ServerStream) -> None:
        self._tunnel = tunnel  # the proxy may answer before the request is complete
        self._tunnel_open = True
        if tunnel.request == SEND_BODY:
            tunnel.request = advance(CLIENT, tunnel.request, SWITCH)
        buffered, self._tunnel_buffer = self._tunnel_buffer, []
        for data in buffered:
            if tunnel.handler is None:
                return
            tunnel.handler.on_data(data, False)
        if tunnel.request == DONE and tunnel.handler is not None:
            tunnel.handler.on_data(b"", True)  # the client's EOF came first
        self._pause(False)
