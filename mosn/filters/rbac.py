"""Role-based access control: Envoy's RBAC policies as the ``rbac`` stream filter
(``envoy.filters.http.rbac``) and the ``rbac`` network filter for TCP
(``envoy.filters.network.rbac``), and MOSN's ``ip_access`` stream filter.

A policy matches when one of its permissions (what is asked: path, method, port,
header, RPC service and method ...) and one of its principals (who asks: the
authenticated SPIFFE identity of an mTLS peer, a source IP range, a header, a JWT
claim the ``jwt_authn`` filter verified ...) both match. ``action: ALLOW`` lets a
request through only if a policy matches, ``DENY`` refuses it if one does, ``LOG``
lets everything through. ``shadow_rules`` are evaluated and counted, never enforced.

A refused request gets ``403 RBAC: access denied`` (gRPC: PERMISSION_DENIED); an
RPC call, the protocol's server-error status with that message (bolt and Dubbo have
no "forbidden" status: see docs/filters.md); a TCP connection is closed.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any, Callable, ClassVar, Literal

from pydantic import Field, model_validator

from mosn.config.base import Model, Unsupported
from mosn.filters.common import (
    FilterStats,
    HeaderMatcher,
    PerRoute,
    ProtoModel,
    PseudoHeaders,
    StringMatcher,
    exactly_one,
    header_values,
)
from mosn.network.filter import CloseType, FilterStatus
from mosn.plugins import BuildContext, Extension, hookimpl
from mosn.proxy.stream_filter import Phase, StreamFilter
from mosn.variables import rpc_call

log = logging.getLogger("mosn.rbac")

DENIED_BODY = "RBAC: access denied"
"""Envoy's reply body for a refused request."""
STATS = ("allowed", "denied", "shadow_allowed", "shadow_denied")
"""Envoy's RBAC stats, under ``<stat_prefix>.rbac.``."""
JWT_FILTER_NAMES = ("envoy.filters.http.jwt_authn", "jwt_authn")
"""The metadata namespace the ``jwt_authn`` filter writes verified claims to."""
FORBIDDEN = 403

Check = Callable[[Any], bool]
"""A compiled permission or principal: ``check(request)`` with a :class:`Request`."""


class CidrRange(ProtoModel):
    address_prefix: str
    prefix_len: int = Field(default=-1, ge=-1, le=128)

    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        address = ipaddress.ip_address(self.address_prefix)
        length = address.max_prefixlen if self.prefix_len < 0 else self.prefix_len
        return ipaddress.ip_network(f"{address}/{length}", strict=False)

    @model_validator(mode="after")
    def _valid(self) -> "CidrRange":
        try:
            self.network()
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return self


class PathMatcher(ProtoModel):
    path: StringMatcher


class MetadataPathSegment(ProtoModel):
    key: str


class ValueMatcher(ProtoModel):
    string_match: StringMatcher | None = None
    bool_match: bool | None = None
    present_match: bool | None = None


class MetadataMatcher(ProtoModel):
    """Envoy's ``MetadataMatcher``, for the claims ``jwt_authn`` verified
    (``filter: envoy.filters.http.jwt_authn``, ``path: [{key: <payload key>}, {key: sub}]``)."""

    filter: str
    path: list[MetadataPathSegment] = Field(min_length=1)
    value: ValueMatcher
    invert: bool = False


class Permission(ProtoModel):
    """One of: ``any``, ``header``, ``url_path``, ``destination_ip``,
    ``destination_port``, ``requested_server_name``, ``and_rules``, ``or_rules``,
    ``not_rule``, and mosn's ``rpc_service`` / ``rpc_method`` (an RPC call's service
    and method; gRPC's from its path)."""

    any: bool | None = None
    header: HeaderMatcher | None = None
    url_path: PathMatcher | None = None
    destination_ip: CidrRange | None = None
    destination_port: int | None = Field(default=None, ge=0, le=65535)
    requested_server_name: StringMatcher | None = None
    and_rules: "PermissionSet | None" = None
    or_rules: "PermissionSet | None" = None
    not_rule: "Permission | None" = None
    rpc_service: StringMatcher | None = None
    rpc_method: StringMatcher | None = None
    metadata: Unsupported = None
    destination_port_range: Unsupported = None
    matcher: Unsupported = None
    uri_template: Unsupported = None

    @model_validator(mode="after")
    def _one(self) -> "Permission":
        return _exactly_one(self, "permission")


class PermissionSet(ProtoModel):
    rules: list[Permission] = Field(min_length=1)


class Principal(ProtoModel):
    """One of: ``any``, ``authenticated``, ``source_ip`` / ``direct_remote_ip`` /
    ``remote_ip`` (all the connection's peer here), ``header``, ``url_path``,
    ``metadata`` (JWT claims), ``and_ids``, ``or_ids``, ``not_id``."""

    any: bool | None = None
    authenticated: "Authenticated | None" = None
    source_ip: CidrRange | None = None
    direct_remote_ip: CidrRange | None = None
    remote_ip: CidrRange | None = None
    header: HeaderMatcher | None = None
    url_path: PathMatcher | None = None
    metadata: MetadataMatcher | None = None
    and_ids: "PrincipalSet | None" = None
    or_ids: "PrincipalSet | None" = None
    not_id: "Principal | None" = None
    filter_state: Unsupported = None

    @model_validator(mode="after")
    def _one(self) -> "Principal":
        return _exactly_one(self, "principal")


class Authenticated(ProtoModel):
    """A TLS peer with a verified certificate; ``principal_name`` matches one of its
    URI SANs (a SPIFFE id), else DNS SANs, else its subject."""

    principal_name: StringMatcher | None = None


class PrincipalSet(ProtoModel):
    ids: list[Principal] = Field(min_length=1)


class Policy(ProtoModel):
    permissions: list[Permission] = Field(min_length=1)
    principals: list[Principal] = Field(min_length=1)
    condition: Unsupported = None
    checked_condition: Unsupported = None


class Rules(ProtoModel):
    action: Literal["ALLOW", "DENY", "LOG"] = "ALLOW"
    policies: dict[str, Policy] = Field(default_factory=dict)
    audit_logging_options: Unsupported = None


class RbacPerRoute(ProtoModel):
    """Envoy's ``RBACPerRoute``: the route's own rules; no ``rbac``: none (the route
    is not checked)."""

    rbac: "RbacConfig | None" = None


class RbacConfig(ProtoModel):
    """Envoy's ``RBAC`` (HTTP) and network ``RBAC`` (TCP: ``stat_prefix``)."""

    per_route: ClassVar[type[Model]] = RbacPerRoute

    rules: Rules | None = None
    shadow_rules: Rules | None = None
    stat_prefix: str = ""
    shadow_rules_stat_prefix: str = ""
    rules_stat_prefix: str = ""
    matcher: Unsupported = None
    shadow_matcher: Unsupported = None
    track_per_rule_stats: Unsupported = None
    enforcement_type: Literal["ONE_TIME_ON_FIRST_BYTE", "CONTINUOUS"] = "ONE_TIME_ON_FIRST_BYTE"
    """Network RBAC: mosn checks each connection once, when it starts."""


for _model in (Permission, PermissionSet, Principal, PrincipalSet, Authenticated, RbacPerRoute):
    _model.model_rebuild()


def _exactly_one(model: ProtoModel, what: str) -> Any:
    exactly_one(model, f"a {what}")
    if getattr(model, "any", None) is False:
        raise ValueError(f"{what} any: only true means something")
    return model


# -- what a request offers the rules -----------------------------------------------------------


class Request:
    """The facts RBAC reads from a stream (or a TCP connection: no head)."""

    __slots__ = ("conn", "head", "metadata")

    def __init__(self, conn: Any, head: Any = None, metadata: Any = None) -> None:
        self.conn = conn
        self.head = head
        self.metadata = metadata

    def path(self) -> str | None:
        head = self.head
        if head is None or head.frame is not None:
            return None
        return head.path.partition("?")[0]

    def rpc(self) -> tuple[str, str] | None:
        """(service, method) of an RPC call or a gRPC request."""
        head = self.head
        return rpc_call(head) if head is not None else None

    def peer_ip(self) -> Any:
        address = self.conn.remote_address
        if not isinstance(address, tuple):
            return None
        return ipaddress.ip_address(address[0].partition("%")[0])

    def local(self) -> tuple[Any, int] | None:
        address = self.conn.local_address
        if not isinstance(address, tuple):
            return None
        return ipaddress.ip_address(address[0].partition("%")[0]), address[1]


def _ip_in(network: Any) -> Check:
    def check(r: Request) -> bool:
        ip = r.peer_ip()
        if ip is None:
            return False
        if ip.version != network.version and getattr(ip, "ipv4_mapped", None) is not None:
            ip = ip.ipv4_mapped
        return ip in network
    return check


def _string_of(read: Callable[[Request], str | None], matcher: StringMatcher) -> Check:
    test = matcher.compile()

    def check(r: Request) -> bool:
        value = read(r)
        return value is not None and test(value)
    return check


def _headers_of(matcher: HeaderMatcher) -> Check:
    test = matcher.compile()
    pseudo = matcher.name.startswith(":")

    def check(r: Request) -> bool:
        if r.head is None:
            return False
        return test(PseudoHeaders(r.head) if pseudo else r.head.headers)
    return check


def compile_permission(p: Permission) -> Check:
    if p.any:
        return lambda r: True
    if p.header is not None:
        return _headers_of(p.header)
    if p.url_path is not None:
        return _string_of(Request.path, p.url_path.path)
    if p.destination_ip is not None:
        network = p.destination_ip.network()

        def local_ip(r: Request) -> bool:
            local = r.local()
            return local is not None and local[0] in network
        return local_ip
    if p.destination_port is not None:
        port = p.destination_port

        def local_port(r: Request) -> bool:
            local = r.local()
            return local is not None and local[1] == port
        return local_port
    if p.requested_server_name is not None:
        return _string_of(lambda r: r.conn.tls.server_name if r.conn.tls is not None else None,
                          p.requested_server_name)
    if p.and_rules is not None:
        parts = [compile_permission(x) for x in p.and_rules.rules]
        return lambda r: all(c(r) for c in parts)
    if p.or_rules is not None:
        parts = [compile_permission(x) for x in p.or_rules.rules]
        return lambda r: any(c(r) for c in parts)
    if p.not_rule is not None:
        inner = compile_permission(p.not_rule)
        return lambda r: not inner(r)
    if p.rpc_service is not None:
        return _string_of(lambda r: (r.rpc() or (None, None))[0], p.rpc_service)
    assert p.rpc_method is not None
    return _string_of(lambda r: (r.rpc() or (None, None))[1], p.rpc_method)


def _authenticated(a: Authenticated) -> Check:
    test = a.principal_name.compile() if a.principal_name is not None else None

    def check(r: Request) -> bool:
        tls = r.conn.tls
        if tls is None or not tls.peer_certificate or not tls.peer_verified:
            return False
        if test is None:
            return True
        sans = tls.peer_sans
        uris = [s.value for s in sans if s.type == "URI"]
        dns = [s.value for s in sans if s.type == "DNS"]
        names = uris or dns or [tls.peer_subject]
        return any(test(n) for n in names)
    return check


def _metadata(m: MetadataMatcher) -> Check:
    keys = [seg.key for seg in m.path]
    value = m.value
    test = value.string_match.compile() if value.string_match is not None else None

    def check(r: Request) -> bool:
        found: Any = (r.metadata or {}).get(m.filter)
        for key in keys:
            found = found.get(key) if isinstance(found, dict) else None
        if value.present_match is not None:
            result = (found is not None) == value.present_match
        elif value.bool_match is not None:
            result = found is value.bool_match
        elif test is not None:
            values = found if isinstance(found, list) else [found]
            result = any(isinstance(v, str) and test(v) for v in values)
        else:
            result = False
        return result != m.invert
    return check


def compile_principal(p: Principal) -> Check:
    if p.any:
        return lambda r: True
    if p.authenticated is not None:
        return _authenticated(p.authenticated)
    ip = p.source_ip or p.direct_remote_ip or p.remote_ip
    if ip is not None:
        return _ip_in(ip.network())
    if p.header is not None:
        return _headers_of(p.header)
    if p.url_path is not None:
        return _string_of(Request.path, p.url_path.path)
    if p.metadata is not None:
        return _metadata(p.metadata)
    if p.and_ids is not None:
        parts = [compile_principal(x) for x in p.and_ids.ids]
        return lambda r: all(c(r) for c in parts)
    if p.or_ids is not None:
        parts = [compile_principal(x) for x in p.or_ids.ids]
        return lambda r: any(c(r) for c in parts)
    assert p.not_id is not None
    inner = compile_principal(p.not_id)
    return lambda r: not inner(r)


class Engine:
    """Compiled rules: ``allowed(request)`` and the name of the policy that decided."""

    __slots__ = ("action", "policies")

    def __init__(self, rules: Rules) -> None:
        self.action = rules.action
        self.policies = [
            (name, [compile_permission(x) for x in policy.permissions],
             [compile_principal(x) for x in policy.principals])
            for name, policy in rules.policies.items()]

    def matched(self, r: Request) -> str | None:
        for name, permissions, principals in self.policies:
            if any(c(r) for c in permissions) and any(c(r) for c in principals):
                return name
        return None

    def allowed(self, r: Request) -> tuple[bool, str | None]:
        name = self.matched(r)
        if self.action == "ALLOW":
            return name is not None, name
        if self.action == "DENY":
            return name is None, name
        return True, name


class Checks:
    """One config's engines (enforced and shadow)."""

    __slots__ = ("rules", "shadow")

    def __init__(self, config: RbacConfig | None) -> None:
        self.rules = Engine(config.rules) if config and config.rules else None
        self.shadow = Engine(config.shadow_rules) if config and config.shadow_rules else None


def counters(context: BuildContext, prefix: str) -> FilterStats:
    """``<prefix>.rbac.*`` (a prefix ending in ``.`` is used as it is, Envoy's way)."""
    scope = f"{prefix}rbac" if not prefix or prefix.endswith(".") else f"{prefix}.rbac"
    return FilterStats(context.stats, scope, STATS)


def decide(checks: Checks, counters: FilterStats, r: Request) -> str | None:
    """Count the shadow rules' verdict; the enforced rules' refusal as the reason, or
    None when the request may go on."""
    if checks.shadow is not None:
        ok, _ = checks.shadow.allowed(r)
        counters.count("shadow_allowed" if ok else "shadow_denied")
    if checks.rules is None:
        return None
    ok, policy = checks.rules.allowed(r)
    counters.count("allowed" if ok else "denied")
    if ok:
        return None
    return f"{DENIED_BODY} (policy {policy})" if policy else DENIED_BODY


class Rbac(StreamFilter):
    """The stream filter of one listener: stateless per stream."""

    phase = Phase.AFTER_ROUTE

    def __init__(self, config: RbacConfig, context: BuildContext) -> None:
        self.counters = counters(context, config.stat_prefix)
        self.routes: PerRoute[Checks] = PerRoute(
            "rbac", RbacPerRoute, lambda per, _: Checks(per.rbac), Checks(config))

    def on_request(self, stream: Any) -> FilterStatus:
        checks = self.routes.get(stream)
        if checks.rules is None and checks.shadow is None:
            return FilterStatus.CONTINUE
        refused = decide(checks, self.counters,
                         Request(stream.conn, stream.request, stream.dynamic_metadata))
        if refused is None:
            return FilterStatus.CONTINUE
        stream.send_local_reply(FORBIDDEN, refused)
        return FilterStatus.STOP


def build(config: RbacConfig, context: BuildContext) -> Callable[[], StreamFilter]:
    rbac = Rbac(config, context)
    return lambda: rbac


def build_network(config: RbacConfig, context: BuildContext) -> Callable[[Any], None]:
    """TCP: each connection checked once as it starts (permissions and principals of
    the connection: addresses, ports, SNI, the peer's certificate); a refused one is
    closed before any byte goes upstream."""
    checks = Checks(config)
    stats = counters(context, config.stat_prefix)

    def install(conn: Any) -> None:
        refused = decide(checks, stats, Request(conn))
        if refused is not None:
            log.debug("connection from %s refused: %s", conn.remote_address, refused)
            conn.close(CloseType.NO_FLUSH)
    return install


# -- MOSN's ip_access -----------------------------------------------------------------------------


class IpList(Model):
    action: Literal["allow", "deny"]
    addrs: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _addresses(self) -> "IpList":
        for a in self.addrs:
            try:
                ipaddress.ip_network(a, strict=False)
            except ValueError as exc:
                raise ValueError(f"addrs: {exc}") from None
        return self


class IpAccessConfig(Model):
    """MOSN's ``ip_access`` (``pkg/filter/stream/ipaccess``): lists tried in order; an
    address in an ``allow`` list goes on, one in a ``deny`` list is refused (403);
    otherwise ``default_action``. ``header``: read the address from this request
    header (as a proxy in front set it) instead of the connection's peer."""

    header: str = ""
    default_action: Literal["allow", "deny"] = "allow"
    ips: list[IpList] = Field(default_factory=list)


class IpAccess(StreamFilter):
    phase = Phase.BEFORE_ROUTE

    def __init__(self, config: IpAccessConfig) -> None:
        self.header = config.header.lower()
        self.allow_all = config.default_action == "allow"
        self.lists = [(entry.action == "allow",
                       [ipaddress.ip_network(a, strict=False) for a in entry.addrs])
                      for entry in config.ips]

    def _address(self, stream: Any) -> Any:
        text = None
        if self.header and stream.request is not None:
            values = header_values(stream.request.headers, self.header)
            text = values[0].split(",")[0].strip() if values else None
        if not text:
            peer = stream.conn.remote_address
            text = peer[0] if isinstance(peer, tuple) else None
        try:
            return ipaddress.ip_address(text.partition("%")[0]) if text else None
        except ValueError:
            return None

    def on_request(self, stream: Any) -> FilterStatus:
        ip = self._address(stream)
        if ip is not None:
            for allow, networks in self.lists:
                inside = any(ip in n for n in networks if n.version == ip.version)
                if inside and allow:
                    return FilterStatus.CONTINUE
                if inside and not allow:
                    return self._refuse(stream, ip)
        if self.allow_all:
            return FilterStatus.CONTINUE
        return self._refuse(stream, ip)

    def _refuse(self, stream: Any, ip: Any) -> FilterStatus:
        log.debug("%s has been blocked by ip_access", ip)
        stream.send_local_reply(FORBIDDEN, f"ip_access: {ip} is not allowed\n")
        return FilterStatus.STOP


def build_ip_access(config: IpAccessConfig, context: BuildContext) -> Callable[[], StreamFilter]:
    flt = IpAccess(config)
    return lambda: flt


@hookimpl
def mosn_stream_filters() -> list[Extension]:
    return [Extension("rbac", build, RbacConfig,
                      description="Envoy's RBAC: allow or deny by who asks and what"),
            Extension("ip_access", build_ip_access, IpAccessConfig,
                      description="MOSN's IP allow and deny lists")]


@hookimpl
def mosn_network_filters() -> list[Extension]:
    return [Extension("rbac", build_network, RbacConfig,
                      description="Envoy's network RBAC: allow or deny TCP connections")]
