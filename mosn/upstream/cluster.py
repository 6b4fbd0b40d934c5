"""Hosts, clusters and the cluster manager; the built-in static cluster type.

A cluster is a named set of hosts with a load balancer and the settings for
connecting to them. Its hosts come from its cluster type (a plugin): ``SIMPLE`` and
``STATIC`` (MOSN's names) take them from the config as written; ``STRICT_DNS``
(:mod:`mosn.upstream.dns`) resolves them again and again.

Each cluster reserves ``max_hosts`` host *slots* before the workers are forked: a
row of stats per slot in the shared stats and a health byte per slot in
:class:`SharedHealth`. A host takes a free slot when it joins and gives it back when it
leaves, so hosts discovered later (DNS now, registries and xDS later) have shared
stats and shared health like the configured ones. Clusters added later (a reload
applied in place, the control plane) take their slots' health bytes from room kept in
the same memory, in the order every process applies the changes (docs/xds.md,
"Workers").
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import functools
import inspect
import logging
import mmap
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import anyio
import anyio.abc

from mosn.config.models import ClusterConfig, MosnConfig
from mosn.config.types import Address, parse_address
from mosn.network.connection import DEFAULT_BUFFER_LIMIT, ClientConnection
from mosn.network.filter import ConnectionEvent
from mosn.network.tls import TlsStats, client_layer, stat_names
from mosn.observability.stats import (
    CLUSTER_STATS,
    HOST_STATS,
    UPSTREAM_STATS,
    Scope,
    StatsStore,
)
from mosn.plugins import BuildContext, Extension, PluginHost, hookimpl
from mosn.tls import ClientTls

log = logging.getLogger("mosn.upstream")

FAILED_ACTIVE_HC = 1
"""Health flag: the active health check failed the host."""
FAILED_OUTLIER_CHECK = 2
"""Health flag: outlier detection ejected the host (in this worker)."""
LB_CLASSES = 256
"""Load balancer classes whose ``choose_host`` signature is remembered (a handful are
installed; the bound keeps a plugin that makes classes on the fly from growing it)."""
HEALTH_SYNC_INTERVAL = 0.1
"""Seconds between a worker's looks at the shared health bytes (a single generation
word is read; the bytes only when it changed)."""
HEALTH_GROWTH_ROOM = 1 << 20
"""Health bytes (host slots) kept after the file's clusters for clusters added while
mosn serves: more host slots than the stats' room (``STATS_GROWTH_ROOM``) can give new
clusters, with room to spare for ranges split by clusters that came and went. Address
space only until used (an anonymous mapping's pages are made on first touch): 1 MiB."""


@dataclass(eq=False, slots=True)
class Host:
    address: Address
    weight: int = 1
    hostname: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    healthy: bool = True
    """What load balancers read: no health flag is set."""
    stats: Scope | None = None
    health_flags: int = 0
    active_requests: int = 0
    """Requests in flight to this host from this worker (least request reads it)."""
    active_connections: int = 0
    """Connections open to this host from this worker (least connection reads it)."""
    response_times: Any = None
    """Its recent response times (``observe(seconds, status)``), when a load balancer
    asked for them (``LB_PEAK_EWMA``); None otherwise."""
    slot: int = -1
    """The host's slot in its cluster (stats row and shared health byte)."""
    healthy_since: float = 0.0
    """``time.monotonic()`` when it joined a running cluster or turned healthy again
    (slow start ramps from then); 0: not ramping."""
    outlier: Any = None
    """Its outlier detection state in this worker, when the cluster has detection."""
    tls_disable: bool = False
    """MOSN's per-host switch: plaintext to this host even when the cluster has TLS."""
    tls: Any = None
    """The cluster's ``ClientTls`` unless ``tls_disable`` (set by the cluster)."""

    def __str__(self) -> str:
        return str(self.address)

    def set_health_flag(self, flag: int, on: bool) -> bool:
        """Set or clear one flag; True when the host's health changed."""
        flags = self.health_flags | flag if on else self.health_flags & ~flag
        if flags == self.health_flags:
            return False
        was = self.healthy
        self.health_flags = flags
        self.healthy = flags == 0
        if self.healthy and not was:
            self.healthy_since = time.monotonic()
        return self.healthy != was


class SharedHealth:
    """One byte of health flags per host slot, in shared memory made before the fork:
    written by the process that runs the active health checks (the parent when there
    are workers), read by every worker. A generation word tells readers that
    something changed, so a worker's periodic look is one read.

    A cluster takes a range of ``slots`` bytes (:meth:`take`) and gives it back when it
    leaves (:meth:`give`); ``room`` more bytes serve clusters added after the fork.
    Every process takes and gives the same ranges in the same order (each applies the
    same changes in the same order, as the stats store registers them,
    :meth:`mosn.observability.stats.StatsStore.in_step`), so a cluster's bytes are at
    the same place in each."""

    def __init__(self, slots: int, room: int = 0) -> None:
        self._mem = mmap.mmap(-1, 8 + max(1, slots + room))
        self._generation = memoryview(self._mem)[:8].cast("q")
        self.flags = memoryview(self._mem)[8:]
        self._end = 0
        """Bytes up to here are taken, but for the ranges in :attr:`_free`."""
        self._free: list[tuple[int, int]] = []
        """Ranges given back, (start, length), in order and never adjacent."""

    @property
    def generation(self) -> int:
        return self._generation[0]

    @property
    def taken(self) -> int:
        """Bytes taken now (processes that took the same ranges agree on it)."""
        return self._end - sum(length for _, length in self._free)

    def set(self, slot: int, flags: int) -> None:
        if self.flags[slot] != flags:
            self.flags[slot] = flags
            self._generation[0] += 1  # after the byte: a reader seeing it sees the byte

    def take(self, slots: int, clear: bool) -> int | None:
        """The start of a range of ``slots`` bytes (the first given back that fits, else
        after the last), or None when none is left. ``clear``: this process writes the
        health (it sets a reused range healthy; a worker must not: one that follows
        late would clear what the writer set since)."""
        for i, (start, length) in enumerate(self._free):
            if length >= slots:
                if length == slots:
                    del self._free[i]
                else:
                    self._free[i] = (start + slots, length - slots)
                break
        else:
            if self._end + slots > len(self.flags):
                return None
            start = self._end  # past the end may have been taken before, too
            self._end += slots
        if clear and self.flags[start:start + slots].tobytes().count(0) != slots:
            self.flags[start:start + slots] = bytes(slots)
            self._generation[0] += 1
        return start

    def give(self, start: int, slots: int) -> None:
        """A range :meth:`take` gave, back (its cluster left)."""
        free = self._free
        i = bisect.bisect(free, (start, slots))
        free.insert(i, (start, slots))
        if i + 1 < len(free) and start + slots == free[i + 1][0]:
            free[i] = (start, slots + free.pop(i + 1)[1])
        if i > 0 and free[i - 1][0] + free[i - 1][1] == start:
            free[i - 1] = (free[i - 1][0], free[i - 1][1] + free.pop(i)[1])
        if free[-1][0] + free[-1][1] == self._end:
            self._end = free.pop()[0]


class UpstreamConnection(ClientConnection):
    """A connection to one host of a cluster, counted in the cluster's and host's stats."""

    def __init__(self, cluster: "Cluster", host: Host, alpn: str = "") -> None:
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
        self._stats[cluster.more.upstream_cx_connecting] += 1
        self._stats[host.stats.cx_total] += 1  # type: ignore[union-attr]
        if host.tls is not None:
            self.tls_setup = functools.partial(self._tls, (alpn,) if alpn else ())

    def _tls(self, alpn: tuple[str, ...], conn: Any) -> tuple[Any, float]:
        tls, host = self.host.tls, self.host
        name = host.hostname or (host.address.host if not host.address.is_unix else "")
        layer = client_layer(self, tls, self.cluster.tls_stats, alpn, name,
                             (str(host.address), alpn), self.established)
        return layer, tls.handshake_timeout

    def start(self) -> "UpstreamConnection":
        self.socket_mark = self.cluster.mark
        self.connect(self.host.address, self.cluster.connect_timeout)
        return self

    def on_connected(self) -> None:
        self._stats[self.cluster.more.upstream_cx_connecting] -= 1
        self._stats[self.cluster.stats.upstream_cx_active] += 1
        self._stats[self.host.stats.cx_active] += 1  # type: ignore[union-attr]
        self.host.active_connections += 1

    def on_closed(self, event: ConnectionEvent) -> None:
        v, s, hs = self._stats, self.cluster.stats, self.host.stats
        if event is ConnectionEvent.CONNECT_FAILED or event is ConnectionEvent.CONNECT_TIMEOUT:
            v[self.cluster.more.upstream_cx_connecting] -= 1
            v[s.upstream_cx_connect_fail] += 1
            v[hs.cx_connect_fail] += 1  # type: ignore[union-attr]
            if event is ConnectionEvent.CONNECT_TIMEOUT:
                v[s.upstream_cx_connect_timeout] += 1
            return
        if self.transport is None:  # closed by us before it connected
            v[self.cluster.more.upstream_cx_connecting] -= 1
            return
        v[s.upstream_cx_active] -= 1
        v[hs.cx_active] -= 1  # type: ignore[union-attr]
        self.host.active_connections -= 1
        if event is ConnectionEvent.LOCAL_CLOSE:
            v[s.upstream_cx_destroy_local] += 1
        else:
            v[s.upstream_cx_destroy_remote] += 1
        if self.close_error is not None:
            v[s.upstream_cx_destroy_with_error] += 1


def _with_context(lb: Any) -> Any:
    """``lb`` if its ``choose_host`` takes a context, else an adapter that drops it
    (load balancer plugins written before contexts existed keep working)."""
    method = getattr(type(lb), "choose_host", None)  # a cluster's LB is rebuilt on each
    if method is not None:                            # host change: read once per class
        takes = _class_takes_context(method)
    else:
        takes = _takes_context(lb.choose_host)
    return lb if takes else _ContextFree(lb)


def _takes_context(choose_host: Any) -> bool:
    try:
        params = inspect.signature(choose_host).parameters
    except (TypeError, ValueError):
        return True
    return "context" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


_class_takes_context = functools.lru_cache(maxsize=LB_CLASSES)(_takes_context)


class _ContextFree:
    __slots__ = ("lb",)

    def __init__(self, lb: Any) -> None:
        self.lb = lb

    def choose_host(self, exclude: Any = (), context: Any = None) -> Host | None:
        return self.lb.choose_host(exclude)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lb, name)


class Cluster:
    def __init__(self, config: ClusterConfig, hosts: list[Host], plugins: PluginHost,
                 store: StatsStore, health: SharedHealth | None = None,
                 slot_base: int = 0) -> None:
        self.name = config.name
        self.config = config
        self.store = store
        self.stats = store.scope(f"cluster.{config.name}", CLUSTER_STATS)
        self.more = store.scope(f"cluster.{config.name}", UPSTREAM_STATS)
        """The rest of the cluster's stats (requests, breakers, health, outliers)."""
        self.connect_timeout = config.connect_timeout
        self.mark = config.mark
        """``SO_MARK`` of the connections to its hosts (0: none): iptables rules that
        intercept traffic leave mosn's own alone by it."""
        self.buffer_limit = config.conn_buffer_limit_bytes or DEFAULT_BUFFER_LIMIT
        limits = config.circuit_breakers.limits
        self.max_connections = limits.max_connections
        self.max_pending_requests = limits.max_pending_requests
        self.max_requests = limits.max_requests
        self.max_retries = limits.max_retries
        lb = plugins.get("load_balancer", config.lb_type)
        assert lb is not None, "the loader checks lb_type"
        self._lb_factory = lb.factory
        self.slots = config.host_slots
        self.health = health if health is not None else SharedHealth(self.slots)
        self.slot_base = slot_base
        self._host_stats = store.slot_scopes(f"cluster.{config.name}.host", HOST_STATS, self.slots)
        self._free_slots: collections.deque[int] = collections.deque()
        """Slots hosts gave back, the oldest first: taken before unused ones, as their
        stats are registered (a first take registers a slot's 14; an endpoint push that
        moves 1,000 hosts takes the 1,000 slots they leave)."""
        self._unused: collections.deque[int] = collections.deque(range(self.slots))
        """Slots no host has taken yet."""
        self.hosts: list[Host] = []
        self.lb: Any = None
        self.lb_uses_downstream = False
        """The load balancer wants the downstream connection and the request's
        headers in its context (``LB_ORIGINAL_DST``)."""
        self.outlier: Any = None
        """This worker's outlier detector (:mod:`mosn.upstream.outlier`), if configured."""
        self.on_hosts_removed: list[Callable[[list[Host]], None]] = []
        """Called with the hosts an update removed (connection pools drain theirs)."""
        self.on_hosts_changed: list[Callable[["Cluster"], None]] = []
        tls_config = config.tls_context
        self.tls: ClientTls | None = (ClientTls(tls_config) if tls_config is not None
                                      and tls_config.status else None)
        """The cluster's upstream TLS (``tls_context``), or None."""
        self.tls_stats: TlsStats | None = None
        if self.tls is not None:
            self.tls_stats = TlsStats(store, store.scope(
                f"cluster.{config.name}", stat_names(self.tls.cipher_names())))
        self.controls_health = False
        """This process runs the health checks: it resets a reused slot's health."""
        self._by_address: tuple[list[Host], dict[Address, Host]] = (self.hosts, {})
        """:attr:`hosts` (as set by :meth:`set_hosts`) by address."""
        self._made: dict[int, Host] = {}
        """id of a host entry -> the host made from it, of the last :meth:`made_from`."""
        self._made_entries: list[Any] = []
        """Those entries, held: while they live no other object has their ids."""
        self._started = False
        if config.outlier_detection is not None:
            from mosn.upstream.outlier import OutlierDetector
            self.outlier = OutlierDetector(self, config.outlier_detection)
        self.set_hosts(hosts)
        self._started = True

    # -- the host set -------------------------------------------------------------------

    def set_hosts(self, hosts: Iterable[Host]) -> None:
        """Replace the host set without dropping anything in flight.

        A host already present (same address) is kept, with its connections, counts
        and health, and takes the new weight and metadata; a new host takes a free
        slot (or the one it brings, from the process that assigned it); a removed host
        gives its slot back and its connection pools drain: requests already on it
        finish, new ones go to the remaining hosts. The load balancer is rebuilt.
        """
        listed, current = self._by_address
        if listed is not self.hosts:  # the host list was replaced from outside
            current = {h.address: h for h in self.hosts}
        wanted: dict[Address, Host] = {}
        for h in hosts:
            wanted.setdefault(h.address, h)
        # An address's hash is a Python call (some 0.5 us): set() of a dict and a set's
        # difference with one reuse the hashes the dicts hold. When every present host
        # leaves (an endpoint push that moves them all), no new host is a present one.
        leaving = set(current).difference(wanted)
        if len(leaving) == len(current):
            removed, current = list(current.values()), {}
        else:
            removed = [h for a, h in current.items() if a in leaving]
        store, free_slots, outlier = self.store, self._free_slots, self.outlier
        for h in removed:
            free_slots.append(h.slot)
            h.slot = -1  # a late verdict about it must not land on the slot's next host
            if h.outlier is not None and outlier is not None:
                outlier.forget(h)
            store.label(h.stats, None)  # type: ignore[arg-type]
        result: list[Host] = []
        added: list[Host] = []
        now = time.monotonic()
        shown = f"cluster.{self.name}.host."
        tls, slots, host_stats = self.tls, self.slots, self._host_stats
        health_flags, base = self.health.flags, self.slot_base
        get = current.get
        for address, h in wanted.items():
            old = get(address) if current else None
            if old is not None:
                if old is not h:  # the same host again (an unchanged endpoint): as it is
                    old.weight, old.hostname, old.metadata = h.weight, h.hostname, h.metadata
                    old.tls_disable = h.tls_disable
                    old.tls = None if h.tls_disable else tls
                result.append(old)
                continue
            h.tls = None if h.tls_disable else tls
            if 0 <= h.slot < slots or not free_slots:
                if not self._take_slot(h):
                    log.error("cluster %s: no free host slot for %s (max_hosts is %d); "
                              "not added", self.name, address, slots)
                    continue
            else:
                h.slot = free_slots.popleft()
            h.stats = host_stats[h.slot]
            store.label(h.stats, shown + str(address))
            if self.controls_health:
                self.health.set(base + h.slot, 0)  # new hosts start healthy
            h.health_flags = health_flags[base + h.slot] & FAILED_ACTIVE_HC
            h.healthy = h.health_flags == 0
            if self._started:
                h.healthy_since = now
            if outlier is not None:
                outlier.track(h)
            result.append(h)
            added.append(h)
        self.hosts = result
        self._by_address = (result, wanted if len(result) == len(wanted) and not current
                            else {h.address: h for h in result})
        self.rebuild_lb()
        if self._started and self.store.values is not None and (added or removed):
            self.store.values[self.more.membership_change] += 1
        if removed:
            for callback in self.on_hosts_removed:
                callback(removed)
        for changed in self.on_hosts_changed:
            changed(self)

    def listed_hosts(self, config: ClusterConfig) -> list[Host]:
        """The hosts of a listed cluster's new entries (an xDS endpoint update): an
        entry that is the same object as one the present hosts were made from (an
        endpoint whose bytes did not change) gives that host again, not a new one.
        Call :meth:`made_from` once the host set is replaced."""
        get = self._made.get
        hosts = []
        append = hosts.append
        for entry in config.hosts:
            known = get(id(entry))
            append(known if known is not None and known.slot >= 0 else host_of(entry))
        return hosts

    def made_from(self, config: ClusterConfig, hosts: list[Host]) -> None:
        """Remember which host each entry of ``config`` is, after :meth:`set_hosts`
        took ``hosts`` (made by :meth:`listed_hosts`): a host it did not take (one of
        the same address was kept) is the kept one."""
        if any(h.slot < 0 for h in hosts):
            present = {h.address: h for h in self.hosts}
            hosts = [present.get(h.address, h) if h.slot < 0 else h for h in hosts]
        self._made = dict(zip(map(id, config.hosts), hosts))
        self._made_entries = config.hosts

    def _take_slot(self, host: Host) -> bool:
        if 0 <= host.slot < self.slots:
            for free in (self._free_slots, self._unused):
                try:
                    free.remove(host.slot)
                except ValueError:
                    continue
                return True
            return False
        free = self._free_slots or self._unused
        if not free:
            return False
        host.slot = free.popleft()
        return True

    def rebuild_lb(self) -> None:
        config = self.config
        if config.lb_subset_config.enabled:
            from mosn.upstream.lb import SubsetLoadBalancer
            self.lb = SubsetLoadBalancer(self.hosts, config, self._build_lb,
                                         self._count(self.more.lb_subsets_selected),
                                         self._count(self.more.lb_subsets_fallback))
        else:
            self.lb = self._build_lb(self.hosts, config)

    def _build_lb(self, hosts: list[Host], config: ClusterConfig) -> Any:
        lb = _with_context(self._lb_factory(hosts, config))
        attach = getattr(lb, "attach", None)
        if attach is not None:
            attach(self)
        self.lb_uses_downstream = bool(getattr(lb, "uses_downstream", False))
        return lb

    def _count(self, index: int) -> Callable[[], None]:
        def count() -> None:
            self.store.values[index] += 1  # type: ignore[index]
        return count

    # -- health -------------------------------------------------------------------------

    def set_active_health(self, host: Host, healthy: bool) -> None:
        """The active health check's verdict (in the process that runs the checks)."""
        if host.slot < 0:
            return  # removed while it was being probed
        flags = 0 if healthy else FAILED_ACTIVE_HC
        self.health.set(self.slot_base + host.slot, flags)
        if host.set_health_flag(FAILED_ACTIVE_HC, not healthy):
            self.health_changed()

    def sync_health(self) -> None:
        """Take the shared health bytes into this worker's hosts."""
        changed = False
        flags = self.health.flags
        base = self.slot_base
        for host in self.hosts:
            failed = bool(flags[base + host.slot] & FAILED_ACTIVE_HC)
            if host.set_health_flag(FAILED_ACTIVE_HC, failed):
                changed = True
        if changed:
            self.health_changed()

    def health_changed(self) -> None:
        hook = getattr(self.lb, "on_health_change", None)
        if hook is not None:
            hook()

    # -- the request path ------------------------------------------------------------------

    def choose_host(self, exclude: Any = (), context: Any = None) -> Host | None:
        host = self.lb.choose_host(exclude, context)
        if host is None:
            self.store.values[self.stats.upstream_cx_none_healthy] += 1  # type: ignore[index]
        return host

    def connect(self, host: Host, alpn: str = "") -> UpstreamConnection:
        """A new connection to ``host``; add callbacks, then ``start()`` it. ``alpn``:
        the protocol id a TLS connection offers (unless the cluster's TLS names its own)."""
        return UpstreamConnection(self, host, alpn)

    def can_connect(self) -> bool:
        """The ``max_connections`` circuit breaker, over every worker."""
        if not self.max_connections:
            return True
        store = self.store
        return (store.total(self.stats.upstream_cx_active)
                + store.total(self.more.upstream_cx_connecting)) < self.max_connections

    def count(self, index: int, n: int = 1) -> None:
        """``n`` more of a counter of this worker (a circuit breaker overflow ...)."""
        self.store.values[index] += n  # type: ignore[index]

    def start_worker(self) -> None:
        """In each serving process, once its loop runs: per-worker timers."""
        if self.outlier is not None:
            self.outlier.start()


class ClusterManager:
    """The clusters by name, and the one way to change them while mosn serves:
    :meth:`add_or_update` and :meth:`remove` (a config reload applied in place, the
    control plane) and :meth:`update_hosts` (a cluster's endpoints). Clusters are
    looked up by name for each request, so a change applies to the next request;
    a replaced or removed cluster's connection pools drain (requests on them finish).

    Every cluster's hosts have their health bytes in :attr:`health`; one added while
    mosn serves takes a range of its room (:class:`SharedHealth`), so the workers
    follow the health checks of a cluster the control plane adds."""

    def __init__(self, config: MosnConfig, plugins: PluginHost, store: StatsStore) -> None:
        self.clusters: dict[str, Cluster] = {}
        self.plugins = plugins
        self.store = store
        self.discovery: dict[str, Any] = {}
        """Cluster name -> its cluster type's discovery object (hosts that change)."""
        slots = sum(cc.host_slots for cc in config.cluster_manager.clusters)
        self.health = SharedHealth(slots, HEALTH_GROWTH_ROOM)
        self.follows_health = False
        """Another process runs the health checks (a worker's): this one only reads."""
        self._health_wanted: asyncio.Event | None = None
        """Set when a cluster with a health check is added to a worker that follows."""
        self._last_generation = -1
        self._context = BuildContext(host=plugins, stats=store)
        self._control: anyio.abc.TaskGroup | None = None
        self._control_scopes: dict[str, anyio.CancelScope] = {}
        for cc in config.cluster_manager.clusters:
            self.clusters[cc.name] = self._build(cc)
        self.publishers: list[Callable[[dict[str, Any]], None]] = []
        """Where host-set changes go besides this process (the workers' channels)."""

    def _build(self, cc: ClusterConfig) -> Cluster:
        ctype = self.plugins.get("cluster_type", cc.type)
        assert ctype is not None, "the loader checks cluster types"
        made = ctype.factory(cc, self._context)
        if isinstance(made, list):
            hosts = made
            self.discovery.pop(cc.name, None)
        else:
            hosts = list(made.hosts)
            self.discovery[cc.name] = made
        base = self.health.take(cc.host_slots, clear=not self.follows_health)
        if base is None:
            log.error("cluster %s: no room left for the health of its %d host slots; "
                      "workers do not follow its health checks", cc.name, cc.host_slots)
            return Cluster(cc, hosts, self.plugins, self.store)
        return Cluster(cc, hosts, self.plugins, self.store, self.health, base)

    def get(self, name: str) -> Cluster | None:
        return self.clusters.get(name)

    # -- changes while serving ----------------------------------------------------------

    def add_or_update(self, config: ClusterConfig) -> str:
        """Add the cluster ``config`` describes, or replace the one of its name:
        ``"added"``, ``"updated"`` or ``"unchanged"`` (the same configuration). A
        replaced cluster's pools drain; its stats continue under the same names."""
        old = self.clusters.get(config.name)
        if old is not None and old.config is config:
            return "unchanged"
        if old is not None:
            # The hosts apart (a cluster of thousands dumps in tens of milliseconds):
            # compared as models, the rest as dumped.
            before = old.config.model_dump(mode="json", exclude={"hosts"})
            after = config.model_dump(mode="json", exclude={"hosts"})
            if before == after and old.config.hosts == config.hosts:
                return "unchanged"
            if (config.type in LISTED_TYPES and old.config.type in LISTED_TYPES
                    and before == after):
                # Only the endpoints changed (an xDS endpoint update): the hosts that
                # remain keep their connections, health and stats.
                old.config = config
                hosts = old.listed_hosts(config)
                self.update_hosts(config.name, hosts)
                old.made_from(config, hosts)
                return "updated"
            self._retire(old)
        cluster = self.clusters[config.name] = self._build(config)
        if config.health_check and self._health_wanted is not None:
            self._health_wanted.set()
        if self._control is not None:
            self._start_control(cluster)
        cluster.start_worker()
        return "updated" if old is not None else "added"

    def remove(self, name: str) -> bool:
        """Remove the cluster ``name`` (False: there is none); its pools drain and
        requests routed to it from now on get the protocol's no-cluster reply."""
        old = self.clusters.pop(name, None)
        if old is None:
            return False
        self.discovery.pop(name, None)
        self._retire(old)
        return True

    def _retire(self, old: Cluster) -> None:
        scope = self._control_scopes.pop(old.name, None)
        if scope is not None:
            scope.cancel()
        old.set_hosts([])  # the pools drain; the host slots' stats are unlabelled first
        if old.health is self.health:
            self.health.give(old.slot_base, old.slots)

    # -- once per process tree: health checks and discovery --------------------------------

    async def run_control(self) -> None:
        """Run every cluster's active health checks and host discovery until cancelled
        (in the parent when there are workers, else in the one process); clusters
        added later get theirs when they are added."""
        async with anyio.create_task_group() as tg:
            self._control = tg
            try:
                for cluster in self.clusters.values():
                    self._start_control(cluster)
                await anyio.sleep_forever()
            finally:
                self._control = None

    def _start_control(self, cluster: Cluster) -> None:
        from mosn.upstream.health import build_checker

        assert self._control is not None
        cluster.controls_health = True
        checker = build_checker(cluster, self.plugins)
        discovery = self.discovery.get(cluster.name)
        runs = []
        if checker is not None:
            runs.append(checker.run)
        if discovery is not None and hasattr(discovery, "run"):
            runs.append(functools.partial(
                discovery.run, functools.partial(self.update_hosts, cluster.name),
                functools.partial(self._count_failures, cluster)))
        if runs:
            scope = self._control_scopes[cluster.name] = anyio.CancelScope()
            self._control.start_soon(_run_in, scope, runs)

    def update_hosts(self, name: str, hosts: list[Host]) -> None:
        """A cluster's new host set, from discovery (xDS and registries will call this
        too): applied here, then sent to the workers with the slots assigned here."""
        cluster = self.clusters.get(name)
        if cluster is None:
            return  # removed while its discovery ran
        cluster.set_hosts(hosts)
        if self.publishers:
            message = {"cluster": name, "hosts": [_host_dict(h) for h in cluster.hosts]}
            for publish in self.publishers:
                publish(message)

    def _count_failures(self, cluster: Cluster, n: int = 1) -> None:
        cluster.store.values[cluster.more.dns_resolution_failure] += n  # type: ignore[index]

    def apply(self, message: dict[str, Any]) -> None:
        """A host set sent by the process that runs discovery (in a worker)."""
        cluster = self.clusters.get(message.get("cluster", ""))
        if cluster is None:
            return
        cluster.set_hosts([
            Host(parse_address(d["address"]), weight=d["weight"], hostname=d["hostname"],
                 metadata=d["metadata"], slot=d["slot"], tls_disable=d.get("tls_disable", False))
            for d in message["hosts"]])

    def sync_health(self) -> None:
        generation = self.health.generation
        if generation != self._last_generation:
            self._last_generation = generation
            for cluster in self.clusters.values():
                cluster.sync_health()

    async def run_worker(self, follow_health: bool) -> None:
        """A serving process's upstream duties: per-worker timers and, when another
        process runs the health checks, following their results."""
        for cluster in self.clusters.values():
            cluster.start_worker()
        if not follow_health:
            return
        if not any(c.config.health_check for c in self.clusters.values()):
            # Until the control plane adds a cluster with a health check.
            self._health_wanted = asyncio.Event()
            await self._health_wanted.wait()
        while True:
            self.sync_health()
            await asyncio.sleep(HEALTH_SYNC_INTERVAL)


async def _run_in(scope: anyio.CancelScope, runs: list[Callable[[], Any]]) -> None:
    with scope:
        async with anyio.create_task_group() as tg:
            for run in runs:
                tg.start_soon(run)


def _host_dict(host: Host) -> dict[str, Any]:
    return {"address": str(host.address), "weight": host.weight, "hostname": host.hostname,
            "metadata": host.metadata, "slot": host.slot, "tls_disable": host.tls_disable}


def static_hosts(config: ClusterConfig, context: BuildContext) -> list[Host]:
    return [host_of(h) for h in config.hosts]


def host_of(entry: Any) -> Host:
    """The host a config's host entry (``HostConfig``) describes."""
    metadata = entry.lb_metadata if entry.metadata else {}  # most entries have none
    return Host(entry.address, entry.weight, entry.hostname, metadata,
                tls_disable=entry.tls_disable)


LISTED_TYPES = ("SIMPLE", "STATIC")
"""Cluster types whose hosts are the ones the config lists."""


@hookimpl
def mosn_cluster_types() -> list[Extension]:
    doc = "hosts listed in the config"
    return [
        Extension("SIMPLE", static_hosts, description=doc),
        Extension("STATIC", static_hosts, description=doc),
    ]
