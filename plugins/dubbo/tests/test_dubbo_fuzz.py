"""Any bytes give a frame, None (need more) or a FrameError; nothing else escapes."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st

from mosn.rpc.codec import Frame, FrameError
from mosn_dubbo import DubboCodec
from mosn_dubbo.frames import FLAG_REQUEST, FLAG_TWO_WAY, HEADER
from dubbo_golden import NAMES, golden

CODEC = DubboCodec(max_body_size=64 * 1024)
SMALL_GOLDEN = [golden(n) for n in NAMES if len(golden(n)) < 4096]


def decode_all(data: bytes) -> None:
    buffer = bytearray(data)
    while buffer:
        before = len(buffer)
        try:
            frame = CODEC.decode(buffer)
        except FrameError as e:
            if e.reply is not None:
                reply = CODEC.decode(bytearray(e.reply))
                assert reply is not None and reply.status == 40
            return
        if frame is None:
            assert len(buffer) == before
            return
        assert isinstance(frame, Frame)
        assert len(buffer) < before


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_random_bytes(data: bytes) -> None:
    decode_all(data)


@settings(max_examples=500)
@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=300))
def test_random_bodies_behind_a_valid_header(flag: int, status: int, body: bytes) -> None:
    decode_all(HEADER.pack(b"\xda\xbb", flag, status, 1, len(body)) + body)


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_random_request_bodies(body: bytes) -> None:
    decode_all(HEADER.pack(b"\xda\xbb", FLAG_REQUEST | FLAG_TWO_WAY | 2, 0, 1, len(body)) + body)


@settings(max_examples=500)
@given(st.sampled_from(SMALL_GOLDEN), st.data())
def test_mutated_golden_frames(frame: bytes, data: st.DataObject) -> None:
    mutated = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 4))):
        mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    decode_all(bytes(mutated[:cut]))
    decode_all(bytes(mutated))
