"""The Dubbo frame codec for the RPC engine (:class:`mosn.rpc.codec.FrameCodec`).

A frame is the 16-byte header and its body. Only a request's body is read, and only
as far as routing needs: the dubbo version, service path, service version and method
(the first four hessian2 strings, as MOSN reads them) and, unless turned off, the
attachments map after the arguments, which are stepped over undecoded. Everything is
forwarded as received with the request id patched in place.

Routing headers (lower case): ``service`` (the path), ``version`` (the service
version, else the ``version`` attachment), ``method``, ``dubbo`` (the dubbo version),
``group`` and ``interface`` (attachments; ``interface`` defaults to the path), and
every other attachment whose key and value are strings. A ``timeout`` attachment (ms,
what Dubbo consumers send) caps the route's timeout.
"""

from __future__ import annotations

import struct

from mosn.rpc.codec import Frame, FrameError, FrameKind
from mosn.stream.types import MatchResult
from mosn_dubbo import hessian2, mapping, matcher
from mosn_dubbo.config import DEFAULT_MAX_BODY_SIZE
from mosn_dubbo.frames import (
    DEFAULT_DUBBO_VERSION,
    FLAG_EVENT,
    FLAG_REQUEST,
    FLAG_TWO_WAY,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MAX_REQUEST_ID,
    READONLY_EVENT,
    REQUEST_ID_OFFSET,
    SERIALIZATION_MASK,
    ResultFlag,
    Serialization,
    Status,
    argument_count,
    build_frame,
    request_body,
)
from mosn_dubbo.hessian2 import HessianError, Reader

SERVICE_HEADER = "service"
VERSION_HEADER = "version"
METHOD_HEADER = "method"
GROUP_HEADER = "group"
INTERFACE_HEADER = "interface"
DUBBO_HEADER = "dubbo"
"""The routing keys, MOSN's names (``dubbo/types.go``)."""
TIMEOUT_ATTACHMENT = "timeout"
ROUTING_KEYS = frozenset({SERVICE_HEADER, VERSION_HEADER, METHOD_HEADER, DUBBO_HEADER})
"""Read from the body's head; an attachment of the same name does not replace them."""

_U64 = struct.Struct(">Q")
_HESSIAN2 = Serialization.HESSIAN2


class DubboCodec:
    """``dubbo``: Dubbo 2 frames (hessian2 bodies read for routing)."""

    __slots__ = ("max_body_size", "attachments")

    name = "dubbo"
    multiplexed = True
    max_request_id = MAX_REQUEST_ID

    def __init__(self, max_body_size: int = DEFAULT_MAX_BODY_SIZE,
                 attachments: bool = True) -> None:
        self.max_body_size = max_body_size
        self.attachments = attachments

    def __repr__(self) -> str:
        return (f"<DubboCodec max_body_size={self.max_body_size}"
                f" attachments={self.attachments}>")

    def match(self, data: bytes) -> MatchResult:
        return matcher.match(data)

    # -- decoding -------------------------------------------------------------------------

    def decode(self, buffer: bytearray) -> Frame | None:
        available = len(buffer)
        if available < HEADER_SIZE:
            if available and not MAGIC.startswith(bytes(buffer[:2])):
                raise FrameError(f"dubbo: bad magic {bytes(buffer[:2]).hex()}")
            return None
        magic, flag, status, request_id, length = HEADER.unpack_from(buffer)
        if magic != MAGIC:
            raise FrameError(f"dubbo: bad magic {magic.hex()}")
        is_request = flag & FLAG_REQUEST
        if length > self.max_body_size:
            raise self._bad_request(
                buffer, f"dubbo: body of {length} bytes over the limit of {self.max_body_size}")
        size = HEADER_SIZE + length
        if available < size:
            return None
        data = bytes(buffer[:size])
        if not is_request:
            del buffer[:size]
            kind = FrameKind.HEARTBEAT_REPLY if flag & FLAG_EVENT else FrameKind.RESPONSE
            return Frame(kind, request_id, data, {}, status=status)
        two_way = flag & FLAG_TWO_WAY
        if flag & FLAG_EVENT:
            del buffer[:size]
            if two_way:
                return Frame(FrameKind.HEARTBEAT, request_id, data)
            if data[HEADER_SIZE:] == READONLY_EVENT:
                return Frame(FrameKind.GOAWAY, request_id, data)
            # Another oneway event wants no answer; the engine ignores this kind.
            return Frame(FrameKind.HEARTBEAT_REPLY, request_id, data)
        serialization = flag & SERIALIZATION_MASK
        if serialization != _HESSIAN2:
            raise self._bad_request(
                buffer, f"dubbo: serialization id {serialization} is not supported by mosn "
                        f"(only hessian2, id 2, is read for routing)")
        try:
            headers = self._routing_headers(data)
        except (HessianError, ValueError) as e:
            raise self._bad_request(buffer, f"dubbo: request body: {e}") from None
        del buffer[:size]
        timeout = _timeout(headers.get(TIMEOUT_ATTACHMENT))
        kind = FrameKind.REQUEST if two_way else FrameKind.ONEWAY
        return Frame(kind, request_id, data, headers, timeout=timeout)

    def _routing_headers(self, data: bytes) -> dict[str, str]:
        reader = Reader(data, HEADER_SIZE)
        dubbo = reader.read_string()
        path = reader.read_string()
        version = reader.read_string_or_null() or ""
        method = reader.read_string()
        headers = {DUBBO_HEADER: dubbo, SERVICE_HEADER: path, VERSION_HEADER: version,
                   METHOD_HEADER: method}
        if self.attachments:
            descriptor = reader.read_string_or_null() or ""
            for _ in range(argument_count(descriptor)):
                reader.skip()
            if reader.pos < reader.end:  # Dubbo always writes the map; be lenient
                for key, value in reader.read_string_map().items():
                    key = key.lower()
                    if key not in ROUTING_KEYS:
                        headers[key] = value
                    elif key == VERSION_HEADER and not version:
                        headers[key] = value
        headers.setdefault(INTERFACE_HEADER, path)
        return headers

    def _bad_request(self, buffer: bytearray, message: str) -> FrameError:
        """A frame mosn will not forward: a two-way request whose header was read is
        answered BAD_REQUEST with the reason, as a Dubbo server answers a request it
        cannot decode; anything else just closes."""
        flag = buffer[2]
        reply = None
        if flag & FLAG_REQUEST and flag & FLAG_TWO_WAY and not flag & FLAG_EVENT:
            request_id = _U64.unpack_from(buffer, REQUEST_ID_OFFSET)[0]
            reply = _error_frame(request_id, Status.BAD_REQUEST, message)
        return FrameError(message, reply)

    # -- patching and replies -------------------------------------------------------------

    def set_request_id(self, data: bytearray, request_id: int) -> None:
        if not 0 <= request_id <= MAX_REQUEST_ID:
            raise ValueError(f"dubbo request id {request_id} out of range")
        if data[:2] != MAGIC:
            raise ValueError(f"not a dubbo frame: {bytes(data[:2]).hex()}")
        _U64.pack_into(data, REQUEST_ID_OFFSET, request_id)

    def heartbeat_reply(self, heartbeat: Frame) -> bytes:
        """A response event with status OK in the heartbeat's serialization, carrying
        what the heartbeat carried (null: hessian2 ``N``), as a Dubbo server answers."""
        data = heartbeat.data
        flag = FLAG_EVENT | (data[2] & SERIALIZATION_MASK)
        return build_frame(flag, Status.OK, heartbeat.request_id, data[HEADER_SIZE:])

    def error_reply(self, request: Frame, status: int, message: str) -> bytes:
        """A response with ``status`` and a hessian2 string saying why, as Dubbo
        writes a failed response (``ExchangeCodec.encodeResponse``: the error message)."""
        text = f"{message}: {mapping.STATUS_TEXT.get(status, str(status))}"
        headers = request.headers
        if headers.get(SERVICE_HEADER):
            text += f" ({_service_key(headers)} {headers.get(METHOD_HEADER, '')})"
        return _error_frame(request.request_id, status, text)

    def error_status(self, http_status: int, flags: tuple[str, ...]) -> int:
        return mapping.error_status(http_status, flags)

    def http_status(self, status: int) -> int:
        return mapping.http_status(status)

    # -- frames from scratch, for the tools (mosn bench, mosn mock) -------------------------

    def request(self, service: str, method: str, body: bytes) -> bytes:
        """A two-way hessian2 request with id 0 calling ``method`` of ``service``
        (``[group/]interface[:version]``) with one argument: ``body`` as a String if it
        is UTF-8, else as a byte[]."""
        group, _, rest = service.rpartition("/")
        path, _, version = rest.partition(":")
        descriptor, argument = _argument(body)
        attachments = {"path": path, "interface": path}
        if version:
            attachments["version"] = version
        if group:
            attachments["group"] = group
        payload = request_body(DEFAULT_DUBBO_VERSION, path, version, method, descriptor,
                               [argument], attachments)
        return build_frame(FLAG_REQUEST | FLAG_TWO_WAY | _HESSIAN2, 0, 0, payload)

    def response(self, request: Frame, body: bytes) -> bytes:
        """An OK response to ``request`` whose value is ``body`` (a String if UTF-8,
        else a byte[])."""
        payload = hessian2.encode_int(ResultFlag.VALUE) + _argument(body)[1]
        return build_frame(request.data[2] & SERIALIZATION_MASK, Status.OK,
                           request.request_id, payload)


def _error_frame(request_id: int, status: int, message: str) -> bytes:
    return build_frame(_HESSIAN2, status, request_id, hessian2.encode_string(message))


def _argument(body: bytes) -> tuple[str, bytes]:
    try:
        return "Ljava/lang/String;", hessian2.encode_string(body.decode("utf-8"))
    except UnicodeDecodeError:
        return "[B", hessian2.encode_binary(body)


def _service_key(headers: dict[str, str] | object) -> str:
    """Dubbo's service key: ``group/interface:version``."""
    get = headers.get  # type: ignore[attr-defined]
    key = get(SERVICE_HEADER, "")
    if get(GROUP_HEADER):
        key = f"{get(GROUP_HEADER)}/{key}"
    if get(VERSION_HEADER):
        key = f"{key}:{get(VERSION_HEADER)}"
    return key


def _timeout(value: str | None) -> float | None:
    """The caller's timeout from its ``timeout`` attachment (milliseconds)."""
    if not value:
        return None
    try:
        ms = int(value)
    except ValueError:
        return None
    return ms / 1000 if ms > 0 else None
