"""The plugin host: loads built-in and installed plugins and keeps their extensions.

Installed plugins are found through the entry-point group ``mosn.plugins``
(``[project.entry-points."mosn.plugins"] dubbo = "mosn_dubbo.plugin"``); built-in
features are plugins of the same form, listed in ``BUILTIN_PLUGINS``. Each plugin's
hooks (see :mod:`mosn.hookspecs`) are called once here; the extensions they return
are kept by kind and name for the config and the runtime to look up.

Which plugins load:
- every built-in and every installed plugin, minus those named in ``plugins.disable``;
- with ``MOSN_DISABLE_PLUGIN_AUTOLOAD`` set, only the built-ins and the installed
  plugins named in ``plugins.enable``.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import importlib_metadata
import pluggy
from pydantic import BaseModel

from mosn import hookspecs

__all__ = ["AUTOLOAD_ENV", "BUILTIN_PLUGINS", "ENTRY_POINT_GROUP", "BuildContext", "Extension",
           "PluginError", "PluginHost", "PluginInfo", "hookimpl"]

hookimpl = pluggy.HookimplMarker("mosn")

ENTRY_POINT_GROUP = "mosn.plugins"
AUTOLOAD_ENV = "MOSN_DISABLE_PLUGIN_AUTOLOAD"

BUILTIN_PLUGINS: dict[str, str] = {
    "tcp_proxy": "mosn.filters.tcp_proxy",
    "proxy": "mosn.proxy.filter",
    "fault": "mosn.filters.fault",
    "ratelimit": "mosn.filters.ratelimit",
    "rbac": "mosn.filters.rbac",
    "healthcheck": "mosn.filters.healthcheck",
    "payload_limit": "mosn.filters.payload_limit",
    "compression": "mosn.filters.compression",
    "header_to_metadata": "mosn.filters.header_to_metadata",
    "dsl": "mosn.filters.dsl",
    "mirror": "mosn.filters.mirror",
    "grpc_metric": "mosn.filters.grpc_metric",
    "tls_inspector": "mosn.filters.tls_inspector",
    "original_dst": "mosn.filters.original_dst",
    "proxy_protocol": "mosn.filters.proxy_protocol",
    "http_inspector": "mosn.filters.http_inspector",
    "udp_proxy": "mosn.filters.udp_proxy",
    "connection_manager": "mosn.filters.connection_manager",
    "load_balancers": "mosn.upstream.lb",
    "static_cluster": "mosn.upstream.cluster",
    "strict_dns_cluster": "mosn.upstream.dns",
    "original_dst_cluster": "mosn.upstream.original_dst",
    "health_checkers": "mosn.upstream.health",
}
"""Built-in plugin name -> module, registered like any installed plugin."""


@dataclass(frozen=True, slots=True)
class Extension:
    """One named thing a plugin adds: a filter, a load balancer, a cluster type ...

    ``config_model`` validates the ``config`` the user writes for it (``None``: it
    takes no config); ``factory`` builds it (each hook spec says with what).
    """

    name: str
    factory: Callable[..., Any]
    config_model: type[BaseModel] | None = None
    description: str = ""


@dataclass(slots=True)
class PluginInfo:
    """What ``mosn plugins list`` and the admin API show of one plugin."""

    name: str
    distribution: str
    version: str
    module: str
    builtin: bool
    enabled: bool
    registers: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "builtin": self.builtin,
            "enabled": self.enabled,
            "registers": self.registers,
            "error": self.error,
        }


class PluginError(Exception):
    """A plugin could not be loaded; the message names the plugin (and the name)."""


@dataclass(frozen=True, slots=True)
class BuildContext:
    """What an extension factory may use while the runtime is being built."""

    host: "PluginHost"
    cluster_manager: Any = None
    stats: Any = None
    routers: Any = None
    """:class:`mosn.router.Routers`: every router configuration, by name."""
    stream_filters: tuple[Any, ...] = ()
    """The listener's stream filter factories (each makes a filter per stream)."""
    observers: tuple[Any, ...] = ()
    """The listener's :class:`mosn.proxy.observer.StreamObserver` objects (stats,
    access logs, tracing), told of every L7 stream."""


class PluginHost:
    """Loads plugins and answers ``get(kind, name)`` for their extensions."""

    def __init__(
        self,
        enable: Iterable[str] = (),
        disable: Iterable[str] = (),
        autoload: bool | None = None,
    ) -> None:
        self.enable = set(enable)
        self.disable = set(disable)
        self.autoload = not os.environ.get(AUTOLOAD_ENV) if autoload is None else autoload
        self.plugins: list[PluginInfo] = []
        self.errors: list[str] = []
        self._pm = pluggy.PluginManager("mosn")
        self._pm.add_hookspecs(hookspecs)
        self._extensions: dict[str, dict[str, tuple[Extension, str]]] = {
            kind: {} for kind in hookspecs.KINDS
        }

    # -- loading --------------------------------------------------------------------

    def load(self) -> "PluginHost":
        """Load every plugin that is on; errors are kept in ``errors``, not raised."""
        version = importlib_metadata.version("mosn") if _installed("mosn") else "dev"
        for name, module in BUILTIN_PLUGINS.items():
            info = PluginInfo(name, "mosn", version, module, True, name not in self.disable)
            self._load_one(info, lambda module=module: importlib.import_module(module))
        installed = set(BUILTIN_PLUGINS)
        for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in installed:
                self.errors.append(
                    f"plugin {ep.name!r} from distribution {_dist_name(ep)!r}: "
                    f"the plugin name {ep.name!r} is already taken"
                )
                continue
            installed.add(ep.name)
            wanted = ep.name in self.enable or (self.autoload and ep.name not in self.disable)
            info = PluginInfo(
                ep.name, _dist_name(ep), _dist_version(ep), ep.value, False,
                wanted and ep.name not in self.disable,
            )
            self._load_one(info, ep.load)
        for name in sorted(self.enable - installed):
            self.errors.append(f"plugin {name!r} is enabled in the config but not installed")
        for name in sorted(self.disable - installed):
            self.errors.append(f"plugin {name!r} is disabled in the config but not installed")
        return self

    def check(self) -> "PluginHost":
        """Raise :class:`PluginError` listing every load error, if there were any."""
        if self.errors:
            raise PluginError("\n".join(self.errors))
        return self

    def _load_one(self, info: PluginInfo, importer: Callable[[], Any]) -> None:
        self.plugins.append(info)
        if not info.enabled:
            return
        try:
            plugin = importer()
            self._pm.register(plugin, name=info.name)
        except Exception as exc:  # a plugin's import error must not take mosn down
            info.error = f"failed to load: {type(exc).__name__}: {exc}"
            self.errors.append(f"plugin {info.name!r} ({info.module}) {info.error}")
            return
        for kind, hook_name in hookspecs.KINDS.items():
            for impl in getattr(self._pm.hook, hook_name).get_hookimpls():
                if impl.plugin_name == info.name:
                    self._collect(info, kind, impl.function)
        unknown = [
            name for name in dir(plugin)
            if name.startswith("mosn_") and name not in hookspecs.KINDS.values()
        ]
        if unknown:
            info.error = f"unknown hook(s): {', '.join(unknown)}"
            self.errors.append(f"plugin {info.name!r} ({info.module}) has an {info.error}")

    def _collect(self, info: PluginInfo, kind: str, hook: Callable[[], Any]) -> None:
        try:
            extensions = list(hook() or ())
        except Exception as exc:
            info.error = f"{hook.__name__} failed: {type(exc).__name__}: {exc}"
            self.errors.append(f"plugin {info.name!r} {info.error}")
            return
        registry = self._extensions[kind]
        for ext in extensions:
            if not isinstance(ext, Extension):
                self.errors.append(
                    f"plugin {info.name!r}: {hook.__name__} returned {ext!r}, not an Extension"
                )
                continue
            if ext.name in registry:
                owner = registry[ext.name][1]
                self.errors.append(
                    f"plugin {info.name!r} registers {kind.replace('_', ' ')} {ext.name!r}, "
                    f"already registered by plugin {owner!r}"
                )
                continue
            registry[ext.name] = (ext, info.name)
            info.registers.setdefault(kind, []).append(ext.name)

    # -- lookup ---------------------------------------------------------------------

    def get(self, kind: str, name: str) -> Extension | None:
        entry = self._extensions[kind].get(name)
        return entry[0] if entry else None

    def names(self, kind: str) -> list[str]:
        return sorted(self._extensions[kind])

    def unknown(self, kind: str, name: str) -> str:
        """What to say after "unknown <kind> <name>": the plugin that would register
        it if it were not disabled, else the names that are known."""
        owner = self.disabled_owner(kind, name)
        if owner is not None:
            return (f": plugin {owner!r} registers it, and is installed but disabled "
                    "(plugins.disable, or plugins.enable with autoload off)")
        names = self.names(kind)
        return f" (known: {', '.join(names)})" if names else " (no plugin registers one)"

    def disabled_owner(self, kind: str, name: str) -> str | None:
        """The disabled plugin that registers ``name`` of ``kind``, if one does. Only
        asked on an error's path: a disabled plugin is imported then, not before (a
        plugin may be disabled because it fails to load)."""
        for info in self.plugins:
            if info.enabled:
                continue
            try:
                module = importlib.import_module(info.module.partition(":")[0])
                hook = getattr(module, hookspecs.KINDS[kind], None)
                names = [ext.name for ext in (hook() or ())] if hook is not None else []
            except Exception:  # noqa: BLE001 (a broken plugin simply is not the owner)
                continue
            if name in names:
                return info.name
        return None

    def plugin_of(self, kind: str, name: str) -> str:
        """The name of the plugin that registered extension ``name`` of ``kind`` (for
        log lines that must say whose code failed); empty if none did."""
        entry = self._extensions[kind].get(name)
        return entry[1] if entry else ""


def _installed(dist: str) -> bool:
    try:
        importlib_metadata.distribution(dist)
    except importlib_metadata.PackageNotFoundError:
        return False
    return True


def _dist_name(ep: importlib_metadata.EntryPoint) -> str:
    return ep.dist.name if ep.dist else "?"


def _dist_version(ep: importlib_metadata.EntryPoint) -> str:
    return ep.dist.version if ep.dist else "?"
