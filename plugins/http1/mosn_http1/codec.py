"""HTTP/1 stream connections on httptools (llhttp).

``ServerConnection`` sits on a downstream connection as its read filter and
callbacks: each request becomes a ``ServerStream`` handed to ``new_stream``, whose
handler is fed the head, the body chunks as they arrive, and the end. Pipelined
requests are answered in order: a response produced early is held (bounded) until the
ones before it are sent, and at most ``max_pipelined_requests`` are handed out at once.

``ClientConnection`` sits on an upstream connection and sends one request at a time.

HTTP/1 cannot end one stream alone: resetting a stream closes its connection, and a
response that ends before its request closes the connection after it (the rest of the
request cannot be told from the next one; Envoy does the same). An upgrade (``101``,
or ``2xx`` to ``CONNECT``) turns the connection into a byte tunnel: the request's and
the response's bodies are then the raw bytes of each direction, ended by EOF. An
upgrade to a protocol the proxy speaks itself (``Upgrade: h2c`` with the Http2 plugin
installed) is not tunnelled: the connection is handed over to that protocol's codec
with the request (see ``ServerConnection._upgrade_to``).

Header names are lower-cased once, here; values are the wire's bytes as Latin-1 text.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

import httptools

from mosn.network.filter import (
    CloseType,
    ConnectionCallbacks,
    ConnectionEvent,
    FilterStatus,
    ReadFilter,
)
from mosn.stream.types import (
    CodecError,
    Headers,
    RequestHandler,
    RequestHead,
    ResponseHandler,
    ResponseHead,
    StreamResetReason,
)
from mosn_http1 import frames
from mosn_http1.config import Limits
from mosn_http1.target import check_transfer_coding, origin_form

_STOP = FilterStatus.STOP
_FLUSH = CloseType.FLUSH_WRITE
_TERMINATED = StreamResetReason.CONNECTION_TERMINATION
_PROTOCOL_ERROR = StreamResetReason.PROTOCOL_ERROR
_OVERFLOW = StreamResetReason.OVERFLOW
_KNOWN_METHODS = {m: m.decode() for m in (
    b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH")}
_VERSIONS = frozenset({"1.0", "1.1"})
_NO_BODY_STATUSES = frozenset({204, 304})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
"""Methods whose empty request still gets ``content-length: 0`` (RFC 9110 8.6: a
server may answer 411 to one without it)."""
_SPECIAL_FIELDS = frozenset({"host", "expect", "transfer-encoding"})
_FRAMING_FIELDS = frozenset({"transfer-encoding", "content-length"})
"""Response fields that say how its body is framed (RFC 9112 6.3)."""
CORK_JOIN_LIMIT = 16 * 1024
"""A head waiting for its body is joined with a first chunk up to this size into one
write (a copy is cheaper than a second send syscall); a larger chunk goes on its own."""

# Response progress of a stream.
_NOT_STARTED, _STARTED, _DONE = 0, 1, 2
# How a response body is written.
_IDENTITY, _CHUNKED, _NO_BODY = 0, 1, 2
# Events of a request parsed while the pipeline was full, replayed when its turn comes.
_HEADERS, _DATA, _TRAILERS = 0, 1, 2


UPGRADE_OFFER_FIELDS = frozenset({"upgrade", "connection", "http2-settings"})
"""The fields of an upgrade offer, left out when the offer is not taken."""

TakeOver = Callable[[Any, RequestHead, bytes], bool]
"""Hands a connection and its upgrade request (read in full) over to another protocol,
with the bytes read after the request; False if that protocol declines the request."""


class _Stop(Exception):
    """Raised from a parser callback to stop parsing the rest of the input."""


def _reraise(exc: httptools.HttpParserCallbackError) -> None:
    """A parser callback raised: raise what it raised (a limit's ``CodecError``, a
    ``_Stop``, or a bug further up) instead of httptools' wrapper."""
    raise exc.__context__ or exc


# -- server side ---------------------------------------------------------------------


def _write_uncorked(stream: Any, conn: Any, data: bytes) -> None:
    """Write ``data`` after the head held back for it (``stream.corked``), joined
    into one write when small."""
    corked = stream.corked
    if corked is not None:
        stream.corked = None
        if len(data) <= CORK_JOIN_LIMIT:
            data = corked + data
        else:
            conn.write(corked)
    conn.write(data)


def _read_disable(stream: Any, disable: bool) -> None:
    """A stream's read_disable: counted, so it only releases what it asked for."""
    if disable:
        stream.disabled += 1
        stream.codec.conn.read_disable(True)
    elif stream.disabled:
        stream.disabled -= 1
        stream.codec.conn.read_disable(False)


class ServerStream:
    """One request of a downstream connection and the way to answer it."""

    __slots__ = (
        "codec", "handler", "head", "backlog", "method", "http10", "keep_alive", "upgrade",
        "request_done", "response", "framing", "close_after", "corked", "held",
        "held_bytes", "above", "disabled", "dead", "released",
    )

    def __init__(self, codec: "ServerConnection", method: str, http10: bool,
                 keep_alive: bool, upgrade: bool) -> None:
        self.codec = codec
        self.handler: RequestHandler | None = None
        self.head: RequestHead | None = None
        """The head until it is handed to the handler (then the end_stream is known)."""
        self.backlog: list[tuple[int, Any, bool]] | None = None
        self.method = method
        self.http10 = http10
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.request_done = False
        self.response = _NOT_STARTED
        self.framing = _IDENTITY
        self.close_after = not keep_alive
        self.corked: bytes | None = None
        self.held: list[bytes] | None = None
        self.held_bytes = 0
        self.above = False
        self.disabled = 0
        self.dead = False
        """Reset (by either side): the handler hears nothing more, sends are ignored."""
        self.released = False

    # -- ServerStream --------------------------------------------------------------------

    def send_headers(self, head: ResponseHead, end_stream: bool) -> None:
        if self.dead or self.response != _NOT_STARTED:
            return
        codec = self.codec
        status = head.status
        if status < 200 and status != 101:
            # Interim: the codec sends 100 Continue itself; HTTP/1.0 gets none (RFC 9110 15.2).
            if status != 100 and not self.http10:
                lines, _, _ = frames.field_lines(head.headers.items())
                self._write(frames.head(frames.status_line(status, head.reason), lines))
            return
        lines, has_length, connection = frames.field_lines(head.headers.items())
        if connection is not None and "close" in connection:
            self.close_after = True
        method = self.method
        tunnel = False
        if status == 101 or (method == "CONNECT" and status < 300):
            if self.upgrade:
                tunnel = True  # both bodies are now the raw bytes of each direction
            else:
                self.framing = _NO_BODY
                self.close_after = True
        elif method == "HEAD" or status in _NO_BODY_STATUSES:
            self.framing = _NO_BODY
        elif self.upgrade:
            self.close_after = True  # refused: what follows the request is not HTTP
        if self.framing != _NO_BODY and not has_length and not tunnel:
            if end_stream:
                lines.append("content-length: 0\r\n")
            elif self.http10:
                self.close_after = True  # the body ends when the connection does
            else:
                self.framing = _CHUNKED
                lines.append("transfer-encoding: chunked\r\n")
        if codec._going_away and codec._streams and codec._streams[-1] is self:
            self.close_after = True
        if self.close_after:
            if connection is None:
                lines.append("connection: close\r\n")
        elif self.http10 and connection is None:
            lines.append("connection: keep-alive\r\n")
        self.response = _STARTED
        data = frames.head(frames.status_line(status, head.reason), lines)
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
        if self.dead or self.response != _STARTED:
            return
        framing = self.framing
        if framing == _IDENTITY:
            if data:
                self._write(data)
        elif framing == _CHUNKED:
            out = frames.chunk(data, end_stream)
            if out:
                self._write(out)
        if end_stream:
            self.codec._response_done(self)

    def send_trailers(self, trailers: Headers) -> None:
        if self.dead or self.response != _STARTED:
            return
        if self.framing == _CHUNKED:
            self._write(frames.trailers(trailers.items()))
        # Otherwise the body was framed by length or by close: no place for trailers.
        self.codec._response_done(self)

    def reset(self, reason: StreamResetReason) -> None:
        """HTTP/1 cannot reset one stream: the connection closes once what was sent
        before this stream's turn has been written."""
        if self.dead or self.response == _DONE:
            return
        self.dead = True
        self.handler = None
        self.held = None
        self.held_bytes = 0
        self.close_after = True
        codec = self.codec
        codec._reading = False  # requests after this one would only be reset
        codec._response_done(self)

    def read_disable(self, disable: bool) -> None:
        if not self.released:
            _read_disable(self, disable)

    # -- internal -----------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        codec = self.codec
        if codec._active is self:
            _write_uncorked(self, codec.conn, data)
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


class ServerConnection(ReadFilter, ConnectionCallbacks):
    """The server codec of one downstream connection (``Protocol.server``)."""

    __slots__ = (
        "conn", "new_stream", "_parser", "_scheme", "_max_head", "_max_fields",
        "_max_pipelined", "_max_held", "_streams", "_active", "_current", "_deferred",
        "_fields", "_url", "_authority", "_expect", "_codings", "_head_bytes", "_partial",
        "_in_head", "_begun", "_reading", "_parsing", "_unparsed", "_paused", "_above",
        "_going_away", "_closed", "_tunnel", "_tunnel_open", "_tunnel_buffer", "_upgrades",
        "_switch", "_head_timeout", "_head_timer", "_slow_head", "_reparse", "_migrating",
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
        self._parser = httptools.HttpRequestParser(self)
        transport = getattr(conn, "transport", None)
        tls = transport is not None and transport.get_extra_info("sslcontext") is not None
        self._scheme = "https" if tls else "http"
        self._max_head = limits.max_request_head_bytes
        self._max_fields = limits.max_headers_count
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
        self._fields: list[tuple[str, str]] = []
        self._url = b""
        self._authority: str | None = None
        self._expect = False
        self._codings: list[str] | None = None
        """The request's Transfer-Encoding values, if it has the field."""
        self._head_bytes = 0
        self._partial = 0
        self._in_head = False
        self._begun = 0
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
        self._check_migration()
        return True

    def resume_after_migration(self) -> None:
        self._migrating = None

    def _check_migration(self) -> None:
        if self._migrating is not None and self._current is None and not self._in_head \
                and not self._streams and not self._deferred and not self._unparsed \
                and not self._parsing and self._reading:
            at_safe_point, self._migrating = self._migrating, None
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
        if s is None or s.response != _NOT_STARTED or s is self._tunnel:
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

    def on_data(self, data: bytes) -> FilterStatus:
        if self._parsing:
            # Re-entered (a handler resumed reading and the connection delivered held
            # bytes at once): the parser is mid-call, so this waits its turn.
            self._unparsed.append(data)
            return _STOP
        self._parsing = True
        try:
            self._feed(data)
            while self._unparsed:
                self._feed(self._unparsed.pop(0))
        finally:
            self._parsing = False
        if self._migrating is not None:
            self._check_migration()
        return _STOP

    def on_eof(self) -> bool:
        self._reading = False
        tunnel = self._tunnel
        if tunnel is not None:
            if tunnel.dead:
                return False
            tunnel.request_done = True
            if self._tunnel_open:
                if tunnel.handler is not None:
                    tunnel.handler.on_data(b"", True)
            return tunnel.response != _DONE
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
            if not s.dead and s.response != _DONE and s.handler is not None:
                s.dead = True
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

    # -- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        if not self._reading:
            raise _Stop  # going away, closing, or the last request was read
        self._head_bytes = 0
        self._partial = 0
        self._in_head = True
        self._begun += 1

    def on_url(self, url: bytes) -> None:
        self._url += url  # may come in pieces, one per read
        self._head_bytes += len(url)
        if self._head_bytes > self._max_head:
            raise CodecError("request line too long", 431)

    def on_header(self, name: bytes, value: bytes) -> None:
        # The count is checked once the head is complete: until then the byte limit
        # bounds it (every field costs at least 4 bytes).
        size = self._head_bytes + len(name) + len(value) + 4
        if size > self._max_head:
            raise CodecError("request headers too large", 431)
        self._head_bytes = size
        k = name.decode("latin-1").lower()
        v = value.decode("latin-1")
        if k in _SPECIAL_FIELDS and self._in_head:
            if k == "host":
                if self._authority is not None:
                    raise CodecError("more than one Host")  # RFC 9112 3.2
                self._authority = v
                return
            if k == "transfer-encoding":
                if self._codings is None:
                    self._codings = []
                self._codings.append(v)
            elif v.lower() == "100-continue":
                self._expect = True
                return
        self._fields.append((k, v))

    def on_headers_complete(self) -> None:
        if not self._reading:
            raise _Stop
        parser = self._parser
        version = parser.get_http_version()
        if version not in _VERSIONS:
            raise CodecError(f"HTTP/{version} is not HTTP/1", 505)
        raw_method = parser.get_method()
        method = _KNOWN_METHODS.get(raw_method) or raw_method.decode("latin-1")
        fields = self._fields
        if len(fields) > self._max_fields:
            raise CodecError("too many request headers", 431)
        self._fields = []  # trailers, if any, come next
        self._head_bytes = 0
        self._in_head = False
        if self._slow_head:
            self._slow_head = False
            self.conn.count_reads_as_activity(True)
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
        target, host = self._url.decode("latin-1"), self._authority
        path, authority = origin_form(method, target, host, version)
        self._url = b""
        self._authority = None
        if self._codings is not None:
            codings, self._codings = self._codings, None
            check_transfer_coding(codings, version)
        upgrade = parser.should_upgrade()
        if upgrade and self._upgrades:
            take_over = self._upgrade_to(fields)
            if take_over is not None:
                head = RequestHead(method, path, authority, self._scheme, Headers(fields),
                                   version)
                self._expect = False
                self._switch = (take_over, head)
                return  # handed over when llhttp stops at the request's end
            if self._offers_own_upgrade(fields):
                # An upgrade to a protocol served here that cannot be taken now (a body
                # comes first): the offer is ignored, as RFC 9110 7.8 lets a server do.
                # llhttp stops at an upgrade request's head, so the request is read
                # again without the offer once it stops (see _read_again).
                self._reparse = (f"{method} {target} HTTP/{version}\r\n",
                                 [f for f in fields if f[0] not in UPGRADE_OFFER_FIELDS], host)
                return
        s = ServerStream(self, method, version == "1.0", parser.should_keep_alive(), upgrade)
        s.head = RequestHead(method, path, authority, self._scheme, Headers(fields), version)
        expect, self._expect = self._expect, False
        streams = self._streams
        streams.append(s)
        if self._active is None:
            self._active = s
        self._current = s
        if expect and not s.http10:
            s._write(frames.CONTINUE)  # Envoy's default: the proxy answers it itself
        if upgrade:
            self._dispatch(s, False)  # the request's body is the tunnel, ended by EOF

    def on_body(self, body: bytes) -> None:
        if not self._reading:
            raise _Stop
        s = self._current
        if s.head is not None:
            self._dispatch(s, False)
        handler = s.handler
        if handler is not None:
            handler.on_data(body, False)
        elif s.backlog is not None:
            s.backlog.append((_DATA, body, False))

    def on_message_complete(self) -> None:
        s = self._current
        if s is None:
            return
        trailers = self._fields
        if trailers:
            if len(trailers) > self._max_fields:
                raise CodecError("too many trailer fields", 431)
            self._fields = []
        self._current = None
        if not s.keep_alive or self._going_away:
            self._reading = False  # no request may follow this one
        if s.upgrade:
            self._tunnel = s
            return
        s.request_done = True
        if s.head is not None and not trailers:
            self._dispatch(s, True)
            return
        if s.head is not None:
            self._dispatch(s, False)
        if trailers:
            self._deliver(s, _TRAILERS, Headers(trailers), True)
        else:
            self._deliver(s, _DATA, b"", True)

    # -- parsing ----------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        if self._tunnel is not None:
            self._tunnel_data(data)
            return
        if not self._reading:
            return
        begun = self._begun
        try:
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserCallbackError as exc:
                _reraise(exc)
        except httptools.HttpParserUpgrade as exc:
            if self._switch is not None:
                self._switch_protocol(data[exc.args[0]:])
            elif self._reparse is not None:
                self._read_again(data[exc.args[0]:])
            else:
                self._tunnel_data(data[exc.args[0]:])
            return
        except _Stop:
            self._reading = False
            return
        except CodecError as exc:
            self._client_broke(exc.status, exc)
            return
        except httptools.HttpParserError as exc:
            if self._reading:  # else: bytes after a last request, ignored
                self._client_broke(400, exc)
            return
        s = self._current
        if s is not None and s.head is not None:
            self._dispatch(s, False)  # the body is on its way
        elif self._in_head and self._begun == begun:
            # httptools keeps a header line that spans reads to itself; a read that
            # fell wholly inside one head counts against the limit here.
            self._partial += len(data)
            if self._partial > self._max_head:
                self._client_broke(431, "a request head over the size limit")
                return
        if self._in_head and not self._slow_head and self._reading:
            self._slow_head = True
            # Its bytes are no activity for the connection's idle timeout, and from now
            # (the read that began it came just now) it has ``_head_timeout``.
            self.conn.count_reads_as_activity(False)
            if self._head_timeout:
                self._time_head()

    def _time_head(self) -> None:
        self._head_timer = self.conn.loop.call_later(self._head_timeout, self._head_expired)

    def _head_expired(self) -> None:
        """``request_headers_timeout``: ``408``, after the responses before it, then
        close (a slowloris client gets no more of the connection)."""
        self._head_timer = None
        if self._closed or not self._in_head or not self._reading:
            return
        if self._paused:
            self._time_head()  # the codec stopped reading (a full pipeline), not the client
            return
        report = getattr(self.new_stream, "on_request_headers_timeout", None)
        if report is not None:
            report()
        self._protocol_error(408)

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
        with its body and whatever follows it (``rest``), on a new parser."""
        line, fields, host = self._reparse  # type: ignore[misc]
        self._reparse = None
        rest += b"".join(self._unparsed)
        self._unparsed.clear()
        host_field = [f"host: {host}\r\n"] if host is not None else []
        head = frames.head(line, host_field + [f"{name}: {value}\r\n" for name, value in fields])
        self._parser = httptools.HttpRequestParser(self)
        self._feed(head + rest)

    def _switch_protocol(self, rest: bytes) -> None:
        """Hand the connection and its request over. Declined (the other protocol
        found the request unfit), the request is answered as plain HTTP/1.1, the last
        one on this connection (llhttp reads nothing after an upgrade)."""
        take_over, head = self._switch  # type: ignore[misc]
        self._switch = None
        self._reading = False
        rest += b"".join(self._unparsed)
        self._unparsed.clear()
        conn = self.conn
        conn.read_filters.remove(self)
        conn.callbacks.remove(self)
        if take_over(conn, head, rest):
            self._closed = True
            return
        conn.add_read_filter(self)
        conn.add_callbacks(self)
        head.headers.retain(lambda k, _: k not in ("upgrade", "connection"))
        s = ServerStream(self, head.method, False, False, False)
        s.head = head
        s.request_done = True
        self._streams.append(s)
        self._active = s
        self._dispatch(s, True)

    def _client_broke(self, status: int, reason: object) -> None:
        """The client broke the protocol: counted, and answered with ``status``."""
        report = getattr(self.new_stream, "on_protocol_error", None)
        if report is not None:
            report(reason)
        self._protocol_error(status)

    def _protocol_error(self, status: int) -> None:
        """Answer what could not be read with ``status`` (after the responses before
        it), then close."""
        self._reading = False
        s = self._current
        self._current = None
        if s is not None and not s.dead:
            self._kill(s, _PROTOCOL_ERROR)
            if s.response != _NOT_STARTED:
                self._response_done(s)  # too late for a reply: close after what was sent
                return
        else:
            s = ServerStream(self, "GET", False, False, False)
            self._streams.append(s)
            if self._active is None:
                self._active = s
            s.dead = True
        s.close_after = True
        s._write(frames.error_response(status))
        self._response_done(s)

    def _kill(self, s: ServerStream, reason: StreamResetReason) -> None:
        """Drop a stream whose request cannot complete: its handler hears ``reason``;
        the connection closes when its turn to answer comes."""
        handler = s.handler
        s.dead = True
        s.handler = None
        s.head = None
        s.close_after = True
        if s.backlog is not None:
            s.backlog = None
            self._deferred.remove(s)
        if handler is not None and s.response != _DONE:
            handler.on_reset(reason)

    # -- handing requests to the proxy ---------------------------------------------------

    def _dispatch(self, s: ServerStream, end_stream: bool) -> None:
        head = s.head
        s.head = None
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
        s.response = _DONE
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
            self._release(s)
            if s is self._tunnel and self._tunnel_open and not s.request_done and not s.dead:
                # The upstream side of the tunnel ended: half-close, read on to EOF.
                self._active = None
                self.conn.write_eof()
                return
            if s.close_after or not s.request_done or (
                    not streams and not self._reading and self._current is None):
                # Closing after what was written; the streams behind this one (if any)
                # are reset when the connection's close event comes.
                self._close()
                return
            if not streams:
                self._active = None
                break
            s = self._active = streams[0]
            if s.held:
                self.conn.write(b"".join(s.held))
                s.held = None
                s.held_bytes = 0
            self._watermark(s)
            if s.response != _DONE:
                break
        if self._deferred:
            self._dispatch_deferred()
        if self._migrating is not None:
            self._check_migration()

    def _release(self, s: ServerStream) -> None:
        """The stream is over for the codec: undo the read disables it still holds."""
        if s.released:
            return
        s.released = True
        while s.disabled:
            s.disabled -= 1
            self.conn.read_disable(False)

    def _watermark(self, s: ServerStream) -> None:
        above = (self._above and s is self._active) or s.held_bytes > self._max_held
        handler = s.handler
        if above != s.above and handler is not None:
            s.above = above
            if above:
                handler.on_above_write_buffer_high_watermark()
            else:
                handler.on_below_write_buffer_low_watermark()

    def _close(self) -> None:
        self._reading = False
        self.conn.close(_FLUSH)

    # -- upgrade tunnel ---------------------------------------------------------------

    def _tunnel_data(self, data: bytes) -> None:
        tunnel = self._tunnel
        if tunnel.dead or not data:
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
        buffered, self._tunnel_buffer = self._tunnel_buffer, []
        for data in buffered:
            if tunnel.handler is None:
                return
            tunnel.handler.on_data(data, False)
        if tunnel.request_done and tunnel.handler is not None:
            tunnel.handler.on_data(b"", True)  # the client's EOF came first
        self._pause(False)


# -- client side ---------------------------------------------------------------------


class ClientStream:
    """One request sent on an upstream connection, and its response coming back."""

    __slots__ = (
        "codec", "handler", "method", "upgrade", "chunked", "headers_sent", "request_done",
        "corked", "pending", "response_head", "close_delimited", "keep_alive", "disabled",
        "dead", "answered",
    )

    def __init__(self, codec: "ClientConnection", handler: ResponseHandler) -> None:
        self.codec = codec
        self.handler = handler
        self.method = ""
        self.upgrade = False
        self.chunked = False
        self.headers_sent = False
        self.request_done = False
        self.corked: bytes | None = None
        self.pending: ResponseHead | None = None
        """The response head until its end_stream is known."""
        self.response_head: ResponseHead | None = None
        self.close_delimited = False
        """The response body ends when the connection does (RFC 9112 6.3: no
        Content-Length, no Transfer-Encoding), as read from the head as it came: the
        proxy strips ``transfer-encoding`` from the head it forwards."""
        self.keep_alive = True
        self.disabled = 0
        self.dead = False
        """Over for the codec: reset, or its response complete. Sends are ignored."""
        self.answered = False
        """A byte of the response came."""

    # -- ClientStream ---------------------------------------------------------------------

    def send_headers(self, head: RequestHead, end_stream: bool) -> None:
        if self.dead or self.headers_sent:
            return
        method = self.method = head.method
        authority = head.authority
        lines, has_length, connection = frames.field_lines(
            head.headers.items(), "host" if authority else "")
        if authority or "host" not in head.headers:
            lines.insert(0, f"host: {authority}\r\n")  # required in HTTP/1.1 (RFC 9112 3.2)
        if connection is not None:
            if "close" in connection:
                self.keep_alive = False
            # RFC 9110 7.8: an upgrade request names ``upgrade`` in Connection.
            self.upgrade = "upgrade" in connection
        if method == "CONNECT":
            self.upgrade = True
        if end_stream:
            if not has_length and method in _BODY_METHODS:
                lines.append("content-length: 0\r\n")
        elif not has_length and not self.upgrade:
            self.chunked = True
            lines.append("transfer-encoding: chunked\r\n")
        self.headers_sent = True
        # Always HTTP/1.1, whatever the client spoke: the proxy's side is its own hop.
        data = frames.head(f"{method} {head.path or '/'} HTTP/1.1\r\n", lines)
        conn = self.codec.conn
        if end_stream:
            conn.write(data)
            self._request_end()
        else:
            self.corked = data  # see ServerStream.send_headers
            conn.loop.call_soon(self._uncork)

    def send_data(self, data: bytes, end_stream: bool) -> None:
        if self.dead or self.request_done or not self.headers_sent:
            return
        conn = self.codec.conn
        out = frames.chunk(data, end_stream) if self.chunked else data
        if out:
            self._write(out)
        elif end_stream:
            self._uncork()
        if end_stream:
            if self.codec._tunnel:
                conn.write_eof()  # the client's side of the tunnel ended
            self._request_end()

    def send_trailers(self, trailers: Headers) -> None:
        if self.dead or self.request_done or not self.headers_sent:
            return
        if self.chunked:
            self._write(frames.trailers(trailers.items()))
        else:
            self._uncork()
        # A body framed by Content-Length has no place for trailers: they are dropped.
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
            _read_disable(self, disable)

    def _write(self, data: bytes) -> None:
        _write_uncorked(self, self.codec.conn, data)

    def _uncork(self) -> None:
        corked = self.corked
        if corked is not None:
            self.corked = None
            if not self.dead:
                self.codec.conn.write(corked)

    def _request_end(self) -> None:
        self.request_done = True
        codec = self.codec
        if codec._tunnel and codec._response_ended and codec._stream is self:
            codec._detach(self)  # both directions of the tunnel are over

    def __repr__(self) -> str:
        return f"<http1.ClientStream {self.method} dead={self.dead}>"


class ClientConnection(ReadFilter, ConnectionCallbacks):
    """The client codec of one upstream connection (``Protocol.client``)."""

    multiplexed = False

    __slots__ = (
        "conn", "on_idle", "_parser", "_max_head", "_max_fields", "_stream", "_fields",
        "_reason", "_head_bytes", "_partial", "_in_head", "_begun", "_interim",
        "_keep_alive", "_closed", "_above", "_tunnel", "_response_ended", "_parsing",
        "_unparsed", "_fresh_parser", "_idle", "_codings", "_has_length", "_reused",
    )

    def __init__(self, conn: Any, on_idle: Callable[[], None], limits: Limits = Limits()) -> None:
        self.conn = conn
        self.on_idle = on_idle
        self._parser = httptools.HttpResponseParser(self)
        self._max_head = limits.max_response_head_bytes
        self._max_fields = limits.max_headers_count
        self._stream: ClientStream | None = None
        self._fields: list[tuple[str, str]] = []
        self._reason = b""
        self._head_bytes = 0
        self._partial = 0
        self._in_head = False
        self._begun = 0
        self._interim = False
        self._keep_alive = True
        """False once either side said close, or the connection's state is unclear."""
        self._closed = False
        """Closed by either side: nothing more is read or sent."""
        self._above = False
        self._tunnel = False
        self._response_ended = False
        self._parsing = False
        self._unparsed: list[bytes] = []
        self._fresh_parser = False
        self._idle = False
        self._codings: list[str] | None = None
        """The response head's Transfer-Encoding values, if it has the field."""
        self._has_length = False
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

    def on_data(self, data: bytes) -> FilterStatus:
        if self._stream is not None:
            self._stream.answered = True
        if self._parsing:
            self._unparsed.append(data)  # re-entered: see ServerConnection.on_data
            return _STOP
        self._parsing = True
        try:
            self._feed(data)
            while self._unparsed:
                self._feed(self._unparsed.pop(0))
        finally:
            self._parsing = False
        if self._idle:
            self._became_idle()
        return _STOP

    def on_eof(self) -> bool:
        self._keep_alive = False
        s = self._stream
        if s is None:
            return False
        if self._tunnel:
            self._response_ended = True
            s.handler.on_data(b"", True)
            if s.request_done:
                self._detach(s)
                return False
            return True  # the request's side of the tunnel may still be writing
        head = s.pending or s.response_head
        if head is not None and s.close_delimited:
            # A body delimited by the connection's close (RFC 9112 6.3): complete.
            if s.pending is not None:
                s.pending = None
                s.handler.on_headers(head, True)
            else:
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

    # -- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._stream is None:
            raise CodecError("a response with no request")
        self._reason = b""
        self._head_bytes = 0
        self._partial = 0
        self._in_head = True
        self._begun += 1
        self._codings = None
        self._has_length = False

    def on_status(self, reason: bytes) -> None:
        self._reason += reason
        self._head_bytes += len(reason)
        if self._head_bytes > self._max_head:
            raise CodecError("status line too long", 502)

    def on_header(self, name: bytes, value: bytes) -> None:
        size = self._head_bytes + len(name) + len(value) + 4  # count: see the server's
        if size > self._max_head:
            raise CodecError("response headers too large", 502)
        self._head_bytes = size
        k = name.decode("latin-1").lower()
        v = value.decode("latin-1")
        if k in _FRAMING_FIELDS and self._in_head:
            if k == "content-length":
                self._has_length = True
            elif self._codings is None:
                self._codings = [v]
            else:
                self._codings.append(v)
        self._fields.append((k, v))

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        fields = self._fields
        if len(fields) > self._max_fields:
            raise CodecError("too many response headers", 502)
        self._fields = []
        self._in_head = False
        self._head_bytes = 0
        s = self._stream
        if s is None:
            raise CodecError("a response with no request")
        if status < 200 and status != 101:
            self._interim = True  # 100 Continue, 103 Early Hints: not the response
            return
        head = s.response_head = ResponseHead(status, Headers(fields),
                                              self._reason.decode("latin-1"))
        if not parser.should_keep_alive():
            s.keep_alive = False
        method = s.method
        if status == 101 or (method == "CONNECT" and status < 300):
            if not s.upgrade:
                raise CodecError("an upgrade nobody asked for")
            self._tunnel = True
            s.keep_alive = False
            s.handler.on_headers(head, False)
        elif method == "HEAD" or status in _NO_BODY_STATUSES:
            # llhttp does not know the request was HEAD and would wait for the body
            # the head announces: the next response gets a new parser.
            self._fresh_parser = method == "HEAD"
            s.handler.on_headers(head, True)
            self._response_end(s)
        else:
            codings = self._codings
            if codings is not None:
                check_transfer_coding(codings, "1.1")  # what the codec can read exactly
            s.close_delimited = codings is None and not self._has_length
            s.pending = head

    def on_body(self, body: bytes) -> None:
        s = self._stream
        if s is None:
            self._keep_alive = False  # a body where none belongs (after a HEAD response)
            return
        if s.pending is not None:
            head, s.pending = s.pending, None
            s.handler.on_headers(head, False)
            if self._stream is not s:
                return
        s.handler.on_data(body, False)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        s = self._stream
        if s is None or self._tunnel:
            return
        trailers = self._fields
        if trailers:
            if len(trailers) > self._max_fields:
                raise CodecError("too many trailer fields", 502)
            self._fields = []
        head, s.pending = s.pending, None
        if head is not None:
            s.handler.on_headers(head, not trailers)
            if self._stream is not s or not trailers:
                self._response_end(s)
                return
        if trailers:
            s.handler.on_trailers(Headers(trailers))
        else:
            s.handler.on_data(b"", True)
        self._response_end(s)

    # -- internal -------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        if self._closed:
            return
        s = self._stream
        if self._tunnel:
            if s is not None and data:
                s.handler.on_data(data, False)
            return
        begun = self._begun
        try:
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserCallbackError as exc:
                _reraise(exc)
        except httptools.HttpParserUpgrade as exc:
            rest = data[exc.args[0]:]
            s = self._stream
            if rest and s is not None:
                s.handler.on_data(rest, False)
            return
        except (CodecError, httptools.HttpParserError) as exc:
            self._protocol_error(exc)
            return
        if self._fresh_parser:
            self._fresh_parser = False
            self._parser = httptools.HttpResponseParser(self)
        s = self._stream
        if s is not None and s.pending is not None:
            head, s.pending = s.pending, None
            s.handler.on_headers(head, False)  # the body is on its way
        elif self._in_head and self._begun == begun:
            self._partial += len(data)  # see ServerConnection._feed
            if self._partial > self._max_head:
                self._protocol_error("a response head over the size limit")

    def _response_end(self, s: ClientStream) -> None:
        if self._stream is not s:
            return
        if not s.keep_alive or not s.request_done:
            # Closing, or the rest of the request is not wanted: either way this
            # connection's state is unclear for another request.
            self._keep_alive = False
        self._detach(s)
        self._reused = True
        self._idle = True
        if not self._parsing:
            self._became_idle()

    def _became_idle(self) -> None:
        self._idle = False
        self.on_idle()
        if not self.reusable() and self._stream is None:
            self._close(_FLUSH)

    def _detach(self, s: ClientStream) -> None:
        s.dead = True
        if self._stream is s:
            self._stream = None
        while s.disabled:
            s.disabled -= 1
            self.conn.read_disable(False)

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
