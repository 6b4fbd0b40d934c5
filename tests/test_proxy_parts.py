"""The proxy's parts as pure logic: what each protocol says about its streams (the
proxy has no branch of its own on the protocol), local replies in each protocol's
shape, and the retry state's decisions. The end-to-end behaviour of each is tested
through a real mosn in test_http_proxy.py, test_l7_replay.py, test_grpc.py and the
RPC plugins' e2e tests."""

from __future__ import annotations

from types import SimpleNamespace

from mosn.proxy import FRAME_SEMANTICS, HTTP_SEMANTICS, ProtocolSemantics
from mosn.proxy.deadlines import Deadlines
from mosn.proxy.local_reply import local_reply
from mosn.proxy.observer import ObserverHooks
from mosn.proxy.retry import RetryState, replayable
from mosn.proxy.semantics import semantics_of
from mosn.proxy.stream import DownstreamStream
from mosn.proxy.stream_info import RETRY_LIMIT_EXCEEDED
from mosn.proxy.upstream_request import UpstreamRequest
from mosn.router import RetryPolicy
from mosn.rpc.engine import rpc_protocol
from mosn.stream import Headers, RequestHead, ResponseHead, StreamResetReason
from mosn_http1.plugin import Http1Protocol
from mosn_http2.plugin import Http2Protocol
from mosn_sofarpc.codec import BoltCodec


def test_each_protocol_names_its_semantics() -> None:
    assert semantics_of(Http1Protocol()) is HTTP_SEMANTICS
    assert semantics_of(Http2Protocol()) is HTTP_SEMANTICS
    assert semantics_of(rpc_protocol(BoltCodec())) is FRAME_SEMANTICS
    assert isinstance(HTTP_SEMANTICS, ProtocolSemantics)


def test_local_replies_take_the_protocol_shape() -> None:
    plain = RequestHead("GET", "/", headers=Headers([("accept", "*/*")]))
    head, body = local_reply(HTTP_SEMANTICS, plain, True, 503, b"no healthy upstream\n",
                             None, "text/plain", None)
    assert (head.status, body) == (503, b"no healthy upstream\n")
    assert head.headers.get("content-length") == str(len(body))
    call = RequestHead("POST", "/pkg.Svc/M", headers=Headers([("content-type",
                                                                "application/grpc")]))
    head, body = local_reply(HTTP_SEMANTICS, call, False, 504, b"upstream request timeout\n",
                             None, "text/plain", 4)
    assert (head.status, body) == (200, b"")
    assert head.headers.get("grpc-status") == "4"
    assert head.headers.get("connection") == "close"  # the request was not read whole
    rpc = RequestHead("", "", frame=object())
    head, body = local_reply(FRAME_SEMANTICS, rpc, True, 404, b"no route\n", None,
                             "text/plain", None)
    assert (head.status, body) == (404, b"no route\n")  # the RPC engine maps it


def test_http_responses_lose_connection_fields_and_frames_do_not() -> None:
    def response() -> ResponseHead:
        return ResponseHead(204, Headers([("connection", "x-a"), ("x-a", "1"),
                                          ("content-length", "0"), ("x-b", "2")]))
    http = response()
    HTTP_SEMANTICS.prepare_response(http)
    assert http.headers.items() == [("x-b", "2")]
    frame = response()
    FRAME_SEMANTICS.prepare_response(frame)
    assert frame.headers == response().headers
    assert HTTP_SEMANTICS.opens_tunnel(ResponseHead(101))
    assert not FRAME_SEMANTICS.opens_tunnel(ResponseHead(101))
    assert FRAME_SEMANTICS.head_bytes(ResponseHead(200, frame=SimpleNamespace(data=b"12345"))) == 5


def test_retry_state_follows_the_policy() -> None:
    policy = RetryPolicy(frozenset({"gateway-error"}), 1, None, frozenset({409}))
    retry = RetryState(policy, policy.num_retries)
    assert retry.condition_for(409) == "retriable-status-codes"
    assert retry.condition_for(503) == "gateway-error"
    assert retry.condition_for(500) == "5xx"
    assert retry.condition_for(200) == ""
    flags: list[str] = []
    assert retry.backoff("5xx", None, flags) is None  # not covered by gateway-error
    delay = retry.backoff("connect-failure", None, flags)
    assert delay is not None and delay >= 0
    assert retry.backoff("reset", None, flags) is None  # no try left
    assert flags == [RETRY_LIMIT_EXCEEDED]


def test_replays_only_what_the_upstream_did_not_process() -> None:
    get, post = RequestHead("GET", "/"), RequestHead("POST", "/")
    assert replayable(StreamResetReason.REFUSED_STREAM, post)
    assert replayable(StreamResetReason.CLOSED_BEFORE_RESPONSE, get)
    assert not replayable(StreamResetReason.CLOSED_BEFORE_RESPONSE, post)
    assert not replayable(StreamResetReason.REMOTE_RESET, get)


def test_a_stream_makes_only_what_its_route_uses() -> None:
    """A proxy with no stream filters gives its streams no filter manager, and a stream
    starts with no retry state, no mirror list and no body buffers (they come with a
    retry policy, a mirror, a body)."""
    def stream(filters: tuple) -> DownstreamStream:
        ctx = SimpleNamespace(stream_filters=filters, max_request_bytes=None,
                              observers=ObserverHooks(()), streams=None)
        return DownstreamStream(ctx, SimpleNamespace(), None, "Http1", HTTP_SEMANTICS)

    plain = stream(())
    assert plain._filter_manager is None
    assert (plain._retry_state, plain._shadows, plain._body, plain._retry_body,
            plain._tried) == (None, None, None, None, None)
    assert stream((lambda: object(),))._filter_manager is not None


def test_an_ended_try_lets_go_of_its_client_stream() -> None:
    """The client stream's handler is the try: once the try has ended and is detached
    it drops the stream, so neither holds the other past the request."""
    cluster = SimpleNamespace(store=SimpleNamespace(values=[0] * 3), more=SimpleNamespace(
        upstream_rq_total=0, upstream_rq_active=1, upstream_rq_retry_active=2))
    host = SimpleNamespace(active_requests=0, response_times=None, outlier=None,
                           stats=SimpleNamespace(rq_total=0, rq_active=1, rq_error=2))
    downstream = SimpleNamespace(observers=ObserverHooks(()),
                                 on_upstream_ready=lambda try_: None,
                                 on_upstream_headers=lambda try_, head, end: None)
    try_ = UpstreamRequest(downstream, cluster, host)  # type: ignore[arg-type]
    client_stream = SimpleNamespace(handler=try_)
    try_.on_pool_ready(client_stream, object())  # type: ignore[arg-type]
    try_.on_headers(ResponseHead(200, Headers()), True)
    try_.detach()
    assert try_.stream is None and try_.downstream is None and host.active_requests == 0


class _Clock:
    """A loop's ``time``/``call_at``/``is_closed`` with a clock the test moves: the
    timer armed last is the one that fires."""

    def __init__(self) -> None:
        self.now = 100.0
        self.armed: list[tuple[float, object]] = []  # (when, callback), cancelled taken out

    def time(self) -> float:
        return self.now

    def is_closed(self) -> bool:
        return False

    def call_at(self, when: float, callback):
        entry = (when, callback)
        self.armed.append(entry)
        return SimpleNamespace(cancel=lambda: self.armed.remove(entry))

    def advance(self, seconds: float) -> None:
        """Move the clock on, firing every timer due on the way, in time order."""
        end = self.now + seconds
        while self.armed and min(self.armed)[0] <= end:
            entry = min(self.armed, key=lambda e: e[0])
            self.armed.remove(entry)
            self.now = max(self.now, entry[0])
            entry[1]()
        self.now = end


class _Timed:
    def __init__(self, name: str, fired: list[str]) -> None:
        self.name, self.fired = name, fired

    def on_deadline(self) -> None:
        self.fired.append(self.name)


def test_route_timeouts_share_one_timer() -> None:
    """Every stream's deadline is met, however they were added and discarded, with one
    timer armed at a time; a stream discarded in time never hears of it."""
    clock, deadlines, fired = _Clock(), Deadlines(), []
    a, b, c, d = (_Timed(n, fired) for n in "abcd")
    deadlines.add(clock, a, 5.0)
    clock.advance(1.0)
    deadlines.add(clock, b, 5.0)   # later than the armed timer: no new one
    assert len(clock.armed) == 1
    deadlines.add(clock, c, 2.0)   # earlier: the timer moves to it
    assert len(clock.armed) == 1 and clock.armed[0][0] == 103.0
    deadlines.discard(c)
    clock.advance(2.5)             # c's deadline passed, discarded: nothing fires
    assert fired == [] and len(deadlines) == 2
    clock.advance(1.0)             # 104.5: nothing is due before a's 105
    assert fired == []
    deadlines.add(clock, d, 0.25)  # earlier than a: the timer moves to it
    clock.advance(0.25)            # 104.75: d only
    assert fired == ["d"]
    deadlines.discard(b)
    clock.advance(0.25)            # 105: a
    assert fired == ["d", "a"] and len(deadlines) == 0 and clock.armed == []
    deadlines.add(clock, b, 1.0)   # after it all fired, a timer is armed again
    clock.advance(1.0)
    assert fired == ["d", "a", "b"]


def test_a_timeout_may_add_streams_and_one_failing_stops_no_other() -> None:
    clock, deadlines, fired = _Clock(), Deadlines(), []

    class Broken:
        def on_deadline(self) -> None:
            raise RuntimeError("a bug in one stream")

    late = _Timed("late", fired)

    class Chained(_Timed):
        def on_deadline(self) -> None:
            super().on_deadline()
            deadlines.add(clock, late, 10.0)  # armed for later than what is left

    deadlines.add(clock, Broken(), 1.0)
    deadlines.add(clock, Chained("chained", fired), 1.0)
    deadlines.add(clock, _Timed("next", fired), 2.0)
    clock.advance(1.0)
    assert fired == ["chained"]
    clock.advance(1.0)  # "next" is still timed, though "late" armed the timer for 11 s
    assert fired == ["chained", "next"]
    clock.advance(9.0)
    assert fired == ["chained", "next", "late"]
