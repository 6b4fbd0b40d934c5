"""MOSN's ``SkyWalking`` tracing driver: SkyWalking's cross-process context (the
``sw8`` header, https://skywalking.apache.org/docs/main/next/en/api/x-process-propagation-headers-v3/)
read from each HTTP request and written upstream, and one trace segment per request
reported to SkyWalking's OAP over gRPC (``TraceSegmentReportService.collect``), as
MOSN's driver does with go2sky (``pkg/trace/skywalking``).

A segment holds the request's **entry span** (span 0: the request's path as its
operation name, ``http.method``, ``url`` and ``status_code`` tags, a reference to the
caller's segment when the request carried ``sw8``) and an **exit span** per try
upstream (span 1, 2 ...: the host as its peer, ``status_code``). The ``sw8`` sent
upstream names this segment and the try's exit span, so the upstream's segment hangs
below it. A malformed ``sw8`` starts a new trace and is counted
(``tracing.sw8_malformed``); the client never sees an error for it.

The request path only records ids, times and strings; the protobuf messages are
made by the reporter's thread (one per process, started on the first request, after
the workers fork), which sends what is queued in one ``collect`` stream at a time.
The messages are SkyWalking's own, generated in the ``apache-skywalking`` package.
"""

from __future__ import annotations

import base64
import binascii
import logging
import queue
import random
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from mosn.proxy.observer import StreamObserver

if TYPE_CHECKING:
    from mosn.config.models import OpenTelemetryConfig
    from mosn.observability.stats import StatsStore
    from mosn.proxy.stream import DownstreamStream
    from mosn.proxy.upstream_request import UpstreamRequest

log = logging.getLogger("mosn.tracing")

SW8 = "sw8"
"""SkyWalking's context header (cross-process propagation protocol v3)."""
SW8_FIELDS = 8
MAX_SW8_LENGTH = 4096
"""Characters of an ``sw8`` value parsed: its ids and names are short, and a longer
value is refused as malformed before any of it is decoded."""
MOSN_COMPONENT_ID = 5003
"""The component id SkyWalking's ``component-libraries.yml`` gives MOSN."""
SPAN_LAYER_HTTP = 3
SPAN_TYPE_ENTRY, SPAN_TYPE_EXIT = 0, 1
REF_CROSS_PROCESS = 0
"""Enum values of SkyWalking's ``Tracing.proto`` (``SpanLayer.Http``, ``SpanType``,
``RefType.CrossProcess``)."""
ENTRY_SPAN_ID = 0
NO_PARENT_SPAN = -1
TAG_METHOD, TAG_URL, TAG_STATUS = "http.method", "url", "status_code"
"""go2sky's tag keys (``TagHTTPMethod``, ``TagURL``, ``TagStatusCode``)."""
ERROR_STATUS = 400
"""A response status from which a span is an error (MOSN's driver: ``>= 400``)."""
DEFAULT_MAX_SEND_QUEUE = 30000
"""Segments queued for the reporter before new ones are dropped (go2sky's
``maxSendQueueSize``)."""
MAX_SEGMENTS_PER_REPORT = 1000
"""Segments sent in one ``collect`` stream; the OAP answers a stream when it ends."""
REPORT_TIMEOUT = 10.0
"""Seconds one ``collect`` stream may take: an OAP that stalls cannot hold the
reporter (and the queue behind it) longer."""
CLOSE_TIMEOUT = 5.0
"""Seconds a stopping process waits for the reporter to send what is queued."""
LOG_REPORTER, GRPC_REPORTER = "log", "grpc"
"""MOSN's ``reporter`` values (``log``: each segment as JSON in mosn's log)."""
SKYWALKING_STATS = ("tracing.sw8_malformed", "tracing.segments_reported",
                    "tracing.segments_dropped", "tracing.report_failures")
MALFORMED, REPORTED, DROPPED, FAILED = range(len(SKYWALKING_STATS))
"""Each stat's place in :data:`SKYWALKING_STATS`."""


class Sw8Error(ValueError):
    """An ``sw8`` value that is not a context (the message says why)."""


@dataclass(frozen=True, slots=True)
class Sw8:
    """One ``sw8`` context: the caller's segment and span, and who the caller is."""

    sampled: bool
    trace_id: str
    segment_id: str
    span_id: int
    service: str
    instance: str
    endpoint: str
    peer: str
    """The address the caller used to reach the receiver."""

    def encode(self) -> str:
        texts = (self.trace_id, self.segment_id, str(self.span_id), self.service,
                 self.instance, self.endpoint, self.peer)
        fields = [_b64(t) if i != 2 else t for i, t in enumerate(texts)]
        return "-".join(["1" if self.sampled else "0", *fields])


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def _unb64(text: str, what: str) -> str:
    try:
        decoded = base64.b64decode(text, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise Sw8Error(f"{what} is not BASE64 of UTF-8 text") from None
    if not decoded.isprintable():  # it reaches logs (%trace_id%) and the OAP as it is
        raise Sw8Error(f"{what} holds a control character")
    return decoded


def parse_sw8(value: str) -> Sw8:
    """The context in an ``sw8`` value: ``sample-traceId-segmentId-spanId-service-
    instance-endpoint-peer``, each text field BASE64; raises :class:`Sw8Error`."""
    if len(value) > MAX_SW8_LENGTH:
        raise Sw8Error(f"longer than {MAX_SW8_LENGTH} characters")
    parts = value.strip().split("-")
    if len(parts) != SW8_FIELDS:
        raise Sw8Error(f"{len(parts)} fields, not {SW8_FIELDS}")
    sample, trace, segment, span, service, instance, endpoint, peer = parts
    if sample not in ("0", "1"):
        raise Sw8Error(f"sample flag {sample!r} is not 0 or 1")
    if not span.isdigit():
        raise Sw8Error(f"parent span id {span!r} is not a number")
    context = Sw8(sample == "1", _unb64(trace, "trace id"), _unb64(segment, "segment id"),
                  int(span), _unb64(service, "service"), _unb64(instance, "instance"),
                  _unb64(endpoint, "endpoint"), _unb64(peer, "peer"))
    for what in ("trace_id", "segment_id", "service", "instance"):
        if not getattr(context, what):
            raise Sw8Error(f"empty {what.replace('_', ' ')}")
    return context


def new_id() -> str:
    """A trace or segment id: 32 random hex digits (go2sky's UUID without dashes).
    Python's ``random`` (reseeded in each forked worker), not ``os.urandom``: an id
    needs to be unique, not secret, and a system call per id cost ~100 µs on a
    loaded machine."""
    return f"{random.getrandbits(128):032x}"


def now_ms() -> int:
    return int(time.time() * 1000)


class Segment:
    """What one request records: the entry span, the exit spans so far, the caller's
    context. ``trace_id`` is also what the access log's ``%trace_id%`` shows."""

    __slots__ = ("trace_id", "segment_id", "sampled", "parent", "operation", "start",
                 "method", "url", "exits", "next_span")

    def __init__(self, trace_id: str, sampled: bool, parent: Sw8 | None, operation: str,
                 method: str, url: str) -> None:
        self.trace_id = trace_id
        self.segment_id = new_id()
        self.sampled = sampled
        self.parent = parent
        self.operation = operation
        self.method = method
        self.url = url
        self.start = now_ms()
        self.exits: list[tuple[int, int, int, str, int]] = []
        """(span id, start ms, end ms, peer, status) of each try that ended."""
        self.next_span = ENTRY_SPAN_ID + 1


class Exit:
    """One try upstream: its span id, start and peer (the host)."""

    __slots__ = ("span_id", "start", "peer")

    def __init__(self, span_id: int, peer: str) -> None:
        self.span_id = span_id
        self.start = now_ms()
        self.peer = peer


class SkyWalkingTracer(StreamObserver):
    """The tracer of every L7 listener (its reporter started by the first request of
    each process). HTTP requests only (HTTP/1.1, HTTP/2, gRPC): RPC frames are not
    traced, as with MOSN's driver."""

    def __init__(self, config: "OpenTelemetryConfig") -> None:
        self.config = config
        self.service = config.service_name
        self.instance = ""
        self._reporter: Reporter | None = None
        self._stats: tuple[int, ...] = ()
        self._store: Any = None
        self._counting = threading.Lock()
        """The request path and the reporter's thread both count drops."""

    def register_stats(self, store: "StatsStore") -> None:
        """Register the driver's counters (before the workers fork)."""
        self._store = store
        self._stats = tuple(store.register(name) for name in SKYWALKING_STATS)

    def _count(self, which: int, n: int = 1) -> None:
        """Add ``n`` to the stat ``SKYWALKING_STATS[which]`` (events, not requests:
        a malformed context, a full queue, a report)."""
        if self._stats and self._store.values is not None:
            with self._counting:
                self._store.values[self._stats[which]] += n

    def _start(self) -> "Reporter":
        # Per process: a worker names an instance of its own and runs its reporter.
        self.instance = f"{new_id()}@{socket.gethostname()}"
        self._reporter = Reporter(self.config, self.service, self.instance, self._count)
        return self._reporter

    def close(self) -> None:
        """Send what is queued (at shutdown)."""
        if self._reporter is not None:
            self._reporter.close()

    # -- observer ------------------------------------------------------------------------

    def on_request(self, stream: "DownstreamStream") -> None:
        if self._reporter is None:
            self._start()
        head = stream.request
        assert head is not None
        if head.frame is not None:
            return
        headers = head.headers
        value = headers.get(SW8)
        parent = None
        if value is not None:
            headers.remove(SW8)  # replaced by this proxy's context upstream
            try:
                parent = parse_sw8(value)
            except Sw8Error as exc:
                self._count(MALFORMED)
                log.debug("tracing: malformed sw8 (%s): a new trace", exc)
        path = head.path
        operation = path.split("?", 1)[0]
        if parent is None:
            stream.span = Segment(new_id(), True, None, operation, head.method,
                                  head.authority + path)
        else:
            stream.span = Segment(parent.trace_id, parent.sampled, parent, operation,
                                  head.method, head.authority + path)

    def on_upstream_request(self, stream: "DownstreamStream", upstream: "UpstreamRequest") -> None:
        segment = stream.span
        if not isinstance(segment, Segment):
            return
        head = stream.request
        assert head is not None
        exit_span = Exit(segment.next_span, str(upstream.host))
        segment.next_span += 1
        upstream.span = exit_span
        context = Sw8(segment.sampled, segment.trace_id, segment.segment_id, exit_span.span_id,
                      self.service, self.instance, segment.operation, exit_span.peer)
        head.headers.set(SW8, context.encode())  # a retry's replaces the try before

    def on_upstream_end(self, stream: "DownstreamStream", upstream: "UpstreamRequest") -> None:
        exit_span = upstream.span
        segment = stream.span
        if not isinstance(exit_span, Exit) or not isinstance(segment, Segment):
            return
        upstream.span = None
        segment.exits.append((exit_span.span_id, exit_span.start, now_ms(), exit_span.peer,
                              upstream.response_code))

    def on_stream_end(self, stream: "DownstreamStream") -> None:
        segment = stream.span
        if not isinstance(segment, Segment) or not segment.sampled:
            return
        reporter = self._reporter
        assert reporter is not None
        reporter.put(segment, now_ms(), stream.response_code)


class Reporter:
    """Segments to the OAP (``reporter: grpc``) or to mosn's log (``log``), from a
    thread of their own with a bounded queue."""

    def __init__(self, config: "OpenTelemetryConfig", service: str, instance: str,
                 count: Any) -> None:
        self.kind = config.reporter.lower()
        self.address = config.backend_service
        self.tls = config.tls
        self.metadata = (("authentication", config.authentication),) \
            if config.authentication else ()
        self.service = service
        self.instance = instance
        self._count = count
        self._queue: queue.Queue[Any] = queue.Queue(
            config.max_send_queue_size or DEFAULT_MAX_SEND_QUEUE)
        self._thread = threading.Thread(target=self._run, name="mosn-skywalking",
                                        daemon=True)
        self._thread.start()

    def put(self, segment: Segment, end: int, status: int) -> None:
        try:
            self._queue.put_nowait((segment, end, status))
        except queue.Full:
            self._count(DROPPED)

    def close(self) -> None:
        self._queue.put(None)  # after what is queued
        self._thread.join(CLOSE_TIMEOUT)

    def _run(self) -> None:
        from google.protobuf.json_format import MessageToJson
        from skywalking.protocol.language_agent.Tracing_pb2_grpc import (
            TraceSegmentReportServiceStub,
        )

        stub = channel = None
        if self.kind == GRPC_REPORTER:
            channel = self.channel()
            stub = TraceSegmentReportServiceStub(channel)
        done = False
        while not done:
            batch = [self._queue.get()]
            while len(batch) < MAX_SEGMENTS_PER_REPORT:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if batch[-1] is None:
                done = True
                batch.pop()
            if not batch:
                continue
            messages = [self.message(*item) for item in batch]
            if stub is None:
                if log.isEnabledFor(logging.INFO):
                    for message in messages:
                        log.info("tracing: segment %s", MessageToJson(message, indent=None))
                self._count(REPORTED, len(messages))
                continue
            try:
                stub.collect(iter(messages), timeout=REPORT_TIMEOUT, metadata=self.metadata)
            except Exception as exc:  # grpc.RpcError: the OAP is down or refused them
                self._count(FAILED)
                self._count(DROPPED, len(messages))
                log.warning("tracing: could not report %d segments to %s: %s",
                            len(messages), self.address, exc)
            else:
                self._count(REPORTED, len(messages))
        if channel is not None:
            channel.close()

    def channel(self) -> grpc.Channel:
        """The OAP's channel: TLS trusting ``tls.cert_file`` when it is set."""
        tls = self.tls
        if tls is None or not tls.cert_file:
            return grpc.insecure_channel(self.address)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=Path(tls.cert_file).read_bytes())
        options = [("grpc.ssl_target_name_override", tls.server_name_override)] \
            if tls.server_name_override else []
        return grpc.secure_channel(self.address, credentials, options=options)

    def message(self, segment: Segment, end: int, status: int) -> Any:
        """SkyWalking's ``SegmentObject`` of a request."""
        from skywalking.protocol.common.Common_pb2 import KeyStringValuePair as Tag
        from skywalking.protocol.language_agent.Tracing_pb2 import (
            SegmentObject,
            SegmentReference,
            SpanObject,
        )

        refs = []
        parent = segment.parent
        if parent is not None:
            refs.append(SegmentReference(
                refType=REF_CROSS_PROCESS, traceId=parent.trace_id,
                parentTraceSegmentId=parent.segment_id, parentSpanId=parent.span_id,
                parentService=parent.service, parentServiceInstance=parent.instance,
                parentEndpoint=parent.endpoint, networkAddressUsedAtPeer=parent.peer))
        tags = [Tag(key=TAG_METHOD, value=segment.method), Tag(key=TAG_URL, value=segment.url)]
        if status:
            tags.append(Tag(key=TAG_STATUS, value=str(status)))
        spans = [SpanObject(
            spanId=span_id, parentSpanId=ENTRY_SPAN_ID, startTime=start, endTime=stop,
            operationName=segment.operation, peer=peer, spanType=SPAN_TYPE_EXIT,
            spanLayer=SPAN_LAYER_HTTP, componentId=MOSN_COMPONENT_ID,
            isError=not code or code >= ERROR_STATUS,
            tags=[Tag(key=TAG_STATUS, value=str(code))] if code else [])
            for span_id, start, stop, peer, code in segment.exits]
        spans.append(SpanObject(
            spanId=ENTRY_SPAN_ID, parentSpanId=NO_PARENT_SPAN, startTime=segment.start,
            endTime=end, refs=refs, operationName=segment.operation, spanType=SPAN_TYPE_ENTRY,
            spanLayer=SPAN_LAYER_HTTP, componentId=MOSN_COMPONENT_ID,
            isError=not status or status >= ERROR_STATUS, tags=tags))
        return SegmentObject(traceId=segment.trace_id, traceSegmentId=segment.segment_id,
                             spans=spans, service=self.service,
                             serviceInstance=self.instance)


def check_installed() -> None:
    """Refuse (ValueError) the driver when SkyWalking's protocol package is missing."""
    try:
        import skywalking.protocol.language_agent.Tracing_pb2_grpc  # noqa: F401
    except ImportError:
        raise ValueError("the SkyWalking driver needs apache-skywalking (its generated "
                         "protocol): pip install 'mosn[skywalking]'") from None


__all__ = ["DROPPED", "FAILED", "MALFORMED", "REPORTED", "SKYWALKING_STATS", "SW8", "Segment", "SkyWalkingTracer", "Sw8", "Sw8Error",
           "check_installed", "parse_sw8"]
