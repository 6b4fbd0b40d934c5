"""Certificate rotation: watch the files TLS contexts were built from and rebuild
them when one changes.

Polling, not inotify: a Kubernetes secret volume swaps a symlink (``..data``) that
inotify on the file itself does not see, and a stat of a few files a second costs
nothing. Every process (each worker, and the parent that runs health checks) polls
the same files, so all rotate within one interval.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterable

import anyio

log = logging.getLogger("mosn.tls")

ROTATION_POLL_INTERVAL = 1.0
"""Seconds between looks at the certificate files: a rotated certificate is used by
new handshakes within this long."""
SETTLE_TIME = 0.2
"""Seconds to wait after a change is seen before reading: a certificate and its key
are written one after the other, and a half-rotated pair would not load."""


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)  # follows symlinks: a swapped link is a change
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class CertificateWatcher:
    """Rebuilds each TLS holder (``ServerTls`` or ``ClientTls``) whose files changed."""

    def __init__(self, holders: Iterable[tuple[str, Any]]) -> None:
        self.holders = [(name, holder, {p: _stamp(p) for p in holder.files()})
                        for name, holder in holders]
        self.rotations = 0
        self.failures = 0

    def __bool__(self) -> bool:
        return any(stamps for _, _, stamps in self.holders)

    def poll(self) -> list[Any]:
        """The holders whose files changed since the last look (stamps updated)."""
        changed = []
        for _, holder, stamps in self.holders:
            now = {p: _stamp(p) for p in stamps}
            if now != stamps:
                stamps.update(now)
                changed.append(holder)
        return changed

    def rebuild(self, holders: list[Any]) -> None:
        for name, holder, _ in self.holders:
            if holder not in holders:
                continue
            try:
                holder.reload()
            except Exception as exc:
                self.failures += 1
                log.error("%s: rotated certificate files not loaded, keeping the old ones: %s",
                          name, exc)
            else:
                self.rotations += 1
                log.info("%s: certificates reloaded from %s", name, ", ".join(holder.files()))

    async def run(self) -> None:
        if not self:
            return
        while True:
            await anyio.sleep(ROTATION_POLL_INTERVAL)
            changed = self.poll()
            if changed:
                await anyio.sleep(SETTLE_TIME)
                self.poll()  # take the stamps of the settled files
                self.rebuild(changed)
