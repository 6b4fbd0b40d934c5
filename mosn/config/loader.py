"""Load a config file, load the plugins it asks for, and validate everything.

Every error is collected with its path (``servers[0].listeners[1].address: ...``)
before anything is refused, so one run of ``mosn validate`` shows them all.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from functools import cache
from typing import Any, Iterable, Iterator, get_args, get_origin

import yaml
from cryptography.x509 import load_pem_x509_certificates
from pydantic import BaseModel, ValidationError

from mosn.config.base import Model, is_empty
from mosn.config.document import DocumentError, check_json, join_path, parse_yaml
from mosn.config.models import FilterConfig, MosnConfig, PluginsConfig
from mosn.config.routers import RouterConfiguration, check_references
from mosn.config.tls import check_tls
from mosn.config.types import is_loopback
from mosn.plugins import PluginHost


class ConfigError(Exception):
    """The config was refused; ``errors`` holds one ``path: reason`` line per error."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass
class LoadedConfig:
    config: MosnConfig
    plugins: PluginHost
    source: str = "<memory>"
    warnings: list[str] = field(default_factory=list)


def read_file(path: str | Path) -> dict[str, Any]:
    """The document in a YAML or JSON file (JSON is read as JSON for exact errors),
    within the bounds of :mod:`mosn.config.document`: aliases, depth, no key twice."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        if p.suffix == ".json":
            duplicates = check_json(text)
            data = json.loads(text)
            if duplicates:
                raise DocumentError(duplicates)
        else:
            data = parse_yaml(text)
    except DocumentError as exc:
        raise ConfigError(exc.errors) from None
    except json.JSONDecodeError as exc:
        raise ConfigError([f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {exc}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping"])
    return data


def load(path: str | Path, plugins: PluginHost | None = None) -> LoadedConfig:
    """Read and validate ``path``; raise :class:`ConfigError` with every error found."""
    loaded = validate(read_file(path), plugins, base_dir=Path(path).parent)
    loaded.source = str(path)
    return loaded


def validate(raw: dict[str, Any], plugins: PluginHost | None = None,
             base_dir: Path | None = None, *, routes_to_unknown_clusters: bool = False,
             check_keys: bool = True, must_serve: bool = True) -> LoadedConfig:
    """``base_dir``: where relative file names in the config (certificates) are
    found; the config file's directory (default: the working directory).
    ``routes_to_unknown_clusters``: a route may name a cluster that is not (yet)
    there, answered 503 (a control plane's routes may come before their clusters).
    ``check_keys``: False skips looking for keys no field takes (a config made by a
    translation has none; the walk costs as much as validating).
    ``must_serve``: False takes a config with no listener (a control plane's resources
    before its listeners came)."""
    errors: list[str] = []
    if plugins is None:
        plugins = load_plugins(raw)
        errors += [f"plugins: {e}" for e in plugins.errors]
    try:
        config = MosnConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(errors + _pydantic_errors(exc)) from None
    errors += _check_connection_managers(config)
    errors += _check_extensions(config, plugins)
    errors += _check_names(config)
    errors += _check_routers(config, check_clusters=not routes_to_unknown_clusters)
    errors += _check_control_plane(config)
    if must_serve:
        errors += _check_serves_something(config)
    tls_errors, tls_warnings = check_tls(config, base_dir or Path.cwd())
    errors += tls_errors
    errors += _check_tracing_files(config, base_dir or Path.cwd())
    key_errors, warnings = check_extra_keys(config) if check_keys else ([], [])
    errors += key_errors
    if errors:
        raise ConfigError(errors)
    exposed = admin_exposure(config)
    if exposed:
        warnings.append(f"admin.address.socket_address.address: {exposed}")
    return LoadedConfig(config, plugins, warnings=warnings + tls_warnings)


def check_extra_keys(config: Model) -> tuple[list[str], list[str]]:
    """The errors for keys no field takes (with a "did you mean"), and the warnings
    for MOSN fields only MOSN's Go runtime uses (set to something other than empty)."""
    errors, warnings = [], []
    for extra in config.extra_keys():
        reason = extra.runtime_only
        if reason is None:
            errors.append(f"{extra.path}: {extra.error(field_places())}")
        elif not is_empty(extra.value):
            warnings.append(f"{extra.path}: accepted and not used: {reason} "
                            "(docs/compat.md)")
    return errors, warnings


@cache
def field_places() -> dict[str, list[str]]:
    """Where each field of mosn's own config tree is, by lower-cased name
    (``listeners``: ``servers[].listeners``), for a key written at the wrong level."""
    places: dict[str, list[str]] = {}
    seen: set[type] = set()

    def walk(model: type[Model], path: str) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, info in model.model_fields.items():
            where = f"{path}.{name}" if path else name
            places.setdefault(name.lower(), []).append(where)
            for sub, is_list in _models_in(info.annotation):
                walk(sub, where + ("[]" if is_list else ""))

    walk(MosnConfig, "")
    return places


def _models_in(annotation: Any, is_list: bool = False) -> Iterator[tuple[type[Model], bool]]:
    if isinstance(annotation, type) and issubclass(annotation, Model):
        yield annotation, is_list
        return
    inner_list = is_list or get_origin(annotation) is list
    for arg in get_args(annotation):
        yield from _models_in(arg, inner_list)


def _check_serves_something(config: MosnConfig) -> list[str]:
    """A config that starts no listener and has no source of listeners would run and
    serve nothing (a ``listeners:`` at the top level instead of under ``servers:``)."""
    if any(True for _ in config.listeners()) or config.dynamic_resources:
        return []
    return ["servers: no listener: mosn would start and serve nothing (listeners go "
            "under servers[].listeners)"]


def admin_exposure(config: MosnConfig) -> str | None:
    """What an admin API bound beyond loopback gives away, or None on loopback."""
    bind = config.admin.bind
    if is_loopback(bind.host):
        return None
    return (f"the admin API on {bind} is reachable beyond this machine: whoever reaches "
            "it reads the config (secrets redacted), hosts and stats, and can POST to "
            "fail /ready or change log levels (docs/operations.md)")


def load_plugins(raw: dict[str, Any]) -> PluginHost:
    """The plugins the config's ``plugins:`` section asks for, loaded (errors kept)."""
    try:
        wanted = PluginsConfig.model_validate(raw.get("plugins") or {})
    except ValidationError as exc:
        raise ConfigError(_pydantic_errors(exc, "plugins")) from None
    return PluginHost(enable=wanted.enable, disable=wanted.disable).load()


def _check_extensions(config: MosnConfig, plugins: PluginHost) -> list[str]:
    errors: list[str] = []
    for path, listener in config.listeners():
        chains = [(f"{path}.filter_chains[{i}].filters", fc.filters)
                  for i, fc in enumerate(listener.filter_chains)]
        chains.append((f"{path}.listener_filters", listener.listener_filters))
        chains.append((f"{path}.stream_filters", listener.stream_filters))
        for base, filters in chains:
            kind = ("listener_filter" if base.endswith("listener_filters")
                    else "stream_filter" if base.endswith("stream_filters")
                    else "network_filter")
            for i, flt in enumerate(filters):
                errors += _check_filter(f"{base}[{i}]", kind, flt, plugins, config)
    errors += _check_per_filter_configs(config, plugins)
    for i, entry in enumerate(config.extends):
        errors += _check_filter(f"extends[{i}]", "extends_type", entry, plugins, config)
    for i, cluster in enumerate(config.cluster_manager.clusters):
        base = f"cluster_manager.clusters[{i}]"
        ctype = plugins.get("cluster_type", cluster.type)
        if ctype is None:
            errors.append(f"{base}.type: unknown cluster type {cluster.type!r}"
                          f"{plugins.unknown('cluster_type', cluster.type)}")
        else:
            errors += _check_cluster_config(base, cluster, ctype)
        if plugins.get("load_balancer", cluster.lb_type) is None:
            errors.append(f"{base}.lb_type: unknown load balancer {cluster.lb_type!r}"
                          f"{plugins.unknown('load_balancer', cluster.lb_type)}")
        if cluster.health_check is not None:
            errors += _check_health_check(f"{base}.health_check", cluster.health_check, plugins)
    return errors


def _check_connection_managers(config: MosnConfig) -> list[str]:
    """Each ``connection_manager`` filter's router configuration, parsed before the
    ``proxy`` filters that name it are checked (whichever comes first in the chain)."""
    errors: list[str] = []
    for path, flt in config.connection_managers():
        try:
            flt.set_parsed(RouterConfiguration.model_validate(flt.config))
        except ValidationError as exc:
            errors += _pydantic_errors(exc, f"{path}.config")
    return errors


def _check_tracing_files(config: MosnConfig, base_dir: Path) -> list[str]:
    """The SkyWalking driver's CA certificate: found (relative to ``base_dir``, the
    path made absolute) and a PEM certificate."""
    tls = config.tracing.config.tls
    if not config.tracing.enable or tls is None or not tls.cert_file:
        return []
    path = base_dir / Path(tls.cert_file).expanduser()
    tls.cert_file = str(path)
    where = "tracing.config.tls.cert_file"
    try:
        load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        return [f"{where}: cannot read {path}: {exc.strerror or exc}"]
    except ValueError:
        return [f"{where}: {path} holds no PEM certificate"]
    return []


def _check_filter(path: str, kind: str, flt: FilterConfig, plugins: PluginHost,
                  config: MosnConfig) -> list[str]:
    ext = plugins.get(kind, flt.type)
    if ext is None:
        return [f"{path}.type: unknown {kind.replace('_', ' ')} {flt.type!r}"
                f"{plugins.unknown(kind, flt.type)}"]
    if ext.config_model is None:
        return []
    try:
        parsed = ext.config_model.model_validate(flt.config)
    except ValidationError as exc:
        return _pydantic_errors(exc, f"{path}.config")
    flt.set_parsed(parsed)
    check = getattr(parsed, "cross_check", None)
    if check is None:
        return []
    return [f"{path}.config.{loc}: {msg}" for loc, msg in check(config, plugins)]


def _check_per_filter_configs(config: MosnConfig, plugins: PluginHost) -> list[str]:
    """Each ``per_filter_config.<name>`` of a virtual host or route names a stream
    filter that reads one (its config model's ``per_route`` model) and is valid for it."""
    errors: list[str] = []
    for rpath, router in config.routers():
        for i, vh in enumerate(router.virtual_hosts):
            places = [(f"{rpath}.virtual_hosts[{i}]", vh.per_filter_config)]
            places += [(f"{rpath}.virtual_hosts[{i}].routers[{j}]", r.per_filter_config)
                       for j, r in enumerate(vh.routers) if r.per_filter_config]
            for where, entries in places:
                for name, raw in entries.items():
                    path = f"{where}.per_filter_config.{name}"
                    ext = plugins.get("stream_filter", name)
                    model = getattr(ext.config_model, "per_route", None) if ext else None
                    if ext is None:
                        errors.append(f"{path}: unknown stream filter {name!r}"
                                      f"{plugins.unknown('stream_filter', name)}")
                    elif model is None:
                        errors.append(f"{path}: the {name} filter takes no per-route config")
                    else:
                        try:
                            parsed = model.model_validate(raw)
                        except ValidationError as exc:
                            errors += _pydantic_errors(exc, path)
                            continue
                        if isinstance(parsed, Model):
                            errors += [f"{e.path}: {e.error()}" for e in parsed.extra_keys(path)]
    return errors


def _check_cluster_config(path: str, cluster: Any, ctype: Any) -> list[str]:
    """A cluster's ``cluster_config``, validated by its type's model."""
    if ctype.config_model is None:
        if cluster.cluster_config is not None:
            return [f"{path}.cluster_config: cluster type {cluster.type!r} takes no "
                    "cluster_config"]
        return []
    try:
        cluster.set_parsed_cluster_config(ctype.config_model.model_validate(
            cluster.cluster_config or {}))
    except ValidationError as exc:
        return _pydantic_errors(exc, f"{path}.cluster_config")
    return []


def _check_health_check(path: str, hc: Any, plugins: PluginHost) -> list[str]:
    ext = plugins.get("health_checker", hc.protocol)
    if ext is None:
        return [f"{path}.protocol: unknown health checker {hc.protocol!r}"
                f"{plugins.unknown('health_checker', hc.protocol)}"]
    if ext.config_model is None:
        return []
    try:
        hc.set_parsed(ext.config_model.model_validate(hc.check_config))
    except ValidationError as exc:
        return _pydantic_errors(exc, f"{path}.check_config")
    return []


def _check_names(config: MosnConfig) -> list[str]:
    errors = []
    clusters = Counter(c.name for c in config.cluster_manager.clusters)
    for i, cluster in enumerate(config.cluster_manager.clusters):
        if clusters[cluster.name] > 1:
            errors.append(f"cluster_manager.clusters[{i}].name: duplicate cluster name {cluster.name!r}")
    listeners = list(config.listeners())
    names = Counter(lc.name for _, lc in listeners if lc.name)
    addresses = Counter(_listen_key(lc) for _, lc in listeners
                        if lc.address.port or lc.address.is_unix)
    for path, lc in listeners:
        if lc.name and names[lc.name] > 1:
            errors.append(f"{path}.name: duplicate listener name {lc.name!r}")
        if addresses[_listen_key(lc)] > 1:
            errors.append(f"{path}.address: {lc.address} is used by another listener")
    return errors


def _listen_key(lc: Any) -> str:
    """Two listeners of one address clash unless one is UDP and the other not."""
    return f"udp:{lc.address}" if lc.network == "udp" else str(lc.address)


def _check_routers(config: MosnConfig, check_clusters: bool = True) -> list[str]:
    errors = []
    seen: dict[str, str] = {}
    clusters = {c.name for c in config.cluster_manager.clusters}
    for path, router in config.routers():
        name = router.router_config_name
        if name in seen:
            errors.append(f"{path}.router_config_name: {name!r} is already used by {seen[name]}")
        seen.setdefault(name, path)
        if check_clusters:
            errors += [f"{path}{sub.removeprefix('routers[0]')}: {msg}"
                       for sub, msg in check_references([router], clusters)]
    return errors


def _check_control_plane(config: MosnConfig) -> list[str]:
    if config.dynamic_resources is None:
        return []
    clusters = {c.name for c in config.cluster_manager.clusters}
    return [f"dynamic_resources.{path}: unknown cluster {name!r} (the control plane's "
            "cluster is one of cluster_manager.clusters)"
            for path, name in config.dynamic_resources.clusters_named() if name not in clusters]


def _pydantic_errors(exc: ValidationError, prefix: str = "") -> list[str]:
    lines = []
    for err in exc.errors():
        path = _path(err["loc"], prefix)
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {msg}" if path else msg)
    return lines


def _path(loc: Iterable[Any], prefix: str = "") -> str:
    return join_path([prefix, *loc] if prefix else loc)


def dump(config: BaseModel) -> dict[str, Any]:
    """The effective config as JSON-ready data (for ``/config_dump``)."""
    return config.model_dump(mode="json", by_alias=True)
