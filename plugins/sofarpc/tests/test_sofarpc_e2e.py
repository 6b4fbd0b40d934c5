"""Real SOFARPC clients calling real servers through a mosn process, over 127.0.0.1.

Clients: sofa-rpc-node's RpcClient and sofa-bolt-node (hessian2, protobuf, heartbeats,
bolt v2 with CRC32) and anthunder. Servers: sofa-rpc-node's RpcServer and anthunder.
"""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator

import pytest

from mosn.rpc.codec import FrameKind
from mosn.testing import MosnProcess, Peer, free_port
from mosn.testing.process import START_TIMEOUT
from mosn_sofarpc import BoltCodec, BoltV2Codec, ResponseStatus
from mosn_sofarpc.frames import CmdCode, build_request, encode_header_map
from .sofarpc_peers import (
    DATA,
    ECHO_SERVICE,
    UNKNOWN_SERVICE,
    anthunder,
    bolt_steps,
    hessian_string,
    rpc_call,
)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mosn.rpc.engine") is None,
                                reason="the RPC engine (mosn.rpc.engine) is not there yet")

DEAD_SERVICE = "com.example.DeadService:1.0"
"""Routed to a cluster whose only host listens nowhere."""
RECV = 65536  # bytes per read
CODEC = BoltCodec()


def bolt_config(listen_port: int, server_port: int, *, proxy: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    """The brief's config: one bolt listener, a route by ``service`` to echo_server;
    plus a route to a dead cluster."""
    return {
        "servers": [{
            "graceful_timeout": "1s",
            "routers": [{
                "router_config_name": "bolt_router",
                "virtual_hosts": [{
                    "name": "bolt",
                    "domains": ["*"],
                    "routers": [
                        {"match": {"headers": [{"name": "service", "value": ECHO_SERVICE}]},
                         "route": {"cluster_name": "echo_server"}},
                        {"match": {"headers": [{"name": "service", "value": DEAD_SERVICE}]},
                         "route": {"cluster_name": "dead_server"}},
                    ],
                }],
            }],
            "listeners": [{
                "name": "bolt",
                "address": f"127.0.0.1:{listen_port}",
                "filter_chains": [{"filters": [{"type": "proxy", "config": proxy or {
                    "downstream_protocol": "bolt", "router_config_name": "bolt_router"}}]}],
            }],
        }],
        "cluster_manager": {"clusters": [
            {"name": "echo_server", "hosts": [{"address": f"127.0.0.1:{server_port}"}]},
            {"name": "dead_server", "hosts": [{"address": f"127.0.0.1:{free_port()}"}]},
        ]},
    }


@pytest.fixture(scope="module")
def via_mosn(tmp_path_factory: pytest.TempPathFactory, node_server: Peer) -> Iterator[int]:
    """mosn's bolt listener in front of sofa-rpc-node's server; yields its port."""
    port = free_port()
    mosn = MosnProcess(bolt_config(port, node_server.port), tmp_path_factory.mktemp("mosn"))
    yield port
    mosn.stop()


def exchange(port: int, frame: bytes, codec: BoltCodec = CODEC) -> Any:
    """Send one frame, decode the one frame answered."""
    buffer = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=START_TIMEOUT) as s:
        s.sendall(frame)
        while (answer := codec.decode(buffer)) is None:
            data = s.recv(RECV)
            assert data, "connection closed without an answer"
            buffer += data
    return answer


def request_for(service: str, request_id: int = 7, **options: Any) -> bytes:
    header = encode_header_map([("service", service)])
    return build_request(request_id, header=header, class_name=b"x", content=b"x",
                         timeout_ms=3000, **options)


# -- calls through mosn ---------------------------------------------------------------


def test_hessian2_call(via_mosn: int) -> None:
    assert rpc_call(via_mosn, "hessian2", "echo", [hessian_string("through mosn")]) == {
        "ok": True, "result": "through mosn"}


def test_protobuf_call(via_mosn: int) -> None:
    result = rpc_call(via_mosn, "protobuf", "echoObj", [{"name": "mosn", "group": "B"}])
    assert result == {"ok": True, "result": {"code": 200,
                                             "message": "hello mosn, you are in B"}}


@pytest.mark.parametrize("codec, args", [("hessian2", []), ("protobuf", [{"name": "x"}])])
def test_an_exception_reply_passes_through_intact(via_mosn: int, codec: str, args: list) -> None:
    result = rpc_call(via_mosn, codec, "fail", args)
    assert result["ok"] is False
    assert "echo service failed on purpose" in result["error"]


def test_calls_on_one_connection_keep_their_ids(via_mosn: int) -> None:
    steps = [{"call": "request", "method": "echo", "args": [hessian_string(f"n{i}")]}
             for i in range(5)]
    results = bolt_steps(via_mosn, steps)
    assert [(r["id"], r["result"]) for r in results] == [(i + 1, f"n{i}") for i in range(5)]


@pytest.mark.parametrize("options", [
    {"protocol": "bolt2", "bolt_version": 1},
    {"protocol": "bolt2", "bolt_version": 2, "crc": True},
], ids=["v2", "v2-crc"])
def test_bolt_v2_calls(via_mosn: int, options: dict) -> None:
    """sofa-bolt-node checks the CRC of what it receives, so a patched id with a stale
    CRC would fail here."""
    steps = [{"call": "request", "method": "echo", "args": [hessian_string("v2")]},
             {"call": "request", "codec": "protobuf", "method": "echoObj",
              "args": [{"name": "v2", "group": "B"}]}]
    results = bolt_steps(via_mosn, steps, **options)
    assert [r["ok"] for r in results] == [True, True]
    assert results[0]["result"] == "v2"


def test_anthunder_client(via_mosn: int, anthunder_python: Path) -> None:
    result = anthunder(anthunder_python, "call", f"127.0.0.1:{via_mosn}", ECHO_SERVICE,
                       "echoObj", "anthunder")
    assert result["ok"] is True
    assert bytes.fromhex(result["content"]).endswith(b"hello anthunder, you are in B")


def test_oneway_call_gets_no_answer_and_the_connection_goes_on(via_mosn: int) -> None:
    steps = [{"call": "oneway", "method": "echo", "args": [hessian_string("fire")]},
             {"call": "request", "method": "echo", "args": [hessian_string("after")]}]
    results = bolt_steps(via_mosn, steps)
    assert results[0]["type"] == "sent"
    assert results[1]["result"] == "after"


# -- what mosn answers itself ---------------------------------------------------------


@pytest.mark.parametrize("options", [
    {}, {"protocol": "bolt2", "bolt_version": 1}, {"protocol": "bolt2", "bolt_version": 2, "crc": True},
], ids=["v1", "v2", "v2-crc"])
def test_heartbeats_are_answered(via_mosn: int, options: dict) -> None:
    results = bolt_steps(via_mosn, [{"call": "heartbeat"}] * 3, **options)
    assert [r["type"] for r in results] == ["heartbeat_ack"] * 3


def test_heartbeats_are_answered_by_mosn_itself(start_mosn: Callable[..., Any],
                                                node_peers: None) -> None:
    port = free_port()
    start_mosn(bolt_config(port, free_port()))  # the upstream listens nowhere
    results = bolt_steps(port, [{"call": "heartbeat"}])
    assert results[0]["type"] == "heartbeat_ack"


def test_anthunder_heartbeat(via_mosn: int, anthunder_python: Path) -> None:
    assert anthunder(anthunder_python, "heartbeat", f"127.0.0.1:{via_mosn}") == {
        "ok": True, "status": 0, "cmdcode": 0}


def test_unknown_service_is_no_processor(via_mosn: int, anthunder_python: Path) -> None:
    result = anthunder(anthunder_python, "call", f"127.0.0.1:{via_mosn}", UNKNOWN_SERVICE,
                       "echoObj", "x")
    assert "RESPSTATUS=6, NO_PROCESSOR" in result["error"]


@pytest.mark.parametrize("codec, options", [
    (BoltCodec(), {}),
    (BoltV2Codec(), {"protocol": 2, "ver1": 2, "switch": 1}),
], ids=["v1", "v2-crc"])
def test_unknown_service_reply_frame(via_mosn: int, codec: BoltCodec, options: dict) -> None:
    answer = exchange(via_mosn, request_for(UNKNOWN_SERVICE, **options), codec)
    assert (answer.kind, answer.request_id, answer.status) == (
        FrameKind.RESPONSE, 7, ResponseStatus.NO_PROCESSOR)


def test_unknown_service_from_sofa_rpc_node(via_mosn: int) -> None:
    result = rpc_call(via_mosn, "hessian2", "echo", [hessian_string("x")], UNKNOWN_SERVICE)
    assert result["ok"] is False


def test_no_healthy_upstream_is_no_processor(via_mosn: int) -> None:
    answer = exchange(via_mosn, request_for(DEAD_SERVICE))
    assert (answer.request_id, answer.status) == (7, ResponseStatus.NO_PROCESSOR)


def test_a_bad_frame_is_answered_codec_exception_and_closed(via_mosn: int) -> None:
    bad = build_request(9, cmd_code=CmdCode.RESPONSE)  # a request type with a response code
    with socket.create_connection(("127.0.0.1", via_mosn), timeout=START_TIMEOUT) as s:
        s.sendall(bad)
        received = b""
        while data := s.recv(RECV):
            received += data
    answer = CODEC.decode(bytearray(received))
    assert (answer.request_id, answer.status) == (9, ResponseStatus.CODEC_EXCEPTION)


def test_requests_before_a_bad_frame_are_answered_first(start_mosn: Callable[..., Any],
                                                         node_server: Peer) -> None:
    """Two calls of sofa-rpc-node's and a bad frame in one write: the calls reach the
    server and are answered, then the bad frame gets CODEC_EXCEPTION and the close."""
    port = free_port()
    mosn = start_mosn(bolt_config(port, node_server.port))
    calls = []
    for request_id in (1, 2):
        call = bytearray((DATA / "v1_request_hessian2.bin").read_bytes())
        CODEC.set_request_id(call, request_id)
        calls.append(bytes(call))
    bad = build_request(9, cmd_code=CmdCode.RESPONSE)  # a request type with a response code
    with socket.create_connection(("127.0.0.1", port), timeout=START_TIMEOUT) as s:
        s.sendall(b"".join(calls) + bad)
        received = bytearray()
        while data := s.recv(RECV):
            received += data
    answers = []
    while (answer := CODEC.decode(received)) is not None:
        answers.append((answer.request_id, answer.status))
    assert sorted(answers[:2]) == [(1, ResponseStatus.SUCCESS), (2, ResponseStatus.SUCCESS)]
    assert answers[2:] == [(9, ResponseStatus.CODEC_EXCEPTION)]
    stats = mosn.wait_stat("protocol.bolt.downstream_cx_protocol_error", 1)
    assert stats["protocol.bolt.downstream_cx_protocol_error"] == 1


# -- other listener forms and servers -------------------------------------------------


def test_older_form_x_with_sub_protocol(start_mosn: Callable[..., Any], node_server: Peer) -> None:
    port = free_port()
    start_mosn(bolt_config(port, node_server.port, proxy={
        "downstream_protocol": "X", "router_config_name": "bolt_router",
        "extend_config": {"sub_protocol": "bolt"}}))
    assert rpc_call(port, "hessian2", "echo", [hessian_string("x")])["result"] == "x"


def test_auto_listener_tells_bolt_from_boltv2(start_mosn: Callable[..., Any],
                                             node_server: Peer) -> None:
    port = free_port()
    start_mosn(bolt_config(port, node_server.port, proxy={
        "downstream_protocol": "Auto", "router_config_name": "bolt_router"}))
    echo = {"call": "request", "method": "echo", "args": [hessian_string("auto")]}
    assert bolt_steps(port, [echo])[0]["result"] == "auto"
    assert bolt_steps(port, [echo], protocol="bolt2", bolt_version=2, crc=True)[0]["result"] == "auto"


def test_sofa_bolt_node_to_anthunder_server(start_mosn: Callable[..., Any], node_peers: None,
                                            anthunder_server: Peer) -> None:
    port = free_port()
    start_mosn(bolt_config(port, anthunder_server.port))
    (result,) = bolt_steps(port, [{"call": "request", "codec": "protobuf", "method": "echoObj",
                                   "args": [{"name": "x", "group": "B"}]}])
    assert result == {"id": 1, "type": "response", "ok": True,
                      "result": {"code": 200, "message": "hello from anthunder"}}
