"""Dubbo 3 Triple calls (gRPC with Dubbo's ``tri-`` headers) from grpcio through mosn to
grpcio servers, routed by Dubbo's keys (``service``, ``method``, ``version``, ``group``)
that the ``dubbo_triple`` stream filter gives them."""

from __future__ import annotations

import re
from concurrent import futures
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest
import yaml

from mosn.config import validate
from mosn.testing.process import MosnProcess, free_port

SERVICE = "com.example.GreeterService"
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]
TIMEOUT = 10.0


def start_server(name: str) -> tuple[grpc.Server, int]:
    def greet(request: bytes, context: Any) -> bytes:
        return name.encode() + b":" + request

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
        "greet": grpc.unary_unary_rpc_method_handler(greet)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def header(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def triple_config(port: int, ports: dict[str, int], *, filters: bool = True) -> dict[str, Any]:
    """Dubbo-style routes: by service, version and group, as for Dubbo 2 calls."""
    routes = [
        {"match": {"headers": [header("service", SERVICE), header("version", "2.0.0"),
                               header("group", "canary")]},
         "route": {"cluster_name": "canary"}},
        {"match": {"headers": [header("service", SERVICE), header("method", "greet")]},
         "route": {"cluster_name": "stable"}},
    ]
    listener: dict[str, Any] = {
        "name": "triple", "address": f"127.0.0.1:{port}", "bind_port": True,
        "filter_chains": [{"filters": [{"type": "proxy", "config": {
            "downstream_protocol": "Auto", "router_config_name": "triple"}}]}],
    }
    if filters:
        listener["stream_filters"] = [{"type": "dubbo_triple", "config": {}}]
    return {
        "servers": [{
            "graceful_timeout": "1s",
            "routers": [{"router_config_name": "triple", "virtual_hosts": [{
                "name": "all", "domains": ["*"], "routers": routes}]}],
            "listeners": [listener],
        }],
        "cluster_manager": {"clusters": [
            {"name": name, "hosts": [{"address": f"127.0.0.1:{p}"}]} for name, p in ports.items()]},
    }


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, int]]:
    started, ports = [], {}
    for name in ("stable", "canary"):
        server, ports[name] = start_server(name)
        started.append(server)
    yield ports
    for server in started:
        server.stop(0)


def greet(port: int, metadata: list[tuple[str, str]]) -> bytes:
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS) as channel:
        call = channel.unary_unary(f"/{SERVICE}/greet")
        return call(b"hi", metadata=metadata, timeout=TIMEOUT)


TRIPLE = [("tri-service-version", "2.0.0"), ("tri-service-group", "canary"),
          ("tri-consumer-appname", "consumer")]


def test_triple_calls_route_on_dubbo_keys(servers: dict[str, int],
                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    port = free_port()
    mosn = MosnProcess(triple_config(port, servers), tmp_path_factory.mktemp("mosn"))
    try:
        assert greet(port, TRIPLE) == b"canary:hi"
        assert greet(port, [("tri-service-version", "1.0.0")]) == b"stable:hi"
        assert greet(port, []) == b"stable:hi"  # plain gRPC: service and method from the path
    finally:
        mosn.stop()


def test_without_the_filter_no_dubbo_route_matches(servers: dict[str, int],
                                                   tmp_path: Any) -> None:
    port = free_port()
    mosn = MosnProcess(triple_config(port, servers, filters=False), tmp_path)
    try:
        with pytest.raises(grpc.RpcError) as info:
            greet(port, TRIPLE)
        assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED  # no route: 404
    finally:
        mosn.stop()


def test_the_docs_snippet_validates() -> None:
    """docs/dubbo.md's Triple listener, loaded as written."""
    docs = Path(__file__).resolve().parents[3] / "docs" / "dubbo.md"
    [snippet] = re.findall(r"```yaml triple\n(.*?)```", docs.read_text(), re.S)
    loaded = validate(yaml.safe_load(snippet))
    assert not loaded.warnings
    assert loaded.config.servers[0].listeners[0].stream_filters[0].type == "dubbo_triple"
