"""The declarative codec: protocols declared in YAML pass the conformance suite, read
and write the same bytes as the same protocols written by hand, and bad declarations
are refused with the reason."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from mosn.rpc import FrameError, FrameKind
from mosn.stream.types import MatchResult
from mosn.testing import CodecConformance
from mosn_xprotocol import DeclarativeCodec

from xprotocol_examples import (
    ACME,
    ACME_HEARTBEAT,
    ACME_REQUEST,
    ACME_RESPONSE,
    ACME_SERIALIZATION,
    DUBBO_LIKE,
    MINIRPC,
    PING_PONG,
    acme_frame,
    acme_parse,
    codec,
    codec_config,
)

MINIRPC_PLUGIN = Path(__file__).resolve().parents[3] / "tests" / "plugins" / "minirpc"


class TestMiniRpcDeclared(CodecConformance):
    service = "echo"

    @pytest.fixture
    def codec(self) -> DeclarativeCodec:
        return codec("minirpc")

    @pytest.fixture
    def heartbeat(self) -> bytes:
        return bytes.fromhex("4d52 04 00 00000009 0000 00000000")


class TestAcmeDeclared(CodecConformance):
    @pytest.fixture
    def codec(self) -> DeclarativeCodec:
        return codec("acme")

    @pytest.fixture
    def heartbeat(self) -> bytes:
        return acme_frame(ACME_HEARTBEAT, 11)

    @pytest.fixture
    def golden_frames(self) -> list[bytes]:
        return [acme_frame(ACME_REQUEST, 5, "com.acme.Orders", "list", b"{}", timeout_ms=250,
                           tenant=7),
                acme_frame(ACME_RESPONSE, 5, body=b"[]", status=404)]


class TestDubboLikeDeclared(CodecConformance):
    @pytest.fixture
    def codec(self) -> DeclarativeCodec:
        return codec("dubbo_like")

    @pytest.fixture
    def heartbeat(self) -> bytes:
        return bytes.fromhex("dabb e2 00 0000000000000007 00000002 0000")


class TestPingPongDeclared(CodecConformance):
    @pytest.fixture
    def codec(self) -> DeclarativeCodec:
        return codec("pingpong")

    def test_does_not_match_http(self, codec) -> None:
        """Without a magic the protocol is never matched (it must be named)."""
        assert codec.match(b"\x51\x00\x00\x01") is MatchResult.NO_MATCH

    def test_matches_its_own_requests(self, codec) -> None:
        assert codec.match(codec.request("s", "m", b"")) is MatchResult.NO_MATCH


# -- the same bytes as the protocol written by hand ----------------------------------------


@pytest.fixture(scope="module")
def minirpc_module():
    sys.path.insert(0, str(MINIRPC_PLUGIN))
    try:
        import mosn_minirpc.codec as module
    finally:
        sys.path.pop(0)
    return module


def test_declared_minirpc_reads_and_writes_what_minirpc_does(minirpc_module) -> None:
    declared, written = codec("minirpc"), minirpc_module.MiniRpcCodec()
    request = minirpc_module.encode(FrameKind.REQUEST, 77, "orders", b"body")
    frame = declared.decode(bytearray(request))
    assert (frame.kind, frame.request_id, dict(frame.headers)) == (
        FrameKind.REQUEST, 77, {"service": "orders"})
    assert declared.request("orders", "", b"body") == written.request("orders", "", b"body")
    theirs = written.decode(bytearray(request))
    assert declared.response(frame, b"ok") == written.response(theirs, b"ok")
    reply = written.decode(bytearray(declared.error_reply(frame, 1, "no route")))
    assert (reply.kind, reply.request_id, reply.status) == (FrameKind.RESPONSE, 77, 1)
    assert declared.error_status(404, ()) == written.error_status(404, ())


def test_acme_fields() -> None:
    acme = codec("acme")
    data = acme_frame(ACME_REQUEST, 2**40 + 3, "com.acme.Orders", "list", b"{}",
                      timeout_ms=1500, tenant=7)
    frame = acme.decode(bytearray(data))
    assert frame.kind is FrameKind.REQUEST
    assert frame.request_id == 2**40 + 3
    assert frame.timeout == 1.5
    assert dict(frame.headers) == {"tenant": "7", "service": "com.acme.Orders", "method": "list"}
    assert acme.max_request_id == 2**64 - 1


def test_acme_replies_keep_the_bits_outside_the_kind_mask() -> None:
    acme = codec("acme")
    frame = acme.decode(bytearray(acme_frame(ACME_REQUEST, 9, "s", "m", b"x", tenant=3)))
    reply, _ = acme_parse(acme.error_reply(frame, acme.error_status(503, ("UO",)), "busy"))
    assert reply["kind"] == ACME_RESPONSE and reply["serialization"] == ACME_SERIALIZATION
    assert (reply["request_id"], reply["status"], reply["tenant"]) == (9, 429, 3)
    assert (reply["service"], reply["method"], reply["body"]) == ("s", "m", b"")
    assert acme.http_status(429) == 503 and acme.http_status(777) == 500
    assert acme.error_status(503, ("OM",)) == 429  # shed by the overload manager: busy


def test_an_oversized_request_is_answered_bad_frame() -> None:
    acme = DeclarativeCodec(codec_config(ACME, max_frame_size=1024))
    data = bytearray(acme_frame(ACME_REQUEST, 5, "s", "m", b"x" * 2000))
    with pytest.raises(FrameError) as refused:
        acme.decode(data)
    reply, _ = acme_parse(refused.value.reply)
    assert (reply["kind"], reply["request_id"], reply["status"]) == (ACME_RESPONSE, 5, 400)


def test_a_string_past_the_end_of_the_frame_is_refused() -> None:
    acme = codec("acme")
    data = bytearray(acme_frame(ACME_REQUEST, 5, "service", "m"))
    data[24] = 200  # the service's length
    with pytest.raises(FrameError, match="runs past the end"):
        acme.decode(data)


def test_the_dubbo_like_heartbeat_is_answered_with_the_event_bit() -> None:
    dubbo = codec("dubbo_like")
    heartbeat = dubbo.decode(bytearray.fromhex("dabb e2 00 0000000000000007 00000002 0000"))
    assert heartbeat.kind is FrameKind.HEARTBEAT
    reply = dubbo.heartbeat_reply(heartbeat)
    assert reply[2] == 0x22 and reply[3] == 20  # serialization 2 kept; status OK
    assert dubbo.decode(bytearray(reply)).kind is FrameKind.HEARTBEAT_REPLY


# -- declarations refused -------------------------------------------------------------------


@pytest.mark.parametrize("change, message", [
    ({"header_size": 10}, "is outside the 10-byte header"),
    ({"request_id": {"offset": 2, "size": 4}}, "request_id and kind overlap"),
    ({"kind": {"offset": 2, "request": 1, "response": 1}}, "already means request"),
    ({"kind": {"offset": 2, "mask": 3, "request": 1, "response": 4}}, "does not fit"),
    ({"magic": {"hex": "zz"}}, "is not hex bytes"),
    ({"magic": {"hex": "4d", "text": "M"}}, "set one of hex or text"),
    ({"routing": {"Service": {"offset": 14, "length_prefix": 1}}}, "lower case"),
    ({"routing": {"method": {"after": "service", "length_prefix": 1}}}, "is not a routing string"),
    ({"routing": {"a": {"after": "b", "length_prefix": 1}, "b": {"after": "a", "length_prefix": 1},
                  "service": {"offset": 14, "length_field": {"offset": 8, "size": 2}}}},
     "go round in a circle"),
    ({"routing": {"service": {"offset": 3, "length_prefix": 1}}}, "a string starts after the header"),
    ({"routing": {"service": {"offset": 14}}}, "a fixed field needs offset and size"),
    ({"routing": {"service": {"offset": 14, "length_prefix": 1, "encoding": "klingon"}}},
     "unknown encoding"),
    ({"length": {"fields": [{"offset": 8, "size": 2}, {"offset": 10, "size": 4}],
                 "counts": "after_field"}}, "exactly one length field"),
    ({"routing": {}}, "at most one length field"),
    ({"status": {"offset": 3, "size": 1, "error": 0}}, "error and success must differ"),
    ({"status": {"offset": 3, "size": 1, "error": 1, "timeout": 300}}, "does not fit"),
    ({"request_id": {"offset": 4, "size": 3}}, "request_id.size"),
    ({"max_frame_size": 8}, "smaller than header_size"),
    ({"lenght": {"offset": 10, "size": 4}}, "lenght"),
])
def test_bad_declarations_are_refused(change: dict, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        codec_config(MINIRPC, **change)
    assert message in str(refused.value)


def test_ping_pong_and_after_field_lengths() -> None:
    pingpong = codec("pingpong")
    assert pingpong.multiplexed is False and pingpong.max_request_id == 0xFFFF
    data = pingpong.request("svc", "", b"abc")
    assert data[4:8] == (len(data) - 8).to_bytes(4, "big")
    assert dict(pingpong.decode(bytearray(data)).headers) == {"service": "svc"}


def test_the_order_of_the_routing_keys_in_the_config_does_not_matter() -> None:
    data = yaml.safe_load(ACME)
    data["routing"] = dict(reversed(list(data["routing"].items())))
    shuffled = DeclarativeCodec(codec_config(ACME, routing=data["routing"]))
    frame = acme_frame(ACME_REQUEST, 1, "svc", "get", b"x", tenant=2)
    assert dict(shuffled.decode(bytearray(frame)).headers) == dict(
        codec("acme").decode(bytearray(frame)).headers)
    assert shuffled.request("svc", "get", b"x") == codec("acme").request("svc", "get", b"x")


def test_examples_parse() -> None:
    for text in (MINIRPC, ACME, DUBBO_LIKE, PING_PONG):
        codec_config(text)
