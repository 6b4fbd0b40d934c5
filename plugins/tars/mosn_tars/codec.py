"""The Tars frame codec for the RPC engine (:class:`mosn.rpc.codec.FrameCodec`).

A frame is one packet (:mod:`mosn_tars.frames`). A request is read as far as routing
needs, its fields in tag order: the servant and function name, the caller's timeout
and the ``context`` map; the call's arguments (``sBuffer``) are stepped over, never
decoded. Everything is forwarded as received, the request id patched in place.

Routing headers (lower case): ``service`` (``sServantName``, such as
``Test.HelloServer.HelloObj``) and ``method`` (``sFuncName``), MOSN's names; every
``context`` entry too, unless it would replace one of those. A positive ``iTimeout``
(ms) caps the route's timeout.

The Tars encoding writes an integer in the fewest bytes, so an id cannot always be
patched in place: ``set_request_id`` writes the id in four bytes and corrects the
length when the frame held a shorter one (frames mosn makes itself always carry four).
"""

from __future__ import annotations

from mosn.rpc.codec import Frame, FrameError, FrameKind
from mosn.stream.types import MatchResult
from mosn_tars import jce, mapping, matcher
from mosn_tars.config import DEFAULT_MAX_PACKET_SIZE
from mosn_tars.frames import (
    LENGTH,
    LENGTH_SIZE,
    MAX_REQUEST_ID,
    MIN_PACKET_SIZE,
    MIN_REQUEST_ID,
    ONEWAY,
    TARS_VERSION,
    TUP_VERSIONS,
    request_packet,
    response_packet,
)
from mosn_tars.jce import JceError, Reader, Type

SERVICE_HEADER = "service"
METHOD_HEADER = "method"
"""The routing keys, MOSN's names (``tars/types.go``)."""
_STRINGS = (Type.STRING1, Type.STRING4)
_INTEGERS = (Type.INT1, Type.INT2, Type.INT4, Type.INT8, Type.ZERO)


class TarsCodec:
    """``tars``: Tars packets (the servant and function read for routing)."""

    __slots__ = ("max_packet_size",)

    name = "tars"
    multiplexed = True
    max_request_id = MAX_REQUEST_ID

    def __init__(self, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE) -> None:
        self.max_packet_size = max_packet_size

    def __repr__(self) -> str:
        return f"<TarsCodec max_packet_size={self.max_packet_size}>"

    def match(self, data: bytes) -> MatchResult:
        return matcher.match(data)

    # -- decoding -------------------------------------------------------------------------

    def decode(self, buffer: bytearray) -> Frame | None:
        available = len(buffer)
        if available < LENGTH_SIZE:
            return None
        size = LENGTH.unpack_from(buffer)[0]
        if size < MIN_PACKET_SIZE:
            raise FrameError(f"tars: packet length {size} is shorter than any packet")
        if size > self.max_packet_size:
            raise FrameError(f"tars: packet of {size} bytes over the limit of "
                             f"{self.max_packet_size}", self._decode_error_reply(buffer))
        if available < size:
            return None
        data = bytes(buffer[:size])
        try:
            frame = _read_packet(data)
        except JceError as e:
            raise FrameError(f"tars: {e}", self._decode_error_reply(data)) from None
        del buffer[:size]
        return frame

    def _decode_error_reply(self, data: bytes | bytearray) -> bytes | None:
        """``TARSSERVERDECODEERR`` to a two-way request whose id could be read, as a
        Tars server answers a request it cannot decode; None otherwise (just close)."""
        try:
            head = _Head(data)
        except JceError:
            return None
        if not head.is_request or head.packet_type == ONEWAY:
            return None
        return response_packet(head.request_id, mapping.Ret.SERVER_DECODE_ERROR, b"",
                               description="mosn: packet cannot be decoded")

    # -- patching and replies -------------------------------------------------------------

    def set_request_id(self, data: bytearray, request_id: int) -> None:
        if not MIN_REQUEST_ID <= request_id <= MAX_REQUEST_ID:
            raise ValueError(f"tars request id {request_id} out of range")
        head = _Head(data)
        field = jce.int4_field(head.id_tag, request_id)
        start, end = head.id_span
        data[start:end] = field
        if len(field) != end - start:
            LENGTH.pack_into(data, 0, len(data))

    def heartbeat_reply(self, heartbeat: Frame) -> bytes:
        raise ValueError("tars has no heartbeat frame (a tars_ping is a call)")

    def error_reply(self, request: Frame, status: int, message: str) -> bytes:
        """A ResponsePacket with ``iRet`` = ``status`` and ``sResultDesc`` saying why."""
        text = f"{message}: {mapping.RET_TEXT.get(status, str(status))}"
        service = request.headers.get(SERVICE_HEADER)
        if service:
            text += f" ({service} {request.headers.get(METHOD_HEADER, '')})"
        return response_packet(request.request_id, status, b"", description=text)

    def error_status(self, http_status: int, flags: tuple[str, ...]) -> int:
        return mapping.error_status(http_status, flags)

    def http_status(self, status: int) -> int:
        return mapping.http_status(status)

    # -- frames from scratch, for the tools (mosn bench, mosn mock) -------------------------

    def request(self, service: str, method: str, body: bytes) -> bytes:
        """A two-way request with id 0 calling ``method`` of the servant ``service``;
        ``body`` is the arguments' encoding (``sBuffer``) as it is."""
        return request_packet(0, service, method, body)

    def response(self, request: Frame, body: bytes) -> bytes:
        """A success response to ``request`` whose ``sBuffer`` is ``body``."""
        return response_packet(request.request_id, mapping.Ret.SUCCESS, body)


class _Head:
    """The fields in front of tag 5 of a packet: enough to tell a request from a
    response and to find the id."""

    __slots__ = ("version", "packet_type", "is_request", "request_id", "id_tag", "id_span",
                 "reader")

    def __init__(self, data: bytes | bytearray) -> None:
        if len(data) < LENGTH_SIZE:
            raise JceError("no length")
        end = min(LENGTH.unpack_from(data)[0], len(data))
        reader = self.reader = Reader(data, LENGTH_SIZE, end)
        self.version = reader.read_int(1)
        if self.version != TARS_VERSION:
            what = "a TUP packet" if self.version in TUP_VERSIONS else "an unknown packet"
            raise JceError(f"iVersion {self.version} is {what}; mosn reads Tars packets "
                           f"(iVersion {TARS_VERSION}) only")
        self.packet_type = reader.read_int(2)
        third = reader.pos
        value3 = reader.read_int(3)
        fourth = reader.pos
        value4 = reader.read_int(4)
        fifth = reader.pos
        reader.expect(5)
        _, kind = reader.head()
        reader.pos = fifth
        if kind in _STRINGS:
            self.is_request = True
            self.request_id, self.id_tag, self.id_span = value4, 4, (fourth, fifth)
        elif kind in _INTEGERS:
            self.is_request = False
            self.request_id, self.id_tag, self.id_span = value3, 3, (third, fourth)
        else:
            raise JceError(f"tag 5 of type {kind} is neither a request's servant nor a "
                           f"response's iRet")


def _read_packet(data: bytes) -> Frame:
    head = _Head(data)
    reader = head.reader
    if not head.is_request:
        status = reader.read_int(5)
        reader.read_bytes(6)
        reader.read_string_map(7)
        _skip_rest(reader)
        kind = FrameKind.RESPONSE
        return Frame(kind, head.request_id, data, {}, status=status)
    servant = reader.read_string(5)
    function = reader.read_string(6)
    reader.read_bytes(7)
    timeout_ms = reader.read_int(8)
    context = reader.read_string_map(9)
    reader.read_string_map(10)
    _skip_rest(reader)
    headers = {key.lower(): value for key, value in context.items()}
    headers[SERVICE_HEADER] = servant
    headers[METHOD_HEADER] = function
    kind = FrameKind.ONEWAY if head.packet_type == ONEWAY else FrameKind.REQUEST
    timeout = timeout_ms / 1000 if timeout_ms > 0 else None
    return Frame(kind, head.request_id, data, headers, timeout=timeout)


def _skip_rest(reader: Reader) -> None:
    """Optional fields after the required ones (a response's ``sResultDesc`` and
    ``context``, fields of newer versions) are stepped over; the packet must end
    with a whole field."""
    while reader.pos < reader.end:
        _, kind = reader.head()
        reader.skip_value(kind, 0)
