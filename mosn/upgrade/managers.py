"""The listener manager, and a whole config applied in place through the managers.

Three managers change what mosn serves while it runs; a config reload (SIGHUP,
``POST /reload``) is their first user and the control plane (xDS) the next. Each has
``add_or_update(config) -> "added" | "updated" | "unchanged"`` and
``remove(name) -> bool``:

- :class:`ListenerManager` (here): listeners by name. An update builds the listener
  anew on the same listening socket (the port never stops accepting); the old one
  accepts no more and its connections move to the new one at a safe point
  (:func:`mosn.network.migration.move`: RPC, HTTP/1 keep-alive, ``tcp_proxy``); the
  rest are asked to go away (HTTP/2 GOAWAY) and whatever is still open after
  ``graceful_timeout`` is closed. A removed listener closes its socket and drains.
- :class:`mosn.upstream.cluster.ClusterManager`: clusters by name (an update replaces
  the cluster; the old one's pools drain), and ``update_hosts(name, hosts)`` for a
  cluster's endpoints.
- :class:`mosn.router.Routers` (:data:`RouteManager`): route tables by
  ``router_config_name``, updated in place (the next request routes by the new one).

Order matters when several change together, and :func:`apply_in_place` keeps it:
clusters and routes are added or updated first, then listeners (which name routes,
whose routes name clusters), then listeners removed, then routes and clusters removed.

:func:`in_place_blockers` says why a new config cannot be applied in place (a changed
admin address, plugin set, tracing, overload manager; several workers): those reloads
take the process hand-over instead (:mod:`mosn.upgrade.handover`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from dataclasses import replace
from typing import Any, Callable, Iterable

from mosn.config.loader import LoadedConfig
from mosn.config.models import DEFAULT_GRACEFUL_TIMEOUT, FilterConfig, ListenerConfig, MosnConfig
from mosn.network.filter import CloseType
from mosn.network.filter_chain import ChainMatch, FilterChain
from mosn.network.listener import PAUSE_DRAIN, Listener, ListenerIndex, bind
from mosn.network.migration import Refused, move
from mosn.network.udp import UdpListener
from mosn.observability.observer import StatsObserver
from mosn.observability.runtime import Observability, ObservabilityError
from mosn.observability.stats import LISTENER_STATS, UDP_LISTENER_STATS, StatsStore
from mosn.plugins import BuildContext
from mosn.router import Routers
from mosn.stream.types import go_away
from mosn.tls import ServerTls
from mosn.upstream.cluster import ClusterManager

log = logging.getLogger("mosn.upgrade")

RouteManager = Routers
"""The route manager is the route tables themselves (:class:`mosn.router.Routers`)."""

DRAIN_POLL_INTERVAL = 0.1
"""Seconds between checks that draining connections are gone."""
FIRST_REQUEST_WAIT = 0.1
"""Seconds a draining listener waits between accepting no more and asking its
connections to go away: one accepted just before has its first request on the way
(a client writes right after connecting), and an HTTP/1 connection asked while idle
closes without reading it."""


MOVE_SHARE = 0.5
"""The share of ``graceful_timeout`` a replaced listener's connection may take to reach
a safe point and move to the new listener; what cannot move drains in the rest."""
PAUSE_UPGRADE = "upgrade"
"""Why listeners do not accept while a new process takes over."""


class StartError(Exception):
    """The proxy cannot start (a port in use ...); the message says where and why."""


def listener_name(config: ListenerConfig) -> str:
    return config.name or str(config.address)


def socket_key(config: ListenerConfig) -> str:
    """A listening socket's key: its address (``udp:`` in front for UDP)."""
    return f"udp:{config.address}" if config.network == "udp" else str(config.address)


async def drain(connections: Callable[[], Iterable[Any]], timeout: float) -> int:
    """Ask each connection ``connections()`` gives to go away, wait up to ``timeout``
    for them to close, then close the rest; returns how many were closed at the end."""
    if any(True for _ in connections()):
        await asyncio.sleep(FIRST_REQUEST_WAIT)
    for conn in list(connections()):
        go_away(conn)  # a connection without a codec that can just runs until it ends
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while any(True for _ in connections()) and loop.time() < deadline:
        await asyncio.sleep(DRAIN_POLL_INTERVAL)
    left = list(connections())
    for conn in left:
        conn.close(CloseType.NO_FLUSH)
    return len(left)


class ListenerManager:
    """The listeners by name: built from their configs, started, changed while
    serving (:meth:`add_or_update`, :meth:`remove`), drained."""

    def __init__(self, plugins: Any, store: StatsStore, clusters: ClusterManager,
                 routers: Routers, observability: Observability,
                 graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT,
                 sockets: dict[str, socket.socket] | None = None) -> None:
        """``sockets``: listening sockets to serve instead of binding, by
        :func:`socket_key` (the ones an upgrade handed over, or kept by a reload)."""
        self.plugins = plugins
        self.store = store
        self.clusters = clusters
        self.routers = routers
        self.observability = observability
        self.graceful_timeout = graceful_timeout
        self.sockets: dict[str, socket.socket] = dict(sockets or {})
        self.listeners: dict[str, Listener | UdpListener] = {}
        self.configs: dict[str, ListenerConfig] = {}
        self.tls_holders: list[tuple[str, Any]] = []
        """Every listener's TLS context holder (``ServerTls``), for rotation and ``/certs``."""
        self.on_change: list[Callable[[], None]] = []
        """Called after the set of listeners changed (the overload manager follows it)."""
        self.draining: set[Any] = set()
        """Connections of replaced or removed listeners still open."""
        self.running = False
        self._bound: list[socket.socket] = []

    # -- building ---------------------------------------------------------------------

    def build(self, config: ListenerConfig, path: str = "listener") -> Listener | UdpListener:
        """A listener for ``config`` on its socket (taken from :attr:`sockets`, else
        bound now), not yet serving. Raises :class:`StartError`."""
        plugins, lc = self.plugins, config
        name = listener_name(lc)
        context = BuildContext(host=plugins, cluster_manager=self.clusters, stats=self.store,
                               routers=self.routers)
        stream_filters = tuple(
            _extension(plugins, "stream_filter", flt).factory(flt.parsed, context)
            for flt in lc.stream_filters)
        try:
            logged = self.observability.observers(path, lc, name, self.store)
        except ObservabilityError as exc:
            raise StartError(str(exc)) from None
        observers = (StatsObserver(self.store, name, plugins.names("protocol"),
                                   self.clusters.clusters.values()), *logged)
        chain_context = replace(context, stream_filters=stream_filters, observers=observers)
        chains = []
        tls_holders = []
        for i, fc in enumerate(lc.filter_chains):
            installs = [_extension(plugins, "network_filter", flt).factory(
                flt.parsed, chain_context) for flt in fc.filters]
            certificates = fc.enabled_tls()
            tls = ServerTls(certificates) if certificates else None
            chain_name = fc.name or str(i)
            if tls is not None:
                tls_holders.append((f"listener {name}" if len(lc.filter_chains) == 1
                                    else f"listener {name} chain {chain_name}", tls))
            match = ChainMatch(fc.filter_chain_match) if fc.filter_chain_match else None
            chains.append(FilterChain(chain_name, _chain(installs), match, tls))
        stats = self.store.scope(f"listener.{name}", UDP_LISTENER_STATS
                                 if lc.network == "udp" else LISTENER_STATS)
        if lc.network == "udp":
            sock = self._socket(f"{path}.address", lc, udp=True)
            listener: Listener | UdpListener = UdpListener(
                name, sock, self.store, stats, chains[0].install,
                max_datagram_size=lc.max_datagram_size)
        else:
            sock = None if lc.is_virtual else self._socket(
                f"{path}.address", lc, transparent=lc.use_original_dst == "tproxy")
            listener = Listener(
                name, sock, self.store, stats, chains,
                max_connections=lc.max_connections,
                idle_timeout=lc.connection_idle_timeout,
                buffer_limit=lc.per_connection_buffer_limit_bytes,
                listener_filters=self._listener_filters(lc, context),
                tls_optional=lc.inspector,
                listener_filters_timeout=lc.listener_filters_timeout,
                continue_on_listener_filters_timeout=lc.continue_on_listener_filters_timeout,
                address=lc.address,
            )
        listener.tls_holders = tls_holders  # type: ignore[union-attr]
        return listener

    def build_all(self, configs: Iterable[tuple[str, ListenerConfig]]) -> None:
        """Build every listener of a config before anything serves (its start)."""
        try:
            for path, lc in configs:
                self._put(listener_name(lc), lc, self.build(lc, path))
            self._index()
        except Exception:  # a start that fails must not keep a port it bound
            self.close_sockets()
            raise

    def _socket(self, path: str, lc: ListenerConfig, transparent: bool = False,
                udp: bool = False) -> socket.socket:
        key = socket_key(lc)
        if key in self.sockets and self.sockets[key].fileno() >= 0:
            return self.sockets[key]
        try:
            sock = bind(lc.address, lc.reuseport, transparent,
                        socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        except OSError as exc:
            reason = exc.strerror or exc
            if transparent and exc.errno == errno.EPERM:
                reason = f"{reason} (use_original_dst: tproxy needs CAP_NET_ADMIN)"
            raise StartError(f"{path}: cannot listen on {lc.address}: {reason}") from None
        self._bound.append(sock)
        self.sockets[key] = sock
        return sock

    def reserve(self, configs: Iterable[ListenerConfig]) -> None:
        """Bind now the sockets of ``configs`` that no listener holds yet, so that a
        change of several listeners either finds every port or changes nothing.
        Raises :class:`StartError` (and closes what it bound) when one cannot be bound."""
        bound: list[str] = []
        try:
            for lc in configs:
                if lc.is_virtual or socket_key(lc) in self.sockets:
                    continue
                self._socket(f"listener {listener_name(lc)}.address", lc,
                             transparent=lc.use_original_dst == "tproxy",
                             udp=lc.network == "udp")
                bound.append(socket_key(lc))
        except StartError:
            for key in bound:
                sock = self.sockets.pop(key)
                self._bound.remove(sock)
                sock.close()
            raise

    def _listener_filters(self, lc: ListenerConfig, context: BuildContext) -> tuple[Any, ...]:
        """The listener's filters as configured, with the ones its other settings
        need: ``original_dst`` first for ``use_original_dst`` (MOSN adds it too), the
        TLS inspector for ``inspector: true`` or for chains matched by TLS facts
        (Envoy adds it too)."""
        plugins = self.plugins
        filters = list(lc.listener_filters)
        types = {flt.type for flt in filters}
        if lc.use_original_dst and "original_dst" not in types:
            filters.insert(0, _parsed_filter(plugins, "original_dst",
                                             {"type": lc.use_original_dst}))
        if "tls_inspector" not in types and (lc.inspector or _needs_tls_inspector(lc)):
            filters.append(_parsed_filter(plugins, "tls_inspector", {}))
        return tuple(_extension(plugins, "listener_filter", flt).factory(flt.parsed, context)
                     for flt in filters)

    def _put(self, name: str, config: ListenerConfig, listener: Any) -> None:
        self.listeners[name] = listener
        self.configs[name] = config
        self.tls_holders[:] = [h for lst in self.listeners.values()
                               for h in getattr(lst, "tls_holders", ())]

    def _index(self) -> None:
        """Point ``use_original_dst`` listeners at the listeners of the addresses."""
        index = ListenerIndex(lst for lst in self.listeners.values()
                              if isinstance(lst, Listener))
        for name, lst in self.listeners.items():
            if isinstance(lst, Listener) and self.configs[name].use_original_dst:
                lst.hand_off = index.find
        for changed in self.on_change:
            changed()

    # -- serving ----------------------------------------------------------------------

    async def start(self) -> None:
        for lst in self.listeners.values():
            await lst.start()
        self.running = True

    def connections(self) -> Iterable[Any]:
        """Every open downstream connection, the draining ones too."""
        for lst in self.listeners.values():
            yield from getattr(lst, "connections", ())
        yield from self.draining

    # -- changes while serving --------------------------------------------------------

    def add_or_update(self, config: ListenerConfig, path: str = "listener") -> str:
        """Add the listener ``config`` describes, or replace the one of its name
        (drained; the new one serves the same socket when the address is the same):
        ``"added"``, ``"updated"`` or ``"unchanged"``. Raises :class:`StartError`
        (nothing changed) when the listener cannot be built or bound."""
        name = listener_name(config)
        old = self.listeners.get(name)
        old_config = self.configs.get(name)
        if old is not None and old_config is not None and \
                _dump(old_config) == _dump(config):
            return "unchanged"
        new = self.build(config, path)
        self._put(name, config, new)
        if old is not None:
            self._retire(old, new if isinstance(new, Listener) else None)
        self._index()
        if self.running:
            asyncio.get_running_loop().create_task(new.start())
        return "updated" if old is not None else "added"

    def remove(self, name: str) -> bool:
        """Stop the listener ``name`` (False: there is none): its socket closes (a
        new connection is refused) and its connections drain."""
        old = self.listeners.pop(name, None)
        if old is None:
            return False
        self.configs.pop(name)
        self.tls_holders[:] = [h for lst in self.listeners.values()
                               for h in getattr(lst, "tls_holders", ())]
        self._retire(old)
        self._index()
        return True

    def _retire(self, old: Any, successor: Listener | None = None) -> None:
        """Stop ``old`` accepting and move its connections to ``successor`` (the
        listener that replaced it) where they can move, else drain them; its socket
        closes unless a listener serving now took it over (the same address)."""
        if old.sock is not None and any(lst.sock is old.sock for lst in self.listeners.values()):
            old.pause_accepting(PAUSE_DRAIN)
        else:
            for key, sock in list(self.sockets.items()):
                if sock is old.sock:
                    del self.sockets[key]
            old.stop_accepting()
        conns = set(getattr(old, "connections", ()))
        if not self.running or not conns:
            return
        log.info("listener %s: replaced or removed; its %d connections move or drain "
                 "within %gs", old.name, len(conns), self.graceful_timeout)
        self.draining |= conns
        asyncio.get_running_loop().create_task(self._drain(old, successor))

    async def _drain(self, old: Any, successor: Listener | None) -> None:
        def left() -> Iterable[Any]:
            return [c for c in old.connections if not c.closed]
        try:
            timeout = self.graceful_timeout
            if successor is not None:
                timeout *= 1 - MOVE_SHARE
                await asyncio.gather(*(self._move(conn, successor) for conn in left()))
            await drain(left, timeout)
        finally:
            self.draining -= set(old.connections) | {c for c in self.draining if c.closed}

    async def _move(self, conn: Any, successor: Listener) -> None:
        """A connection of a replaced listener goes on under its successor (an HTTP/1
        keep-alive client keeps its connection, an RPC client its requests); one
        that cannot move is drained with the rest."""
        try:
            await move(conn, successor, self.graceful_timeout * MOVE_SHARE)
        except Refused:
            pass
        except OSError as exc:
            log.warning("listener %s: a connection could not move to the new listener: %s",
                        successor.name, exc)

    def stop_accepting(self) -> None:
        for lst in self.listeners.values():
            lst.stop_accepting()

    def pause_accepting(self) -> None:
        """Accept nothing more on the sockets, keeping them open (a new process
        accepts on them during an upgrade)."""
        for lst in self.listeners.values():
            lst.pause_accepting(PAUSE_UPGRADE)

    def resume_accepting(self) -> None:
        for lst in self.listeners.values():
            lst.resume_accepting(PAUSE_UPGRADE)

    def close_sockets(self) -> None:
        """Close the sockets this manager bound (not those it was given)."""
        for sock in self._bound:
            sock.close()


def _dump(config: Any) -> Any:
    return config.model_dump(mode="json")


def _extension(plugins: Any, kind: str, flt: Any) -> Any:
    ext = plugins.get(kind, flt.type)
    assert ext is not None, "the loader checks filter types"
    return ext


def _parsed_filter(plugins: Any, type_: str, config: dict[str, Any]) -> FilterConfig:
    """A listener filter the runtime adds, its config validated as the loader would."""
    flt = FilterConfig(type=type_, config=config)
    model = _extension(plugins, "listener_filter", flt).config_model
    flt.set_parsed(model.model_validate(config) if model is not None else None)
    return flt


def _needs_tls_inspector(lc: Any) -> bool:
    """Envoy's rule: a chain matched on TLS, or on server names or application
    protocols without naming the transport, needs what the TLS inspector reads."""
    for fc in lc.filter_chains:
        m = fc.filter_chain_match
        if m is not None and (m.transport_protocol == "tls" or (
                not m.transport_protocol and (m.server_names or m.application_protocols))):
            return True
    return False


def _chain(installs: list[Any]) -> Any:
    if len(installs) == 1:
        return installs[0]

    def install(conn: Any) -> None:
        for one in installs:
            if conn.closed:  # refused by a filter before this one (network rbac)
                return
            one(conn)

    return install


# -- a whole config, in place -----------------------------------------------------------

def _outside_resources(config: MosnConfig) -> Any:
    """What a config says besides its listeners, routes and clusters."""
    dumped = config.model_dump(mode="json")
    for server in dumped.get("servers", []):
        server.pop("listeners", None)
        server.pop("routers", None)
    dumped.get("cluster_manager", {}).pop("clusters", None)
    return dumped


def _differences(a: Any, b: Any, path: str) -> list[str]:
    """The config paths where ``a`` and ``b`` (dumped configs) differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for key in sorted(set(a) | set(b))
                for d in _differences(a.get(key), b.get(key),
                                      f"{path}.{key}" if path else key)]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b))
                for d in _differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [path]


def in_place_blockers(old: LoadedConfig, new: LoadedConfig, workers: int = 1) -> list[str]:
    """Why ``new`` cannot be applied to a process serving ``old`` through the managers
    (empty: it can). Anything but listeners, routes and clusters changed (the admin
    address, plugins, tracing, the overload manager, the pid file, graceful_timeout ...),
    or several workers serve."""
    reasons = []
    if workers > 1:
        reasons.append(f"{workers} workers serve (each would need the change)")
    reasons.extend(f"{path} changed" for path in _differences(
        _outside_resources(old.config), _outside_resources(new.config), ""))
    if old.plugins.names("protocol") != new.plugins.names("protocol"):
        reasons.append("the installed protocol plugins changed")
    return reasons


def apply_in_place(new: MosnConfig, listeners: ListenerManager,
                   clusters: ClusterManager, routers: Routers) -> dict[str, list[str]]:
    """Make the managers serve ``new`` (already validated, and checked by
    :func:`in_place_blockers`): returns the names ``added``, ``updated`` and
    ``removed``, each as ``kind name``. Raises :class:`StartError` when a new
    listener cannot be bound; what was applied before stays applied and the next
    reload applies the rest (the config is the source of truth)."""
    done: dict[str, list[str]] = {"added": [], "updated": [], "removed": []}

    def note(outcome: str, what: str) -> None:
        if outcome in done:
            done[outcome].append(what)

    wanted_clusters = {cc.name: cc for cc in new.cluster_manager.clusters}
    for cc in wanted_clusters.values():
        note(clusters.add_or_update(cc), f"cluster {cc.name}")
    wanted_routers = {rc.router_config_name: rc for _, rc in new.routers()}
    for rc in wanted_routers.values():
        note(routers.add_or_update(rc), f"router {rc.router_config_name}")
    wanted_listeners = {listener_name(lc): (path, lc) for path, lc in new.listeners()}
    for name, (path, lc) in wanted_listeners.items():
        note(listeners.add_or_update(lc, path), f"listener {name}")
    for name in [n for n in listeners.listeners if n not in wanted_listeners]:
        if listeners.remove(name):
            done["removed"].append(f"listener {name}")
    for name in [n for n in routers if n not in wanted_routers]:
        if routers.remove(name):
            done["removed"].append(f"router {name}")
    for name in [n for n in clusters.clusters if n not in wanted_clusters]:
        if clusters.remove(name):
            done["removed"].append(f"cluster {name}")
    return done
