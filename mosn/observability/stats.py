"""Counters, gauges and histograms in shared memory, one row per worker process.

Every stat is registered by name before the workers start, or later by every process
alike (:meth:`StatsStore.in_step`: what a control plane adds); each then has a fixed
index (a histogram is a run of counters, one per bucket, and their sum). The values
live in one anonymous shared mapping (``mmap``, inherited over ``fork``) holding a
row of signed 64-bit integers per worker: a worker only ever writes its own row, so
the hot path is a plain ``values[i] += n`` with no lock, and the admin API (in the
parent) sums the rows.

Past the rows the same mapping holds :class:`SharedCells`: integers every process
reads and writes under the cells' own lock, for state that must be one for all
workers (a rate limit's token buckets), not a sum of per-worker parts.
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import multiprocessing
import weakref
from typing import Any, Callable, Iterable, Iterator, Sequence

LISTENER_STATS = (
    "downstream_cx_total",
    "downstream_cx_active",
    "downstream_cx_destroy",
    "downstream_cx_overflow",
    "downstream_cx_accept_error",
    "downstream_cx_idle_timeout",
    "downstream_cx_rx_bytes_total",
    "downstream_cx_tx_bytes_total",
    "downstream_pre_cx_timeout",
    "downstream_cx_handed_off",
    "downstream_listener_filter_error",
    "downstream_cx_proxy_proto_error",
    "no_filter_chain_match",
)
UDP_LISTENER_STATS = (*LISTENER_STATS, "downstream_rx_datagram_dropped")
"""A UDP listener's: its sessions count as connections, and datagrams can be dropped."""
CLUSTER_STATS = (
    "upstream_cx_total",
    "upstream_cx_active",
    "upstream_cx_connect_fail",
    "upstream_cx_connect_timeout",
    "upstream_cx_destroy_local",
    "upstream_cx_destroy_remote",
    "upstream_cx_destroy_with_error",
    "upstream_cx_none_healthy",
    "upstream_cx_rx_bytes_total",
    "upstream_cx_tx_bytes_total",
)
UPSTREAM_STATS = (
    "upstream_cx_connecting",
    "upstream_cx_overflow",
    "upstream_cx_keepalive_heartbeat",
    "upstream_cx_keepalive_close",
    "upstream_rq_total",
    "upstream_rq_active",
    "upstream_rq_pending_active",
    "upstream_rq_pending_overflow",
    "upstream_rq_retry",
    "upstream_rq_retry_active",
    "upstream_rq_retry_overflow",
    "upstream_rq_replay",
    "upstream_rq_1xx",
    "upstream_rq_2xx",
    "upstream_rq_3xx",
    "upstream_rq_4xx",
    "upstream_rq_5xx",
    "upstream_rq_timeout",
    "upstream_rq_rx_reset",
    "lb_subsets_selected",
    "lb_subsets_fallback",
    "health_check.attempt",
    "health_check.success",
    "health_check.failure",
    "health_check.network_failure",
    "health_check.healthy",
    "health_check.turned_unhealthy",
    "health_check.turned_healthy",
    "outlier_detection.ejections_enforced_total",
    "outlier_detection.ejections_active",
    "outlier_detection.ejections_overflow",
    "outlier_detection.ejections_enforced_consecutive_5xx",
    "outlier_detection.ejections_enforced_consecutive_gateway_failure",
    "outlier_detection.ejections_enforced_success_rate",
    "outlier_detection.ejections_returned_total",
    "membership_change",
    "dns_resolution_failure",
)
"""More per-cluster stats: requests, circuit breakers, subsets, health and outlier
checks, host-set changes (Envoy's names where Envoy has one)."""
HOST_STATS = ("cx_total", "cx_active", "cx_connect_fail", "rq_total", "rq_active", "rq_error",
              "rq_1xx", "rq_2xx", "rq_3xx", "rq_4xx", "rq_5xx", "rq_timeout",
              "outlier_ejections", "outlier_ejected")
DOWNSTREAM_RQ_STATS = (
    "downstream_rq_total",
    "downstream_rq_active",
    "downstream_rq_1xx",
    "downstream_rq_2xx",
    "downstream_rq_3xx",
    "downstream_rq_4xx",
    "downstream_rq_5xx",
    "downstream_rq_rx_reset",
    "downstream_rq_tx_reset",
    "downstream_rq_idle_timeout",
    "downstream_rq_filter_error",
)
"""Per listener with an L7 proxy (``listener.<name>.``) and per protocol
(``protocol.<name>.``), counted by :class:`mosn.observability.observer.StatsObserver`."""
SERVER_STATS = ("reload_success", "reload_failed", "reload_in_place", "upgrade_success",
                "upgrade_failed", "connections_migrated", "connections_drained",
                "connections_migration_failed", "connections_tls_drained",
                "worker_xds_apply_failed", "worker_stats_diverged", "worker_health_diverged")
"""The process's own stats (``server.``): config reloads (SIGHUP, the admin API) by
outcome and by path, upgrades (a new process taking over) by outcome, what became
of the connections an upgrade handed over or drained (docs/upgrade.md), and, with
workers under a control plane, a worker that could not serve what the parent accepted
or whose stats or shared health no longer line up with the parent's (docs/xds.md,
"Workers")."""
STATS_GROWTH_ROOM = 1 << 21
"""Stats a store can register after it is allocated (listeners and clusters added at
run time by a reload or the control plane: 500 clusters of a few dozen host slots take
some 200,000), in every row; the room is address space only until used (an anonymous
mapping's pages are made on first touch): 16 MiB of it per row, so 48 MiB of address
space for two workers and the parent, of which only the pages of registered stats
that counted are memory."""
GAUGES = frozenset({
    "downstream_cx_active", "upstream_cx_active", "cx_active", "upstream_cx_connecting",
    "upstream_rq_active", "upstream_rq_pending_active", "upstream_rq_retry_active",
    "health_check.healthy", "outlier_detection.ejections_active", "rq_active",
    "outlier_ejected", "downstream_rq_active", "buffered_bytes", "active",
    "connected_state", "version",  # the control plane's: Envoy's gauges too
})
HISTOGRAM_BUCKETS_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
                        30000, 60000, 300000, 600000, 1800000, 3600000)
"""Upper bounds (milliseconds, inclusive) of the request time histograms' buckets:
Envoy's default buckets, so dashboards built for Envoy read them alike; one more
bucket holds everything above the last bound."""


def is_gauge(name: str) -> bool:
    """Whether the stat ``name`` (``listener.http.downstream_cx_active``) is a gauge."""
    return any(name == g or name.endswith(f".{g}") for g in GAUGES)


class Histogram:
    """The indices of one histogram: ``len(HISTOGRAM_BUCKETS_MS) + 1`` bucket counters
    from ``base`` (not cumulative: each counts the values that fall in it) and the sum
    of every value in microseconds at ``sum``. Kept as plain counters so the workers'
    rows add up exactly, like every other stat. A value ``ms`` is counted with
    ``values[base + bisect_left(HISTOGRAM_BUCKETS_MS, ms)] += 1`` and
    ``values[sum] += int(ms * 1000)``."""

    __slots__ = ("name", "base", "sum")

    def __init__(self, name: str, base: int, sum_index: int) -> None:
        self.name = name
        self.base = base
        self.sum = sum_index


class Scope:
    """The indices of one scope's stats, as attributes: ``scope.upstream_cx_total``
    (a dotted name such as ``health_check.attempt`` becomes ``health_check_attempt``)."""

    def __init__(self, store: "StatsStore", prefix: str, names: Iterable[str]) -> None:
        self.prefix = prefix
        self.indices: dict[str, int] = {}
        for name in names:
            index = self.indices[name] = store.register(f"{prefix}.{name}")
            setattr(self, name.replace(".", "_"), index)
        self.shown: str | None = prefix
        """The prefix its stats are shown under (a host slot's owner); None: hidden."""
        self.block: _Block | None = None
        """Its stats' block, when registered as one (:meth:`block`)."""

    @classmethod
    def block(cls, store: "StatsStore", prefix: str, names: tuple[str, ...],
              attributes: tuple[str, ...]) -> "Scope":
        """A scope whose stats are one block (:meth:`StatsStore.register_block`);
        ``attributes``: ``names`` as attribute names. A host slot's stats are made when
        a host first takes the slot: a thousand slots at once in an endpoint push."""
        scope = cls.__new__(cls)
        block = store.register_block(prefix, names)
        indices = range(block.base, block.base + len(names))
        attrs = scope.__dict__
        attrs.update(zip(attributes, indices))
        attrs["prefix"] = prefix
        attrs["indices"] = dict(zip(names, indices))
        attrs["shown"] = prefix
        attrs["block"] = block
        block.scope = scope
        return scope


class SlotScopes(Sequence[Scope]):
    """A cluster's host slot scopes, each registered when first used: a slot no host
    has taken costs no stats. A store allocated for workers registers every one first
    (at its allocation, or when made in a step): a slot a worker first used on its
    own would take a different index in each process."""

    def __init__(self, store: "StatsStore", prefix: str, names: Iterable[str], count: int) -> None:
        self._store = store
        self._prefix = prefix
        self._names = tuple(names)
        self._attributes = tuple(name.replace(".", "_") for name in self._names)
        self._scopes: list[Scope | None] = [None] * count

    def __len__(self) -> int:
        return len(self._scopes)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self._scopes)))]
        scope = self._scopes[i]
        if scope is None:
            if i < 0:
                i += len(self._scopes)
            scope = self._scopes[i] = Scope.block(self._store, f"{self._prefix}#{i}",
                                                  self._names, self._attributes)
            scope.shown = None  # hidden until a host takes the slot
            scope.block.fresh = True  # its next label takes no baseline
        return scope

    def register_all(self) -> None:
        for i in range(len(self._scopes)):
            self[i]


class _Block:
    """Stats registered together (:meth:`StatsStore.register_block`), named when read."""

    __slots__ = ("prefix", "names", "base", "gauges", "scope", "baseline", "fresh")

    def __init__(self, prefix: str, names: tuple[str, ...], base: int,
                 gauges: tuple[int, ...]) -> None:
        self.prefix = prefix
        self.names = names
        self.base = base
        self.gauges = gauges
        """The offsets of the gauges among ``names``."""
        self.scope: Scope | None = None
        """The scope its stats are shown by (the last one labelled); None: hidden."""
        self.baseline: list[int] | None = None
        """What each stat had counted before its scope's owner (gauges 0), subtracted
        when shown; None: nothing."""
        self.fresh = True
        """Registered and not yet labelled: its stats have counted nothing, so
        labelling it needs no baseline."""

    def name(self, index: int) -> str:
        return f"{self.prefix}.{self.names[index - self.base]}"


class SharedCells:
    """``count`` signed 64-bit integers in the stats mapping that every process (the
    parent and each worker) shares: read and write them only ``with cells.lock``.
    ``values`` is usable once the store is allocated (before the workers fork); the
    lock is a process-shared semaphore made at registration, so forked workers
    inherit it."""

    __slots__ = ("name", "offset", "count", "lock", "values")

    def __init__(self, name: str, offset: int, count: int) -> None:
        self.name = name
        self.offset = offset
        self.count = count
        self.lock: Any = multiprocessing.Lock()
        self.values: memoryview | None = None


class StatsStore:
    def __init__(self) -> None:
        self.names: list[str | _Block] = []
        """Each index's name, or the block that names it (:meth:`name`)."""
        self._blocks: dict[str, _Block] = {}
        self._shared: list[SharedCells] = []
        self._shared_size = 0
        self._index: dict[str, int] = {}
        self._rows = 0
        self._width = 0
        """Stats per row of the mapping: room for more in a one-process store."""
        self._mem: mmap.mmap | None = None
        self.values: memoryview | None = None
        """This process's row; the only one it writes."""
        self._display: dict[int, Scope | None] = {}
        """Relabelled stats (host slots): shown under their scope's ``shown`` prefix
        (one attribute to change when a slot changes owner); None hides a stat."""
        self._baseline: dict[int, int] = {}
        """Counts a reused slot had before its current owner; subtracted when shown
        (a block's are its own: :attr:`_Block.baseline`)."""
        self._gauge_offsets: dict[tuple[str, ...], tuple[int, ...]] = {}
        self.histograms: dict[str, Histogram] = {}
        self._carried: dict[int, int] = {}
        """Counts a config reload carried over from the stores before this one."""
        self._lazy: weakref.WeakSet[SlotScopes] = weakref.WeakSet()
        """Slot scopes not all registered, made before :meth:`allocate`."""
        self._previous: list[tuple[StatsStore, dict[int, int]]] = []
        """Stores of a config before a reload whose workers still drain, with our
        index to theirs for the stats both have: read live."""
        self.refreshers: list[Callable[[], None]] = []
        """Called before the stats are read (:meth:`snapshot`, :meth:`histogram_totals`):
        an owner of slot scopes whose names workers discover (gRPC services) labels
        them here, in the process that reads."""
        self._hidden_histograms: set[str] = set()
        self._in_step = False
        """In :meth:`in_step`: a store with several rows takes new stats."""

    @contextlib.contextmanager
    def in_step(self) -> Iterator[None]:
        """Register stats in a store allocated for workers: every process (the parent
        and each worker) registers the same names in the same order here (each applies
        the same control plane snapshots in the same order), so a name has the same
        index in every row. Outside it such a store refuses new stats (a name only one
        process registered would count in another's slot)."""
        self._in_step = True
        try:
            yield
        finally:
            self._in_step = False

    def _has_room(self, count: int) -> bool:
        """Whether ``count`` more stats can be registered after :meth:`allocate`."""
        return (self._rows == 1 or self._in_step) and len(self.names) + count <= self._width

    def register(self, name: str) -> int:
        if name not in self._index:
            if self._mem is not None and not self._has_room(1):
                raise RuntimeError(f"stat {name!r} registered after the store was allocated "
                                   "for workers outside a step (or past its growth room)")
            self._index[name] = len(self.names)
            self.names.append(name)
        return self._index[name]

    def register_block(self, prefix: str, names: tuple[str, ...]) -> "_Block":
        """Stats ``prefix.NAME`` for each of ``names``, at consecutive indices from the
        block's ``base`` (the same block again for a prefix registered before). Their
        names are made when they are read, not here: no string or index entry per stat."""
        block = self._blocks.get(prefix)
        if block is not None:
            return block
        start = len(self.names)
        if self._mem is not None and not self._has_room(len(names)):
            raise RuntimeError(f"stats {prefix!r} registered after the store was allocated "
                               "for workers outside a step (or past its growth room)")
        block = self._blocks[prefix] = _Block(prefix, names, start, self._gauges_of(names))
        self.names.extend(itertools.repeat(block, len(names)))
        return block

    def name(self, index: int) -> str:
        """The registered name of the stat at ``index``."""
        name = self.names[index]
        return name if type(name) is str else name.name(index)

    def shared_cells(self, name: str, count: int) -> SharedCells:
        """``count`` cells shared by every process, registered now (before
        :meth:`allocate`, or after it in a one-process store); ``name`` says whose
        they are (shown by nothing)."""
        if self._mem is not None:
            if self._rows > 1:
                raise RuntimeError(f"shared cells {name!r} registered after the store was "
                                   "allocated for workers")
            # One process (a filter a reload added): nothing to share the cells with.
            cells = SharedCells(name, 0, count)
            cells.values = memoryview(bytearray(count * 8)).cast("q")
            return cells
        cells = SharedCells(name, self._shared_size, count)
        self._shared.append(cells)
        self._shared_size += count
        return cells

    def scope(self, prefix: str, names: Iterable[str]) -> Scope:
        return Scope(self, prefix, names)

    def histogram(self, name: str, hidden: bool = False) -> Histogram:
        """A histogram registered now (or the one already registered as ``name``); its
        counters are left out of :meth:`snapshot` and read by :meth:`histogram_totals`
        (``hidden``: not shown until :meth:`label_histogram` names it)."""
        if hidden:
            self._hidden_histograms.add(name)
        if name in self.histograms:
            return self.histograms[name]
        indices = [self.register(f"{name}:le_{bound:g}") for bound in HISTOGRAM_BUCKETS_MS]
        indices.append(self.register(f"{name}:le_inf"))
        indices.append(self.register(f"{name}:sum_us"))
        for index in indices:
            self._display[index] = None
        made = self.histograms[name] = Histogram(name, indices[0], indices[-1])
        return made

    def label_histogram(self, histogram: Histogram, name: str) -> None:
        """Show a hidden histogram under ``name`` (its owner was found later)."""
        self._hidden_histograms.discard(histogram.name)
        self.histograms.pop(histogram.name, None)
        histogram.name = name
        self.histograms[name] = histogram

    def histogram_totals(self) -> dict[str, dict[str, object]]:
        """Every histogram summed over every worker: ``count``, ``sum_ms`` and
        ``buckets``, a list of ``[upper bound in ms, cumulative count]`` ending with
        ``[None, count]`` for the overflow bucket (``+Inf``)."""
        for refresh in self.refreshers:
            refresh()
        out: dict[str, dict[str, object]] = {}
        n = len(HISTOGRAM_BUCKETS_MS) + 1
        for name, h in self.histograms.items():
            if name in self._hidden_histograms:
                continue
            running, buckets = 0, []
            for i in range(n):
                running += self.total(h.base + i)
                bound = HISTOGRAM_BUCKETS_MS[i] if i < n - 1 else None
                buckets.append([bound, running])
            out[name] = {"count": running, "sum_ms": self.total(h.sum) / 1000.0,
                         "buckets": buckets}
        return out

    def slot_scopes(self, prefix: str, names: Iterable[str], count: int) -> SlotScopes:
        """``count`` scopes for owners known only later (hosts that a cluster discovers
        after the workers started), each hidden until :meth:`label`. Registered when
        first used, or all of them when the store is allocated for workers."""
        scopes = SlotScopes(self, prefix, names, count)
        if self._mem is None:
            self._lazy.add(scopes)
        elif self._rows > 1:
            scopes.register_all()  # now, in the step every process takes alike
        return scopes

    def hide(self, scope: Scope) -> None:
        scope.shown = None
        if scope.block is not None:
            scope.block.scope = scope
        else:
            self._display.update(dict.fromkeys(scope.indices.values(), scope))

    def label(self, scope: Scope, prefix: str | None, from_now: bool = True) -> None:
        """Show ``scope``'s stats as ``prefix.NAME`` (None: hide them). A scope that
        had another owner keeps counting from where it was; the owner's share is what
        is shown (its gauges start wherever the last owner left them, zero once that
        owner's connections are gone). ``from_now=False``: a slot that never had
        another owner, shown with everything it counted."""
        scope.shown = prefix
        block = scope.block
        if block is not None:
            # A host slot: its owner changes by one attribute, and its baseline is one
            # read of the block's row (an endpoint push relabels a thousand at once).
            block.scope = scope
            if prefix is None:
                return
            if not from_now or self._mem is None or block.fresh:
                block.fresh = False
                return
            counts = self._block_totals(block)
            for offset in block.gauges:
                counts[offset] = 0
            block.baseline = counts if any(counts) else None
            return
        display = self._display
        indices = scope.indices
        if indices and display.get(next(iter(indices.values()))) is not scope:
            for index in indices.values():
                display[index] = scope
        if prefix is None:
            return
        if not from_now or self._mem is None:
            return
        counted = [index for name, index in scope.indices.items() if name not in GAUGES]
        baseline = self._baseline
        for index, total in zip(counted, self.totals(counted)):
            if total or index in baseline:
                baseline[index] = total

    def _gauges_of(self, names: tuple[str, ...]) -> tuple[int, ...]:
        """The offsets of the gauges among a block's ``names`` (the same names for
        every slot of a cluster: worked out once)."""
        found = self._gauge_offsets.get(names)
        if found is None:
            found = self._gauge_offsets[names] = tuple(
                i for i, name in enumerate(names) if name in GAUGES)
        return found

    def _block_totals(self, block: _Block) -> list[int]:
        start = block.base
        stop = start + len(block.names)
        if self._rows == 1 and not self._carried and not self._previous:
            assert self.values is not None
            return self.values[start:stop].tolist()  # one process: its row is every row
        return self.totals(range(start, stop))

    def allocate(self, rows: int) -> None:
        """Make the shared mapping for ``rows`` workers; call before forking."""
        if rows > 1:
            for scopes in list(self._lazy):
                scopes.register_all()
        self._lazy.clear()
        self._rows = rows
        self._width = len(self.names) + STATS_GROWTH_ROOM
        stats = rows * self._width * 8
        size = max(8, stats + self._shared_size * 8)
        self._mem = mmap.mmap(-1, size)
        for cells in self._shared:
            start = stats + cells.offset * 8
            cells.values = memoryview(self._mem)[start:start + cells.count * 8].cast("q")
        self.use_row(0)

    def use_row(self, row: int) -> None:
        assert self._mem is not None
        width = self._width * 8
        self.values = memoryview(self._mem)[row * width:(row + 1) * width].cast("q")

    def total(self, index: int) -> int:
        """One stat summed over every worker (with what a config reload carried)."""
        return self.totals((index,))[0]

    def totals(self, indices: Iterable[int]) -> list[int]:
        """:meth:`total` of each of ``indices`` (one view of the mapping for all)."""
        assert self._mem is not None
        carried, previous = self._carried, self._previous
        if self._rows == 1 and not carried and not previous:
            row = self.values  # one process: its row is every row (a host set's relabelling)
            assert row is not None
            return [row[index] for index in indices]
        n = self._width
        every = memoryview(self._mem).cast("q")
        rows = range(self._rows)
        out = []
        for index in indices:
            own = sum(every[r * n + index] for r in rows) + carried.get(index, 0)
            if previous:
                own += sum(old.total(pairs[index]) for old, pairs in previous if index in pairs)
            out.append(own)
        return out

    def follow(self, old: "StatsStore") -> None:
        """Continue ``old``'s stats (a config reload): every stat both stores have by
        name adds ``old``'s live value until :meth:`release`. Host slots are left out:
        slot ``#i`` may belong to another host in the new config."""
        theirs = old._index
        pairs = {i: theirs[name] for i, name in enumerate(self.names)
                 if type(name) is str and name in theirs and "#" not in name}
        self._previous.append((old, pairs))

    def release(self, old: "StatsStore") -> None:
        """``old``'s workers are gone: keep its final counters and histogram buckets,
        not its gauges (what they counted is closed), and stop reading its mapping."""
        for store, pairs in self._previous:
            if store is old:
                for ours, theirs in pairs.items():
                    if not is_gauge(self.names[ours]):
                        self._carried[ours] = self._carried.get(ours, 0) + old.total(theirs)
        self._previous = [(s, p) for s, p in self._previous if s is not old]

    def export_counters(self) -> dict[str, int]:
        """Every counter and histogram bucket by its registered name, summed over the
        workers: what an upgrade's old process hands the new one. Gauges (what they
        count closes with the process) and host slots (a slot may be another host's in
        the new process) are left out."""
        return {name: self.total(i) for i, name in enumerate(self.names)
                if type(name) is str and "#" not in name and not is_gauge(name)}

    def carry(self, counters: dict[str, int]) -> None:
        """Continue the counters another process counted (:meth:`export_counters` of
        the process an upgrade replaced): each adds to the stat of its name, which is
        registered if this store does not have it yet and has room."""
        for name, value in counters.items():
            if "#" in name or is_gauge(name):
                continue
            index = self._index.get(name)
            if index is None:
                try:
                    index = self.register(name)
                except RuntimeError:
                    continue  # a store for workers has no room: the stat is not shown here
                if ":" in name:
                    self._display[index] = None  # a histogram's bucket
            self._carried[index] = self._carried.get(index, 0) + value

    def zero_gauges(self) -> None:
        """Set this process's gauges to 0 (a runtime that stopped, so its parent row
        does not add to the gauges of the one that replaced it)."""
        assert self.values is not None
        for i in range(len(self.names)):
            if is_gauge(self.name(i)):
                self.values[i] = 0

    def snapshot(self) -> dict[str, int]:
        """Every stat by name, summed over every worker."""
        assert self._mem is not None
        for refresh in self.refreshers:
            refresh()
        n, width = len(self.names), self._width
        every = memoryview(self._mem).cast("q")
        totals = [0] * n
        for r in range(self._rows):
            row = every[r * width:r * width + n]
            for i in range(n):
                totals[i] += row[i]
        for i, carried in self._carried.items():
            totals[i] += carried
        for old, pairs in self._previous:
            for ours, theirs in pairs.items():
                totals[ours] += old.total(theirs)
        display, baseline = self._display, self._baseline
        out = {}
        for i, name in enumerate(self.names):
            if type(name) is not str:  # a block: shown by its scope's owner
                scope = name.scope
                if scope is not None and scope.shown is not None:
                    before = name.baseline
                    out[f"{scope.shown}.{name.names[i - name.base]}"] = (
                        totals[i] - before[i - name.base] if before is not None else totals[i])
            elif i in display:
                scope = display[i]
                if scope is None or scope.shown is None:
                    continue
                out[f"{scope.shown}{name[len(scope.prefix):]}"] = totals[i] - baseline.get(i, 0)
            else:
                out[name] = totals[i]
        return out
