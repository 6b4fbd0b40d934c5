"""Config models of the L7 router, in MOSN's shape (``pkg/config/v2/route.go``).

``routers[]`` holds :class:`RouterConfiguration` blocks, each named by
``router_config_name`` and holding ``virtual_hosts[]``, each with ``domains`` and its
routes under MOSN's key ``routers``. A few Envoy fields a MOSN user may reach for are
accepted beside MOSN's: ``invert_match`` / ``present_match`` on header matchers,
``query_parameters``, ``case_sensitive``, and the Envoy spellings of a retry policy.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Annotated, Any, Collection, Iterable, Sequence

from pydantic import AfterValidator, BeforeValidator, Field, TypeAdapter, field_validator, model_validator

from mosn.config.base import Empty, Model, Unsupported
from mosn.config.types import Duration, Timeout
from mosn.variables import check_template, variable

REDIRECT_CODES = (301, 302, 303, 307, 308)  # the ones MOSN and Envoy accept
DEFAULT_REDIRECT_CODE = 301  # MOSN's and Envoy's default
DEFAULT_NUM_RETRIES = 1  # Envoy's default (MOSN retries at least 3 times whatever is set)
MOSN_GLOBAL_TIMEOUT = 60.0
"""Seconds of a route timeout written as zero: MOSN turns a zero route timeout into its
global default (``types.GlobalTimeout``, ``pkg/proxy/util.go`` parseProxyTimeout)."""

# Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on conditions.
RETRY_CONDITIONS = frozenset({
    "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure",
    "envoy-ratelimited", "retriable-4xx", "refused-stream", "retriable-status-codes",
    "retriable-headers", "http3-post-connect-failure",
    "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
})

_SCHEME = re.compile(r"^[a-z][a-z0-9.+-]*$")  # RFC 3986 section 3.1


def _compile(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
    return pattern


Regex = Annotated[str, AfterValidator(_compile)]


def _lb_metadata(value: Any) -> Any:
    """MOSN writes ``{"filter_metadata": {"mosn.lb": {...}}}``; a plain mapping is accepted too."""
    if value is None:
        return {}
    if isinstance(value, dict) and isinstance(value.get("filter_metadata"), dict):
        return value["filter_metadata"].get("mosn.lb") or {}
    return value


LbMetadata = Annotated[dict[str, str], BeforeValidator(_lb_metadata)]


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value


# -- matching -------------------------------------------------------------------------------


class HeaderMatcherConfig(Model):
    """MOSN's ``{name, value, regex}``, plus Envoy's ``invert_match`` and ``present_match``.

    A name alone means "present" (Envoy). ``regex`` searches the value unanchored, like
    MOSN's Go ``MatchString``: write ``^...$`` to match the whole value.
    """

    name: str = Field(min_length=1)
    value: str = ""
    regex: bool = False
    invert_match: bool = False
    present_match: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> "HeaderMatcherConfig":
        if self.present_match is not None and (self.value or self.regex):
            raise ValueError("set either present_match or value (with regex), not both")
        if self.regex:
            _compile(self.value)
        return self


def _known_variable(name: str) -> str:
    variable(name)
    return name


VariableName = Annotated[str, Field(min_length=1), AfterValidator(_known_variable)]
"""A variable's name (``x-mosn-method``, ``request_header_x-user``): unknown is an error."""
HeaderTemplate = Annotated[str, AfterValidator(check_template)]
"""A header value that may name ``%variables%``: unknown ones are errors."""


class VariableMatcherConfig(Model):
    """MOSN's route match on a variable (``pkg/router/variable_rule.go``): its value
    equals ``value``, or ``regex`` finds a match in it (unanchored, as Go's
    ``MatchString``). ``model`` (``and``, the default, or ``or``) joins this item's
    result with the next one's, left to right, as MOSN does."""

    name: VariableName
    value: str = ""
    regex: Regex = ""
    model: str = "and"

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if value.lower() not in ("and", "or"):
            raise ValueError(f"model is and or or, not {value!r}")
        return value.lower()

    @model_validator(mode="after")
    def _one_test(self) -> "VariableMatcherConfig":
        if bool(self.value) == bool(self.regex):
            raise ValueError("set one of value or regex")
        return self


class RegexMatcherConfig(Model):
    regex: Regex


class StringMatcherConfig(Model):
    """Envoy's StringMatcher: exactly one of the match kinds; ``safe_regex`` matches the whole value."""

    exact: str | None = None
    prefix: str | None = None
    suffix: str | None = None
    contains: str | None = None
    safe_regex: RegexMatcherConfig | None = None
    ignore_case: bool = False

    @field_validator("safe_regex", mode="before")
    @classmethod
    def _bare_regex(cls, value: Any) -> Any:
        return {"regex": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_kind(self) -> "StringMatcherConfig":
        kinds = [k for k in ("exact", "prefix", "suffix", "contains", "safe_regex")
                 if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("set exactly one of exact, prefix, suffix, contains, safe_regex")
        return self


class QueryParameterMatcherConfig(Model):
    """Envoy's query parameter matcher; a name alone means "present"."""

    name: str = Field(min_length=1)
    string_match: StringMatcherConfig | None = None
    present_match: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> "QueryParameterMatcherConfig":
        if self.string_match is not None and self.present_match is not None:
            raise ValueError("set either string_match or present_match, not both")
        return self


class RouteMatchConfig(Model):
    """At most one of ``prefix``, ``path``, ``regex``; none matches any path (MOSN's RPC routes).

    ``regex`` searches the path unanchored, as MOSN does.
    """

    prefix: str = ""
    path: str = ""
    regex: Regex = ""
    case_sensitive: bool = True
    headers: list[HeaderMatcherConfig] = Field(default_factory=list)
    query_parameters: list[QueryParameterMatcherConfig] = Field(default_factory=list)
    variables: list[VariableMatcherConfig] = Field(default_factory=list)
    dsl_expressions: Unsupported = None

    @model_validator(mode="after")
    def _one_path_kind(self) -> "RouteMatchConfig":
        kinds = [k for k in ("prefix", "path", "regex") if getattr(self, k)]
        if len(kinds) > 1:
            raise ValueError(f"set only one of prefix, path, regex (found {', '.join(kinds)})")
        return self


# -- actions ----------------------------------------------------------------------------------


class HeaderValue(Model):
    """``value`` may name ``%variables%`` (MOSN's ``headerformatter.go`` takes a value
    that is one ``%name%``; mosn also expands them inside text), expanded per request."""

    key: str = Field(min_length=1)
    value: HeaderTemplate = ""


class HeaderValueOption(Model):
    """MOSN's ``{"header": {"key": k, "value": v}, "append": bool}``; append joins with ``,``."""

    header: HeaderValue
    append: bool = True  # MOSN's default


class HeaderMutationsConfig(Model):
    """Header additions and removals, at router config, virtual host or route level."""

    request_headers_to_add: list[HeaderValueOption] = Field(default_factory=list)
    request_headers_to_remove: list[str] = Field(default_factory=list)
    response_headers_to_add: list[HeaderValueOption] = Field(default_factory=list)
    response_headers_to_remove: list[str] = Field(default_factory=list)


class ClusterWeightConfig(Model):
    name: str = Field(min_length=1)
    weight: int = Field(ge=1)
    metadata_match: LbMetadata = Field(default_factory=dict)


class WeightedClusterConfig(Model):
    """MOSN's ``{"cluster": {"name", "weight", "metadata_match"}}``."""

    cluster: ClusterWeightConfig


class RetryPolicyConfig(Model):
    """MOSN's ``{retry_on: bool, retry_timeout, num_retries, status_codes}``, or Envoy's
    ``retry_on: "connect-failure,5xx"`` (or a list) with ``per_try_timeout`` and
    ``retriable_status_codes``."""

    retry_on: bool | str | list[str] = False
    retry_timeout: Duration | None = None
    per_try_timeout: Duration | None = None
    num_retries: int = Field(default=DEFAULT_NUM_RETRIES, ge=0)
    status_codes: list[Annotated[int, Field(ge=100, le=599)]] = Field(default_factory=list)
    retriable_status_codes: list[Annotated[int, Field(ge=100, le=599)]] = Field(default_factory=list)

    @field_validator("retry_on")
    @classmethod
    def _known_conditions(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        names = value.split(",") if isinstance(value, str) else value
        names = [n.strip() for n in names if n.strip()]
        unknown = [n for n in names if n not in RETRY_CONDITIONS]
        if unknown:
            raise ValueError(f"unknown retry condition {unknown[0]!r}"
                             f" (known: {', '.join(sorted(RETRY_CONDITIONS))})")
        return names

    @model_validator(mode="after")
    def _check(self) -> "RetryPolicyConfig":
        if self.retry_timeout is not None and self.per_try_timeout is not None:
            raise ValueError("set retry_timeout (MOSN) or per_try_timeout (Envoy), not both")
        if (isinstance(self.retry_on, list) and self.status_codes + self.retriable_status_codes
                and "retriable-status-codes" not in self.retry_on):
            raise ValueError("status codes are given but retry_on lacks 'retriable-status-codes'")
        return self

    def conditions(self) -> frozenset[str]:
        """The Envoy retry conditions this policy means.

        MOSN's ``retry_on: true`` retries connect failures, resets and 5xx responses,
        or only the listed status codes when some are given; ``false`` retries
        connect failures only (``pkg/proxy/retrystate.go``).
        """
        if isinstance(self.retry_on, list):
            return frozenset(self.retry_on)
        if not self.retry_on:
            return frozenset({"connect-failure"})
        codes = self.status_codes or self.retriable_status_codes
        return frozenset({"connect-failure", "reset", "retriable-status-codes" if codes else "5xx"})


class HeaderHashConfig(Model):
    """MOSN's ``{key}`` or Envoy's ``{header_name}``."""

    key: str = ""
    header_name: str = ""

    @model_validator(mode="after")
    def _one_name(self) -> "HeaderHashConfig":
        if bool(self.key) == bool(self.header_name):
            raise ValueError("set one of key (MOSN) or header_name (Envoy)")
        return self

    @property
    def name(self) -> str:
        return (self.key or self.header_name).lower()


class CookieHashConfig(Model):
    name: str = Field(min_length=1)
    path: str = ""
    ttl: Duration | None = Field(default=None, ge=0)
    """Envoy's: a request without the cookie gets one made for it (its hash key), set
    on the response with this ``Max-Age`` (``0``: a session cookie). Unset: a request
    without the cookie has no key from this policy (MOSN's only behaviour)."""


class ConnectionPropertiesConfig(Model):
    source_ip: bool = False


class HashPolicyConfig(Model):
    """One way to make the hash key of ``LB_RING_HASH`` and ``LB_MAGLEV``: MOSN's
    ``{header: {key}}``, ``{cookie: {name}}``, ``{source_ip: {}}``, or Envoy's
    ``{header: {header_name}}``, ``{connection_properties: {source_ip: true}}``,
    with ``terminal``."""

    header: HeaderHashConfig | None = None
    cookie: CookieHashConfig | None = None
    source_ip: Empty | None = None
    connection_properties: ConnectionPropertiesConfig | None = None
    terminal: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> "HashPolicyConfig":
        kinds = [k for k in ("header", "cookie", "source_ip", "connection_properties")
                 if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("set exactly one of header, cookie, source_ip, connection_properties")
        if self.connection_properties is not None and not self.connection_properties.source_ip:
            raise ValueError("connection_properties needs source_ip: true")
        return self


_GO_GROUP = re.compile(r"\$(?:\{(\w+)\}|(\d+))|\$\$")


def python_substitution(text: str) -> str:
    """A regex substitution in Go's syntax (MOSN's ``$1``, ``${name}``, ``$$``) or in
    RE2's (Envoy's ``\\1``) as :func:`re.sub` takes it."""
    def group(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return f"\\g<{name}>" if name else "$"
    return _GO_GROUP.sub(group, text)


class RegexPatternConfig(Model):
    mosn_runtime_fields = {
        "google_re2": "RE2's program size bound (MOSN does not apply it either); mosn "
                      "compiles the regex with Python's re",
    }

    regex: str = Field(min_length=1)


class RegexRewriteConfig(Model):
    """MOSN's (and Envoy's) ``regex_rewrite``: every match of ``pattern.regex`` in the
    path (not the query) is replaced by ``substitution`` (``$1``/``${name}`` as in
    MOSN, or ``\\1`` as in Envoy, refer to groups)."""

    pattern: RegexPatternConfig
    substitution: str = ""

    @model_validator(mode="after")
    def _compiles(self) -> "RegexRewriteConfig":
        try:
            re.compile(self.pattern.regex).sub(python_substitution(self.substitution), "")
        except (re.error, IndexError) as exc:
            raise ValueError(f"pattern.regex {self.pattern.regex!r} with substitution "
                             f"{self.substitution!r}: {exc}") from None
        return self


class RouteActionConfig(HeaderMutationsConfig):
    """Where a request goes: exactly one of ``cluster_name``, ``cluster_header``, ``weighted_clusters``."""

    cluster_name: str = ""
    cluster_header: str = ""
    weighted_clusters: list[WeightedClusterConfig] = Field(default_factory=list)
    cluster_variable: VariableName | None = None
    """MOSN's: the cluster is the value of this variable for each request."""
    upstream_protocol: str = ""
    metadata_match: LbMetadata = Field(default_factory=dict)
    timeout: Timeout | None = None
    """From the complete request to the complete response. Unset: the proxy filter's
    ``timeout``; ``0``: MOSN's global default (:data:`MOSN_GLOBAL_TIMEOUT`);
    ``disabled``: none (what Envoy's ``timeout: 0s`` means, for configs translated from
    Envoy's shape)."""
    retry_policy: RetryPolicyConfig | None = None
    prefix_rewrite: str = ""
    regex_rewrite: RegexRewriteConfig | None = None
    host_rewrite: str = ""
    auto_host_rewrite: bool = False
    """The ``Host`` (``:authority``) sent upstream is the chosen host's ``hostname``
    (a host without one leaves it as it is, as in Envoy)."""
    auto_host_rewrite_header: str = ""
    hash_policy: Annotated[list[HashPolicyConfig], BeforeValidator(_one_or_many)] = Field(
        default_factory=list)
    """How ``LB_RING_HASH`` and ``LB_MAGLEV`` key a request; tried in order, combined."""
    max_request_bytes: int | None = Field(default=None, ge=0)
    """mosn's own: a request body larger than this is answered 413 (default: the
    proxy filter's ``max_request_bytes``)."""

    @model_validator(mode="after")
    def _one_cluster(self) -> "RouteActionConfig":
        if self.prefix_rewrite and self.regex_rewrite is not None:
            raise ValueError("set prefix_rewrite or regex_rewrite, not both (MOSN would "
                             "take prefix_rewrite and ignore the other)")
        hosts = [k for k in ("host_rewrite", "auto_host_rewrite", "auto_host_rewrite_header")
                 if getattr(self, k)]
        if len(hosts) > 1:
            raise ValueError(f"set one of {', '.join(hosts)} (Envoy's oneof; MOSN would "
                             "take one and ignore the others)")
        given = [k for k in ("cluster_name", "cluster_header", "weighted_clusters",
                             "cluster_variable") if getattr(self, k)]
        if len(given) != 1:
            found = f" (found {', '.join(given)})" if given else ""
            raise ValueError("set exactly one of cluster_name, cluster_header, weighted_clusters, "
                             f"cluster_variable{found}")
        names = Counter(w.cluster.name for w in self.weighted_clusters)
        repeated = [n for n, count in names.items() if count > 1]
        if repeated:
            raise ValueError(f"cluster {repeated[0]!r} is listed twice in weighted_clusters")
        return self


def route_timeout(seconds: float | None) -> float | None:
    """A configured route timeout as the proxy runs it: zero is MOSN's global default;
    None (unset) and ``math.inf`` (``disabled``) are kept."""
    return MOSN_GLOBAL_TIMEOUT if seconds == 0 else seconds


class DirectResponseConfig(Model):
    status: int = Field(ge=200, le=599)
    body: str = ""


class RedirectConfig(Model):
    """MOSN's RedirectAction; an empty field keeps the request's part of the URL."""

    response_code: int = DEFAULT_REDIRECT_CODE
    path_redirect: str = ""
    host_redirect: str = ""
    scheme_redirect: str = ""

    @field_validator("response_code")
    @classmethod
    def _code(cls, value: int) -> int:
        if value == 0:  # MOSN: unset
            return DEFAULT_REDIRECT_CODE
        if value not in REDIRECT_CODES:
            raise ValueError(f"response_code must be one of {', '.join(map(str, REDIRECT_CODES))}")
        return value

    @field_validator("scheme_redirect")
    @classmethod
    def _scheme(cls, value: str) -> str:
        value = value.lower()
        if value and not _SCHEME.match(value):
            raise ValueError(f"invalid scheme {value!r}")
        return value


class MirrorPolicyConfig(Model):
    """MOSN's ``request_mirror_policies``: copy ``percent`` of requests to ``cluster``."""

    cluster: str = Field(min_length=1)
    percent: int = Field(default=100, ge=0, le=100)
    trace_sampled: Unsupported = None


class RouteConfig(Model):
    """One entry of a virtual host's ``routers`` (MOSN's ``Router``)."""

    match: RouteMatchConfig = Field(default_factory=RouteMatchConfig)
    route: RouteActionConfig | None = None
    redirect: RedirectConfig | None = None
    direct_response: DirectResponseConfig | None = None
    metadata: LbMetadata = Field(default_factory=dict)
    per_filter_config: dict[str, Any] = Field(default_factory=dict)
    request_mirror_policies: Annotated[list[MirrorPolicyConfig], BeforeValidator(_one_or_many)] = (
        Field(default_factory=list))

    @model_validator(mode="after")
    def _one_action(self) -> "RouteConfig":
        given = [k for k in ("route", "redirect", "direct_response") if getattr(self, k) is not None]
        if len(given) != 1:
            found = f" (found {', '.join(given)})" if given else ""
            raise ValueError(f"a route needs exactly one of route, redirect, direct_response{found}")
        if self.route and self.route.prefix_rewrite and not (self.match.prefix or self.match.path):
            raise ValueError("route.prefix_rewrite needs match.prefix or match.path")
        return self


class VirtualHostConfig(HeaderMutationsConfig):
    """Domains are exact (``www.a.com``, ``a.com:8080``), ``*.a.com``, ``a.*`` or ``*``."""

    name: str = ""
    domains: list[str] = Field(min_length=1)
    routers: list[RouteConfig] = Field(default_factory=list)
    require_tls: Unsupported = None
    per_filter_config: dict[str, Any] = Field(default_factory=dict)

    @field_validator("domains")
    @classmethod
    def _domains(cls, domains: list[str]) -> list[str]:
        lowered = [d.lower() for d in domains]
        for domain in lowered:
            if not domain:
                raise ValueError("a domain cannot be empty")
            stars = domain.count("*")
            if stars > 1 or (stars == 1 and domain != "*" and not domain.startswith("*")
                             and not domain.endswith("*")):
                raise ValueError(f"domain {domain!r}: one '*' at most, at its start or end")
        repeated = [d for d, count in Counter(lowered).items() if count > 1]
        if repeated:
            raise ValueError(f"domain {repeated[0]!r} is listed twice")
        return lowered


class RouterConfiguration(HeaderMutationsConfig):
    router_config_name: str = Field(min_length=1)
    virtual_hosts: list[VirtualHostConfig] = Field(default_factory=list)
    router_configs: Unsupported = None

    @field_validator("virtual_hosts")
    @classmethod
    def _unique_domains(cls, hosts: list[VirtualHostConfig]) -> list[VirtualHostConfig]:
        owner: dict[str, int] = {}
        for i, host in enumerate(hosts):
            for domain in host.domains:
                if domain in owner:
                    raise ValueError(f"domain {domain!r} of virtual_hosts[{i}]"
                                     f" is already in virtual_hosts[{owner[domain]}]")
                owner[domain] = i
        return hosts


def _unique_names(configs: list[RouterConfiguration]) -> list[RouterConfiguration]:
    seen: dict[str, int] = {}
    for i, config in enumerate(configs):
        name = config.router_config_name
        if name in seen:
            raise ValueError(f"router_config_name {name!r} of [{i}] is already used by [{seen[name]}]")
        seen[name] = i
    return configs


_ROUTER_LIST = TypeAdapter(Annotated[list[RouterConfiguration], AfterValidator(_unique_names)])


def parse_routers(raw: Any) -> list[RouterConfiguration]:
    """Validate a ``routers`` list; raises pydantic's ``ValidationError`` with every error."""
    return _ROUTER_LIST.validate_python(raw)


def check_references(routers: Sequence[RouterConfiguration],
                     cluster_names: Collection[str]) -> list[tuple[str, str]]:
    """``(path, message)`` for every route naming a cluster not in ``cluster_names``.

    Paths start at ``routers[i]`` (``i`` indexes ``routers``). A ``cluster_header``
    is read per request and cannot be checked here.
    """
    return [(path, f"unknown cluster {name!r}")
            for path, name in _cluster_refs(routers) if name not in cluster_names]


def _cluster_refs(routers: Sequence[RouterConfiguration]) -> Iterable[tuple[str, str]]:
    for i, config in enumerate(routers):
        for j, host in enumerate(config.virtual_hosts):
            for k, route in enumerate(host.routers):
                base = f"routers[{i}].virtual_hosts[{j}].routers[{k}]"
                action = route.route
                if action is not None and action.cluster_name:
                    yield f"{base}.route.cluster_name", action.cluster_name
                if action is not None:
                    for n, weighted in enumerate(action.weighted_clusters):
                        yield f"{base}.route.weighted_clusters[{n}].cluster.name", weighted.cluster.name
                for n, mirror in enumerate(route.request_mirror_policies):
                    yield f"{base}.request_mirror_policies[{n}].cluster", mirror.cluster
