"""mosn under a control plane: the client, the composer, and a reload of the file.

The process applies each accepted response through its managers (``apply``, given by
the server). A reload of the config file (SIGHUP, ``POST /reload``) changes only the
static part: the file is read again and served with the resources last accepted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from mosn.config.loader import ConfigError, LoadedConfig, load, read_file
from mosn.upgrade.managers import in_place_blockers
from mosn.xds.apply import Composer
from mosn.xds.client import Subscriber
from mosn.xds.dump import config_dump
from mosn.xds.runner import build_client
from mosn.xds.snapshot import Snapshot, pack, restore
from mosn.xds.stats import XdsStats


def restore_handed(header: dict[str, Any], blob: bytes) -> Snapshot:
    """The resources a process replaced by an upgrade had accepted (:class:`Refused`
    when they do not translate here)."""
    return restore(header, blob)


class ControlPlane:
    def __init__(self, loaded: LoadedConfig, apply: Callable[[LoadedConfig], None],
                 stats: XdsStats | None = None, snapshot: Snapshot | None = None) -> None:
        """``snapshot``: resources accepted before (handed over by the process an
        upgrade replaces): the client subscribes with their versions."""
        self.static = loaded
        """The config file as loaded (without the control plane's resources)."""
        self.composer = Composer(read_file(loaded.source), loaded.plugins, apply,
                                 Path(loaded.source).parent)
        self.accepted: list[Callable[[Snapshot], None]] = []
        """Called with each snapshot served (a parent with workers sends it on)."""
        self.client: Subscriber = build_client(loaded.config, self.offer, stats, snapshot)

    def offer(self, candidate: Snapshot) -> list[str]:
        errors = self.composer.offer(candidate)
        if not errors:
            for accepted in self.accepted:
                accepted(candidate)
        return errors

    def serve_snapshot(self) -> list[str]:
        """Serve the resources the client holds (handed over) before it subscribes:
        the reasons they cannot be served, or []."""
        return self.composer.offer(self.client.snapshot)

    def handover(self) -> tuple[dict[str, Any], bytes]:
        """The accepted resources for the process an upgrade starts."""
        return pack(self.client.snapshot)

    async def run(self) -> None:
        await self.client.run()

    def dump(self) -> list[dict[str, Any]]:
        """``/config_dump``'s entries for the dynamic resources (Envoy's shape)."""
        return config_dump(self.client.snapshot, self.composer.warming)

    def reload(self) -> tuple[int, str]:
        """Read the file again and serve it with the accepted resources: an HTTP
        status and what happened (as the server's in-place reload answers)."""
        try:
            new = load(self.static.source)
        except ConfigError as exc:
            return 400, "config reload refused, still serving the old config:\n" + \
                "".join(f"{line}\n" for line in exc.errors)
        blockers = in_place_blockers(self.static, new)
        if new.config.dynamic_resources != self.static.config.dynamic_resources:
            blockers.append("dynamic_resources changed")
        if blockers:
            return 409, ("config reload: cannot apply in place (" + "; ".join(blockers) +
                         "); still serving the old config\n")
        before = self.composer.static
        self.composer.static = read_file(new.source)
        errors = self.composer.offer(self.client.snapshot)
        if errors:
            self.composer.static = before
            return 400, "config reload refused, still serving the old config:\n" + \
                "".join(f"{line}\n" for line in errors)
        self.static = new
        return 200, "reloaded in place with the control plane's resources\n"
