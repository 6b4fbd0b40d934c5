"""Bolt v1 and v2 frames built from random fields decode back to those fields (header
maps, ids, timeouts, statuses, CRC trailers), and stay so through the codec's own
rewrites: a patched request id, added tracing headers."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mosn.rpc.codec import FrameKind
from mosn_sofarpc import BoltCodec, BoltV2Codec, CmdCode, CmdType
from mosn_sofarpc.frames import (
    CRC_SIZE,
    PROTOCOL_CODE_V1,
    PROTOCOL_CODE_V2,
    SWITCH_CRC,
    V2_VERSIONS,
    build_request,
    build_response,
    encode_header_map,
    has_crc,
)

EXAMPLES = 200
"""Hypothesis examples per test."""
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
CODECS = {PROTOCOL_CODE_V1: BoltCodec(), PROTOCOL_CODE_V2: BoltV2Codec()}
ROUTING = {"service", "method", "class"}
"""Keys the codec adds on decode (from the legacy service key, the method key and
the class name); the random maps leave them out to compare the rest as it was."""

TEXT = st.text(max_size=16)
HEADER_MAPS = st.dictionaries(TEXT.filter(lambda k: k not in ROUTING and not k.startswith("sofa_")),
                              TEXT, max_size=6)
VERSIONS = st.one_of(st.just((PROTOCOL_CODE_V1, 1, 0)),
                     st.tuples(st.just(PROTOCOL_CODE_V2), st.sampled_from(sorted(V2_VERSIONS)),
                               st.sampled_from([0, SWITCH_CRC])))


def _decoded(data: bytes):
    buffer = bytearray(data)
    frame = CODECS[data[0]].decode(buffer)
    assert frame is not None and not buffer and bytes(frame.data) == data
    return frame


@SETTINGS
@given(VERSIONS, st.integers(0, 2**32 - 1), st.sampled_from([CmdType.REQUEST, CmdType.ONEWAY]),
       st.integers(-1, 2**31 - 1), HEADER_MAPS, st.binary(max_size=24), st.binary(max_size=64))
def test_requests_decode_to_the_fields_they_were_built_from(
        version, request_id, cmd_type, timeout_ms, headers, class_name, content):
    protocol, ver1, switch = version
    data = build_request(request_id, protocol=protocol, cmd_type=cmd_type, timeout_ms=timeout_ms,
                         class_name=class_name, header=encode_header_map(headers.items()),
                         content=content, ver1=ver1, switch=switch)
    frame = _decoded(data)
    assert frame.kind is (FrameKind.REQUEST if cmd_type == CmdType.REQUEST else FrameKind.ONEWAY)
    assert frame.request_id == request_id
    assert frame.timeout == (timeout_ms / 1000 if timeout_ms > 0 else None)
    assert {k: v for k, v in frame.headers.items() if k not in ROUTING} == headers
    patched = bytearray(data)
    CODECS[protocol].set_request_id(patched, request_id ^ 0xFFFFFFFF)
    assert _decoded(bytes(patched)).request_id == request_id ^ 0xFFFFFFFF


@SETTINGS
@given(VERSIONS, st.integers(0, 2**32 - 1), st.integers(0, 0xFFFF),
       st.sampled_from([CmdCode.RESPONSE, CmdCode.HEARTBEAT]), HEADER_MAPS,
       st.binary(max_size=64))
def test_responses_decode_to_the_fields_they_were_built_from(
        version, request_id, status, cmd_code, headers, content):
    protocol, ver1, switch = version
    data = build_response(request_id, status, protocol=protocol, cmd_code=cmd_code,
                          header=encode_header_map(headers.items()), content=content,
                          ver1=ver1, switch=switch)
    frame = _decoded(data)
    assert frame.kind is (FrameKind.RESPONSE if cmd_code == CmdCode.RESPONSE
                          else FrameKind.HEARTBEAT_REPLY)
    assert (frame.request_id, frame.status) == (request_id, status)
    assert {k: v for k, v in frame.headers.items() if k not in ROUTING} == headers


@SETTINGS
@given(VERSIONS, HEADER_MAPS, HEADER_MAPS, st.binary(max_size=64))
def test_added_headers_read_back_with_the_frame_unchanged_otherwise(version, headers, updates,
                                                                   content):
    """``with_headers`` (a tracer's context going upstream): the updates win, the other
    headers and the content stay, a v2 CRC still checks."""
    protocol, ver1, switch = version
    codec = CODECS[protocol]
    data = build_request(7, protocol=protocol, timeout_ms=100,
                         header=encode_header_map(headers.items()), content=content,
                         ver1=ver1, switch=switch)
    frame = _decoded(codec.with_headers(_decoded(data), updates))
    assert {k: v for k, v in frame.headers.items() if k not in ROUTING} == {**headers, **updates}
    crc = protocol == PROTOCOL_CODE_V2 and has_crc(ver1, switch)
    assert bytes(frame.data).endswith(content + (frame.data[-CRC_SIZE:] if crc else b""))
    assert (frame.request_id, frame.timeout) == (7, 0.1)
