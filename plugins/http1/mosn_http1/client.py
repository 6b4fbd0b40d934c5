"""The client adapter: a :class:`~mosn_http1.readers.ResponseReader` and one
:class:`~mosn_http1.writers.RequestWriter` a request, bound to an upstream
connection and to the pool. One request at a time (no pipelining upstream).
"""

from __future__ import annotations

from typing import Any, Callable

from mosn.network.filter import CloseType, ConnectionEvent
from mosn.stream.types import (
    Headers,
    RequestHead,
    ResponseHandler,
    ResponseHead,
    StreamResetReason,
)
from mosn_http1.adapter import FeedLoop, StreamIO
from mosn_http1.config import Limits
from mosn_http1.handlers import TUNNEL
from mosn_http1.readers import ResponseReader
from mosn_http1.state import DONE, IDLE
from mosn_http1.writers import RequestWriter

_FLUSH = CloseType.FLUSH_WRITE
_TERMINATED = StreamResetReason.CONNECTION_TERMINATION
_PROTOCOL_ERROR = StreamResetReason.PROTOCOL_ERROR


class ClientStream(RequestWriter, StreamIO):
    """One request sent on an upstream connection, and its response coming back."""

    __slots__ = (
        "codec", "handler", "corked", "response_head", "close_delimited",
        "disabled", "dead", "answered",
    )

    def __init__(self, codec: "ClientConnection", handler: ResponseHandler) -> None:
        RequestWriter.__init__(self)
        self.codec = codec
        self.handler = handler
        self.corked: bytes | None = None
        self.response_head: ResponseHead | None = None
        self.close_delimited = False
        """The response body ends when the connection does (RFC 9112 6.3), as read
        from the head as it came: the proxy strips ``transfer-encoding`` from the head
        it forwards."""
        self.disabled = 0
        self.dead = False
        """Over for the codec: reset, or its response complete. Sends are ignored."""
        self.answered = False
        """A byte of the response came."""

    # -- ClientStream ---------------------------------------------------------------------

    # A send the stream is past is ignored, as the stream contract has it.

    def send_headers(self, head: RequestHead, end_stream: bool) -> None:
        if self.dead or self.request != IDLE:
            return
        data = self.write_head(head, end_stream)
        codec = self.codec
        codec._reader.expect(self.method, self.upgrade)
        if end_stream:
            codec.conn.write(data)
            if codec._tunnel:
                self._request_end()
        else:
            self._cork(codec.conn, data)

    def send_data(self, data: bytes, end_stream: bool) -> None:
        if self.dead or not IDLE < self.request < DONE:  # sending a body
            return
        out = self.write_data(data, end_stream)
        if out:
            self._write(out)
        elif end_stream:
            self._uncork()
        if end_stream:
            if self.codec._tunnel:
                self.codec.conn.write_eof()  # the client's side of the tunnel ended
            self._request_end()

    def send_trailers(self, trailers: Headers) -> None:
        if self.dead or not IDLE < self.request < DONE:  # sending a body
            return
        out = self.write_trailers(trailers)
        if out:
            self._write(out)
        else:
            self._uncork()
        self._request_end()

    def reset(self, reason: StreamResetReason) -> None:
        """Abandon the request: HTTP/1 can only drop the connection under it."""
        codec = self.codec
        if self.dead or codec._stream is not self:
            return
        codec._detach(self)
        codec._close(CloseType.NO_FLUSH)

    def read_disable(self, disable: bool) -> None:
        if not self.dead:
            self._read_disable(self.codec.conn, disable)

    def _write(self, data: bytes) -> None:
        self._write_uncorked(self.codec.conn, data)

    def _uncork(self) -> None:
        corked = self.corked
        if corked is not None:
            self.corked = None
            if not self.dead:
                self.codec.conn.write(corked)

    def _request_end(self) -> None:
        codec = self.codec
        if codec._tunnel and codec._response_ended and codec._stream is self:
            codec._detach(self)  # both directions of the tunnel are over

    def __repr__(self) -> str:
        return f"<http1.ClientStream {self.method} dead={self.dead}>"


class ClientConnection(FeedLoop):
    """The client codec of one upstream connection (``Protocol.client``)."""

    multiplexed = False

    __slots__ = (
        "conn", "on_idle", "_reader", "_stream", "_keep_alive", "_closed", "_above",
        "_tunnel", "_response_ended", "_parsing", "_unparsed", "_after_reads_due",
        "_reused",
    )

    def __init__(self, conn: Any, on_idle: Callable[[], None], limits: Limits = Limits()) -> None:
        self.conn = conn
        self.on_idle = on_idle
        self._reader = ResponseReader(self, limits)
        self._stream: ClientStream | None = None
        self._keep_alive = True
        """False once either side said close, or the connection's state is unclear."""
        self._closed = False
        """Closed by either side: nothing more is read or sent."""
        self._above = False
        self._tunnel = False
        self._response_ended = False
        self._parsing = False
        self._unparsed: list[bytes] = []
        self._after_reads_due = False
        """A response ended while reads were handled: the pool hears of it after."""
        self._reused = False
        """A response was complete on this connection before the current request."""
        conn.add_read_filter(self)
        conn.add_callbacks(self)

    # -- ClientCodec ----------------------------------------------------------------------

    def new_stream(self, handler: ResponseHandler) -> ClientStream:
        if self._stream is not None or self._closed:
            raise RuntimeError("an HTTP/1 connection carries one request at a time")
        s = self._stream = ClientStream(self, handler)
        if self._above:
            handler.on_above_write_buffer_high_watermark()
        return s

    def active_streams(self) -> int:
        return 0 if self._stream is None else 1

    def reusable(self) -> bool:
        return self._keep_alive and not self._closed and self._stream is None

    # -- ReadFilter ---------------------------------------------------------------------

    def on_eof(self) -> bool:
        self._keep_alive = False
        s = self._stream
        if s is None:
            return False
        if self._tunnel:
            self._response_ended = True
            s.handler.on_data(b"", True)
            if s.request == DONE:
                self._detach(s)
                return False
            return True  # the request's side of the tunnel may still be writing
        if s.response_head is not None and s.close_delimited:
            # A body delimited by the connection's close (RFC 9112 6.3): complete.
            s.handler.on_data(b"", True)
            self._response_end(s)
        else:
            self._reset(s, self._closed_under(s))
        return False

    # -- ConnectionCallbacks ---------------------------------------------------------------

    def on_event(self, event: ConnectionEvent) -> None:
        if not event.is_close:
            return
        self._closed = True
        s = self._stream
        if s is not None:
            failed = event in (ConnectionEvent.CONNECT_FAILED, ConnectionEvent.CONNECT_TIMEOUT)
            self._reset(s, StreamResetReason.CONNECTION_FAILURE if failed else self._closed_under(s))

    def _closed_under(self, s: ClientStream) -> StreamResetReason:
        """Why the connection closing under ``s`` ended it: a reused connection the
        server closed (an idle keep-alive timeout) as the request went out, before any
        byte of the response, is CLOSED_BEFORE_RESPONSE (an idempotent request may be
        sent again, RFC 9110 9.2.2)."""
        if self._reused and not s.answered:
            return StreamResetReason.CLOSED_BEFORE_RESPONSE
        return _TERMINATED

    def on_above_write_buffer_high_watermark(self) -> None:
        self._above = True
        if self._stream is not None:
            self._stream.handler.on_above_write_buffer_high_watermark()

    def on_below_write_buffer_low_watermark(self) -> None:
        self._above = False
        if self._stream is not None:
            self._stream.handler.on_below_write_buffer_low_watermark()

    # -- reading: the reader's calls (mosn_http1.handlers.ResponseHandler) -------------

    def _feed(self, data: bytes) -> None:
        s = self._stream
        if s is not None:
            s.answered = True
        if self._closed:
            return
        if self._tunnel:
            if s is not None and data:
                s.handler.on_data(data, False)
            return
        reader = self._reader
        reader.feed(data)
        if reader.spurious_body:
            self._keep_alive = False  # a body where none belongs (after a HEAD response)

    # What comes after the connection closed is ignored (the reader finishes the
    # bytes of the read it was given).

    def on_response(self, head: ResponseHead, end_stream: bool, keep_alive: bool,
                    body: int, close_delimited: bool) -> None:
        if self._closed:
            return
        s = self._stream
        if s is None:
            self._protocol_error("a response with no request")
            return
        s.response_head = head
        if not keep_alive:
            s.keep_alive = False
        if body == TUNNEL:
            self._tunnel = True
            s.keep_alive = False
            s.handler.on_headers(head, False)
            return
        s.close_delimited = close_delimited
        s.handler.on_headers(head, end_stream)
        if end_stream:
            self._response_end(s)

    def on_body(self, data: bytes, end_stream: bool) -> None:
        s = self._stream
        if s is None or self._closed or s.response_head is None:
            return
        if end_stream:
            if not self._tunnel:
                s.handler.on_data(data, True)
                self._response_end(s)
        else:
            s.handler.on_data(data, False)

    def on_end(self, trailers: Headers | None) -> None:
        s = self._stream
        if s is None or self._closed or s.response_head is None or self._tunnel:
            return
        if trailers is not None:
            s.handler.on_trailers(trailers)
        else:
            s.handler.on_data(b"", True)
        self._response_end(s)

    def on_upgraded(self, rest: bytes) -> None:
        s = self._stream
        if rest and s is not None and not self._closed:
            s.handler.on_data(rest, False)

    def on_error(self, status: int, reason: object) -> None:
        if not self._closed:
            self._protocol_error(reason)

    # -- internal -------------------------------------------------------------------------

    def _response_end(self, s: ClientStream) -> None:
        if self._stream is not s:
            return
        if not s.keep_alive or s.request != DONE:
            # Closing, or the rest of the request is not wanted: either way this
            # connection's state is unclear for another request.
            self._keep_alive = False
        self._detach(s)
        self._reused = True
        self._after_reads_due = True
        if not self._parsing:
            self._after_reads()

    def _after_reads(self) -> None:
        """The response ended: the pool hears the connection is idle (after the reads
        being handled, if any)."""
        self._after_reads_due = False
        self.on_idle()
        if self._stream is None and (not self._keep_alive or self._closed):
            self._close(_FLUSH)  # not reusable()

    def _detach(self, s: ClientStream) -> None:
        s.dead = True
        if self._stream is s:
            self._stream = None
        if s.disabled:
            s._release_reads(self.conn)

    def _reset(self, s: ClientStream, reason: StreamResetReason) -> None:
        self._keep_alive = False
        self._detach(s)
        s.handler.on_reset(reason)

    def _protocol_error(self, reason: object) -> None:
        """The host broke the protocol: counted; its stream is reset and the
        connection closed."""
        report = getattr(self.on_idle, "on_protocol_error", None)
        if report is not None:
            report(reason)
        s = self._stream
        if s is not None:
            self._reset(s, _PROTOCOL_ERROR)
        self._close(CloseType.NO_FLUSH)

    def _close(self, how: CloseType) -> None:
        """Close the connection; nothing more is read from it."""
        self._keep_alive = False
        if not self._closed:
            self._closed = True
            self.conn.close(how)

