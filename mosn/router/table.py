"""Route tables: pick a virtual host by the request's host, then its first matching route."""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping
from urllib.parse import parse_qsl

from mosn.config.routers import RouterConfiguration, VirtualHostConfig
from mosn.router.route import HeaderMutation, Route, RouteRequest, header_mutations


INDEX_MIN_ROUTES = 8
"""Virtual hosts with more routes than this index them by the path's first segment
(trying 100 routes one by one costs tens of microseconds per request)."""


class VirtualHost:
    __slots__ = ("name", "routes", "per_filter_config", "_needs_query", "_by_segment",
                 "_unsegmented")

    def __init__(self, config: VirtualHostConfig,
                 router_mutations: tuple[HeaderMutation, HeaderMutation]) -> None:
        self.name = config.name
        self.per_filter_config: dict[str, Any] = dict(config.per_filter_config)
        request, response = header_mutations(config)
        self.routes = tuple(
            Route(r, self, (request, router_mutations[0]), (response, router_mutations[1]))
            for r in config.routers)
        self._needs_query = any(r.needs_query for r in self.routes)
        self._by_segment: dict[str, tuple[Route, ...]] | None = None
        self._unsegmented = self.routes
        if len(self.routes) > INDEX_MIN_ROUTES:
            self._index(config)

    def _index(self, config: VirtualHostConfig) -> None:
        """Candidates per first path segment, each list in config order: a route
        whose prefix or path names a whole first segment (``/users/...``) can only
        match paths with that segment; the others are candidates for every path."""
        segments = [_route_segment(r.match) for r in config.routers]
        named = {s for s in segments if s is not None}
        self._by_segment = {
            name: tuple(r for r, s in zip(self.routes, segments) if s is None or s == name)
            for name in named}
        self._unsegmented = tuple(r for r, s in zip(self.routes, segments) if s is None)

    def route(self, request: RouteRequest) -> Route | None:
        """The first route, in config order, that matches ``request``."""
        path, _, query = request.path.partition("?")
        params = dict(parse_qsl(query, keep_blank_values=True)[::-1]) if self._needs_query else None
        headers, method = request.headers, request.method
        routes = self.routes
        if self._by_segment is not None:
            end = path.find("/", 1)
            routes = self._by_segment.get(path[1:end] if end > 0 else path[1:],
                                          self._unsegmented)
        for route in routes:
            if route.matches(path, method, headers, params, request.stream):
                return route
        return None


def _route_segment(match: Any) -> str | None:
    """The first path segment every path this match accepts has, if fixed."""
    if not match.case_sensitive or match.regex:
        return None
    if match.path.startswith("/") and len(match.path) > 1:
        return match.path[1:].split("/", 1)[0]
    prefix = match.prefix
    end = prefix.find("/", 1) if prefix.startswith("/") else -1
    return prefix[1:end] if end > 1 else None


class RouteTable:
    """One router configuration, compiled.

    The virtual host is chosen as Envoy does: an exact domain, then suffix wildcards
    (``*.a.com``, longest first), then prefix wildcards (``a.*``, longest first), then
    ``*``. The host is compared in lower case, first as sent (``a.com:8080``, so a
    domain may name a port) and then without its port. A wildcard stands for one
    character at least.
    """

    __slots__ = ("name", "virtual_hosts", "_exact", "_suffixes", "_prefixes", "_default")

    def __init__(self, config: RouterConfiguration) -> None:
        self.name = config.router_config_name
        mutations = header_mutations(config)
        self.virtual_hosts = tuple(VirtualHost(vh, mutations) for vh in config.virtual_hosts)
        self._exact: dict[str, VirtualHost] = {}
        suffixes: list[tuple[str, VirtualHost]] = []
        prefixes: list[tuple[str, VirtualHost]] = []
        self._default: VirtualHost | None = None
        for host, vh_config in zip(self.virtual_hosts, config.virtual_hosts):
            for domain in vh_config.domains:  # lower-cased and unique (config checks)
                if domain == "*":
                    self._default = host
                elif domain.startswith("*"):
                    suffixes.append((domain[1:], host))
                elif domain.endswith("*"):
                    prefixes.append((domain[:-1], host))
                else:
                    self._exact[domain] = host
        self._suffixes = tuple(sorted(suffixes, key=lambda p: -len(p[0])))
        self._prefixes = tuple(sorted(prefixes, key=lambda p: -len(p[0])))

    def virtual_host(self, host: str) -> VirtualHost | None:
        if not (self._exact or self._suffixes or self._prefixes):
            return self._default
        full = host.lower()
        found = self._exact.get(full)
        if found is not None:
            return found
        bare = _without_port(full)
        names = (full, bare) if bare != full else (full,)
        if bare != full:
            found = self._exact.get(bare)
            if found is not None:
                return found
        for suffix, found in self._suffixes:
            for name in names:
                if len(name) > len(suffix) and name.endswith(suffix):
                    return found
        for prefix, found in self._prefixes:
            for name in names:
                if len(name) > len(prefix) and name.startswith(prefix):
                    return found
        return self._default

    def route(self, request: RouteRequest) -> Route | None:
        """The route for ``request``, or None (no virtual host or no route matches)."""
        host = self.virtual_host(request.host)
        return host.route(request) if host is not None else None


def _without_port(host: str) -> str:
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        return host[:end + 1] if end != -1 else host
    name, colon, port = host.rpartition(":")
    if colon and ":" not in name and port.isascii() and port.isdigit():
        return name
    return host


class Routers(Mapping[str, RouteTable]):
    """Route tables by ``router_config_name`` (names are unique: see ``parse_routers``)."""

    def __init__(self, configs: Iterable[RouterConfiguration] = ()) -> None:
        self._tables = {c.router_config_name: RouteTable(c) for c in configs}

    def __getitem__(self, name: str) -> RouteTable:
        return self._tables[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tables)

    def __len__(self) -> int:
        return len(self._tables)
