"""MOSN's log roller at run time (``servers[].global_log_roller``, parsed by
:mod:`mosn.config.logroller`): the log files moved aside
by time or by size, old ones compressed and removed, then every process told to
reopen its files (the same SIGUSR1 that ``logrotate`` sends after moving a file).

A line is never lost to a rotation: the writers keep writing to the moved file
until they reopen the path, and what they wrote there stays in it.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterable

import anyio

from mosn.config.logroller import MAX_ROTATE_HOURS, Roller

log = logging.getLogger("mosn.accesslog")

SIZE_CHECK_INTERVAL = 1.0
"""Seconds between two looks at a log's size: a file may pass its ``size=`` by what
is written in this time before it is moved."""
REOPEN_GRACE = 5.0
"""Seconds between asking the writers to reopen and compressing the file they left:
each writer reopens at its next write, within a second (the access log's
``FLUSH_INTERVAL``), so none still writes to the file when it is compressed."""
MEGABYTE = 1024 * 1024  # lumberjack's MB
SIZE_SUFFIX_FORMAT = "%Y-%m-%dT%H-%M-%S"
"""lumberjack's name for a file moved aside by size: ``access-2024-05-01T10-00-00.000.log``."""
HOURLY_SUFFIX_FORMAT = "%Y-%m-%d_%H"
DAILY_SUFFIX_FORMAT = "%Y-%m-%d"
"""MOSN's names for a file moved aside by time: ``access.log.2024-05-01_10`` (hourly
and up to 23 hours), ``access.log.2024-05-01`` (daily)."""


class LogRoller:
    """Moves ``paths()`` aside when due and calls ``reopen`` after; runs in the
    process that supervises (the only one, without workers)."""

    def __init__(self, roller: Roller, paths: Callable[[], Iterable[str]],
                 reopen: Callable[[], None]) -> None:
        self.roller = roller
        self.paths = paths
        self.reopen = reopen

    async def run(self) -> None:
        roller = self.roller
        if roller.time_hours:
            while True:
                now = time.time()
                due = next_rotation(now, roller.time_hours)
                await anyio.sleep(due - now)
                await self.rotate(time.localtime(due - 1))
        limit = roller.size_mb * MEGABYTE
        while True:
            await anyio.sleep(SIZE_CHECK_INTERVAL)
            full = [p for p in self.paths() if _size(p) >= limit]
            if full:
                await self.rotate(time.localtime(), full)

    async def rotate(self, at: time.struct_time, paths: Iterable[str] | None = None) -> None:
        """Move each file aside (named for ``at``), reopen, then (once every writer
        has reopened) compress and prune."""
        moved = []
        for path in (self.paths() if paths is None else paths):
            if not os.path.exists(path):
                continue
            target = self._name(path, at)
            try:
                os.rename(path, target)
            except OSError as exc:
                log.error("log roller: cannot move %s to %s: %s", path, target,
                          exc.strerror or exc)
                continue
            moved.append((path, target))
        if not moved:
            return
        self.reopen()
        for path, target in moved:
            log.info("log roller: %s moved to %s", path, target)
        if self.roller.compress:
            await anyio.sleep(REOPEN_GRACE)
        for path, target in moved:
            if self.roller.compress:
                _compress(target)
            if not self.roller.time_hours:
                self._prune(path)

    def _name(self, path: str, at: time.struct_time) -> str:
        if self.roller.time_hours:
            fmt = DAILY_SUFFIX_FORMAT if self.roller.time_hours == MAX_ROTATE_HOURS \
                else HOURLY_SUFFIX_FORMAT
            name = f"{path}.{time.strftime(fmt, at)}"
        else:
            stem, ext = os.path.splitext(path)
            millis = int(time.time() * 1000) % 1000
            name = f"{stem}-{time.strftime(SIZE_SUFFIX_FORMAT, at)}.{millis:03d}{ext}"
        taken, n = name, 1
        while os.path.exists(taken) or os.path.exists(taken + ".gz"):
            taken, n = f"{name}.{n}", n + 1
        return taken

    def _prune(self, path: str) -> None:
        """lumberjack's rule: keep the newest ``keep`` files moved aside, none older
        than ``age`` days (0: no bound)."""
        stem, ext = os.path.splitext(os.path.basename(path))
        folder = Path(path).parent
        old = sorted((p for p in folder.glob(f"{stem}-*{ext}*") if p.is_file()),
                     key=lambda p: p.stat().st_mtime, reverse=True)
        oldest = time.time() - self.roller.age_days * 86400
        for i, p in enumerate(old):
            if (self.roller.keep and i >= self.roller.keep) or (
                    self.roller.age_days and p.stat().st_mtime < oldest):
                try:
                    p.unlink()
                except OSError:
                    pass


def next_rotation(now: float, hours: int) -> float:
    """When a roller by time next rotates: the next multiple of ``hours`` from local
    midnight (MOSN's logs use local time), at the latest the next midnight."""
    local = time.localtime(now)
    midnight = now - (local.tm_hour * 3600 + local.tm_min * 60 + local.tm_sec) - (now % 1)
    period = hours * 3600
    due = midnight + ((now - midnight) // period + 1) * period
    return min(due, midnight + 86400)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _compress(path: str) -> None:
    try:
        with open(path, "rb") as src, gzip.open(path + ".gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.unlink(path)
    except OSError as exc:
        log.error("log roller: cannot compress %s: %s", path, exc.strerror or exc)


__all__ = ["LogRoller", "next_rotation"]
