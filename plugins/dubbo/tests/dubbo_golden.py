"""What each golden frame under data/ is, from the call that produced it (see
data/README.md), written down apart from the codec the tests check."""

from __future__ import annotations

from dataclasses import dataclass, field

from mosn.rpc.codec import FrameKind
from dubbo_peers import DATA, SERVICE, VERSION


@dataclass(frozen=True)
class Expected:
    kind: FrameKind
    request_id: int
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    """Routing headers the frame must carry (others may be there too)."""
    answers: str | None = None
    """The golden request this response answers."""


REQ, RESP = FrameKind.REQUEST, FrameKind.RESPONSE
ECHO = {"service": SERVICE, "interface": SERVICE, "version": VERSION, "method": "echo"}
SOFA_ECHO = {**ECHO, "dubbo": "5.3.0", "group": "", "path": SERVICE}
"""dubbo-remoting writes its own version (5.3.0) first and these attachments."""

EXPECTED: dict[str, Expected] = {
    "sofa_request_echo.bin": Expected(REQ, 1, headers=SOFA_ECHO),
    "sofa_response_echo.bin": Expected(RESP, 1, 20, answers="sofa_request_echo.bin"),
    "sofa_request_group.bin": Expected(REQ, 1, headers={**SOFA_ECHO, "group": "blue"}),
    "sofa_response_server_error.bin": Expected(RESP, 1, 80),
    "sofa_response_exception.bin": Expected(RESP, 1, 20),
    "sofa_response_not_found.bin": Expected(RESP, 1, 80),
    "sofa_request_256k.bin": Expected(REQ, 1, headers=SOFA_ECHO),
    "sofa_response_256k.bin": Expected(RESP, 1, 20, answers="sofa_request_256k.bin"),
    "heartbeat.bin": Expected(FrameKind.HEARTBEAT, 1),
    "heartbeat_ack.bin": Expected(FrameKind.HEARTBEAT_REPLY, 1, 20, answers="heartbeat.bin"),
    "apache_request_echo.bin": Expected(REQ, 1, headers={
        **ECHO, "dubbo": "2.0.2", "application": "dubbo-js", "path": SERVICE}),
    "dubbo2js_request_echo.bin": Expected(REQ, 1, headers={
        **ECHO, "dubbo": "2.0.2", "application": "dubbo2.js", "path": SERVICE}),
    "python3_dubbo_request_echo.bin": Expected(REQ, 0, headers={
        **ECHO, "dubbo": "2.0.2", "path": SERVICE}),
}

NAMES = sorted(EXPECTED)
REQUESTS = [n for n in NAMES if EXPECTED[n].kind is REQ]
OPENING_FRAMES = [n for n in NAMES if EXPECTED[n].kind in (REQ, FrameKind.HEARTBEAT)]


def golden(name: str) -> bytes:
    return (DATA / name).read_bytes()
