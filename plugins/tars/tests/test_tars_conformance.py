"""tars passes mosn's frame-codec conformance suite (mosn.testing), with the frames
captured from @tars/rpc as extra frames and fuzz seeds."""

from __future__ import annotations

import pytest

from mosn.testing import CodecConformance
from mosn_tars import TarsCodec
from tars_peers import DATA


class TestTarsConformance(CodecConformance):
    service = "Test.EchoServer.EchoObj"

    @pytest.fixture
    def codec(self) -> TarsCodec:
        return TarsCodec()

    @pytest.fixture
    def golden_frames(self) -> list[bytes]:
        return [path.read_bytes() for path in sorted(DATA.glob("*.bin"))]
