"""The codec over frames captured from real peers (tests/data/, see its README)."""

from __future__ import annotations

import struct
import zlib

import pytest

from mosn.rpc.codec import FrameError, FrameKind
from mosn_sofarpc import BoltCodec, BoltV2Codec, ResponseStatus
from .sofarpc_golden import EXPECTED, HEARTBEATS, NAMES, TWO_WAY_REQUESTS, golden

CODEC = BoltCodec()
NEW_ID = 0xFEDCBA98


def id_offset(data: bytes) -> int:
    return 5 if data[0] == 1 else 6


def test_every_captured_frame_is_described() -> None:
    from .sofarpc_peers import DATA

    assert sorted(p.name for p in DATA.glob("*.bin")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_decode_reads_the_fields(name: str) -> None:
    data = golden(name)
    expected = EXPECTED[name]
    buffer = bytearray(data)
    frame = CODEC.decode(buffer)
    assert frame is not None
    assert buffer == b""
    assert frame.data == data
    assert frame.kind is expected.kind
    assert frame.status == expected.status
    assert frame.timeout == expected.timeout
    assert frame.headers.get("service") == expected.service
    assert frame.headers.get("method") == expected.method
    assert frame.headers.get("class") == expected.class_name


@pytest.mark.parametrize("name", [n for n in NAMES if EXPECTED[n].answers])
def test_a_response_carries_its_requests_id(name: str) -> None:
    response = CODEC.decode(bytearray(golden(name)))
    request = CODEC.decode(bytearray(golden(EXPECTED[name].answers)))
    assert response.request_id == request.request_id


def test_header_map_keys_are_kept_as_on_the_wire() -> None:
    frame = CODEC.decode(bytearray(golden("anthunder_request_protobuf.bin")))
    assert frame.headers["sofa_head_target_service"] == "com.example.EchoService:1.0"
    assert frame.headers["sofa_head_method_name"] == "echoObj"
    assert "rpc_trace_context.sofaTraceId" in frame.headers
    response = CODEC.decode(bytearray(golden("v1_response_server_exception_protobuf.bin")))
    assert response.headers["sofa_head_response_error"] == "true"


@pytest.mark.parametrize("codec", [BoltCodec(), BoltV2Codec()], ids=["bolt", "boltv2"])
@pytest.mark.parametrize("name", ["v1_request_hessian2.bin", "v2_crc_request_hessian2.bin"])
def test_both_codecs_decode_both_versions(codec, name: str) -> None:
    assert codec.decode(bytearray(golden(name))).kind is FrameKind.REQUEST


@pytest.mark.parametrize("name", NAMES)
def test_every_split_decodes_the_same(name: str) -> None:
    data = golden(name)
    whole = CODEC.decode(bytearray(data))
    for cut in range(len(data)):
        buffer = bytearray(data[:cut])
        assert CODEC.decode(buffer) is None
        assert buffer == data[:cut]
        buffer += data[cut:]
        assert CODEC.decode(buffer) == whole
        assert buffer == b""


def test_frames_back_to_back_decode_in_order() -> None:
    stream = bytearray(b"".join(golden(n) for n in NAMES))
    kinds = []
    while stream:
        kinds.append(CODEC.decode(stream).kind)
    assert kinds == [EXPECTED[n].kind for n in NAMES]


@pytest.mark.parametrize("name", NAMES)
def test_patching_the_id_changes_only_the_id(name: str) -> None:
    data = golden(name)
    patched = bytearray(data)
    CODEC.set_request_id(patched, NEW_ID)
    frame = CODEC.decode(bytearray(patched))
    assert frame.request_id == NEW_ID
    at = id_offset(data)
    assert patched[at:at + 4] == NEW_ID.to_bytes(4, "big")
    end = len(data) - 4 if EXPECTED[name].crc else len(data)
    assert patched[:at] + patched[at + 4:end] == data[:at] + data[at + 4:end]
    CODEC.set_request_id(patched, CODEC.decode(bytearray(data)).request_id)
    assert patched == data


@pytest.mark.parametrize("name", [n for n in NAMES if EXPECTED[n].crc])
def test_patching_a_crc_frame_redoes_its_crc(name: str) -> None:
    patched = bytearray(golden(name))
    CODEC.set_request_id(patched, NEW_ID)
    assert struct.unpack(">I", patched[-4:])[0] == zlib.crc32(patched[:-4])


@pytest.mark.parametrize("name", [n for n in NAMES if EXPECTED[n].crc])
def test_a_bad_crc_is_refused(name: str) -> None:
    data = bytearray(golden(name))
    data[-1] ^= 0xFF
    with pytest.raises(FrameError) as err:
        CODEC.decode(data)
    if EXPECTED[name].kind in (FrameKind.REQUEST, FrameKind.HEARTBEAT):  # two-way
        reply = CODEC.decode(bytearray(err.value.reply))
        assert reply.kind is FrameKind.RESPONSE
        assert reply.status == ResponseStatus.CODEC_EXCEPTION
        assert reply.request_id == CODEC.decode(bytearray(golden(name))).request_id
    else:
        assert err.value.reply is None


@pytest.mark.parametrize("name", [n for n in NAMES if EXPECTED[n].version == 2
                                  and not EXPECTED[n].crc])
def test_v2_version_1_frames_have_no_crc_trailer(name: str) -> None:
    data = golden(name)
    class_at = 16 if EXPECTED[name].kind is FrameKind.RESPONSE else 18
    head = 22 if EXPECTED[name].kind is FrameKind.RESPONSE else 24
    lengths = struct.unpack_from(">HHI", data, class_at - 2)
    assert len(data) == head + sum(lengths)
    assert CODEC.decode(bytearray(data)).data == data


@pytest.mark.parametrize("name", HEARTBEATS)
def test_heartbeat_reply_is_what_the_peer_answered(name: str) -> None:
    """The reply is byte for byte the ack the real server sent (same id, codec byte,
    ver1, switch and CRC)."""
    ack = next(n for n in NAMES if EXPECTED[n].answers == name)
    heartbeat = CODEC.decode(bytearray(golden(name)))
    assert CODEC.heartbeat_reply(heartbeat) == golden(ack)


@pytest.mark.parametrize("name", TWO_WAY_REQUESTS)
@pytest.mark.parametrize("status", [ResponseStatus.NO_PROCESSOR, ResponseStatus.TIMEOUT])
def test_error_reply_answers_the_request(name: str, status: int) -> None:
    request = CODEC.decode(bytearray(golden(name)))
    reply = CODEC.error_reply(request, status, "no route")
    frame = CODEC.decode(bytearray(reply))
    assert frame.kind is FrameKind.RESPONSE
    assert frame.request_id == request.request_id
    assert frame.status == status
    assert frame.headers == {}
    data = golden(name)
    if data[0] == 1:
        assert len(reply) == 20
        assert reply[9] == data[9]  # the request's serialization
    else:
        assert reply[:2] == data[:2] and reply[10:12] == data[10:12]  # version, ver1, codec, switch
        assert len(reply) == 22 + (4 if EXPECTED[name].crc else 0)


def test_error_reply_reads_like_a_real_servers_failure() -> None:
    """anthunder's own NO_PROCESSOR answer and the codec's differ only in anthunder's
    class name; both decode to the same kind, id and status."""
    theirs = CODEC.decode(bytearray(golden("anthunder_response_no_processor.bin")))
    request = CODEC.decode(bytearray(golden("anthunder_request_protobuf.bin")))
    ours = CODEC.decode(bytearray(CODEC.error_reply(request, ResponseStatus.NO_PROCESSOR, "")))
    assert (ours.kind, ours.status) == (theirs.kind, theirs.status)
