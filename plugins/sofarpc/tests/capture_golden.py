"""Captures the golden bolt frames under tests/data/ from real peers talking to each
other through a recording relay on 127.0.0.1, and writes tests/data/README.md.

    .venv/bin/python plugins/sofarpc/tests/capture_golden.py

Installs the peers first if needed (npm ci in tests/peers/, the anthunder venv). Frames
carry request ids and trace ids of the run, so a new capture differs in those bytes;
the tests read the fields that do not change.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

from mosn.testing import (
    Recording,
    Relay,
    ensure_node_modules,
    free_port,
    node_package_version,
    node_version,
)
from sofarpc_peers import (
    DATA,
    ECHO_SERVICE,
    PEERS,
    UNKNOWN_SERVICE,
    anthunder,
    bolt_steps,
    ensure_anthunder,
    hessian_string,
    rpc_call,
    split_frames,
    start_anthunder_server,
    start_node_server,
)


@dataclass
class Golden:
    name: str
    producer: str
    call: str


class Capture:
    def __init__(self) -> None:
        self.saved: list[Golden] = []

    def run(self, relay: Relay, action: Callable[[], object], check: Callable[[object], bool],
            what: str) -> Recording:
        result = action()
        if not check(result):
            raise RuntimeError(f"{what}: unexpected result {result!r}")
        (recording,) = relay.take()
        return recording

    def save(self, name: str, frame: bytes, producer: str, call: str) -> None:
        (DATA / name).write_bytes(frame)
        self.saved.append(Golden(name, producer, call))
        print(f"{name:48} {len(frame):5} bytes  {producer}")


def ok(result: object) -> bool:
    return isinstance(result, dict) and result.get("ok") is True


def failed(result: object) -> bool:
    return isinstance(result, dict) and result.get("ok") is False


def all_ok(results: object) -> bool:
    return isinstance(results, list) and all(r.get("ok") for r in results)


def main() -> int:
    ensure_node_modules(PEERS)
    python = ensure_anthunder()
    DATA.mkdir(exist_ok=True)
    rpc_node = f"sofa-rpc-node {node_package_version(PEERS, 'sofa-rpc-node')}"
    bolt_node = f"sofa-bolt-node {node_package_version(PEERS, 'sofa-bolt-node')}"
    anthunder_version = next(line.split("==")[1] for line in
                             (Path(__file__).parent / "peers" / "requirements-anthunder.txt")
                             .read_text().splitlines() if line.startswith("anthunder=="))
    anth = f"anthunder {anthunder_version}"
    node_server = f"{rpc_node} RpcServer"
    cap = Capture()
    hello = [hessian_string("hello mosn")]
    echo = {"call": "request", "method": "echo", "args": hello}
    echo_pb = {"call": "request", "codec": "protobuf", "method": "echoObj",
               "args": [{"name": "mosn", "group": "B"}]}

    server = start_node_server(free_port())
    relay = Relay(server.port)
    try:
        rec = cap.run(relay, lambda: rpc_call(relay.port, "hessian2", "echo", hello),
                      ok, "hessian2 echo")
        call = f'{ECHO_SERVICE} echo("hello mosn"), hessian2'
        cap.save("v1_request_hessian2.bin", split_frames(rec.to_server)[0],
                 f"{rpc_node} RpcClient", call)
        cap.save("v1_response_hessian2.bin", split_frames(rec.to_client)[0], node_server,
                 f"the answer to {call}")

        rec = cap.run(relay, lambda: rpc_call(relay.port, "protobuf", "echoObj",
                                              [{"name": "mosn", "group": "B"}]),
                      ok, "protobuf echoObj")
        call = f'{ECHO_SERVICE} echoObj({{name: "mosn", group: B}}), protobuf'
        cap.save("v1_request_protobuf.bin", split_frames(rec.to_server)[0],
                 f"{rpc_node} RpcClient", call)
        cap.save("v1_response_protobuf.bin", split_frames(rec.to_client)[0], node_server,
                 f"the answer to {call}")

        rec = cap.run(relay, lambda: rpc_call(relay.port, "hessian2", "fail", []),
                      failed, "hessian2 fail")
        cap.save("v1_response_server_exception_hessian2.bin", split_frames(rec.to_client)[0],
                 node_server, f"the answer to {ECHO_SERVICE} fail(), hessian2: the method throws")

        rec = cap.run(relay, lambda: rpc_call(relay.port, "protobuf", "fail", [{"name": "x"}]),
                      failed, "protobuf fail")
        cap.save("v1_response_server_exception_protobuf.bin", split_frames(rec.to_client)[0],
                 node_server, f"the answer to {ECHO_SERVICE} fail(), protobuf: the method throws")

        rec = cap.run(relay, lambda: bolt_steps(relay.port, [{"call": "heartbeat"}]),
                      all_ok, "v1 heartbeat")
        cap.save("v1_heartbeat.bin", split_frames(rec.to_server)[0], bolt_node,
                 "encoder.writeHeartbeat, bolt v1")
        cap.save("v1_heartbeat_ack.bin", split_frames(rec.to_client)[0], node_server,
                 "the ack of the v1 heartbeat")

        rec = cap.run(relay, lambda: bolt_steps(relay.port, [{**echo, "call": "oneway"}]),
                      all_ok, "v1 oneway")
        cap.save("v1_request_oneway.bin", split_frames(rec.to_server)[0], bolt_node,
                 f'encoder.writeRequest oneway: {ECHO_SERVICE} echo("hello mosn"), hessian2')

        rec = cap.run(relay, lambda: bolt_steps(relay.port, [echo], protocol="bolt2",
                                                bolt_version=1),
                      all_ok, "v2 echo")
        call = f'{ECHO_SERVICE} echo("hello mosn"), hessian2, bolt v2 ver1 1 (no CRC)'
        cap.save("v2_request_hessian2.bin", split_frames(rec.to_server)[0], bolt_node, call)
        cap.save("v2_response_hessian2.bin", split_frames(rec.to_client)[0], node_server,
                 f"the answer to {call}")

        rec = cap.run(relay, lambda: bolt_steps(relay.port, [{"call": "heartbeat"}, echo, echo_pb],
                                                protocol="bolt2", bolt_version=2, crc=True),
                      all_ok, "v2 CRC steps")
        sent, answers = split_frames(rec.to_server), split_frames(rec.to_client)
        cap.save("v2_crc_heartbeat.bin", sent[0], bolt_node,
                 "encoder.writeHeartbeat, bolt v2 ver1 2 with CRC32")
        cap.save("v2_crc_heartbeat_ack.bin", answers[0], node_server,
                 "the ack of the v2 CRC heartbeat")
        call = f'{ECHO_SERVICE} echo("hello mosn"), hessian2, bolt v2 ver1 2 with CRC32'
        cap.save("v2_crc_request_hessian2.bin", sent[1], bolt_node, call)
        cap.save("v2_crc_response_hessian2.bin", answers[1], node_server, f"the answer to {call}")
        call = f'{ECHO_SERVICE} echoObj({{name: "mosn", group: B}}), protobuf, bolt v2 with CRC32'
        cap.save("v2_crc_request_protobuf.bin", sent[2], bolt_node, call)
        cap.save("v2_crc_response_protobuf.bin", answers[2], node_server, f"the answer to {call}")

        rec = cap.run(relay, lambda: anthunder(python, "call", f"127.0.0.1:{relay.port}",
                                               ECHO_SERVICE, "echoObj", "anthunder"),
                      ok, "anthunder call")
        cap.save("anthunder_request_protobuf.bin", split_frames(rec.to_server)[0],
                 f"{anth} Client.invoke_sync",
                 f"{ECHO_SERVICE} echoObj({{name: anthunder, group: B}}), protobuf, to {node_server}")
    finally:
        relay.close()
        server.stop()

    server = start_anthunder_server(python, free_port())
    relay = Relay(server.port)
    anth_server = f"{anth} AioListener"
    try:
        rec = cap.run(relay, lambda: anthunder(python, "heartbeat", f"127.0.0.1:{relay.port}"),
                      ok, "anthunder heartbeat")
        cap.save("anthunder_heartbeat.bin", split_frames(rec.to_server)[0],
                 f"{anth} HeartbeatRequest", "a heartbeat to anthunder's server")
        cap.save("anthunder_heartbeat_ack.bin", split_frames(rec.to_client)[0], anth_server,
                 "the ack of anthunder's heartbeat")

        rec = cap.run(relay, lambda: bolt_steps(relay.port, [echo_pb]), all_ok,
                      "node to anthunder")
        cap.save("anthunder_response_protobuf.bin", split_frames(rec.to_client)[0], anth_server,
                 f"the answer to {bolt_node}'s {ECHO_SERVICE} echoObj, protobuf")

        rec = cap.run(relay, lambda: bolt_steps(relay.port, [{**echo_pb,
                                                               "service": UNKNOWN_SERVICE}]),
                      lambda r: isinstance(r, list) and r[0]["type"] == "response"
                      and not r[0]["ok"], "unknown service")
        cap.save("anthunder_response_no_processor.bin", split_frames(rec.to_client)[0],
                 anth_server, f"the answer to {bolt_node}'s {UNKNOWN_SERVICE} echoObj, protobuf")
    finally:
        relay.close()
        server.stop()

    write_readme(cap.saved, rpc_node, bolt_node, anth)
    return 0


def write_readme(saved: list[Golden], rpc_node: str, bolt_node: str, anth: str) -> None:
    rows = "\n".join(f"| `{g.name}` | {g.producer} | {g.call} |" for g in saved)
    (DATA / "README.md").write_text(f"""# Golden bolt frames

Captured by `tests/capture_golden.py` (run it again to regenerate) from real SOFARPC peers
talking to each other over 127.0.0.1 through a recording relay; each file is one whole
frame as it was on the wire. Peers: {rpc_node} and {bolt_node} on Node.js {node_version()}
(`tests/peers/package.json`, locked), {anth} on Python {sys.version.split()[0]}
(`tests/peers/requirements-anthunder.txt`). The echo service is `tests/peers/server.js`
(sofa-rpc-node) or `tests/peers/anthunder_peer.py` (anthunder); the protobuf messages are
in `tests/peers/proto/`.

| file | produced by | call |
|---|---|---|
{rows}

Request ids, trace ids and timeouts are those of the capture run.
""")


if __name__ == "__main__":
    sys.exit(main())
