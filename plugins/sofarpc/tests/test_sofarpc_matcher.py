"""The first-bytes matchers, over captured frames and other protocols' openings."""

from __future__ import annotations

import pytest

from mosn.stream.types import MatchResult
from mosn_sofarpc import BoltCodec, BoltV2Codec, match_v1, match_v2
from .sofarpc_golden import EXPECTED, NAMES, OPENING_FRAMES, golden

MATCHERS = {1: match_v1, 2: match_v2}
OTHER_PROTOCOLS = [
    b"GET / HTTP/1.1\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    bytes.fromhex("dabbc2000000000000000001"),  # dubbo
    b"\x16\x03\x01\x02\x00",                     # a TLS client hello
]


@pytest.mark.parametrize("name", OPENING_FRAMES)
def test_a_client_opening_matches_its_version_only(name: str) -> None:
    data = golden(name)
    version = EXPECTED[name].version
    assert MATCHERS[version](data) is MatchResult.MATCH
    assert MATCHERS[3 - version](data) is MatchResult.NO_MATCH


@pytest.mark.parametrize("name", OPENING_FRAMES)
def test_a_cut_opening_needs_more(name: str) -> None:
    data = golden(name)
    matcher = MATCHERS[EXPECTED[name].version]
    cut = 4 if EXPECTED[name].version == 1 else 5
    for n in range(cut):
        assert matcher(data[:n]) is MatchResult.NEED_MORE


@pytest.mark.parametrize("name", [n for n in NAMES if n not in OPENING_FRAMES])
def test_a_response_is_no_opening(name: str) -> None:
    assert MATCHERS[EXPECTED[name].version](golden(name)) is MatchResult.NO_MATCH


@pytest.mark.parametrize("data", OTHER_PROTOCOLS)
def test_other_protocols_do_not_match(data: bytes) -> None:
    for n in range(1, len(data) + 1):
        assert match_v1(data[:n]) is MatchResult.NO_MATCH
        assert match_v2(data[:n]) is MatchResult.NO_MATCH


@pytest.mark.parametrize("data", [
    b"\x01\x00", b"\x01\x03", b"\x01\x01\x00\x02", b"\x01\x01\x00\x64", b"\x01\x01\x01",
    b"\x02\x03", b"\x02\x01\x00", b"\x02\x02\x01\x00\x02",
])
def test_a_first_byte_alone_is_not_enough(data: bytes) -> None:
    assert match_v1(data) is MatchResult.NO_MATCH
    assert match_v2(data) is MatchResult.NO_MATCH


def test_the_codecs_match_with_their_own_matcher() -> None:
    v1, v2 = golden("v1_request_hessian2.bin"), golden("v2_crc_request_hessian2.bin")
    assert (BoltCodec().match(v1), BoltCodec().match(v2)) == (MatchResult.MATCH,
                                                             MatchResult.NO_MATCH)
    assert (BoltV2Codec().match(v2), BoltV2Codec().match(v1)) == (MatchResult.MATCH,
                                                                 MatchResult.NO_MATCH)
