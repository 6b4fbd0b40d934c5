"""Local rate limits: the ``local_ratelimit`` stream filter (Envoy's
``envoy.filters.http.local_ratelimit``) and MOSN's ``flowControlFilter`` (its
Sentinel flow rules), both on token buckets that every worker shares (see
:mod:`mosn.filters.buckets`).

A request over its limit gets the protocol's "too many requests": ``429`` over HTTP
(with ``x-ratelimit-*`` headers when asked), ``RESOURCE_EXHAUSTED`` over gRPC, the
RPC protocol's server-busy status (bolt ``SERVER_THREADPOOL_BUSY``, Dubbo
``SERVER_THREADPOOL_EXHAUSTED``, a declared protocol's ``overflow``). Runs after
routing, so a route or virtual host may carry its own limit in
``per_filter_config.local_ratelimit`` (a whole config: its own bucket).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Callable, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from mosn.config.base import Model, Unsupported
from mosn.config.routers import HeaderValueOption
from mosn.config.types import Duration
from mosn.filters.buckets import BucketTable, TokenBucket
from mosn.filters.common import (
    ALWAYS,
    FilterStats,
    ProtoModel,
    KeyTemplate,
    PerRoute,
    RuntimeFractionalPercent,
    key_template,
    status_code,
)
from mosn.network.filter import FilterStatus
from mosn.plugins import BuildContext, Extension, hookimpl
from mosn.proxy import grpc
from mosn.proxy.stream_filter import Phase, StreamFilter
from mosn.stream.types import ResponseHead

RATE_LIMITED = "RL"
"""Envoy's response flag for a request a rate limit refused."""
TOO_MANY_REQUESTS = 429
STATS = ("enabled", "enforced", "rate_limited", "ok")
"""Envoy's local rate limit stats, under ``<stat_prefix>.http_local_rate_limit.``."""
MOSN_LIMIT_EXCEEDED = 509
"""MOSN's ``api.LimitExceededCode``: what ``flowControlFilter`` answers by default."""
MOSN_LIMITED_BODY = "current request is limited"
"""MOSN's ``flowControlFilter`` default reply body."""
SENTINEL_STAT_INTERVAL_MS = 1000
"""Sentinel's default ``statIntervalInMs``: a threshold is per second."""

_STOP = FilterStatus.STOP
_CONTINUE = FilterStatus.CONTINUE


class TokenBucketConfig(ProtoModel):
    max_tokens: int = Field(ge=1)
    tokens_per_fill: int = Field(default=1, ge=1)
    fill_interval: Duration

    @model_validator(mode="after")
    def _positive(self) -> "TokenBucketConfig":
        if self.fill_interval <= 0:
            raise ValueError("fill_interval must be above 0")
        return self


class LocalRateLimitConfig(ProtoModel):
    """Envoy's ``LocalRateLimit``, plus mosn's ``key``."""

    per_route: ClassVar[type[Model]]

    stat_prefix: str = "local_rate_limit"
    token_bucket: TokenBucketConfig
    key: Annotated[str, AfterValidator(key_template)] = ""
    """mosn's: a bucket per distinct value of this ``%variable%`` template (such as
    ``%request_header_x-user%``, ``%downstream_remote_address_without_port%``,
    ``%request_header_service%`` for RPC); empty: one bucket."""
    status: Annotated[int, BeforeValidator(status_code)] = TOO_MANY_REQUESTS
    filter_enabled: RuntimeFractionalPercent = ALWAYS
    """Envoy's: the share of requests checked (Envoy's default is 0%; mosn's 100%)."""
    filter_enforced: RuntimeFractionalPercent = ALWAYS
    """Envoy's: the share of checked requests refused when over the limit; the rest
    are only counted (``enabled`` without ``enforced``: shadow mode)."""
    response_headers_to_add: list[HeaderValueOption] = Field(default_factory=list)
    """Added to the reply of a limited request."""
    enable_x_ratelimit_headers: Literal["OFF", "DRAFT_VERSION_03"] = "OFF"
    rate_limited_as_resource_exhausted: bool = True
    """Envoy's: gRPC's RESOURCE_EXHAUSTED for a limited gRPC call (mosn's default;
    Envoy's is UNAVAILABLE, what ``false`` gives)."""
    descriptors: Unsupported = None
    request_headers_to_add_when_not_enforced: Unsupported = None
    local_rate_limit_per_downstream_connection: Unsupported = None
    always_consume_default_token_bucket: Unsupported = None
    stage: Unsupported = None
    vh_rate_limits: Unsupported = None


LocalRateLimitConfig.per_route = LocalRateLimitConfig


class Limit:
    """One config's bucket(s) and reply, built once."""

    __slots__ = ("config_id", "bucket", "key", "status", "enabled", "enforced", "headers",
                 "x_headers", "grpc_status", "body", "window")

    def __init__(self, config: LocalRateLimitConfig, identity: int,
                 body: str = "local_rate_limited") -> None:
        self.config_id = identity
        tb = config.token_bucket
        self.bucket = TokenBucket(tb.max_tokens, tb.tokens_per_fill,
                                  max(1, round(tb.fill_interval * 1e9)))
        self.window = max(1, math.ceil(tb.fill_interval))
        self.key = KeyTemplate(config.key) if config.key else None
        self.status = config.status
        self.enabled = config.filter_enabled.default_value
        self.enforced = config.filter_enforced.default_value
        self.headers = [(h.header.key.lower(), h.header.value)
                        for h in config.response_headers_to_add]
        self.x_headers = config.enable_x_ratelimit_headers != "OFF"
        self.grpc_status = grpc.RESOURCE_EXHAUSTED if config.rate_limited_as_resource_exhausted \
            else None
        self.body = body


class RateLimiter:
    """What every stream of one listener's filter shares: the bucket table, the stats,
    the listener's limit and the routes' own."""

    __slots__ = ("table", "stats", "count", "routes")

    def __init__(self, name: str, default: Limit | None, model: type[Model],
                 build: Callable[[Any, int], Limit], context: BuildContext,
                 stat_prefix: str) -> None:
        self.table = BucketTable(context.stats, f"{name}.buckets")
        self.stats = FilterStats(context.stats, f"{stat_prefix}.http_local_rate_limit", STATS)
        self.count = self.stats.count
        # A route's limit counts once across workers: its bucket keys by the
        # route's place, not by an object each worker made.
        self.routes: PerRoute[Limit | None] = PerRoute(name, model, build, default,
                                                       shared=True)


class LocalRateLimit(StreamFilter):
    """One stream's check; the buckets are the listener's (and every worker's)."""

    __slots__ = ("limiter", "granted")
    phase = Phase.AFTER_ROUTE

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self.granted: tuple[Limit, int, float] | None = None

    def on_request(self, stream: Any) -> FilterStatus:
        limiter = self.limiter
        limit = limiter.routes.get(stream)
        if limit is None or not limit.enabled.chosen():
            return _CONTINUE
        limiter.count("enabled")
        key = limit.key(stream) if limit.key is not None else ""
        taken, left, reset = limiter.table.take(hash((limit.config_id, key)), limit.bucket)
        if taken:
            limiter.count("ok")
            if limit.x_headers:
                self.granted = (limit, left, reset)
            return _CONTINUE
        limiter.count("rate_limited")
        if not limit.enforced.chosen():
            return _CONTINUE
        limiter.count("enforced")
        headers = list(limit.headers)
        if limit.x_headers:
            headers += _x_headers(limit, 0, reset)
        stream.response_flags.append(RATE_LIMITED)
        stream.send_local_reply(limit.status, limit.body, headers,
                                grpc_status=limit.grpc_status)
        return _STOP

    def on_response(self, stream: Any, head: ResponseHead) -> None:
        granted = self.granted
        if granted is not None and head.frame is None:
            self.granted = None
            limit, left, reset = granted
            for name, value in _x_headers(limit, left, reset):
                head.headers.set(name, value)


def _x_headers(limit: Limit, left: int, reset: float) -> list[tuple[str, str]]:
    """The IETF draft's headers (version 03), as Envoy writes them."""
    return [("x-ratelimit-limit", f"{limit.bucket.max_tokens}, "
                                  f"{limit.bucket.max_tokens};w={limit.window}"),
            ("x-ratelimit-remaining", str(left)),
            ("x-ratelimit-reset", str(max(0, math.ceil(reset))))]


def build_local(config: LocalRateLimitConfig,
                context: BuildContext) -> Callable[[], StreamFilter]:
    limiter = RateLimiter("local_ratelimit", Limit(config, id(config)), LocalRateLimitConfig,
                          Limit, context, config.stat_prefix)
    return lambda: LocalRateLimit(limiter)


# -- MOSN's flowControlFilter -----------------------------------------------------------------


class FlowRule(Model):
    """A Sentinel flow rule (sentinel-golang's ``flow.Rule``, and the older field names
    MOSN's samples still write). mosn runs the rule Sentinel runs by default: at most
    ``threshold`` requests of ``resource`` per ``statIntervalInMs``, refused beyond it."""

    id: str = ""
    resource: str = Field(min_length=1)
    threshold: float = Field(gt=0)
    statIntervalInMs: int = Field(default=SENTINEL_STAT_INTERVAL_MS, ge=1)
    tokenCalculateStrategy: Literal[0] = 0
    """0: Direct (the only strategy mosn runs; WarmUp and others are refused)."""
    controlBehavior: Literal[0] = 0
    """0: Reject (Throttling, which queues, is refused)."""
    relationStrategy: Literal[0] = 0
    grade: Literal[1] = 1
    """The older name of the metric: 1 is QPS, the only one."""
    strategy: Literal[0] = 0
    """The older name of ``relationStrategy``: 0 is Direct."""
    limitApp: Literal["", "default"] = ""
    """The older origin filter: empty or ``default`` (every caller)."""


class FlowAction(Model):
    status: int = Field(default=MOSN_LIMIT_EXCEEDED, ge=200, le=599)
    body: str = MOSN_LIMITED_BODY


class FlowControlConfig(Model):
    """MOSN's ``flowControlFilter`` config (``pkg/filter/stream/flowcontrol``)."""

    app_name: str = ""
    """Sentinel's application name for its own log files; mosn writes none (its
    stats are ``flow_control.http_local_rate_limit.*``), so it has no effect."""
    log_path: str = ""
    """Sentinel's log directory; no effect, as ``app_name``."""
    global_switch: bool = False
    """MOSN's: off (the default) lets every request through."""
    monitor: bool = False
    """MOSN's: count, do not refuse (shadow mode)."""
    limit_key_type: Literal["PATH", "URI", "ARG"] = "PATH"
    """What a rule's ``resource`` is compared with: ``PATH`` the path without the
    query (gRPC and the RPC protocols: the service, as MOSN's gRPC registers it),
    ``URI`` the path with it, ``ARG`` the query alone."""
    action: FlowAction = Field(default_factory=FlowAction)
    rules: list[FlowRule] = Field(default_factory=list)
    callback_name: Unsupported = None
    dynamic_data_resources: Unsupported = None


def _resource(stream: Any, key_type: str) -> str:
    head = stream.request
    if head.frame is not None or head.path == "":  # RPC: the service
        return head.authority
    path = head.path
    if grpc.is_grpc(head.headers):
        return path.lstrip("/").partition("/")[0]
    if key_type == "URI":
        return path
    base, _, query = path.partition("?")
    return query if key_type == "ARG" else base


class FlowControl(StreamFilter):
    """MOSN's ``flowControlFilter``: per-resource limits on the shared buckets."""

    phase = Phase.AFTER_ROUTE

    def __init__(self, config: FlowControlConfig, context: BuildContext) -> None:
        self.enabled = config.global_switch
        self.monitor = config.monitor
        self.key_type = config.limit_key_type
        self.status = config.action.status
        self.body = config.action.body
        self.rules: dict[str, tuple[int, TokenBucket]] = {}
        for i, rule in enumerate(config.rules):
            tokens = max(1, int(rule.threshold))
            interval_ns = round(rule.statIntervalInMs * 1e6 * tokens / rule.threshold)
            self.rules[rule.resource] = (i, TokenBucket(tokens, tokens, interval_ns))
        self.limiter = RateLimiter("flowControlFilter", None, FlowControlConfig,
                                   lambda c, i: None, context, "flow_control")

    def on_request(self, stream: Any) -> FilterStatus:
        if not self.enabled:
            return _CONTINUE
        rule = self.rules.get(_resource(stream, self.key_type))
        if rule is None:
            return _CONTINUE
        limiter = self.limiter
        limiter.count("enabled")
        taken, _, _ = limiter.table.take(hash(("flow", rule[0])), rule[1])
        if taken:
            limiter.count("ok")
            return _CONTINUE
        limiter.count("rate_limited")
        if self.monitor:
            return _CONTINUE
        limiter.count("enforced")
        stream.response_flags.append(RATE_LIMITED)
        stream.send_local_reply(self.status, self.body, grpc_status=grpc.RESOURCE_EXHAUSTED)
        return _STOP


def build_flow_control(config: FlowControlConfig,
                       context: BuildContext) -> Callable[[], StreamFilter]:
    flow = FlowControl(config, context)
    return lambda: flow


@hookimpl
def mosn_stream_filters() -> list[Extension]:
    return [
        Extension("local_ratelimit", build_local, LocalRateLimitConfig,
                  description="token bucket rate limits shared by every worker (Envoy's)"),
        Extension("flowControlFilter", build_flow_control, FlowControlConfig,
                  description="MOSN's flow control (Sentinel flow rules) on the same buckets"),
    ]
