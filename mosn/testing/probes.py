"""The kit's own plugin, for the conformance suites: extensions a test puts around the
one under test in a real mosn. Not installed as a plugin: a test makes mosn load it
with :func:`mosn.testing.plugin_site` (``PROBES`` names it).

- stream filter ``kit_probe``: at its ``phase``, ``continue``, ``stop`` (hold the
  request, resume it on the next loop turn), ``reply`` (answer ``status`` itself),
  ``raise`` (in ``on_request``) or ``raise_on_response``;
- cluster type ``kit_hosts``: the hosts listed in a JSON file (``[{"address": ...,
  "weight": ...}]``), read again whenever it changes (checked every ``interval``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import ConfigDict, Field

from mosn.config import ClusterConfig, Duration, Model, parse_address
from mosn.plugins import BuildContext, Extension, hookimpl
from mosn.proxy import FilterStatus, Phase, StreamFilter
from mosn.upstream import Host

log = logging.getLogger("mosn.testing.probes")

PROBES = ("kit_probes", "mosn.testing.probes")
"""(plugin name, module) for :func:`mosn.testing.plugin_site`."""
PROBE_ERROR = "kit_probe raised as configured"
"""The message of the exception ``kit_probe`` raises."""
DEFAULT_POLL_INTERVAL = 0.05
"""Seconds between looks at a ``kit_hosts`` file: tests wait on the change."""


class ProbeConfig(Model):
    model_config = ConfigDict(extra="forbid")

    phase: Literal["BEFORE_ROUTE", "AFTER_ROUTE", "AFTER_CHOOSE_HOST"] = "BEFORE_ROUTE"
    action: Literal["continue", "stop", "reply", "raise", "raise_on_response"] = "continue"
    status: int = Field(default=418, ge=200, le=599)
    """What ``reply`` answers."""


class Probe(StreamFilter):
    def __init__(self, config: ProbeConfig) -> None:
        self.phase = Phase[config.phase]
        self.action = config.action
        self.status = config.status

    def on_request(self, stream: Any) -> FilterStatus:
        action = self.action
        if action == "stop":
            asyncio.get_running_loop().call_soon(self._resume, stream)
            return FilterStatus.STOP
        if action == "reply":
            stream.send_local_reply(self.status, "kit_probe reply\n")
            return FilterStatus.STOP
        if action == "raise":
            raise RuntimeError(PROBE_ERROR)
        return FilterStatus.CONTINUE

    @staticmethod
    def _resume(stream: Any) -> None:
        if not stream.done:
            stream.continue_request()

    def on_response(self, stream: Any, head: Any) -> None:
        if self.action == "raise_on_response":
            raise RuntimeError(PROBE_ERROR)


def build_probe(config: ProbeConfig, context: BuildContext) -> Callable[[], StreamFilter]:
    probe = Probe(config)
    return lambda: probe


class HostsFileConfig(Model):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1)
    interval: Duration = DEFAULT_POLL_INTERVAL


def read_hosts(path: str) -> list[Host]:
    entries = json.loads(Path(path).read_text())
    return [Host(parse_address(e["address"]), weight=int(e.get("weight", 1))) for e in entries]


class HostsFile:
    """Discovery from a JSON file (see the module's docstring)."""

    def __init__(self, config: HostsFileConfig) -> None:
        self.path = config.path
        self.interval = config.interval
        self.seen = self._stamp()
        self.hosts = read_hosts(self.path)

    def _stamp(self) -> tuple[int, int]:
        stat = os.stat(self.path)
        return stat.st_mtime_ns, stat.st_size

    async def run(self, update: Callable[[list[Host]], None],
                  count_failure: Callable[[int], None]) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                stamp = self._stamp()
                if stamp != self.seen:
                    hosts = read_hosts(self.path)
                    self.seen = stamp
                    update(hosts)
            except (OSError, ValueError, KeyError) as exc:  # a file half written: next time
                log.debug("kit_hosts %s: %s", self.path, exc)
                count_failure(1)


def build_hosts_file(cluster: ClusterConfig, context: BuildContext) -> HostsFile:
    return HostsFile(cluster.parsed_cluster_config)


@hookimpl
def mosn_stream_filters() -> list[Extension]:
    return [Extension("kit_probe", build_probe, ProbeConfig,
                      description="the testing kit's probe: continue, stop, reply or raise")]


@hookimpl
def mosn_cluster_types() -> list[Extension]:
    return [Extension("kit_hosts", build_hosts_file, HostsFileConfig,
                      description="the testing kit's hosts from a JSON file")]
