"""One request's way through the proxy, and back.

downstream stream -> stream filters -> route -> cluster -> host -> pool -> upstream
request, with per-route timeouts, retries (only while the request can be replayed),
direct responses, redirects, header rules and mirroring. Every downstream request
ends in a response or a reset; ``response_flags`` records why (Envoy's flags, for the
access log).

Each try upstream is counted while it is in flight (per host for least request, per
cluster for the ``max_requests`` and ``max_retries`` circuit breakers), and its
outcome is reported to the cluster's outlier detection.
"""

from __future__ import annotations

import logging
import math
import operator
import random
import time
from typing import TYPE_CHECKING, Any, Callable

from mosn.network.filter import FilterStatus
from mosn.network.tls import WithTlsVariables
from mosn.proxy import grpc
from mosn.proxy.observer import FAILED_PATH_NORMALIZATION, REDIRECTED_WITH_NORMALIZED_PATH
from mosn.proxy.path import PathAction, normalize
from mosn.proxy.stream_filter import LB_METADATA_NAMESPACE, Phase, StreamFilter
from mosn.router import Route, RouteRequest
from mosn.stream.types import (
    ClientStream,
    Headers,
    RequestHead,
    ResponseHead,
    ServerStream,
    StreamResetReason,
)
from mosn.upstream.lb import LbContext

if TYPE_CHECKING:
    from mosn.proxy.filter import ProxyContext
    from mosn.stream.pool import PendingRequest, PoolClient
    from mosn.upstream.cluster import Cluster, Host

# Envoy's response flags.
NO_ROUTE = "NR"
NO_CLUSTER = "NC"
NO_HEALTHY_UPSTREAM = "UH"
UPSTREAM_CONNECTION_FAILURE = "UF"
UPSTREAM_OVERFLOW = "UO"
UPSTREAM_REQUEST_TIMEOUT = "UT"
UPSTREAM_CONNECTION_TERMINATION = "UC"
UPSTREAM_REMOTE_RESET = "UR"
RETRY_LIMIT_EXCEEDED = "URX"
DOWNSTREAM_CONNECTION_TERMINATION = "DC"
DOWNSTREAM_PROTOCOL_ERROR = "DPE"
STREAM_IDLE_TIMEOUT = "SI"
STREAM_FILTER_ERROR = "SFE"
"""mosn's own flag: a stream filter raised, and the request was answered 500."""

log = logging.getLogger("mosn.proxy")
_phase_of = operator.attrgetter("phase")

BODY_BUFFER_LIMIT = 1024 * 1024
"""Request body bytes held while the upstream stream is not ready yet, before the
client is no longer read (Envoy's per-connection buffer limit)."""
RETRY_BUFFER_LIMIT = 1024 * 1024
"""Request body bytes kept for a retry; a larger request is not retried (Envoy: the
connection buffer limit)."""
RETRY_BACKOFF_BASE = 0.025
"""Seconds of the first retry backoff, doubled per retry, with full jitter (Envoy's)."""
REPLAY_BUFFER_LIMIT = 64 * 1024
"""Request body bytes kept, where no retry policy keeps more, to send a request again
that the upstream did not process (see ``_replay``): most API requests fit; a larger
one fails as it did before."""
MAX_REPLAYS = 3
"""Times one request is sent again because the upstream did not process it: a host
that refuses this often in a row takes nothing, and its failure is the answer."""
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
"""Methods whose request may be sent twice with the effect of once (RFC 9110 9.2.2)."""

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
    "upgrade", "trailer", "proxy-authenticate", "proxy-authorization",
})
"""Connection-specific fields (RFC 9110 7.6.1) a proxy must not forward; ``te:
trailers`` excepted (see ``strip_hop_by_hop``)."""

RETRY_ON = {
    "connect-failure": frozenset({"connect-failure", "5xx", "gateway-error"}),
    "reset": frozenset({"reset", "5xx", "gateway-error"}),
    "per-try-timeout": frozenset({"reset", "5xx", "gateway-error"}),
    "5xx": frozenset({"5xx"}),
    "gateway-error": frozenset({"5xx", "gateway-error"}),
    "retriable-status-codes": frozenset({"retriable-status-codes"}),
}
"""What went wrong -> the ``retry_on`` conditions that retry it (Envoy's semantics:
``5xx`` also covers connect failures, resets and timeouts; ``gateway-error`` is
502/503/504 and the same failures)."""

_STOP = FilterStatus.STOP
_EXHAUSTED = grpc.RESOURCE_EXHAUSTED
_CONTINUE = PathAction.CONTINUE


_UUID4_CLEAR = ~((0xF << 76) | (0x3 << 62))
_UUID4_SET = (0x4 << 76) | (0x2 << 62)


def request_id() -> str:
    """A random (version 4) UUID for ``x-request-id``, as Envoy makes one. Drawn from
    :mod:`random` (reseeded in each forked worker): ids need to be unique, not secret,
    and ``uuid.uuid4()`` costs a system call per request."""
    h = "%032x" % (random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def strip_hop_by_hop(headers: Headers, keep_upgrade: bool) -> None:
    items = headers.items()
    found = False
    named: set[str] | None = None  # what ``connection`` names beyond HOP_BY_HOP
    for k, v in items:
        if k in HOP_BY_HOP:
            found = True
            if k == "connection":
                for name in v.split(","):
                    name = name.strip().lower()
                    if name not in HOP_BY_HOP:
                        if named is None:
                            named = set()
                        named.add(name)
    if not found:  # no connection-specific field, so no ``connection`` naming others either
        return
    drop = HOP_BY_HOP if named is None else HOP_BY_HOP | named
    if keep_upgrade:
        drop = drop - _UPGRADE_FIELDS
        if not any(k in drop for k, _ in items):
            return
    # ``te: trailers`` says the client takes trailers, which gRPC needs end to end
    # over HTTP/2 (the one ``te`` HTTP/2 allows, RFC 9113 8.2.2): kept, as Envoy does.
    headers.retain(lambda k, v: k not in drop or (k == "te" and v.strip().lower() == "trailers"))


_UPGRADE_FIELDS = frozenset({"connection", "upgrade"})
"""Kept on a request that asks for an upgrade: the upstream is asked for it too."""


_FORWARDING_FIELDS = frozenset({
    "x-request-id", "x-forwarded-for", "x-forwarded-proto", "grpc-timeout"})
"""The request fields the proxy reads or adds to before routing."""
_NO_FIELDS: frozenset[str] = frozenset()


def _forwarding_fields(headers: Headers, stop_at: frozenset[str] = HOP_BY_HOP,
                       ) -> dict[str, str] | None:
    """One pass over a request's fields: the first value of each of
    ``_FORWARDING_FIELDS`` present, or None at a field of ``stop_at`` (a
    connection-specific one: those are stripped before anything is read)."""
    seen: dict[str, str] = {}
    for k, v in headers.items():
        if k in _FORWARDING_FIELDS:
            if k not in seen:
                seen[k] = v
        elif k in stop_at:
            return None
    return seen


def strip_forbidden_length(head: ResponseHead) -> None:
    """A 1xx or 204 response has no content and must not say it has a length (RFC
    9110 8.6): a ``content-length`` on one, from an upstream or a config, is dropped."""
    if head.status < 200 or head.status == 204:
        head.headers.remove("content-length")


class DownstreamStream:
    """A request from a client; the proxy's ``RequestHandler`` for the server codec,
    and what stream filters see."""

    __slots__ = (
        "ctx", "conn", "server_stream", "request", "request_complete", "route", "cluster",
        "host", "upstream", "response_flags", "response_started", "done", "upgrade",
        "_filters", "_filter_index", "_phase", "_body", "_body_size", "_retry_body",
        "_retry_ok", "_request_bytes", "_max_request_bytes", "_retries_left", "_tried",
        "_timer", "_read_disabled", "_shadows", "_trailers", "protocol", "_lb_context",
        "_retrying", "_replays", "observers", "start_time", "start_monotonic", "end_monotonic",
        "response_code", "bytes_sent", "response_monotonic", "response_headers", "span",
        "_held",
        "ended_by_reset", "_quiet", "dynamic_metadata", "_set_cookies", "_response_transforms",
        "mirror_copies", "mirror_every_host", "response_trailers", "_at_end",
        "_on_complete",
    )

    def __init__(self, ctx: "ProxyContext", conn: Any, server_stream: ServerStream,
                 protocol: str) -> None:
        self.ctx = ctx
        self.protocol = protocol
        self.conn = conn
        self.server_stream = server_stream
        self.request: RequestHead | None = None
        self.request_complete = False
        self.route: Route | None = None
        self.cluster: Cluster | None = None
        self.host: Host | None = None
        self.upstream: UpstreamRequest | None = None
        self.response_flags: list[str] = []
        self.response_started = False
        self.done = False
        self.upgrade = False
        try:
            filters = []
            for make in ctx.stream_filters:
                made = make()
                if type(made) is tuple:  # one config's filters at several phases (dsl)
                    filters += made
                else:
                    filters.append(made)
        except Exception as exc:  # reported when the request arrives, as any filter error
            filters = [_Broken(exc)]
        if len(filters) > 1:
            filters.sort(key=_phase_of)  # by phase; within one, in the config's order
        self._filters: list[StreamFilter] = filters
        self._filter_index = 0
        self._phase = Phase.BEFORE_ROUTE
        self._body: list[bytes] = []  # request body waiting for the upstream stream
        self._body_size = 0
        self._retry_body: list[bytes] = []  # the whole request body, for a retry
        self._retry_ok = True
        self._held = 0
        """Bytes of ``_body`` and ``_retry_body`` held against the buffer budget."""
        self._request_bytes = 0
        self._max_request_bytes = ctx.max_request_bytes
        self._retries_left = 0
        self._tried: list[Host] = []
        self._timer: Any = None
        self._read_disabled = False
        self._shadows: list[ShadowRequest] = []
        self._trailers: Headers | None = None
        self._lb_context: LbContext | None = None
        self._set_cookies: list[str] = []
        """``Set-Cookie`` values for the cookies the route's hash policy made."""
        self._retrying = False
        self._replays = 0
        self.observers = ctx.observers
        self.start_time = time.time()
        """Wall-clock seconds when the stream began (for the access log)."""
        self.start_monotonic = time.monotonic()
        self.end_monotonic = 0.0
        self.response_code = 0
        """The status sent downstream (HTTP-like for RPC); 0 until a response began."""
        self.bytes_sent = 0
        """Response body bytes sent downstream (an RPC response: its frame)."""
        self.response_monotonic = 0.0
        """``time.monotonic()`` when the response began (for the access log)."""
        self.response_headers: Headers | None = None
        """The response's headers as sent downstream; None until a response began."""
        self.span: Any = None
        """A tracer's span for this stream, if one is kept."""
        self.ended_by_reset = False
        """The stream ended without a complete response: the client went away, or the
        proxy reset it (an upstream failure or timeout after the response began)."""
        self._quiet = 0
        """Idle sweeps since the stream last moved a byte either way."""
        self.dynamic_metadata: dict[str, Any] | None = None
        """What stream filters tell later ones, by namespace (Envoy's dynamic
        metadata: ``jwt_authn`` puts verified claims here for ``rbac``)."""
        self._response_transforms: list[Callable[[bytes, bool], bytes]] | None = None
        self.response_trailers: Headers | None = None
        """The response's trailers as sent downstream (gRPC's status is there)."""
        self._at_end: list[Callable[[Any], None]] | None = None
        self._on_complete: Callable[[Any], None] | None = None
        self.mirror_copies = 1
        """Copies of the request each sampled mirror policy of the route sends (MOSN's
        ``mirror`` filter's ``amplification``), each to a host its balancer chooses."""
        self.mirror_every_host = False
        """Each sampled mirror policy sends one copy to every healthy host of its
        cluster instead (MOSN's ``broadcast``)."""
        if ctx.streams is not None:
            ctx.track(self)

    def limit_request_body(self, limit: int) -> bool:
        """A stream filter's request body limit (MOSN's ``payload_limit``): the body
        may not pass ``limit`` bytes, nor any smaller limit the proxy or the route
        set; past it the request is answered 413, as ``max_request_bytes``. True if
        the bytes received already passed it (the filter answers then)."""
        current = self._max_request_bytes
        self._max_request_bytes = limit if current is None else min(current, limit)
        return self._request_bytes > self._max_request_bytes

    def transform_response_body(self, transform: Callable[[bytes, bool], bytes]) -> None:
        """A stream filter's change of the response body (from its ``on_response``):
        ``transform(data, end_stream)`` gets each piece from upstream and returns
        what to send instead (called with ``end_stream`` True once, at the end, so it
        can write what it kept). The filter fixes the response's framing headers
        itself (drops ``content-length`` when the length changes)."""
        if self._response_transforms is None:
            self._response_transforms = []
        self._response_transforms.append(transform)

    def at_end(self, callback: Callable[[Any], None]) -> None:
        """Call ``callback(stream)`` when the stream ends (after the access log's
        observers), however it ends: a stream filter's per-request accounting."""
        if self._at_end is None:
            self._at_end = []
        self._at_end.append(callback)

    def when_request_complete(self, callback: Callable[[Any], None]) -> None:
        """Call ``callback(stream)`` once the whole request has arrived (at once if it
        has): a filter that needs the body (a transcoder) returns STOP, then reads
        :meth:`request_body` and calls :meth:`continue_request`. The body is held up
        to the proxy's buffer limit: the filter bounds it with
        :meth:`limit_request_body` below that."""
        if self.request_complete:
            callback(self)
        else:
            self._on_complete = callback

    def request_body(self) -> bytes:
        """The request body received and not yet sent upstream (all of it, for a
        filter that held the request until it was complete)."""
        return b"".join(self._body)

    def _request_completed(self) -> None:
        callback, self._on_complete = self._on_complete, None
        if callback is not None and not self.done:
            try:
                callback(self)
            except Exception:  # as a filter failing in on_request
                log.exception("a stream filter's request callback failed")
                self.send_local_reply(500, "filter error\n")

    def _transformed(self, data: bytes, end_stream: bool) -> bytes:
        for transform in self._response_transforms or ():
            data = transform(data, end_stream)
        return data

    @property
    def bytes_received(self) -> int:
        """Request body bytes received from downstream."""
        return self._request_bytes

    # -- RequestHandler (the server codec calls these) ---------------------------------

    def on_headers(self, head: RequestHead, end_stream: bool) -> None:
        self.request = head
        self.request_complete = end_stream
        action = _CONTINUE if head.frame is not None else self._http_request_headers(head)
        for hook in self.observers.request:
            hook(self)
        if action is _CONTINUE:
            self.continue_request()
        else:
            self._refuse_path(action)

    def _http_request_headers(self, head: RequestHead) -> PathAction:
        """The proxy's changes to an HTTP request's head (path, forwarding fields);
        what to do with the request, as its path's normalization says."""
        action = _CONTINUE
        if head.method != "CONNECT":
            ctx = self.ctx
            head.path, action = normalize(head.path, ctx.normalize_path, ctx.merge_slashes,
                                          ctx.escaped_slashes)
        headers = head.headers
        seen = _forwarding_fields(headers)
        if seen is None:  # a connection-specific field: stripped first, then looked at again
            self.upgrade = "upgrade" in headers
            strip_hop_by_hop(headers, self.upgrade)
            seen = _forwarding_fields(headers, _NO_FIELDS)
            assert seen is not None
        if "x-request-id" not in seen:
            headers.add("x-request-id", request_id())
        peer = self.conn.remote_address
        if isinstance(peer, tuple):
            xff = seen.get("x-forwarded-for")
            if xff is None:
                headers.add("x-forwarded-for", peer[0])
            else:  # every earlier one replaced by one at the end, as ``set`` does
                headers.set("x-forwarded-for", f"{xff}, {peer[0]}" if xff else peer[0])
        if "x-forwarded-proto" not in seen:
            headers.add("x-forwarded-proto", head.scheme)
        grpc_timeout = seen.get("grpc-timeout")
        if grpc_timeout is not None and head.timeout is None:
            head.timeout = grpc.parse_timeout(grpc_timeout)
        return action

    def _refuse_path(self, action: PathAction) -> None:
        """A path that normalization refused (400), or that the client is asked to
        request again unescaped (307 to the normalized path; a gRPC client cannot
        follow a redirect, so it gets the 400's INTERNAL, as from Envoy)."""
        assert self.request is not None
        if action is PathAction.REDIRECT and not grpc.is_grpc(self.request.headers):
            self.ctx.count(REDIRECTED_WITH_NORMALIZED_PATH)
            self.send_local_reply(307, "", [("location", self.request.path)])
        else:
            self.ctx.count(FAILED_PATH_NORMALIZATION)
            self.send_local_reply(400, "path normalization failed\n")

    def on_data(self, data: bytes, end_stream: bool) -> None:
        if self.done:
            return
        self._quiet = 0
        self._request_bytes += len(data)
        limit = self._max_request_bytes
        if limit is not None and self._request_bytes > limit and not self.upgrade:
            self.send_local_reply(413, "request body too large\n", grpc_status=_EXHAUSTED)
            return
        if self._retry_ok:
            self._retry_body.append(data)
            self._hold(len(data))
            limit = REPLAY_BUFFER_LIMIT if self.route is not None and not self._retries_left \
                else RETRY_BUFFER_LIMIT
            if self._request_bytes > limit:
                self._retry_ok = False
                self._hold(-sum(len(b) for b in self._retry_body))
                self._retry_body = []
        if end_stream:
            self.request_complete = True
        upstream = self.upstream
        if upstream is not None and upstream.stream is not None:
            upstream.stream.send_data(data, end_stream)
        else:
            self._body.append(data)
            self._body_size += len(data)
            self._hold(len(data))
            if self._body_size > BODY_BUFFER_LIMIT and not self._read_disabled:
                self._read_disabled = True
                self.server_stream.read_disable(True)
        for shadow in self._shadows:
            shadow.send_data(data, end_stream)
        if end_stream and self._timer is None and self.upstream is not None:
            self._start_timer()
        if end_stream and self._on_complete is not None:
            self._request_completed()

    def on_trailers(self, trailers: Headers) -> None:
        self.request_complete = True
        self._quiet = 0
        upstream = self.upstream
        if upstream is not None and upstream.stream is not None:
            upstream.stream.send_trailers(trailers)
        else:
            self._trailers = trailers
        if self._on_complete is not None:
            self._request_completed()

    def on_reset(self, reason: StreamResetReason) -> None:
        """The client went away (or broke the protocol) before the stream ended."""
        if self.done:
            return
        self.response_flags.append(DOWNSTREAM_PROTOCOL_ERROR if reason is
                                   StreamResetReason.PROTOCOL_ERROR
                                   else DOWNSTREAM_CONNECTION_TERMINATION)
        self.ended_by_reset = True
        self._finish(reset_upstream=True)

    def on_above_write_buffer_high_watermark(self) -> None:
        upstream = self.upstream
        if upstream is not None and upstream.stream is not None:
            upstream.stream.read_disable(True)

    def on_below_write_buffer_low_watermark(self) -> None:
        upstream = self.upstream
        if upstream is not None and upstream.stream is not None:
            upstream.stream.read_disable(False)

    def _hold(self, delta: int) -> None:
        """Request body bytes held here (waiting for the upstream, or kept for a retry:
        a chunk in both counts twice) count against the worker's buffer budget."""
        self._held += delta
        self.conn.hold(delta)

    # -- the request's way: filters, route, host, upstream -----------------------------

    def continue_request(self) -> None:
        """Run the filters of each phase and the steps between them; a filter that
        returned STOP calls this again to go on."""
        filters = self._filters
        while not self.done:
            while self._filter_index < len(filters):
                f = filters[self._filter_index]
                if f.phase is not self._phase:
                    break
                self._filter_index += 1
                try:
                    status = f.on_request(self)
                except Exception:
                    self._filter_failed(f, "on_request")
                    return
                if status is _STOP or self.done:
                    return
            if self._phase is Phase.BEFORE_ROUTE:
                if not self._route():
                    return
                self._phase = Phase.AFTER_ROUTE
            elif self._phase is Phase.AFTER_ROUTE:
                if not self._choose_host():
                    return
                self._phase = Phase.AFTER_CHOOSE_HOST
            else:
                self._send_upstream()
                return

    def _route(self) -> bool:
        head = self.request
        assert head is not None
        table = self.ctx.route_table
        tls = self.conn.tls
        headers = head.headers if tls is None else WithTlsVariables(head.headers, tls)
        route = table.route(RouteRequest(head.authority, head.path, head.method,
                                         headers, head.scheme, self))
        if route is None:
            self.response_flags.append(NO_ROUTE)
            self.send_local_reply(404, "no route\n")
            return False
        self.route = route
        if route.direct_response is not None:
            self.send_local_reply(route.direct_response.status, route.direct_response.body,
                                  content_type="text/plain; charset=utf-8")
            return False
        if route.redirect is not None:
            location = route.redirect.location(RouteRequest(
                head.authority, head.path, head.method, head.headers, head.scheme))
            self.send_local_reply(route.redirect.code, "", [("location", location)])
            return False
        self.cluster = self.ctx.clusters.get(route.cluster_name(head.headers, stream=self))
        if self.cluster is None:
            self.response_flags.append(NO_CLUSTER)
            self.send_local_reply(503, "no cluster\n")
            return False
        criteria = route.metadata_match_for(self.cluster.name)
        if route.hash_policy is not None or criteria or self.cluster.lb_uses_downstream:
            key = None
            if route.hash_policy is not None:
                key, self._set_cookies = route.hash_policy.hash_key(
                    head.headers, self.conn.remote_address, self.conn.local_address)
            self._lb_context = LbContext(key, criteria or None, self.conn, head.headers)
        route.apply_request_headers(head.headers, self)
        head.path = route.rewrite_path(head.path)
        head.authority = route.rewrite_host(head.authority, head.headers)
        if route.max_request_bytes is not None:
            self._max_request_bytes = route.max_request_bytes
            if self._request_bytes > route.max_request_bytes:
                self.send_local_reply(413, "request body too large\n", grpc_status=_EXHAUSTED)
                return False
        policy = route.retry_policy
        if policy is not None and not self.upgrade:
            self._retries_left = policy.num_retries
        return True

    def _choose_host(self) -> bool:
        assert self.cluster is not None
        context = self._lb_context
        lb_metadata = (self.dynamic_metadata.get(LB_METADATA_NAMESPACE)
                       if self.dynamic_metadata else None)
        if lb_metadata:  # a filter's subset criteria (header_to_metadata) over the route's
            if context is None:
                head = self.request
                context = self._lb_context = LbContext(
                    None, None, self.conn, head.headers if head is not None else None)
            context.metadata_match = {**(context.metadata_match or {}), **lb_metadata}
        host = self.cluster.choose_host(self._tried, context)
        if host is None and self._tried:
            host = self.cluster.choose_host((), context)  # every host was tried: any will do
        if host is None:
            self.response_flags.append(NO_HEALTHY_UPSTREAM)
            self.send_local_reply(503, "no healthy upstream\n")
            return False
        self.host = host
        return True

    def _send_upstream(self) -> None:
        cluster, host = self.cluster, self.host
        assert cluster is not None and host is not None and self.route is not None
        self._tried.append(host)
        if cluster.max_requests and cluster.store.total(
                cluster.more.upstream_rq_active) >= cluster.max_requests:
            cluster.count(cluster.more.upstream_rq_pending_overflow)
            self.response_flags.append(UPSTREAM_OVERFLOW)
            self.send_local_reply(503, _FAILURE_BODY + "overflow\n")
            return
        protocol = self.ctx.upstream_protocol(self.route, self.protocol)
        pool = self.ctx.pool(cluster, host, protocol)
        upstream = self.upstream = UpstreamRequest(self, cluster, host, self._retrying)
        self._retrying = False
        for hook in self.observers.upstream_request:
            hook(self, upstream)
        policy = self.route.retry_policy
        if policy is not None and policy.per_try_timeout and not self.upgrade:
            upstream.try_timer = self.conn.loop.call_later(
                policy.per_try_timeout, self._on_timeout, True)
        upstream.pending = pool.new_stream(upstream, upstream)
        if self.request_complete and self._timer is None and not self.done:
            self._start_timer()
        if self.route.mirror_policies and not self._shadows and not self.upgrade:
            self.start_mirrors()

    # -- upstream events -----------------------------------------------------------------

    def on_upstream_ready(self, upstream: "UpstreamRequest") -> None:
        head = self.request
        assert head is not None and upstream.stream is not None
        body, self._body = self._body, []
        self._hold(-self._body_size)
        self._body_size = 0
        stream = upstream.stream
        if self.route is not None and self.route.auto_host_rewrite and upstream.host.hostname:
            head.authority = upstream.host.hostname
        stream.send_headers(head, self.request_complete and not body and self._trailers is None)
        for i, chunk in enumerate(body):
            last = i == len(body) - 1 and self.request_complete and self._trailers is None
            stream.send_data(chunk, last)
        if self._trailers is not None:
            stream.send_trailers(self._trailers)
        if self._read_disabled:
            self._read_disabled = False
            self.server_stream.read_disable(False)

    def on_upstream_failure(self, upstream: "UpstreamRequest", reason: StreamResetReason,
                            flag: str, status: int) -> None:
        """The upstream request ended before its response began."""
        if upstream is not self.upstream or self.done:
            return
        if self._replay(reason):
            return
        condition = ("connect-failure" if reason is StreamResetReason.CONNECTION_FAILURE
                     else "reset")
        if reason is not StreamResetReason.OVERFLOW and self._retry(condition):
            return
        self.response_flags.append(flag)
        self.send_local_reply(status, _FAILURE_BODY + reason.value + "\n")

    def on_upstream_headers(self, upstream: "UpstreamRequest", head: ResponseHead,
                            end_stream: bool) -> None:
        if upstream is not self.upstream or self.done:
            return
        self._quiet = 0
        if head.status >= 500:
            upstream.count_5xx()
        outlier = upstream.host.outlier
        if outlier is not None:
            outlier.put_status(head.status)
        policy = self.route.retry_policy if self.route else None
        if policy is not None:
            if head.status in policy.retriable_status_codes:
                condition = "retriable-status-codes"
            elif head.status >= 500:
                condition = "gateway-error" if head.status in (502, 503, 504) else "5xx"
            else:
                condition = ""
            if condition and self._retry(condition):
                upstream.reset()
                return
        if head.frame is None:
            strip_forbidden_length(head)
            if head.status != 101:
                strip_hop_by_hop(head.headers, False)
        if self.route is not None:
            self.route.apply_response_headers(head.headers, self)
        for cookie in self._set_cookies:  # made for the hash policy (cookie ttl)
            head.headers.add("set-cookie", cookie)
        for f in self._filters:
            try:
                f.on_response(self, head)
            except Exception:  # nothing of the response was sent: answer 500 instead
                self._filter_failed(f, "on_response")
                return
        self.response_started = True
        if self._retry_ok:  # too late to send the request again: its body goes
            self._retry_ok = False
            self._hold(-sum(len(b) for b in self._retry_body))
            self._retry_body = []
        if head.frame is not None:
            self.bytes_sent += len(head.frame.data)  # an RPC response is forwarded as its frame
        elif head.status == 101 and self._timer is not None:
            self._timer.cancel()  # a tunnel has no response end to wait for
            self._timer = None
        self.response_code = head.status
        self.response_headers = head.headers
        self.response_monotonic = time.monotonic()
        if end_stream and self._response_transforms:
            tail = self._transformed(b"", True)  # an empty body changed: gzip's empty stream
            self.server_stream.send_headers(head, not tail)
            if tail:
                self.bytes_sent += len(tail)
                self.server_stream.send_data(tail, True)
            self._finish(reset_upstream=False)
            return
        self.server_stream.send_headers(head, end_stream)
        if end_stream:
            self._finish(reset_upstream=False)

    def on_upstream_data(self, data: bytes, end_stream: bool) -> None:
        if self.done:
            return
        self._quiet = 0
        if self._response_transforms:
            data = self._transformed(data, end_stream)
            if not data and not end_stream:
                return
        self.bytes_sent += len(data)
        self.server_stream.send_data(data, end_stream)
        if end_stream:
            self._finish(reset_upstream=False)

    def on_upstream_trailers(self, trailers: Headers) -> None:
        if self.done:
            return
        if self._response_transforms:
            tail = self._transformed(b"", True)
            if tail:
                self.bytes_sent += len(tail)
                self.server_stream.send_data(tail, False)
        self.response_trailers = trailers
        self.server_stream.send_trailers(trailers)
        self._finish(reset_upstream=False)

    def on_upstream_reset(self, upstream: "UpstreamRequest", reason: StreamResetReason) -> None:
        if upstream is not self.upstream or self.done:
            return
        if not self.response_started:
            flag = (UPSTREAM_REMOTE_RESET if reason is StreamResetReason.REMOTE_RESET
                    else UPSTREAM_CONNECTION_TERMINATION)
            self.on_upstream_failure(upstream, reason, flag, 502)
            return
        self.response_flags.append(UPSTREAM_REMOTE_RESET if reason is
                                   StreamResetReason.REMOTE_RESET
                                   else UPSTREAM_CONNECTION_TERMINATION)
        self._reset_downstream(reason, reset_upstream=False)

    # -- retries and timeouts ------------------------------------------------------------

    def idle_sweep(self) -> int:
        """One more sweep of the proxy's streams: how many have passed since this
        stream last moved a byte."""
        self._quiet += 1
        return self._quiet

    def on_idle_timeout(self) -> None:
        """``stream_idle_timeout`` expired (Envoy's): 408 if the response has not
        begun (a timeout, so gRPC's DEADLINE_EXCEEDED; the RPC engine answers the
        protocol's timeout status), else the stream is reset."""
        if self.done:
            return
        self.response_flags.append(STREAM_IDLE_TIMEOUT)
        self.send_local_reply(408, "stream timeout\n", grpc_status=grpc.DEADLINE_EXCEEDED)

    def _replay(self, reason: StreamResetReason) -> bool:
        """Send the request again at once, on another connection, if the upstream did
        not process it: HTTP/2's REFUSED_STREAM and the streams above a GOAWAY's last
        stream id (RFC 9113 8.7), or an idempotent request whose reused HTTP/1.1
        connection closed before any byte of its response (RFC 9110 9.2.2). Not a
        retry: it needs no retry policy and uses none up; MAX_REPLAYS at most."""
        if reason is StreamResetReason.CLOSED_BEFORE_RESPONSE:
            if self.request is None or self.request.method not in IDEMPOTENT_METHODS:
                return False
        elif reason is not StreamResetReason.REFUSED_STREAM:
            return False
        if self._replays >= MAX_REPLAYS or not self._retry_ok or self.response_started \
                or self.upgrade or self.cluster is None:
            return False
        self._replays += 1
        self.cluster.count(self.cluster.more.upstream_rq_replay)
        old = self.upstream
        self.upstream = None
        if old is not None:
            old.detach()
        self._hold(-self._body_size)
        self._body = list(self._retry_body)
        self._body_size = sum(len(b) for b in self._body)
        self._hold(self._body_size)
        self._send_upstream()
        return True

    def _retry(self, condition: str) -> bool:
        """Start a retry if the policy covers ``condition`` and the request can be replayed."""
        policy = self.route.retry_policy if self.route else None
        if policy is None or self.response_started or not self._retry_ok:
            return False
        if not RETRY_ON[condition] & policy.retry_on:
            return False
        if self._retries_left <= 0:
            self.response_flags.append(RETRY_LIMIT_EXCEEDED)
            return False
        cluster = self.cluster
        if cluster is not None:
            more = cluster.more
            if cluster.max_retries and cluster.store.total(
                    more.upstream_rq_retry_active) >= cluster.max_retries:
                cluster.count(more.upstream_rq_retry_overflow)
                return False
            cluster.count(more.upstream_rq_retry)
            # Held from now (Envoy's retry budget counts scheduled retries); the retry's
            # upstream request takes it over, or _finish gives it back.
            cluster.store.values[more.upstream_rq_retry_active] += 1  # type: ignore[index]
            self._retrying = True
        self._retries_left -= 1
        attempt = policy.num_retries - self._retries_left
        old = self.upstream
        self.upstream = None
        if old is not None:
            old.detach()
        delay = random.uniform(0, RETRY_BACKOFF_BASE * (2 ** (attempt - 1)))
        self.conn.loop.call_later(delay, self._do_retry)
        return True

    def _do_retry(self) -> None:
        if self.done:
            return
        self._hold(-self._body_size)
        self._body = list(self._retry_body)
        self._body_size = sum(len(b) for b in self._body)
        self._hold(self._body_size)
        if self._choose_host():
            self._send_upstream()

    def _start_timer(self) -> None:
        """The route timeout: from the complete request to the complete response."""
        route = self.route
        timeout = route.timeout if route is not None and route.timeout is not None \
            else self.ctx.timeout
        asked = self.request.timeout if self.request is not None else None
        if asked and asked < timeout:
            timeout = asked
        if timeout != math.inf and not self.upgrade:  # inf: the route's timeout is disabled
            # The connection's loop, not asyncio.get_running_loop(): on CPython 3.11
            # that checks the process id with a getpid system call on every call.
            self._timer = self.conn.loop.call_later(timeout, self._on_timeout, False)

    def _on_timeout(self, per_try: bool) -> None:
        if self.done:
            return
        if self.upstream is not None and not self.response_started:
            self.upstream.timed_out()
        if per_try:
            if self.upstream is not None:
                self.upstream.reset()
            if self._retry("per-try-timeout"):
                return
        else:
            self._timer = None
        self.response_flags.append(UPSTREAM_REQUEST_TIMEOUT)
        if self.response_started:
            self._reset_downstream(StreamResetReason.LOCAL_RESET)
        else:
            self.send_local_reply(504, "upstream request timeout\n",
                                  grpc_status=grpc.DEADLINE_EXCEEDED)

    # -- mirroring -------------------------------------------------------------------------

    def start_mirrors(self) -> int:
        """Send the route's mirrored copies now (once a stream; the proxy calls it as
        the request goes upstream): ``mirror_copies`` per sampled policy, or one per
        healthy host with ``mirror_every_host``. Returns how many were sent."""
        assert self.route is not None and self.request is not None
        if self._shadows:
            return 0
        for policy in self.route.mirror_policies:
            if not policy.sampled():
                continue
            cluster = self.ctx.clusters.get(policy.cluster)
            if cluster is None:
                continue
            if self.mirror_every_host:
                hosts = [h for h in cluster.hosts if h.healthy]
            else:
                hosts = [cluster.choose_host() for _ in range(self.mirror_copies)]
            for host in hosts:
                if host is not None:
                    self._mirror_to(cluster, host)
        return len(self._shadows)

    def _mirror_to(self, cluster: Cluster, host: Host) -> None:
        head = self.request
        assert head is not None and self.route is not None
        shadow_head = RequestHead(head.method, head.path, _shadow_authority(head.authority),
                                  head.scheme, head.headers.copy(), head.version,
                                  frame=head.frame)  # an RPC copy is the same frame
        shadow = ShadowRequest(shadow_head, self.request_complete)
        pool = self.ctx.pool(cluster, host, self.ctx.upstream_protocol(self.route, self.protocol))
        shadow.pending = pool.new_stream(shadow, shadow)
        if not shadow.abandoned:
            self._shadows.append(shadow)

    # -- answering and ending ------------------------------------------------------------

    def send_local_reply(self, status: int, body: str | bytes = b"",
                         headers: list[tuple[str, str]] | None = None,
                         content_type: str = "text/plain",
                         grpc_status: int | None = None) -> None:
        """Answer the client from the proxy (an error, a direct response, a redirect).
        A gRPC request gets it as a gRPC status instead: ``grpc_status``, or the one
        ``status`` maps to, with the body as its message."""
        if self.done:
            return
        if self.response_started:
            self._reset_downstream(StreamResetReason.LOCAL_RESET)
            return
        data = body.encode() if isinstance(body, str) else body
        head = self.request
        if head is not None and head.frame is None and grpc.is_grpc(head.headers):
            if grpc_status is None:
                grpc_status = grpc.grpc_status(status)
            message = data.decode("utf-8", "replace").strip()
            fields = grpc.trailers_only(grpc_status, message)
            status, data = 200, b""
        else:
            fields = [("content-type", content_type), ("content-length", str(len(data)))]
        if not self.request_complete:
            fields.append(("connection", "close"))  # the rest of the request is not read
        fields += headers or []
        head = ResponseHead(status, Headers(fields))
        strip_forbidden_length(head)
        for f in self._filters:
            try:
                f.on_response(self, head)
            except Exception:
                self._filter_failed(f, "on_response")
                return
        self.response_started = True
        self.response_code = status
        self.response_headers = head.headers
        self.response_monotonic = time.monotonic()
        if self._response_transforms:  # a filter changes every body, the proxy's own too
            data = self._transformed(data, True)
        self.bytes_sent += len(data)
        self.server_stream.send_headers(head, not data)
        if data:
            self.server_stream.send_data(data, True)
        self._finish(reset_upstream=True)

    def _reset_downstream(self, reason: StreamResetReason, reset_upstream: bool = True) -> None:
        """End a stream whose response began and cannot complete: the client sees it
        cut (HTTP/1: the connection closed; HTTP/2: RST_STREAM), never a whole response."""
        self.ended_by_reset = True
        self.server_stream.reset(reason)
        self._finish(reset_upstream=reset_upstream)

    def _filter_failed(self, f: StreamFilter, where: str) -> None:
        """A stream filter raised: the client gets a 500 (an RPC client, its protocol's
        error reply), no filter runs again on this stream, and the stream is flagged
        (counted per listener and protocol as ``downstream_rq_filter_error``)."""
        log.warning("stream filter %s raised in %s", type(f).__name__, where, exc_info=True)
        self._filters = []
        if STREAM_FILTER_ERROR not in self.response_flags:
            self.response_flags.append(STREAM_FILTER_ERROR)
        self.send_local_reply(500, "stream filter error\n")

    def _finish(self, reset_upstream: bool) -> None:
        if self.done:
            return
        self.done = True
        streams = self.ctx.streams
        if streams is not None:
            streams.discard(self)
        if self._retrying and self.cluster is not None:  # a retry never started
            self._retrying = False
            self.cluster.store.values[self.cluster.more.upstream_rq_retry_active] -= 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        upstream = self.upstream
        if upstream is not None:
            if reset_upstream:
                upstream.reset()
            upstream.detach()
        for shadow in self._shadows:
            shadow.release()
        if self._read_disabled:
            self._read_disabled = False
            self.server_stream.read_disable(False)
        if self._held:
            self._hold(-self._held)
        self.end_monotonic = time.monotonic()
        for hook in self.observers.stream_end:
            hook(self)
        if self._at_end is not None:
            for callback in self._at_end:
                try:
                    callback(self)
                except Exception:  # a filter's accounting must not break the proxy
                    log.exception("a stream filter's end-of-stream callback failed")


class _Broken(StreamFilter):
    """Stands for the filters of a stream whose factory raised: fails the request."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def on_request(self, stream: Any) -> FilterStatus:
        raise self.error


_FAILURE_BODY = "upstream connect error or disconnect/reset before headers. reset reason: "
"""Envoy's words for a failure before the response began, followed by the reason."""


def _shadow_authority(authority: str) -> str:
    """Envoy marks mirrored requests by appending ``-shadow`` to the host."""
    host, sep, port = authority.rpartition(":")
    if sep and port.isdigit():
        return f"{host}-shadow:{port}"
    return f"{authority}-shadow"


class UpstreamRequest:
    """One try of a request upstream: the pool's callbacks and the client codec's
    ``ResponseHandler``, reporting to its downstream stream. Counted as active (on its
    host and cluster) from creation until it ends or is abandoned; a retry also holds
    its place in the ``max_retries`` circuit breaker until then."""

    __slots__ = ("downstream", "stream", "pending", "client", "ended", "try_timer",
                 "cluster", "host", "retry", "live", "start_monotonic", "response_code",
                 "span", "reset_reason")

    def __init__(self, downstream: DownstreamStream, cluster: "Cluster", host: "Host",
                 retry: bool = False) -> None:
        self.downstream: DownstreamStream | None = downstream
        self.stream: ClientStream | None = None
        self.pending: PendingRequest | None = None
        self.client: PoolClient | None = None
        self.ended = False
        self.try_timer: Any = None
        self.cluster = cluster
        self.host = host
        self.retry = retry
        self.live = True
        self.start_monotonic = time.monotonic()
        self.response_code = 0
        """The status this try got from upstream; 0 until (unless) it got one."""
        self.span: Any = None
        """A tracer's span for this try, if one is kept."""
        self.reset_reason: StreamResetReason | None = None
        """Why the upstream ended this try without a complete response (a reset, or
        the connection lost: before or after the response began); None otherwise."""
        host.active_requests += 1
        v, more, hs = cluster.store.values, cluster.more, host.stats
        v[cluster.more.upstream_rq_total] += 1  # type: ignore[index]
        v[more.upstream_rq_active] += 1  # type: ignore[index]
        v[hs.rq_total] += 1  # type: ignore[index, union-attr]
        v[hs.rq_active] += 1  # type: ignore[index, union-attr]

    def release(self) -> None:
        """No longer in flight (ended, failed, reset or abandoned); once."""
        if not self.live:
            return
        self.live = False
        host, cluster = self.host, self.cluster
        host.active_requests -= 1
        if host.response_times is not None:  # LB_PEAK_EWMA's
            host.response_times.observe(time.monotonic() - self.start_monotonic,
                                        self.response_code)
        v, more = cluster.store.values, cluster.more
        v[more.upstream_rq_active] -= 1  # type: ignore[index]
        v[host.stats.rq_active] -= 1  # type: ignore[index, union-attr]
        if self.retry:
            v[more.upstream_rq_retry_active] -= 1  # type: ignore[index]
        downstream = self.downstream
        if downstream is not None:
            for hook in downstream.observers.upstream_end:
                hook(downstream, self)

    def count_5xx(self) -> None:
        v = self.cluster.store.values
        v[self.cluster.more.upstream_rq_5xx] += 1  # type: ignore[index]
        v[self.host.stats.rq_error] += 1  # type: ignore[index, union-attr]

    def _failed(self, reason: StreamResetReason) -> None:
        """A failure before any response: a gateway failure for outlier detection."""
        if reason is StreamResetReason.OVERFLOW or reason is StreamResetReason.LOCAL_RESET:
            return
        v = self.cluster.store.values
        v[self.host.stats.rq_error] += 1  # type: ignore[index, union-attr]
        outlier = self.host.outlier
        if outlier is not None:
            outlier.put_gateway_failure()

    def timed_out(self) -> None:
        if self.live:
            self._failed(StreamResetReason.CONNECTION_TERMINATION)

    # pool callbacks

    def on_pool_ready(self, stream: ClientStream, client: "PoolClient") -> None:
        self.pending = None
        self.stream = stream
        self.client = client
        if self.downstream is None:
            self.reset()
            return
        self.downstream.on_upstream_ready(self)

    def on_pool_failure(self, reason: StreamResetReason) -> None:
        self.pending = None
        self._failed(reason)
        self.release()
        if self.downstream is not None:
            flag = UPSTREAM_OVERFLOW if reason is StreamResetReason.OVERFLOW \
                else UPSTREAM_CONNECTION_FAILURE
            self.downstream.on_upstream_failure(self, reason, flag, 503)

    # ResponseHandler

    def on_headers(self, head: ResponseHead, end_stream: bool) -> None:
        self.response_code = head.status
        if end_stream:
            self.ended = True
            self.release()
        if self.try_timer is not None:
            self.try_timer.cancel()
            self.try_timer = None
        if self.downstream is not None:
            self.downstream.on_upstream_headers(self, head, end_stream)
        elif self.host.outlier is not None:
            self.host.outlier.put_status(head.status)

    def on_data(self, data: bytes, end_stream: bool) -> None:
        if end_stream:
            self.ended = True
            self.release()
        if self.downstream is not None:
            self.downstream.on_upstream_data(data, end_stream)

    def on_trailers(self, trailers: Headers) -> None:
        self.ended = True
        self.release()
        if self.downstream is not None:
            self.downstream.on_upstream_trailers(trailers)

    def on_reset(self, reason: StreamResetReason) -> None:
        self.ended = True
        if self.live:
            self.reset_reason = reason
            self._failed(reason)
        self.release()
        if self.downstream is not None:
            self.downstream.on_upstream_reset(self, reason)

    def on_above_write_buffer_high_watermark(self) -> None:
        if self.downstream is not None:
            self.downstream.server_stream.read_disable(True)

    def on_below_write_buffer_low_watermark(self) -> None:
        if self.downstream is not None:
            self.downstream.server_stream.read_disable(False)

    # the downstream's controls

    def reset(self) -> None:
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None
        if self.stream is not None and not self.ended:
            self.ended = True
            self.stream.reset(StreamResetReason.LOCAL_RESET)
        self.release()

    def detach(self) -> None:
        """Stop reporting to the downstream (it ended, or this try was replaced)."""
        self.release()
        self.downstream = None
        if self.try_timer is not None:
            self.try_timer.cancel()
            self.try_timer = None
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None


class ShadowRequest:
    """A mirrored copy of a request: sent to the shadow cluster, its response dropped.
    It never holds up the original: if it cannot keep up it is abandoned."""

    __slots__ = ("head", "stream", "pending", "body", "size", "complete", "abandoned",
                 "released")

    def __init__(self, head: RequestHead, complete: bool) -> None:
        self.head = head
        self.stream: ClientStream | None = None
        self.pending: PendingRequest | None = None
        self.body: list[bytes] = []
        self.size = 0
        self.complete = complete
        self.abandoned = False
        self.released = False

    def send_data(self, data: bytes, end_stream: bool) -> None:
        if self.abandoned:
            return
        if end_stream:
            self.complete = True
        if self.stream is not None:
            self.stream.send_data(data, end_stream)
            return
        self.body.append(data)
        self.size += len(data)
        if self.size > BODY_BUFFER_LIMIT:
            self.abandon()

    def abandon(self) -> None:
        self.abandoned = True
        self.body = []
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None
        if self.stream is not None:
            self.stream.reset(StreamResetReason.LOCAL_RESET)
            self.stream = None

    def release(self) -> None:
        """The original ended; an incomplete copy is abandoned, a complete one finishes."""
        self.released = True
        if not self.complete:
            self.abandon()

    # pool callbacks and ResponseHandler: the response is read and dropped

    def on_pool_ready(self, stream: ClientStream, client: Any) -> None:
        self.pending = None
        if self.abandoned:
            stream.reset(StreamResetReason.LOCAL_RESET)
            return
        self.stream = stream
        body, self.body = self.body, []
        stream.send_headers(self.head, self.complete and not body)
        for i, chunk in enumerate(body):
            stream.send_data(chunk, self.complete and i == len(body) - 1)

    def on_pool_failure(self, reason: StreamResetReason) -> None:
        self.pending = None
        self.abandoned = True

    def on_headers(self, head: ResponseHead, end_stream: bool) -> None:
        pass

    def on_data(self, data: bytes, end_stream: bool) -> None:
        pass

    def on_trailers(self, trailers: Headers) -> None:
        pass

    def on_reset(self, reason: StreamResetReason) -> None:
        self.stream = None
        self.abandoned = True

    def on_above_write_buffer_high_watermark(self) -> None:
        self.abandon()

    def on_below_write_buffer_low_watermark(self) -> None:
        pass
