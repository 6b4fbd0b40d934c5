"""The buffer budget: the bytes this process holds in buffers for its connections,
counted in one place so that they can be bounded together (the overload manager,
:mod:`mosn.network.overload`, acts on it).

What is counted, per connection (``Connection.buffered``):
- its write buffer: bytes written that the peer has not taken yet (read after each
  write, and again every refresh while it is not empty);
- what its codec and the proxy hold for it through ``Connection.hold``: a partial
  frame, requests in flight (an RPC request is kept whole until answered, and counted
  with an estimate of the objects it keeps), a request body waiting for an upstream
  or kept for a retry.

A connection's share leaves the budget when it closes. Each worker process has its own
budget (its own memory); there is no lock because only the event loop's thread touches it.
"""

from __future__ import annotations

from typing import Any, Callable

SHED_MIN_BYTES = 64 * 1024
"""A connection holding less than this is not a candidate for shedding: closing it
would free too little to matter, and it spares tracking every connection."""


class BufferBudget:
    """This process's buffered bytes, and the connections holding the most."""

    __slots__ = ("used", "low", "high", "holders", "writing", "on_change")

    def __init__(self) -> None:
        self.used = 0
        self.low: float = -1
        self.high: float = float("inf")
        """``on_change`` is called when ``used`` leaves ``[low, high]`` (the overload
        manager sets these around its thresholds)."""
        self.holders: set[Any] = set()
        """Connections holding at least ``SHED_MIN_BYTES``."""
        self.writing: set[Any] = set()
        """Connections whose write buffer was not empty when last looked at."""
        self.on_change: Callable[[], None] | None = None

    def changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def reset(self) -> None:
        """Forget everything (a worker starting: what a forked parent counted is not its)."""
        self.used = 0
        self.low, self.high = -1, float("inf")
        self.holders.clear()
        self.writing.clear()
        self.on_change = None


BUDGET = BufferBudget()
"""The budget of this process (each worker has its own)."""
