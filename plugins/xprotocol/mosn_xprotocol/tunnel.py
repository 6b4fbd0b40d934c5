"""No-unpack forwarding: any protocol's bytes carried opaquely between two mosn
instances over one TCP connection per client connection (MOSN's X-protocol "no
unpacking" mode), with the routing and load balancing that need no frame decoded.

``tunnel_entry`` (on the caller's side) is ``tcp_proxy`` to a cluster of far mosn
instances that first writes a *tunnel header* naming the cluster the far side should
use; ``tunnel_exit`` (on the far side) reads that header, checks the name against the
clusters it allows, and is ``tcp_proxy`` to that cluster from there on. Hosts are
chosen per connection by each cluster's load balancer; the protocol inside is never
looked at, so one tunnel carries bolt, Dubbo, a private protocol or TLS alike.

The tunnel header (mosn's own; MOSN's reverse-tunnel header in
``pkg/filter/network/tunnel`` is a different thing, for agents dialling in)::

    "XTNL" (4)  version = 1 (1)  name length N (1)  cluster name (N bytes, UTF-8)
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Literal

from pydantic import Field, field_validator, model_validator

from mosn.config.base import Model
from mosn.config.types import Duration
from mosn.filters.tcp_proxy import DEFAULT_IDLE_TIMEOUT, Session, TcpProxy, TcpProxyConfig
from mosn.network.connection import Connection
from mosn.network.filter import CloseType, ConnectionEvent, FilterStatus, ReadFilter
from mosn.plugins import BuildContext
from mosn_xprotocol.h2tunnel import H2TunnelEntry, H2TunnelExit

log = logging.getLogger("mosn.xprotocol.tunnel")

TUNNEL_MAGIC = b"XTNL"
TUNNEL_VERSION = 1
MAX_CLUSTER_NAME = 255
"""The name's length is one byte."""
MAX_TUNNEL_HEADER = len(TUNNEL_MAGIC) + 2 + MAX_CLUSTER_NAME
DEFAULT_HANDSHAKE_TIMEOUT = 5.0
"""Seconds the far side waits for a tunnel header before closing the connection."""


class TunnelHeaderError(ValueError):
    pass


def encode_tunnel_header(cluster: str) -> bytes:
    name = cluster.encode()
    if not 1 <= len(name) <= MAX_CLUSTER_NAME:
        raise TunnelHeaderError(
            f"a cluster name in a tunnel header is 1 to {MAX_CLUSTER_NAME} bytes")
    return TUNNEL_MAGIC + bytes([TUNNEL_VERSION, len(name)]) + name


def decode_tunnel_header(data: bytes | bytearray) -> tuple[str, int] | None:
    """(cluster name, header size) once ``data`` holds a whole header; None before."""
    head = bytes(data[:len(TUNNEL_MAGIC) + 2])
    if head[:len(TUNNEL_MAGIC)] != TUNNEL_MAGIC[:len(head)]:
        raise TunnelHeaderError("not a tunnel header")
    if len(head) < len(TUNNEL_MAGIC) + 2:
        return None
    if head[len(TUNNEL_MAGIC)] != TUNNEL_VERSION:
        raise TunnelHeaderError(f"tunnel header version {head[len(TUNNEL_MAGIC)]}")
    size = len(head) + head[-1]
    if head[-1] == 0:
        raise TunnelHeaderError("a tunnel header with no cluster name")
    if len(data) < size:
        return None
    try:
        return bytes(data[len(head):size]).decode(), size
    except UnicodeDecodeError:
        raise TunnelHeaderError("a cluster name that is not UTF-8") from None


# -- config --------------------------------------------------------------------------------


def _known_clusters(root: Any) -> set[str]:
    return {c.name for c in root.cluster_manager.clusters}


Carrier = Literal["tcp", "http2"]
"""How a tunnel travels: its own TCP connection with the tunnel header, or a stream of
a shared HTTP/2 connection (:mod:`mosn_xprotocol.h2tunnel`)."""


class TunnelEntryConfig(Model):
    cluster: str
    """The far mosn instances (their ``tunnel_exit`` listeners)."""
    destination: str
    """The cluster, on the far side, the bytes go to."""
    over: Carrier = "tcp"
    idle_timeout: Duration = DEFAULT_IDLE_TIMEOUT
    max_connect_attempts: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _http2_shares_its_connection(self) -> "TunnelEntryConfig":
        if self.over == "http2" and self.max_connect_attempts is not None:
            raise ValueError("max_connect_attempts: a TCP tunnel's; an HTTP/2 tunnel's "
                             "connection is shared by its streams, and one that fails closes "
                             "them")
        return self

    @field_validator("destination")
    @classmethod
    def _fits_the_header(cls, value: str) -> str:
        encode_tunnel_header(value)
        return value

    def cross_check(self, root: Any, plugins: Any) -> Iterable[tuple[str, str]]:
        if self.cluster not in _known_clusters(root):
            yield "cluster", f"unknown cluster {self.cluster!r}"


class TunnelExitConfig(Model):
    clusters: list[str] = Field(min_length=1)
    """The clusters a tunnel may name; a tunnel naming another is closed."""
    handshake_timeout: Duration = DEFAULT_HANDSHAKE_TIMEOUT
    idle_timeout: Duration = DEFAULT_IDLE_TIMEOUT
    max_connect_attempts: int | None = Field(default=None, ge=1)
    over: Carrier = "tcp"

    @model_validator(mode="after")
    def _http2_has_no_handshake(self) -> "TunnelExitConfig":
        if self.over == "http2" and "handshake_timeout" in self.model_fields_set:
            raise ValueError("handshake_timeout: a TCP tunnel's wait for its header; an "
                             "HTTP/2 tunnel names its cluster in its CONNECT request")
        return self

    def cross_check(self, root: Any, plugins: Any) -> Iterable[tuple[str, str]]:
        known = _known_clusters(root)
        for i, name in enumerate(self.clusters):
            if name not in known:
                yield f"clusters[{i}]", f"unknown cluster {name!r}"


# -- runtime -------------------------------------------------------------------------------


class _PrefixedSession(Session):
    """A tcp_proxy session that writes ``prefix`` to the upstream as soon as it is
    connected, before any byte of the downstream's."""

    __slots__ = ("prefix",)

    def __init__(self, proxy: TcpProxy, downstream: Connection, prefix: bytes) -> None:
        super().__init__(proxy, downstream)
        self.prefix = prefix

    def on_upstream_event(self, event: ConnectionEvent) -> None:
        if event is ConnectionEvent.CONNECTED and self.prefix:
            self.upstream.write(self.prefix)  # type: ignore[union-attr]
        super().on_upstream_event(event)


def _start(proxy: TcpProxy, conn: Connection, prefix: bytes) -> _PrefixedSession:
    session = _PrefixedSession(proxy, conn, prefix)
    conn.add_read_filter(session)
    conn.add_callbacks(session)
    if proxy.idle_timeout:
        conn.set_idle_timeout(proxy.idle_timeout)
    return session


class TunnelEntry:
    def __init__(self, config: TunnelEntryConfig, context: BuildContext) -> None:
        self.proxy = TcpProxy(TcpProxyConfig(
            cluster=config.cluster, idle_timeout=config.idle_timeout,
            max_connect_attempts=config.max_connect_attempts), context.cluster_manager)
        self.header = encode_tunnel_header(config.destination)

    def install(self, conn: Connection) -> None:
        _start(self.proxy, conn, self.header)


class TunnelExit:
    def __init__(self, config: TunnelExitConfig, context: BuildContext) -> None:
        self.proxies = {name: TcpProxy(TcpProxyConfig(
            cluster=name, idle_timeout=config.idle_timeout,
            max_connect_attempts=config.max_connect_attempts), context.cluster_manager)
            for name in config.clusters}
        self.handshake_timeout = config.handshake_timeout

    def install(self, conn: Connection) -> None:
        conn.add_read_filter(_Handshake(self, conn))
        if self.handshake_timeout:
            conn.set_idle_timeout(self.handshake_timeout)


class _Handshake(ReadFilter):
    """Holds a new tunnel's bytes until its header is whole, then hands the connection
    to a tcp_proxy session for the cluster it names (the bytes after the header go
    first, once the upstream is connected)."""

    __slots__ = ("exit", "conn", "buffer")

    def __init__(self, exit: TunnelExit, conn: Connection) -> None:
        self.exit = exit
        self.conn = conn
        self.buffer = bytearray()

    def on_data(self, data: bytes) -> FilterStatus:
        self.buffer += data
        try:
            decoded = decode_tunnel_header(self.buffer)
        except TunnelHeaderError as exc:
            return self._refuse(str(exc))
        if decoded is None:
            return FilterStatus.STOP
        cluster, size = decoded
        proxy = self.exit.proxies.get(cluster)
        if proxy is None:
            return self._refuse(f"the tunnel names cluster {cluster!r}, which is not allowed")
        conn = self.conn
        conn.read_filters.remove(self)
        _start(proxy, conn, bytes(self.buffer[size:])).on_new_connection()
        return FilterStatus.STOP

    def on_eof(self) -> bool:
        return False

    def _refuse(self, reason: str) -> FilterStatus:
        log.info("tunnel from %s refused: %s", self.conn.remote_address, reason)
        self.conn.close(CloseType.NO_FLUSH)
        return FilterStatus.STOP


def build_entry(config: TunnelEntryConfig, context: BuildContext) -> Any:
    if config.over == "http2":
        return H2TunnelEntry(context.cluster_manager.get(config.cluster), config.destination,
                             config.idle_timeout or None).install
    return TunnelEntry(config, context).install


def build_exit(config: TunnelExitConfig, context: BuildContext) -> Any:
    if config.over == "http2":
        return H2TunnelExit({name: context.cluster_manager.get(name) for name in config.clusters},
                            config.idle_timeout or None, config.max_connect_attempts).install
    return TunnelExit(config, context).install
