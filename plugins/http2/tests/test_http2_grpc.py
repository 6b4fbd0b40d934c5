"""gRPC through mosn: grpcio clients and grpcio servers (generic handlers over raw
bytes, no generated code) with mosn between them speaking HTTP/2 both ways."""

from __future__ import annotations

import time
from concurrent import futures
from typing import Any, Iterator

import grpc
import httpx
import pytest

from h2_fixtures import h2_engine, h2_proxy, h2_upstream, with_engine  # noqa: F401 (pytest fixtures)
from mosn.testing.process import MosnProcess, free_port

SERVICE = "test.Echo"
CALL_TIMEOUT = 10.0  # seconds a call may take on a loaded CI machine
SLOW_SECONDS = 3.0  # how long /Slow takes: longer than the short timeouts below
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]


def _handlers(name: str) -> grpc.GenericRpcHandler:
    def unary(request: bytes, context: Any) -> bytes:
        return name.encode() + b":" + request

    def bidi(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        for i, request in enumerate(requests):
            yield b"%d:" % i + request

    def total(requests: Iterator[bytes], context: Any) -> bytes:
        return b"|".join(requests)

    def count(request: bytes, context: Any) -> Iterator[bytes]:
        for i in range(int(request)):
            yield b"%d" % i

    def fail(request: bytes, context: Any) -> bytes:
        context.set_trailing_metadata([("x-detail", "kept")])
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no such thing: " + request.decode())

    def slow(request: bytes, context: Any) -> bytes:
        time.sleep(SLOW_SECONDS)
        return request

    return grpc.method_handlers_generic_handler(SERVICE, {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Total": grpc.stream_unary_rpc_method_handler(total),
        "Count": grpc.unary_stream_rpc_method_handler(count),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
    })


def start_server(name: str) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((_handlers(name),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


@pytest.fixture(scope="module")
def grpc_servers() -> Iterator[dict[str, int]]:
    servers, ports = [], {}
    for name in ("blue", "green"):
        server, ports[name] = start_server(name)
        servers.append(server)
    yield ports
    for server in servers:
        server.stop(0)


def grpc_config(port: int, ports: dict[str, int], route_timeout: str = "15s",
                dead_port: int | None = None, engine: str = "auto") -> dict[str, Any]:
    routes = [
        {"match": {"prefix": f"/{SERVICE}/", "headers": [{"name": "x-canary", "value": "1"}]},
         "route": {"cluster_name": "green"}},
        {"match": {"path": f"/{SERVICE}/Slow"},
         "route": {"cluster_name": "blue", "timeout": route_timeout}},
        {"match": {"prefix": "/down.Service/"}, "route": {"cluster_name": "down"}},
        {"match": {"prefix": f"/{SERVICE}/"}, "route": {"cluster_name": "blue"}},
    ]

    def cluster(name: str, port: int) -> dict[str, Any]:
        return {"name": name, "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
                "hosts": [{"address": f"127.0.0.1:{port}"}]}

    return {
        "servers": [{
            "graceful_timeout": "1s",
            "routers": [{"router_config_name": "grpc", "virtual_hosts": [{
                "name": "all", "domains": ["*"], "routers": routes}]}],
            "listeners": [{
                "name": "grpc", "address": f"127.0.0.1:{port}", "bind_port": True,
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": "Http2", "router_config_name": "grpc",
                    "extend_config": with_engine(None, engine)}}]}],
            }],
        }],
        "cluster_manager": {"clusters": [
            cluster("blue", ports["blue"]), cluster("green", ports["green"]),
            cluster("down", dead_port or free_port())]},
    }


@pytest.fixture(scope="module")
def channel(grpc_servers, h2_engine, tmp_path_factory) -> Iterator[grpc.Channel]:
    """A grpcio channel to mosn, which proxies to the two grpcio servers."""
    port = free_port()
    mosn = MosnProcess(grpc_config(port, grpc_servers, route_timeout="300ms", engine=h2_engine),
                       tmp_path_factory.mktemp("grpc"))
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS) as ch:
        ch.port = port  # type: ignore[attr-defined]
        yield ch
    mosn.stop()


def test_unary(channel):
    call = channel.unary_unary(f"/{SERVICE}/Unary")
    assert call(b"hello", timeout=CALL_TIMEOUT) == b"blue:hello"


def test_routing_on_header(channel):
    call = channel.unary_unary(f"/{SERVICE}/Unary")
    assert call(b"x", timeout=CALL_TIMEOUT, metadata=[("x-canary", "1")]) == b"green:x"


def test_bidi_streaming(channel):
    call = channel.stream_stream(f"/{SERVICE}/Bidi")
    replies = list(call(iter([b"m%d" % i for i in range(20)]), timeout=CALL_TIMEOUT))
    assert replies == [b"%d:m%d" % (i, i) for i in range(20)]


def test_client_and_server_streaming(channel):
    total = channel.stream_unary(f"/{SERVICE}/Total")
    assert total(iter([b"a", b"b", b"c"]), timeout=CALL_TIMEOUT) == b"a|b|c"
    count = channel.unary_stream(f"/{SERVICE}/Count")
    assert list(count(b"50", timeout=CALL_TIMEOUT)) == [b"%d" % i for i in range(50)]


def test_error_status_message_and_trailers_preserved(channel):
    call = channel.unary_unary(f"/{SERVICE}/Fail")
    with pytest.raises(grpc.RpcError) as info:
        call("w\u00e9rd".encode(), timeout=CALL_TIMEOUT)
    err = info.value
    assert err.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert err.details() == "no such thing: w\u00e9rd"
    assert ("x-detail", "kept") in list(err.trailing_metadata())


def test_route_timeout_is_deadline_exceeded_from_the_proxy(channel):
    call = channel.unary_unary(f"/{SERVICE}/Slow")
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        call(b"x", timeout=CALL_TIMEOUT)
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert info.value.details() == "upstream request timeout"  # the proxy's, not the client's
    assert time.monotonic() - started < SLOW_SECONDS


def test_no_route_is_unimplemented(channel):
    call = channel.unary_unary("/other.Service/Method")
    with pytest.raises(grpc.RpcError) as info:
        call(b"x", timeout=CALL_TIMEOUT)
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert info.value.details() == "no route"


def test_upstream_down_is_unavailable(channel):
    call = channel.unary_unary("/down.Service/Method")
    with pytest.raises(grpc.RpcError) as info:
        call(b"x", timeout=CALL_TIMEOUT)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "connection_failure" in info.value.details()


def test_grpc_timeout_header_bounds_the_proxy_wait(h2_upstream, h2_proxy):
    """A client's grpc-timeout shorter than the route's (15 s): the proxy answers
    DEADLINE_EXCEEDED itself when it runs out. The upstream is hypercorn, which (unlike
    a gRPC server) does not enforce grpc-timeout itself; read with httpx, which has no
    deadline of its own."""
    port, _ = h2_proxy(h2_upstream)
    with httpx.Client(http1=False, http2=True, timeout=CALL_TIMEOUT) as client:
        started = time.monotonic()
        r = client.post(f"http://127.0.0.1:{port}/delay/{SLOW_SECONDS}",
                        content=b"\x00\x00\x00\x00\x01x",
                        headers={"content-type": "application/grpc", "te": "trailers",
                                 "grpc-timeout": "200m"})
        elapsed = time.monotonic() - started
    assert r.status_code == 200
    assert r.headers["grpc-status"] == "4"
    assert r.headers["grpc-message"] == "upstream request timeout"
    assert elapsed < SLOW_SECONDS
