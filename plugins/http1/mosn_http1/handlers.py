"""What a reader calls for the bytes it is fed: the handler interface the adapters
implement (httptools' callback shape, one level up; h11's events as method calls).

A reader is given its handler when it is made and calls it during ``feed``, in wire
order, with no list of events in between:

- ``on_request`` / ``on_response``: a message's head. ``end_stream`` True: the head
  is the whole message (a GET with no body, a response to HEAD, a 204 or 304, a
  ``content-length: 0``): nothing of it follows; this is the one call of most
  requests. The reader holds a head back until it knows whether the message ends
  with it: until the message's end or first body bytes in the same ``feed``, or the
  end of that ``feed`` (then ``end_stream`` is False and the rest follows in later
  reads).
- ``on_body``: body bytes, as they came; ``end_stream`` True: the message ends with
  them (no ``on_end`` follows). The last body bytes of a ``feed`` are held back the
  same way, so a body read whole is one call.
- ``on_end``: the message is complete with no body bytes to carry it; ``trailers`` is
  the trailer section of a chunked body (a :class:`~mosn.stream.types.Headers`), or
  None.
- ``on_upgraded``: the parser stopped at an upgrade (or ``CONNECT``) message; ``rest``
  is what followed it, raw bytes; nothing more is parsed. An upgrade's head is never
  held back (its body, if any, is the tunnel's); its end comes first.
- ``on_error``: the peer broke the protocol; ``status`` is the reply a server gives
  (a client resets the stream), ``reason`` what was wrong; nothing more is parsed. A
  head or body bytes held back when the error came are dropped: their message never
  completes.

A handler method may stop caring (the adapter stopped reading): the reader goes on
with the bytes of that ``feed`` and the handler ignores what it does not want.
"""

from __future__ import annotations

from typing import Protocol

from mosn.stream.types import Headers, RequestHead, ResponseHead

BODY, NO_BODY, TUNNEL = 0, 1, 2
"""How a response's body is delimited: a body follows (``content-length``, chunks, or
the connection's close), none does (HEAD, 204, 304), or an accepted upgrade's raw
bytes do."""


class _Common(Protocol):
    def on_body(self, data: bytes, end_stream: bool) -> None:
        """Body bytes of the message being read; the last ones with ``end_stream``."""

    def on_end(self, trailers: Headers | None) -> None:
        """The message is complete (its last bytes were not body bytes), with the
        trailer section of a chunked body if it had one."""

    def on_upgraded(self, rest: bytes) -> None:
        """The parser stopped at an upgrade; ``rest`` followed the message."""

    def on_error(self, status: int, reason: object) -> None:
        """The peer broke the protocol; nothing more is parsed."""


class RequestHandler(_Common, Protocol):
    """What a :class:`~mosn_http1.readers.RequestReader` calls (the server role)."""

    def on_request(self, head: RequestHead, end_stream: bool, keep_alive: bool,
                   upgrade: bool, expect_continue: bool) -> None:
        """A request head. ``keep_alive``: another request may follow (RFC 9112 9.3);
        ``upgrade``: it offers an upgrade or is a ``CONNECT`` (the parser reads its
        head alone and stops there: ``on_upgraded`` follows); ``expect_continue``:
        ``Expect: 100-continue`` (taken out of the fields). The request target and the
        ``Host`` field as they came are the reader's ``target`` and ``host``."""


class ResponseHandler(_Common, Protocol):
    """What a :class:`~mosn_http1.readers.ResponseReader` calls (the client role).
    Interim (1xx but ``101``) responses are read and dropped."""

    def on_response(self, head: ResponseHead, end_stream: bool, keep_alive: bool,
                    body: int, close_delimited: bool) -> None:
        """A response head. ``body``: :data:`BODY`, :data:`NO_BODY` (``end_stream``
        is then True) or :data:`TUNNEL`; ``close_delimited``: the body ends when the
        connection does (RFC 9112 6.3: no Content-Length, no Transfer-Encoding)."""
