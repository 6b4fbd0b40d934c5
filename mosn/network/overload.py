"""The overload manager (Envoy's, with one resource: the buffer budget of
:mod:`mosn.network.budget`). Each worker runs one over its own budget.

- At ``stop_accepting_connections`` (a fraction of ``max_buffered_bytes``) every
  listener of the worker stops accepting; clients wait in the kernel's backlog until
  the budget falls below the threshold again.
- At ``shed_high_memory_connections`` the connections holding the most are closed,
  largest first, until the budget is below that threshold again: each is answered in
  its protocol first where the protocol can (``ReadFilter.on_shed``: an RPC client's
  requests in flight get the protocol's overload status).
- Every ``refresh_interval`` the write buffers not yet seen empty are read again (the
  peer drains them unseen), the gauges are written, and when the budget has fallen a
  long way since the heap was last trimmed, the C allocator is asked to give freed
  memory back to the system (Envoy's ``shrink_heap``): freed buffers would otherwise
  stay in the process's resident size.

Crossing a threshold is acted on in the same loop turn the bytes were counted in (the
budget calls back when it leaves the band around the current state), not at the next
refresh. Stats (``overload.``): ``buffered_bytes``, ``<action>.active`` (gauges) and
``stop_accepting_connections.triggered``, ``shed_high_memory_connections.shed`` and
``.shed_bytes``; a log line (rate-limited) each time an action starts or stops.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from typing import Any, Iterable

from mosn.network.budget import BUDGET
from mosn.network.listener import PAUSE_OVERLOAD, Listener
from mosn.observability.ratelimit import RateLimitedLog
from mosn.observability.stats import StatsStore

log = logging.getLogger("mosn.overload")

STOP_ACCEPTING = "stop_accepting_connections"
SHED = "shed_high_memory_connections"
OVERLOAD_STATS = (
    "buffered_bytes",
    f"{STOP_ACCEPTING}.active",
    f"{STOP_ACCEPTING}.triggered",
    f"{SHED}.active",
    f"{SHED}.shed",
    f"{SHED}.shed_bytes",
)
"""The overload manager's stats, under ``overload.``."""
TRIM_BYTES = 4 * 1024 * 1024
"""A fall of the budget since the last trim that is worth a ``malloc_trim``: it walks
the heap's free chunks (well under a millisecond for a heap of hundreds of MiB with
large buffers freed; it runs at most once per refresh), and the buffers' neighbours
(each request's objects) are freed with them, so the process gives back several
times the fall."""


def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None on another C library."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


class OverloadManager:
    def __init__(self, config: Any, store: StatsStore, listeners: Iterable[Listener]) -> None:
        self.config = config
        self.store = store
        self.listeners = list(listeners)
        maximum = config.max_buffered_bytes
        self.stop_at = int(maximum * config.actions.stop_accepting_connections)
        self.shed_at = int(maximum * config.actions.shed_high_memory_connections)
        self.stats = store.scope("overload", OVERLOAD_STATS)
        self.stopped = False
        self.shedding = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._scheduled = False
        self._peak = 0
        """The most buffered since the heap was last trimmed."""
        self._trim = _malloc_trim()
        self._stop_log, self._resume_log, self._shed_log = (RateLimitedLog(log) for _ in range(3))

    def start(self) -> None:
        """Begin watching this worker's budget (call in the worker, once it serves)."""
        self._loop = asyncio.get_running_loop()
        BUDGET.reset()
        BUDGET.on_change = self._soon
        self._band()
        self._refresh()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        BUDGET.on_change = None

    def _soon(self) -> None:
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._evaluate)

    def _refresh(self) -> None:
        for conn in list(BUDGET.writing):
            conn.refresh_write_buffer()
        self._evaluate()
        used = BUDGET.used
        if used > self._peak:
            self._peak = used
        elif self._peak - used >= TRIM_BYTES:
            if self._trim is not None:
                self._trim(0)
            self._peak = used
        assert self._loop is not None
        self._timer = self._loop.call_later(self.config.refresh_interval, self._refresh)

    def _evaluate(self) -> None:
        self._scheduled = False
        used = BUDGET.used
        values, s = self.store.values, self.stats
        assert values is not None
        stop = used >= self.stop_at
        if stop is not self.stopped:
            self.stopped = stop
            values[getattr(s, f"{STOP_ACCEPTING}_active")] = int(stop)
            for listener in self.listeners:
                if stop:
                    listener.pause_accepting(PAUSE_OVERLOAD)
                else:
                    listener.resume_accepting(PAUSE_OVERLOAD)
            if stop:
                values[getattr(s, f"{STOP_ACCEPTING}_triggered")] += 1
            (self._stop_log if stop else self._resume_log).log(
                logging.WARNING if stop else logging.INFO,
                "overload: %d bytes buffered (%s at %d): %s", used, STOP_ACCEPTING, self.stop_at,
                "not accepting connections" if stop else "accepting connections again")
        if used >= self.shed_at:
            self._shed(used)
        elif self.shedding:
            self.shedding = False
            values[getattr(s, f"{SHED}_active")] = 0
        values[s.buffered_bytes] = BUDGET.used
        self._band()

    def _shed(self, used: int) -> None:
        values, s = self.store.values, self.stats
        assert values is not None
        if not self.shedding:
            self.shedding = True
            values[getattr(s, f"{SHED}_active")] = 1
        shed = freed = 0
        for conn in sorted(BUDGET.holders, key=lambda c: c.buffered, reverse=True):
            if used - freed < self.shed_at:
                break
            if conn.closing:
                continue
            held = conn.buffered
            conn.shed()  # its share leaves the budget now
            freed += held
            shed += 1
        values[getattr(s, f"{SHED}_shed")] += shed
        values[getattr(s, f"{SHED}_shed_bytes")] += freed
        if shed:
            self._shed_log.log(logging.WARNING, "overload: %d bytes buffered (%s at %d): closed "
                          "the %d connections holding the most, %d bytes", used, SHED,
                          self.shed_at, shed, freed)
        else:
            self._shed_log.log(logging.WARNING, "overload: %d bytes buffered (%s at %d): no "
                          "connection holds enough to be worth closing", used, SHED,
                          self.shed_at)

    def _band(self) -> None:
        """Be called back as soon as the budget crosses the next threshold either way."""
        used = BUDGET.used
        levels = (self.stop_at, self.shed_at)
        BUDGET.high = min((level for level in levels if level > used),
                          default=float("inf")) - 1
        BUDGET.low = max((level for level in levels if level <= used), default=-1)
