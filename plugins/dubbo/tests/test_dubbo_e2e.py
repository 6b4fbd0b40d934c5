"""Real Dubbo consumers calling a real provider through a mosn process, over 127.0.0.1.

Consumers: sofa-rpc-node's RpcClient with dubbo-remoting, apache-dubbo-js, dubbo2.js,
python3-dubbo. Providers: sofa-rpc-node's RpcServer with dubbo-remoting ("a" and "b").
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mosn.rpc.codec import FrameKind
from mosn.testing import MosnProcess, Peer, free_port
from mosn_dubbo import DubboCodec, Status
from mosn_dubbo.frames import FLAG_EVENT, FLAG_REQUEST, FLAG_TWO_WAY, HEADER_SIZE, build_frame
from mosn_dubbo.hessian2 import NULL, Reader
from dubbo_fixtures import (  # noqa: F401 (fixtures)
    node_peers,
    provider,
    provider_b,
    python3_dubbo,
)
from dubbo_peers import (
    PEERS,
    SERVICE,
    UNKNOWN_SERVICE,
    VERSION,
    call,
    calls,
    exchange,
    python3_dubbo_call,
)

CODEC = DubboCodec()
DEAD_SERVICE = "com.example.DeadService"
"""Routed to a cluster whose only host listens nowhere."""
LARGE = 256 * 1024
ROUTE_TIMEOUT = "1s"
"""The timeout of the route that ``sleep`` calls take."""
CONSUMERS = ["sofa", "apache", "dubbo2js"]


def header(name: str, value: str) -> dict[str, str]:
    return {"name": name, "value": value}


def route(cluster: str, *headers: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"match": {"headers": list(headers)}, "route": {"cluster_name": cluster, **extra}}


def dubbo_config(port: int, a: int, b: int) -> dict[str, Any]:
    """One dubbo listener; routes by service, method, group and version; a subset
    cluster holding both providers with group metadata."""
    svc = header("service", SERVICE)
    return {
        "servers": [{
            "graceful_timeout": "1s",
            "routers": [{
                "router_config_name": "dubbo_routes",
                "virtual_hosts": [{"name": "dubbo", "domains": ["*"], "routers": [
                    route("provider_b", svc, header("group", "blue")),
                    route("both", svc, header("group", "subset-green"),
                          metadata_match={"filter_metadata": {"mosn.lb": {"group": "green"}}}),
                    route("both", svc, header("group", "subset-blue"),
                          metadata_match={"filter_metadata": {"mosn.lb": {"group": "blue"}}}),
                    route("provider_a", svc, header("method", "sleep"), timeout=ROUTE_TIMEOUT),
                    route("provider_a", svc, header("version", VERSION)),
                    route("dead", header("service", DEAD_SERVICE)),
                ]}],
            }],
            "listeners": [{
                "name": "dubbo",
                "address": f"127.0.0.1:{port}",
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": "dubbo", "router_config_name": "dubbo_routes"}}]}],
            }],
        }],
        "cluster_manager": {"clusters": [
            {"name": "provider_a", "hosts": [{"address": f"127.0.0.1:{a}"}]},
            {"name": "provider_b", "hosts": [{"address": f"127.0.0.1:{b}"}]},
            {"name": "both", "lb_subset_config": {"subset_selectors": [["group"]]},
             "hosts": [
                 {"address": f"127.0.0.1:{a}", "metadata": {"filter_metadata": {
                     "mosn.lb": {"group": "green"}}}},
                 {"address": f"127.0.0.1:{b}", "metadata": {"filter_metadata": {
                     "mosn.lb": {"group": "blue"}}}}]},
            {"name": "dead", "hosts": [{"address": f"127.0.0.1:{free_port()}"}]},
        ]},
    }


@pytest.fixture(scope="module")
def via_mosn(tmp_path_factory: pytest.TempPathFactory, provider: Peer,
             provider_b: Peer) -> Iterator[int]:
    port = free_port()
    mosn = MosnProcess(dubbo_config(port, provider.port, provider_b.port),
                       tmp_path_factory.mktemp("mosn"))
    yield port
    mosn.stop()


def raw_call(port: int, service: str, method: str, body: bytes = b"x"):
    """A request made by the codec's tool builder; the decoded answer."""
    frame = CODEC.request(f"{service}:{VERSION}", method, body)
    data = bytearray(frame)
    CODEC.set_request_id(data, 77)
    (answer,) = exchange(port, bytes(data))
    decoded = CODEC.decode(bytearray(answer))
    assert decoded is not None and decoded.request_id == 77
    return decoded


def message(frame) -> str:
    return Reader(frame.data, HEADER_SIZE).read_string()


# -- calls through mosn -----------------------------------------------------------------


@pytest.mark.parametrize("kind", CONSUMERS)
def test_call(via_mosn: int, kind: str) -> None:
    assert call(kind, via_mosn, "echo", "through mosn") == {"ok": True, "result": "through mosn"}


def test_python3_dubbo_call(via_mosn: int, python3_dubbo: Path) -> None:
    assert python3_dubbo_call(python3_dubbo, via_mosn, "echo", "from python") == {
        "ok": True, "result": "from python"}


@pytest.mark.parametrize("kind", CONSUMERS)
def test_exception_replies_pass_through_intact(via_mosn: int, kind: str) -> None:
    thrown, returned = calls(kind, via_mosn, [{"method": "fail"}, {"method": "failObj"}])
    assert thrown["ok"] is False and "echo service failed on purpose" in thrown["error"]
    assert returned["ok"] is False
    assert "echo service returned an exception on purpose" in returned["error"]


@pytest.mark.parametrize("kind", ["sofa", "apache"])
def test_large_payloads(via_mosn: int, kind: str) -> None:
    result = call(kind, via_mosn, "echo", {"bytes": LARGE})
    assert result == {"ok": True, "length": LARGE, "head": "x" * 16}


def test_many_calls_on_one_connection_keep_their_ids(via_mosn: int) -> None:
    steps = [{"method": "echo", "args": [f"n{i}"]} for i in range(20)]
    assert [r["result"] for r in calls("sofa", via_mosn, steps)] == [f"n{i}" for i in range(20)]


# -- routing ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sofa", "apache"])
def test_route_by_version_and_group(via_mosn: int, kind: str) -> None:
    default, blue = calls(kind, via_mosn, [{"method": "whoami"},
                                           {"method": "whoami", "group": "blue"}])
    assert (default["result"], blue["result"]) == ("a", "b")


@pytest.mark.parametrize("group, name", [("subset-green", "a"), ("subset-blue", "b")])
def test_subset_load_balancing_by_group_metadata(via_mosn: int, group: str, name: str) -> None:
    results = calls("sofa", via_mosn, [{"method": "whoami", "group": group}] * 6)
    assert {r.get("result") for r in results} == {name}


@pytest.mark.parametrize("kind", CONSUMERS)
def test_unknown_service_is_service_not_found(via_mosn: int, kind: str) -> None:
    result = call(kind, via_mosn, "echo", "x", service=UNKNOWN_SERVICE)
    assert result["ok"] is False
    assert "service not found" in result["error"]


def test_unknown_service_status_and_message(via_mosn: int) -> None:
    answer = raw_call(via_mosn, UNKNOWN_SERVICE, "echo")
    assert (answer.kind, answer.status) == (FrameKind.RESPONSE, Status.SERVICE_NOT_FOUND)
    assert message(answer) == (f"mosn: 404 no route: service not found "
                               f"({UNKNOWN_SERVICE}:{VERSION} echo)")


def test_no_reachable_provider_is_service_not_found(via_mosn: int) -> None:
    answer = raw_call(via_mosn, DEAD_SERVICE, "echo")
    assert answer.status == Status.SERVICE_NOT_FOUND


def test_timeout_is_server_timeout(via_mosn: int) -> None:
    answer = raw_call(via_mosn, SERVICE, "sleep", b"3000")
    assert answer.status == Status.SERVER_TIMEOUT
    assert call("sofa", via_mosn, "sleep", "3000")["ok"] is False


# -- what mosn answers itself -----------------------------------------------------------


def test_heartbeats_are_answered_by_mosn(via_mosn: int) -> None:
    out = subprocess.run(["node", "heartbeat.js", f"127.0.0.1:{via_mosn}", "3"], cwd=PEERS,
                         capture_output=True, text=True, timeout=30, check=True)
    assert [json.loads(line) for line in out.stdout.splitlines()] == [
        {"id": i, "ok": True} for i in (1, 2, 3)]


def test_a_heartbeat_is_not_forwarded(start_mosn: Callable[..., Any]) -> None:
    """Nothing listens behind this mosn; the heartbeat is acked all the same."""
    port = free_port()
    start_mosn(dubbo_config(port, free_port(), free_port()))
    heartbeat = build_frame(FLAG_REQUEST | FLAG_TWO_WAY | FLAG_EVENT | 2, 0, 5, NULL)
    (ack,) = exchange(port, heartbeat)
    frame = CODEC.decode(bytearray(ack))
    assert (frame.kind, frame.request_id, frame.status) == (FrameKind.HEARTBEAT_REPLY, 5, 20)


def test_unsupported_serialization_gets_bad_request(via_mosn: int) -> None:
    frame = build_frame(FLAG_REQUEST | FLAG_TWO_WAY | 6, 0, 9, b'"2.0.2"')
    (answer,) = exchange(via_mosn, frame)
    decoded = CODEC.decode(bytearray(answer))
    assert (decoded.request_id, decoded.status) == (9, Status.BAD_REQUEST)
    assert "serialization id 6" in message(decoded)


def test_a_bad_frame_does_not_disturb_other_connections(via_mosn: int) -> None:
    assert exchange(via_mosn, b"\xda\xbcgarbage-garbage!") == []
    assert call("sofa", via_mosn, "echo", "still here")["result"] == "still here"
