"""What the readers give for the bytes they are fed (h11's ``_events.py`` shape).

A reader's ``feed`` returns a list of events, in wire order:

- a :class:`RequestStart` or :class:`ResponseStart`: a message's head;
- ``bytes``: body bytes, as they came (the data event is the bytes themselves: no
  wrapper on the hottest path);
- :data:`END`: the message is complete;
- :class:`~mosn.stream.types.Headers`: the trailer section of a chunked body, which
  completes the message (no :data:`END` follows it);
- :class:`Upgraded`: the parser stopped at an upgrade (or ``CONNECT``) message; what
  followed it is raw bytes, and nothing more is parsed;
- :class:`ProtocolError`: the peer broke the protocol; nothing more is parsed.
"""

from __future__ import annotations

from mosn.stream.types import RequestHead, ResponseHead


class RequestStart:
    """A request head, with what its framing says about the connection."""

    __slots__ = ("head", "keep_alive", "upgrade", "expect_continue", "target", "host")

    def __init__(self, head: RequestHead, keep_alive: bool, upgrade: bool,
                 expect_continue: bool, target: str, host: str | None) -> None:
        self.head = head
        self.keep_alive = keep_alive
        """Another request may follow this one (RFC 9112 9.3)."""
        self.upgrade = upgrade
        """The request offers an upgrade (or is a ``CONNECT``): the parser reads its
        head alone and stops there (an :class:`Upgraded` follows)."""
        self.expect_continue = expect_continue
        """``Expect: 100-continue`` (taken out of the head's fields)."""
        self.target = target
        """The request target as it came (before origin-form)."""
        self.host = host
        """The ``Host`` field as it came (the head's authority may differ)."""

    def __repr__(self) -> str:
        return f"<RequestStart {self.head.method} {self.head.path} upgrade={self.upgrade}>"


class ResponseStart:
    """A response head (never a 1xx but ``101``: interim responses are read and
    dropped), with how its body is delimited."""

    __slots__ = ("head", "keep_alive", "body", "close_delimited")

    def __init__(self, head: ResponseHead, keep_alive: bool, body: int,
                 close_delimited: bool) -> None:
        self.head = head
        self.keep_alive = keep_alive
        self.body = body
        """``BODY``, ``NO_BODY`` (HEAD, 204, 304: :data:`END` follows at once) or
        ``TUNNEL`` (an accepted upgrade: raw bytes follow)."""
        self.close_delimited = close_delimited
        """The body ends when the connection does (RFC 9112 6.3: no Content-Length,
        no Transfer-Encoding)."""

    def __repr__(self) -> str:
        return f"<ResponseStart {self.head.status} body={self.body}>"


BODY, NO_BODY, TUNNEL = 0, 1, 2


class _End:
    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


END = _End()
"""The message is complete."""


class Upgraded:
    """The parser stopped at an upgrade; ``rest`` is what followed the message."""

    __slots__ = ("rest",)

    def __init__(self, rest: bytes) -> None:
        self.rest = rest

    def __repr__(self) -> str:
        return f"<Upgraded {len(self.rest)} bytes>"


class ProtocolError:
    """The peer broke the protocol: ``status`` is the reply a server gives (a client
    resets the stream); ``reason`` says what was wrong."""

    __slots__ = ("status", "reason")

    def __init__(self, status: int, reason: object) -> None:
        self.status = status
        self.reason = reason

    def __repr__(self) -> str:
        return f"<ProtocolError {self.status} {self.reason}>"
