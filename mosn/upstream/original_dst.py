"""The ``ORIGINAL_DST`` cluster type and its ``LB_ORIGINAL_DST`` load balancer (MOSN's
and Envoy's): the host of each connection or request is where the downstream
connection was going before it was intercepted (``conn.original_destination``, from
the ``original_dst`` listener filter), or, for HTTP with ``original_dst_lb_config:
{use_header: true}``, the ``ip:port`` in a request header (``host`` by default,
port 80 when it has none).

Hosts are made as destinations come up and forgotten when no connection or request
picked them for a whole ``cleanup_interval`` and none is in flight; the connection
pools of a forgotten host drain. A request with no destination (the client reached
the listener directly) gets no host: the proxy answers "no healthy upstream" and a
TCP connection is closed. Each worker keeps its own hosts; their per-host stats are
summed in ``cluster.<name>.original_dst_hosts.*``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any

from mosn.config.models import LB_ORIGINAL_DST, ORIGINAL_DST, ClusterConfig
from mosn.config.types import Address
from mosn.observability.stats import HOST_STATS
from mosn.plugins import BuildContext, Extension, hookimpl
from mosn.upstream.cluster import Host

log = logging.getLogger("mosn.upstream")

DEFAULT_HEADER = "host"
"""MOSN's: the header read when ``header_name`` is empty."""
DEFAULT_PORT = 80
"""MOSN's: the port of a header address that names none."""
LOCALHOST = "127.0.0.1"


def original_dst_hosts(config: ClusterConfig, context: BuildContext) -> list[Host]:
    return []  # every host comes from a connection's destination


class OriginalDstLoadBalancer:
    """Picks (making it when new) the host of the downstream connection's original
    destination, or of a request header's address."""

    uses_downstream = True
    """The proxy gives it the downstream connection and the request's headers."""

    def __init__(self, hosts: list[Host], config: ClusterConfig) -> None:
        lb = config.original_dst_lb_config
        self.header = (lb.header_name or DEFAULT_HEADER).lower() if lb.use_header else ""
        self.replace_local = lb.replace_local
        self.interval = config.cleanup_interval
        self.hosts: dict[tuple[str, int], Host] = {}
        self._used: set[Host] = set()
        self._cluster: Any = None
        self._stats: Any = None
        self._timer: asyncio.TimerHandle | None = None

    def attach(self, cluster: Any) -> None:
        """The cluster it serves (once, while the config is loaded): its TLS, its
        host-removal callbacks and a stats row for its hosts."""
        self._cluster = cluster
        self._stats = cluster.store.scope(f"cluster.{cluster.name}.original_dst_hosts",
                                          HOST_STATS)

    def choose_host(self, exclude: Any = (), context: Any = None) -> Host | None:
        destination = self._destination(context)
        if destination is None:
            return None
        if self.replace_local:
            destination = (LOCALHOST, destination[1])
        host = self.hosts.get(destination)
        if host is None:
            host = self.hosts[destination] = self._new_host(destination)
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(self.interval, self._sweep)
        self._used.add(host)
        return host

    def _destination(self, context: Any) -> tuple[str, int] | None:
        if context is None:
            return None
        if self.header and context.headers is not None:
            value = context.headers.get(self.header)
            if value:
                return _header_address(value)
        conn = context.downstream
        return getattr(conn, "original_destination", None) if conn is not None else None

    def _new_host(self, destination: tuple[str, int]) -> Host:
        cluster = self._cluster
        return Host(Address(host=destination[0], port=destination[1]), stats=self._stats,
                    tls=cluster.tls if cluster is not None else None)

    def _sweep(self) -> None:
        """Forget the hosts nobody picked since the last sweep and nothing uses."""
        self._timer = None
        gone = [h for h in self.hosts.values()
                if h not in self._used and h.active_requests <= 0]
        self._used.clear()
        for host in gone:
            del self.hosts[(host.address.host, host.address.port)]
        if gone and self._cluster is not None:
            for callback in self._cluster.on_hosts_removed:
                callback(gone)
        if self.hosts:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self._sweep)


def _header_address(value: str) -> tuple[str, int] | None:
    """``ip:port``, ``[v6]:port`` or a bare IP (port 80); None for anything else (a
    host name: the header names an address, it is not resolved)."""
    value = value.strip()
    host, port = value, DEFAULT_PORT
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1:]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                return None
            port = int(rest[1:])
    elif value.count(":") == 1:
        host, _, text = value.partition(":")
        if not text.isdigit():
            return None
        port = int(text)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if not 0 < port < 65536:
        return None
    return str(ip), port


@hookimpl
def mosn_cluster_types() -> list[Extension]:
    return [Extension(ORIGINAL_DST, original_dst_hosts,
                      description="hosts are the connections' original destinations")]


@hookimpl
def mosn_load_balancers() -> list[Extension]:
    return [Extension(LB_ORIGINAL_DST, OriginalDstLoadBalancer,
                      description="the host a connection was going to (or a header names)")]
