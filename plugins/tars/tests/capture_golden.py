"""Capture the golden frames in data/ from the real peers: @tars/rpc's client calling
its server through a recording relay. Run from the repository root:

    .venv/bin/python plugins/tars/tests/capture_golden.py

Each file is the bytes one side sent on one connection (the client's echo call and
the server's answer; a call of a function the server lacks and its ``iRet`` -3).
"""

from __future__ import annotations

from mosn.testing import ensure_node_modules, free_port
from mosn.testing.peers import Relay
from tars_peers import DATA, PEERS, call, start_server

CALLS = {"echo": "echo", "no_function": "fail"}


def main() -> None:
    ensure_node_modules(PEERS)
    server = start_server(free_port())
    relay = Relay(server.port)
    try:
        for name, function in CALLS.items():
            results = call(relay.port, function=function)
            print(name, results)
            [recording] = relay.take()
            (DATA / f"request_{name}.bin").write_bytes(bytes(recording.to_server))
            (DATA / f"response_{name}.bin").write_bytes(bytes(recording.to_client))
    finally:
        relay.close()
        server.stop()


if __name__ == "__main__":
    main()
