"""MOSN's SkyWalking driver end to end: mosn between an HTTP client that sends
``sw8`` and uvicorn (examples/http_upstream.py, which echoes the headers it got),
reporting its segments over gRPC to a SkyWalking trace receiver started here
(SkyWalking's generated service, tests/skywalking_receiver.py)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any, Iterator

import httpx
import pytest

from conftest import free_port
from mosn.config import ConfigError, validate
from mosn.testing.certs import CertificateAuthority
from test_access_log import backend, http_config, read_lines  # noqa: F401 (a fixture)

pytest.importorskip("skywalking.protocol.language_agent.Tracing_pb2_grpc")

from mosn.observability.skywalking import (  # noqa: E402
    DROPPED,
    FAILED,
    MOSN_COMPONENT_ID,
    REPORTED,
    SW8,
    Reporter,
    Segment,
    Sw8,
    Sw8Error,
    parse_sw8,
)
from skywalking_receiver import SkyWalkingReceiver  # noqa: E402

ENTRY, EXIT = 0, 1
"""``SpanType`` of SkyWalking's Tracing.proto."""
CALLER = Sw8(True, "trace-from-the-caller", "caller-segment", 3, "shop", "shop-1@host",
             "/buy", "127.0.0.1:2046")


OAP_NAME = "oap.test"
"""The name in the TLS receiver's certificate (mosn reaches it at 127.0.0.1)."""


@pytest.fixture
def oap_tls(tmp_path) -> Iterator[tuple[SkyWalkingReceiver, str]]:
    """A receiver behind TLS, and the file of the CA that issued its certificate."""
    issued = CertificateAuthority().issue(dns=[OAP_NAME])
    ca = tmp_path / "oap-ca.crt"
    ca.write_bytes(issued.ca_pem)
    with SkyWalkingReceiver((issued.cert_pem, issued.key_pem)) as r:
        yield r, str(ca)


def skywalking(address: str, **config: Any) -> dict[str, Any]:
    return {"enable": True, "driver": "SkyWalking",
            "config": {"reporter": "gRPC", "backend_service": address,
                       "service_name": "edge", **config}}


def sent_upstream(response: httpx.Response) -> Sw8:
    (value,) = [v for k, v in response.json()["headers"] if k == SW8]
    return parse_sw8(value)


def tags(span: Any) -> dict[str, str]:
    return {t.key: t.value for t in span.tags}


def test_sw8_continued_upstream_and_segments_reported(start_mosn, backend, oap_tls,  # noqa: F811
                                                      tmp_path):
    """(The OAP is reached over TLS, as MOSN's ``tls`` config says.)"""
    oap, ca = oap_tls
    port = free_port()
    log = tmp_path / "access.log"
    config = http_config(port, backend, [{"log_path": str(log), "log_format": "%trace_id%"}],
                         **skywalking(oap.address, authentication="secret", tls={
                             "cert_file": ca, "server_name_override": OAP_NAME}))
    proxy = config["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"]
    proxy.update(downstream_protocol="Auto", upstream_protocol="Http1")
    mosn = start_mosn(config)
    with httpx.Client(http1=False, http2=True, timeout=5) as client:
        over_h2 = client.get(f"http://127.0.0.1:{port}/ok/echo")
    with httpx.Client(timeout=5) as client:
        joined = client.get(f"http://127.0.0.1:{port}/ok/echo?x=1",
                            headers={SW8: CALLER.encode()})
        bad = client.get(f"http://127.0.0.1:{port}/ok/echo", headers={SW8: "1-not-a-context"})
        failed = client.get(f"http://127.0.0.1:{port}/dead/")
        unsampled = client.get(f"http://127.0.0.1:{port}/ok/echo", headers={
            SW8: replace(CALLER, sampled=False, trace_id="not-recorded").encode()})
    assert joined.status_code == 200 and bad.status_code == 200
    assert failed.status_code >= 500
    assert mosn.wait_stat("tracing.sw8_malformed", 1)["tracing.sw8_malformed"] == 1
    dump = mosn.admin("/config_dump").text  # the OAP's token is not shown
    assert '"authentication": "[redacted]"' in dump.replace('":"', '": "') and "secret" not in dump

    # The request sent upstream carries mosn's context (the caller's sw8 replaced).
    upstream = sent_upstream(joined)
    assert upstream.trace_id == CALLER.trace_id and upstream.sampled
    assert upstream.service == "edge" and upstream.endpoint == "/ok/echo"
    assert upstream.span_id == 1 and upstream.peer == f"127.0.0.1:{backend}"
    fresh = sent_upstream(bad)  # a malformed context: a new trace, not an error
    passed_on = sent_upstream(unsampled)  # the caller's "not sampled" goes on, unrecorded
    assert passed_on.trace_id == "not-recorded" and not passed_on.sampled
    assert fresh.trace_id not in (CALLER.trace_id, upstream.trace_id)
    assert fresh.segment_id != upstream.segment_id

    h2 = sent_upstream(over_h2)
    oap.wait(4)
    mosn.stop()  # sends what is queued
    segments = {s.traceSegmentId: s for s in oap.segments}
    assert len(segments) == 4 and oap.metadata[0]["authentication"] == "secret"
    assert over_h2.http_version == "HTTP/2" and segments.pop(h2.segment_id).traceId == h2.trace_id
    seg = segments[upstream.segment_id]
    assert seg.traceId == CALLER.trace_id and seg.service == "edge"
    assert seg.serviceInstance == upstream.instance
    (exit_span, entry) = sorted(seg.spans, key=lambda s: s.spanType, reverse=True)
    assert (entry.spanType, entry.spanId, entry.parentSpanId) == (ENTRY, 0, -1)
    assert entry.operationName == "/ok/echo" and entry.componentId == MOSN_COMPONENT_ID
    assert tags(entry) == {"http.method": "GET", "url": f"127.0.0.1:{port}/ok/echo?x=1",
                           "status_code": "200"}
    assert not entry.isError and entry.startTime <= exit_span.startTime <= entry.endTime
    (ref,) = entry.refs  # the caller's segment and span, from its sw8
    assert (ref.traceId, ref.parentTraceSegmentId, ref.parentSpanId) == (
        CALLER.trace_id, CALLER.segment_id, CALLER.span_id)
    assert (ref.parentService, ref.parentServiceInstance, ref.parentEndpoint,
            ref.networkAddressUsedAtPeer) == (CALLER.service, CALLER.instance, CALLER.endpoint,
                                              CALLER.peer)
    assert (exit_span.spanType, exit_span.spanId, exit_span.parentSpanId) == (EXIT, 1, 0)
    assert exit_span.peer == f"127.0.0.1:{backend}" and tags(exit_span) == {"status_code": "200"}

    started = segments[fresh.segment_id]
    assert started.traceId == fresh.trace_id
    assert not [s for s in started.spans if s.refs]  # no parent: it starts the trace
    (failure,) = [s for s in segments.values()
                  if s.traceSegmentId not in (upstream.segment_id, fresh.segment_id)]
    assert all(s.isError for s in failure.spans)  # the dead host: the try and the request
    assert [s.operationName for s in failure.spans if s.spanType == ENTRY] == ["/dead/"]
    lines = read_lines(log, 4)
    assert lines[:4] == [h2.trace_id, CALLER.trace_id, fresh.trace_id, failure.traceId]


def reporter(**config: Any) -> tuple[Reporter, list[tuple[int, int]]]:
    """A reporter thread as a mosn process runs one, and what it counted."""
    counted: list[tuple[int, int]] = []
    tracing = validate(http_config(free_port(), 1, [], **skywalking("", **config))).config.tracing
    return Reporter(tracing.config, "edge", "edge-1@host", lambda which, n=1:
                    counted.append((which, n))), counted


def test_reporter_log_writes_each_segment_as_json(caplog):
    report, counted = reporter(reporter="log")
    segment = Segment("t-1", True, CALLER, "/buy", "GET", "shop/buy")
    with caplog.at_level(logging.INFO, logger="mosn.tracing"):
        report.put(segment, segment.start + 1, 200)
        report.close()
    (line,) = [r.getMessage() for r in caplog.records]
    message = json.loads(line.removeprefix("tracing: segment "))
    assert message["traceId"] == "t-1" and message["service"] == "edge"
    assert message["spans"][0]["refs"][0]["parentTraceSegmentId"] == CALLER.segment_id
    assert counted == [(REPORTED, 1)]


def test_reporter_grpc_in_plaintext():
    with SkyWalkingReceiver() as oap:
        report, counted = reporter(backend_service=oap.address)
        report.put(Segment("t-2", True, None, "/", "GET", "x/"), 0, 200)
        report.close()
        (segment,) = oap.wait(1)
    assert segment.traceId == "t-2" and segment.serviceInstance == "edge-1@host"
    assert counted == [(REPORTED, 1)]


def test_an_unreachable_oap_counts_a_failure_and_the_lost_segments():
    report, counted = reporter(backend_service=f"127.0.0.1:{free_port()}")
    for _ in range(2):
        report.put(Segment("t", True, None, "/", "GET", "x/"), 0, 200)
    report.close()
    assert sorted(counted) == [(DROPPED, 2), (FAILED, 1)]


@pytest.mark.parametrize("value", [
    "", "1", "2-dA==-cw==-0-cw==-aQ==-ZQ==-cA==", "1-dA==-cw==-x-cw==-aQ==-ZQ==-cA==",
    "1-!!!-cw==-0-cw==-aQ==-ZQ==-cA==", "1--cw==-0-cw==-aQ==-ZQ==-cA==",
    "1-dA==-cw==-0-cw==-aQ==-ZQ==", "1-" + "A" * 5000,
    "1-dAp4-cw==-0-cw==-aQ==-ZQ==-cA==",  # a trace id with a line feed: not for a log
])
def test_a_malformed_sw8_is_refused(value):
    with pytest.raises(Sw8Error):
        parse_sw8(value)


def test_sw8_round_trips():
    assert parse_sw8(CALLER.encode()) == CALLER
    # The propagation protocol's own example header, decoded.
    ctx = parse_sw8("1-MWYyZDRiZjQ3YmY3MTFlYWI3OTRhY2RlNDgwMDExMjI=-"
                    "NWU3YzIwNGE3YmY3MTFlYWI4NThhY2RlNDgwMDExMjI=-0-"
                    "c2VydmljZQ==-aW5zdGFuY2U=-L2FwcA==-MTI3LjAuMC4xOjgwODA=")
    assert ctx == Sw8(True, "1f2d4bf47bf711eab794acde48001122",
                      "5e7c204a7bf711eab858acde48001122", 0, "service", "instance", "/app",
                      "127.0.0.1:8080")


@pytest.mark.parametrize(("tracing", "expected"), [
    ({"enable": True, "driver": "SkyWalking", "config": {"reporter": "kafka"}},
     "tracing: config.reporter: 'kafka'"),
    ({"enable": True, "driver": "SkyWalking", "config": {"reporter": "gRPC"}},
     "tracing: config.backend_service: the SkyWalking driver's gRPC reporter needs"),
    ({"enable": True, "driver": "SkyWalking", "config": {"endpoint": "http://x"}},
     "tracing: config.endpoint: the SkyWalking driver takes reporter"),
    ({"enable": True, "driver": "SkyWalking", "config": {"tls": {"cert_file": "no-ca.pem"}}},
     "tracing.config.tls.cert_file: cannot read "),
    ({"enable": True, "driver": "SkyWalking", "config": {"tls": {"ca": "x"}}},
     "tracing.config.tls.ca: unknown field"),
    ({"enable": True, "driver": "Zipkin", "config": {"backend_service": "127.0.0.1:1"}},
     "tracing: config.backend_service: the SkyWalking driver's key"),
    ({"enable": True, "driver": "PluginDriver", "config": {}},
     "tracing: driver 'PluginDriver' is not supported"),
])
def test_a_bad_skywalking_config_is_refused_with_its_path(tracing, expected):
    with pytest.raises(ConfigError) as info:
        validate(http_config(free_port(), 1, [], **tracing))
    assert any(e.startswith(expected) for e in info.value.errors), info.value.errors
