"""A matched route and what it tells the proxy: cluster, policies, rewrites, replies.

Everything here is built once from config; the per-request methods touch only plain
strings, tuples and dicts.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from itertools import accumulate
from typing import TYPE_CHECKING, Any, Mapping, MutableMapping

from mosn.config.routers import (
    CookieHashConfig,
    HashPolicyConfig,
    HeaderMutationsConfig,
    HeaderValueOption,
    RetryPolicyConfig,
    RouteActionConfig,
    RouteConfig,
    python_substitution,
    route_timeout,
)
from mosn.router.match import (
    HeaderMatcher,
    QueryParameterMatcher,
    StringTest,
    header_matchers,
    path_test,
)

from mosn.upstream.hashing import combine, hash64
from mosn.variables import Template, cookie_value, variable

if TYPE_CHECKING:
    from mosn.router.table import VirtualHost

_NO_HEADERS: Mapping[str, str] = {}
_REPLY_ONLY = RouteActionConfig.model_construct()  # the action of a direct response or redirect
_DEFAULT_PORTS = {"http": "80", "https": "443"}


@dataclass(slots=True)
class RouteRequest:
    """What routing reads of a request.

    ``path`` may carry the query string; RPC protocols leave it empty and put their
    routing keys (service, method) in ``headers``, keyed in lower case.
    """

    host: str = ""
    path: str = ""
    method: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    scheme: str = "http"
    stream: Any = None
    """The stream, for routes that match on ``variables`` (None: they do not match)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retry_on: frozenset[str]
    """Envoy's retry conditions, such as ``connect-failure``, ``reset``, ``5xx``."""
    num_retries: int
    per_try_timeout: float | None
    retriable_status_codes: frozenset[int]


@dataclass(frozen=True, slots=True)
class MirrorPolicy:
    cluster: str
    percent: int

    def sampled(self, rng: random.Random | None = None) -> bool:
        """Whether this request is mirrored (``percent`` of them are)."""
        return self.percent >= 100 or (rng or random).random() * 100 < self.percent


@dataclass(frozen=True, slots=True)
class DirectResponse:
    status: int
    body: str


@dataclass(frozen=True, slots=True)
class Redirect:
    code: int
    scheme: str
    host: str
    path: str

    def location(self, request: RouteRequest) -> str:
        """The ``Location`` URL: the request's URL with the configured parts replaced.

        A ``path`` with a query replaces the request's query too. When the scheme changes,
        the old scheme's default port is dropped (MOSN's downstream.go, Envoy).
        """
        scheme = self.scheme or request.scheme
        host = self.host or request.host
        req_path, sep, query = request.path.partition("?")
        path = self.path or req_path
        if "?" in path:
            path, sep, query = path.partition("?")
        if scheme != request.scheme:
            name, colon, port = host.rpartition(":")
            if colon and "]" not in port and port == _DEFAULT_PORTS.get(request.scheme):
                host = name
        return f"{scheme}://{host}{path}{sep}{query}"


class HeaderMutation:
    """One level's removals, then additions (Envoy's order within a level).

    An added header with ``append`` joins an existing non-empty value with ``,``
    (MOSN's header_parser.go); otherwise it replaces it. A value naming
    ``%variables%`` is expanded for each request, from ``stream``.
    """

    __slots__ = ("remove", "add")

    def __init__(self, add: list[HeaderValueOption], remove: list[str]) -> None:
        self.remove = tuple(name.lower() for name in remove)
        self.add = tuple((o.header.key.lower(), Template(o.header.value), o.append) for o in add)

    def __bool__(self) -> bool:
        return bool(self.remove or self.add)

    def apply(self, headers: MutableMapping[str, str], stream: Any = None) -> None:
        for name in self.remove:
            headers.pop(name, None)
        for name, template, append in self.add:
            value = template.text if template.constant else template(stream)
            old = headers.get(name) if append else None
            headers[name] = f"{old},{value}" if old else value


def header_mutations(config: HeaderMutationsConfig) -> tuple[HeaderMutation, HeaderMutation]:
    """The (request, response) mutations of one level."""
    return (HeaderMutation(config.request_headers_to_add, config.request_headers_to_remove),
            HeaderMutation(config.response_headers_to_add, config.response_headers_to_remove))


class Route:
    """A route of a virtual host, as the proxy uses it once it has matched."""

    __slots__ = (
        "virtual_host", "timeout", "retry_policy", "metadata_match", "metadata",
        "direct_response", "redirect", "mirror_policies", "hash_policy",
        "upstream_protocol", "per_filter_config", "max_request_bytes",
        "_path_test", "_headers", "_query", "_cluster", "_cluster_header",
        "_weighted_names", "_cum_weights", "_weighted_metadata",
        "_matched_prefix", "_prefix_rewrite", "_regex_rewrite", "_case_sensitive", "_host_rewrite",
        "_host_rewrite_header", "_request_mutations", "_response_mutations",
        "auto_host_rewrite",
        "_variables", "_cluster_variable",
    )

    def __init__(self, config: RouteConfig, virtual_host: VirtualHost,
                 request_mutations: tuple[HeaderMutation, ...] = (),
                 response_mutations: tuple[HeaderMutation, ...] = ()) -> None:
        """``*_mutations`` are the virtual host's then the router config's, applied after the route's."""
        self.virtual_host = virtual_host
        match = config.match
        self._path_test: StringTest | None = path_test(match)
        self._headers: tuple[HeaderMatcher, ...] = header_matchers(match)
        self._query = tuple(QueryParameterMatcher(q) for q in match.query_parameters)
        self._variables = tuple(
            (variable(v.name).get, v.value or None, re.compile(v.regex) if v.regex else None,
             v.model == "or") for v in match.variables)
        self._case_sensitive = match.case_sensitive
        matched = match.prefix or match.path
        self._matched_prefix = matched if match.case_sensitive else matched.lower()
        self.metadata: dict[str, str] = dict(config.metadata)
        self.per_filter_config: dict[str, Any] = {
            **virtual_host.per_filter_config, **config.per_filter_config}
        self.direct_response = (DirectResponse(config.direct_response.status, config.direct_response.body)
                                if config.direct_response else None)
        r = config.redirect
        self.redirect = (Redirect(r.response_code, r.scheme_redirect, r.host_redirect, r.path_redirect)
                         if r else None)
        self.mirror_policies = tuple(MirrorPolicy(m.cluster, m.percent)
                                     for m in config.request_mirror_policies if m.percent)
        action = config.route or _REPLY_ONLY
        own = header_mutations(action)
        self._request_mutations = tuple(m for m in (own[0], *request_mutations) if m)
        self._response_mutations = tuple(m for m in (own[1], *response_mutations) if m)
        self._cluster = action.cluster_name
        self._cluster_header = action.cluster_header.lower()
        self._cluster_variable = (variable(action.cluster_variable).get
                                  if action.cluster_variable else None)
        self._weighted_names = tuple(w.cluster.name for w in action.weighted_clusters)
        self._cum_weights = tuple(accumulate(w.cluster.weight for w in action.weighted_clusters)) or None
        self._weighted_metadata = {w.cluster.name: dict(w.cluster.metadata_match)
                                   for w in action.weighted_clusters}
        self.metadata_match: dict[str, str] = dict(action.metadata_match)
        self.timeout: float | None = route_timeout(action.timeout)
        """Seconds; None: the proxy's default; ``math.inf``: no route timeout."""
        self.retry_policy = _retry_policy(action.retry_policy) if action.retry_policy else None
        self.hash_policy: HashPolicy | None = (HashPolicy(action.hash_policy)
                                                if action.hash_policy else None)
        self.upstream_protocol = action.upstream_protocol
        self.max_request_bytes: int | None = action.max_request_bytes
        self._prefix_rewrite = action.prefix_rewrite
        rr = action.regex_rewrite
        self._regex_rewrite: tuple[re.Pattern[str], str] | None = (
            (re.compile(rr.pattern.regex), python_substitution(rr.substitution))
            if rr is not None else None)
        self._host_rewrite = action.host_rewrite
        self._host_rewrite_header = action.auto_host_rewrite_header.lower()
        self.auto_host_rewrite = action.auto_host_rewrite
        """The ``Host`` sent upstream is the chosen host's hostname (when it has one)."""

    def moved_to(self, virtual_host: VirtualHost) -> Route:
        """This route in ``virtual_host``, a new one with the same config and the same
        mutations above it (nothing is compiled again)."""
        moved = Route.__new__(Route)
        for name in Route.__slots__:
            setattr(moved, name, getattr(self, name))
        moved.virtual_host = virtual_host
        return moved

    def matches(self, path: str, method: str, headers: Mapping[str, str],
                query: Mapping[str, str] | None, stream: Any = None) -> bool:
        """``path`` without its query; ``query`` parsed (only needed when the route tests
        it); ``stream`` read by ``variables`` (a route with some never matches without)."""
        if self._path_test is not None and not self._path_test(path):
            return False
        for matcher in self._headers:
            if not matcher.matches(headers, method):
                return False
        if self._query:
            params = query or _NO_HEADERS
            for q in self._query:
                if not q.matches(params):
                    return False
        if self._variables:
            return stream is not None and self._variables_match(stream)
        return True

    def _variables_match(self, stream: Any) -> bool:
        """MOSN's ``VariableRouteRuleImpl.Match``: left to right, an ``and`` item
        joins the result so far, the item after an ``or`` starts afresh, and a true
        result at an ``or`` item ends the walk."""
        result = True
        last_or = False
        for get, value, pattern, is_or in self._variables:
            actual = get(stream)
            actual = "" if actual is None else str(actual)
            step = actual == value if value is not None else pattern.search(actual) is not None
            result = step if last_or else result and step
            if result and is_or:
                break
            last_or = is_or
        return result

    @property
    def needs_query(self) -> bool:
        return bool(self._query)

    def cluster_name(self, headers: Mapping[str, str] = _NO_HEADERS,
                     rng: random.Random | None = None, stream: Any = None) -> str:
        """The cluster for this request; ``""`` for a reply route, a missing cluster
        header or a ``cluster_variable`` without a value (``stream`` is read for it)."""
        if self._cum_weights is not None:
            return (rng or random).choices(self._weighted_names, cum_weights=self._cum_weights)[0]
        if self._cluster_header:
            return headers.get(self._cluster_header) or ""
        if self._cluster_variable is not None:
            value = self._cluster_variable(stream) if stream is not None else None
            return str(value) if value else ""
        return self._cluster

    def metadata_match_for(self, cluster_name: str) -> dict[str, str]:
        """The subset criteria for the chosen cluster: a weighted cluster's own, else the route's."""
        return self._weighted_metadata.get(cluster_name, self.metadata_match)

    def rewrite_path(self, path: str) -> str:
        """``path`` (query kept) with the matched prefix or path swapped for
        ``prefix_rewrite``, or with ``regex_rewrite`` applied to the path part."""
        if not self._prefix_rewrite:
            if self._regex_rewrite is None:
                return path
            pattern, substitution = self._regex_rewrite
            bare, mark, query = path.partition("?")
            return pattern.sub(substitution, bare) + mark + query
        prefix = self._matched_prefix
        if not (path if self._case_sensitive else path.lower()).startswith(prefix):
            return path
        return self._prefix_rewrite + path[len(prefix):]

    def rewrite_host(self, host: str, headers: Mapping[str, str] = _NO_HEADERS) -> str:
        """``host_rewrite``, else the value of ``auto_host_rewrite_header``, else ``host``."""
        if self._host_rewrite:
            return self._host_rewrite
        if self._host_rewrite_header:
            return headers.get(self._host_rewrite_header) or host
        return host

    def apply_request_headers(self, headers: MutableMapping[str, str], stream: Any = None) -> None:
        """Route, then virtual host, then router config mutations (Envoy's order);
        ``%variables%`` in values read ``stream``."""
        for mutation in self._request_mutations:
            mutation.apply(headers, stream)

    def apply_response_headers(self, headers: MutableMapping[str, str], stream: Any = None) -> None:
        for mutation in self._response_mutations:
            mutation.apply(headers, stream)


class HashPolicy:
    """A route's ``hash_policy``: the request's hash key for consistent-hash load
    balancers. Each policy that finds its value is folded in (Envoy's rule); a
    ``terminal`` one that found a value ends the list."""

    __slots__ = ("_parts", "_cookies")

    _HEADER, _COOKIE, _SOURCE_IP = 0, 1, 2

    def __init__(self, configs: list[HashPolicyConfig]) -> None:
        parts = []
        self._cookies: dict[str, CookieHashConfig] = {}
        """The cookie policies with a ``ttl``: made for a request that lacks them."""
        for c in configs:
            if c.header is not None:
                parts.append((self._HEADER, c.header.name, c.terminal))
            elif c.cookie is not None:
                parts.append((self._COOKIE, c.cookie.name, c.terminal))
                if c.cookie.ttl is not None:
                    self._cookies[c.cookie.name] = c.cookie
            else:
                parts.append((self._SOURCE_IP, "", c.terminal))
        self._parts = tuple(parts)

    def hash_key(self, headers: Mapping[str, str], source: Any,
                 local: Any = None) -> tuple[int | None, list[str]]:
        """The key, or None when no policy found a value (the LB then picks at random),
        and the ``Set-Cookie`` values of the cookies made for this request.

        ``source`` and ``local`` are the client connection's socket addresses (a tuple
        for IP, else anything)."""
        key: int | None = None
        made: list[str] = []
        for kind, name, terminal in self._parts:
            if kind == self._HEADER:
                value = headers.get(name)
            elif kind == self._COOKIE:
                value = cookie_value(headers.get("cookie"), name)
                if value is None and name in self._cookies:
                    value = _made_cookie(source, local)
                    made.append(_set_cookie(self._cookies[name], value))
            else:
                value = source[0] if isinstance(source, tuple) else None
            if value is None:
                continue
            h = hash64(value)
            key = h if key is None else combine(key, h)
            if terminal:
                break
        return key, made


def _made_cookie(source: Any, local: Any) -> str:
    """Envoy's value for a cookie it makes: a hash of the connection's two addresses,
    the same for every request of the connection, so racing requests agree."""
    return format(hash64(f"{source}{local}"), "016x")


def _set_cookie(cookie: CookieHashConfig, value: str) -> str:
    """Envoy's ``Set-Cookie`` for a cookie it makes (``makeSetCookieValue``)."""
    text = f'{cookie.name}="{value}"'
    if cookie.ttl:
        text += f"; Max-Age={int(cookie.ttl)}"
    if cookie.path:
        text += f"; Path={cookie.path}"
    return text + "; HttpOnly"


def _retry_policy(config: RetryPolicyConfig) -> RetryPolicy:
    timeout = config.per_try_timeout if config.per_try_timeout is not None else config.retry_timeout
    return RetryPolicy(
        retry_on=config.conditions(),
        num_retries=config.num_retries,
        per_try_timeout=timeout or None,
        retriable_status_codes=frozenset(config.status_codes + config.retriable_status_codes),
    )
