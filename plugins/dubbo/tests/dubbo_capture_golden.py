"""Capture the golden frames under data/ from real peers talking over 127.0.0.1
through a recording relay (run it again to regenerate; data/README.md says what
produced each file).

    .venv/bin/python plugins/dubbo/tests/dubbo_capture_golden.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mosn.testing import Relay, ensure_node_modules, free_port  # noqa: E402
from dubbo_peers import (  # noqa: E402
    DATA,
    PEERS,
    SERVICE,
    UNKNOWN_SERVICE,
    call,
    ensure_python3_dubbo,
    python3_dubbo_call,
    split_frames,
    start_provider,
)

import subprocess  # noqa: E402

LARGE = 256 * 1024


def one_connection(relay: Relay) -> tuple[list[bytes], list[bytes]]:
    (recording,) = relay.take()
    return split_frames(bytes(recording.to_server)), split_frames(bytes(recording.to_client))


def requests_of(frames: list[bytes]) -> list[bytes]:
    return [f for f in frames if f[2] & 0x80 and not f[2] & 0x20]


def responses_of(frames: list[bytes]) -> list[bytes]:
    return [f for f in frames if not f[2] & 0x80 and not f[2] & 0x20]


def save(name: str, frame: bytes) -> None:
    (DATA / name).write_bytes(frame)
    print(f"{name}: {len(frame)} bytes")


def main() -> None:
    ensure_node_modules(PEERS)
    python = ensure_python3_dubbo()
    DATA.mkdir(exist_ok=True)
    provider = start_provider(free_port(), "golden")
    relay = Relay(provider.port)
    try:
        # sofa-rpc-node + dubbo-remoting: calls, exceptions, a large payload, a group.
        assert call("sofa", relay.port, "echo", "hello mosn")["ok"]
        sent, got = one_connection(relay)
        save("sofa_request_echo.bin", requests_of(sent)[0])
        save("sofa_response_echo.bin", responses_of(got)[0])

        assert call("sofa", relay.port, "echo", "hello group", group="blue")["ok"]
        sent, _ = one_connection(relay)
        save("sofa_request_group.bin", requests_of(sent)[0])

        assert not call("sofa", relay.port, "fail")["ok"]
        _, got = one_connection(relay)
        save("sofa_response_server_error.bin", responses_of(got)[0])

        assert not call("sofa", relay.port, "failObj")["ok"]
        _, got = one_connection(relay)
        save("sofa_response_exception.bin", responses_of(got)[0])

        assert not call("sofa", relay.port, "echo", "x", service=UNKNOWN_SERVICE)["ok"]
        _, got = one_connection(relay)
        save("sofa_response_not_found.bin", responses_of(got)[0])

        assert call("sofa", relay.port, "echo", {"bytes": LARGE})["ok"]
        sent, got = one_connection(relay)
        save("sofa_request_256k.bin", requests_of(sent)[0])
        save("sofa_response_256k.bin", responses_of(got)[0])

        # Heartbeat: dubbo-remoting's encoder, sofa-rpc-node's server acks.
        subprocess.run(["node", "heartbeat.js", f"127.0.0.1:{relay.port}"], cwd=PEERS,
                       check=True, capture_output=True, timeout=30)
        sent, got = one_connection(relay)
        save("heartbeat.bin", sent[0])
        save("heartbeat_ack.bin", got[0])

        # The other consumers' requests.
        for kind in ("apache", "dubbo2js"):
            assert call(kind, relay.port, "echo", "hello mosn")["ok"]
            sent, _ = one_connection(relay)
            save(f"{kind}_request_echo.bin", requests_of(sent)[0])

        assert python3_dubbo_call(python, relay.port, "echo", "hello mosn")["ok"]
        sent, _ = one_connection(relay)
        save("python3_dubbo_request_echo.bin", requests_of(sent)[0])
    finally:
        relay.close()
        provider.stop()
    print(f"service {SERVICE}: done")


if __name__ == "__main__":
    main()
