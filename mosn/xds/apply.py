"""From a candidate snapshot to the config mosn serves: compose, validate, serve.

The composed config goes through the same loader as a config file (every plugin's
model, TLS contexts built, names unique), with one difference: a route may name a
cluster not (yet) known, answered 503 until it arrives (Envoy's behaviour for
routes from RDS). Errors come back naming the resource they came from.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any, Callable

from mosn.config.loader import ConfigError, LoadedConfig, validate
from mosn.plugins import PluginHost
from mosn.xds.snapshot import Composed, Snapshot, name_errors

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
        self._models: dict[str, tuple[tuple[Any, ...], Any]] = {}
        """Resource and section -> (what its entry was made from, its validated model)."""
        self._parts: dict[str, dict[int, tuple[dict[str, Any], Any]]] = {}
        """Per router (key as in ``_models``): id of a translated virtual host or route
        (a dict, shared while its bytes stay the same) -> (that dict, its validated
        model), of the config serving. (A cluster's hosts need none: the translation
        makes them as models, checked as it reads them.)"""
        self._frozen: set[str] = set()
        """The kinds of resource (type URLs) of the configs frozen (:func:`gc.freeze`)."""

    def offer(self, candidate: Snapshot) -> list[str]:
        composed = candidate.compose(self.static)
        if composed.errors:
            return composed.errors
        routers = self._reuse(composed)
        try:
            loaded = validate(composed.raw, self.plugins, self.base_dir,
                              routes_to_unknown_clusters=True, check_keys=False,
                              must_serve=False)
        except ConfigError as exc:
            return name_errors(exc.errors, composed.origins)
        try:
            self.serve(loaded)
        except Exception as exc:  # the config is sound but cannot be served here
            log.exception("xDS: applying the config failed")
            return [f"mosn could not apply it: {exc}"]
        self.loaded, self.warming = loaded, composed.warming
        self._remember(composed, loaded, routers)
        held = {url for url, accepted in candidate.resources.items() if accepted}
        if not held <= self._frozen:
            # The first config with each kind of resource is the rest of the start
            # (mosn start froze what it built before the control plane answered): it
            # and the modules the control plane loaded live as long as the process,
            # kept out of the collector's full passes, which would otherwise pause
            # the next pushes. At most once per kind: what a later push replaces and
            # leaves in reference cycles is freed only if it was not frozen.
            gc.freeze()
            self._frozen |= held
        for line in composed.warming:
            log.info("xDS: warming: %s", line)
        return []

    # A push changes a few resources; the models of the others, validated before, are
    # put in the config as they are (pydantic takes a model instance without validating
    # it again), and the managers find them unchanged.
    #
    # A route configuration that changed keeps the models of its virtual hosts and
    # routes that did not (their translations are the same dicts, by identity): only
    # what changed is validated, and the route table takes over what it built from
    # the others.

    def _reuse(self, composed: Composed) -> dict[str, dict[str, Any]]:
        """Put the models known into ``composed.raw``; returns the translated router
        dicts (by path) whose parts were put in, as they were before."""
        routers: dict[str, dict[str, Any]] = {}
        known: dict[int, tuple[dict[str, Any], Any]] = {}
        for parts in self._parts.values():
            known.update(parts)
        for path, source in composed.sources.items():
            cached = self._models.get(composed.origins[path] + path.partition("[")[0])
            if cached is not None and _same(cached[0], source):
                _put(composed.raw, path, cached[1])
            elif ".routers[" in path:
                entry = _get_raw(composed.raw, path)
                routers[path] = entry
                _put(composed.raw, path, _with_parts(entry, known))
        return routers

    def _remember(self, composed: Composed, loaded: LoadedConfig,
                  routers: dict[str, dict[str, Any]]) -> None:
        models: dict[str, tuple[tuple[Any, ...], Any]] = {}
        parts_of: dict[str, dict[int, tuple[dict[str, Any], Any]]] = {}
        for path, source in composed.sources.items():
            model = _get(loaded.config, path)
            key = composed.origins[path] + path.partition("[")[0]
            models[key] = (source, model)
            raw = routers.get(path)
            if raw is None:  # reused whole (its parts stay known), or not a router
                if key in self._parts:
                    parts_of[key] = self._parts[key]
                continue
            parts = parts_of[key] = {}
            for vh, vh_model in zip(raw.get("virtual_hosts", []), model.virtual_hosts):
                parts[id(vh)] = (vh, vh_model)
                for r, r_model in zip(vh.get("routers", []), vh_model.routers):
                    parts[id(r)] = (r, r_model)
        self._models = models
        self._parts = parts_of


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and all(x is y or (isinstance(x, (str, frozenset)) and x == y)
                                    for x, y in zip(a, b))


def _put(raw: dict[str, Any], path: str, model: Any) -> None:
    """``raw[...]`` at a composed path (``servers[0].listeners[2]``) becomes ``model``."""
    parts = path.split(".")
    node: Any = raw
    for part in parts[:-1]:
        name, _, index = part.partition("[")
        node = node[name] if not index else node[name][int(index[:-1])]
    name, _, index = parts[-1].partition("[")
    node[name][int(index[:-1])] = model


def _with_parts(router: dict[str, Any],
                known: dict[int, tuple[dict[str, Any], Any]]) -> dict[str, Any]:
    """A copy of a translated router (never changed in place: the translations are
    shared) with the validated models of its known parts (virtual hosts and routes)
    in place of their dicts."""
    hosts = []
    for vh in router.get("virtual_hosts", []):
        found = known.get(id(vh))
        if found is not None and found[0] is vh:
            hosts.append(found[1])
            continue
        routes = [found[1] if (found := known.get(id(r))) is not None and found[0] is r
                  else r for r in vh.get("routers", [])]
        hosts.append({**vh, "routers": routes})
    return {**router, "virtual_hosts": hosts}


def _get_raw(raw: dict[str, Any], path: str) -> Any:
    node: Any = raw
    for part in path.split("."):
        name, _, index = part.partition("[")
        node = node[name]
        if index:
            node = node[int(index[:-1])]
    return node


def _get(config: Any, path: str) -> Any:
    node = config
    for part in path.split("."):
        name, _, index = part.partition("[")
        node = getattr(node, name)
        if index:
            node = node[int(index[:-1])]
    return node
