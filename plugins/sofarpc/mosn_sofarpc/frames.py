"""SOFARPC bolt wire facts: header layouts, codes and the header map.

Sources: sofa-bolt (Java, the reference: ``RpcProtocol``, ``RpcProtocolV2``,
``RpcCommandDecoderV2``, ``ProtocolSwitch``), MOSN (``pkg/protocol/xprotocol/bolt``,
``boltv2``) and sofa-bolt-node; where they differ the comment says which one is followed.
All integers are big-endian.

Bolt v1 (first byte 0x01)::

    request  (22): proto type cmdcode(2) ver2 id(4) codec timeout(4) classLen(2) headerLen(2) contentLen(4)
    response (20): proto type cmdcode(2) ver2 id(4) codec status(2)  classLen(2) headerLen(2) contentLen(4)

Bolt v2 (first byte 0x02) inserts ``ver1`` after proto and a ``switch`` byte after codec
(request 24, response 22) and may end with a CRC32 of everything before it.
A frame is the header, then the class name, the header map and the content.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass
from collections.abc import Iterable

PROTOCOL_CODE_V1 = 0x01
PROTOCOL_CODE_V2 = 0x02
COMMAND_VERSION = 0x01
"""``ver2``: the remoting command's version; every known peer writes 1."""

V2_VERSION_1 = 0x01
"""``ver1`` of a v2 frame without a CRC trailer (what sofa-bolt writes by default)."""
V2_VERSION_2 = 0x02
"""``ver1`` of a v2 frame that may carry a CRC trailer."""
V2_VERSIONS = (V2_VERSION_1, V2_VERSION_2)
SWITCH_CRC = 0x01
"""Bit 0 of a v2 frame's switch byte (``ProtocolSwitch.CRC_SWITCH_INDEX``)."""
CRC_SIZE = 4

NULL_LENGTH = -1
"""A header-map string length meaning null (sofa-rpc's ``SimpleMapSerializer``)."""


class CmdType(enum.IntEnum):
    RESPONSE = 0
    REQUEST = 1
    ONEWAY = 2


class CmdCode(enum.IntEnum):
    HEARTBEAT = 0
    REQUEST = 1
    RESPONSE = 2
    GOAWAY = 100
    """MOSN's control code: the sender takes no new requests on the connection."""


REQUEST_CMD_CODES = frozenset({CmdCode.HEARTBEAT, CmdCode.REQUEST, CmdCode.GOAWAY})
RESPONSE_CMD_CODES = frozenset({CmdCode.HEARTBEAT, CmdCode.RESPONSE})


class Serialization(enum.IntEnum):
    """The ``codec`` byte: how the content is serialized (sofa-rpc ``RemotingConstants``).
    Other values pass through untouched; the proxy never decodes the content."""

    HESSIAN2 = 1
    JAVA = 2
    PROTOBUF = 11


class ResponseStatus(enum.IntEnum):
    """sofa-bolt ``ResponseStatus`` (MOSN ``bolt/types.go``)."""

    SUCCESS = 0x00
    ERROR = 0x01
    SERVER_EXCEPTION = 0x02
    UNKNOWN = 0x03
    SERVER_THREADPOOL_BUSY = 0x04
    ERROR_COMM = 0x05
    NO_PROCESSOR = 0x06
    TIMEOUT = 0x07
    CLIENT_SEND_ERROR = 0x08
    CODEC_EXCEPTION = 0x09
    CONNECTION_CLOSED = 0x10
    SERVER_SERIAL_EXCEPTION = 0x11
    SERVER_DESERIAL_EXCEPTION = 0x12


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the fields of one of the four fixed headers sit. ``struct`` unpacks the
    whole header; the offsets are for patching in place."""

    struct: struct.Struct
    request_id_offset: int

    @property
    def size(self) -> int:
        return self.struct.size


# Field order of the unpacked tuples (v1):  proto, type, cmdcode, ver2, id, codec, timeout|status, ...
# (v2): proto, ver1, type, cmdcode, ver2, id, codec, switch, timeout|status, ...
V1_REQUEST = Layout(struct.Struct(">BBHBIBiHHI"), request_id_offset=5)
V1_RESPONSE = Layout(struct.Struct(">BBHBIBHHHI"), request_id_offset=5)
V2_REQUEST = Layout(struct.Struct(">BBBHBIBBiHHI"), request_id_offset=6)
V2_RESPONSE = Layout(struct.Struct(">BBBHBIBBHHHI"), request_id_offset=6)

TYPE_OFFSET = {PROTOCOL_CODE_V1: 1, PROTOCOL_CODE_V2: 2}
"""Offset of the command type: it decides which layout the rest of the header has."""
LAYOUTS = {
    (PROTOCOL_CODE_V1, True): V1_REQUEST,
    (PROTOCOL_CODE_V1, False): V1_RESPONSE,
    (PROTOCOL_CODE_V2, True): V2_REQUEST,
    (PROTOCOL_CODE_V2, False): V2_RESPONSE,
}
"""(protocol code, is a request) -> layout."""

_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")


def has_crc(ver1: int, switch: int) -> bool:
    """A v2 frame ends with a CRC32 only when ``ver1`` is 2 and the switch's CRC bit
    is on: sofa-bolt's ``RpcCommandDecoderV2``/``EncoderV2``. (sofa-bolt-node looks
    at the switch alone; sofa-bolt, which writes ver1 1 with the CRC bit on and no
    trailer by default, is followed.)"""
    return ver1 == V2_VERSION_2 and bool(switch & SWITCH_CRC)


def crc32(data: bytes | bytearray | memoryview) -> int:
    """The CRC32 (IEEE, as ``java.util.zip.CRC32``) a v2 trailer carries, unsigned."""
    return zlib.crc32(data) & 0xFFFFFFFF


# -- header map -------------------------------------------------------------------------


class HeaderMapError(ValueError):
    pass


def decode_header_map(data: bytes | bytearray | memoryview) -> dict[str, str]:
    """``i32 length, bytes`` for a key then its value, repeated; length -1 is null
    (a null value reads as ``""``; a pair with a null key is dropped). A later
    duplicate key wins, as in sofa-rpc's ``SimpleMapSerializer``."""
    view = memoryview(data)
    end = len(view)
    pos = 0
    headers: dict[str, str] = {}
    while pos < end:
        key, pos = _read_string(view, pos, end)
        value, pos = _read_string(view, pos, end)
        if key is not None:
            headers[key] = value or ""
    return headers


def _read_string(view: memoryview, pos: int, end: int) -> tuple[str | None, int]:
    if end - pos < 4:
        raise HeaderMapError(f"header map: {end - pos} bytes left where a length was due")
    (length,) = _I32.unpack_from(view, pos)
    pos += 4
    if length == NULL_LENGTH:
        return None, pos
    if length < 0 or length > end - pos:
        raise HeaderMapError(f"header map: string length {length} with {end - pos} bytes left")
    return str(view[pos:pos + length], "utf-8", "replace"), pos + length


def encode_header_map(items: Iterable[tuple[str, str | None]]) -> bytes:
    out = bytearray()
    for key, value in items:
        for s in (key, value):
            if s is None:
                out += _I32.pack(NULL_LENGTH)
            else:
                raw = s.encode()
                out += _U32.pack(len(raw)) + raw
    return bytes(out)


# -- building frames --------------------------------------------------------------------


def build_request(
    request_id: int,
    *,
    protocol: int = PROTOCOL_CODE_V1,
    cmd_type: int = CmdType.REQUEST,
    cmd_code: int = CmdCode.REQUEST,
    codec: int = Serialization.HESSIAN2,
    timeout_ms: int = -1,
    class_name: bytes = b"",
    header: bytes = b"",
    content: bytes = b"",
    ver1: int = V2_VERSION_1,
    switch: int = 0,
) -> bytes:
    """A whole request frame (v1 or v2, a CRC trailer when ``has_crc``)."""
    lengths = (len(class_name), len(header), len(content))
    if protocol == PROTOCOL_CODE_V1:
        head = V1_REQUEST.struct.pack(protocol, cmd_type, cmd_code, COMMAND_VERSION,
                                      request_id, codec, timeout_ms, *lengths)
    else:
        head = V2_REQUEST.struct.pack(protocol, ver1, cmd_type, cmd_code, COMMAND_VERSION,
                                      request_id, codec, switch, timeout_ms, *lengths)
    return _finish(head + class_name + header + content, protocol, ver1, switch)


def build_response(
    request_id: int,
    status: int,
    *,
    protocol: int = PROTOCOL_CODE_V1,
    cmd_code: int = CmdCode.RESPONSE,
    codec: int = Serialization.HESSIAN2,
    class_name: bytes = b"",
    header: bytes = b"",
    content: bytes = b"",
    ver1: int = V2_VERSION_1,
    switch: int = 0,
) -> bytes:
    """A whole response frame (v1 or v2, a CRC trailer when ``has_crc``)."""
    lengths = (len(class_name), len(header), len(content))
    if protocol == PROTOCOL_CODE_V1:
        head = V1_RESPONSE.struct.pack(protocol, CmdType.RESPONSE, cmd_code, COMMAND_VERSION,
                                       request_id, codec, status, *lengths)
    else:
        head = V2_RESPONSE.struct.pack(protocol, ver1, CmdType.RESPONSE, cmd_code,
                                       COMMAND_VERSION, request_id, codec, switch, status,
                                       *lengths)
    return _finish(head + class_name + header + content, protocol, ver1, switch)


def replace_header_map(data: bytes, header: bytes) -> bytes:
    """The request or response frame ``data`` with ``header`` as its header map: the
    header-length field rewritten, the class name and content copied, a v2 CRC
    trailer recomputed."""
    protocol = data[0]
    layout = LAYOUTS[protocol, data[TYPE_OFFSET[protocol]] != CmdType.RESPONSE]
    fields = list(layout.struct.unpack_from(data))
    class_len, header_len, content_len = fields[-3:]
    start = layout.size + class_len
    body_end = start + header_len + content_len
    fields[-2] = len(header)
    frame = (layout.struct.pack(*fields) + data[layout.size:start] + header
             + data[start + header_len:body_end])
    if protocol == PROTOCOL_CODE_V1:
        return frame
    return _finish(frame, protocol, fields[1], fields[7])


def _finish(frame: bytes, protocol: int, ver1: int, switch: int) -> bytes:
    if protocol == PROTOCOL_CODE_V2 and has_crc(ver1, switch):
        return frame + _U32.pack(crc32(frame))
    return frame

