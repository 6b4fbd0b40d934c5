"""What each golden frame under tests/data/ is, from the call that produced it (see
tests/data/README.md), written down apart from the codec that the tests check."""

from __future__ import annotations

from dataclasses import dataclass

from mosn.rpc.codec import FrameKind
from .sofarpc_peers import DATA, ECHO_SERVICE

SOFA_REQUEST = "com.alipay.sofa.rpc.core.request.SofaRequest"
SOFA_RESPONSE = "com.alipay.sofa.rpc.core.response.SofaResponse"
PEER_TIMEOUT = 5.0
"""Seconds every captured client call and node heartbeat asked for (5000 ms)."""


@dataclass(frozen=True)
class Expected:
    kind: FrameKind
    version: int
    """1 or 2 (the first byte)."""
    serialization: int
    """The codec byte: 1 hessian2, 11 protobuf."""
    service: str | None = None
    method: str | None = None
    class_name: str | None = None
    status: int = 0
    timeout: float | None = None
    crc: bool = False
    answers: str | None = None
    """The golden request this response answers (same request id)."""


REQ, RESP, ONEWAY = FrameKind.REQUEST, FrameKind.RESPONSE, FrameKind.ONEWAY
HB, HB_ACK = FrameKind.HEARTBEAT, FrameKind.HEARTBEAT_REPLY
H2, PB = 1, 11

EXPECTED: dict[str, Expected] = {
    "v1_request_hessian2.bin": Expected(REQ, 1, H2, ECHO_SERVICE, None, SOFA_REQUEST,
                                        timeout=PEER_TIMEOUT),
    "v1_response_hessian2.bin": Expected(RESP, 1, H2, class_name=SOFA_RESPONSE,
                                         answers="v1_request_hessian2.bin"),
    "v1_request_protobuf.bin": Expected(REQ, 1, PB, ECHO_SERVICE, "echoObj", SOFA_REQUEST,
                                        timeout=PEER_TIMEOUT),
    "v1_response_protobuf.bin": Expected(RESP, 1, PB, class_name=SOFA_RESPONSE,
                                         answers="v1_request_protobuf.bin"),
    "v1_response_server_exception_hessian2.bin": Expected(RESP, 1, H2, class_name=SOFA_RESPONSE,
                                                          status=2),
    "v1_response_server_exception_protobuf.bin": Expected(RESP, 1, PB, class_name=SOFA_RESPONSE,
                                                          status=2),
    "v1_heartbeat.bin": Expected(HB, 1, H2, timeout=PEER_TIMEOUT),
    "v1_heartbeat_ack.bin": Expected(HB_ACK, 1, H2, answers="v1_heartbeat.bin"),
    "v1_request_oneway.bin": Expected(ONEWAY, 1, H2, ECHO_SERVICE, None, SOFA_REQUEST,
                                      timeout=PEER_TIMEOUT),
    "v2_request_hessian2.bin": Expected(REQ, 2, H2, ECHO_SERVICE, None, SOFA_REQUEST,
                                        timeout=PEER_TIMEOUT),
    "v2_response_hessian2.bin": Expected(RESP, 2, H2, class_name=SOFA_RESPONSE,
                                         answers="v2_request_hessian2.bin"),
    "v2_crc_heartbeat.bin": Expected(HB, 2, H2, timeout=PEER_TIMEOUT, crc=True),
    "v2_crc_heartbeat_ack.bin": Expected(HB_ACK, 2, H2, crc=True, answers="v2_crc_heartbeat.bin"),
    "v2_crc_request_hessian2.bin": Expected(REQ, 2, H2, ECHO_SERVICE, None, SOFA_REQUEST,
                                            timeout=PEER_TIMEOUT, crc=True),
    "v2_crc_response_hessian2.bin": Expected(RESP, 2, H2, class_name=SOFA_RESPONSE, crc=True,
                                             answers="v2_crc_request_hessian2.bin"),
    "v2_crc_request_protobuf.bin": Expected(REQ, 2, PB, ECHO_SERVICE, "echoObj", SOFA_REQUEST,
                                            timeout=PEER_TIMEOUT, crc=True),
    "v2_crc_response_protobuf.bin": Expected(RESP, 2, PB, class_name=SOFA_RESPONSE, crc=True,
                                             answers="v2_crc_request_protobuf.bin"),
    # anthunder writes both service keys, and heartbeats with the protobuf codec byte
    # and no timeout (-1)
    "anthunder_request_protobuf.bin": Expected(REQ, 1, PB, ECHO_SERVICE, "echoObj", SOFA_REQUEST,
                                               timeout=PEER_TIMEOUT),
    "anthunder_heartbeat.bin": Expected(HB, 1, PB),
    "anthunder_heartbeat_ack.bin": Expected(HB_ACK, 1, PB, answers="anthunder_heartbeat.bin"),
    "anthunder_response_protobuf.bin": Expected(RESP, 1, PB, class_name=SOFA_RESPONSE),
    "anthunder_response_no_processor.bin": Expected(RESP, 1, PB, class_name=SOFA_RESPONSE,
                                                    status=6),
}

NAMES = sorted(EXPECTED)
REQUESTS = [n for n in NAMES if EXPECTED[n].kind in (REQ, ONEWAY)]
TWO_WAY_REQUESTS = [n for n in NAMES if EXPECTED[n].kind == REQ]
HEARTBEATS = [n for n in NAMES if EXPECTED[n].kind == HB]
OPENING_FRAMES = [n for n in NAMES if EXPECTED[n].kind in (REQ, ONEWAY, HB)]
"""Frames a client can open a connection with."""


def golden(name: str) -> bytes:
    return (DATA / name).read_bytes()
