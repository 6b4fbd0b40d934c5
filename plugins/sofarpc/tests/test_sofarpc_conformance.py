"""bolt and boltv2 pass mosn's frame-codec conformance suite (mosn.testing), with the
golden frames captured from sofa-rpc-node and anthunder as extra frames and fuzz seeds."""

from __future__ import annotations

import pytest

from mosn.testing import CodecConformance
from mosn_sofarpc import BoltCodec, BoltV2Codec
from mosn_sofarpc.frames import PROTOCOL_CODE_V2, CmdCode, build_request
from .sofarpc_golden import EXPECTED, HEARTBEATS, NAMES, golden

HEARTBEAT_ID = 7


class TestBoltConformance(CodecConformance):
    @pytest.fixture
    def codec(self) -> BoltCodec:
        return BoltCodec()

    @pytest.fixture
    def heartbeat(self) -> bytes:
        return golden(next(n for n in HEARTBEATS if EXPECTED[n].version == 1))

    @pytest.fixture
    def golden_frames(self) -> list[bytes]:
        return [golden(n) for n in NAMES if EXPECTED[n].version == 1]


class TestBoltV2Conformance(CodecConformance):
    @pytest.fixture
    def codec(self) -> BoltV2Codec:
        return BoltV2Codec()

    @pytest.fixture
    def heartbeat(self) -> bytes:
        """A v2 heartbeat without the CRC trailer (the golden one has it)."""
        return build_request(HEARTBEAT_ID, protocol=PROTOCOL_CODE_V2, cmd_code=CmdCode.HEARTBEAT)

    @pytest.fixture
    def golden_frames(self) -> list[bytes]:
        return [golden(n) for n in NAMES if EXPECTED[n].version == 2]
