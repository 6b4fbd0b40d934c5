"""The ``udp_proxy`` network filter (MOSN's, on a ``network: udp`` listener): each
session (the datagrams of one client address) gets a UDP socket of its own to a host
of the chosen cluster; datagrams go to the host, and the host's replies go back to
the client from the listener's address. The session ends after ``idle_timeout``
without a datagram either way (MOSN's default: 5 s), and its socket with it.

The config is MOSN's ``StreamProxy``, as for ``tcp_proxy``: ``cluster``, or
``routes`` by source and destination address and port, or ``weighted_clusters``.
Each session counts as a connection of its cluster and host (``upstream_cx_*``,
``LB_LEAST_REQUEST``'s active count, the ``max_connections`` circuit breaker).
"""

from __future__ import annotations

import logging
from typing import Any

from mosn.config.base import Unsupported
from mosn.config.types import Duration
from mosn.filters.tcp_proxy import TcpProxy, TcpProxyConfig
from mosn.network.filter import ConnectionCallbacks, ConnectionEvent, FilterStatus, ReadFilter
from mosn.network.udp import UdpSession, UdpUpstream
from mosn.observability.ratelimit import RateLimitedLog
from mosn.plugins import BuildContext, Extension, hookimpl
from mosn.upstream.cluster import Cluster, Host

log = logging.getLogger("mosn.udp_proxy")
_upstream_errors = RateLimitedLog(log)

DEFAULT_UDP_IDLE_TIMEOUT = 5.0
"""Seconds without a datagram before a session ends (MOSN's ``DefaultUDPIdleTimeout``)."""

_STOP = FilterStatus.STOP


class UdpProxyConfig(TcpProxyConfig):
    idle_timeout: Duration = DEFAULT_UDP_IDLE_TIMEOUT
    max_connect_attempts: Unsupported = None
    """A UDP socket connects without asking the host: nothing to try again."""


class UdpProxy(TcpProxy):
    """Built once per filter chain; ``install`` runs for each new session."""

    def install(self, session: Any) -> None:
        proxied = UdpProxySession(self, session)
        session.add_read_filter(proxied)
        session.add_callbacks(proxied)
        session.set_idle_timeout(self.idle_timeout or DEFAULT_UDP_IDLE_TIMEOUT)


class UdpProxySession(ReadFilter, ConnectionCallbacks):
    """One client's datagrams to one host, and the replies back."""

    __slots__ = ("proxy", "downstream", "upstream", "cluster", "host")

    def __init__(self, proxy: UdpProxy, downstream: UdpSession) -> None:
        self.proxy = proxy
        self.downstream = downstream
        self.upstream: UdpUpstream | None = None
        self.cluster: Cluster | None = None
        self.host: Host | None = None

    def on_new_connection(self) -> FilterStatus:
        cluster = self.proxy.pick_cluster(self.downstream)  # type: ignore[arg-type]
        host = cluster.choose_host() if cluster is not None else None
        if cluster is None or host is None:
            self.downstream.close()
            return _STOP
        if not cluster.can_connect():
            cluster.count(cluster.more.upstream_cx_overflow)
            self.downstream.close()
            return _STOP
        address = host.address
        try:
            self.upstream = UdpUpstream(self.downstream.loop, address.host, address.port,
                                        self._from_upstream, self._upstream_failed, cluster.mark)
        except OSError as exc:
            _upstream_errors.log(logging.ERROR, "cluster %s: cannot open a UDP socket to %s: "
                                 "%s", cluster.name, address, exc)
            cluster.count(cluster.stats.upstream_cx_connect_fail)
            self.downstream.close()
            return _STOP
        self.cluster, self.host = cluster, host
        values = cluster.store.values
        values[cluster.stats.upstream_cx_total] += 1
        values[cluster.stats.upstream_cx_active] += 1
        values[host.stats.cx_total] += 1  # type: ignore[union-attr]
        values[host.stats.cx_active] += 1  # type: ignore[union-attr]
        host.active_requests += 1
        return _STOP

    def on_data(self, data: bytes) -> FilterStatus:
        upstream, cluster = self.upstream, self.cluster
        if upstream is not None and cluster is not None and upstream.send(data):
            cluster.count(cluster.stats.upstream_cx_tx_bytes_total, len(data))
        return _STOP

    def _from_upstream(self, data: bytes) -> None:
        cluster = self.cluster
        assert cluster is not None
        cluster.count(cluster.stats.upstream_cx_rx_bytes_total, len(data))
        self.downstream.write(data)

    def _upstream_failed(self, exc: OSError) -> None:
        # An ICMP error for an earlier datagram (the host does not listen): the session
        # goes on, as a client of the host directly would see nothing either.
        name = self.cluster.name if self.cluster is not None else "?"
        _upstream_errors.log(logging.WARNING, "cluster %s: host %s: %s", name, self.host, exc)

    def on_event(self, event: ConnectionEvent) -> None:
        if not event.is_close or self.upstream is None:
            return
        self.upstream.close()
        self.upstream = None
        cluster, host = self.cluster, self.host
        values = cluster.store.values  # type: ignore[union-attr]
        values[cluster.stats.upstream_cx_active] -= 1  # type: ignore[union-attr]
        values[cluster.stats.upstream_cx_destroy_local] += 1  # type: ignore[union-attr]
        values[host.stats.cx_active] -= 1  # type: ignore[union-attr]
        host.active_requests -= 1  # type: ignore[union-attr]


def build(config: UdpProxyConfig, context: BuildContext) -> Any:
    return UdpProxy(config, context.cluster_manager).install


@hookimpl
def mosn_network_filters() -> list[Extension]:
    return [Extension("udp_proxy", build, UdpProxyConfig,
                      description="forward each UDP client's datagrams to a cluster, and back")]
