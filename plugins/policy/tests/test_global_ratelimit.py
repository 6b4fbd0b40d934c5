"""The ``ratelimit`` filter in a real mosn against a rate limit service written here on
grpcio and xds-protos (``envoy.service.ratelimit.v3``): curl and grpcio clients,
limits counted by the service per descriptor."""

from __future__ import annotations

import threading
import time
from concurrent import futures
from typing import Any, Iterator

import grpc
import pytest
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from mosn.config import ConfigError, validate
from mosn.testing import HttpBackend, free_port
from policy_peers import curl

SLOW_SECONDS = 2.0
"""How long the slow service takes: far past the filter's timeout in these tests."""


class RateLimitService(rls_pb2_grpc.RateLimitServiceServicer):
    """Allows ``limit`` hits per descriptor (its entries as a tuple); records every
    request; ``slow`` makes it answer after ``SLOW_SECONDS``; ``broken`` makes it fail."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.hits: dict[tuple[tuple[str, str], ...], int] = {}
        self.requests: list[Any] = []
        self.lock = threading.Lock()
        self.slow = threading.Event()
        self.broken = False

    def ShouldRateLimit(self, request: Any, context: Any) -> Any:
        if self.broken:
            context.abort(grpc.StatusCode.INTERNAL, "broken on purpose")
        if self.slow.is_set():
            time.sleep(SLOW_SECONDS)  # the service's own delay, past the filter's timeout
        with self.lock:
            self.requests.append(request)
            over = False
            for d in request.descriptors:
                key = tuple((e.key, e.value) for e in d.entries)
                self.hits[key] = self.hits.get(key, 0) + request.hits_addend
                over = over or self.hits[key] > self.limit
        response = rls_pb2.RateLimitResponse(
            overall_code=rls_pb2.RateLimitResponse.OVER_LIMIT if over
            else rls_pb2.RateLimitResponse.OK)
        if over:
            response.response_headers_to_add.add(key="x-limited-by", value="rls")
            response.raw_body = b"slow down"
        else:
            response.request_headers_to_add.add(key="x-rls-checked", value="yes")
        return response


@pytest.fixture
def rls() -> Iterator[tuple[RateLimitService, int]]:
    service = RateLimitService(limit=2)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    rls_pb2_grpc.add_RateLimitServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield service, port
    server.stop(0)


@pytest.fixture(scope="module")
def backend() -> Iterator[HttpBackend]:
    server = HttpBackend()
    yield server
    server.stop()


def config(port: int, upstream: str, rls_port: int, **filter_config: Any) -> dict[str, Any]:
    flt = {"domain": "edge", "rate_limit_service": {"grpc_service": {
        "envoy_grpc": {"cluster_name": "rls"}}},
        "rate_limits": [{"actions": [{"request_headers": {"header_name": "x-user",
                                                          "descriptor_key": "user"}}]},
                        {"actions": [{"generic_key": {"descriptor_value": "all"}}]}],
        "timeout": "2s", **filter_config}
    return {
        "servers": [{"graceful_timeout": "1s",
                     "routers": [{"router_config_name": "main", "virtual_hosts": [{
                         "name": "all", "domains": ["*"], "routers": [
                             {"match": {"prefix": "/free"}, "route": {"cluster_name": "up"},
                              "per_filter_config": {"ratelimit": {"disabled": True}}},
                             {"match": {"prefix": "/"}, "route": {"cluster_name": "up"}}]}]}],
                     "listeners": [{"name": "http", "address": f"127.0.0.1:{port}",
                                    "stream_filters": [{"type": "ratelimit", "config": flt}],
                                    "filter_chains": [{"filters": [{"type": "proxy", "config": {
                                        "downstream_protocol": "Http1",
                                        "router_config_name": "main"}}]}]}]}],
        "cluster_manager": {"clusters": [
            {"name": "up", "hosts": [{"address": upstream}]},
            {"name": "rls", "hosts": [{"address": f"127.0.0.1:{rls_port}"}]}]},
    }


@pytest.fixture
def start(start_mosn: Any) -> Any:
    return start_mosn


def test_the_service_decides_by_descriptor(start, backend, rls) -> None:
    service, rls_port = rls
    port = free_port()
    mosn = start(config(port, backend.address, rls_port))
    replies = [curl(port, "/", "x-user: ann") for _ in range(3)]
    assert [r[0] for r in replies] == [200, 200, 429]
    assert "x-limited-by: rls" in replies[2][1] and "x-envoy-ratelimited: true" in replies[2][1]
    assert replies[2][2] == "slow down"
    first = service.requests[0]
    assert first.domain == "edge"
    assert [[(e.key, e.value) for e in d.entries] for d in first.descriptors] == [
        [("user", "ann")], [("generic_key", "all")]]
    stats = mosn.wait_stat("ratelimit.ratelimit.over_limit", 1)
    assert stats["ratelimit.ratelimit.ok"] == 2


def test_a_request_without_its_header_skips_that_descriptor(start, backend, rls) -> None:
    service, rls_port = rls
    port = free_port()
    start(config(port, backend.address, rls_port))
    assert curl(port)[0] == 200
    assert [[(e.key, e.value) for e in d.entries] for d in service.requests[0].descriptors] == [
        [("generic_key", "all")]]


def test_a_route_can_turn_it_off(start, backend, rls) -> None:
    service, rls_port = rls
    port = free_port()
    start(config(port, backend.address, rls_port))
    assert [curl(port, "/free")[0] for _ in range(4)] == [200] * 4
    assert service.requests == []


def test_failure_mode_allow_and_deny(start, backend, rls) -> None:
    service, rls_port = rls
    service.broken = True
    allow, deny = free_port(), free_port()
    mosn = start(config(allow, backend.address, rls_port))
    start(config(deny, backend.address, rls_port, failure_mode_deny=True))
    assert curl(allow)[0] == 200
    assert curl(deny)[0] == 500
    stats = mosn.wait_stat("ratelimit.ratelimit.failure_mode_allowed", 1)
    assert stats["ratelimit.ratelimit.error"] == 1


def test_a_timeout_counts_as_a_failure(start, backend, rls) -> None:
    service, rls_port = rls
    service.slow.set()
    port = free_port()
    start(config(port, backend.address, rls_port, timeout="100ms", failure_mode_deny=True))
    assert curl(port)[0] == 500


def test_a_service_nobody_runs_fails_open(start, backend) -> None:
    port = free_port()
    start(config(port, backend.address, free_port()))
    assert curl(port)[0] == 200


def test_grpc_callers_get_resource_exhausted(start, rls) -> None:
    service, rls_port = rls
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(lambda r, c: r)}),))
    upstream = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        port = free_port()
        cfg = config(port, f"127.0.0.1:{upstream}", rls_port)
        proxy = cfg["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"]
        proxy["downstream_protocol"] = "Http2"
        start(cfg)
        with grpc.insecure_channel(f"127.0.0.1:{port}",
                                   options=[("grpc.enable_http_proxy", 0)]) as channel:
            call = channel.unary_unary("/test.Echo/Unary")
            assert [call(b"x", timeout=10) for _ in range(2)] == [b"x", b"x"]
            with pytest.raises(grpc.RpcError) as refused:
                call(b"x", timeout=10)
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        server.stop(0)


def test_an_unknown_cluster_is_refused() -> None:
    cfg = config(1, "127.0.0.1:1", 2)
    cfg["cluster_manager"]["clusters"] = [c for c in cfg["cluster_manager"]["clusters"]
                                          if c["name"] != "rls"]
    with pytest.raises(ConfigError) as exc:
        validate(cfg)
    assert any("rate_limit_service.grpc_service.envoy_grpc.cluster_name" in e
               for e in exc.value.errors), exc.value.errors
