"""Arbitrary bytes never break the codec: a frame, None, or FrameError, nothing else."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mosn.rpc.codec import Frame, FrameError, FrameKind
from mosn_sofarpc import BoltCodec, ResponseStatus
from .sofarpc_golden import NAMES, golden

CODEC = BoltCodec(max_frame_size=64 * 1024)
GOLDEN = [golden(n) for n in NAMES]


def check(data: bytes) -> None:
    buffer = bytearray(data)
    while True:
        before = bytes(buffer)
        try:
            frame = CODEC.decode(buffer)
        except FrameError as e:
            assert buffer == before
            if e.reply is not None:
                reply = CODEC.decode(bytearray(e.reply))
                assert reply.kind is FrameKind.RESPONSE
                assert reply.status == ResponseStatus.CODEC_EXCEPTION
            return
        if frame is None:
            assert buffer == before
            return
        assert isinstance(frame, Frame)
        assert before == frame.data + buffer
        patched = bytearray(frame.data)
        CODEC.set_request_id(patched, 7)
        assert CODEC.decode(patched).request_id == 7


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_random_bytes(data: bytes) -> None:
    check(data)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=8), st.binary(max_size=256))
def test_random_bytes_after_a_bolt_start(start: bytes, rest: bytes) -> None:
    """Past the first byte, so the header paths are reached."""
    check(b"\x01" + start + rest)
    check(b"\x02" + start + rest)


@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(GOLDEN), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                                         max_size=6), st.integers(0, 10_000))
def test_mutated_golden_frames(frame: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(frame)
    for at, value in flips:
        data[at % len(data)] = value
    check(bytes(data[:cut % (len(data) + 1)]))
    check(bytes(data) + frame)
