"""The declarative frame codec: a :class:`mosn.rpc.codec.FrameCodec` for a protocol
described in config (``extend_config.xprotocol.codec``).

Sans-IO. Routing reads only the declared routing keys (a key inside the body is read
where it is declared, within its bounds); the body is never decoded otherwise. A
forwarded frame is the bytes as received with the request id patched in place. No
reply mosn makes carries more of a request than its routing keys of the header, each
at most its ``max_size``.
"""

from __future__ import annotations

from mosn.rpc.codec import Frame, FrameError, FrameKind
from mosn.stream.types import MatchResult
from mosn_xprotocol import matcher
from mosn_xprotocol.config import CodecConfig
from mosn_xprotocol.frames import Layout, LayoutError
from mosn_xprotocol.mapping import StatusMapping

PROTOCOL_NAME = "xprotocol"
"""The name configs use for every declared protocol (``downstream_protocol: xprotocol``)."""


class DeclarativeCodec:
    __slots__ = ("config", "layout", "statuses", "multiplexed", "max_request_id",
                 "max_frame_size", "label", "_searched")

    name = PROTOCOL_NAME

    def __init__(self, config: CodecConfig) -> None:
        self.config = config
        self.layout = Layout(config)
        self.statuses = StatusMapping(config.status)
        self.multiplexed = config.multiplexed
        self.max_request_id = self.layout.request_id.max_value
        self.max_frame_size = config.max_frame_size
        self.label = config.name
        self._searched: int | None = None
        """Of one connection's codec: bytes of the incomplete frame at the front of
        its buffer already searched for the delimiter (None: not tracked)."""

    def for_connection(self) -> "DeclarativeCodec":
        """This codec for one connection's buffer: the same layout, and a delimited
        frame arriving in pieces is searched once, not again from its start on each
        read. Only for a buffer the caller appends to and this codec takes frames off
        (the RPC engine's)."""
        codec = object.__new__(DeclarativeCodec)
        for name in self.__slots__:
            setattr(codec, name, getattr(self, name))
        codec._searched = 0
        return codec

    def __repr__(self) -> str:
        return f"<DeclarativeCodec {self.label}>"

    def match(self, data: bytes) -> MatchResult:
        return matcher.match(self.layout, data)

    def decode(self, buffer: bytearray) -> Frame | None:
        layout = self.layout
        available = len(buffer)
        magic = layout.magic
        if magic:
            seen = bytes(buffer[layout.magic_offset:layout.magic_offset + len(magic)])
            if seen != magic[:len(seen)]:
                raise FrameError(f"{self.label}: bad magic {seen.hex()}")
        if available < layout.header_size:
            return None
        kind = layout.kind_of(buffer)
        if kind is None:
            raise FrameError(f"{self.label}: unknown kind {layout.kind.read(buffer):#x}")
        try:
            if layout.delimiter:
                searched = self._searched
                if searched is not None and searched > available:
                    searched = 0  # not the buffer searched before
                size = layout.delimited_size(buffer, self.max_frame_size, searched or 0)
                if size is None:
                    if searched is not None:
                        self._searched = available - len(layout.delimiter) + 1
                    return None
                if searched is not None:
                    self._searched = 0
            else:
                size = layout.frame_size(buffer)
        except LayoutError as exc:
            if self._searched is not None:
                self._searched = 0
            raise self._error(buffer, kind, f"{self.label}: {exc}") from None
        if size < layout.header_size:
            raise self._error(buffer, kind, f"{self.label}: frame size {size} is less than "
                                            "the header")
        if size > self.max_frame_size:
            raise self._error(buffer, kind, f"{self.label}: a frame of {size} bytes is over "
                                            f"the limit of {self.max_frame_size}")
        if available < size:
            return None
        data = bytes(buffer[:size])
        try:
            request_id = layout.request_id.read(data)
            # Keys of the body are a request's: other frames' bodies are payload.
            headers = layout.routing_headers(data, kind is FrameKind.REQUEST
                                             or kind is FrameKind.ONEWAY)
            if kind is FrameKind.RESPONSE or kind is FrameKind.HEARTBEAT_REPLY:
                frame = Frame(kind, request_id, data, headers, layout.status.read(data))
            else:
                frame = Frame(kind, request_id, data, headers, timeout=layout.timeout_of(data))
        except LayoutError as exc:
            raise self._error(buffer, kind, f"{self.label}: {exc}") from None
        del buffer[:size]
        return frame

    def _error(self, buffer: bytearray, kind: FrameKind, message: str) -> FrameError:
        """A malformed frame whose header was read: a two-way request is answered
        ``bad_frame`` (or ``error``), carrying no routing key; anything else, or a
        request whose id cannot be read, just closes."""
        reply = None
        if kind is FrameKind.REQUEST:
            try:
                request_id = self.layout.request_id.read(buffer)
            except LayoutError:
                return FrameError(message)
            status = self.statuses.error_status(400)
            reply = self.layout.assemble(buffer, FrameKind.RESPONSE, request_id, status, {}, b"")
        return FrameError(message, reply)

    def set_request_id(self, data: bytearray, request_id: int) -> None:
        self.layout.request_id.write(data, request_id)

    def heartbeat_reply(self, heartbeat: Frame) -> bytes:
        return self.layout.assemble(heartbeat.data, FrameKind.HEARTBEAT_REPLY,
                                    heartbeat.request_id, self.statuses.success, {}, b"")

    def error_reply(self, request: Frame, status: int, message: str) -> bytes:
        """A response with ``status``, the request's routing keys of the header (each
        at most its ``max_size``) and no body: a declared protocol's body format is
        unknown, so ``message`` is not sent, and keys of the body are not echoed."""
        return self.layout.assemble(request.data, FrameKind.RESPONSE, request.request_id,
                                    status, dict(request.headers), b"")

    def error_status(self, http_status: int, flags: tuple[str, ...]) -> int:
        return self.statuses.error_status(http_status, flags)

    def http_status(self, status: int) -> int:
        return self.statuses.http_status(status)

    # -- frames from scratch, for the tools -------------------------------------------------

    def request(self, service: str, method: str, body: bytes) -> bytes:
        """A request with id 0; ``service`` and ``method`` go where the routing keys of
        those names are declared (in the body too, in front of ``body``). The header's
        other bytes are zero (digits: 0)."""
        try:
            template = self.layout.blank_header()
            return self.layout.assemble(template, FrameKind.REQUEST, 0, None,
                                        {"service": service, "method": method}, body,
                                        body_keys=True)
        except LayoutError as exc:
            raise ValueError(f"{self.label}: cannot build a request: {exc}") from None

    def response(self, request: Frame, body: bytes) -> bytes:
        """A success response carrying the request's routing keys of the header (not
        those of the body: ``body`` is the whole body)."""
        try:
            return self.layout.assemble(request.data, FrameKind.RESPONSE, request.request_id,
                                        self.statuses.success, dict(request.headers), body)
        except LayoutError as exc:
            raise ValueError(f"{self.label}: cannot build a response: {exc}") from None
