"""Local rate limits (``local_ratelimit``, MOSN's ``flowControlFilter``) in a real
mosn: curl, grpcio and the RPC clients of the kit against real backends. Limits are
checked by counts: every bucket here fills once an hour, so within a test exactly
``max_tokens`` requests pass, whatever the machine's speed."""

from __future__ import annotations

import copy
import json
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest

from grpc_echo import SERVICE, grpc_echo
from http_scripted import proxy_config
from mosn.config import ConfigError, validate
from mosn.config.routers import RouterConfiguration
from mosn.filters.buckets import BucketTable, TokenBucket
from mosn.filters.common import route_config_identity
from mosn.observability.stats import StatsStore
from mosn.router.table import RouteTable
from mosn.testing import FilterCase, HttpBackend, StreamFilterConformance, free_port

SAMPLES = Path(__file__).parent / "data" / "mosn_samples"
HOUR = "3600s"
"""A fill interval no test outlasts: what passes is counted, not timed."""
CURL_TIMEOUT = "10"
GRPC_TIMEOUT = 10.0
SAMPLE_REQUESTS = 20
"""Requests to the flowcontrol sample's resource limited to one a second."""


def bucket(max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {"token_bucket": {"max_tokens": max_tokens, "tokens_per_fill": max_tokens,
                             "fill_interval": HOUR}, **extra}


def limited(config: dict[str, Any], filter_type: str = "local_ratelimit") -> dict[str, Any]:
    return {"stream_filters": [{"type": filter_type, "config": config}]}


def curl(port: int, path: str = "/", *headers: str) -> tuple[int, dict[str, str], str]:
    """curl's status, response headers (lower-case names) and body."""
    args = ["curl", "-sS", "-m", CURL_TIMEOUT, "-D", "-", f"http://127.0.0.1:{port}{path}"]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    head, _, body = out.partition("\n\n")
    lines = head.split("\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), fields, body


@pytest.fixture(scope="module")
def backend() -> Iterator[HttpBackend]:
    server = HttpBackend()
    yield server
    server.stop()


@pytest.fixture
def start(start_mosn: Any) -> Any:
    return start_mosn


def backend_port(backend: HttpBackend) -> int:
    return int(backend.address.rpartition(":")[2])


# -- the buckets -----------------------------------------------------------------------------


def test_a_bucket_gives_max_tokens_then_refills_per_interval() -> None:
    table = BucketTable(None, "t")
    tb = TokenBucket(max_tokens=3, tokens_per_fill=2, fill_interval_ns=10**12)
    taken = [table.take(7, tb)[0] for _ in range(5)]
    assert taken == [True, True, True, False, False]
    base = next(i for i in range(0, len(table.cells.values), 3) if table.cells.values[i] == 7)
    table.cells.values[base + 2] -= 10**12  # one interval passed
    assert [table.take(7, tb)[0] for _ in range(3)] == [True, True, False]


def test_buckets_live_in_the_stats_mapping_shared_by_forked_workers() -> None:
    import os

    store = StatsStore()
    table = BucketTable(store, "t")
    store.allocate(3)
    tb = TokenBucket(max_tokens=5, tokens_per_fill=5, fill_interval_ns=10**12)
    pid = os.fork()
    if pid == 0:  # a worker takes three
        code = 0 if [table.take(1, tb)[0] for _ in range(3)] == [True] * 3 else 1
        os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0
    assert [table.take(1, tb)[0] for _ in range(3)] == [True, True, False]


# -- HTTP/1.1 with curl ------------------------------------------------------------------------


def test_requests_over_the_limit_get_429_with_x_ratelimit_headers(start, backend) -> None:
    port = free_port()
    start(proxy_config(port, backend_port(backend), listener=limited(
        bucket(3, enable_x_ratelimit_headers="DRAFT_VERSION_03", stat_prefix="edge"))))
    before = backend.requests
    replies = [curl(port) for _ in range(5)]
    assert [r[0] for r in replies] == [200, 200, 200, 429, 429]
    assert backend.requests - before == 3
    assert [r[1]["x-ratelimit-remaining"] for r in replies] == ["2", "1", "0", "0", "0"]
    assert replies[3][1]["x-ratelimit-limit"] == "3, 3;w=3600"
    assert 0 < int(replies[3][1]["x-ratelimit-reset"]) <= 3600


def test_stats_and_the_rl_flag(start, backend, tmp_path) -> None:
    port = free_port()
    log = tmp_path / "access.log"
    mosn = start(proxy_config(port, backend_port(backend), access_log=log,
                              listener=limited(bucket(1, stat_prefix="edge"))))
    assert [curl(port)[0] for _ in range(3)] == [200, 429, 429]
    stats = mosn.wait_stat("edge.http_local_rate_limit.enforced", 2)
    assert stats["edge.http_local_rate_limit.enabled"] == 3
    assert stats["edge.http_local_rate_limit.ok"] == 1
    assert stats["edge.http_local_rate_limit.rate_limited"] == 2
    mosn.stop()
    assert log.read_text().splitlines()[-1] == "429 RL"


def test_shadow_mode_counts_and_lets_through(start, backend) -> None:
    port = free_port()
    mosn = start(proxy_config(port, backend_port(backend), listener=limited(bucket(
        1, stat_prefix="shadow",
        filter_enforced={"default_value": {"numerator": 0}}))))
    assert [curl(port)[0] for _ in range(3)] == [200, 200, 200]
    stats = mosn.wait_stat("shadow.http_local_rate_limit.rate_limited", 2)
    assert stats["shadow.http_local_rate_limit.enforced"] == 0


def test_a_bucket_per_key(start, backend) -> None:
    port = free_port()
    start(proxy_config(port, backend_port(backend), listener=limited(
        bucket(2, key="%request_header_x-user%"))))
    flood = [curl(port, "/", "x-user: flood")[0] for _ in range(4)]
    calm = [curl(port, "/", "x-user: calm")[0] for _ in range(2)]
    assert flood == [200, 200, 429, 429]
    assert calm == [200, 200]


def test_a_bucket_per_source_address(start, backend) -> None:
    port = free_port()
    start(proxy_config(port, backend_port(backend), listener=limited(
        bucket(1, key="%downstream_remote_address_without_port%"))))
    assert [curl(port)[0] for _ in range(2)] == [200, 429]


def test_a_route_overrides_the_listeners_limit(start, backend) -> None:
    """``/tight`` has its own bucket of 1 (and its own status); the other routes take
    the listener's bucket of 3."""
    port = free_port()
    routes = [{"match": {"prefix": "/tight"}, "route": {"cluster_name": "up"},
               "per_filter_config": {"local_ratelimit": bucket(1, status="ServiceUnavailable")}}]
    start(proxy_config(port, backend_port(backend), routes=routes,
                       listener=limited(bucket(3))))
    assert [curl(port, "/tight")[0] for _ in range(2)] == [200, 503]
    assert [curl(port, "/other")[0] for _ in range(4)] == [200, 200, 200, 429]


def test_a_virtual_host_limit_is_one_bucket_for_its_routes(start, backend) -> None:
    port = free_port()
    config = proxy_config(port, backend_port(backend), routes=[
        {"match": {"prefix": "/a"}, "route": {"cluster_name": "up"}}],
        listener=limited(bucket(100)))
    vh = config["servers"][0]["routers"][0]["virtual_hosts"][0]
    vh["per_filter_config"] = {"local_ratelimit": bucket(2)}
    start(config)
    assert [curl(port, p)[0] for p in ("/a", "/b", "/a")] == [200, 200, 429]


def test_workers_share_one_exact_bucket(start, backend) -> None:
    """Two workers, one bucket of 5: over 40 connections (spread over both workers by
    the kernel) exactly 5 requests pass, not 5 per worker."""
    port = free_port()
    start(proxy_config(port, backend_port(backend), listener=limited(bucket(5))),
          "--workers", "2")
    before = backend.requests
    statuses = [curl(port)[0] for _ in range(40)]
    assert statuses.count(200) == 5 and statuses.count(429) == 35
    assert backend.requests - before == 5


def test_a_routes_bucket_is_keyed_by_its_place_not_its_objects() -> None:
    """Each worker translates a pushed route into objects of its own: the identity a
    route's bucket is keyed by is the same for the same route of two translations of
    one config, apart for two routes with equal limits, and one for the routes of a
    virtual host that carries the limit."""
    def to(prefix: str, **extra: Any) -> dict[str, Any]:
        return {"match": {"prefix": prefix}, "route": {"cluster_name": "up"}, **extra}
    def own() -> dict[str, Any]:
        return {"per_filter_config": {"local_ratelimit": bucket(2)}}
    config = {"router_config_name": "r", "virtual_hosts": [
        {"name": "a", "domains": ["a"], "routers": [to("/x", **own()), to("/y", **own())]},
        {"name": "b", "domains": ["b"], "routers": [to("/x"), to("/y")], **own()}]}

    def identities() -> list[int]:
        table = RouteTable(RouterConfiguration.model_validate(copy.deepcopy(config)))
        return [route_config_identity("local_ratelimit", r,
                                      r.per_filter_config["local_ratelimit"])
                for host in table.virtual_hosts for r in host.routes]

    first = identities()
    assert identities() == first
    assert len(set(first[:3])) == 3
    assert first[2] == first[3]


# -- gRPC with grpcio ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grpc_backend() -> Iterator[int]:
    with grpc_echo("Unary") as port:
        yield port


def test_a_limited_grpc_call_gets_resource_exhausted(start, grpc_backend) -> None:
    port = free_port()
    start(proxy_config(port, grpc_backend, downstream="Http2", upstream="Http2",
                       listener=limited(bucket(2))))
    with grpc.insecure_channel(f"127.0.0.1:{port}",
                               options=[("grpc.enable_http_proxy", 0)]) as channel:
        call = channel.unary_unary(f"/{SERVICE}/Unary")
        assert [call(b"x", timeout=GRPC_TIMEOUT) for _ in range(2)] == [b"x", b"x"]
        with pytest.raises(grpc.RpcError) as refused:
            call(b"x", timeout=GRPC_TIMEOUT)
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


# -- every protocol, through the kit's suite ---------------------------------------------------


class TestLocalRateLimitConformance(StreamFilterConformance):
    """A bucket of 2 per ``x-user``: the cases of one listener run in order, so the
    third request of ``flood`` is refused (the RPC protocols' server-busy status);
    requests without the header share the key ``""``, which no listener of the suite
    sends more than twice."""

    filter_type = "local_ratelimit"
    filter_config = bucket(2, key="%request_header_x-user%")
    cases = (
        FilterCase("a request goes through"),
        FilterCase("a key's first request goes through", headers={"x-user": "flood"}),
        FilterCase("a key's second request goes through", headers={"x-user": "flood"}),
        FilterCase("a key's third request is refused", headers={"x-user": "flood"}, status=429),
    )


# -- MOSN's flowControlFilter --------------------------------------------------------------------


def mosn_sample(name: str, listen: int, upstream: int) -> dict[str, Any]:
    """A MOSN sample config with its listener, upstream and admin moved to free ports."""
    config = json.loads((SAMPLES / name).read_text())
    listener = config["servers"][0]["listeners"][0]
    listener["address"] = f"127.0.0.1:{listen}"
    config["cluster_manager"]["clusters"][0]["hosts"] = [{"address": f"127.0.0.1:{upstream}"}]
    config["admin"]["address"]["socket_address"] = {"address": "127.0.0.1",
                                                    "port_value": free_port()}
    return config


def test_mosns_flowcontrol_sample_limits_its_resource(start, backend) -> None:
    """MOSN's ``flowcontrol-sample``: one request a second to ``/test``, the rest
    answered with the sample's action (500, ``blocked``); other paths are not limited."""
    port = free_port()
    start(mosn_sample("flowcontrol-sample/server_config.json", port, backend_port(backend)))
    began = time.monotonic()
    replies = [curl(port, "/test") for _ in range(SAMPLE_REQUESTS)]
    seconds = time.monotonic() - began
    passed = [r for r in replies if r[0] == 200]
    blocked = [r for r in replies if r[0] != 200]
    assert replies[0][0] == 200
    assert 1 <= len(passed) <= 1 + int(seconds) + 1  # one a second, and the bucket's first
    assert {(r[0], r[2]) for r in blocked} == {(500, "blocked")}
    assert [curl(port, "/free")[0] for _ in range(3)] == [200, 200, 200]


def test_flowcontrol_threshold_per_interval(start, backend) -> None:
    port = free_port()
    start(proxy_config(port, backend_port(backend), listener=limited({
        "global_switch": True, "limit_key_type": "PATH",
        "rules": [{"resource": "/api", "threshold": 2, "statIntervalInMs": 3_600_000}]},
        "flowControlFilter")))
    assert [curl(port, "/api?x=1")[0] for _ in range(3)] == [200, 200, 509]
    assert curl(port, "/other")[0] == 200


def test_flowcontrol_off_without_global_switch(start, backend) -> None:
    port = free_port()
    start(proxy_config(port, backend_port(backend), listener=limited({
        "rules": [{"resource": "/api", "threshold": 1, "statIntervalInMs": 3_600_000}]},
        "flowControlFilter")))
    assert [curl(port, "/api")[0] for _ in range(3)] == [200, 200, 200]


# -- bad configs -----------------------------------------------------------------------------------


def refused(config: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        validate(config)
    return exc.value.errors


def test_bad_limits_are_refused_with_their_path() -> None:
    config = proxy_config(1, 2, listener=limited({"token_bucket": {
        "max_tokens": 0, "fill_interval": "0s"}, "key": "%no_such_variable%"}))
    errors = refused(config)
    base = "servers[0].listeners[0].stream_filters[0].config"
    assert any(e.startswith(f"{base}.token_bucket.max_tokens") for e in errors), errors
    assert any(e.startswith(f"{base}.key") and "no_such_variable" in e for e in errors), errors


def test_per_route_configs_are_checked() -> None:
    routes = [{"match": {"prefix": "/a"}, "route": {"cluster_name": "up"},
               "per_filter_config": {"local_ratelimit": {"token_bucket": {"max_tokens": -1,
                                                                          "fill_interval": "1s"}},
                                     "payload_limit": {"max_entity_size": 10},
                                     "no_such_filter": {}}}]
    errors = refused(proxy_config(1, 2, routes=routes))
    where = "servers[0].routers[0].virtual_hosts[0].routers[0].per_filter_config"
    assert any(e.startswith(f"{where}.local_ratelimit.token_bucket.max_tokens")
               for e in errors), errors
    assert f"{where}.payload_limit: the payload_limit filter takes no per-route config" in errors
    assert any(e.startswith(f"{where}.no_such_filter: unknown stream filter") for e in errors)


def test_sentinel_rules_mosn_does_not_run_are_refused() -> None:
    config = proxy_config(1, 2, listener=limited({"global_switch": True, "rules": [
        {"resource": "/a", "threshold": 1, "controlBehavior": 1}]}, "flowControlFilter"))
    errors = refused(config)
    assert any(".rules[0].controlBehavior" in e for e in errors), errors

