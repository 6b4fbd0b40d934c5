"""The codec on frames made here: errors, events, options, replies, the tools' frames."""

from __future__ import annotations

import pytest

from mosn.rpc.codec import FrameError, FrameKind
from mosn_dubbo import DubboCodec, Status
from mosn_dubbo.frames import (
    FLAG_EVENT,
    FLAG_REQUEST,
    FLAG_TWO_WAY,
    HEADER_SIZE,
    READONLY_EVENT,
    argument_count,
    build_frame,
    request_body,
)
from mosn_dubbo.hessian2 import NULL, Reader, encode_binary, encode_int, encode_string

CODEC = DubboCodec()
TWO_WAY = FLAG_REQUEST | FLAG_TWO_WAY | 2


def request(request_id: int = 7, *, flag: int = TWO_WAY, args: list[bytes] | None = None,
            descriptor: str = "Ljava/lang/String;", attachments: dict[str, str] | None = None,
            version: str = "1.0.0") -> bytes:
    body = request_body("2.0.2", "com.example.EchoService", version, "echo", descriptor,
                        [encode_string("hi")] if args is None else args,
                        {"group": "blue", "timeout": "3000"} if attachments is None else attachments)
    return build_frame(flag, 0, request_id, body)


def decode(data: bytes, codec: DubboCodec = CODEC):
    buffer = bytearray(data)
    frame = codec.decode(buffer)
    assert frame is not None and buffer == b""
    return frame


def reply_message(reply: bytes) -> str:
    return Reader(reply, HEADER_SIZE).read_string()


def test_routing_headers_of_a_request() -> None:
    frame = decode(request())
    assert frame.kind is FrameKind.REQUEST
    assert dict(frame.headers) == {
        "dubbo": "2.0.2", "service": "com.example.EchoService", "version": "1.0.0",
        "method": "echo", "group": "blue", "timeout": "3000",
        "interface": "com.example.EchoService"}


def test_the_timeout_attachment_is_the_callers_timeout() -> None:
    assert decode(request()).timeout == 3.0
    assert decode(request(attachments={"timeout": "x"})).timeout is None


def test_attachments_do_not_replace_the_body_head() -> None:
    frame = decode(request(attachments={"service": "other", "method": "other", "interface": "I"}))
    assert (frame.headers["service"], frame.headers["method"]) == ("com.example.EchoService", "echo")
    assert frame.headers["interface"] == "I"


def test_an_empty_service_version_takes_the_version_attachment() -> None:
    assert decode(request(version="", attachments={"version": "2.0"})).headers["version"] == "2.0"


def test_arguments_of_every_kind_are_stepped_over() -> None:
    args = [encode_int(5), encode_binary(b"\x00" * 70000), b"X\x92" + encode_string("a") + NULL,
            encode_string("é" * 40000), b"D" + bytes(8)]
    frame = decode(request(args=args, descriptor="I[B[Ljava/lang/Object;Ljava/lang/String;D"))
    assert frame.headers["group"] == "blue"


def test_attachments_off_reads_only_the_head() -> None:
    codec = DubboCodec(attachments=False)
    frame = decode(request(args=[b"\xff\xff"], descriptor="Lbroken;I"), codec)
    assert "group" not in frame.headers
    assert frame.headers["method"] == "echo"


def test_oneway_request() -> None:
    assert decode(request(flag=FLAG_REQUEST | 2)).kind is FrameKind.ONEWAY


def test_heartbeat_and_its_reply() -> None:
    heartbeat = build_frame(FLAG_REQUEST | FLAG_TWO_WAY | FLAG_EVENT | 2, 0, 9, NULL)
    frame = decode(heartbeat)
    assert frame.kind is FrameKind.HEARTBEAT
    reply = decode(CODEC.heartbeat_reply(frame))
    assert (reply.kind, reply.request_id, reply.status) == (FrameKind.HEARTBEAT_REPLY, 9, 20)


def test_a_readonly_event_is_a_goaway() -> None:
    event = build_frame(FLAG_REQUEST | FLAG_EVENT | 2, 0, 3, READONLY_EVENT)
    assert decode(event).kind is FrameKind.GOAWAY


def test_another_oneway_event_wants_no_answer() -> None:
    event = build_frame(FLAG_REQUEST | FLAG_EVENT | 2, 0, 3, encode_string("x"))
    assert decode(event).kind is FrameKind.HEARTBEAT_REPLY


def test_bad_magic_closes_without_a_reply() -> None:
    with pytest.raises(FrameError) as e:
        CODEC.decode(bytearray(b"\xda\xbc"))
    assert e.value.reply is None
    with pytest.raises(FrameError):
        CODEC.decode(bytearray(b"GET / HTTP/1.1\r\n\r\n"))


def test_an_unsupported_serialization_is_answered_bad_request() -> None:
    with pytest.raises(FrameError) as e:
        CODEC.decode(bytearray(build_frame(FLAG_REQUEST | FLAG_TWO_WAY | 6, 0, 11, b"{}")))
    reply = decode(e.value.reply)
    assert (reply.request_id, reply.status) == (11, Status.BAD_REQUEST)
    assert "serialization id 6" in reply_message(e.value.reply)


def test_a_body_over_the_limit_is_answered_before_it_arrives() -> None:
    codec = DubboCodec(max_body_size=64 * 1024)
    header = build_frame(TWO_WAY, 0, 12, b"")[:12] + (64 * 1024 + 1).to_bytes(4, "big")
    with pytest.raises(FrameError) as e:
        codec.decode(bytearray(header))
    assert decode(e.value.reply).status == Status.BAD_REQUEST
    assert "over the limit" in reply_message(e.value.reply)


def test_a_malformed_body_is_answered_bad_request() -> None:
    frame = build_frame(TWO_WAY, 0, 13, encode_string("2.0.2") + b"\x40")
    with pytest.raises(FrameError) as e:
        CODEC.decode(bytearray(frame))
    assert decode(e.value.reply).status == Status.BAD_REQUEST


def test_a_malformed_oneway_body_just_closes() -> None:
    with pytest.raises(FrameError) as e:
        CODEC.decode(bytearray(build_frame(FLAG_REQUEST | 2, 0, 13, b"\x40")))
    assert e.value.reply is None


def test_responses_are_not_read() -> None:
    frame = decode(build_frame(2, Status.SERVICE_ERROR, 5, b"\x40garbage"))
    assert (frame.kind, frame.status, dict(frame.headers)) == (FrameKind.RESPONSE, 70, {})


def test_error_reply_says_why_in_hessian2() -> None:
    frame = decode(request())
    reply = CODEC.error_reply(frame, Status.SERVICE_NOT_FOUND, "mosn: 404")
    decoded = decode(reply)
    assert (decoded.status, decoded.request_id) == (60, 7)
    assert reply_message(reply) == ("mosn: 404: service not found "
                                    "(blue/com.example.EchoService:1.0.0 echo)")


def test_set_request_id_range() -> None:
    data = bytearray(request())
    CODEC.set_request_id(data, CODEC.max_request_id)
    assert decode(bytes(data)).request_id == 2**63 - 1
    with pytest.raises(ValueError):
        CODEC.set_request_id(data, 2**63)


def test_tool_request_and_response() -> None:
    frame = decode(CODEC.request("g/com.example.EchoService:1.0", "echo", b"x" * 100))
    assert frame.request_id == 0
    assert {k: frame.headers[k] for k in ("service", "version", "method", "group")} == {
        "service": "com.example.EchoService", "version": "1.0", "method": "echo", "group": "g"}
    response = decode(CODEC.response(frame, b"\xff\xfe"))
    assert (response.kind, response.status) == (FrameKind.RESPONSE, Status.OK)
    reader = Reader(response.data, HEADER_SIZE)
    assert reader.read_int() == 1  # RESPONSE_VALUE
    reader.skip()
    assert reader.pos == len(response.data)


@pytest.mark.parametrize("descriptor, count", [
    ("", 0), ("I", 1), ("Ljava/lang/String;", 1), ("[B", 1), ("[[Ljava/lang/Object;JZ", 3),
    ("Ljava/util/Map;Ljava/lang/String;[I", 3)])
def test_argument_count(descriptor: str, count: int) -> None:
    assert argument_count(descriptor) == count


@pytest.mark.parametrize("descriptor", ["Ljava/lang/String", "Q"])
def test_argument_count_refuses_a_bad_descriptor(descriptor: str) -> None:
    with pytest.raises(ValueError):
        argument_count(descriptor)
