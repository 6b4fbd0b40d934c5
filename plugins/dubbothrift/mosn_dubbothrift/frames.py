"""Dubbo-Thrift frames: Dubbo's ``thrift`` protocol (``dubbo-rpc-thrift``'s
``ThriftCodec``), a Dubbo header around a Thrift binary-protocol message::

    frame size (4) | magic 0xdabc (2) | message size (4) | header size (2) | version 1 (1)
                   | service name (Thrift string: i32 length, UTF-8) | request id (i64)
                   | Thrift message: i32 0x8001000T (T the type) | method name | i32 seqid
                   | the arguments or the result struct | (message end: nothing)

The frame size counts what follows it (Thrift's framed transport); the message size
counts from the magic to the end, the same number; the header size from the magic to
the end of the request id, which therefore ends ``header size`` bytes after the magic.
All integers are big-endian, signed.
"""

from __future__ import annotations

import enum
import struct

MAGIC = b"\xda\xbc"
VERSION = 1
"""The only header version Dubbo writes ("header fields in version 1")."""
FRAME_SIZE = struct.Struct(">I")
FRAME_SIZE_LEN = 4
PREFIX = struct.Struct(">2sIHB")
"""magic, message size, header size, version: what follows the frame size."""
PREFIX_LEN = PREFIX.size  # 9
ID = struct.Struct(">q")
ID_LEN = 8
I32 = struct.Struct(">i")
STRICT_VERSION = 0x80010000
"""Thrift's strict binary protocol: a message begins with ``0x8001`` and its type."""
STRICT_MASK = 0xFFFF0000
MIN_HEADER_SIZE = PREFIX_LEN + 4 + ID_LEN
"""A header with an empty service name."""
MIN_MESSAGE_SIZE = MIN_HEADER_SIZE + 4 + 4 + 4
"""The header and the smallest message begin (empty method name)."""
MAX_REQUEST_ID = 0x7FFFFFFFFFFFFFFF
"""Dubbo's request id is a Java long."""


class MessageType(enum.IntEnum):
    """Thrift's ``TMessageType``."""

    CALL = 1
    REPLY = 2
    EXCEPTION = 3
    ONEWAY = 4


class ApplicationError(enum.IntEnum):
    """Thrift's ``TApplicationException`` types."""

    UNKNOWN = 0
    UNKNOWN_METHOD = 1
    INVALID_MESSAGE_TYPE = 2
    WRONG_METHOD_NAME = 3
    BAD_SEQUENCE_ID = 4
    MISSING_RESULT = 5
    INTERNAL_ERROR = 6
    PROTOCOL_ERROR = 7
    INVALID_TRANSFORM = 8
    INVALID_PROTOCOL = 9
    UNSUPPORTED_CLIENT_TYPE = 10


REPLY_STATUS = 0
"""mosn's status for a ``REPLY`` message (whatever its result struct holds)."""
EXCEPTION_STATUS_BASE = 100
"""An ``EXCEPTION`` message's status: 100 + its ``TApplicationException`` type, so that
every exception type (``UNKNOWN`` is 0) stays apart from a reply."""

# Thrift binary protocol field types (``TType``)
T_STOP, T_BOOL, T_BYTE, T_DOUBLE, T_I16, T_I32, T_I64, T_STRING, T_STRUCT, T_MAP, T_SET, \
    T_LIST = 0, 2, 3, 4, 6, 8, 10, 11, 12, 13, 14, 15


def thrift_string(value: str) -> bytes:
    raw = value.encode("utf-8")
    return I32.pack(len(raw)) + raw


def message_begin(method: str, kind: MessageType, seqid: int) -> bytes:
    return I32.pack((STRICT_VERSION | kind) - (1 << 32)) + thrift_string(method) + \
        I32.pack(seqid)


def application_exception(message: str, error: int) -> bytes:
    """A ``TApplicationException`` struct: 1 message (string), 2 type (i32)."""
    return (bytes([T_STRING]) + struct.pack(">h", 1) + thrift_string(message)
            + bytes([T_I32]) + struct.pack(">h", 2) + I32.pack(error) + bytes([T_STOP]))


def build_frame(service: str, request_id: int, message: bytes) -> bytes:
    """A whole frame: the Dubbo header for ``service`` and ``request_id``, then
    ``message`` (a Thrift message as it is)."""
    service_field = thrift_string(service)
    header_size = PREFIX_LEN + len(service_field) + ID_LEN
    size = header_size + len(message)
    return b"".join((FRAME_SIZE.pack(size), PREFIX.pack(MAGIC, size, header_size, VERSION),
                     service_field, ID.pack(request_id), message))
