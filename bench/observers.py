"""What the access log and the tracer add to each request: the observer calls of one
HTTP stream, timed on a real ``DownstreamStream`` (its connection and context are
stand-ins; nothing is sent).

    .venv/bin/python -P bench/observers.py [--n 20000]

(``-P``: bench/http.py must not stand in for the standard library's ``http``.)

Access log: ``on_stream_end`` formats the line and queues it (the writer thread's
write is outside the timing: one ``write()`` a second). Tracing: the four calls of a
request with one try, a server and a client span, exported by nothing (``exporter:
none``) or batched to an OTLP endpoint nobody listens on (the batch processor's
queueing is then included; the export itself runs on its own thread).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import timeit
from types import SimpleNamespace

from mosn.config.models import OpenTelemetryConfig
from mosn.config.types import Address
from mosn.observability.accesslog import DEFAULT_FORMAT, AccessLogs
from mosn.proxy.observer import ObserverHooks
from mosn.proxy.stream import DownstreamStream
from mosn.proxy.upstream_request import UpstreamRequest
from mosn.stream.types import Headers, RequestHead, ResponseHead
from mosn.upstream.cluster import Host

REPEAT = 5
"""Runs of ``--n`` requests each; the best is reported (the least disturbed)."""


class _Store:
    def __init__(self) -> None:
        self.values = [0] * 64


def _stand_ins() -> tuple[SimpleNamespace, SimpleNamespace, SimpleNamespace]:
    ctx = SimpleNamespace(stream_filters=(), max_request_bytes=None, observers=ObserverHooks(()),
                          streams=None,
                          protocols={})
    conn = SimpleNamespace(remote_address=("127.0.0.1", 50000),
                           local_address=("127.0.0.1", 2045))
    stats = SimpleNamespace(rq_total=10, rq_active=11, rq_error=12)
    host = Host(Address("127.0.0.1", 8080), stats=stats)  # type: ignore[arg-type]
    more = SimpleNamespace(upstream_rq_total=1, upstream_rq_active=2,
                           upstream_rq_retry_active=3)
    cluster = SimpleNamespace(name="backend", store=_Store(), more=more)
    return ctx, conn, SimpleNamespace(host=host, cluster=cluster)


def _stream(ctx, conn, up) -> tuple[DownstreamStream, UpstreamRequest]:
    s = DownstreamStream(ctx, conn, None, "Http1")
    s.request = RequestHead("GET", "/api/items?id=7", "example.com", "http", Headers([
        ("user-agent", "bench"), ("x-request-id", "0f3c5e1a-8d2b-4c6a-9e7f-1a2b3c4d5e6f"),
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]))
    s.cluster, s.host = up.cluster, up.host
    upstream = UpstreamRequest(s, up.cluster, up.host)
    s.upstream = upstream
    s.response_code, s.bytes_sent = 200, 1024
    s.response_headers = ResponseHead(200, Headers([("content-length", "1024")])).headers
    s.response_monotonic = s.start_monotonic + 0.0012
    s.end_monotonic = s.start_monotonic + 0.0015
    return s, upstream


def bench(label: str, observer, n: int, calls: str) -> float:
    ctx, conn, up = _stand_ins()

    def one() -> None:
        s, upstream = _stream(ctx, conn, up)
        if "request" in calls:
            observer.on_request(s)
            observer.on_upstream_request(s, upstream)
            upstream.response_code = 200
            observer.on_upstream_end(s, upstream)
        observer.on_stream_end(s)

    base = min(timeit.repeat(lambda: _stream(ctx, conn, up), number=n, repeat=REPEAT))
    total = min(timeit.repeat(one, number=n, repeat=REPEAT))
    cost = (total - base) / n * 1e6
    print(f"{label:<44} {cost:6.1f} us/request")
    return cost


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        logs = AccessLogs()
        path = os.path.join(tmp, "access.log")
        bench("access log, MOSN's default format", logs.observer(path, ""), args.n, "end")
        bench("access log, log_format: json", logs.observer(path, "json"), args.n, "end")
        bench("access log, 3 variables + 2 headers", logs.observer(
            path, "%response_code% %duration% %request_header_x-request-id% "
                  "%response_header_content-length% %upstream_host%"), args.n, "end")
        for writer in logs.writers.values():
            writer.queue.clear()
        logs.close()
    from mosn.observability.tracing import Tracing

    for label, config in (
            ("tracing, sampled, exporter none", OpenTelemetryConfig(exporter="none")),
            ("tracing, sampled, OTLP batch (queued)", OpenTelemetryConfig(
                endpoint="http://127.0.0.1:9/v1/traces", batch_delay=3600)),
            ("tracing, ratio 0 (propagation only)", OpenTelemetryConfig(
                exporter="none", sample_ratio=0, parent_based=False))):
        tracer = Tracing(config)
        bench(label, tracer, args.n, "request")
        if config.exporter == "none":
            tracer.close()  # (an OTLP one would try to export to nobody first)
    bench_skywalking(args.n)


def bench_skywalking(n: int) -> None:
    """SkyWalking: the request path's four calls (the event loop's thread only: its
    CPU time), then making each segment's protobuf message, which the reporter's
    thread does (``reporter: log`` with the log off: nothing is sent)."""
    import logging
    import time

    from mosn.observability.skywalking import Reporter, SkyWalkingTracer

    logging.getLogger("mosn.tracing").setLevel(logging.WARNING)
    ctx, conn, up = _stand_ins()
    streams = [_stream(ctx, conn, up) for _ in range(n)]
    for s, _ in streams:
        s.request.headers.set("sw8", "1-dHJhY2U=-c2VnbWVudA==-3-c2hvcA==-c2hvcC0x-L2J1eQ==-"
                                     "MTI3LjAuMC4xOjIwNDY=")
    config = OpenTelemetryConfig(reporter="log", max_send_queue_size=n)
    tracer = SkyWalkingTracer(config)
    start = time.thread_time()
    for s, upstream in streams:
        tracer.on_request(s)
        tracer.on_upstream_request(s, upstream)
        upstream.response_code = 200
        tracer.on_upstream_end(s, upstream)
        tracer.on_stream_end(s)
    path = time.thread_time() - start
    tracer.close()
    reporter = Reporter(config, "edge", "edge-1@host", lambda *counted: None)
    start = time.thread_time()
    for s, _ in streams:
        reporter.message(s.span, 0, 200)
    message = time.thread_time() - start
    reporter.close()
    print(f"{'skywalking, request path (sw8 in and out)':<44} {path / n * 1e6:6.1f} us/request")
    print(f"{'skywalking, segment message (reporter thread)':<44} "
          f"{message / n * 1e6:6.1f} us/request")


if __name__ == "__main__":
    main()
