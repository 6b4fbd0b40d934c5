"""``--kind codec``: an RPC protocol, in the house layout of a protocol plugin: a
length-prefixed frame codec for mosn's multiplexed RPC engine."""

DESCRIPTION = "The ${name} RPC protocol for mosn: a frame codec for the multiplexed RPC engine"
TEST_DEPENDENCIES = ("pytest>=8", "hypothesis>=6.100")

from mosn.testing.templates import INSTALL, INSTALLED_ONLY

FILES: dict[str, str] = {}

FILES["README.md"] = '''
# mosn-plugin-${name}

The `${name}` RPC protocol for [mosn](https://github.com/mosn/mosn)'s Python data plane:
a sans-IO frame codec that mosn's multiplexed RPC engine turns into a protocol of the
`proxy` filter (routing on `service` and `method`, pools, request-id remapping,
timeouts, heartbeats answered by mosn, the proxy's failures as `${name}` error replies).

Written by `mosn plugin new ${name}` as a starting point. Change it into your protocol;
the conformance suite in `tests/` tells you what the engine needs that a change broke.

## The wire format

All integers big-endian (`mosn_${name}/frames.py`):

| offset | size | field |
|---|---|---|
| 0 | 2 | magic `"${magic}"` |
| 2 | 1 | version (1) |
| 3 | 1 | kind: 1 request, 2 oneway, 3 response, 4 heartbeat, 5 heartbeat reply, 6 goaway |
| 4 | 1 | status (0 in requests): 0 OK, 1 server error, 2 no route, 3 unavailable, 4 busy, 5 timeout, 6 upstream lost, 7 bad frame |
| 5 | 4 | request id (a response carries its request's) |
| 9 | 2 | service length |
| 11 | 2 | method length |
| 13 | 4 | body length |
| 17 | | service, method (UTF-8), then the body (mosn never decodes it) |

## Layout

| file | what it holds |
|---|---|
| `mosn_${name}/frames.py` | the wire format: header layout, kinds, statuses, `encode()` |
| `mosn_${name}/codec.py` | `${Name}Codec`: decode, patch an id, replies, frames for the tools |
| `mosn_${name}/matcher.py` | knows a `${name}` connection by its first bytes (for `Auto`) |
| `mosn_${name}/mapping.py` | the proxy's failures as `${name}` statuses, and back |
| `mosn_${name}/config.py` | `${Name}Config`, what `extend_config: {${name}: {...}}` may set |
| `mosn_${name}/plugin.py` | registers the codec and the protocol with mosn |
| `tests/` | the conformance suite, the codec's own tests, a test through a real mosn |

''' + INSTALL + '''
```yaml
filters:
  - type: proxy
    config:
      downstream_protocol: ${name}
      router_config_name: rpc
      extend_config: {${name}: {max_frame_size: 1048576}}
```

Try it without real peers: `mosn mock server --protocol ${name} --listen 127.0.0.1:12220`
as a backend, `mosn mock client --protocol ${name} --target ... --service ...` or
`mosn bench --protocol ${name} ...` as clients. docs/plugins.md of mosn walks through
all of it.
'''

FILES["mosn_${name}/__init__.py"] = '''
"""The ${name} RPC protocol for mosn."""

from mosn_${name}.codec import ${Name}Codec
from mosn_${name}.config import DEFAULT_MAX_FRAME_SIZE, ${Name}Config
from mosn_${name}.frames import HEADER, MAGIC, Kind, Status, encode
from mosn_${name}.mapping import error_status, http_status
from mosn_${name}.matcher import match

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "HEADER",
    "MAGIC",
    "${Name}Codec",
    "${Name}Config",
    "Kind",
    "Status",
    "encode",
    "error_status",
    "http_status",
    "match",
]
'''

FILES["mosn_${name}/frames.py"] = '''
"""The ${name} wire format. All integers are big-endian.

    offset  size  field
    0       2     magic           MAGIC ("${magic}"): says "this is ${name}"
    2       1     version         VERSION
    3       1     kind            Kind
    4       1     status          Status (0 in requests)
    5       4     request id      a response carries its request's id
    9       2     service length
    11      2     method length
    13      4     body length
    17            service, method (UTF-8), then the body (mosn never decodes it)

Make it your protocol's: keep ``HEADER``, ``REQUEST_ID_OFFSET`` and ``encode`` in
step; the conformance suite checks the rest.
"""

from __future__ import annotations

import enum
import struct

MAGIC = b"${magic}"
VERSION = 1
HEADER = struct.Struct(">2sBBBIHHI")
"""magic, version, kind, status, request id, service length, method length, body length."""
REQUEST_ID_OFFSET = 5
MAX_REQUEST_ID = 0xFFFFFFFF
"""Request ids are u32 on the wire."""


class Kind(enum.IntEnum):
    REQUEST = 1
    ONEWAY = 2
    """A request that gets no response."""
    RESPONSE = 3
    HEARTBEAT = 4
    HEARTBEAT_REPLY = 5
    GOAWAY = 6
    """The sender takes no new requests on this connection."""


class Status(enum.IntEnum):
    OK = 0
    SERVER_ERROR = 1
    NO_ROUTE = 2
    UNAVAILABLE = 3
    BUSY = 4
    TIMEOUT = 5
    UPSTREAM_LOST = 6
    BAD_FRAME = 7


def encode(kind: int, request_id: int, service: str = "", method: str = "", body: bytes = b"",
           status: int = Status.OK) -> bytes:
    """A whole frame."""
    service_bytes, method_bytes = service.encode(), method.encode()
    return HEADER.pack(MAGIC, VERSION, kind, status, request_id, len(service_bytes),
                       len(method_bytes), len(body)) + service_bytes + method_bytes + body
'''

FILES["mosn_${name}/codec.py"] = '''
"""The ${name} frame codec for mosn's RPC engine (``mosn.rpc.codec.FrameCodec``).

Sans-IO: bytes in, frames out. Routing reads the service and method names from the
header's strings; the body is never decoded. A forwarded frame is the bytes as
received with the request id patched in place.
"""

from __future__ import annotations

import struct

from mosn.rpc import Frame, FrameError, FrameKind
from mosn.stream import MatchResult
from mosn_${name} import mapping, matcher
from mosn_${name}.config import DEFAULT_MAX_FRAME_SIZE
from mosn_${name}.frames import (
    HEADER,
    MAGIC,
    MAX_REQUEST_ID,
    REQUEST_ID_OFFSET,
    VERSION,
    Kind,
    Status,
    encode,
)

_U32 = struct.Struct(">I")
_KINDS = {
    Kind.REQUEST: FrameKind.REQUEST,
    Kind.ONEWAY: FrameKind.ONEWAY,
    Kind.RESPONSE: FrameKind.RESPONSE,
    Kind.HEARTBEAT: FrameKind.HEARTBEAT,
    Kind.HEARTBEAT_REPLY: FrameKind.HEARTBEAT_REPLY,
    Kind.GOAWAY: FrameKind.GOAWAY,
}


class ${Name}Codec:
    __slots__ = ("max_frame_size",)

    name = "${name}"
    multiplexed = True
    max_request_id = MAX_REQUEST_ID

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_frame_size = max_frame_size

    def match(self, data: bytes) -> MatchResult:
        return matcher.match(data)

    def decode(self, buffer: bytearray) -> Frame | None:
        if len(buffer) < HEADER.size:
            return None
        magic, version, kind, status, request_id, service_len, method_len, body_len = (
            HEADER.unpack_from(buffer))
        if magic != MAGIC or version != VERSION:
            raise FrameError("${name}: bad magic or version")
        if kind not in _KINDS:
            raise FrameError(f"${name}: unknown kind {kind}")
        strings_end = HEADER.size + service_len + method_len
        size = strings_end + body_len
        if size > self.max_frame_size:
            reply = None
            if kind == Kind.REQUEST:  # a caller waits for this one: tell it why
                reply = encode(Kind.RESPONSE, request_id, status=Status.BAD_FRAME)
            raise FrameError(f"${name}: a frame of {size} bytes is over the limit of "
                             f"{self.max_frame_size}", reply)
        if len(buffer) < size:
            return None
        data = bytes(buffer[:size])
        del buffer[:size]
        service = data[HEADER.size:HEADER.size + service_len].decode("utf-8", "replace")
        method = data[HEADER.size + service_len:strings_end].decode("utf-8", "replace")
        return Frame(_KINDS[kind], request_id, data, {"service": service, "method": method},
                     status)

    def set_request_id(self, data: bytearray, request_id: int) -> None:
        _U32.pack_into(data, REQUEST_ID_OFFSET, request_id)

    def heartbeat_reply(self, heartbeat: Frame) -> bytes:
        return encode(Kind.HEARTBEAT_REPLY, heartbeat.request_id)

    def error_reply(self, request: Frame, status: int, message: str) -> bytes:
        headers = request.headers
        return encode(Kind.RESPONSE, request.request_id, headers.get("service", ""),
                      headers.get("method", ""), message.encode(), status)

    def error_status(self, http_status: int, flags: tuple[str, ...]) -> int:
        return mapping.error_status(http_status, flags)

    def http_status(self, status: int) -> int:
        return mapping.http_status(status)

    # frames from scratch, for mosn bench and mosn mock

    def request(self, service: str, method: str, body: bytes) -> bytes:
        return encode(Kind.REQUEST, 0, service, method, body)

    def response(self, request: Frame, body: bytes) -> bytes:
        headers = request.headers
        return encode(Kind.RESPONSE, request.request_id, headers.get("service", ""),
                      headers.get("method", ""), body)
'''

FILES["mosn_${name}/matcher.py"] = '''
"""Recognises a ${name} connection by its first bytes (``downstream_protocol: Auto``):
the magic, the version, and a kind a client may open a connection with."""

from __future__ import annotations

from mosn.stream import MatchResult
from mosn_${name}.frames import MAGIC, VERSION, Kind

_PREFIX = MAGIC + bytes([VERSION])
_OPENING_KINDS = frozenset({Kind.REQUEST, Kind.ONEWAY, Kind.HEARTBEAT})


def match(data: bytes) -> MatchResult:
    head = bytes(data[:len(_PREFIX) + 1])
    if len(head) <= len(_PREFIX):
        return MatchResult.NEED_MORE if _PREFIX.startswith(head) else MatchResult.NO_MATCH
    if head[:len(_PREFIX)] == _PREFIX and head[-1] in _OPENING_KINDS:
        return MatchResult.MATCH
    return MatchResult.NO_MATCH
'''

FILES["mosn_${name}/mapping.py"] = '''
"""Statuses: the proxy's own failures (HTTP-like status + Envoy response flags) as
${name} statuses, and ${name} statuses back as HTTP-like ones (for retries and stats)."""

from __future__ import annotations

from mosn_${name}.frames import Status

OVERFLOW_FLAG = "UO"
"""Envoy's upstream overflow flag (circuit breaker or pool limit)."""

_BY_HTTP_STATUS = {
    400: Status.BAD_FRAME,
    404: Status.NO_ROUTE,
    502: Status.UPSTREAM_LOST,
    503: Status.UNAVAILABLE,
    504: Status.TIMEOUT,
}
_TO_HTTP_STATUS = {
    Status.OK: 200,
    Status.BAD_FRAME: 400,
    Status.NO_ROUTE: 404,
    Status.UPSTREAM_LOST: 502,
    Status.UNAVAILABLE: 503,
    Status.BUSY: 503,
    Status.TIMEOUT: 504,
}


def error_status(http_status: int, flags: tuple[str, ...] = ()) -> int:
    if http_status == 503 and OVERFLOW_FLAG in flags:
        return Status.BUSY
    return _BY_HTTP_STATUS.get(http_status, Status.SERVER_ERROR)


def http_status(status: int) -> int:
    return _TO_HTTP_STATUS.get(status, 500)
'''

FILES["mosn_${name}/config.py"] = '''
"""What ``extend_config: {${name}: {...}}`` of the proxy may set."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from mosn.config import Model

DEFAULT_MAX_FRAME_SIZE = 4 * 1024 * 1024
"""A frame is held whole before it is forwarded: larger ones are refused."""
MAX_MAX_FRAME_SIZE = 1024 * 1024 * 1024
"""The body length is a u32; a config may not allow more than 1 GiB."""


class ${Name}Config(Model):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error

    max_frame_size: int = Field(default=DEFAULT_MAX_FRAME_SIZE, ge=1024, le=MAX_MAX_FRAME_SIZE)
    """Bytes of one frame; a larger request is answered BAD_FRAME and the connection closed."""
'''

FILES["mosn_${name}/plugin.py"] = '''
"""Registers the ${name} codec with the RPC engine and the ${name} protocol with the proxy."""

from __future__ import annotations

from typing import Any

from mosn.plugins import Extension, hookimpl
from mosn_${name}.codec import ${Name}Codec
from mosn_${name}.config import ${Name}Config


def ${name}_codec(config: ${Name}Config | None = None, *_: Any) -> ${Name}Codec:
    return ${Name}Codec((config or ${Name}Config()).max_frame_size)


def ${name}_protocol(config: ${Name}Config | None = None, *_: Any) -> Any:
    from mosn.rpc.engine import rpc_protocol  # the engine loads after the plugins

    return rpc_protocol(${name}_codec(config))


@hookimpl
def mosn_xprotocol_codecs() -> list[Extension]:
    return [Extension("${name}", ${name}_codec, ${Name}Config,
                      description="${name} frame codec for the RPC engine")]


@hookimpl
def mosn_protocols() -> list[Extension]:
    return [Extension("${name}", ${name}_protocol, ${Name}Config,
                      description="${name} RPC on the multiplexed RPC engine")]
'''

FILES["tests/test_${name}_codec.py"] = '''
"""The ${name} codec: mosn's conformance suite, and what is particular to ${name}."""

from __future__ import annotations

import pytest

from mosn.rpc import FrameError
from mosn.testing import CodecConformance
from mosn_${name} import ${Name}Codec, Kind, Status, encode


class Test${Name}Conformance(CodecConformance):
    @pytest.fixture
    def codec(self) -> ${Name}Codec:
        return ${Name}Codec()

    @pytest.fixture
    def heartbeat(self) -> bytes:
        return encode(Kind.HEARTBEAT, 7)


def test_routing_headers() -> None:
    data = encode(Kind.REQUEST, 1, "com.example.EchoService", "echo", b"hi")
    frame = ${Name}Codec().decode(bytearray(data))
    assert frame.headers == {"service": "com.example.EchoService", "method": "echo"}


def test_an_oversized_request_is_answered_bad_frame() -> None:
    codec = ${Name}Codec(max_frame_size=1024)
    with pytest.raises(FrameError) as refused:
        codec.decode(bytearray(encode(Kind.REQUEST, 5, "s", "m", b"x" * 2048)))
    reply = codec.decode(bytearray(refused.value.reply))
    assert (reply.request_id, reply.status) == (5, Status.BAD_FRAME)
'''

FILES["tests/test_${name}_plugin.py"] = '''
"""The plugin's hooks, as mosn calls them when it loads the plugin."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mosn_${name} import ${Name}Config, plugin


def test_registers_a_codec_and_a_protocol() -> None:
    [codec] = plugin.mosn_xprotocol_codecs()
    [protocol] = plugin.mosn_protocols()
    assert codec.name == protocol.name == "${name}"
    assert codec.factory(${Name}Config(max_frame_size=65536)).max_frame_size == 65536
    assert protocol.factory(${Name}Config()).name == "${name}"


def test_the_config_refuses_a_tiny_frame_limit() -> None:
    with pytest.raises(ValidationError):
        ${Name}Config(max_frame_size=10)
'''

FILES["tests/test_${name}_mesh.py"] = '''
"""${name} traffic through a real mosn, with the kit's fixtures (mosn.testing):
a mock ${name} backend, mosn routing to it, and a mock client."""

from __future__ import annotations

import importlib.metadata

import pytest

from mosn.testing import call, free_port, rpc_proxy_config
from mosn_${name} import ${Name}Codec, Status
''' + INSTALLED_ONLY + '''

def test_requests_through_mosn(start_mosn, mock_rpc_server) -> None:
    backend = mock_rpc_server(${Name}Codec(), response_bytes=8)
    port = free_port()
    start_mosn(rpc_proxy_config(port, "${name}", [backend.address], service="^com[.]example[.]"))
    results = call(${Name}Codec(), port, service="com.example.EchoService", count=5)
    assert [r.ok for r in results] == [True] * 5


def test_no_route_is_a_${name}_error(start_mosn, mock_rpc_server) -> None:
    backend = mock_rpc_server(${Name}Codec())
    port = free_port()
    start_mosn(rpc_proxy_config(port, "${name}", [backend.address], service="^com[.]example[.]"))
    [result] = call(${Name}Codec(), port, service="org.other.Service")
    assert result.frame.status == Status.NO_ROUTE
'''
