"""minirpc: a length-prefixed RPC protocol for testing the RPC engine.

Header (14 bytes, big-endian): magic "MR" · kind (1) · status (1) · request id (4) ·
service length (2) · body length (4); then the service name and the body.
"""

from __future__ import annotations

import struct

from mosn.rpc import Frame, FrameError, FrameKind
from mosn.stream.types import MatchResult

HEADER = struct.Struct(">2sBBIHI")
MAGIC = b"MR"
MAX_BODY = 1 << 24  # a test protocol: 16 MiB is plenty
KINDS = {1: FrameKind.REQUEST, 2: FrameKind.RESPONSE, 3: FrameKind.ONEWAY,
         4: FrameKind.HEARTBEAT, 5: FrameKind.HEARTBEAT_REPLY, 6: FrameKind.GOAWAY}
CODES = {v: k for k, v in KINDS.items()}
OK, NO_ROUTE, UNAVAILABLE, TIMEOUT, UPSTREAM_LOST, BAD_FRAME, BUSY = 0, 1, 2, 3, 4, 5, 6


def encode(kind: FrameKind, request_id: int, service: str = "", body: bytes = b"",
           status: int = OK) -> bytes:
    name = service.encode()
    return HEADER.pack(MAGIC, CODES[kind], status, request_id, len(name), len(body)) + name + body


class MiniRpcCodec:
    name = "minirpc"
    multiplexed = True
    max_request_id = 0xFFFFFFFF

    def match(self, data: bytes) -> MatchResult:
        if len(data) < 2:
            return MatchResult.NEED_MORE if MAGIC.startswith(data) else MatchResult.NO_MATCH
        return MatchResult.MATCH if data[:2] == MAGIC else MatchResult.NO_MATCH

    def decode(self, buffer: bytearray) -> Frame | None:
        if len(buffer) < HEADER.size:
            return None
        magic, kind, status, rid, slen, blen = HEADER.unpack_from(buffer)
        if magic != MAGIC or kind not in KINDS or blen > MAX_BODY:
            raise FrameError("not a minirpc frame")
        end = HEADER.size + slen + blen
        if len(buffer) < end:
            return None
        data = bytes(buffer[:end])
        del buffer[:end]
        service = data[HEADER.size:HEADER.size + slen].decode("latin-1")
        return Frame(KINDS[kind], rid, data, {"service": service}, status)

    def set_request_id(self, data: bytearray, request_id: int) -> None:
        struct.pack_into(">I", data, 4, request_id)

    def heartbeat_reply(self, heartbeat: Frame) -> bytes:
        return encode(FrameKind.HEARTBEAT_REPLY, heartbeat.request_id)

    def error_reply(self, request: Frame, status: int, message: str) -> bytes:
        return encode(FrameKind.RESPONSE, request.request_id, request.headers.get("service", ""),
                      message.encode(), status)

    def error_status(self, http_status: int, flags: tuple[str, ...]) -> int:
        if "UO" in flags or "OM" in flags:
            return BUSY
        return {404: NO_ROUTE, 503: UNAVAILABLE, 504: TIMEOUT, 502: UPSTREAM_LOST}.get(
            http_status, BAD_FRAME)

    def http_status(self, status: int) -> int:
        return 200 if status == OK else 500

    def request(self, service: str, method: str, body: bytes) -> bytes:
        return encode(FrameKind.REQUEST, 0, service, body)

    def response(self, request: Frame, body: bytes) -> bytes:
        return encode(FrameKind.RESPONSE, request.request_id, request.headers["service"], body)


def body_of(frame: Frame) -> bytes:
    return frame.data[HEADER.size + len(frame.headers.get("service", "").encode()):]


class FaultyMiniRpcCodec(MiniRpcCodec):
    """minirpc with bugs on purpose, for the engine's codec-failure tests: ``decode``
    raises on a frame for service ``boom-decode``, ``set_request_id`` on a frame for
    ``boom-id``, ``error_reply`` on a request for ``boom-reply``. Auto never picks it."""

    name = "faultyrpc"

    def match(self, data: bytes) -> MatchResult:
        return MatchResult.NO_MATCH

    def decode(self, buffer: bytearray) -> Frame | None:
        frame = super().decode(buffer)
        if frame is not None and frame.headers.get("service") == "boom-decode":
            raise RuntimeError("faultyrpc: decode fails on purpose")
        return frame

    def set_request_id(self, data: bytearray, request_id: int) -> None:
        if b"boom-id" in data:
            raise RuntimeError("faultyrpc: set_request_id fails on purpose")
        super().set_request_id(data, request_id)

    def error_reply(self, request: Frame, status: int, message: str) -> bytes:
        if request.headers.get("service") == "boom-reply":
            raise RuntimeError("faultyrpc: error_reply fails on purpose")
        return super().error_reply(request, status, message)
