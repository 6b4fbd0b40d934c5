"""The codec on frames captured from real Dubbo peers (data/README.md)."""

from __future__ import annotations

import pytest

from mosn.rpc.codec import FrameKind
from mosn.stream.types import MatchResult
from mosn_dubbo import DubboCodec
from dubbo_golden import EXPECTED, NAMES, OPENING_FRAMES, REQUESTS, golden

CODEC = DubboCodec()
SPLIT_EDGE = 4096
"""Large frames are split at every byte of their first and last 4 KiB (and every
997th byte between): every byte of a 256 KiB frame would take half a minute."""


def decode_one(data: bytes):
    buffer = bytearray(data)
    frame = CODEC.decode(buffer)
    assert frame is not None
    assert buffer == b""
    return frame


@pytest.mark.parametrize("name", NAMES)
def test_golden_frame_decodes_as_captured(name: str) -> None:
    expected = EXPECTED[name]
    data = golden(name)
    frame = decode_one(data)
    assert frame.kind is expected.kind
    assert frame.request_id == expected.request_id
    assert frame.data == data
    if expected.kind in (FrameKind.RESPONSE, FrameKind.HEARTBEAT_REPLY):
        assert frame.status == expected.status
    for key, value in expected.headers.items():
        assert frame.headers.get(key) == value, key


@pytest.mark.parametrize("name", [n for n in NAMES if EXPECTED[n].answers])
def test_a_response_carries_its_request_id(name: str) -> None:
    request = decode_one(golden(EXPECTED[name].answers))
    assert decode_one(golden(name)).request_id == request.request_id


def split_points(size: int) -> list[int]:
    if size <= 2 * SPLIT_EDGE:
        return list(range(1, size))
    return sorted({*range(1, SPLIT_EDGE), *range(size - SPLIT_EDGE, size),
                   *range(SPLIT_EDGE, size - SPLIT_EDGE, 997)})


@pytest.mark.parametrize("name", NAMES)
def test_a_frame_split_anywhere_decodes_the_same(name: str) -> None:
    data = golden(name)
    whole = decode_one(data)
    for cut in split_points(len(data)):
        buffer = bytearray(data[:cut])
        assert CODEC.decode(buffer) is None, cut
        assert buffer == data[:cut]
        buffer += data[cut:]
        frame = CODEC.decode(buffer)
        assert frame == whole, cut


def test_frames_back_to_back_decode_in_order() -> None:
    stream = b"".join(golden(n) for n in NAMES)
    buffer = bytearray(stream)
    frames = []
    while buffer:
        frames.append(CODEC.decode(buffer))
    assert [f.data for f in frames] == [golden(n) for n in NAMES]


@pytest.mark.parametrize("name", NAMES)
def test_set_request_id_patches_only_the_id(name: str) -> None:
    data = bytearray(golden(name))
    CODEC.set_request_id(data, 2**63 - 1)
    frame = decode_one(bytes(data))
    assert frame.request_id == 2**63 - 1
    assert data[:4] == golden(name)[:4] and data[12:] == golden(name)[12:]


@pytest.mark.parametrize("name", OPENING_FRAMES)
def test_what_a_client_opens_with_matches(name: str) -> None:
    data = golden(name)
    assert CODEC.match(data) is MatchResult.MATCH
    assert CODEC.match(data[:1]) is MatchResult.NEED_MORE


def test_heartbeat_reply_is_what_the_real_server_sends() -> None:
    assert CODEC.heartbeat_reply(decode_one(golden("heartbeat.bin"))) == golden("heartbeat_ack.bin")


@pytest.mark.parametrize("name", REQUESTS)
def test_error_reply_to_a_real_request_decodes(name: str) -> None:
    request = decode_one(golden(name))
    reply = decode_one(CODEC.error_reply(request, 60, "mosn: 404"))
    assert reply.kind is FrameKind.RESPONSE
    assert (reply.request_id, reply.status) == (request.request_id, 60)
