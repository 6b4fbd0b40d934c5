"""The control plane's snapshots from the parent to its workers (``--workers N``).

The parent alone talks to the control plane. Each snapshot it accepted (served by its
own managers first) goes to every worker as what changed since the last one it sent
them: the changed resources packed as an upgrade packs them (their messages' bytes)
and the names removed. A worker translates the changed ones again, keeps every other
resource as the same object (so its composer reuses their validated models, as the
parent's does), and serves the result through its own composer and managers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mosn.config.loader import LoadedConfig, read_file
from mosn.xds.apply import Composer, Serve
from mosn.xds.fields import Refused
from mosn.xds.snapshot import Snapshot, pack, restore


class Outbox:
    """The parent's side: what its workers were sent last."""

    def __init__(self, sent: Snapshot | None = None) -> None:
        self.sent = sent if sent is not None else Snapshot()
        """The snapshot the workers hold (the one they were forked with, or sent last)."""

    def delta(self, snapshot: Snapshot) -> tuple[dict[str, Any], bytes]:
        """``snapshot`` as what changed since :attr:`sent` (resources by identity:
        the client keeps an accepted resource's object while it does not change),
        packed. Once it is sent, :attr:`sent` becomes ``snapshot``."""
        changed = Snapshot()
        removed: list[list[str]] = []
        for url, items in snapshot.resources.items():
            before = self.sent.resources.get(url, {})
            table = changed.resources.setdefault(url, {})
            for name, accepted in items.items():
                if before.get(name) is not accepted:
                    table[name] = accepted
            removed += [[url, name] for name in before if name not in items]
        changed.versions = dict(snapshot.versions)
        header, blob = pack(changed)
        header["removed"] = removed
        return header, blob


class Follower:
    """A worker's side: the snapshot the parent sent last, and the composer that
    serves it here."""

    def __init__(self, composer: Composer, snapshot: Snapshot, plane: Any = None) -> None:
        self.composer = composer
        self.snapshot = snapshot
        self.plane = plane
        """The parent's control plane this worker was forked with, kept: its gRPC
        objects must not be released in a forked process, which never uses them."""

    @classmethod
    def start(cls, loaded: LoadedConfig, serve: Serve, plane: Any = None) -> "Follower":
        """A worker's follower: from the parent's control plane it was forked with when
        that had served a snapshot already (a reload's workers, an upgrade's), else
        from nothing (the config file alone serves)."""
        if plane is not None:
            plane.composer.serve = serve
            return cls(plane.composer, plane.client.snapshot, plane)
        composer = Composer(read_file(loaded.source), loaded.plugins, serve,
                            Path(loaded.source).parent)
        return cls(composer, Snapshot())

    def offer(self, header: dict[str, Any], blob: bytes) -> list[str]:
        """Serve the parent's snapshot (:meth:`Outbox.delta`): the reasons it cannot be
        served here, or []. It is held either way (the next one is a change of it, and
        serves whatever this one could not)."""
        try:
            changed = restore(header, blob)
        except Refused as exc:  # the same code translated them in the parent
            return exc.errors
        snapshot = self.snapshot.copy()
        for url, items in changed.resources.items():
            snapshot.resources.setdefault(url, {}).update(items)
        for url, name in header["removed"]:
            snapshot.resources[url].pop(name, None)
        snapshot.versions = changed.versions
        self.snapshot = snapshot
        return self.composer.offer(snapshot)
