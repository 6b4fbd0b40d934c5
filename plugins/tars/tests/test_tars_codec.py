"""The Tars codec on the frames @tars/rpc wrote (data/, captured by capture_golden.py)
and on malformed ones: pure bytes in, frames out."""

from __future__ import annotations

import pytest

from mosn.rpc.codec import FrameError, FrameKind
from mosn.stream.types import MatchResult
from mosn_tars import Ret, TarsCodec, request_packet
from mosn_tars import jce
from mosn_tars.frames import LENGTH, packet
from tars_peers import DATA, SERVANT

CODEC = TarsCodec()


def golden(name: str) -> bytes:
    return (DATA / f"{name}.bin").read_bytes()


def test_request_from_tars_rpc() -> None:
    frame = CODEC.decode(bytearray(golden("request_echo")))
    assert frame is not None and frame.kind is FrameKind.REQUEST
    assert frame.headers == {"service": SERVANT, "method": "echo"}
    assert frame.request_id >= 1
    assert frame.timeout == 5.0  # the client's setTimeout(5000), sent as iTimeout


def test_responses_from_tars_rpc() -> None:
    ok = CODEC.decode(bytearray(golden("response_echo")))
    failed = CODEC.decode(bytearray(golden("response_no_function")))
    assert ok is not None and failed is not None
    assert (ok.kind, ok.status, CODEC.http_status(ok.status)) == (FrameKind.RESPONSE, 0, 200)
    assert (failed.status, CODEC.http_status(failed.status)) == (Ret.NO_FUNCTION, 404)


def test_a_short_id_is_widened_and_the_length_corrected() -> None:
    """@tars/rpc writes small ids in one byte; a patched id takes four."""
    data = bytearray(golden("request_echo"))
    CODEC.set_request_id(data, 0x12345678)
    assert LENGTH.unpack_from(data)[0] == len(data) == len(golden("request_echo")) + 3
    frame = CODEC.decode(bytearray(data))
    assert frame is not None and frame.request_id == 0x12345678
    assert frame.headers["method"] == "echo"


def test_context_entries_are_routing_headers() -> None:
    data = request_packet(9, SERVANT, "echo", b"", context={"Tenant": "acme",
                                                              "service": "spoofed"})
    frame = CODEC.decode(bytearray(data))
    assert frame is not None
    assert frame.headers == {"service": SERVANT, "method": "echo", "tenant": "acme"}


def test_oneway() -> None:
    frame = CODEC.decode(bytearray(request_packet(3, SERVANT, "echo", b"", packet_type=1)))
    assert frame is not None and frame.kind is FrameKind.ONEWAY


def test_tup_packets_are_refused_with_a_decode_error() -> None:
    body = bytearray(request_packet(5, SERVANT, "echo", b""))
    body[5] = 3  # iVersion TUPVERSION2
    with pytest.raises(FrameError, match="TUP"):
        CODEC.decode(body)


def test_oversized_request_is_answered_decode_error() -> None:
    codec = TarsCodec(max_packet_size=64 * 1024)
    data = bytearray(request_packet(11, SERVANT, "echo", b"x" * 70000))
    with pytest.raises(FrameError) as info:
        codec.decode(data)
    assert info.value.reply is not None
    reply = codec.decode(bytearray(info.value.reply))
    assert reply is not None and reply.request_id == 11
    assert reply.status == Ret.SERVER_DECODE_ERROR


def test_garbage_after_the_head_is_answered_when_the_id_was_read() -> None:
    data = bytearray(request_packet(12, SERVANT, "echo", b""))
    data[-3] = 0xFE  # an unknown type where status's map begins
    with pytest.raises(FrameError) as info:
        CODEC.decode(data)
    assert info.value.reply is not None
    assert CODEC.decode(bytearray(info.value.reply)).request_id == 12  # type: ignore[union-attr]


def test_a_length_shorter_than_any_packet_closes() -> None:
    with pytest.raises(FrameError) as info:
        CODEC.decode(bytearray(LENGTH.pack(5) + b"\x10"))
    assert info.value.reply is None


def test_nesting_is_bounded() -> None:
    deep = jce.head(0, jce.Type.STRUCT_BEGIN) * 40
    data = bytearray(packet(b"".join((
        jce.int_field(1, 1), jce.int_field(2, 0), jce.int_field(3, 0), jce.int4_field(4, 1),
        jce.string_field(5, "s"), jce.string_field(6, "f"), jce.bytes_field(7, b""),
        jce.int_field(8, 0), jce.string_map_field(9, {}), jce.string_map_field(10, {}),
        jce.head(11, jce.Type.STRUCT_BEGIN), deep))))
    with pytest.raises(FrameError, match="nested"):
        CODEC.decode(data)


@pytest.mark.parametrize(("data", "verdict"), [
    (b"", MatchResult.NEED_MORE),
    (b"\x00\x00\x00\x3d", MatchResult.NEED_MORE),
    (b"\x00\x00\x00\x3d\x10", MatchResult.NEED_MORE),
    (b"\x00\x00\x00\x3d\x10\x01", MatchResult.MATCH),
    (b"\x00\x00\x00\x3d\x10\x03", MatchResult.NO_MATCH),   # TUP
    (b"\x00\x00\x00\x02\x10\x01", MatchResult.NO_MATCH),   # shorter than a packet
    (b"\xda\xbb\xc2\x00", MatchResult.NO_MATCH),           # Dubbo
])
def test_match(data: bytes, verdict: MatchResult) -> None:
    assert CODEC.match(data) is verdict


def test_match_tars_rpc_request() -> None:
    assert CODEC.match(golden("request_echo")[:16]) is MatchResult.MATCH
