"""The ``ratelimit`` stream filter: global rate limits through Envoy's rate limit
service protocol (``envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit``
over gRPC), as Envoy's ``envoy.filters.http.ratelimit`` does.

Each request's descriptors are built from its attributes by the ``rate_limits``
actions (Envoy's route ``rate_limits``; here in the filter's config, and per route
in ``per_filter_config.ratelimit``); a request with no descriptor is not checked.
The service's ``OVER_LIMIT`` is answered 429 (gRPC: RESOURCE_EXHAUSTED; RPC: the
protocol's server-busy status), with the headers the service asks for. A service
that fails or does not answer within ``timeout`` lets the request through
(``failure_mode_deny: false``, the default) or answers 500.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Literal

from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2
from pydantic import Field, model_validator

from mosn.config import Duration, Model, Unsupported
from mosn.filters.common import FilterStats, HeaderMatcher, PerRoute, ProtoModel, exactly_one
from mosn.plugins import BuildContext
from mosn.proxy import FilterStatus, Phase, StreamFilter
from mosn_policy.service import GrpcService, Unary

METHOD = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
DEFAULT_TIMEOUT = 0.02
"""Seconds to wait for the service (Envoy's default, 20 ms): a rate limit must not
add more than a small, bounded delay to every request."""
RATE_LIMITED = "RL"
"""Envoy's response flag for a request a rate limit refused."""
SERVICE_ERROR = "RLSE"
"""Envoy's response flag for a request refused because the service failed."""
STATS = ("ok", "over_limit", "error", "failure_mode_allowed")
"""Envoy's (``cluster.<name>.ratelimit.*``), here under ``<stat_prefix>.ratelimit.``."""
TOO_MANY_REQUESTS = 429
SERVICE_FAILED = 500
GRPC_RESOURCE_EXHAUSTED = 8
"""gRPC's status code (grpc/doc/statuscodes.md)."""


class RequestHeadersAction(ProtoModel):
    header_name: str = Field(min_length=1)
    descriptor_key: str = Field(min_length=1)
    skip_if_absent: bool = False


class GenericKeyAction(ProtoModel):
    descriptor_value: str
    descriptor_key: str = "generic_key"


class HeaderValueMatchAction(ProtoModel):
    descriptor_value: str
    descriptor_key: str = "header_match"
    expect_match: bool = True
    headers: list[HeaderMatcher] = Field(min_length=1)


class Action(ProtoModel):
    """Envoy's ``RateLimit.Action``: one of these, each giving one descriptor entry."""

    request_headers: RequestHeadersAction | None = None
    remote_address: dict[str, Any] | None = None
    generic_key: GenericKeyAction | None = None
    header_value_match: HeaderValueMatchAction | None = None
    destination_cluster: dict[str, Any] | None = None
    source_cluster: Unsupported = None
    metadata: Unsupported = None
    dynamic_metadata: Unsupported = None
    extension: Unsupported = None

    @model_validator(mode="after")
    def _one(self) -> "Action":
        exactly_one(self, "an action")
        for k in ("remote_address", "destination_cluster"):
            if getattr(self, k):
                raise ValueError(f"{k} takes no fields")
        return self


class RateLimitEntry(ProtoModel):
    """Envoy's route ``RateLimit``: the actions making one descriptor."""

    actions: list[Action] = Field(min_length=1)
    stage: int = 0
    disable_key: Unsupported = None
    limit: Unsupported = None


class RateLimitPerRoute(ProtoModel):
    """The route's own descriptors (``rate_limits``), or ``disabled``."""

    rate_limits: list[RateLimitEntry] = Field(default_factory=list)
    disabled: bool = False


class RateLimitServiceConfig(ProtoModel):
    grpc_service: GrpcService
    transport_api_version: Literal["V3", "AUTO"] = "V3"


class GlobalRateLimitConfig(ProtoModel):
    """Envoy's ``envoy.extensions.filters.http.ratelimit.v3.RateLimit``, with the
    route's ``rate_limits`` in it."""

    per_route: ClassVar[type[Model]] = RateLimitPerRoute

    domain: str = Field(min_length=1)
    rate_limits: list[RateLimitEntry] = Field(default_factory=list)
    rate_limit_service: RateLimitServiceConfig
    timeout: Duration = DEFAULT_TIMEOUT
    failure_mode_deny: bool = False
    stage: int = 0
    request_type: Literal["both", "internal", "external"] = "both"
    enable_x_ratelimit_headers: Literal["OFF"] = "OFF"
    """Not written by the global filter yet (the local one does)."""
    rate_limited_as_resource_exhausted: bool = True
    """gRPC's RESOURCE_EXHAUSTED for a limited call (mosn's default; Envoy's, false,
    gives UNAVAILABLE)."""
    stat_prefix: str = "ratelimit"
    disable_x_envoy_ratelimited_header: bool = False
    rate_limited_status: Unsupported = None
    response_headers_to_add: Unsupported = None
    status_on_error: Unsupported = None
    failure_mode_deny_percent: Unsupported = None

    def cross_check(self, root: Any, plugins: Any) -> list[tuple[str, str]]:
        return [(f"rate_limit_service.grpc_service.{loc}", msg) for loc, msg in
                self.rate_limit_service.grpc_service.cross_check(root, plugins)]


Entry = Callable[[Any], tuple[str, str] | None]


def _entry(action: Action) -> Entry:
    """A descriptor entry from a request; None: the descriptor is skipped."""
    if action.request_headers is not None:
        a = action.request_headers

        def header(stream: Any) -> tuple[str, str] | None:
            headers = stream.request.headers
            value = headers.get(a.header_name.lower()) or headers.get(a.header_name)
            return (a.descriptor_key, value) if value is not None else None
        return header
    if action.remote_address is not None:
        def remote(stream: Any) -> tuple[str, str] | None:
            peer = stream.conn.remote_address
            return ("remote_address", peer[0]) if isinstance(peer, tuple) else None
        return remote
    if action.generic_key is not None:
        g = action.generic_key
        return lambda stream: (g.descriptor_key, g.descriptor_value)
    if action.destination_cluster is not None:
        return lambda stream: (("destination_cluster", stream.cluster.name)
                               if stream.cluster is not None else None)
    m = action.header_value_match
    assert m is not None
    tests = [h.compile() for h in m.headers]

    def match(stream: Any) -> tuple[str, str] | None:
        matched = all(t(stream.request.headers) for t in tests)
        return (m.descriptor_key, m.descriptor_value) if matched == m.expect_match else None
    return match


class Descriptors:
    """The descriptors of one config (listener's or route's)."""

    __slots__ = ("entries", "skip_if_absent", "disabled")

    def __init__(self, rate_limits: list[RateLimitEntry], disabled: bool = False) -> None:
        self.entries = [[_entry(a) for a in rl.actions] for rl in rate_limits]
        self.disabled = disabled or not rate_limits

    def build(self, stream: Any) -> list[Any]:
        out = []
        for entries in self.entries:
            made = []
            for entry in entries:
                kv = entry(stream)
                if kv is None:
                    break
                made.append(ratelimit_pb2.RateLimitDescriptor.Entry(key=kv[0], value=kv[1]))
            else:
                out.append(ratelimit_pb2.RateLimitDescriptor(entries=made))
        return out


class GlobalRateLimit(StreamFilter):
    """Stateless per stream: one per listener."""

    phase = Phase.AFTER_ROUTE

    def __init__(self, config: GlobalRateLimitConfig, context: BuildContext) -> None:
        self.domain = config.domain
        self.timeout = config.timeout
        self.deny_on_failure = config.failure_mode_deny
        self.grpc = GRPC_RESOURCE_EXHAUSTED if config.rate_limited_as_resource_exhausted \
            else None
        self.envoy_header = not config.disable_x_envoy_ratelimited_header
        self.service = Unary(context.cluster_manager, config.rate_limit_service.grpc_service,
                             METHOD, rls_pb2.RateLimitRequest, rls_pb2.RateLimitResponse)
        self.routes: PerRoute[Descriptors] = PerRoute(
            "ratelimit", RateLimitPerRoute,
            lambda per, _: Descriptors(per.rate_limits, per.disabled),
            Descriptors(config.rate_limits))
        self.count = FilterStats(context.stats, f"{config.stat_prefix}.ratelimit", STATS).count

    def on_request(self, stream: Any) -> FilterStatus:
        descriptors = self.routes.get(stream)
        if descriptors.disabled:
            return FilterStatus.CONTINUE
        built = descriptors.build(stream)
        if not built:
            return FilterStatus.CONTINUE
        request = rls_pb2.RateLimitRequest(domain=self.domain, descriptors=built, hits_addend=1)
        self.service.call(request, self.timeout,
                          lambda response, error: self._answered(stream, response, error))
        return FilterStatus.STOP

    def _answered(self, stream: Any, response: Any, error: BaseException | None) -> None:
        if stream.done:
            return
        if error is not None:
            self.count("error")
            if self.deny_on_failure:
                stream.response_flags.append(SERVICE_ERROR)
                stream.send_local_reply(SERVICE_FAILED, "rate limit service failed\n")
                return
            self.count("failure_mode_allowed")
            stream.continue_request()
            return
        headers = [(h.key.lower(), h.value) for h in response.response_headers_to_add]
        if response.overall_code == rls_pb2.RateLimitResponse.OVER_LIMIT:
            self.count("over_limit")
            if self.envoy_header:
                headers.append(("x-envoy-ratelimited", "true"))
            stream.response_flags.append(RATE_LIMITED)
            body = response.raw_body.decode("utf-8", "replace") if response.raw_body else ""
            stream.send_local_reply(TOO_MANY_REQUESTS, body, headers, grpc_status=self.grpc)
            return
        self.count("ok")
        request_headers = stream.request.headers
        for h in response.request_headers_to_add:
            request_headers.set(h.key.lower(), h.value)
        stream.continue_request()


def build(config: GlobalRateLimitConfig, context: BuildContext) -> Callable[[], StreamFilter]:
    flt = GlobalRateLimit(config, context)
    return lambda: flt
