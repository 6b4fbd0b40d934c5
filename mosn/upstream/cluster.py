"""Hosts, clusters and the cluster manager; the built-in static cluster type.

A cluster is a named set of hosts with a load balancer and the settings for
connecting to them. Its hosts come from its cluster type (a plugin): ``SIMPLE`` and
``STATIC`` (MOSN's names) take them from the config as written.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from mosn.config.models import ClusterConfig, MosnConfig
from mosn.config.types import Address
from mosn.network.connection import DEFAULT_BUFFER_LIMIT, ClientConnection
from mosn.network.filter import ConnectionEvent
from mosn.observability.stats import CLUSTER_STATS, HOST_STATS, Scope, StatsStore
from mosn.plugins import BuildContext, Extension, PluginHost, hookimpl


@dataclass(eq=False, slots=True)
class Host:
    address: Address
    weight: int = 1
    hostname: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    healthy: bool = True
    stats: Scope | None = None

    def __str__(self) -> str:
        return str(self.address)


class UpstreamConnection(ClientConnection):
    """A connection to one host of a cluster, counted in the cluster's and host's stats."""

    def __init__(self, cluster: "Cluster", host: Host) -> None:
        s = cluster.stats
        super().__init__(
            asyncio.get_running_loop(),
            buffer_limit=cluster.buffer_limit,
            stats=cluster.store.values,
            rx_index=s.upstream_cx_rx_bytes_total,
            tx_index=s.upstream_cx_tx_bytes_total,
        )
        self.cluster = cluster
        self.host = host
        self._stats[s.upstream_cx_total] += 1
        self._stats[host.stats.cx_total] += 1  # type: ignore[union-attr]

    def start(self) -> "UpstreamConnection":
        self.connect(self.host.address, self.cluster.connect_timeout)
        return self

    def on_connected(self) -> None:
        self._stats[self.cluster.stats.upstream_cx_active] += 1
        self._stats[self.host.stats.cx_active] += 1  # type: ignore[union-attr]

    def on_closed(self, event: ConnectionEvent) -> None:
        v, s, hs = self._stats, self.cluster.stats, self.host.stats
        if event is ConnectionEvent.CONNECT_FAILED or event is ConnectionEvent.CONNECT_TIMEOUT:
            v[s.upstream_cx_connect_fail] += 1
            v[hs.cx_connect_fail] += 1  # type: ignore[union-attr]
            if event is ConnectionEvent.CONNECT_TIMEOUT:
                v[s.upstream_cx_connect_timeout] += 1
            return
        if self.transport is None:  # closed by us before it connected
            return
        v[s.upstream_cx_active] -= 1
        v[hs.cx_active] -= 1  # type: ignore[union-attr]
        if event is ConnectionEvent.LOCAL_CLOSE:
            v[s.upstream_cx_destroy_local] += 1
        else:
            v[s.upstream_cx_destroy_remote] += 1
        if self.close_error is not None:
            v[s.upstream_cx_destroy_with_error] += 1


class Cluster:
    def __init__(self, config: ClusterConfig, hosts: list[Host], plugins: PluginHost,
                 store: StatsStore) -> None:
        self.name = config.name
        self.config = config
        self.store = store
        self.stats = store.scope(f"cluster.{config.name}", CLUSTER_STATS)
        self.connect_timeout = config.connect_timeout
        self.buffer_limit = config.conn_buffer_limit_bytes or DEFAULT_BUFFER_LIMIT
        lb = plugins.get("load_balancer", config.lb_type)
        assert lb is not None, "the loader checks lb_type"
        self._lb_factory = lb.factory
        self.hosts: list[Host] = []
        self.lb: Any = None
        self.set_hosts(hosts)

    def set_hosts(self, hosts: list[Host]) -> None:
        for host in hosts:
            if host.stats is None:
                host.stats = self.store.scope(f"cluster.{self.name}.host.{host.address}", HOST_STATS)
        self.hosts = list(hosts)
        self.lb = self._lb_factory(self.hosts, self.config)

    def choose_host(self, exclude: Any = ()) -> Host | None:
        host = self.lb.choose_host(exclude)
        if host is None:
            self.store.values[self.stats.upstream_cx_none_healthy] += 1  # type: ignore[index]
        return host

    def connect(self, host: Host) -> UpstreamConnection:
        """A new connection to ``host``; add callbacks, then ``start()`` it."""
        return UpstreamConnection(self, host)


class ClusterManager:
    def __init__(self, config: MosnConfig, plugins: PluginHost, store: StatsStore) -> None:
        self.clusters: dict[str, Cluster] = {}
        context = BuildContext(host=plugins, stats=store)
        for cc in config.cluster_manager.clusters:
            ctype = plugins.get("cluster_type", cc.type)
            assert ctype is not None, "the loader checks cluster types"
            hosts = ctype.factory(cc, context)
            self.clusters[cc.name] = Cluster(cc, hosts, plugins, store)

    def get(self, name: str) -> Cluster | None:
        return self.clusters.get(name)


def static_hosts(config: ClusterConfig, context: BuildContext) -> list[Host]:
    return [
        Host(h.address, weight=h.weight, hostname=h.hostname, metadata=h.lb_metadata)
        for h in config.hosts
    ]


@hookimpl
def mosn_cluster_types() -> list[Extension]:
    doc = "hosts listed in the config"
    return [
        Extension("SIMPLE", static_hosts, description=doc),
        Extension("STATIC", static_hosts, description=doc),
    ]
