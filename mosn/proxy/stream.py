"""The active stream: one request's way through the proxy, and back (Envoy's
``ConnectionManagerImpl::ActiveStream``).

downstream stream -> stream filters (:mod:`mosn.proxy.filter_manager`) -> route ->
cluster -> host -> pool -> upstream request (:mod:`mosn.proxy.upstream_request`),
with per-route timeouts, retries (:mod:`mosn.proxy.retry`, only while the request can
be replayed), direct responses, redirects, header rules and mirroring. Every
downstream request ends in a response or a reset; ``response_flags`` records why
(:mod:`mosn.proxy.stream_info`, Envoy's flags, for the access log).

Nothing here depends on which protocol a stream speaks: where protocols differ (an
HTTP request's path and forwarding fields, the shape of a local reply, what of a
response head is dropped) the stream asks its protocol's
:class:`~mosn.proxy.semantics.ProtocolSemantics`. What a route does not use is not
made: no filter manager without stream filters, no retry state without a retry
policy, no mirror list without mirrors, no body buffers for a request without a body.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import TYPE_CHECKING, Any, Callable

from mosn.network.tls import WithTlsVariables
from mosn.proxy import grpc
from mosn.proxy.deadlines import Deadlines
from mosn.proxy.filter_manager import FilterManager, make_filters
from mosn.proxy.local_reply import FAILURE_BODY, local_reply
from mosn.proxy.retry import (
    MAX_REPLAYS,
    REPLAY_BUFFER_LIMIT,
    RETRY_BUFFER_LIMIT,
    RetryState,
    replayable,
)
from mosn.proxy.semantics import FRAME_SEMANTICS, ProtocolSemantics
from mosn.proxy.stream_filter import LB_METADATA_NAMESPACE, Phase, StreamFilter
from mosn.proxy.stream_info import (
    DOWNSTREAM_CONNECTION_TERMINATION,
    DOWNSTREAM_PROTOCOL_ERROR,
    NO_CLUSTER,
    NO_HEALTHY_UPSTREAM,
    NO_ROUTE,
    STREAM_FILTER_ERROR,
    STREAM_IDLE_TIMEOUT,
    UPSTREAM_CONNECTION_TERMINATION,
    UPSTREAM_OVERFLOW,
    UPSTREAM_REMOTE_RESET,
    UPSTREAM_REQUEST_TIMEOUT,
)
from mosn.proxy.upstream_request import (
    BODY_BUFFER_LIMIT,
    ShadowRequest,
    UpstreamRequest,
    shadow_authority,
)
from mosn.router import Route, RouteRequest
from mosn.stream.types import (
    Headers,
    RequestHead,
    ResponseHead,
    ServerStream,
    StreamResetReason,
)
from mosn.upstream.lb import LbContext

if TYPE_CHECKING:
    from mosn.proxy.filter import ProxyContext
    from mosn.upstream.cluster import Cluster, Host

log = logging.getLogger("mosn.proxy")

_EXHAUSTED = grpc.RESOURCE_EXHAUSTED
_NO_COOKIES: tuple[str, ...] = ()


class DownstreamStream:
    """A request from a client; the proxy's ``RequestHandler`` for the server codec,
    and what stream filters see."""

    __slots__ = (
        "ctx", "conn", "server_stream", "request", "request_complete", "route", "cluster",
        "host", "upstream", "response_flags", "response_started", "done", "upgrade",
        "semantics", "_filter_manager", "_phase", "_body", "_body_size", "_retry_body",
        "_retry_ok", "_request_bytes", "_max_request_bytes", "_retry_state", "_tried",
        "_timer", "_read_disabled", "_shadows", "_trailers", "protocol", "_lb_context",
        "_replays", "observers", "start_time", "start_monotonic", "end_monotonic",
        "response_code", "bytes_sent", "response_monotonic", "response_headers", "span",
        "_held",
        "ended_by_reset", "_quiet", "dynamic_metadata", "_set_cookies", "_response_transforms",
        "mirror_copies", "mirror_every_host", "response_trailers", "_at_end",
        "_on_complete",
    )

    def __init__(self, ctx: "ProxyContext", conn: Any, server_stream: ServerStream,
                 protocol: str, semantics: ProtocolSemantics = FRAME_SEMANTICS) -> None:
        self.ctx = ctx
        self.protocol = protocol
        self.semantics = semantics
        """What the stream's protocol says about its requests and replies."""
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
        factories = ctx.stream_filters
        self._filter_manager: FilterManager | None = \
            FilterManager(make_filters(factories)) if factories else None
        self._phase = Phase.BEFORE_ROUTE
        self._body: list[bytes] | None = None  # request body waiting for the upstream stream
        self._body_size = 0
        self._retry_body: list[bytes] | None = None  # the whole request body, for a retry
        self._retry_ok = True
        self._held = 0
        """Bytes of ``_body`` and ``_retry_body`` held against the buffer budget."""
        self._request_bytes = 0
        self._max_request_bytes = ctx.max_request_bytes
        self._retry_state: RetryState | None = None
        """Made when the route has a retry policy."""
        self._tried: list[Host] | None = None
        """The hosts tried, once a try failed and another may follow."""
        self._timer: Deadlines | None = None
        """What times the route timeout (the proxy's deadlines), once it runs."""
        self._read_disabled = False
        self._shadows: list[ShadowRequest] | None = None
        self._trailers: Headers | None = None
        self._lb_context: LbContext | None = None
        self._set_cookies: list[str] | tuple[str, ...] = _NO_COOKIES
        """``Set-Cookie`` values for the cookies the route's hash policy made."""
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
        return b"".join(self._body or ())

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
        refuse = self.semantics.prepare_request(self, head)
        for hook in self.observers.request:
            hook(self)
        if refuse is None:
            self.continue_request()
        else:
            refuse()

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
            if self._retry_body is None:
                self._retry_body = []
            self._retry_body.append(data)
            self._hold(len(data))
            retry = self._retry_state
            limit = REPLAY_BUFFER_LIMIT if self.route is not None and (
                retry is None or not retry.retries_left) else RETRY_BUFFER_LIMIT
            if self._request_bytes > limit:
                self._drop_retry_body()
        if end_stream:
            self.request_complete = True
        upstream = self.upstream
        if upstream is not None and upstream.stream is not None:
            upstream.stream.send_data(data, end_stream)
        else:
            if self._body is None:
                self._body = []
            self._body.append(data)
            self._body_size += len(data)
            self._hold(len(data))
            if self._body_size > BODY_BUFFER_LIMIT and not self._read_disabled:
                self._read_disabled = True
                self.server_stream.read_disable(True)
        if self._shadows:
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

    def _drop_retry_body(self) -> None:
        """The request can no longer be sent again: the body kept for that goes."""
        self._retry_ok = False
        if self._retry_body:
            self._hold(-sum(len(b) for b in self._retry_body))
        self._retry_body = None

    def _rewind_body(self) -> None:
        """Send the whole request body again, from the copy kept for a retry."""
        self._hold(-self._body_size)
        self._body = list(self._retry_body) if self._retry_body else None
        self._body_size = sum(len(b) for b in self._body) if self._body else 0
        self._hold(self._body_size)

    # -- the request's way: filters, route, host, upstream -----------------------------

    def continue_request(self) -> None:
        """Run the filters of each phase and the steps between them; a filter that
        returned STOP calls this again to go on."""
        while not self.done:
            manager = self._filter_manager
            if manager is not None and not manager.run_request(self, self._phase):
                return
            if self.done:
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
        if policy is not None:
            self._retry_state = RetryState(policy, 0 if self.upgrade else policy.num_retries)
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
        tried = self._tried
        host = self.cluster.choose_host(tried or (), context)
        if host is None and tried:
            host = self.cluster.choose_host((), context)  # every host was tried: any will do
        if host is None:
            self.response_flags.append(NO_HEALTHY_UPSTREAM)
            self.send_local_reply(503, "no healthy upstream\n")
            return False
        self.host = host
        return True

    def _send_upstream(self) -> None:
        cluster, host, route = self.cluster, self.host, self.route
        assert cluster is not None and host is not None and route is not None
        if self._tried is not None:
            self._tried.append(host)
        if cluster.max_requests and cluster.store.total(
                cluster.more.upstream_rq_active) >= cluster.max_requests:
            cluster.count(cluster.more.upstream_rq_pending_overflow)
            self.response_flags.append(UPSTREAM_OVERFLOW)
            self.send_local_reply(503, FAILURE_BODY + "overflow\n")
            return
        protocol = self.ctx.upstream_protocol(route, self.protocol)
        pool = self.ctx.pool(cluster, host, protocol)
        retry = self._retry_state
        upstream = self.upstream = UpstreamRequest(
            self, cluster, host, retry is not None and retry.take_scheduled(),
            self.ctx.semantics[protocol.name])
        for hook in self.observers.upstream_request:
            hook(self, upstream)
        if retry is not None and retry.per_try_timeout and not self.upgrade:
            upstream.try_timer = self.conn.loop.call_later(
                retry.per_try_timeout, self._on_timeout, True)
        upstream.pending = pool.new_stream(upstream, upstream)
        if self.request_complete and self._timer is None and not self.done:
            self._start_timer()
        if route.mirror_policies and not self._shadows and not self.upgrade:
            self.start_mirrors()

    # -- upstream events -----------------------------------------------------------------

    def on_upstream_ready(self, upstream: UpstreamRequest) -> None:
        head = self.request
        assert head is not None and upstream.stream is not None
        body, self._body = self._body, None
        self._hold(-self._body_size)
        self._body_size = 0
        stream = upstream.stream
        if self.route is not None and self.route.auto_host_rewrite and upstream.host.hostname:
            head.authority = upstream.host.hostname
        complete = self.request_complete and self._trailers is None
        stream.send_headers(head, complete and not body)
        if body:
            last = len(body) - 1
            for i, chunk in enumerate(body):
                stream.send_data(chunk, complete and i == last)
        if self._trailers is not None:
            stream.send_trailers(self._trailers)
        if self._read_disabled:
            self._read_disabled = False
            self.server_stream.read_disable(False)

    def on_upstream_failure(self, upstream: UpstreamRequest, reason: StreamResetReason,
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
        self.send_local_reply(status, FAILURE_BODY + reason.value + "\n")

    def on_upstream_headers(self, upstream: UpstreamRequest, head: ResponseHead,
                            end_stream: bool) -> None:
        if upstream is not self.upstream or self.done:
            return
        self._quiet = 0
        if head.status >= 500:
            upstream.count_5xx()
        outlier = upstream.host.outlier
        if outlier is not None:
            outlier.put_status(head.status)
        retry = self._retry_state
        if retry is not None:
            condition = retry.condition_for(head.status)
            if condition and self._retry(condition):
                upstream.reset()
                return
        upstream.semantics.prepare_response(head)
        if self.route is not None:
            self.route.apply_response_headers(head.headers, self)
        for cookie in self._set_cookies:  # made for the hash policy (cookie ttl)
            head.headers.add("set-cookie", cookie)
        manager = self._filter_manager
        if manager is not None and not manager.run_response(self, head):
            return  # nothing of the response was sent: answered 500 instead
        self.response_started = True
        if self._retry_ok:  # too late to send the request again: its body goes
            self._drop_retry_body()
        semantics = self.semantics
        self.bytes_sent += semantics.head_bytes(head)
        if self._timer is not None and semantics.opens_tunnel(head):
            self._timer.discard(self)  # a tunnel has no response end to wait for
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

    def on_upstream_reset(self, upstream: UpstreamRequest, reason: StreamResetReason) -> None:
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
        not process it (:func:`mosn.proxy.retry.replayable`). Not a retry: it needs no
        retry policy and uses none up; MAX_REPLAYS at most."""
        if not replayable(reason, self.request):
            return False
        if self._replays >= MAX_REPLAYS or not self._retry_ok or self.response_started \
                or self.upgrade or self.cluster is None:
            return False
        self._replays += 1
        self.cluster.count(self.cluster.more.upstream_rq_replay)
        self._another_try()
        self._rewind_body()
        self._send_upstream()
        return True

    def _retry(self, condition: str) -> bool:
        """Start a retry if the policy covers ``condition`` and the request can be replayed."""
        retry = self._retry_state
        if retry is None or self.response_started or not self._retry_ok:
            return False
        delay = retry.backoff(condition, self.cluster, self.response_flags)
        if delay is None:
            return False
        self._another_try()
        self.conn.loop.call_later(delay, self._do_retry)
        return True

    def _another_try(self) -> None:
        """The try in flight is given up for another: its host is remembered as tried."""
        if self._tried is None and self.host is not None:
            self._tried = [self.host]
        old = self.upstream
        self.upstream = None
        if old is not None:
            old.detach()

    def _do_retry(self) -> None:
        if self.done:
            return
        self._rewind_body()
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
            # One timer for all of the proxy's streams, not a handle per request
            # (mosn.proxy.deadlines). The connection's loop, not
            # asyncio.get_running_loop(): on CPython 3.11 that checks the process id
            # with a getpid system call on every call.
            deadlines = self._timer = self.ctx.deadlines
            deadlines.add(self.conn.loop, self, timeout)

    def on_deadline(self) -> None:
        """The route timeout expired (:class:`mosn.proxy.deadlines.Deadlines`)."""
        self._on_timeout(False)

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
        return len(self._shadows) if self._shadows else 0

    def _mirror_to(self, cluster: Cluster, host: Host) -> None:
        head = self.request
        assert head is not None and self.route is not None
        # The same head (an RPC request's frame too) with its own headers and authority.
        shadow_head = dataclasses.replace(head, authority=shadow_authority(head.authority),
                                          headers=head.headers.copy(), timeout=None)
        shadow = ShadowRequest(shadow_head, self.request_complete)
        pool = self.ctx.pool(cluster, host, self.ctx.upstream_protocol(self.route, self.protocol))
        shadow.pending = pool.new_stream(shadow, shadow)
        if not shadow.abandoned:
            if self._shadows is None:
                self._shadows = []
            self._shadows.append(shadow)

    # -- answering and ending ------------------------------------------------------------

    def send_local_reply(self, status: int, body: str | bytes = b"",
                         headers: list[tuple[str, str]] | None = None,
                         content_type: str = "text/plain",
                         grpc_status: int | None = None) -> None:
        """Answer the client from the proxy (an error, a direct response, a redirect),
        in the shape of the stream's protocol (:mod:`mosn.proxy.local_reply`): a gRPC
        request gets it as a gRPC status instead (``grpc_status``, or the one
        ``status`` maps to, with the body as its message); an RPC request, its
        protocol's error reply for ``status``."""
        if self.done:
            return
        if self.response_started:
            self._reset_downstream(StreamResetReason.LOCAL_RESET)
            return
        data = body.encode() if isinstance(body, str) else body
        head, data = local_reply(self.semantics, self.request, self.request_complete,
                                 status, data, headers, content_type, grpc_status)
        manager = self._filter_manager
        if manager is not None and not manager.run_response(self, head):
            return
        self.response_started = True
        self.response_code = head.status
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

    def filter_failed(self, f: StreamFilter, where: str) -> None:
        """A stream filter raised: the client gets a 500 (an RPC client, its protocol's
        error reply), no filter runs again on this stream, and the stream is flagged
        (counted per listener and protocol as ``downstream_rq_filter_error``)."""
        log.warning("stream filter %s raised in %s", type(f).__name__, where, exc_info=True)
        self._filter_manager = None
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
        if self._retry_state is not None:  # a retry never started gives its count back
            self._retry_state.release(self.cluster)
        if self._timer is not None:
            self._timer.discard(self)
            self._timer = None
        upstream = self.upstream
        if upstream is not None:
            if reset_upstream:
                upstream.reset()
            upstream.detach()
        if self._shadows:
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


__all__ = ["DownstreamStream"]
