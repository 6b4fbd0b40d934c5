"""Tars packets: a four-byte length (big-endian, counting itself) and a
``RequestPacket`` or ``ResponsePacket`` struct in the Tars encoding (``RequestF.tars``
of the Tars framework)::

    struct RequestPacket {                  struct ResponsePacket {
        1  short        iVersion;               1 short        iVersion;
        2  byte         cPacketType;            2 byte         cPacketType;
        3  int          iMessageType;           3 int          iRequestId;
        4  int          iRequestId;             4 int          iMessageType;
        5  string       sServantName;           5 int          iRet;
        6  string       sFuncName;              6 vector<byte> sBuffer;
        7  vector<byte> sBuffer;                7 map<string, string> status;
        8  int          iTimeout;   (ms)        8 string       sResultDesc;  (optional)
        9  map<string, string> context;         9 map<string, string> context; (optional)
        10 map<string, string> status;      };
    };

Nothing in the packet says request or response: tag 5 does (a string in a request,
an integer in a response), as MOSN tells them apart (``tars/protocol.go``).
"""

from __future__ import annotations

import enum
import struct

from mosn_tars import jce

LENGTH = struct.Struct(">I")
LENGTH_SIZE = 4
TARS_VERSION = 1
"""``iVersion`` of the Tars packet protocol (``TARSVERSION``); 2 and 3 are TUP."""
TUP_VERSIONS = frozenset({2, 3})
"""TUP packets (``TUPVERSION``, ``TUPVERSION2``): answers come back as RequestPackets."""
NORMAL = 0
ONEWAY = 1
"""``cPacketType``: ``TARSNORMAL`` (two-way) and ``TARSONEWAY``."""
MIN_PACKET_SIZE = LENGTH_SIZE + 6
"""The length field and the head and value of the first two fields: anything shorter
cannot be a packet."""
MAX_REQUEST_ID = 0x7FFFFFFF
"""``iRequestId`` is a signed 32-bit int; the engine hands out positive ids."""
MIN_REQUEST_ID = -0x80000000


class Ret(enum.IntEnum):
    """``iRet`` of a response: the Tars framework's return codes (``BaseF.tars``)."""

    SUCCESS = 0
    SERVER_DECODE_ERROR = -1
    SERVER_ENCODE_ERROR = -2
    NO_FUNCTION = -3
    NO_SERVANT = -4
    RESET_GRID = -5
    QUEUE_TIMEOUT = -6
    INVOKE_TIMEOUT = -7
    PROXY_CONNECT_ERROR = -8
    SERVER_OVERLOAD = -9
    ADAPTER_NULL = -10
    INVALID_SET = -11
    CLIENT_DECODE_ERROR = -12
    SERVER_UNKNOWN_ERROR = -99


def packet(body: bytes) -> bytes:
    """A struct's fields with the length in front."""
    return LENGTH.pack(LENGTH_SIZE + len(body)) + body


def request_packet(request_id: int, servant: str, function: str, payload: bytes, *,
                   packet_type: int = NORMAL, timeout_ms: int = 0,
                   context: dict[str, str] | None = None) -> bytes:
    """A RequestPacket; the id is always written in four bytes so that it can be
    patched in place."""
    return packet(b"".join((
        jce.int_field(1, TARS_VERSION), jce.int_field(2, packet_type), jce.int_field(3, 0),
        jce.int4_field(4, request_id), jce.string_field(5, servant),
        jce.string_field(6, function), jce.bytes_field(7, payload),
        jce.int_field(8, timeout_ms), jce.string_map_field(9, context or {}),
        jce.string_map_field(10, {}))))


def response_packet(request_id: int, ret: int, payload: bytes, *, packet_type: int = NORMAL,
                    description: str = "") -> bytes:
    """A ResponsePacket, as a Tars server writes one (``sResultDesc`` only when set)."""
    fields = [jce.int_field(1, TARS_VERSION), jce.int_field(2, packet_type),
              jce.int4_field(3, request_id), jce.int_field(4, 0), jce.int_field(5, ret),
              jce.bytes_field(6, payload), jce.string_map_field(7, {})]
    if description:
        fields.append(jce.string_field(8, description))
    return packet(b"".join(fields))
