"""The ``zookeeper`` cluster type: provider URLs, and a real ZooKeeper feeding a mosn
process while real Dubbo consumers call through it.

Providers are sofa-rpc-node + dubbo-remoting servers; the test registers them in
ZooKeeper itself, as a Dubbo provider does: an ephemeral znode named by its URL-encoded
URL under /dubbo/<interface>/providers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest

from mosn.config.models import ClusterConfig
from mosn.testing import Peer, free_port
from mosn_dubbo.registry import parse_provider, provider_url, providers_path
from mosn_dubbo.zookeeper import ZookeeperDiscovery, build_hosts, cluster_config
from dubbo_fixtures import node_peers, zookeeper  # noqa: F401 (fixtures)
from dubbo_peers import (
    SERVICE,
    VERSION,
    calls,
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

        self.client = KazooClient(hosts=address, timeout=10.0)
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


def wait_for_hosts(mosn: Any, *ports: int) -> None:
    wanted = {f"127.0.0.1:{p}" for p in ports}
    deadline = time.monotonic() + UPDATE_TIMEOUT
    while cluster_hosts(mosn) != wanted:
        if time.monotonic() > deadline:
            raise AssertionError(f"hosts {cluster_hosts(mosn)}, wanted {wanted}:\n{mosn.output()}")
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
    time.sleep(1.0)
    registry.register(b)
    wait_for_hosts(mosn, a, b)
    time.sleep(1.0)
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
