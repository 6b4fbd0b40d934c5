"""MOSN's ``grpc_metric`` stream filter (``pkg/filter/stream/grpcmetric``): counts of
gRPC calls per service, and per method with a latency histogram.

MOSN counts ``grpc.<service>.request_total``, ``response_succ_total`` and
``response_fail_total`` (a call succeeded when its ``grpc-status`` is 0). mosn adds
the same three per method, ``grpc.<service>.<method>.*``, and the histogram
``grpc.<service>.<method>.request_time`` (from the request's start to the stream's
end, in the stats' millisecond buckets).

Services are found as calls come, in any worker, but stats must exist before the
workers fork: the filter reserves ``MAX_NAMES`` slots (a scope and a histogram each),
and the first worker to see a name claims a slot in a table every process shares;
whoever reads the stats (the admin API, in the parent) labels the claimed slots. A
name past the last slot, or longer than ``MAX_NAME_BYTES``, is counted in
``grpc_metric.overflow`` only. HTTP/2 gRPC requests (``content-type:
application/grpc*``); other requests are not counted.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Callable

from mosn.config.base import Model
from mosn.filters.common import FilterStats
from mosn.network.filter import FilterStatus
from mosn.plugins import BuildContext, Extension, hookimpl
from mosn.proxy.stream_filter import Phase, StreamFilter
from mosn.observability.stats import HISTOGRAM_BUCKETS_MS

MAX_NAMES = 128
"""Services and methods counted (each a slot: 3 counters and a histogram of 24): a
bound on the stats memory, which is fixed before the workers fork."""
MAX_NAME_BYTES = 248
"""Bytes of a ``service`` or ``service/method`` name kept in the shared table (a slot is
32 cells of 8 bytes, one of them the length)."""
CELLS_PER_NAME = 32
COUNTERS = ("request_total", "response_succ_total", "response_fail_total")
"""MOSN's names (``grpcmetric/stats.go``)."""
PREFIX = "grpc"


class GrpcMetricConfig(Model):
    """MOSN's filter takes no config."""


class NameTable:
    """Slots for names found while serving, shared by every process: a name's slot
    is the same in all of them, so the rows of its counters add up."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.cells = store.shared_cells("grpc_metric.names", MAX_NAMES * CELLS_PER_NAME)
        self.scopes = store.slot_scopes(PREFIX, COUNTERS, MAX_NAMES)
        self.histograms = [store.histogram(f"{PREFIX}#{i}.request_time", hidden=True)
                           for i in range(MAX_NAMES)]
        self.local: dict[str, int | None] = {}
        self.labelled: set[int] = set()
        store.refreshers.append(self.refresh)

    def slot(self, name: str) -> int | None:
        """The name's slot (claimed now if it has none); None when none is left."""
        found = self.local.get(name, -1)
        if found != -1:
            return found
        data = name.encode()
        chosen = None
        if len(data) <= MAX_NAME_BYTES:
            with self.cells.lock:
                raw = self.cells.values.cast("B")
                for i in range(MAX_NAMES):
                    base = i * CELLS_PER_NAME
                    length = self.cells.values[base]
                    if length == 0:
                        raw[(base + 1) * 8:(base + 1) * 8 + len(data)] = data
                        self.cells.values[base] = len(data)
                        chosen = i
                        break
                    if length == len(data) and bytes(raw[(base + 1) * 8:
                                                         (base + 1) * 8 + length]) == data:
                        chosen = i
                        break
        self.local[name] = chosen
        return chosen

    def refresh(self) -> None:
        """Label the slots workers claimed (in the process that reads the stats)."""
        values = self.cells.values
        if values is None:
            return
        raw = values.cast("B")
        for i in range(MAX_NAMES):
            if i in self.labelled:
                continue
            length = values[i * CELLS_PER_NAME]
            if length == 0:
                break  # slots are claimed in order
            start = (i * CELLS_PER_NAME + 1) * 8
            name = bytes(raw[start:start + length]).decode("utf-8", "replace")
            shown = f"{PREFIX}.{name.replace('/', '.')}"
            self.store.label(self.scopes[i], shown, from_now=False)
            if "/" in name:  # a method's slot: its latency too
                self.store.label_histogram(self.histograms[i], f"{shown}.request_time")
            self.labelled.add(i)


class GrpcMetric(StreamFilter):
    """Stateless: one for every stream of a listener; the end of each gRPC stream is
    counted by a callback."""

    phase = Phase.BEFORE_ROUTE

    def __init__(self, table: NameTable | None, stats: FilterStats) -> None:
        self.table = table
        self.stats = stats

    def on_request(self, stream: Any) -> FilterStatus:
        head = stream.request
        if self.table is None or head.frame is not None:
            return FilterStatus.CONTINUE
        if not (head.headers.get("content-type") or "").startswith("application/grpc"):
            return FilterStatus.CONTINUE
        path = head.path.partition("?")[0]
        if path.count("/") != 2:
            return FilterStatus.CONTINUE
        service, _, method = path[1:].partition("/")
        slots = (self.table.slot(service), self.table.slot(f"{service}/{method}"))
        if None in slots:
            self.stats.count("overflow")
        stream.at_end(lambda s: self.count(s, slots))
        return FilterStatus.CONTINUE

    def count(self, stream: Any, slots: tuple[int | None, int | None]) -> None:
        table = self.table
        assert table is not None
        status = None
        for fields in (stream.response_trailers, stream.response_headers):
            if fields is not None and status is None:
                status = fields.get("grpc-status")
        outcome = "response_succ_total" if status == "0" else "response_fail_total"
        values = table.store.values
        for slot in slots:
            if slot is None:
                continue
            scope = table.scopes[slot]
            values[scope.indices["request_total"]] += 1
            values[scope.indices[outcome]] += 1
        method = slots[1]
        if method is not None:
            ms = (stream.end_monotonic - stream.start_monotonic) * 1000
            h = table.histograms[method]
            values[h.base + bisect_left(HISTOGRAM_BUCKETS_MS, ms)] += 1
            values[h.sum] += int(ms * 1000)


_TABLES: list[NameTable] = []
"""The table of each stats store (one per config; listeners share it, as they share
the slots' stat names)."""


def table_of(store: Any) -> NameTable:
    for table in _TABLES:
        if table.store is store:
            return table
    _TABLES[:] = [t for t in _TABLES if t.store.values is not None][-1:]  # the running one
    table = NameTable(store)
    _TABLES.append(table)
    return table


def build(config: GrpcMetricConfig, context: BuildContext) -> Callable[[], StreamFilter]:
    store = context.stats
    table = table_of(store) if store is not None else None
    flt = GrpcMetric(table, FilterStats(store, "grpc_metric", ("overflow",)))
    return lambda: flt


@hookimpl
def mosn_stream_filters() -> list[Extension]:
    return [Extension("grpc_metric", build, GrpcMetricConfig,
                      description="MOSN's per-service gRPC stats")]

