"""The bolt frame codecs for the RPC engine (:class:`mosn.rpc.codec.FrameCodec`).

``BoltCodec`` ("bolt") and ``BoltV2Codec`` ("boltv2") differ only in the version they
match and make requests in; each decodes both versions on one connection, as MOSN's codecs do
(``boltProtocol.Decode`` hands 0x02 frames to boltv2 and back), and every reply is
built in the version, serialization, ``ver1`` and switch of the frame it answers.

The content is never decoded: routing reads the header map only (``service``,
``sofa_head_target_service``, ``sofa_head_method_name``). A forwarded frame is the
bytes as received with the request id patched (and a v2 CRC trailer redone).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from mosn.rpc.codec import Frame, FrameError, FrameKind
from mosn.stream.types import MatchResult
from mosn_sofarpc import mapping, matcher
from mosn_sofarpc.config import DEFAULT_MAX_FRAME_SIZE
from mosn_sofarpc.frames import (
    CRC_SIZE,
    LAYOUTS,
    PROTOCOL_CODE_V1,
    PROTOCOL_CODE_V2,
    REQUEST_CMD_CODES,
    RESPONSE_CMD_CODES,
    TYPE_OFFSET,
    V1_REQUEST,
    V2_REQUEST,
    V2_VERSION_1,
    V2_VERSIONS,
    CmdCode,
    CmdType,
    HeaderMapError,
    ResponseStatus,
    Serialization,
    build_request,
    build_response,
    crc32,
    decode_header_map,
    encode_header_map,
    has_crc,
    replace_header_map,
)

MAX_REQUEST_ID = 0xFFFFFFFF
"""Request ids are u32 on the wire."""

SERVICE_HEADER = "service"
"""The routing key for the service (``interface:version``)."""
LEGACY_SERVICE_HEADER = "sofa_head_target_service"
METHOD_HEADER = "method"
"""The routing key for the method, from ``sofa_head_method_name`` (SOFARPC writes it for
protobuf calls; hessian2 calls carry the method inside the content only)."""
SOFA_METHOD_HEADER = "sofa_head_method_name"
CLASS_HEADER = "class"
"""The frame's class name (``com.alipay.sofa.rpc.core.request.SofaRequest`` ...), unless
the header map has a key of that name."""

SOFA_REQUEST_CLASS = b"com.alipay.sofa.rpc.core.request.SofaRequest"
SOFA_RESPONSE_CLASS = b"com.alipay.sofa.rpc.core.response.SofaResponse"
"""The class names SOFARPC puts in its requests and responses."""

TOOL_TIMEOUT_MS = 3000
"""The timeout of a request made from scratch: SOFARPC's default invoke timeout
(``consumer.invoke.timeout``). Not -1: sofa-rpc-node's server drops a request whose
timeout is negative."""

_U32 = struct.Struct(">I")
_CMD_TYPES = frozenset(CmdType)
_SWITCH_OFFSET_V2 = 11
_CODEC_OFFSET = {PROTOCOL_CODE_V1: 9, PROTOCOL_CODE_V2: 10}
_REQUEST_ID_OFFSET = {PROTOCOL_CODE_V1: V1_REQUEST.request_id_offset,
                      PROTOCOL_CODE_V2: V2_REQUEST.request_id_offset}
_RESPONSE_TYPE = int(CmdType.RESPONSE)
_REQUEST_TYPE = int(CmdType.REQUEST)
"""Plain ints: compared on every frame decoded (an enum member is a slower lookup)."""
_REQUEST_KINDS = {CmdCode.HEARTBEAT: FrameKind.HEARTBEAT, CmdCode.GOAWAY: FrameKind.GOAWAY}
_RESPONSE_KINDS = {CmdCode.HEARTBEAT: FrameKind.HEARTBEAT_REPLY,
                   CmdCode.RESPONSE: FrameKind.RESPONSE}


class _SofaRpcCodec:
    """The bolt v1 + v2 frame codec; subclasses name it and pick the matcher."""

    __slots__ = ("max_frame_size",)

    name = ""
    multiplexed = True
    max_request_id = MAX_REQUEST_ID
    _match: Callable[[bytes], MatchResult]
    _protocol: int
    """The version of the frames made from scratch (``request``)."""

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_frame_size = max_frame_size

    def __repr__(self) -> str:
        return f"<{type(self).__name__} max_frame_size={self.max_frame_size}>"

    def match(self, data: bytes) -> MatchResult:
        return self._match(data)

    # -- decoding -----------------------------------------------------------------------

    def decode(self, buffer: bytearray) -> Frame | None:
        available = len(buffer)
        if not available:
            return None
        protocol = buffer[0]
        type_offset = TYPE_OFFSET.get(protocol)
        if type_offset is None:
            raise FrameError(f"bolt: unknown protocol code {protocol:#04x}")
        if available <= type_offset:
            return None
        cmd_type = buffer[type_offset]
        if cmd_type not in _CMD_TYPES:
            raise FrameError(f"bolt: unknown command type {cmd_type}")
        response = cmd_type == _RESPONSE_TYPE
        layout = LAYOUTS[protocol, not response].struct
        fixed = layout.size
        if available < fixed:
            return None

        fields = layout.unpack_from(buffer)
        if protocol == PROTOCOL_CODE_V1:
            (_, _, cmd_code, _, request_id, _, timeout_or_status, class_len, header_len,
             content_len) = fields
            crc = False
        else:
            (_, ver1, _, cmd_code, _, request_id, _, switch, timeout_or_status, class_len,
             header_len, content_len) = fields
            if ver1 not in V2_VERSIONS:
                raise self._error(buffer, cmd_type, f"bolt v2: unknown protocol version {ver1}")
            crc = has_crc(ver1, switch)

        codes = RESPONSE_CMD_CODES if response else REQUEST_CMD_CODES
        if cmd_code not in codes:
            raise self._error(buffer, cmd_type,
                              f"bolt: command code {cmd_code} in a frame of type {cmd_type}")

        header_end = fixed + class_len
        map_end = header_end + header_len
        body_end = map_end + content_len
        size = body_end + CRC_SIZE if crc else body_end
        if size > self.max_frame_size:
            raise self._error(buffer, cmd_type,
                              f"bolt: frame of {size} bytes over the limit of {self.max_frame_size}")
        if available < size:
            return None

        data = bytes(buffer[:size])
        if crc:
            (expected,) = _U32.unpack_from(data, body_end)
            if crc32(memoryview(data)[:body_end]) != expected:
                raise self._error(buffer, cmd_type, "bolt v2: CRC32 check failed")
        headers: dict[str, str] = {}
        if header_len:
            try:
                headers = decode_header_map(memoryview(data)[header_end:map_end])
            except HeaderMapError as e:
                raise self._error(buffer, cmd_type, f"bolt: {e}") from None
        del buffer[:size]

        if headers or class_len:
            _add_routing_keys(headers, data[fixed:header_end])
        if response:
            return Frame(_RESPONSE_KINDS[cmd_code], request_id, data, headers,
                         timeout_or_status, None)
        kind = _REQUEST_KINDS.get(cmd_code) or (
            FrameKind.REQUEST if cmd_type == _REQUEST_TYPE else FrameKind.ONEWAY)
        timeout = timeout_or_status / 1000 if timeout_or_status > 0 else None  # -1: none
        return Frame(kind, request_id, data, headers, 0, timeout)

    def _error(self, buffer: bytearray, cmd_type: int, message: str) -> FrameError:
        """A malformed frame whose header was read: a two-way request is answered
        CODEC_EXCEPTION (MOSN's reply to a decode error); anything else just closes."""
        reply = None
        if cmd_type == CmdType.REQUEST:
            reply = _reply(buffer, _request_id(buffer), ResponseStatus.CODEC_EXCEPTION,
                           CmdCode.RESPONSE)
        return FrameError(message, reply)

    # -- patching and replies -----------------------------------------------------------

    def set_request_id(self, data: bytearray, request_id: int) -> None:
        if not 0 <= request_id <= MAX_REQUEST_ID:
            raise ValueError(f"bolt request id {request_id} out of range")
        protocol = data[0]
        offset = _REQUEST_ID_OFFSET.get(protocol)
        if offset is None:
            raise ValueError(f"not a bolt frame: first byte {protocol:#04x}")
        _U32.pack_into(data, offset, request_id)
        if protocol == PROTOCOL_CODE_V2 and has_crc(data[1], data[_SWITCH_OFFSET_V2]):
            end = len(data) - CRC_SIZE
            _U32.pack_into(data, end, crc32(memoryview(data)[:end]))

    def heartbeat(self) -> bytes:
        """A heartbeat request (id 0, no class, header map or content), as SOFARPC's
        client sends on an idle connection (``HeartbeatCommand``)."""
        return build_request(0, protocol=self._protocol, cmd_code=CmdCode.HEARTBEAT,
                             timeout_ms=TOOL_TIMEOUT_MS)

    def heartbeat_reply(self, heartbeat: Frame) -> bytes:
        """A heartbeat ack: status SUCCESS, no class, header map or content (what
        sofa-bolt, sofa-bolt-node and MOSN send)."""
        return _reply(heartbeat.data, heartbeat.request_id, ResponseStatus.SUCCESS,
                      CmdCode.HEARTBEAT)

    def with_headers(self, frame: Frame, updates: dict[str, str]) -> bytes:
        """``frame`` re-encoded with ``updates`` set in its header map (a tracer's
        context): the map as received (without the routing keys added on decode),
        each key of ``updates`` replaced or appended. Keys the frame does not have
        are appended to the map's bytes as they are (the common case, without
        decoding the map again)."""
        data = frame.data
        protocol = data[0]
        layout = LAYOUTS[protocol, data[TYPE_OFFSET[protocol]] != CmdType.RESPONSE]
        fields = layout.struct.unpack_from(data)
        start = layout.size + fields[-3]
        end = start + fields[-2]
        present = frame.headers
        if not any(key in present for key in updates):
            return replace_header_map(data, data[start:end] + encode_header_map(updates.items()))
        headers = decode_header_map(memoryview(data)[start:end])
        headers.update(updates)
        return replace_header_map(data, encode_header_map(headers.items()))

    def error_reply(self, request: Frame, status: int, message: str) -> bytes:
        """A response with ``status`` and nothing else, as MOSN's hijack replies
        (``boltProtocol.Hijack``): clients raise their own error for the status.
        ``message`` is not sent; a content would have to be a serialized exception."""
        return _reply(request.data, request.request_id, status, CmdCode.RESPONSE)

    def error_status(self, http_status: int, flags: tuple[str, ...]) -> int:
        return mapping.error_status(http_status, flags)

    def http_status(self, status: int) -> int:
        return mapping.http_status(status)

    # -- frames from scratch, for the tools (mosn bench, mosn mock) ----------------------

    def request(self, service: str, method: str, body: bytes) -> bytes:
        """A protobuf-serialized SOFARPC request with id 0, routed by the headers
        sofa-bolt-node writes for protobuf calls; ``body`` is the content."""
        header = encode_header_map([(SERVICE_HEADER, service), (LEGACY_SERVICE_HEADER, service),
                                    (SOFA_METHOD_HEADER, method)])
        return build_request(0, protocol=self._protocol, codec=Serialization.PROTOBUF,
                             timeout_ms=TOOL_TIMEOUT_MS, class_name=SOFA_REQUEST_CLASS,
                             header=header, content=body)

    def response(self, request: Frame, body: bytes) -> bytes:
        """A SUCCESS response to ``request`` with ``body`` as its content."""
        return _reply(request.data, request.request_id, ResponseStatus.SUCCESS,
                      CmdCode.RESPONSE, class_name=SOFA_RESPONSE_CLASS, content=body)


class BoltCodec(_SofaRpcCodec):
    """``bolt``: matches bolt v1 (first byte 0x01)."""

    __slots__ = ()
    name = "bolt"
    _protocol = PROTOCOL_CODE_V1
    _match = staticmethod(matcher.match_v1)


class BoltV2Codec(_SofaRpcCodec):
    """``boltv2``: matches bolt v2 (first byte 0x02)."""

    __slots__ = ()
    name = "boltv2"
    _protocol = PROTOCOL_CODE_V2
    _match = staticmethod(matcher.match_v2)


def _request_id(header: bytes | bytearray) -> int:
    return _U32.unpack_from(header, _REQUEST_ID_OFFSET[header[0]])[0]


def _reply(request: bytes | bytearray, request_id: int, status: int, cmd_code: int,
           class_name: bytes = b"", header: bytes = b"", content: bytes = b"") -> bytes:
    """A response to the frame whose header starts ``request``, in its version and
    serialization, and for v2 its ``ver1`` and switch (so a CRC peer gets a CRC)."""
    protocol = request[0]
    codec = request[_CODEC_OFFSET[protocol]]
    body = {"class_name": class_name, "header": header, "content": content}
    if protocol == PROTOCOL_CODE_V1:
        return build_response(request_id, status, cmd_code=cmd_code, codec=codec, **body)
    ver1 = request[1] if request[1] in V2_VERSIONS else V2_VERSION_1
    return build_response(request_id, status, protocol=protocol, cmd_code=cmd_code,
                          codec=codec, ver1=ver1, switch=request[_SWITCH_OFFSET_V2], **body)


def _add_routing_keys(headers: dict[str, str], class_name: bytes) -> None:
    service = headers.get(SERVICE_HEADER) or headers.get(LEGACY_SERVICE_HEADER)
    if service:
        headers[SERVICE_HEADER] = service
    method = headers.get(SOFA_METHOD_HEADER)
    if method:
        headers[METHOD_HEADER] = method
    if class_name and CLASS_HEADER not in headers:
        headers[CLASS_HEADER] = str(class_name, "utf-8", "replace")
