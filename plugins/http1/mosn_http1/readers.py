"""HTTP/1 readers on httptools (llhttp): bytes in, handler calls out (h11's
``_readers.py`` role). No socket, transport, connection or loop here: a reader is fed
what was read and calls its handler (:mod:`mosn_http1.handlers`) for what the bytes
complete, checking the size limits and the framing rules the codec enforces (RFC
9112) on the way.

A reader stops for good after ``on_error`` or ``on_upgraded`` (and a request reader
after a request that closes the connection): later ``feed`` calls do nothing.
"""

from __future__ import annotations

import httptools

from mosn.stream.types import CodecError, Headers, RequestHead, ResponseHead
from mosn_http1.config import Limits
from mosn_http1.handlers import BODY, NO_BODY, TUNNEL, RequestHandler, ResponseHandler
from mosn_http1.target import check_transfer_coding, origin_form

KNOWN_METHODS = {m: m.decode() for m in (
    b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH")}
_VERSIONS = frozenset({"1.0", "1.1"})
NO_BODY_STATUSES = frozenset({204, 304})
_SPECIAL_FIELDS = frozenset({"host", "expect", "transfer-encoding"})
_FRAMING_FIELDS = frozenset({"transfer-encoding", "content-length"})
"""Response fields that say how its body is framed (RFC 9112 6.3)."""
FIELD_OVERHEAD = 4
"""Bytes a field costs beyond its name and value (``: `` and CRLF): what the head
limit counts, so the field count is bounded by it before the head completes."""
FIELD_NAME_CACHE_LIMIT = 1024
"""Field names remembered as lower-case text (a deployment's clients send a few dozen
distinct ones; a client sending random names cannot grow it past this)."""

_FIELD_NAMES: dict[bytes, str] = {}


def field_name(name: bytes) -> str:
    """A field name as the codec keeps it: lower-case text of the wire's bytes."""
    text = name.decode("latin-1").lower()
    if len(_FIELD_NAMES) < FIELD_NAME_CACHE_LIMIT:
        _FIELD_NAMES[name] = text
    return text


class _Stop(Exception):
    """Raised from a parser callback to stop parsing the rest of the input."""


def _reraise(exc: httptools.HttpParserCallbackError) -> None:
    """A parser callback raised: raise what it raised (a limit's ``CodecError``, a
    ``_Stop``, or a bug) instead of httptools' wrapper."""
    raise exc.__context__ or exc


class _Reader:
    """What both readers share: the feed loop, the head size accounting, the end."""


    def __init__(self, handler: object, max_head: int, limits: Limits, error_status: int,
                 head_status: int, too_large: str, too_many: str,
                 special_fields: frozenset[str]) -> None:
        self._handler = handler
        self._too_large = too_large
        self._too_many = too_many
        self._special_fields = special_fields
        """Fields of a head the reader takes note of (framing, Host, Expect)."""
        self._pending: tuple | None = None
        """A head held back until it is known whether its message ends with it: the
        handler's head call's arguments but ``end_stream``."""
        self._held: bytes | None = None
        """The last body bytes of a read, held back for the same reason."""
        self._fields: list[tuple[str, str]] = []
        self._head_bytes = 0
        self._partial = 0
        self.in_head = False
        """A head has begun and is not complete."""
        self._begun = 0
        self._max_head = max_head
        self._max_fields = limits.max_headers_count
        self.stopped = False
        """Nothing more is parsed: an error, an upgrade, or the last message read."""
        self._codings: list[str] | None = None
        self._error_status = error_status
        """The status of a parse error (the reply a server gives)."""
        self._head_status = head_status
        """The status of a head over the size limit."""
        self._last = False
        """The message read last closes the connection: nothing after it is read."""
        self._fresh = False
        """The next message needs a new parser (after a response to HEAD)."""

    def feed(self, data: bytes) -> None:
        """Parse ``data``, calling the handler for what it completes, in order."""
        if self.stopped:
            return
        begun = self._begun
        try:
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserCallbackError as exc:
                _reraise(exc)
        except httptools.HttpParserUpgrade as exc:
            self.stopped = True
            self._handler.on_upgraded(data[exc.args[0]:])
            return
        except _Stop:
            self.stopped = True
            return
        except CodecError as exc:
            self._fail(exc.status, exc)
            return
        except httptools.HttpParserError as exc:
            if self._last:
                self.stopped = True  # bytes after the last message: not read
            else:
                self._fail(self._error_status, exc)
            return
        if self._pending is not None:
            self._head(False)  # the rest of the message comes in later reads
        if self._held is not None:
            held, self._held = self._held, None
            self._handler.on_body(held, False)
        if self._fresh:
            # llhttp does not know the request was HEAD and would wait for the body
            # the head announces: the next response gets a new parser.
            self._fresh = False
            self._parser = httptools.HttpResponseParser(self)
        if self.in_head:
            if self._begun == begun:
                # httptools keeps a header line that spans reads to itself; a read that
                # fell wholly inside one head counts against the limit here.
                self._partial += len(data)
            if self._partial > self._max_head or self._head_bytes > self._max_head:
                self._fail(self._head_status, self._too_large)

    def _fail(self, status: int, reason: object) -> None:
        self.stopped = True
        self.in_head = False
        self._pending = self._held = None  # its message never completes
        self._handler.on_error(status, reason)

    def _head(self, end_stream: bool) -> None:
        """Hand the head held back to the handler."""
        raise NotImplementedError

    def on_header(self, name: bytes, value: bytes) -> None:
        # The size is checked at the end of each read and when the head completes:
        # a read's fields are slices of it, so the read's size bounds what comes in
        # between. The count is checked once the head is complete (every field costs
        # at least FIELD_OVERHEAD bytes of the size).
        self._head_bytes += len(name) + len(value) + FIELD_OVERHEAD
        k = _FIELD_NAMES.get(name) or field_name(name)
        v = value.decode("latin-1")
        if k in self._special_fields and self.in_head and not self._special(k, v):
            return
        self._fields.append((k, v))

    def _special(self, k: str, v: str) -> bool:
        """A field of ``_special_fields`` in a head: taken note of; False if it is
        taken out of the head's fields."""
        raise NotImplementedError

    def on_body(self, body: bytes) -> None:
        held = self._held
        self._held = body
        if held is not None:
            self._handler.on_body(held, False)
        elif self._pending is not None:
            self._head(False)

    def _end(self) -> None:
        """The message is complete: its head, its last body bytes, or its end (with
        trailers, if any): one call."""
        held = self._held
        trailers = self._fields
        if trailers:
            if len(trailers) > self._max_fields:
                raise CodecError("too many trailer fields", self._head_status)
            self._fields = []
            if self._pending is not None:
                self._head(False)
            if held is not None:
                self._held = None
                self._handler.on_body(held, False)
            self._handler.on_end(Headers(trailers))
        elif held is not None:
            self._held = None
            self._handler.on_body(held, True)
        elif self._pending is not None:
            self._head(True)  # the head was the whole message
        else:
            self._handler.on_end(None)


class RequestReader(_Reader):
    """Reads the requests of a downstream connection (the server role's reader),
    calling a :class:`~mosn_http1.handlers.RequestHandler`."""


    def __init__(self, handler: RequestHandler, limits: Limits = Limits(),
                 scheme: str = "http") -> None:
        super().__init__(handler, limits.max_request_head_bytes, limits, 400, 431,
                         "request head too large", "too many request headers",
                         _SPECIAL_FIELDS)
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._authority: str | None = None
        self._expect = False
        self._scheme = scheme
        self.target = ""
        """The target of the last request head, as it came (before origin-form)."""
        self.host: str | None = None
        """The ``Host`` field of the last request head as it came (the head's
        authority may differ)."""

    def _head(self, end_stream: bool) -> None:
        head, keep_alive, expect = self._pending
        self._pending = None
        self._handler.on_request(head, end_stream, keep_alive, False, expect)

    # -- httptools callbacks --------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._last:
            raise _Stop  # the previous request closes the connection
        self._head_bytes = self._partial = 0
        self.in_head = True
        self._begun += 1
        self._codings = None

    def on_url(self, url: bytes) -> None:
        self._url += url  # may come in pieces, one per read
        self._head_bytes += len(url)

    def _special(self, k: str, v: str) -> bool:
        if k == "host":
            if self._authority is not None:
                raise CodecError("more than one Host")  # RFC 9112 3.2
            self._authority = v
            return False
        if k == "transfer-encoding":
            if self._codings is None:
                self._codings = []
            self._codings.append(v)
        elif v.lower() == "100-continue":
            self._expect = True
            return False
        return True

    def on_headers_complete(self) -> None:
        parser = self._parser
        version = parser.get_http_version()
        if version not in _VERSIONS:
            raise CodecError(f"HTTP/{version} is not HTTP/1", 505)
        raw_method = parser.get_method()
        method = KNOWN_METHODS.get(raw_method) or raw_method.decode("latin-1")
        fields = self._fields
        if self._head_bytes > self._max_head:
            raise CodecError(self._too_large, self._head_status)
        if len(fields) > self._max_fields:
            raise CodecError(self._too_many, self._head_status)
        self._fields = []  # trailers, if any, come next
        self._head_bytes = 0
        self.in_head = False
        target = self.target = self._url.decode("latin-1")
        host = self.host = self._authority
        if target[:1] == "/" and host is not None:
            path, authority = target, host  # origin-form with a Host: most requests
        else:
            path, authority = origin_form(method, target, host, version)
        self._url = b""
        self._authority = None
        if self._codings is not None:
            check_transfer_coding(self._codings, version)
        keep_alive = parser.should_keep_alive()
        if not keep_alive:
            self._last = True
        expect = self._expect
        if expect:
            self._expect = False
        head = RequestHead(method, path, authority, self._scheme, Headers(fields), version)
        if parser.should_upgrade():
            # Never held back: what follows its head is the tunnel's, not a body.
            self._handler.on_request(head, False, keep_alive, True, expect)
        else:
            self._pending = (head, keep_alive, expect)

    def on_message_complete(self) -> None:
        pending = self._pending
        if pending is not None and not self._fields:
            # The head was the whole request (most requests): one call.
            self._pending = None
            head, keep_alive, expect = pending
            self._handler.on_request(head, True, keep_alive, False, expect)
        else:
            self._end()


class ResponseReader(_Reader):
    """Reads the responses of an upstream connection (the client role's reader),
    calling a :class:`~mosn_http1.handlers.ResponseHandler`. It is told of each
    request sent (:meth:`expect`): a response needs one, and its framing depends on
    the request's method (RFC 9112 6.3)."""


    def __init__(self, handler: ResponseHandler, limits: Limits = Limits()) -> None:
        super().__init__(handler, limits.max_response_head_bytes, limits, 502, 502,
                         "response head too large", "too many response headers",
                         _FRAMING_FIELDS)
        self._parser = httptools.HttpResponseParser(self)
        self._reason = b""
        self._interim = False
        self._has_length = False
        self._method = ""
        self._upgrade = False
        self._waiting = False
        self._tunnel = False
        self.spurious_body = False
        """Body bytes came where none belongs (after a response that has none): the
        connection's state is unclear for another request."""

    def expect(self, method: str, upgrade: bool) -> None:
        """A request went out: its response comes next."""
        self._method = method
        self._upgrade = upgrade
        self._waiting = True

    def _head(self, end_stream: bool) -> None:
        head, keep_alive, close_delimited = self._pending
        self._pending = None
        self._handler.on_response(head, end_stream, keep_alive, BODY, close_delimited)

    # -- httptools callbacks --------------------------------------------------------

    def on_message_begin(self) -> None:
        if not self._waiting:
            raise CodecError("a response with no request", 502)
        self._head_bytes = self._partial = 0
        self.in_head = True
        self._begun += 1
        self._codings = None
        self._reason = b""
        self._has_length = False

    def on_status(self, reason: bytes) -> None:
        self._reason += reason
        self._head_bytes += len(reason)

    def _special(self, k: str, v: str) -> bool:
        if k == "content-length":
            self._has_length = True
        elif self._codings is None:
            self._codings = [v]
        else:
            self._codings.append(v)
        return True

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        fields = self._fields
        if self._head_bytes > self._max_head:
            raise CodecError(self._too_large, self._head_status)
        if len(fields) > self._max_fields:
            raise CodecError(self._too_many, self._head_status)
        self._fields = []  # trailers, if any, come next
        self._head_bytes = 0
        self.in_head = False
        if status < 200 and status != 101:
            self._interim = True  # 100 Continue, 103 Early Hints: not the response
            return
        head = ResponseHead(status, Headers(fields), self._reason.decode("latin-1"))
        keep_alive = parser.should_keep_alive()
        method = self._method
        if status == 101 or (method == "CONNECT" and status < 300):
            if not self._upgrade:
                raise CodecError("an upgrade nobody asked for", 502)
            self._tunnel = True
            self._handler.on_response(head, False, False, TUNNEL, False)
        elif method == "HEAD" or status in NO_BODY_STATUSES:
            self._fresh = method == "HEAD"
            self._waiting = False
            self._handler.on_response(head, True, keep_alive, NO_BODY, False)
        else:
            codings = self._codings
            if codings is not None:
                check_transfer_coding(codings, "1.1")  # what the codec can read exactly
            self._pending = (head, keep_alive, codings is None and not self._has_length)

    def on_body(self, body: bytes) -> None:
        if not self._waiting:
            self.spurious_body = True  # a body where none belongs (after a HEAD response)
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if not self._waiting or self._tunnel:
            return
        self._waiting = False
        held = self._held
        if held is not None and not self._fields:
            # A body read whole (most responses): its bytes and the end, one call.
            self._held = None
            self._handler.on_body(held, True)
        else:
            self._end()
