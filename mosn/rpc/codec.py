"""The frame-codec interface of the multiplexed RPC engine (MOSN's X-protocol).

An RPC protocol plugin writes one sans-IO codec: bytes in, frames out; a frame's id
patched in place; heartbeat and error replies built from a request. The engine
(:mod:`mosn.rpc.engine`) does everything else: the server and client stream
connections, request-id remapping per upstream connection, heartbeats answered
locally, and the proxy's failures turned into the protocol's error replies.

Nothing here (or in a codec) imports asyncio or sockets.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Mapping, Protocol as TypingProtocol

from mosn.stream.types import CodecError, MatchResult

__all__ = ["CodecError", "Frame", "FrameCodec", "FrameError", "FrameKind", "MatchResult"]


class FrameKind(enum.Enum):
    REQUEST = "request"
    ONEWAY = "oneway"
    """A request that gets no response."""
    RESPONSE = "response"
    HEARTBEAT = "heartbeat"
    """A keep-alive request; the engine answers it with ``heartbeat_reply``."""
    HEARTBEAT_REPLY = "heartbeat_reply"
    GOAWAY = "goaway"
    """The peer will take no new requests on this connection."""


@dataclass(slots=True)
class Frame:
    """One decoded frame. ``data`` is the whole frame as it was on the wire: the
    engine forwards it (with its id patched) without encoding it again."""

    kind: FrameKind
    request_id: int
    data: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    """The routing headers (``service``, ``method`` ... in lower case) and any others
    the codec decodes cheaply; the body stays undecoded."""
    status: int = 0
    """A response's status, in the protocol's own numbers."""
    timeout: float | None = None
    """Seconds the caller will wait, if the frame says (bolt's timeout field)."""


class FrameCodec(TypingProtocol):
    """What a ``mosn_xprotocol_codecs`` extension's factory returns.

    Status mapping: the proxy speaks HTTP-like statuses (404 no route, 502 upstream
    reset, 503 no healthy host or overflow, 504 timeout ...) plus Envoy's response
    flags; ``error_status`` turns them into the protocol's status, ``http_status``
    maps a response status back (for retries and stats).
    """

    name: str
    multiplexed: bool
    """True: many requests in flight on one connection, matched by id. False:
    ping-pong, one at a time."""
    max_request_id: int
    """The largest id the protocol can carry (0xFFFFFFFF for a u32)."""

    def match(self, data: bytes) -> MatchResult:
        """Is this the start of one of our frames? (for ``downstream_protocol: Auto``)"""

    def decode(self, buffer: bytearray) -> Frame | None:
        """Take one whole frame off the front of ``buffer`` (deleting its bytes), or
        return None if it holds less than a frame. Raise :class:`CodecError` for bytes
        that cannot be a frame; the engine then answers with ``error_reply`` when it
        can and closes the connection."""

    def set_request_id(self, data: bytearray, request_id: int) -> None:
        """Patch the request id of the frame in ``data`` in place."""

    def heartbeat_reply(self, heartbeat: Frame) -> bytes: ...

    def error_reply(self, request: Frame, status: int, message: str) -> bytes:
        """A response to ``request`` carrying the protocol's ``status`` (from
        ``error_status``), with the request's id."""

    def error_status(self, http_status: int, flags: tuple[str, ...]) -> int:
        """The protocol's status for a failure the proxy answered itself."""

    def http_status(self, status: int) -> int:
        """An HTTP-like status for a response status (200 for success)."""

    # Optional: ``with_headers(frame, updates: dict[str, str]) -> bytes``, the frame
    # re-encoded with header fields set (what a tracer needs to carry its context
    # upstream). A codec without it forwards frames unchanged even with tracing on.
    # Optional: ``heartbeat() -> bytes``, a heartbeat request (id 0) for the
    # protocol's health checker (``mosn.upstream.HeartbeatChecker``).
    # Optional: ``goaway() -> bytes``, a frame telling a client to send no new requests
    # on the connection, written when the proxy drains it (max_connection_duration,
    # shutdown); without it the connection is closed once no request is in flight.

    # For the tools (``mosn bench``, ``mosn mock``): frames made from scratch.

    def request(self, service: str, method: str, body: bytes) -> bytes:
        """A request frame with id 0 carrying ``body`` as its payload, as it is."""

    def response(self, request: Frame, body: bytes) -> bytes:
        """A success response to ``request`` carrying ``body``."""


class FrameError(CodecError):
    """Bytes that cannot be a frame. ``reply`` is the error response to send before
    closing, when the codec could read enough of the frame to address one (MOSN
    answers CODEC_EXCEPTION then); None: just close."""

    def __init__(self, message: str, reply: bytes | None = None) -> None:
        super().__init__(message, 400)
        self.reply = reply
