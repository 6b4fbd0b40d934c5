"""The Dubbo-Thrift frame codec for the RPC engine (:class:`mosn.rpc.codec.FrameCodec`).

A frame is read as far as routing needs (:mod:`mosn_dubbothrift.frames`): the
Dubbo header (service name, request id) and the Thrift message's beginning (type,
method name, seqid). Arguments and results are never decoded, except an
``EXCEPTION`` message's ``TApplicationException`` type, which is the response's
status. Frames are forwarded as received with the request id patched in place (it
sits at a fixed place: the end of the header).

Routing headers (lower case): ``service`` (the Thrift service's interface name, such
as ``org.apache.dubbo.samples.DemoService$Iface``) and ``method``, MOSN's names.
"""

from __future__ import annotations

import struct

from mosn.rpc.codec import Frame, FrameError, FrameKind
from mosn.stream.types import MatchResult
from mosn_dubbothrift import mapping, matcher
from mosn_dubbothrift.config import DEFAULT_MAX_FRAME_SIZE
from mosn_dubbothrift.frames import (
    EXCEPTION_STATUS_BASE,
    FRAME_SIZE,
    FRAME_SIZE_LEN,
    I32,
    ID,
    ID_LEN,
    MAGIC,
    MAX_REQUEST_ID,
    MIN_HEADER_SIZE,
    MIN_MESSAGE_SIZE,
    PREFIX,
    REPLY_STATUS,
    STRICT_MASK,
    STRICT_VERSION,
    T_BOOL,
    T_BYTE,
    T_DOUBLE,
    T_I16,
    T_I32,
    T_I64,
    T_LIST,
    T_MAP,
    T_SET,
    T_STOP,
    T_STRING,
    T_STRUCT,
    VERSION,
    ApplicationError,
    MessageType,
    application_exception,
    build_frame,
    message_begin,
)

SERVICE_HEADER = "service"
METHOD_HEADER = "method"
"""The routing keys, MOSN's names (``dubbothrift/types.go``)."""
MAX_NESTING = 32
"""Containers nested deeper than this in an exception struct are refused (a skip is
recursive; a ``TApplicationException`` has none)."""

_FIXED = {T_BOOL: 1, T_BYTE: 1, T_DOUBLE: 8, T_I16: 2, T_I32: 4, T_I64: 8}
_I16 = struct.Struct(">h")
_U32 = struct.Struct(">I")


class DubboThriftCodec:
    """``dubbo-thrift``: Dubbo's thrift protocol (service and method read for routing)."""

    __slots__ = ("max_frame_size",)

    name = "dubbo-thrift"
    multiplexed = True
    max_request_id = MAX_REQUEST_ID

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_frame_size = max_frame_size

    def __repr__(self) -> str:
        return f"<DubboThriftCodec max_frame_size={self.max_frame_size}>"

    def match(self, data: bytes) -> MatchResult:
        return matcher.match(data)

    # -- decoding -------------------------------------------------------------------------

    def decode(self, buffer: bytearray) -> Frame | None:
        available = len(buffer)
        if available >= FRAME_SIZE_LEN + 2 and buffer[4:6] != MAGIC:
            raise FrameError(f"dubbo-thrift: bad magic {bytes(buffer[4:6]).hex()}")
        if available < FRAME_SIZE_LEN:
            return None
        size = FRAME_SIZE.unpack_from(buffer)[0]
        if size < MIN_MESSAGE_SIZE:
            raise FrameError(f"dubbo-thrift: frame size {size} is shorter than any frame")
        if size > self.max_frame_size:
            raise FrameError(f"dubbo-thrift: frame of {size} bytes over the limit of "
                             f"{self.max_frame_size}", _protocol_error_reply(buffer))
        end = FRAME_SIZE_LEN + size
        if available < end:
            return None
        data = bytes(buffer[:end])
        try:
            head = _Head(data)
            frame = head.frame(data)
        except ValueError as e:
            raise FrameError(f"dubbo-thrift: {e}", _protocol_error_reply(data)) from None
        del buffer[:end]
        return frame

    # -- patching and replies -------------------------------------------------------------

    def set_request_id(self, data: bytearray, request_id: int) -> None:
        if not 0 <= request_id <= MAX_REQUEST_ID:
            raise ValueError(f"dubbo-thrift request id {request_id} out of range")
        if data[4:6] != MAGIC:
            raise ValueError(f"not a dubbo-thrift frame: {bytes(data[4:6]).hex()}")
        ID.pack_into(data, _id_offset(data), request_id)

    def heartbeat_reply(self, heartbeat: Frame) -> bytes:
        raise ValueError("dubbo-thrift has no heartbeat frame")

    def error_reply(self, request: Frame, status: int, message: str) -> bytes:
        """An ``EXCEPTION`` message answering ``request``: a ``TApplicationException``
        of the type ``status`` carries, saying why in MOSN's ``"code|reason"`` form."""
        head = _Head(request.data)
        error = max(status - EXCEPTION_STATUS_BASE, 0)
        text = f"{mapping.code(status)}|{message}"
        return _exception_frame(head.service, request.request_id, head.method, head.seqid,
                                error, text)

    def error_status(self, http_status: int, flags: tuple[str, ...]) -> int:
        return mapping.error_status(http_status, flags)

    def http_status(self, status: int) -> int:
        return mapping.http_status(status)

    # -- frames from scratch, for the tools (mosn bench, mosn mock) -------------------------

    def request(self, service: str, method: str, body: bytes) -> bytes:
        """A ``CALL`` of ``method`` on ``service`` with id 0 and seqid 0; ``body`` is
        the arguments struct's encoding, as it is."""
        return build_frame(service, 0, message_begin(method, MessageType.CALL, 0) + body)

    def response(self, request: Frame, body: bytes) -> bytes:
        """A ``REPLY`` to ``request`` (its method and seqid) whose result struct is
        ``body``, as it is."""
        head = _Head(request.data)
        return build_frame(head.service, request.request_id,
                           message_begin(head.method, MessageType.REPLY, head.seqid) + body)


def _id_offset(data: bytes | bytearray) -> int:
    header_size = struct.unpack_from(">H", data, FRAME_SIZE_LEN + 6)[0]
    if header_size < MIN_HEADER_SIZE or FRAME_SIZE_LEN + header_size > len(data):
        raise ValueError(f"header size {header_size} does not fit the frame")
    return FRAME_SIZE_LEN + header_size - ID_LEN


class _Head:
    """The header and the message's beginning of a whole frame in ``data``."""

    __slots__ = ("service", "request_id", "kind", "method", "seqid", "body")

    def __init__(self, data: bytes | bytearray) -> None:
        end = len(data)
        if end < FRAME_SIZE_LEN + PREFIX.size:
            raise ValueError("frame ends inside the header")
        magic, message_size, header_size, version = PREFIX.unpack_from(data, FRAME_SIZE_LEN)
        if magic != MAGIC:
            raise ValueError(f"bad magic {magic.hex()}")
        if message_size != end - FRAME_SIZE_LEN:
            raise ValueError(f"message size {message_size} is not the frame size "
                             f"{end - FRAME_SIZE_LEN}")
        if version != VERSION:
            raise ValueError(f"header version {version}; Dubbo writes {VERSION}")
        pos = FRAME_SIZE_LEN + PREFIX.size
        self.service, pos = _string(data, pos, end)
        if pos + ID_LEN != FRAME_SIZE_LEN + header_size:
            raise ValueError(f"header size {header_size} does not end after the "
                             f"service name and the request id")
        self.request_id = ID.unpack_from(data, pos)[0]
        pos += ID_LEN
        if pos + 4 > end:
            raise ValueError("frame ends before the message")
        version_and_type = _U32.unpack_from(data, pos)[0]
        if version_and_type & STRICT_MASK != STRICT_VERSION:
            raise ValueError(f"message begins {version_and_type:#010x}: not Thrift's strict "
                             f"binary protocol (0x8001000T)")
        try:
            self.kind = MessageType(version_and_type & 0xFF)
        except ValueError:
            raise ValueError(f"unknown message type {version_and_type & 0xFF}") from None
        self.method, pos = _string(data, pos + 4, end)
        if pos + 4 > end:
            raise ValueError("frame ends inside the message's beginning")
        self.seqid = I32.unpack_from(data, pos)[0]
        self.body = pos + 4

    def frame(self, data: bytes) -> Frame:
        kind = self.kind
        if kind in (MessageType.CALL, MessageType.ONEWAY):
            frame_kind = FrameKind.REQUEST if kind is MessageType.CALL else FrameKind.ONEWAY
            if self.request_id < 0:
                raise ValueError(f"negative request id {self.request_id}")
            return Frame(frame_kind, self.request_id, data,
                         {SERVICE_HEADER: self.service, METHOD_HEADER: self.method})
        status = REPLY_STATUS
        if kind is MessageType.EXCEPTION:
            status = EXCEPTION_STATUS_BASE + _exception_type(data, self.body)
        return Frame(FrameKind.RESPONSE, self.request_id, data, {}, status=status)


def _string(data: bytes | bytearray, pos: int, end: int) -> tuple[str, int]:
    if pos + 4 > end:
        raise ValueError("frame ends inside a string's length")
    size = I32.unpack_from(data, pos)[0]
    pos += 4
    if size < 0 or pos + size > end:
        raise ValueError(f"string of {size} bytes does not fit the frame")
    try:
        return bytes(data[pos:pos + size]).decode("utf-8"), pos + size
    except UnicodeDecodeError as e:
        raise ValueError(f"string is not UTF-8: {e}") from None


def _exception_type(data: bytes, pos: int) -> int:
    """The ``type`` (field 2, i32) of the ``TApplicationException`` at ``pos``;
    ``UNKNOWN`` when absent, as Thrift reads it."""
    end = len(data)
    error = ApplicationError.UNKNOWN
    while True:
        if pos >= end:
            raise ValueError("exception struct has no stop field")
        field_type = data[pos]
        if field_type == T_STOP:
            return error
        if pos + 3 > end:
            raise ValueError("frame ends inside a field header")
        field_id = _I16.unpack_from(data, pos + 1)[0]
        pos += 3
        if field_id == 2 and field_type == T_I32 and pos + 4 <= end:
            error = I32.unpack_from(data, pos)[0]
        pos = _skip(data, pos, end, field_type, 0)


def _skip(data: bytes, pos: int, end: int, field_type: int, depth: int) -> int:
    if depth > MAX_NESTING:
        raise ValueError(f"nested deeper than {MAX_NESTING}")
    fixed = _FIXED.get(field_type)
    if fixed is not None:
        pos += fixed
    elif field_type == T_STRING:
        pos = _string_end(data, pos, end)
    elif field_type == T_STRUCT:
        while True:
            if pos >= end:
                raise ValueError("struct has no stop field")
            inner = data[pos]
            if inner == T_STOP:
                pos += 1
                break
            pos = _skip(data, pos + 3, end, inner, depth + 1)
    elif field_type in (T_LIST, T_SET):
        if pos + 5 > end:
            raise ValueError("frame ends inside a list header")
        inner, count = data[pos], I32.unpack_from(data, pos + 1)[0]
        pos = _skip_many(data, pos + 5, end, (inner,), count, depth)
    elif field_type == T_MAP:
        if pos + 6 > end:
            raise ValueError("frame ends inside a map header")
        key, value, count = data[pos], data[pos + 1], I32.unpack_from(data, pos + 2)[0]
        pos = _skip_many(data, pos + 6, end, (key, value), count, depth)
    else:
        raise ValueError(f"unknown field type {field_type}")
    if pos > end:
        raise ValueError("field runs past the end of the frame")
    return pos


def _skip_many(data: bytes, pos: int, end: int, types: tuple[int, ...], count: int,
               depth: int) -> int:
    if count < 0 or count > end - pos:
        raise ValueError(f"container of {count} elements does not fit the frame")
    for _ in range(count):
        for element in types:
            pos = _skip(data, pos, end, element, depth + 1)
    return pos


def _string_end(data: bytes, pos: int, end: int) -> int:
    if pos + 4 > end:
        raise ValueError("frame ends inside a string's length")
    size = I32.unpack_from(data, pos)[0]
    if size < 0:
        raise ValueError(f"negative string length {size}")
    return pos + 4 + size


def _exception_frame(service: str, request_id: int, method: str, seqid: int, error: int,
                     text: str) -> bytes:
    return build_frame(service, request_id,
                       message_begin(method, MessageType.EXCEPTION, seqid)
                       + application_exception(text, error))


def _protocol_error_reply(data: bytes | bytearray) -> bytes | None:
    """``PROTOCOL_ERROR`` to a ``CALL`` whose header and message beginning could be
    read (what a Thrift server answers a request it cannot read); None otherwise."""
    try:
        size = FRAME_SIZE.unpack_from(data)[0]
        head = _Head(bytes(data[:FRAME_SIZE_LEN + size]) if len(data) >= FRAME_SIZE_LEN + size
                     else _truncated(data))
    except (ValueError, struct.error):
        return None
    if head.kind is not MessageType.CALL or head.request_id < 0:
        return None
    return _exception_frame(head.service, head.request_id, head.method, head.seqid,
                            ApplicationError.PROTOCOL_ERROR,
                            "400|mosn: frame cannot be decoded")


def _truncated(data: bytes | bytearray) -> bytes:
    """The start of a frame too large to hold, its sizes made to fit what arrived,
    so that its header can be read for the reply."""
    head = bytearray(data)
    size = len(head) - FRAME_SIZE_LEN
    FRAME_SIZE.pack_into(head, 0, size)
    struct.pack_into(">I", head, FRAME_SIZE_LEN + 2, size)
    return bytes(head)
