"""Dubbo wire facts: the 16-byte header, its flag bits, statuses, and the body of a
request as far as routing reads it.

Sources: Apache Dubbo's ``ExchangeCodec`` / ``DubboCodec`` (2.7), the protocol page
of the Dubbo docs ("remote communication details"), MOSN's
``pkg/protocol/xprotocol/dubbo``, and dubbo-remoting (Node.js). Big-endian::

    0      2      3        4                     12              16
    | magic | flag | status | request id (u64)    | body length   | body ...
    magic 0xdabb; flag: bit 7 request, bit 6 two-way, bit 5 event, bits 0-4 serialization
"""

from __future__ import annotations

import enum
import struct

from mosn_dubbo import hessian2

MAGIC = b"\xda\xbb"
HEADER = struct.Struct(">2sBBQI")
"""magic, flag, status, request id, body length."""
HEADER_SIZE = HEADER.size  # 16
REQUEST_ID_OFFSET = 4
STATUS_OFFSET = 3

FLAG_REQUEST = 0x80
FLAG_TWO_WAY = 0x40
FLAG_EVENT = 0x20
SERIALIZATION_MASK = 0x1F

MAX_REQUEST_ID = 2**63 - 1
"""Ids are Java longs; Dubbo counts them up from 0 and never sends a negative one."""


class Serialization(enum.IntEnum):
    """Serialization ids of Dubbo 2.7 (each ``Serialization.getContentTypeId``).
    Only hessian2 bodies are read for routing; the others are refused (as MOSN does)."""

    HESSIAN2 = 2
    JAVA = 3
    COMPACTED_JAVA = 4
    FASTJSON = 6
    NATIVE_JAVA = 7
    KRYO = 8
    FST = 9


class Status(enum.IntEnum):
    """A response's status byte (Dubbo's ``Response``)."""

    OK = 20
    CLIENT_TIMEOUT = 30
    SERVER_TIMEOUT = 31
    BAD_REQUEST = 40
    BAD_RESPONSE = 50
    SERVICE_NOT_FOUND = 60
    SERVICE_ERROR = 70
    SERVER_ERROR = 80
    CLIENT_ERROR = 90
    SERVER_THREADPOOL_EXHAUSTED = 100


class ResultFlag(enum.IntEnum):
    """The first value of an OK response's body (``DubboCodec.RESPONSE_*``)."""

    WITH_EXCEPTION = 0
    VALUE = 1
    NULL_VALUE = 2
    WITH_EXCEPTION_WITH_ATTACHMENTS = 3
    VALUE_WITH_ATTACHMENTS = 4
    NULL_VALUE_WITH_ATTACHMENTS = 5


READONLY_EVENT = hessian2.encode_string("R")
"""The body of the event a Dubbo server sends its clients when it shuts down
(``Constants.READONLY_EVENT``, oneway): take no new requests on this channel."""

DEFAULT_DUBBO_VERSION = "2.0.2"
"""The protocol version Dubbo 2.7 writes first in a request body."""

# The primitive and array letters of a JVM descriptor (``ReflectUtils``).
_PRIMITIVES = frozenset("VZBCDFIJS")


def argument_count(descriptor: str) -> int:
    """How many values a JVM parameter descriptor (``Ljava/lang/String;I[B``) names."""
    count = 0
    i, n = 0, len(descriptor)
    while i < n:
        c = descriptor[i]
        if c == "[":
            i += 1
            continue
        if c == "L":
            end = descriptor.find(";", i)
            if end < 0:
                raise ValueError(f"parameter descriptor {descriptor!r}: class name without ';'")
            i = end + 1
        elif c in _PRIMITIVES:
            i += 1
        else:
            raise ValueError(f"parameter descriptor {descriptor!r}: unexpected {c!r}")
        count += 1
    return count


def build_frame(flag: int, status: int, request_id: int, body: bytes) -> bytes:
    return HEADER.pack(MAGIC, flag, status, request_id, len(body)) + body


def request_body(dubbo_version: str, path: str, version: str, method: str,
                 descriptor: str, arguments: list[bytes], attachments: dict[str, str]) -> bytes:
    """A hessian2 request body, in ``DubboCodec.encodeRequestData``'s order; each
    argument is already encoded."""
    return b"".join([
        hessian2.encode_string(dubbo_version),
        hessian2.encode_string(path),
        hessian2.encode_string(version),
        hessian2.encode_string(method),
        hessian2.encode_string(descriptor),
        *arguments,
        hessian2.encode_map(attachments),
    ])
