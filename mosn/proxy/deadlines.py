"""The route timeouts of a proxy's streams, on one timer of the loop.

A timer handle per request (``loop.call_later`` when the request is complete, then
``cancel`` when the response ends first, as it nearly always does) costs an object
and two changes of libuv's timer heap on every request. Here the timed streams of a
proxy wait in one dict with their deadlines and one loop timer is armed for the
earliest of them: a stream that ends just leaves the dict. When the timer fires, the
streams past their deadline time out and it is armed again for the earliest left.
With one route timeout, streams are added in deadline order and the timer is armed
about once per timeout, whatever the rate of requests.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Protocol

log = logging.getLogger("mosn.proxy")

TIMER_SLACK = 0.001
"""Seconds before its deadline a stream counts as due when the timer fires: libuv's
timers have a resolution of a millisecond and may fire that much early (asyncio
allows its clock's resolution the same way)."""


class Timed(Protocol):
    def on_deadline(self) -> None:
        """The deadline passed (the stream was not discarded before it)."""


class Deadlines:
    """Streams with a deadline, and the one timer for the earliest (see the module)."""

    __slots__ = ("_due", "_timer", "_at", "_loop")

    def __init__(self) -> None:
        self._due: dict[Timed, float] = {}
        self._timer: Any = None
        self._at = math.inf
        """When the armed timer fires (inf: none is armed)."""
        self._loop: Any = None

    def __len__(self) -> int:
        return len(self._due)

    def add(self, loop: Any, stream: Timed, seconds: float) -> None:
        """Call ``stream.on_deadline()`` in ``seconds`` unless it is discarded first."""
        at = loop.time() + seconds
        self._due[stream] = at
        if at < self._at or loop is not self._loop:
            self._arm(loop, at)

    def discard(self, stream: Timed) -> None:
        self._due.pop(stream, None)

    def _arm(self, loop: Any, at: float) -> None:
        timer = self._timer
        if timer is not None and not self._loop.is_closed():
            timer.cancel()
        self._loop = loop
        self._at = at
        self._timer = loop.call_at(at, self._expire)

    def _expire(self) -> None:
        self._timer = None
        self._at = math.inf
        loop = self._loop
        due = self._due
        now = loop.time() + TIMER_SLACK
        expired = [stream for stream, at in due.items() if at <= now]
        for stream in expired:
            del due[stream]
        for stream in expired:
            try:
                stream.on_deadline()
            except Exception:  # one stream's failure must not keep the others waiting
                log.exception("a stream's timeout failed")
        if due:
            earliest = min(due.values())
            if earliest < self._at:  # streams added meanwhile may have armed it later
                self._arm(loop, earliest)


__all__ = ["Deadlines", "TIMER_SLACK", "Timed"]
