"""The Dubbo-Thrift codec on golden frames written from the wire format, the kit's
conformance suite, and malformed frames: pure bytes in, frames out."""

from __future__ import annotations

import struct

import pytest

from mosn.rpc.codec import FrameError, FrameKind
from mosn.stream.types import MatchResult
from mosn.testing import CodecConformance
from mosn_dubbothrift import ApplicationError, DubboThriftCodec
from dubbothrift_golden import ALL, CALL, EXCEPTION, METHOD, ONEWAY, REPLY, REQUEST_ID, SERVICE

CODEC = DubboThriftCodec()


class TestDubboThriftConformance(CodecConformance):
    service = SERVICE

    @pytest.fixture
    def codec(self) -> DubboThriftCodec:
        return DubboThriftCodec()

    @pytest.fixture
    def golden_frames(self) -> list[bytes]:
        return list(ALL.values())


def decode(data: bytes):  # type: ignore[no-untyped-def]
    buffer = bytearray(data)
    frame = CODEC.decode(buffer)
    assert frame is not None and not buffer
    return frame


def test_call() -> None:
    frame = decode(CALL)
    assert (frame.kind, frame.request_id) == (FrameKind.REQUEST, REQUEST_ID)
    assert frame.headers == {"service": SERVICE, "method": METHOD}


def test_oneway() -> None:
    assert decode(ONEWAY).kind is FrameKind.ONEWAY


def test_reply_is_success() -> None:
    frame = decode(REPLY)
    assert frame.kind is FrameKind.RESPONSE and CODEC.http_status(frame.status) == 200


def test_exception_carries_its_type() -> None:
    frame = decode(EXCEPTION)
    assert frame.status == 100 + ApplicationError.INTERNAL_ERROR
    assert CODEC.http_status(frame.status) == 500


def test_request_id_patched_at_the_end_of_the_header() -> None:
    data = bytearray(CALL)
    CODEC.set_request_id(data, 0x0102030405060708)
    assert data[4 + 43 - 8:4 + 43] == bytes.fromhex("0102030405060708")
    assert data[:4 + 43 - 8] == CALL[:4 + 43 - 8] and data[4 + 43:] == CALL[4 + 43:]


def test_no_route_reply_as_mosn_writes_it() -> None:
    reply = CODEC.error_reply(decode(CALL), CODEC.error_status(404, ()), "mosn: no route")
    frame = decode(reply)
    assert frame.request_id == REQUEST_ID
    assert frame.status == 100 + ApplicationError.UNKNOWN_METHOD
    assert CODEC.http_status(frame.status) == 404
    # EXCEPTION echo, seqid 1, then the message "404|mosn: no route"
    assert bytes.fromhex("80010003") + struct.pack(">i", 4) + b"echo" + struct.pack(">i", 1) in reply
    assert b"404|mosn: no route" in reply


def test_bad_magic_closes() -> None:
    data = bytearray(CALL)
    data[5] = 0xbb
    with pytest.raises(FrameError) as info:
        CODEC.decode(data)
    assert info.value.reply is None


def test_message_size_must_agree_with_the_frame_size() -> None:
    data = bytearray(CALL)
    data[9] += 1
    with pytest.raises(FrameError, match="message size"):
        CODEC.decode(data)


def test_unknown_message_type_closes() -> None:
    data = bytearray(CALL)
    data[4 + 43 + 3] = 9  # message type 9
    with pytest.raises(FrameError) as info:
        CODEC.decode(data)
    assert info.value.reply is None  # the message's beginning could not be read


def test_oversized_call_is_answered_protocol_error() -> None:
    codec = DubboThriftCodec(max_frame_size=64 * 1024)
    big = bytearray(CALL)
    struct.pack_into(">I", big, 0, 70000)
    with pytest.raises(FrameError) as info:
        codec.decode(big)
    assert info.value.reply is not None
    reply = decode(info.value.reply)
    assert (reply.request_id, reply.status) == (REQUEST_ID, 100 + ApplicationError.PROTOCOL_ERROR)


@pytest.mark.parametrize(("data", "verdict"), [
    (CALL[:4], MatchResult.NEED_MORE),
    (CALL[:5], MatchResult.NEED_MORE),
    (CALL[:6], MatchResult.MATCH),
    (b"\x00\x00\x00\x45\xda\xbb", MatchResult.NO_MATCH),
    (b"\x00\x00\x00\x01\xda\xbc", MatchResult.NO_MATCH),
    (b"\xda\xbb\xc2\x00\x00\x00", MatchResult.NO_MATCH),
])
def test_match(data: bytes, verdict: MatchResult) -> None:
    assert CODEC.match(data) is verdict
