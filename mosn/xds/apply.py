"""From a candidate snapshot to the config mosn serves: compose, validate, serve.

The composed config goes through the same loader as a config file (every plugin's
model, TLS contexts built, names unique), with one difference: a route may name a
cluster not (yet) known, answered 503 until it arrives (Envoy's behaviour for
routes from RDS). Errors come back naming the resource they came from.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from mosn.config.loader import ConfigError, LoadedConfig, validate
from mosn.plugins import PluginHost
from mosn.xds.snapshot import Snapshot, name_errors

log = logging.getLogger("mosn.xds")

Serve = Callable[[LoadedConfig], None]
"""Make the process serve a validated config (through the managers); raises with the
reason when it cannot (a port in use ...)."""


class Composer:
    def __init__(self, static: dict[str, Any], plugins: PluginHost, serve: Serve,
                 base_dir: Path | None = None) -> None:
        self.static = static
        """The config file's document: its static listeners, clusters and routes."""
        self.plugins = plugins
        self.serve = serve
        self.base_dir = base_dir
        self.loaded: LoadedConfig | None = None
        """The config serving now (None before the first accepted response)."""
        self.warming: list[str] = []

    def offer(self, candidate: Snapshot) -> list[str]:
        raw, origins, warming, errors = candidate.compose(self.static)
        if errors:
            return errors
        try:
            loaded = validate(raw, self.plugins, self.base_dir, routes_to_unknown_clusters=True)
        except ConfigError as exc:
            return name_errors(exc.errors, origins)
        try:
            self.serve(loaded)
        except Exception as exc:  # the config is sound but cannot be served here
            log.exception("xDS: applying the config failed")
            return [f"mosn could not apply it: {exc}"]
        self.loaded, self.warming = loaded, warming
        for line in warming:
            log.info("xDS: warming: %s", line)
        return []
