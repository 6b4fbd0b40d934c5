"""The ``zookeeper`` cluster type: provider URLs, and a real ZooKeeper feeding a mosn
process while real Dubbo consumers call through it.

Providers are sofa-rpc-node + dubbo-remoting servers; the test registers them in
ZooKeeper itself, as a Dubbo provider does: an ephemeral znode named by its URL-encoded
URL under /dubbo/<interface>/providers.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, unquote

import pytest

from mosn.admin import MAX_REQUEST_BYTES
from mosn.config.models import ClusterConfig
from mosn.testing import Peer, free_port
from mosn_dubbo.registry import parse_provider, provider_url, providers_path
from mosn_dubbo.zookeeper import MAX_RETRY_DELAY, ZookeeperDiscovery, build_hosts, cluster_config
from dubbo_fixtures import node_peers, python3_dubbo, zookeeper  # noqa: F401 (fixtures)
from dubbo_peers import (
    SERVICE,
    VERSION,
    calls,
    python3_dubbo_zk_call,
    start_provider,
    start_traffic,
    traffic_summary,
)
from dubbo_zk import ZooKeeper

PATH = providers_path("/dubbo", SERVICE)
UPDATE_TIMEOUT = 20.0
"""Seconds for a registry change to reach mosn's cluster (a reconnection included)."""


def znode(port: int, **params: str) -> str:
    url = provider_url("127.0.0.1", port, SERVICE, version=VERSION, methods="echo,whoami",
                       application="echo", **params)
    return quote(url, safe="")


# -- provider URLs ----------------------------------------------------------------------


def test_a_provider_url_becomes_a_host() -> None:
    provider = parse_provider(znode(20880, group="blue", weight="50"))
    assert provider is not None
    assert (str(provider.address), provider.weight) == ("127.0.0.1:20880", 50)
    assert {k: provider.metadata[k] for k in ("interface", "version", "group", "methods")} == {
        "interface": SERVICE, "version": VERSION, "group": "blue", "methods": "echo,whoami"}


def test_defaults_of_a_provider_url() -> None:
    provider = parse_provider(quote(f"dubbo://10.0.0.1:20880/{SERVICE}?side=provider", safe=""))
    assert provider is not None
    assert provider.weight == 100  # Dubbo's default weight
    assert (provider.metadata["version"], provider.metadata["group"]) == ("", "")
    assert provider.metadata["interface"] == SERVICE


@pytest.mark.parametrize("name", [
    quote("rest://10.0.0.1:8080/x?side=provider", safe=""),  # another protocol
    znode(20880, enabled="false"),
    znode(20880, weight="0"),
    quote("dubbo://10.0.0.1/x", safe=""),  # no port
    "not a url",
])
def test_znodes_that_are_not_hosts(name: str) -> None:
    assert parse_provider(name) is None


def test_weights_are_capped_at_mosns_limit() -> None:
    assert parse_provider(znode(1, weight="1000")).weight == 128  # type: ignore[union-attr]


def test_one_host_per_address() -> None:
    hosts = build_hosts({"a": [znode(1), znode(2)], "b": [znode(1, group="x")]}, "dubbo")
    assert [str(h.address) for h in hosts] == ["127.0.0.1:1", "127.0.0.1:2"]


def test_the_cluster_config_is_checked() -> None:
    with pytest.raises(ValueError, match="cluster_config"):
        cluster_config(ClusterConfig(name="c", type="zookeeper"))
    with pytest.raises(ValueError, match="services"):
        cluster_config(ClusterConfig.model_validate(
            {"name": "c", "type": "zookeeper", "cluster_config": {"address": "x:1"}}))


def test_zookeeper_down_at_start_gives_no_host_yet() -> None:
    config = ClusterConfig.model_validate({"name": "c", "type": "zookeeper", "cluster_config": {
        "address": f"127.0.0.1:{free_port()}", "services": [SERVICE], "initial_timeout": "0.5s"}})
    assert ZookeeperDiscovery("c", cluster_config(config)).hosts == []


# -- a real ZooKeeper -------------------------------------------------------------------


class Registry:
    """What the providers write into ZooKeeper, through one session of the test's."""

    def __init__(self, address: str) -> None:
        from kazoo.client import KazooClient
        from kazoo.retry import KazooRetry

        # Reconnecting soon after an outage (kazoo's default backs off up to a minute).
        self.client = KazooClient(hosts=address, timeout=10.0, connection_retry=KazooRetry(
            max_tries=-1, max_delay=MAX_RETRY_DELAY))
        self.client.start(timeout=10)

    def register(self, port: int, **params: str) -> str:
        path = f"{PATH}/{znode(port, **params)}"
        self.client.create(path, b"", ephemeral=True, makepath=True)
        return path

    def unregister(self, path: str) -> None:
        self.client.delete(path)

    def close(self) -> None:
        self.client.stop()
        self.client.close()


@pytest.fixture(scope="module")
def providers(node_peers: None) -> Iterator[dict[str, Peer]]:
    peers = {name: start_provider(free_port(), name) for name in ("a", "b", "c")}
    yield peers
    for p in peers.values():
        p.stop()


@pytest.fixture
def registry(zookeeper: ZooKeeper) -> Iterator[Registry]:
    r = Registry(zookeeper.address)
    yield r
    if zookeeper.proc is None:
        zookeeper.start()
    r.client.delete(PATH, recursive=True)
    r.close()


def zk_config(port: int, zk: ZooKeeper, **cluster: Any) -> dict[str, Any]:
    return {
        "servers": [{
            "graceful_timeout": "1s",
            "routers": [{
                "router_config_name": "dubbo_routes",
                "virtual_hosts": [{"name": "dubbo", "domains": ["*"], "routers": [
                    {"match": {"headers": [{"name": "service", "value": SERVICE}]},
                     "route": {"cluster_name": "echo", "timeout": "5s"}}]}],
            }],
            "listeners": [{
                "name": "dubbo",
                "address": f"127.0.0.1:{port}",
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": "dubbo", "router_config_name": "dubbo_routes"}}]}],
            }],
        }],
        "cluster_manager": {"clusters": [{
            "name": "echo", "type": "zookeeper", **cluster,
            "cluster_config": {"address": zk.address, "services": [SERVICE],
                               "session_timeout": "10s"},
        }]},
    }


def cluster_hosts(mosn: Any) -> set[str]:
    (cluster,) = mosn.admin("/clusters").json()["clusters"]
    return {h["address"] for h in cluster["hosts"]}


def cluster_hosts_of(mosn: Any, name: str) -> set[str]:
    (cluster,) = [c for c in mosn.admin("/clusters").json()["clusters"] if c["name"] == name]
    return {h["address"] for h in cluster["hosts"]}


def wait_for_hosts(mosn: Any, *ports: int) -> None:
    wanted = {f"127.0.0.1:{p}" for p in ports}
    deadline = time.monotonic() + UPDATE_TIMEOUT
    while cluster_hosts(mosn) != wanted:
        if time.monotonic() > deadline:
            raise AssertionError(f"hosts {cluster_hosts(mosn)}, wanted {wanted}:\n{mosn.output()}")
        time.sleep(0.1)


def served_by(mosn: Any, port: int) -> None:
    """Return once the provider on ``port`` answered a request through mosn."""
    stat = f"cluster.echo.host.127.0.0.1:{port}.rq_total"
    deadline = time.monotonic() + UPDATE_TIMEOUT
    while not mosn.stats().get(stat):
        if time.monotonic() > deadline:
            raise AssertionError(f"no request reached 127.0.0.1:{port}:\n{mosn.output()}")
        time.sleep(0.1)


def whoami(port: int, n: int = 6, **fields: Any) -> set[str]:
    return {r.get("result", r.get("error")) for r in
            calls("sofa", port, [{"method": "whoami", **fields}] * n)}


def test_providers_come_and_go_while_traffic_flows(
        start_mosn: Callable[..., Any], zookeeper: ZooKeeper, registry: Registry,
        providers: dict[str, Peer]) -> None:
    a, b = providers["a"].port, providers["b"].port
    path_a = registry.register(a)
    port = free_port()
    mosn = start_mosn(zk_config(port, zookeeper))
    assert cluster_hosts(mosn) == {f"127.0.0.1:{a}"}  # read while the config loaded
    traffic = start_traffic("sofa", port, [{"method": "whoami"}], repeat=400, interval_ms=10)
    served_by(mosn, a)  # the consumer is calling (it starts slowly on a busy machine)
    registry.register(b)
    wait_for_hosts(mosn, a, b)
    served_by(mosn, b)
    registry.unregister(path_a)
    wait_for_hosts(mosn, b)
    time.sleep(1.0)
    summary = traffic_summary(traffic)
    assert summary["errors"] == [] and summary["ok"] == summary["calls"] == 400
    assert set(summary["results"]) == {"a", "b"}
    assert whoami(port) == {"b"}


def test_zookeeper_outage_keeps_hosts_and_updates_resume(
        start_mosn: Callable[..., Any], zookeeper: ZooKeeper, registry: Registry,
        providers: dict[str, Peer]) -> None:
    a, b, c = (providers[n].port for n in "abc")
    registry.register(a)
    port = free_port()
    mosn = start_mosn(zk_config(port, zookeeper))
    path_b = registry.register(b)
    wait_for_hosts(mosn, a, b)  # the watch is set
    zookeeper.stop()
    traffic = start_traffic("sofa", port, [{"method": "whoami"}], repeat=100, interval_ms=10)
    summary = traffic_summary(traffic)
    assert summary["errors"] == [] and summary["ok"] == 100
    assert set(summary["results"]) == {"a", "b"}
    assert cluster_hosts(mosn) == {f"127.0.0.1:{a}", f"127.0.0.1:{b}"}
    zookeeper.start()
    registry.register(c)
    registry.unregister(path_b)
    wait_for_hosts(mosn, a, c)
    assert whoami(port, 8) == {"a", "c"}


def test_subsets_by_registered_group(
        start_mosn: Callable[..., Any], zookeeper: ZooKeeper, registry: Registry,
        providers: dict[str, Peer]) -> None:
    """Provider metadata from the URL (group) drives subset load balancing."""
    a, b = providers["a"].port, providers["b"].port
    registry.register(a, group="green")
    registry.register(b, group="blue")
    port = free_port()
    config = zk_config(port, zookeeper, lb_subset_config={"subset_selectors": [["group"]]})
    routes = config["servers"][0]["routers"][0]["virtual_hosts"][0]["routers"]
    routes.insert(0, {
        "match": {"headers": [{"name": "service", "value": SERVICE},
                              {"name": "group", "value": "blue"}]},
        "route": {"cluster_name": "echo", "metadata_match": {"group": "blue"}}})
    mosn = start_mosn(config)
    wait_for_hosts(mosn, a, b)
    assert whoami(port, 6, group="blue") == {"b"}


def test_with_workers_the_parent_watches_and_workers_follow(
        start_mosn: Callable[..., Any], zookeeper: ZooKeeper, registry: Registry,
        providers: dict[str, Peer]) -> None:
    a, b = providers["a"].port, providers["b"].port
    registry.register(a)
    port = free_port()
    mosn = start_mosn(zk_config(port, zookeeper), "--workers", "2")
    assert whoami(port, 4) == {"a"}
    registry.register(b)
    deadline = time.monotonic() + UPDATE_TIMEOUT
    while whoami(port, 8) != {"a", "b"}:
        assert time.monotonic() < deadline, mosn.output()
        time.sleep(0.2)


# -- MOSN's dubbo_registry extends: publish and subscribe ------------------------------

CONSUMERS = f"/dubbo/{SERVICE}/consumers"


def registry_config(zk: ZooKeeper, server_port: int, client_port: int, api_port: int,
                    provider_port: int) -> dict[str, Any]:
    """mosn in front of a provider (listener ``server_port``, published) and for a
    consumer (listener ``client_port`` routing by the ``dubbo`` router configuration
    the subscriptions add to), with the registry's API on ``api_port``."""
    def listener(name: str, port: int, routes: str) -> dict[str, Any]:
        return {"name": name, "address": f"127.0.0.1:{port}", "filter_chains": [{"filters": [
            {"type": "proxy", "config": {"downstream_protocol": "dubbo",
                                         "router_config_name": routes}}]}]}

    return {
        "servers": [{
            "graceful_timeout": "1s",
            "routers": [
                {"router_config_name": "provider", "virtual_hosts": [
                    {"name": "provider", "domains": ["*"], "routers": [
                        {"match": {"headers": [{"name": "service", "value": ".*"}]},
                         "route": {"cluster_name": "local"}}]}]},
                {"router_config_name": "dubbo", "virtual_hosts": [
                    {"name": "dubbo", "domains": ["*"]}]},
            ],
            "listeners": [listener("provider", server_port, "provider"),
                          listener("consumer", client_port, "dubbo")],
        }],
        "cluster_manager": {"clusters": [
            {"name": "local", "hosts": [{"address": f"127.0.0.1:{provider_port}"}]}]},
        "extends": [{"type": "dubbo_registry", "config": {
            "enable": True, "server_port": server_port, "api_port": api_port,
            "session_timeout": "1s"}}],
    }


def registry_body(zk: ZooKeeper, **service: Any) -> dict[str, Any]:
    """A body of MOSN's registry API (the fields MOSN's own tests send)."""
    return {"registry": {"type": "zookeeper", "addr": zk.address},
            "service": {"interface": SERVICE, "methods": ["echo", "whoami"], "group": "",
                        "version": VERSION, "name": "EchoService", **service}}


def wait_for_children(registry: Registry, path: str, wanted: Callable[[list[str]], bool]
                      ) -> list[str]:
    deadline = time.monotonic() + UPDATE_TIMEOUT
    while True:
        children = (registry.client.get_children(path) if registry.client.exists(path)
                    else [])
        if wanted(children):
            return children
        assert time.monotonic() < deadline, f"{path}: {children}"
        time.sleep(0.05)


def mosn_consumers(registry: Registry) -> list[str]:
    return [url for url in map(unquote, registry.client.get_children(CONSUMERS))
            if "application=mosn&" in url]


def test_registry_extends_publishes_and_subscribes(
        start_mosn: Callable[..., Any], zookeeper: ZooKeeper, registry: Registry,
        providers: dict[str, Peer], python3_dubbo: Any) -> None:
    """MOSN's /pub puts mosn's listener in ZooKeeper, where a real Dubbo consumer
    finds it and calls through mosn; after its session expired mosn registers the
    node again; /unpub removes it; /sub makes mosn route to a provider registered in
    ZooKeeper and registers mosn as its consumer, across a config reload; /unsub
    removes the route and the consumer node; stopping mosn removes what it published."""
    import httpx

    server_port, client_port, api_port = free_port(), free_port(), free_port()
    mosn = start_mosn(registry_config(zookeeper, server_port, client_port, api_port,
                                      providers["a"].port))
    api = f"http://127.0.0.1:{api_port}"

    bad = registry_body(zookeeper, interfac="x")
    bad["registry"]["type"] = "nacos"
    answer = httpx.post(f"{api}/pub", json=bad)
    assert answer.status_code == 400 and answer.json()["err_no"] == 1
    assert "registry.type: registry type 'nacos'" in answer.json()["err_msg"]
    answer = httpx.post(f"{api}/pub", json={"registry": {"type": "zookeeper", "addr": "x"},
                                           "service": {"interface": SERVICE, "methods": [],
                                                       "verison": "1"}})
    assert answer.status_code == 400
    for reason in ("registry.addr: 'x' is not host:port", "service.methods:",
                   "did you mean 'version'"):
        assert reason in answer.json()["err_msg"]
    assert httpx.post(f"{api}/pub", content=b"{").status_code == 400
    assert httpx.post(f"{api}/pub", content=b" " * (MAX_REQUEST_BYTES + 1)).status_code == 413
    assert httpx.get(f"{api}/pub").status_code == 405
    assert not registry.client.exists(PATH)

    answer = httpx.post(f"{api}/pub", json=registry_body(zookeeper))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"err_no": 0, "err_msg": "publish success"}
    (published,) = registry.client.get_children(PATH)
    provider = parse_provider(published)
    assert provider is not None and str(provider.address) == f"127.0.0.1:{server_port}"
    assert (provider.metadata["version"], provider.metadata["methods"]) == (VERSION,
                                                                            "echo,whoami")
    found = python3_dubbo_zk_call(python3_dubbo, zookeeper.address, "whoami")
    assert found == {"ok": True, "result": "a", "provider": f"127.0.0.1:{server_port}"}

    os.kill(mosn.proc.pid, signal.SIGSTOP)  # silent past its session: ZooKeeper ends it
    try:
        wait_for_children(registry, PATH, lambda children: not children)
    finally:
        os.kill(mosn.proc.pid, signal.SIGCONT)
    assert wait_for_children(registry, PATH, bool) == [published]  # a new session has it

    answer = httpx.post(f"{api}/unpub", json=registry_body(zookeeper))
    assert answer.json() == {"err_no": 0, "err_msg": "unpub success"}
    assert registry.client.get_children(PATH) == []

    path_b = registry.register(providers["b"].port)
    answer = httpx.post(f"{api}/sub", json=registry_body(zookeeper))
    assert answer.json() == {"err_no": 0, "err_msg": "subscribe success"}, answer.text
    (consumer,) = mosn_consumers(registry)  # (python3-dubbo's may still be there)
    assert consumer.startswith(f"consumer://127.0.0.1/{SERVICE}?")
    assert whoami(client_port, 4) == {"b"}
    assert cluster_hosts_of(mosn, SERVICE) == {f"127.0.0.1:{providers['b'].port}"}
    assert httpx.post(mosn.url("/reload")).status_code == 200  # the file has no SERVICE
    assert cluster_hosts_of(mosn, SERVICE) == {f"127.0.0.1:{providers['b'].port}"}
    assert whoami(client_port, 2) == {"b"}

    answer = httpx.post(f"{api}/sub", json=registry_body(zookeeper, interface="local"))
    assert answer.status_code == 409 and "cluster named 'local'" in answer.text
    answer = httpx.post(f"{api}/unsub", json=registry_body(zookeeper, interface="a.B"))
    assert answer.status_code == 409 and "a.B is not subscribed to" in answer.text
    answer = httpx.post(f"{api}/unsub", json=registry_body(zookeeper))
    assert answer.json() == {"err_no": 0, "err_msg": "unsubscribe success"}
    assert mosn_consumers(registry) == []
    assert SERVICE not in {c["name"] for c in mosn.admin("/clusters").json()["clusters"]}
    assert whoami(client_port, 1) != {"b"}  # no route: the RPC engine's error reply

    assert httpx.post(f"{api}/pub", json=registry_body(zookeeper)).status_code == 200
    assert len(registry.client.get_children(PATH)) == 2  # b's and mosn's
    mosn.stop()  # mosn's node goes with its session
    assert registry.client.get_children(PATH) == [path_b.rpartition("/")[2]]
    registry.client.delete(f"/dubbo/{SERVICE}", recursive=True)
