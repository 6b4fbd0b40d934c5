"""Log lines for events that can come in floods (a codec failing on every frame, a
listener out of descriptors): the first one is logged at once, the rest at most once
per interval, each saying how many were left out since the last."""

from __future__ import annotations

import logging
import time

LOG_INTERVAL = 10.0
"""Seconds between two lines about one kind of event: often enough to see it go on,
rare enough that a flood of bad input cannot fill the disk through the log."""


class RateLimitedLog:
    """One kind of event's log line, at most once per ``interval`` seconds."""

    __slots__ = ("logger", "interval", "_next", "_skipped")

    def __init__(self, logger: logging.Logger, interval: float = LOG_INTERVAL) -> None:
        self.logger = logger
        self.interval = interval
        self._next = 0.0
        self._skipped = 0

    def log(self, level: int, message: str, *args: object,
            exc_info: BaseException | None = None) -> bool:
        """Log ``message % args`` unless a line went out less than ``interval`` ago;
        True if it was logged."""
        now = time.monotonic()
        if now < self._next:
            self._skipped += 1
            return False
        self._next = now + self.interval
        if self._skipped:
            message += " (and %d more since the last line)"
            args = (*args, self._skipped)
            self._skipped = 0
        self.logger.log(level, message, *args, exc_info=exc_info)
        return True
