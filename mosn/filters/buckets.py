"""Token buckets every worker process shares: the state of each bucket lives in the
stats store's shared memory (:class:`mosn.observability.stats.SharedCells`), so a
limit of N a second is N for the whole proxy, however many ``--workers`` serve it.

A table holds ``BUCKET_SLOTS`` buckets, found by the hash of their key (which rate
limit config, which request key); each is three integers: the key's hash, its
tokens, and when it was last filled (``CLOCK_MONOTONIC`` nanoseconds, one clock for
every process of the machine). Taking a token is one short critical section under
the table's lock: refill by the whole intervals passed since the last fill (Envoy's
token bucket: ``tokens_per_fill`` every ``fill_interval``, at most ``max_tokens``),
then take one if there is one.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

BUCKET_SLOTS = 4096
"""Buckets per rate limit filter (per listener): one per (config, request key) in
use; 96 KiB of shared memory. A key beyond them takes the slot of the bucket idle
longest among ``PROBE_SLOTS`` (which then starts full again, as a new key would)."""
PROBE_SLOTS = 8
"""Slots looked at for a key (open addressing): a short, bounded search."""
CELLS_PER_SLOT = 3
"""The key's hash, the tokens, the last fill time."""
LOCK_TIMEOUT = 1.0
"""Seconds a request waits for the table's lock; a worker that died holding it cannot
stall the others for longer, and such a request is let through (counted)."""
_EMPTY = 0


@dataclass(frozen=True, slots=True)
class TokenBucket:
    """Envoy's ``TokenBucket``: starts full."""

    max_tokens: int
    tokens_per_fill: int
    fill_interval_ns: int


class _LocalCells:
    """Cells in this process only: a filter built where there is no stats store (a
    unit test, the kit's registration check)."""

    def __init__(self, count: int) -> None:
        self.values = memoryview(bytearray(count * 8)).cast("q")
        self.lock: Any = threading.Lock()


class BucketTable:
    """``BUCKET_SLOTS`` token buckets in shared (or local) cells."""

    __slots__ = ("cells", "lock_failures")

    def __init__(self, stats: Any, name: str) -> None:
        count = BUCKET_SLOTS * CELLS_PER_SLOT
        self.cells: Any = (stats.shared_cells(name, count) if stats is not None
                           else _LocalCells(count))
        self.lock_failures = 0

    def take(self, key: int, bucket: TokenBucket) -> tuple[bool, int, float]:
        """Take one token from ``key``'s bucket: (taken, tokens left, seconds until
        the next fill)."""
        key = key or 1  # 0 marks an empty slot
        cells = self.cells
        values = cells.values
        now = time.monotonic_ns()
        interval = bucket.fill_interval_ns
        if not cells.lock.acquire(timeout=LOCK_TIMEOUT):
            self.lock_failures += 1
            return True, 0, interval / 1e9
        try:
            base = _find(values, key)
            if values[base] != key:
                values[base] = key
                values[base + 1] = bucket.max_tokens
                values[base + 2] = now
                tokens, last = bucket.max_tokens, now
            else:
                tokens, last = values[base + 1], values[base + 2]
                fills = (now - last) // interval
                if fills > 0:
                    tokens = min(bucket.max_tokens, tokens + fills * bucket.tokens_per_fill)
                    last += fills * interval
                    values[base + 2] = last
            taken = tokens > 0
            if taken:
                tokens -= 1
            values[base + 1] = tokens
        finally:
            cells.lock.release()
        return taken, tokens, (last + interval - now) / 1e9


def _find(values: Any, key: int) -> int:
    """The base cell of ``key``'s slot: its own, else an empty one, else the one
    filled longest ago among the probed slots."""
    start = (key % BUCKET_SLOTS) * CELLS_PER_SLOT
    stalest, oldest = start, None
    for i in range(PROBE_SLOTS):
        base = (start + i * CELLS_PER_SLOT) % (BUCKET_SLOTS * CELLS_PER_SLOT)
        held = values[base]
        if held == key or held == _EMPTY:
            return base
        filled = values[base + 2]
        if oldest is None or filled < oldest:
            stalest, oldest = base, filled
    return stalest


__all__ = ["BUCKET_SLOTS", "BucketTable", "TokenBucket"]
