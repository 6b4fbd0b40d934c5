"""The ``proxy`` network filter: an L7 protocol's server codec on each downstream
connection, a :class:`DownstreamStream` for each request.

With ``downstream_protocol: Auto`` the protocol the TLS handshake chose by ALPN
(``h2``, ``http/1.1``) serves the connection; without one, the first bytes choose
the protocol among the installed protocol plugins' matchers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, Callable

from mosn.config.routers import route_timeout
from mosn.network.connection import Connection
from mosn.network.filter import (
    CloseType,
    ConnectionCallbacks,
    ConnectionEvent,
    FilterStatus,
    ReadFilter,
)
from mosn.plugins import BuildContext, Extension, PluginHost, hookimpl
from mosn.proxy.config import AUTO, ProxyConfig
from mosn.proxy.deadlines import Deadlines
from mosn.proxy.guard import GuardedProtocol
from mosn.proxy.observer import (
    MAX_CONNECTION_DURATION,
    REFUSED_AFTER_GOAWAY,
    REQUEST_HEADERS_TIMEOUT,
    ObserverHooks,
)
from mosn.proxy.semantics import ProtocolSemantics, semantics_of
from mosn.proxy.stream import DownstreamStream
from mosn.proxy.stream_filter import StreamFilter
from mosn.router import Route
from mosn.stream.errors import ProtocolErrors
from mosn.stream.pool import DEFAULT_IDLE_TIMEOUT, ConnectionPool
from mosn.stream.types import MatchResult, Protocol, go_away

log = logging.getLogger("mosn.proxy")

MAX_DETECT_BYTES = 64
"""Bytes read to recognise a protocol under Auto before giving up (every known
protocol's magic or method token is far shorter)."""
IDLE_CHECKS_PER_TIMEOUT = 4
"""Sweeps of the streams per ``stream_idle_timeout``: one timer for all of a proxy's
streams instead of one re-armed on every byte; an idle stream ends between 1x and
1.25x its timeout."""


class ProxyContext:
    """What every stream of one ``proxy`` filter shares (one per filter chain and worker)."""

    def __init__(self, config: ProxyConfig, context: BuildContext) -> None:
        plugins: PluginHost = context.host
        self.protocols: dict[str, Protocol] = {}
        for name in plugins.names("protocol"):
            ext = plugins.get("protocol", name)
            assert ext is not None
            protocol = ext.factory(_protocol_config(ext, config))
            errors = ProtocolErrors(name, plugins.plugin_of("protocol", name), context.stats)
            if hasattr(protocol, "errors"):
                protocol.errors = errors  # it answers its codec's failures itself (RPC)
            else:
                protocol = GuardedProtocol(protocol, errors)
            self.protocols[name] = protocol
        self.semantics: dict[str, ProtocolSemantics] = {
            name: semantics_of(p) for name, p in self.protocols.items()}
        """What each protocol says about its streams, by protocol name."""
        self._offer_upgrades()
        self.by_alpn: dict[str, Protocol] = {
            p.alpn: p for p in self.protocols.values() if getattr(p, "alpn", "")}
        """Protocols by their TLS ALPN id (the optional ``alpn`` of a protocol)."""
        self.downstream_protocol = config.downstream_protocol
        self.fallback = config.fallback_for_unknown_protocol
        codecs = set(plugins.names("xprotocol_codec"))
        self.detectable: list[Protocol] = [
            p for name, p in self.protocols.items()
            if (name in config.detect if config.detect else
                name not in codecs or not config.rpc_only or name in config.rpc_only)]
        """What ``Auto`` detection chooses among (MOSN's protocol lists narrow it)."""
        self.upstream_protocol_name = config.upstream_protocol
        self.clusters = context.cluster_manager
        self.route_table = context.routers[config.router_config_name]
        self.timeout = route_timeout(config.timeout)
        self.max_request_bytes = config.max_request_bytes
        self.normalize_path = config.normalize_path
        self.merge_slashes = config.merge_slashes
        self.escaped_slashes = config.path_with_escaped_slashes_action
        self.request_headers_timeout = config.request_headers_timeout or None
        self.max_connection_duration = config.max_connection_duration or None
        self.stream_idle_timeout = config.stream_idle_timeout or None
        self.streams: set[DownstreamStream] | None = \
            set() if self.stream_idle_timeout else None
        """The streams in flight, swept for idle ones (None: no stream idle timeout)."""
        self._sweep: asyncio.TimerHandle | None = None
        self.deadlines = Deadlines()
        """The route timeouts of the streams in flight, on one timer."""
        self.stream_filters: list[Callable[[], StreamFilter]] = list(context.stream_filters)
        self.observers = ObserverHooks(context.observers)
        self._pools: dict[tuple[Any, str], ConnectionPool] = {}
        """By (host, protocol name); the host object itself, so a removed host's key
        can never be taken by a new one."""
        self._watched: set[str] = set()

    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def count(self, event: str) -> None:
        """Tell the listener's observers of an event they may count (its stat name)."""
        for hook in self.observers.listener_event:
            hook(event)

    # -- the stream idle timeout ---------------------------------------------------------

    def track(self, stream: DownstreamStream) -> None:
        """Watch a new stream for idleness (the stream marks its own activity)."""
        assert self.streams is not None
        self.streams.add(stream)
        if self._sweep is None:
            self._schedule_sweep()

    def _schedule_sweep(self) -> None:
        assert self.stream_idle_timeout is not None
        self._sweep = self.loop().call_later(
            self.stream_idle_timeout / IDLE_CHECKS_PER_TIMEOUT, self._sweep_idle)

    def _sweep_idle(self) -> None:
        self._sweep = None
        streams = self.streams
        assert streams is not None
        for stream in list(streams):
            if stream.idle_sweep() > IDLE_CHECKS_PER_TIMEOUT:
                stream.on_idle_timeout()
        if streams:
            self._schedule_sweep()

    def upstream_protocol(self, route: Route, downstream: str) -> Protocol:
        """The route's choice, else the proxy's, else what the client spoke."""
        return self.protocols[route.upstream_protocol or self.upstream_protocol_name or downstream]

    def pool(self, cluster: Any, host: Any, protocol: Protocol) -> ConnectionPool:
        key = (host, protocol.name)
        pool = self._pools.get(key)
        if pool is None:
            if cluster.name not in self._watched:
                self._watched.add(cluster.name)
                cluster.on_hosts_removed.append(self._drain_hosts)
            cc = cluster.config
            pool = self._pools[key] = ConnectionPool(
                cluster, host, protocol,
                max_streams_per_connection=cc.max_request_per_conn,
                connections_per_host=cc.connections_per_host,
                idle_timeout=cc.idle_timeout if cc.idle_timeout is not None
                else DEFAULT_IDLE_TIMEOUT, keepalive=cc.keepalive)
        return pool

    def _drain_hosts(self, hosts: list[Any]) -> None:
        """Hosts left a cluster: their pools finish what they hold and are dropped."""
        gone = set(hosts)
        for key in [k for k in self._pools if k[0] in gone]:
            self._pools.pop(key).drain()

    def install(self, conn: Connection) -> None:
        if self.max_connection_duration:
            MaxDuration(self, conn, self.max_connection_duration)
        if self.downstream_protocol == AUTO:
            tls = conn.tls
            chosen = self.by_alpn.get(tls.alpn) if tls is not None and tls.alpn else None
            if chosen is not None:
                self.serve(conn, chosen)
            else:
                conn.add_read_filter(ProtocolDetector(self, conn))
        else:
            self.serve(conn, self.protocols[self.downstream_protocol])

    def serve(self, conn: Connection, protocol: Protocol) -> None:
        protocol.server(conn, self._new_stream(conn, protocol.name))

    def _new_stream(self, conn: Connection, name: str) -> "DownstreamCallbacks":
        return DownstreamCallbacks(self, conn, name)

    def _offer_upgrades(self) -> None:
        """HTTP/1.1 ``Upgrade`` to another installed protocol (``h2c``): a protocol
        with an ``upgrades`` table (Http1) gets a hand-over for each protocol with an
        ``upgrade_token`` (Http2), which takes the connection and the request over."""
        targets = [p for p in self.protocols.values() if getattr(p, "upgrade_token", "")]
        for protocol in self.protocols.values():
            table = getattr(protocol, "upgrades", None)
            if isinstance(table, dict):
                for target in targets:
                    if target is not protocol:
                        table[target.upgrade_token] = functools.partial(self._upgrade, target)

    def _upgrade(self, protocol: Any, conn: Connection, head: Any, data: bytes) -> bool:
        return protocol.upgrade(conn, self._new_stream(conn, protocol.name), head, data)


class DownstreamCallbacks:
    """What a protocol's server codec is given for one downstream connection (the
    ``ServerCallbacks`` contract of :mod:`mosn.stream.types`): called with a new
    stream it returns the stream's :class:`DownstreamStream`."""

    __slots__ = ("ctx", "conn", "protocol", "semantics", "request_headers_timeout")

    def __init__(self, ctx: ProxyContext, conn: Connection, protocol: str) -> None:
        self.ctx = ctx
        self.conn = conn
        self.protocol = protocol
        self.semantics = ctx.semantics[protocol]
        self.request_headers_timeout = ctx.request_headers_timeout

    def __call__(self, stream: Any) -> DownstreamStream:
        return DownstreamStream(self.ctx, self.conn, stream, self.protocol, self.semantics)

    def on_request_headers_timeout(self) -> None:
        log.debug("%s: a request head from %s took over %gs (request_headers_timeout)",
                  self.protocol, self.conn.remote_address, self.request_headers_timeout)
        self.ctx.count(REQUEST_HEADERS_TIMEOUT)

    def on_refused_streams(self, count: int) -> None:
        log.debug("%s: %d streams from %s came after the connection's last GOAWAY: refused",
                  self.protocol, count, self.conn.remote_address)
        for _ in range(count):
            self.ctx.count(REFUSED_AFTER_GOAWAY)


class MaxDuration(ConnectionCallbacks):
    """``max_connection_duration``: past it the connection's codec is asked to go away
    (the one a drain uses); a connection with none yet (its protocol not detected)
    is closed."""

    __slots__ = ("ctx", "conn", "timer")

    def __init__(self, ctx: ProxyContext, conn: Connection, seconds: float) -> None:
        self.ctx = ctx
        self.conn = conn
        self.timer: asyncio.TimerHandle | None = conn.loop.call_later(seconds, self._expired)
        conn.add_callbacks(self)

    def _expired(self) -> None:
        self.timer = None
        if self.conn.closed:
            return
        self.ctx.count(MAX_CONNECTION_DURATION)
        log.debug("connection from %s reached max_connection_duration: draining it",
                  self.conn.remote_address)
        if not go_away(self.conn):
            self.conn.close(CloseType.FLUSH_WRITE)

    def on_event(self, event: ConnectionEvent) -> None:
        if event.is_close and self.timer is not None:
            self.timer.cancel()
            self.timer = None


def _protocol_config(ext: Extension, config: ProxyConfig) -> Any:
    """A protocol plugin's config model, filled from the proxy's ``extend_config``."""
    if ext.config_model is None:
        return None
    return ext.config_model.model_validate(config.extend_config.get(ext.name, {}))


class ProtocolDetector(ReadFilter):
    """Holds the first bytes until one protocol's matcher claims them. None does:
    the connection is closed, or with ``fallback_for_unknown_protocol`` handed to the
    network filters after the proxy's (MOSN's fallback), which wait until then."""

    __slots__ = ("ctx", "conn", "buffer")

    def __init__(self, ctx: ProxyContext, conn: Connection) -> None:
        self.ctx = ctx
        self.conn = conn
        self.buffer = b""

    def on_new_connection(self) -> FilterStatus:
        return FilterStatus.STOP if self.ctx.fallback else FilterStatus.CONTINUE

    def on_data(self, data: bytes) -> FilterStatus:
        self.buffer += data
        undecided = False
        for protocol in self.ctx.detectable:
            try:
                result = protocol.match(self.buffer)
            except Exception as exc:
                protocol.errors.codec_error(exc, "match", "the connection is closed")
                self.conn.close(CloseType.NO_FLUSH)
                return FilterStatus.STOP
            if result is MatchResult.MATCH:
                self._hand_over(protocol)
                return FilterStatus.STOP
            undecided = undecided or result is MatchResult.NEED_MORE
        if not undecided or len(self.buffer) >= MAX_DETECT_BYTES:
            if self.ctx.fallback:
                self._fall_back()
            else:
                self.conn.close(CloseType.NO_FLUSH)  # no installed protocol speaks this
        return FilterStatus.STOP

    def stop_for_migration(self, at_safe_point: Callable[[], None]) -> bool:
        """No protocol chosen yet: any moment is a safe point (migration, ReadFilter)."""
        at_safe_point()
        return True

    def unprocessed(self) -> bytes:
        return self.buffer

    def _fall_back(self) -> None:
        conn = self.conn
        conn.read_filters.remove(self)
        if not conn.read_filters:
            conn.close(CloseType.NO_FLUSH)  # no filter after the proxy to fall back to
            return
        log.debug("connection from %s: no protocol matched, falling back to the next "
                  "network filter", conn.remote_address)
        for f in list(conn.read_filters):
            if f.on_new_connection() is FilterStatus.STOP:
                break
        if not conn.closed:
            conn.replay(self.buffer)

    def _hand_over(self, protocol: Protocol) -> None:
        conn = self.conn
        at = conn.read_filters.index(self)
        # With a fallback, the filters after the proxy waited for this verdict: the
        # proxy keeps the connection, so they never see it (MOSN's proxy stops them).
        del conn.read_filters[at:None if self.ctx.fallback else at + 1]
        self.ctx.serve(conn, protocol)
        for f in list(conn.read_filters):
            if f.on_data(self.buffer) is FilterStatus.STOP:
                break


def build(config: ProxyConfig, context: BuildContext) -> Callable[[Connection], None]:
    return ProxyContext(config, context).install


@hookimpl
def mosn_network_filters() -> list[Extension]:
    return [Extension("proxy", build, ProxyConfig,
                      description="L7 proxy: protocol codec, router, clusters")]
