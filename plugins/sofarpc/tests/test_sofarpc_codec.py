"""The codec over frames built here: malformed ones, limits, header maps, routing keys."""

from __future__ import annotations

import struct

import pytest

from mosn.rpc.codec import FrameCodec, FrameError, FrameKind
from mosn_sofarpc import BoltCodec, BoltV2Codec, ResponseStatus
from mosn_sofarpc.frames import (
    CmdCode,
    CmdType,
    build_request,
    build_response,
    encode_header_map,
)

CODEC = BoltCodec()
I32 = struct.Struct(">i")


def header_map(*pairs: tuple[str, str]) -> bytes:
    return encode_header_map(pairs)


def decode(data: bytes):
    return CODEC.decode(bytearray(data))


def codec_exception(err: pytest.ExceptionInfo[FrameError], request_id: int) -> None:
    reply = decode(err.value.reply)
    assert reply.kind is FrameKind.RESPONSE
    assert reply.status == ResponseStatus.CODEC_EXCEPTION
    assert reply.request_id == request_id


def test_the_codecs_fit_the_contract() -> None:
    methods = [n for n, v in vars(FrameCodec).items() if callable(v) and not n.startswith("_")]
    assert "decode" in methods
    for codec, name in ((BoltCodec(), "bolt"), (BoltV2Codec(), "boltv2")):
        assert all(callable(getattr(codec, m)) for m in methods)
        assert codec.name == name
        assert codec.multiplexed is True
        assert codec.max_request_id == 0xFFFFFFFF


def test_an_empty_or_short_buffer_needs_more() -> None:
    frame = build_request(1, content=b"x")
    for cut in (0, 1, 21, len(frame) - 1):
        assert CODEC.decode(bytearray(frame[:cut])) is None


def test_decode_takes_one_frame_and_leaves_the_rest() -> None:
    first, second = build_request(1, content=b"a"), build_request(2, content=b"b")
    buffer = bytearray(first + second[:7])
    assert CODEC.decode(buffer).request_id == 1
    assert buffer == second[:7]


# -- kinds ------------------------------------------------------------------------------


@pytest.mark.parametrize("cmd_type, cmd_code, kind", [
    (CmdType.REQUEST, CmdCode.REQUEST, FrameKind.REQUEST),
    (CmdType.ONEWAY, CmdCode.REQUEST, FrameKind.ONEWAY),
    (CmdType.REQUEST, CmdCode.HEARTBEAT, FrameKind.HEARTBEAT),
    (CmdType.REQUEST, CmdCode.GOAWAY, FrameKind.GOAWAY),
])
@pytest.mark.parametrize("protocol", [1, 2])
def test_request_kinds(cmd_type: int, cmd_code: int, kind: FrameKind, protocol: int) -> None:
    frame = decode(build_request(3, protocol=protocol, cmd_type=cmd_type, cmd_code=cmd_code))
    assert (frame.kind, frame.request_id) == (kind, 3)


@pytest.mark.parametrize("cmd_code, kind", [(CmdCode.RESPONSE, FrameKind.RESPONSE),
                                            (CmdCode.HEARTBEAT, FrameKind.HEARTBEAT_REPLY)])
def test_response_kinds(cmd_code: int, kind: FrameKind) -> None:
    frame = decode(build_response(4, ResponseStatus.SERVER_THREADPOOL_BUSY, cmd_code=cmd_code))
    assert (frame.kind, frame.status) == (kind, ResponseStatus.SERVER_THREADPOOL_BUSY)


@pytest.mark.parametrize("timeout_ms, seconds", [(-1, None), (0, None), (1500, 1.5)])
def test_timeout(timeout_ms: int, seconds: float | None) -> None:
    assert decode(build_request(1, timeout_ms=timeout_ms)).timeout == seconds


# -- routing keys -----------------------------------------------------------------------


def test_service_falls_back_to_the_legacy_key() -> None:
    frame = decode(build_request(1, header=header_map(
        ("sofa_head_target_service", "a.B:1.0"), ("sofa_head_method_name", "hi"))))
    assert frame.headers["service"] == "a.B:1.0"
    assert frame.headers["method"] == "hi"


def test_an_empty_service_falls_back_too() -> None:
    frame = decode(build_request(1, header=header_map(
        ("service", ""), ("sofa_head_target_service", "a.B:1.0"))))
    assert frame.headers["service"] == "a.B:1.0"


def test_service_key_wins_over_the_legacy_one() -> None:
    frame = decode(build_request(1, header=header_map(
        ("sofa_head_target_service", "old:1.0"), ("service", "new:1.0"))))
    assert frame.headers["service"] == "new:1.0"


def test_class_name_does_not_hide_a_header_of_that_name() -> None:
    frame = decode(build_request(1, class_name=b"com.X", header=header_map(("class", "mine"))))
    assert frame.headers["class"] == "mine"


def test_no_routing_keys_when_the_frame_has_none() -> None:
    assert decode(build_request(1, content=b"body")).headers == {}


# -- header maps ------------------------------------------------------------------------


def test_a_null_value_reads_empty_and_a_null_key_is_dropped() -> None:
    raw = encode_header_map([("k", None), (None, "v"), ("z", "1")])  # type: ignore[list-item]
    assert decode(build_request(1, header=raw)).headers == {"k": "", "z": "1"}


def test_a_later_duplicate_key_wins() -> None:
    raw = header_map(("k", "1"), ("k", "2"))
    assert decode(build_request(1, header=raw)).headers == {"k": "2"}


def test_values_are_utf8() -> None:
    raw = header_map(("name", "中文"))
    assert decode(build_request(1, header=raw)).headers["name"] == "中文"


@pytest.mark.parametrize("raw", [
    b"\x00\x00",                                      # a length cut short
    I32.pack(5) + b"ab",                              # a key longer than the map
    I32.pack(1) + b"k" + I32.pack(-2),                # a negative length other than -1
    I32.pack(1) + b"k",                               # a key without a value
    I32.pack(1) + b"k" + I32.pack(0x7FFFFFFF),        # a value far past the map
], ids=["cut-length", "long-key", "negative", "no-value", "huge-value"])
def test_a_bad_header_map_is_a_codec_exception(raw: bytes) -> None:
    with pytest.raises(FrameError) as err:
        decode(build_request(77, header=raw))
    codec_exception(err, 77)


# -- malformed frames -------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"G", b"GET / HTTP/1.1\r\n", b"\x00\x01", b"\xda\xbb"])
def test_not_bolt_is_refused_without_a_reply(data: bytes) -> None:
    with pytest.raises(FrameError) as err:
        decode(data)
    assert err.value.reply is None


@pytest.mark.parametrize("data", [b"\x01\x03", b"\x02\x01\x07"])
def test_an_unknown_command_type_is_refused_without_a_reply(data: bytes) -> None:
    with pytest.raises(FrameError) as err:
        decode(data)
    assert err.value.reply is None


@pytest.mark.parametrize("protocol", [1, 2])
def test_a_request_with_a_response_code_is_a_codec_exception(protocol: int) -> None:
    with pytest.raises(FrameError) as err:
        decode(build_request(9, protocol=protocol, cmd_code=CmdCode.RESPONSE))
    codec_exception(err, 9)


def test_a_bad_oneway_request_gets_no_reply() -> None:
    with pytest.raises(FrameError) as err:
        decode(build_request(9, cmd_type=CmdType.ONEWAY, cmd_code=7))
    assert err.value.reply is None


def test_a_bad_response_gets_no_reply() -> None:
    with pytest.raises(FrameError) as err:
        decode(build_response(9, 0, cmd_code=CmdCode.GOAWAY))
    assert err.value.reply is None


def test_an_unknown_v2_version_is_a_codec_exception() -> None:
    with pytest.raises(FrameError) as err:
        decode(build_request(5, protocol=2, ver1=3))
    codec_exception(err, 5)
    assert err.value.reply[1] == 1  # answered as ver1 1, without a CRC


def test_a_frame_over_the_limit_is_refused_from_its_header() -> None:
    codec = BoltCodec(max_frame_size=1024)
    frame = build_request(12, content=b"x" * 1024)
    with pytest.raises(FrameError) as err:
        codec.decode(bytearray(frame[:22]))  # before the body arrives
    codec_exception(err, 12)
    assert codec.decode(bytearray(build_request(12, content=b"x" * (1024 - 22)))) is not None


def test_the_crc_counts_towards_the_limit() -> None:
    codec = BoltV2Codec(max_frame_size=1024)
    frame = build_request(1, protocol=2, ver1=2, switch=1, content=b"x" * (1024 - 24))
    with pytest.raises(FrameError):
        codec.decode(bytearray(frame))


def test_a_frame_error_is_a_400() -> None:
    with pytest.raises(FrameError) as err:
        decode(b"G")
    assert err.value.status == 400


# -- v2 CRC -----------------------------------------------------------------------------


def test_the_crc_bit_without_version_2_means_no_trailer() -> None:
    """sofa-bolt's default: ver1 1 with the CRC switch on, and no trailer."""
    frame = build_request(1, protocol=2, ver1=1, switch=1, content=b"abc")
    assert len(frame) == 24 + 3
    assert decode(frame).data == frame


def test_version_2_without_the_crc_bit_means_no_trailer() -> None:
    frame = build_request(1, protocol=2, ver1=2, switch=0, content=b"abc")
    assert len(frame) == 24 + 3
    assert decode(frame).data == frame


def test_the_crc_covers_the_header_too() -> None:
    frame = bytearray(build_request(1, protocol=2, ver1=2, switch=1, timeout_ms=3000))
    frame[12] ^= 0x01  # a timeout byte
    with pytest.raises(FrameError):
        CODEC.decode(frame)


def test_patching_a_frame_without_crc_leaves_its_tail() -> None:
    frame = bytearray(build_request(1, protocol=2, ver1=1, switch=1, content=b"abcd"))
    CODEC.set_request_id(frame, 2)
    assert frame.endswith(b"abcd")


# -- patching ---------------------------------------------------------------------------


@pytest.mark.parametrize("request_id", [-1, 0x1_0000_0000])
def test_an_id_out_of_range_is_refused(request_id: int) -> None:
    with pytest.raises(ValueError):
        CODEC.set_request_id(bytearray(build_request(1)), request_id)


def test_the_largest_id_fits() -> None:
    frame = bytearray(build_request(1))
    CODEC.set_request_id(frame, 0xFFFFFFFF)
    assert decode(frame).request_id == 0xFFFFFFFF


# -- replies ----------------------------------------------------------------------------


def test_an_error_reply_to_a_v1_request_has_mosns_hijack_shape() -> None:
    """MOSN's hijack: a 20-byte response, cmdcode RESPONSE, the status, nothing else."""
    request = decode(build_request(0x01020304, codec=11))
    reply = CODEC.error_reply(request, ResponseStatus.NO_PROCESSOR, "no route")
    assert reply == bytes.fromhex("01 00 0002 01 01020304 0b 0006 0000 0000 00000000")


def test_a_heartbeat_reply_keeps_the_id_and_serialization() -> None:
    heartbeat = decode(build_request(0x0A0B0C0D, cmd_code=CmdCode.HEARTBEAT, codec=11))
    assert CODEC.heartbeat_reply(heartbeat) == bytes.fromhex(
        "01 00 0000 01 0a0b0c0d 0b 0000 0000 0000 00000000")


def test_status_mapping_is_the_codecs() -> None:
    assert CODEC.error_status(404, ("NR",)) == ResponseStatus.NO_PROCESSOR
    assert CODEC.http_status(ResponseStatus.SUCCESS) == 200


# -- frames from scratch (the tools' request and response) ------------------------------


@pytest.mark.parametrize("codec, version", [(BoltCodec(), 1), (BoltV2Codec(), 2)])
def test_a_tool_request_routes_and_carries_the_body(codec, version: int) -> None:
    data = codec.request("a.B:1.0", "hi", b"\x0a\x01x")
    frame = codec.decode(bytearray(data))
    assert (data[0], frame.kind, frame.request_id, frame.timeout) == (
        version, FrameKind.REQUEST, 0, 3.0)
    assert (frame.headers["service"], frame.headers["method"]) == ("a.B:1.0", "hi")
    assert data.endswith(b"\x0a\x01x")


@pytest.mark.parametrize("codec", [BoltCodec(), BoltV2Codec()], ids=["bolt", "boltv2"])
def test_a_tool_response_answers_the_request(codec) -> None:
    request = bytearray(codec.request("a.B:1.0", "hi", b""))
    codec.set_request_id(request, 41)
    frame = codec.decode(request)
    response = codec.decode(bytearray(codec.response(frame, b"result")))
    assert (response.kind, response.request_id, response.status) == (FrameKind.RESPONSE, 41, 0)
    assert response.data.endswith(b"result")


@pytest.mark.parametrize("codec, extra", [
    (BoltCodec(), {}),
    (BoltV2Codec(), {"protocol": 0x02, "ver1": 0x02, "switch": 0x01}),  # with a CRC trailer
])
def test_with_headers_re_encodes_the_header_map(codec, extra) -> None:
    original = build_request(9, class_name=b"com.example.Req", timeout_ms=700,
                             header=header_map(("sofa_head_target_service", "a:1"),
                                               ("x", "old")),
                             content=b"the content", **extra)
    frame = codec.decode(bytearray(original))
    data = codec.with_headers(frame, {"x": "new", "traceparent": "00-ab-cd-01"})
    again = codec.decode(bytearray(data))  # a v2 CRC is checked here
    assert again.headers == {"sofa_head_target_service": "a:1", "x": "new",
                             "traceparent": "00-ab-cd-01", "service": "a:1",
                             "class": "com.example.Req"}
    assert (again.request_id, again.timeout, again.kind) == (9, 0.7, FrameKind.REQUEST)
    assert data.endswith(b"the content" + (data[-4:] if extra else b""))
    assert codec.with_headers(again, {}) == data  # the routing keys are not written back


def test_with_headers_twice_replaces_rather_than_repeats() -> None:
    frame = decode(build_request(3, header=header_map(("service", "a:1")), content=b"c"))
    once = CODEC.decode(bytearray(CODEC.with_headers(frame, {"traceparent": "one"})))
    twice = CODEC.with_headers(once, {"traceparent": "two"})
    assert twice.count(b"traceparent") == 1
    assert decode(twice).headers["traceparent"] == "two"
