"""Tracing with OpenTelemetry: a server span per downstream stream, a client span per
try upstream (a retry is a span of its own), and the trace context carried on.

HTTP: the W3C ``traceparent``/``tracestate`` of the request is the server span's
parent; the request sent upstream carries the client span's ``traceparent`` (the
upstream sees the proxy's client span as its parent).

RPC (bolt): SOFA tracer's ``rpc_trace_context.sofaTraceId`` and ``sofaRpcId`` in the
frame's header map join the caller's trace (a ``traceparent`` key in the map wins
when present). The SOFA id is mapped to an OpenTelemetry trace id without any state
(:func:`sofa_trace_id`), so every proxy on the way maps it the same. The frame sent
upstream gets ``traceparent`` (and, for a request that had no SOFA context, a
``sofaTraceId``/``sofaRpcId`` made from the trace) in its header map: the frame is
re-encoded, through the codec's optional ``with_headers``, only while tracing is on.

Sampling is OpenTelemetry's (``TraceIdRatioBased``, inside ``ParentBased`` unless
``parent_based: false``); an unsampled stream still gets span ids, so the context is
propagated all the same. The SDK is imported and the tracer provider (with its
export thread) built in each process on its first request, never before the
workers fork; ``close`` exports what is left. With tracing off no observer is
installed and nothing here is imported.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from mosn.proxy.observer import StreamObserver

if TYPE_CHECKING:
    from mosn.config.models import OpenTelemetryConfig
    from mosn.proxy.stream import DownstreamStream
    from mosn.proxy.upstream_request import UpstreamRequest

log = logging.getLogger("mosn.tracing")

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
B3_PARENT_SPAN_ID = "x-b3-parentspanid"
"""B3's optional parent header: the caller's, which the propagator does not write."""
SOFA_TRACE_ID = "rpc_trace_context.sofaTraceId"
SOFA_RPC_ID = "rpc_trace_context.sofaRpcId"
"""SOFA tracer's keys in a bolt header map (sofa-rpc ``RemotingConstants``, MOSN
``pkg/trace/sofa``)."""
SOFA_ROOT_RPC_ID = "0"
"""The rpc id SOFA tracer gives the first span of a trace."""
MAX_SOFA_HEX_ID = 32
"""Hex digits of a SOFA trace id taken as the trace id itself (an OpenTelemetry id
is 128 bits); a longer or non-hex id is hashed."""
SERVICE_NAME_KEY = "service.name"
TRACER_NAME = "mosn"


class TracingUnavailable(ValueError):
    pass


def check_installed(config: "OpenTelemetryConfig") -> None:
    """Refuse (ValueError) a tracing config whose packages are not installed."""
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        raise TracingUnavailable(
            "tracing needs opentelemetry-api and opentelemetry-sdk: "
            "pip install 'mosn[tracing]'") from None
    needs = [(config.exporter == "otlp", "opentelemetry.exporter.otlp.proto.http.trace_exporter",
              "exporter otlp", "opentelemetry-exporter-otlp-proto-http", "tracing"),
             (config.exporter == "zipkin", "opentelemetry.exporter.zipkin.json",
              "exporter zipkin", "opentelemetry-exporter-zipkin-json", "zipkin"),
             ("b3" in config.propagation or "b3multi" in config.propagation,
              "opentelemetry.propagators.b3", "B3 propagation", "opentelemetry-propagator-b3",
              "zipkin"),
             ("jaeger" in config.propagation, "opentelemetry.propagators.jaeger",
              "Jaeger propagation", "opentelemetry-propagator-jaeger", "jaeger")]
    for needed, module, what, package, extra in needs:
        if not needed:
            continue
        try:
            importlib.import_module(module)
        except ImportError:
            raise TracingUnavailable(f"{what} needs {package}: pip install "
                                     f"'mosn[{extra}]'") from None


def sofa_trace_id(text: str) -> int:
    """The OpenTelemetry trace id of a SOFA trace id: the id itself (left-padded with
    zeros) when it is 1 to 32 hex digits and not zero, else the first 16 bytes of its
    SHA-256. SOFA tracer's ids (IP in hex, a millisecond time, a sequence and a pid)
    are 30 hex digits, so they read unchanged in the trace id."""
    t = text.strip()
    if 0 < len(t) <= MAX_SOFA_HEX_ID:
        try:
            value = int(t, 16)
        except ValueError:
            value = 0
        if value:
            return value
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "big") or 1


def sofa_span_id(trace: str, rpc_id: str) -> int:
    """The span id standing for the SOFA caller's span ``rpc_id`` of trace ``trace``:
    the first 8 bytes of the SHA-256 of both (the same in every proxy)."""
    digest = hashlib.sha256(f"{trace}/{rpc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1


def traceparent(trace_id: int, span_id: int, flags: int) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"


def _span_name(head: Any) -> str:
    """HTTP: the method (OpenTelemetry's low-cardinality name); RPC: service/method."""
    if head.frame is None:
        return head.method
    return f"{head.authority}/{head.method}" if head.method else head.authority


class _HeadersGetter:
    """OpenTelemetry's ``Getter`` over mosn's :class:`~mosn.stream.types.Headers`."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        value = carrier.get(key)
        return None if value is None else [value]

    def keys(self, carrier: Any) -> list[str]:
        return list(carrier)


class _HeadersSetter:
    """OpenTelemetry's ``Setter`` over mosn's Headers."""

    def set(self, carrier: Any, key: str, value: str) -> None:
        carrier.set(key, value)


def _propagator(name: str) -> Any:
    """OpenTelemetry's propagator of a ``propagation`` format."""
    if name == "b3multi":
        from opentelemetry.propagators.b3 import B3MultiFormat

        return B3MultiFormat()
    if name == "b3":
        from opentelemetry.propagators.b3 import B3SingleFormat

        return B3SingleFormat()
    if name == "jaeger":
        from opentelemetry.propagators.jaeger import JaegerPropagator

        return JaegerPropagator()
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


class Tracing(StreamObserver):
    """The tracer of every L7 listener (one per process, built on the first request)."""

    def __init__(self, config: "OpenTelemetryConfig") -> None:
        self.config = config
        self._tracer: Any = None
        self._provider: Any = None
        self._injectors: dict[str, Any] = {}

    # -- setup ---------------------------------------------------------------------------

    def _start(self) -> Any:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        c = self.config
        sampler: Any = TraceIdRatioBased(c.sample_ratio)
        if c.parent_based:
            sampler = ParentBased(sampler)
        provider = TracerProvider(sampler=sampler, shutdown_on_exit=False,
                                  resource=Resource.create({SERVICE_NAME_KEY: c.service_name}))
        exporter = self._exporter()
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(
                exporter, schedule_delay_millis=c.batch_delay * 1000,
                export_timeout_millis=c.export_timeout * 1000))
        self._provider = provider
        self._tracer = provider.get_tracer(TRACER_NAME)
        self._trace = trace
        self._propagators = [_propagator(name) for name in c.propagation]
        self._fields = {f for p in self._propagators for f in p.fields}
        self._w3c = _propagator("tracecontext")  # RPC frames carry W3C's traceparent
        self._getter = _HeadersGetter()
        self._setter = _HeadersSetter()
        self._server = trace.SpanKind.SERVER
        self._client = trace.SpanKind.CLIENT
        self._error = trace.Status(trace.StatusCode.ERROR)
        return self._tracer

    def _exporter(self) -> Any:
        c = self.config
        if c.exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter(endpoint=c.endpoint, headers=c.headers or None,
                                    timeout=c.export_timeout)
        if c.exporter == "otlp_grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as OTLPGrpcSpanExporter,
            )

            return OTLPGrpcSpanExporter(endpoint=c.endpoint, headers=c.headers or None,
                                        timeout=c.export_timeout)
        if c.exporter == "zipkin":
            from opentelemetry.exporter.zipkin.json import ZipkinExporter

            return ZipkinExporter(endpoint=c.endpoint, timeout=int(c.export_timeout))
        if c.exporter == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            return ConsoleSpanExporter(out=sys.stdout)
        return None

    def register_stats(self, store: Any) -> None:
        """The tracer counts nothing of its own (OpenTelemetry's SDK counts its drops)."""

    def close(self) -> None:
        """Export the spans not exported yet (at shutdown)."""
        if self._provider is not None:
            self._provider.shutdown()

    # -- observer ------------------------------------------------------------------------

    def on_request(self, stream: "DownstreamStream") -> None:
        tracer = self._tracer or self._start()
        head = stream.request
        assert head is not None
        peer = stream.conn.remote_address
        if head.frame is None:
            parent = self._http_parent(head.headers)
            attributes: dict[str, Any] = {"http.method": head.method, "http.target": head.path,
                                          "http.scheme": head.scheme}
        else:
            parent = self._rpc_parent(head.headers)
            attributes = {"rpc.system": stream.protocol, "rpc.service": head.authority,
                          "rpc.method": head.method}
        attributes["mosn.protocol"] = stream.protocol
        if isinstance(peer, tuple):
            attributes["net.peer.ip"] = peer[0]
            attributes["net.peer.port"] = peer[1]
        stream.span = tracer.start_span(_span_name(head), context=parent, kind=self._server,
                                        attributes=attributes)

    def _http_parent(self, headers: Any) -> Any:
        """The context of the first format in ``propagation`` the request carries."""
        trace = self._trace
        for propagator in self._propagators:
            context = propagator.extract(headers, getter=self._getter)
            if trace.get_current_span(context).get_span_context().is_valid:
                return context
        return None

    def _rpc_parent(self, headers: Any) -> Any:
        if headers.get(TRACEPARENT) is not None:
            return self._w3c.extract(headers, getter=self._getter)
        sofa = headers.get(SOFA_TRACE_ID)
        if not sofa:
            return None
        trace = self._trace
        rpc_id = headers.get(SOFA_RPC_ID) or SOFA_ROOT_RPC_ID
        # A SOFA caller records its spans: its context counts as a sampled parent.
        context = trace.SpanContext(sofa_trace_id(sofa), sofa_span_id(sofa, rpc_id),
                                    is_remote=True,
                                    trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED))
        return trace.set_span_in_context(trace.NonRecordingSpan(context))

    def on_upstream_request(self, stream: "DownstreamStream", upstream: "UpstreamRequest") -> None:
        server = stream.span
        if server is None:
            return
        head = stream.request
        assert head is not None
        attributes = {"mosn.upstream.cluster": upstream.cluster.name,
                      "mosn.upstream.host": str(upstream.host), "mosn.retry": upstream.retry}
        if head.frame is None:
            attributes["http.method"] = head.method
        span = self._tracer.start_span(_span_name(head), kind=self._client, attributes=attributes,
                                       context=self._trace.set_span_in_context(server))
        upstream.span = span
        ctx = span.get_span_context()
        parent = traceparent(ctx.trace_id, ctx.span_id, ctx.trace_flags)
        state = ctx.trace_state.to_header()
        if head.frame is None:
            headers = head.headers
            for name in self._fields | {TRACESTATE, B3_PARENT_SPAN_ID}:
                if name in headers:  # the caller's, now stale
                    headers.remove(name)
            context = self._trace.set_span_in_context(span)
            for propagator in self._propagators:
                propagator.inject(headers, context=context, setter=self._setter)
            return
        updates = {TRACEPARENT: parent}
        if state:
            updates[TRACESTATE] = state
        if not head.headers.get(SOFA_TRACE_ID):
            updates[SOFA_TRACE_ID] = f"{ctx.trace_id:032x}"
            updates[SOFA_RPC_ID] = SOFA_ROOT_RPC_ID
        self._inject_frame(stream, head, updates)

    def _inject_frame(self, stream: "DownstreamStream", head: Any, updates: dict[str, str]) -> None:
        inject = self._injectors.get(stream.protocol, False)
        if inject is False:
            protocol = stream.ctx.protocols.get(stream.protocol)
            codec = getattr(protocol, "codec", None)
            inject = self._injectors[stream.protocol] = getattr(codec, "with_headers", None)
        if inject is None:
            return  # this protocol's codec cannot add header fields: the context stops here
        try:
            frame = head.frame
            # The new frame's headers list the keys it now has: a retry replaces them.
            head.frame = replace(frame, data=inject(frame, updates),
                                 headers={**frame.headers, **updates})
        except Exception:  # a frame the codec cannot re-encode goes on unchanged
            log.exception("tracing: could not add the trace context to a %s frame",
                          stream.protocol)

    def on_upstream_end(self, stream: "DownstreamStream", upstream: "UpstreamRequest") -> None:
        span = upstream.span
        if span is None:
            return
        upstream.span = None
        code = upstream.response_code
        if code:
            span.set_attribute("http.status_code", code)
        if code == 0 or code >= 500:
            span.set_status(self._error)
        span.end()

    def on_stream_end(self, stream: "DownstreamStream") -> None:
        span = stream.span
        if span is None:
            return
        code = stream.response_code
        if span.is_recording():
            if code:
                span.set_attribute("http.status_code", code)
            if stream.response_flags:
                span.set_attribute("mosn.response_flags", ",".join(stream.response_flags))
            if stream.cluster is not None:
                span.set_attribute("mosn.upstream.cluster", stream.cluster.name)
            if stream.host is not None:
                span.set_attribute("mosn.upstream.host", str(stream.host))
            if code == 0 or code >= 500 or stream.response_flags:
                span.set_status(self._error)
        span.end()


__all__ = ["SOFA_RPC_ID", "SOFA_TRACE_ID", "Tracing", "check_installed", "sofa_span_id",
           "sofa_trace_id", "traceparent"]
