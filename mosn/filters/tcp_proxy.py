"""The ``tcp_proxy`` network filter: each downstream connection is paired with one
upstream connection to a host of the chosen cluster, and bytes flow both ways.

As in Envoy and MOSN: the downstream is not read until the upstream is connected; a
failed connect tries another host (``max_connect_attempts``); a half-close is passed
on (each side's EOF becomes a ``write_eof`` on the other); when either side closes,
the other is closed after what it has queued is flushed. Each side's write buffer
back-pressures the other side's reads.

Each proxied pair counts as an active request on its host (for ``LB_LEAST_REQUEST``);
the cluster's ``max_connections`` circuit breaker closes a new client at once when
it is full (``upstream_cx_overflow``); connect failures and successes feed the
cluster's outlier detection.

Once the upstream is connected, the two connections are spliced
(``Connection.splice``): each read is written to the other side from the read
callback itself, with the same stats, idle timeout, buffer budget and backpressure,
and none of the session's calls per read. A session with access logs is not spliced
(it counts its own bytes per read).
"""

from __future__ import annotations

import ipaddress
import random
import time
from typing import Any, Callable, Iterable

from pydantic import Field, model_validator

from mosn.config.models import Model, MosnConfig
from mosn.config.types import Duration
from mosn.network.connection import Connection
from mosn.network.filter import (
    CloseType,
    ConnectionCallbacks,
    ConnectionEvent,
    FilterStatus,
    ReadFilter,
)
from mosn.observability.accesslog import AccessLog, ConnectionRecord
from mosn.plugins import BuildContext, Extension, hookimpl
from mosn.proxy.stream_info import NO_HEALTHY_UPSTREAM, UPSTREAM_CONNECTION_FAILURE
from mosn.upstream.cluster import Cluster, ClusterManager, Host, UpstreamConnection
from mosn.upstream.lb import LbContext

DEFAULT_IDLE_TIMEOUT = 3600.0
"""Seconds without traffic before a proxied pair is closed (Envoy's default); 0 = never."""

_STOP = FilterStatus.STOP


# -- config --------------------------------------------------------------------------------


class CidrRange(Model):
    address: str
    length: int = Field(default=32, ge=0, le=128)

    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(f"{self.address}/{self.length}", strict=False)


_GO_ROUTE_KEYS = {"sourceaddrs": "source_addrs", "destinationaddrs": "destination_addrs",
                  "sourceport": "source_port", "destinationport": "destination_port"}


class StreamRoute(Model):
    """A route of MOSN's ``StreamProxy``: connections matching every given field go to ``cluster``."""

    cluster: str
    source_addrs: list[CidrRange] = Field(default_factory=list)
    destination_addrs: list[CidrRange] = Field(default_factory=list)
    source_port: str = ""
    destination_port: str = ""

    @model_validator(mode="before")
    @classmethod
    def _go_field_names(cls, data: Any) -> Any:
        # MOSN's StreamRoute has no JSON tags, so Go reads "SourceAddrs" (any case).
        if isinstance(data, dict):
            data = {_GO_ROUTE_KEYS.get(k.lower(), k) if isinstance(k, str) else k: v
                    for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _check_ports(self) -> "StreamRoute":
        for port in (self.source_port, self.destination_port):
            if port:
                _port_range(port)
        return self


class WeightedCluster(Model):
    name: str
    weight: int = Field(ge=1)


class WeightedClusters(Model):
    clusters: list[WeightedCluster] = Field(min_length=1)


class TcpProxyConfig(Model):
    stat_prefix: str = ""
    cluster: str = ""
    weighted_clusters: WeightedClusters | None = None
    routes: list[StreamRoute] = Field(default_factory=list)
    idle_timeout: Duration = DEFAULT_IDLE_TIMEOUT
    max_connect_attempts: int | None = Field(default=None, ge=1)
    """Hosts tried before giving up; default: every host of the cluster once."""

    @model_validator(mode="after")
    def _has_a_cluster(self) -> "TcpProxyConfig":
        if not (self.cluster or self.weighted_clusters or self.routes):
            raise ValueError("set one of cluster, weighted_clusters or routes")
        return self

    def cross_check(self, root: MosnConfig, plugins: Any) -> Iterable[tuple[str, str]]:
        known = {c.name for c in root.cluster_manager.clusters}
        refs = [("cluster", self.cluster)] if self.cluster else []
        refs += [(f"routes[{i}].cluster", r.cluster) for i, r in enumerate(self.routes)]
        if self.weighted_clusters:
            refs += [(f"weighted_clusters.clusters[{i}].name", w.name)
                     for i, w in enumerate(self.weighted_clusters.clusters)]
        for path, name in refs:
            if name not in known:
                yield path, f"unknown cluster {name!r}"


def _port_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    if not low.isdigit() or (high and not high.isdigit()):
        raise ValueError(f"port {text!r} is not 'N' or 'N-M'")
    return int(low), int(high or low)


# -- runtime -------------------------------------------------------------------------------


class _Route:
    def __init__(self, route: StreamRoute, cluster: Cluster) -> None:
        self.cluster = cluster
        self.sources = [c.network() for c in route.source_addrs]
        self.destinations = [c.network() for c in route.destination_addrs]
        self.source_ports = _port_range(route.source_port) if route.source_port else None
        self.destination_ports = (_port_range(route.destination_port)
                                  if route.destination_port else None)

    def matches(self, source: Any, destination: Any) -> bool:
        return (_addr_in(source, self.sources, self.source_ports)
                and _addr_in(destination, self.destinations, self.destination_ports))


def _addr_in(sockaddr: Any, networks: list[Any], ports: tuple[int, int] | None) -> bool:
    if not networks and ports is None:
        return True
    if not isinstance(sockaddr, tuple):  # a Unix socket has no IP or port
        return False
    if networks and not any(ipaddress.ip_address(sockaddr[0]) in n for n in networks):
        return False
    return ports is None or ports[0] <= sockaddr[1] <= ports[1]


class TcpProxy:
    """Built once per filter chain; ``install`` runs for each new connection."""

    def __init__(self, config: TcpProxyConfig, clusters: ClusterManager,
                 access_logs: tuple[AccessLog, ...] = ()) -> None:
        def get(name: str) -> Cluster:
            cluster = clusters.get(name)
            assert cluster is not None, "cross_check refuses unknown clusters"
            return cluster

        self.routes = [_Route(r, get(r.cluster)) for r in config.routes]
        self.default = get(config.cluster) if config.cluster else None
        self.weighted: list[tuple[Cluster, int]] = []
        if config.weighted_clusters:
            self.weighted = [(get(w.name), w.weight) for w in config.weighted_clusters.clusters]
        self.idle_timeout = config.idle_timeout
        self.max_connect_attempts = config.max_connect_attempts
        self.access_logs = access_logs
        self._session = LoggedSession if access_logs else Session

    def install(self, conn: Connection) -> None:
        session = self._session(self, conn)
        conn.add_read_filter(session)
        conn.add_callbacks(session)
        if self.idle_timeout:
            conn.set_idle_timeout(self.idle_timeout)

    def pick_cluster(self, conn: Connection) -> Cluster | None:
        if self.routes:
            source, destination = conn.remote_address, conn.local_address
            for route in self.routes:
                if route.matches(source, destination):
                    return route.cluster
        if self.weighted:
            clusters, weights = zip(*self.weighted)
            return random.choices(clusters, weights)[0]
        return self.default


class Session(ReadFilter, ConnectionCallbacks):
    """One proxied pair: this object is the downstream's read filter and callbacks."""

    __slots__ = ("proxy", "downstream", "upstream", "cluster", "tried", "_upstream_side", "host")

    splices = True
    """Whether the pair is spliced once connected (``on_data`` only writes on)."""

    def __init__(self, proxy: TcpProxy, downstream: Connection) -> None:
        self.proxy = proxy
        self.downstream = downstream
        self.upstream: UpstreamConnection | None = None
        self.cluster: Cluster | None = None
        self.tried: list[Host] = []
        self._upstream_side = _UpstreamSide(self)
        self.host: Host | None = None
        """The host counted as having this session active."""

    # downstream read filter

    def on_new_connection(self) -> FilterStatus:
        self.cluster = self.proxy.pick_cluster(self.downstream)
        if self.cluster is None:
            self.downstream.close(CloseType.NO_FLUSH)
            return _STOP
        self.downstream.read_disable(True)  # until the upstream is connected
        self._connect()
        return _STOP

    def on_data(self, data: bytes) -> FilterStatus:
        self.upstream.write(data)  # type: ignore[union-attr]
        return _STOP

    def on_eof(self) -> bool:
        if self.upstream is not None:
            self.upstream.write_eof()
        return True

    # migration (ReadFilter): both directions stop at once (a byte stream has a safe
    # point anywhere); the upstream connection goes with the downstream one.

    def stop_for_migration(self, at_safe_point: Callable[[], None]) -> bool:
        upstream = self.upstream
        if upstream is None or not upstream.up or upstream.closing:
            return False
        upstream.read_disable(True)
        at_safe_point()
        return True

    def migration_peer(self) -> Any:
        return self.upstream

    def resume_after_migration(self) -> None:
        if self.upstream is not None and not self.upstream.closed:
            self.upstream.read_disable(False)

    # downstream callbacks

    def on_event(self, event: ConnectionEvent) -> None:
        if event.is_close:
            self._release()
            if self.upstream is not None:
                self.upstream.close(CloseType.FLUSH_WRITE)

    def _release(self) -> None:
        if self.host is not None:
            self.host.active_requests -= 1
            self.host = None

    def on_above_write_buffer_high_watermark(self) -> None:
        if self.upstream is not None:
            self.upstream.read_disable(True)

    def on_below_write_buffer_low_watermark(self) -> None:
        if self.upstream is not None:
            self.upstream.read_disable(False)

    # upstream

    def _connect(self) -> None:
        cluster = self.cluster
        assert cluster is not None
        attempts = self.proxy.max_connect_attempts or max(1, len(cluster.hosts))
        context = LbContext(downstream=self.downstream) if cluster.lb_uses_downstream else None
        host = cluster.choose_host(self.tried, context) if len(self.tried) < attempts else None
        if host is not None and not cluster.can_connect():
            cluster.count(cluster.more.upstream_cx_overflow)
            host = None
        self._release()
        if host is None:
            self.upstream = None
            self.downstream.close(CloseType.NO_FLUSH)
            return
        self.tried.append(host)
        self.host = host
        host.active_requests += 1
        upstream = self.upstream = cluster.connect(host)
        upstream.add_read_filter(self._upstream_side)
        upstream.add_callbacks(self._upstream_side)
        migrated = getattr(self.downstream, "migrated_peer", None)
        if migrated is not None:  # the session continues from the process an upgrade replaced
            upstream.adopt(migrated[0])
        else:
            upstream.start()

    def on_upstream_event(self, event: ConnectionEvent) -> None:
        if event is ConnectionEvent.CONNECTED:
            outlier = self.upstream.host.outlier  # type: ignore[union-attr]
            if outlier is not None:
                outlier.put_success()
            migrated = getattr(self.downstream, "migrated_peer", None)
            if migrated is not None:
                self.downstream.migrated_peer = None
                if migrated[1]:
                    self.downstream.write(migrated[1])  # read from upstream, not yet written
            self.downstream.read_disable(False)
            upstream = self.upstream
            if self.splices and upstream is not None:
                self.downstream.splice(upstream, self, self._upstream_side)
        elif event is ConnectionEvent.CONNECT_FAILED or event is ConnectionEvent.CONNECT_TIMEOUT:
            outlier = self.upstream.host.outlier  # type: ignore[union-attr]
            if outlier is not None:
                outlier.put_gateway_failure()
            if not self.downstream.closed:
                self._connect()
        else:
            self.downstream.close(CloseType.FLUSH_WRITE)


class LoggedSession(Session):
    """A session of a listener with access logs: its bytes, host and outcome are
    recorded, and a line is logged when the downstream connection closes (MOSN logs
    TCP proxy sessions too). Sessions of listeners without logs pay nothing."""

    __slots__ = ("record",)

    splices = False

    def __init__(self, proxy: TcpProxy, downstream: Connection) -> None:
        super().__init__(proxy, downstream)
        self._upstream_side = _LoggedUpstreamSide(self)
        self.record = ConnectionRecord(downstream)

    def on_data(self, data: bytes) -> FilterStatus:
        self.record.bytes_received += len(data)
        return super().on_data(data)

    def on_event(self, event: ConnectionEvent) -> None:
        super().on_event(event)
        if event.is_close:
            record = self.record
            record.cluster = self.cluster
            record.end_monotonic = time.monotonic()
            for access_log in self.proxy.access_logs:
                access_log.on_stream_end(record)  # type: ignore[arg-type]

    def _connect(self) -> None:
        super()._connect()
        if self.upstream is None and not self.record.response_flags:
            self.record.response_flags.append(
                UPSTREAM_CONNECTION_FAILURE if self.tried else NO_HEALTHY_UPSTREAM)

    def on_upstream_event(self, event: ConnectionEvent) -> None:
        if event is ConnectionEvent.CONNECTED and self.upstream is not None:
            self.record.connected(self.upstream.host, self.upstream)
        super().on_upstream_event(event)


class _UpstreamSide(ReadFilter, ConnectionCallbacks):
    """The upstream connection's read filter and callbacks, feeding the downstream."""

    __slots__ = ("session", "downstream")

    def __init__(self, session: Session) -> None:
        self.session = session
        self.downstream = session.downstream

    def on_data(self, data: bytes) -> FilterStatus:
        self.downstream.write(data)
        return _STOP

    def on_eof(self) -> bool:
        self.downstream.write_eof()
        return True

    def on_event(self, event: ConnectionEvent) -> None:
        self.session.on_upstream_event(event)

    def on_above_write_buffer_high_watermark(self) -> None:
        self.downstream.read_disable(True)

    def on_below_write_buffer_low_watermark(self) -> None:
        self.downstream.read_disable(False)


class _LoggedUpstreamSide(_UpstreamSide):
    __slots__ = ()

    def on_data(self, data: bytes) -> FilterStatus:
        self.session.record.bytes_sent += len(data)  # type: ignore[attr-defined]
        return super().on_data(data)


def build(config: TcpProxyConfig, context: BuildContext) -> Any:
    access_logs = tuple(o for o in context.observers if isinstance(o, AccessLog))
    return TcpProxy(config, context.cluster_manager, access_logs).install


@hookimpl
def mosn_network_filters() -> list[Extension]:
    return [Extension("tcp_proxy", build, TcpProxyConfig,
                      description="forward each connection's bytes to a cluster")]


__all__ = ["DEFAULT_IDLE_TIMEOUT", "LoggedSession", "Session", "StreamRoute", "TcpProxy",
           "TcpProxyConfig", "WeightedCluster", "WeightedClusters", "build"]
