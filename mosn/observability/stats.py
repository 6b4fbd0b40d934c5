"""Counters and gauges in shared memory, one row per worker process.

Every stat is registered by name before the workers start; each then has a fixed
index. The values live in one anonymous shared mapping (``mmap``, inherited over
``fork``) holding a row of signed 64-bit integers per worker: a worker only ever
writes its own row, so the hot path is a plain ``values[i] += n`` with no lock, and
the admin API (in the parent) sums the rows.
"""

from __future__ import annotations

import mmap
from typing import Iterable

LISTENER_STATS = (
    "downstream_cx_total",
    "downstream_cx_active",
    "downstream_cx_destroy",
    "downstream_cx_overflow",
    "downstream_cx_idle_timeout",
    "downstream_cx_rx_bytes_total",
    "downstream_cx_tx_bytes_total",
)
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
HOST_STATS = ("cx_total", "cx_active", "cx_connect_fail")
GAUGES = frozenset({"downstream_cx_active", "upstream_cx_active", "cx_active"})


class Scope:
    """The indices of one scope's stats, as attributes: ``scope.upstream_cx_total``."""

    def __init__(self, store: "StatsStore", prefix: str, names: Iterable[str]) -> None:
        self.prefix = prefix
        for name in names:
            setattr(self, name, store.register(f"{prefix}.{name}"))


class StatsStore:
    def __init__(self) -> None:
        self.names: list[str] = []
        self._index: dict[str, int] = {}
        self._rows = 0
        self._mem: mmap.mmap | None = None
        self.values: memoryview | None = None
        """This process's row; the only one it writes."""

    def register(self, name: str) -> int:
        if self._mem is not None:
            raise RuntimeError(f"stat {name!r} registered after the store was allocated")
        if name not in self._index:
            self._index[name] = len(self.names)
            self.names.append(name)
        return self._index[name]

    def scope(self, prefix: str, names: Iterable[str]) -> Scope:
        return Scope(self, prefix, names)

    def allocate(self, rows: int) -> None:
        """Make the shared mapping for ``rows`` workers; call before forking."""
        self._rows = rows
        size = max(1, rows * len(self.names)) * 8
        self._mem = mmap.mmap(-1, size)
        self.use_row(0)

    def use_row(self, row: int) -> None:
        assert self._mem is not None
        width = len(self.names) * 8
        self.values = memoryview(self._mem)[row * width:(row + 1) * width].cast("q")

    def total(self, index: int) -> int:
        """One stat summed over every worker."""
        assert self._mem is not None
        n = len(self.names)
        every = memoryview(self._mem).cast("q")
        return sum(every[r * n + index] for r in range(self._rows))

    def snapshot(self) -> dict[str, int]:
        """Every stat by name, summed over every worker."""
        assert self._mem is not None
        n = len(self.names)
        every = memoryview(self._mem).cast("q")
        totals = [0] * n
        for r in range(self._rows):
            row = every[r * n:(r + 1) * n]
            for i in range(n):
                totals[i] += row[i]
        return dict(zip(self.names, totals))
