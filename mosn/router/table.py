"""Route tables: pick a virtual host by the request's host, then its first matching route."""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping
from urllib.parse import parse_qsl

from mosn.config.routers import HeaderMutationsConfig, RouterConfiguration, VirtualHostConfig
from mosn.router.route import HeaderMutation, Route, RouteRequest, header_mutations


INDEX_MIN_ROUTES = 8
"""Virtual hosts with more routes than this index them by the path's first segment
(trying 100 routes one by one costs tens of microseconds per request)."""


class VirtualHost:
    __slots__ = ("name", "routes", "per_filter_config", "config", "_needs_query",
                 "_by_segment", "_unsegmented")

    def __init__(self, config: VirtualHostConfig,
                 router_mutations: tuple[HeaderMutation, HeaderMutation],
                 previous: VirtualHost | None = None) -> None:
        """``previous``: the virtual host this one replaces, whose routes built from
        the same route configs (by identity) are taken over instead of built again
        (a control plane's push changes a few routes of a large table)."""
        self.name = config.name
        self.config = config
        self.per_filter_config: dict[str, Any] = dict(config.per_filter_config)
        request, response = header_mutations(config)
        built: dict[int, Route] = {}
        if previous is not None and previous.per_filter_config == self.per_filter_config \
                and _same_mutations(previous.config, config):
            built = {id(c): r for c, r in zip(previous.config.routers, previous.routes)}
        self.routes = tuple(
            built[id(r)].moved_to(self) if id(r) in built else
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
        by_segment: dict[str, list[Route]] = {s: [] for s in segments if s is not None}
        unsegmented: list[Route] = []
        for route, segment in zip(self.routes, segments):  # one pass: a table of
            if segment is not None:                        # thousands of routes builds
                by_segment[segment].append(route)          # in linear time
            else:
                unsegmented.append(route)
                for candidates in by_segment.values():
                    candidates.append(route)
        self._by_segment = {name: tuple(routes) for name, routes in by_segment.items()}
        self._unsegmented = tuple(unsegmented)

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
        self._build(config)

    def replace(self, config: RouterConfiguration,
                previous: RouterConfiguration | None = None) -> None:
        """Match by ``config`` from the next request on (a reload or the control
        plane changed the routes): the table is updated in place, so every listener
        holding it sees the change; a request already routed keeps its route.
        ``previous``: the config the table was built from; what ``config`` holds of it
        (virtual hosts and routes, by identity) is taken over, not built again."""
        self._build(config, previous)

    def _build(self, config: RouterConfiguration,
               previous: RouterConfiguration | None = None) -> None:
        self.name = config.router_config_name
        mutations = header_mutations(config)
        old: dict[str, VirtualHost] = {}
        if previous is not None and _same_mutations(previous, config):
            old = {vh.name: vh for vh in self.virtual_hosts}
        self.virtual_hosts = tuple(_virtual_host(vh, mutations, old.get(vh.name))
                                   for vh in config.virtual_hosts)
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


def _virtual_host(config: VirtualHostConfig, mutations: tuple[HeaderMutation, HeaderMutation],
                  previous: VirtualHost | None) -> VirtualHost:
    if previous is not None and previous.config is config:
        return previous  # the router's mutations are the same (checked by the caller)
    return VirtualHost(config, mutations, previous)


def _same_mutations(a: HeaderMutationsConfig, b: HeaderMutationsConfig) -> bool:
    return all(getattr(a, name) == getattr(b, name)
               for name in HeaderMutationsConfig.model_fields)


def _same(a: RouterConfiguration, b: RouterConfiguration) -> bool:
    # Models compare field by field, and lists item by item with identity first: a
    # config that shares most of its parts with the last one compares in little time.
    return a is b or a == b


def _without_port(host: str) -> str:
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        return host[:end + 1] if end != -1 else host
    name, colon, port = host.rpartition(":")
    if colon and ":" not in name and port.isascii() and port.isdigit():
        return name
    return host


class Routers(Mapping[str, RouteTable]):
    """Route tables by ``router_config_name`` (names are unique: see ``parse_routers``).

    The route manager too: :meth:`add_or_update` and :meth:`remove` change the tables
    while mosn serves (a config reload, the control plane); a table is updated in
    place, so what holds it (a listener's proxy) routes by the new config at once."""

    def __init__(self, configs: Iterable[RouterConfiguration] = ()) -> None:
        configs = list(configs)
        self._tables = {c.router_config_name: RouteTable(c) for c in configs}
        self._configs = {c.router_config_name: c for c in configs}

    def config(self, name: str) -> RouterConfiguration | None:
        """The configuration the table ``name`` was built from."""
        return self._configs.get(name)

    def add_or_update(self, config: RouterConfiguration) -> str:
        """Add the table ``config`` names, or update it in place: ``"added"``,
        ``"updated"`` or ``"unchanged"`` (the same configuration)."""
        name = config.router_config_name
        table = self._tables.get(name)
        if table is None:
            self._tables[name] = RouteTable(config)
            self._configs[name] = config
            return "added"
        if _same(self._configs[name], config):
            return "unchanged"
        table.replace(config, self._configs[name])
        self._configs[name] = config
        return "updated"

    def remove(self, name: str) -> bool:
        """Forget the table ``name`` (False: there is none). A listener still holding
        it keeps routing by it; remove the listener first."""
        self._configs.pop(name, None)
        return self._tables.pop(name, None) is not None

    def __getitem__(self, name: str) -> RouteTable:
        return self._tables[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tables)

    def __len__(self) -> int:
        return len(self._tables)
