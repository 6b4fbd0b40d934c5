"""The minimal codec plugin the RPC engine's tests use (tests/plugins/minirpc) passes
mosn's frame-codec conformance suite."""

from __future__ import annotations

import sys

import pytest

from conftest import ROOT
from mosn.rpc import FrameKind
from mosn.testing import CodecConformance

sys.path.insert(0, str(ROOT / "tests" / "plugins" / "minirpc"))  # the codec from its source
try:
    from mosn_minirpc.codec import MiniRpcCodec, encode
finally:
    sys.path.pop(0)


class TestMiniRpcConformance(CodecConformance):
    service = "echo"

    @pytest.fixture
    def codec(self) -> MiniRpcCodec:
        return MiniRpcCodec()

    @pytest.fixture
    def heartbeat(self) -> bytes:
        return encode(FrameKind.HEARTBEAT, 9)

    @pytest.fixture
    def golden_frames(self) -> list[bytes]:
        return [encode(FrameKind.ONEWAY, 3, "count", b"1"), encode(FrameKind.GOAWAY, 0)]
