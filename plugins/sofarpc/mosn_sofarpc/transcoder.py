"""MOSN's ``transcoder`` stream filter with its ``http2bolt_simple`` transcoder
(``pkg/filter/stream/transcoder/http2bolt``): an HTTP request becomes a bolt request
to a SOFARPC upstream, and the bolt response an HTTP response.

As MOSN's: every request header goes into the bolt header map (so ``service`` and
``sofa_head_method_name`` route and name the call), the body is the content as it is
(already serialized by the client; ``sofa_head_target_service`` is added from
``service`` when the client did not send it, as SOFARPC servers look there), and the
response's header map becomes the HTTP
response's headers, its content the body, its status 200 for SUCCESS and 500 for any
other. mosn's additions, each with MOSN's value by default where MOSN has one:
``serialization`` (``hessian2``, MOSN's, or ``protobuf``), ``class_name`` (the
request class SOFARPC servers expect; MOSN sends none) and ``timeout`` (the frame's
timeout; MOSN's -1 makes sofa-rpc-node drop the request, so 3 s, SOFARPC's default).

The request is held until its body has all arrived (up to ``MAX_BODY_BYTES``; more is
answered 413), then sent as one frame. The proxy's ``upstream_protocol`` must be
``bolt`` (or MOSN's ``X`` with ``sub_protocol: bolt``).
"""

from __future__ import annotations

from typing import Any, Callable, Literal

from pydantic import Field, field_validator

from mosn.config import Duration, Model, Unsupported
from mosn.plugins import BuildContext
from mosn.proxy import FilterStatus, Phase, StreamFilter
from mosn.rpc import FrameKind
from mosn.stream import Headers
from mosn_sofarpc.codec import (
    LEGACY_SERVICE_HEADER,
    SERVICE_HEADER,
    SOFA_REQUEST_CLASS,
    BoltCodec,
)
from mosn_sofarpc.frames import (
    LAYOUTS,
    TYPE_OFFSET,
    CmdType,
    ResponseStatus,
    Serialization,
    build_request,
    decode_header_map,
    encode_header_map,
)

TRANSCODERS = ("http2bolt_simple", "http2bolt")
"""MOSN's name of the transcoder, and a shorter one."""
MAX_BODY_BYTES = 1024 * 1024
"""A transcoded request's body at most: it is held whole before the frame is made, and
the proxy holds no more than 1 MiB of a request waiting for its upstream."""
DEFAULT_TIMEOUT = 3.0
"""Seconds a bolt request says it waits: SOFARPC's default invoke timeout."""
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "upgrade",
                        "proxy-connection", "content-length", "expect"})
"""HTTP framing fields, which mean nothing in a bolt header map."""


class TranscoderConfig(Model):
    """MOSN's ``{type, trans, rules}`` with mosn's bolt request settings."""

    type: str
    trans: dict[str, Any] = Field(default_factory=dict)
    rules: Unsupported = None
    serialization: Literal["hessian2", "protobuf"] = "hessian2"
    class_name: str = SOFA_REQUEST_CLASS.decode()
    timeout: Duration = DEFAULT_TIMEOUT

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in TRANSCODERS:
            raise ValueError(f"unknown transcoder {value!r} (known: {', '.join(TRANSCODERS)})")
        return value

    @field_validator("trans")
    @classmethod
    def _no_phases(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value:
            raise ValueError("trans (a phase per transcoder) is not supported: the "
                             "transcoder runs after routing, MOSN's default")
        return value


def response_parts(data: bytes) -> tuple[dict[str, str], bytes]:
    """A bolt response frame's header map and content."""
    protocol = data[0]
    layout = LAYOUTS[protocol, data[TYPE_OFFSET[protocol]] != CmdType.RESPONSE]
    fields = layout.struct.unpack_from(data)
    class_len, header_len, content_len = fields[-3:]
    start = layout.size + class_len
    headers = decode_header_map(memoryview(data)[start:start + header_len])
    content = bytes(data[start + header_len:start + header_len + content_len])
    return headers, content


class Http2Bolt(StreamFilter):
    """Stateless: one for every stream of a listener."""

    phase = Phase.AFTER_ROUTE

    def __init__(self, config: TranscoderConfig) -> None:
        self.codec = BoltCodec()
        self.serialization = (Serialization.PROTOBUF if config.serialization == "protobuf"
                              else Serialization.HESSIAN2)
        self.class_name = config.class_name.encode()
        self.timeout_ms = int(config.timeout * 1000)

    def on_request(self, stream: Any) -> FilterStatus:
        if stream.request.frame is not None:
            return FilterStatus.CONTINUE  # already an RPC call
        if stream.limit_request_body(MAX_BODY_BYTES):
            stream.send_local_reply(413, "request body too large\n")
            return FilterStatus.STOP
        if stream.request_complete:
            self.transcode(stream)
            return FilterStatus.CONTINUE
        stream.when_request_complete(self._complete)
        return FilterStatus.STOP

    def _complete(self, stream: Any) -> None:
        self.transcode(stream)
        stream.continue_request()

    def transcode(self, stream: Any) -> None:
        head = stream.request
        fields = [(k, v) for k, v in head.headers.items() if k not in HOP_BY_HOP]
        service = head.headers.get(SERVICE_HEADER)
        if service is not None and LEGACY_SERVICE_HEADER not in head.headers:
            fields.append((LEGACY_SERVICE_HEADER, service))  # SOFARPC servers find it here
        header = encode_header_map(fields)
        data = build_request(0, codec=self.serialization, timeout_ms=self.timeout_ms,
                             class_name=self.class_name, header=header,
                             content=stream.request_body())
        head.frame = self.codec.decode(bytearray(data))

    def on_response(self, stream: Any, head: Any) -> None:
        frame = head.frame
        request = stream.request
        if frame is None or request is None or frame.kind is not FrameKind.RESPONSE:
            return
        headers, content = response_parts(frame.data)
        head.frame = None
        head.status = 200 if frame.status == ResponseStatus.SUCCESS else 500
        head.headers = Headers((k.lower(), v) for k, v in headers.items()
                               if k.lower() not in HOP_BY_HOP)
        head.headers.setdefault("content-type", "application/octet-stream")
        head.headers["content-length"] = str(len(content))
        stream.transform_response_body(lambda data, end: content if end else b"")


def build(config: TranscoderConfig, context: BuildContext) -> Callable[[], StreamFilter]:
    flt = Http2Bolt(config)
    return lambda: flt

