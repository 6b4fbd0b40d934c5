"""Tracing end to end: mosn with ``tracing`` on, an OTLP/HTTP receiver started here
(spans decoded from protobuf), uvicorn (examples/http_upstream.py, which echoes the
headers it got) and a recording bolt server as backends. mosn is stopped before the
spans are read: shutdown exports what is left."""

from __future__ import annotations

import random
import socket
import uuid
from typing import Any, Iterator

import httpx
import pytest

from conftest import free_port
from mosn.observability.tracing import SOFA_RPC_ID, SOFA_TRACE_ID, sofa_span_id, sofa_trace_id
from otlp_receiver import (
    KIND_CLIENT,
    KIND_SERVER,
    STATUS_ERROR,
    OtlpGrpcReceiver,
    OtlpReceiver,
    Span,
)
from test_access_log import backend, http_config  # noqa: F401 (a fixture)

pytest.importorskip("opentelemetry.sdk.trace")

SAMPLED = 0x01
"""The sampled bit of a traceparent's flags."""


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


def tracing(receiver: OtlpReceiver | None = None, **config: Any) -> dict[str, Any]:
    if receiver is not None:
        config = {"exporter": "otlp", "endpoint": receiver.endpoint, **config}
    return {"enable": True, "driver": "OpenTelemetry",
            "config": {"batch_delay": "100ms", "service_name": "edge", **config}}


def new_ids() -> tuple[int, int]:
    return random.getrandbits(128) | 1, random.getrandbits(64) | 1


def upstream_traceparent(response: httpx.Response) -> tuple[int, int, str]:
    """The trace id, parent span id and flags of the traceparent the backend got."""
    (value,) = [v for k, v in response.json()["headers"] if k == "traceparent"]
    version, trace_id, parent_id, flags = value.split("-")
    assert version == "00"
    return int(trace_id, 16), int(parent_id, 16), flags


def by_kind(spans: list[Span], kind: int) -> list[Span]:
    return [s for s in spans if s.kind == kind]


# -- HTTP ------------------------------------------------------------------------------------


def test_http_context_propagated_through_the_backend(start_mosn, backend, receiver):  # noqa: F811
    port = free_port()
    mosn = start_mosn(http_config(port, backend, [], **tracing(receiver)))
    trace_id, caller_span = new_ids()
    with httpx.Client(timeout=5) as client:
        r = client.get(f"http://127.0.0.1:{port}/ok/echo", headers={
            "traceparent": f"00-{trace_id:032x}-{caller_span:016x}-01",
            "tracestate": "vendor=abc"})
    assert r.status_code == 200
    seen_trace, seen_parent, flags = upstream_traceparent(r)
    assert ["tracestate", "vendor=abc"] in r.json()["headers"]
    mosn.stop()
    (server,) = by_kind(receiver.spans, KIND_SERVER)
    (client_span,) = by_kind(receiver.spans, KIND_CLIENT)
    assert seen_trace == trace_id and flags == "01"
    assert server.trace_id == client_span.trace_id == trace_id
    assert server.parent_id == caller_span
    assert client_span.parent_id == server.span_id
    assert seen_parent == client_span.span_id  # the backend's parent is the proxy's try
    assert server.service == "edge" and server.name == "GET"
    assert server.attributes["http.method"] == "GET"
    assert server.attributes["http.status_code"] == 200
    assert server.attributes["mosn.upstream.cluster"] == "backend"
    assert client_span.attributes["mosn.upstream.host"] == f"127.0.0.1:{backend}"
    assert server.status != STATUS_ERROR and client_span.status != STATUS_ERROR


def test_http2_context_propagated_to_an_http1_backend(start_mosn, backend, receiver):  # noqa: F811
    port = free_port()
    config = http_config(port, backend, [], **tracing(receiver))
    proxy = config["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"]
    proxy.update(downstream_protocol="Http2", upstream_protocol="Http1")
    mosn = start_mosn(config)
    trace_id, caller_span = new_ids()
    with httpx.Client(http1=False, http2=True, timeout=5) as client:
        r = client.get(f"http://127.0.0.1:{port}/ok/echo", headers={
            "traceparent": f"00-{trace_id:032x}-{caller_span:016x}-01"})
    assert r.http_version == "HTTP/2" and r.status_code == 200
    seen_trace, seen_parent, _ = upstream_traceparent(r)
    mosn.stop()
    (server,) = by_kind(receiver.spans, KIND_SERVER)
    (client_span,) = by_kind(receiver.spans, KIND_CLIENT)
    assert seen_trace == server.trace_id == client_span.trace_id == trace_id
    assert server.parent_id == caller_span and client_span.parent_id == server.span_id
    assert seen_parent == client_span.span_id


def test_a_request_without_context_starts_a_trace(start_mosn, backend, receiver):  # noqa: F811
    port = free_port()
    mosn = start_mosn(http_config(port, backend, [], **tracing(receiver)))
    r = httpx.get(f"http://127.0.0.1:{port}/ok/echo", timeout=5)
    seen_trace, seen_parent, flags = upstream_traceparent(r)
    mosn.stop()
    (server,) = by_kind(receiver.spans, KIND_SERVER)
    (client_span,) = by_kind(receiver.spans, KIND_CLIENT)
    assert server.parent_id == 0 and server.trace_id == seen_trace
    assert seen_parent == client_span.span_id
    assert int(flags, 16) & SAMPLED  # (and W3C level 2's random-id flag, 0x02)


def test_otlp_over_grpc_exports_the_same_spans(start_mosn, backend):  # noqa: F811
    port = free_port()
    trace_id, caller_span = new_ids()
    with OtlpGrpcReceiver() as receiver:
        mosn = start_mosn(http_config(port, backend, [], **tracing(
            exporter="otlp_grpc", endpoint=receiver.endpoint)))
        r = httpx.get(f"http://127.0.0.1:{port}/ok/echo", timeout=5, headers={
            "traceparent": f"00-{trace_id:032x}-{caller_span:016x}-01"})
        seen_trace, seen_parent, _ = upstream_traceparent(r)
        mosn.stop()  # shutdown exports what is left
        (server,) = by_kind(receiver.spans, KIND_SERVER)
        (client_span,) = by_kind(receiver.spans, KIND_CLIENT)
    assert server.service == "edge"
    assert seen_trace == server.trace_id == client_span.trace_id == trace_id
    assert server.parent_id == caller_span and client_span.parent_id == server.span_id
    assert seen_parent == client_span.span_id


def test_retry_is_a_client_span_of_its_own(start_mosn, backend, receiver):  # noqa: F811
    port = free_port()
    mosn = start_mosn(http_config(port, backend, [], **tracing(receiver)))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        assert client.get(f"/retry/{uuid.uuid4().hex}").status_code == 200
    mosn.stop()
    (server,) = by_kind(receiver.spans, KIND_SERVER)
    tries = by_kind(receiver.spans, KIND_CLIENT)
    assert len(tries) == 2
    assert {t.parent_id for t in tries} == {server.span_id}
    assert len({t.span_id for t in tries}) == 2
    first, second = sorted(tries, key=lambda t: t.attributes["mosn.retry"])
    assert (first.attributes["http.status_code"], first.status) == (503, STATUS_ERROR)
    assert second.attributes["http.status_code"] == 200 and second.status != STATUS_ERROR
    assert server.attributes["http.status_code"] == 200


def test_failures_mark_spans_as_errors(start_mosn, backend, receiver):  # noqa: F811
    port = free_port()
    mosn = start_mosn(http_config(port, backend, [], **tracing(receiver)))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        assert client.get("/none/").status_code == 404
        assert client.get("/dead/").status_code == 503
    mosn.stop()
    servers = sorted(by_kind(receiver.spans, KIND_SERVER),
                     key=lambda s: s.attributes["http.status_code"])
    assert [(s.attributes["http.status_code"], s.attributes["mosn.response_flags"], s.status)
            for s in servers] == [(404, "NR", STATUS_ERROR), (503, "UF", STATUS_ERROR)]
    (failed_try,) = by_kind(receiver.spans, KIND_CLIENT)
    assert failed_try.status == STATUS_ERROR and "http.status_code" not in failed_try.attributes


def test_ratio_zero_exports_nothing_and_still_propagates(start_mosn, backend, receiver):  # noqa: F811
    port = free_port()
    mosn = start_mosn(http_config(port, backend, [], **tracing(
        receiver, sample_ratio=0, parent_based=False)))
    trace_id, caller_span = new_ids()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        joined = client.get("/ok/echo", headers={
            "traceparent": f"00-{trace_id:032x}-{caller_span:016x}-01"})
        fresh = client.get("/ok/echo")
    seen_trace, seen_parent, flags = upstream_traceparent(joined)
    assert seen_trace == trace_id and seen_parent not in (0, caller_span) and flags == "00"
    new_trace, new_parent, new_flags = upstream_traceparent(fresh)
    assert new_trace not in (0, trace_id) and new_parent != 0
    assert not int(new_flags, 16) & SAMPLED
    mosn.stop()
    assert receiver.spans == []


def test_access_log_carries_the_trace_id(start_mosn, backend, tmp_path):  # noqa: F811
    from test_access_log import read_lines

    log = tmp_path / "access.log"
    port = free_port()
    start_mosn(http_config(port, backend, [{"log_path": str(log), "log_format": "%trace_id%"}],
                           **tracing(exporter="none")))
    trace_id, caller_span = new_ids()
    httpx.get(f"http://127.0.0.1:{port}/ok/echo", timeout=5,
              headers={"traceparent": f"00-{trace_id:032x}-{caller_span:016x}-01"})
    assert read_lines(log, 1) == [f"{trace_id:032x}"]


def test_tracing_config_errors(backend):  # noqa: F811
    from mosn.config.loader import ConfigError, validate

    raw = http_config(free_port(), backend, [], enable=True, driver="Lightstep")
    with pytest.raises(ConfigError, match=r"tracing: .*driver 'Lightstep' is not supported"):
        validate(raw)
    raw = http_config(free_port(), backend, [], enable=True, config={"exporter": "jaeger"})
    with pytest.raises(ConfigError, match=r"tracing\.config: .*exporter 'jaeger'"):
        validate(raw)


# -- bolt ------------------------------------------------------------------------------------


def bolt_call(port: int, headers: list[tuple[str, str]]) -> Any:
    from mosn_sofarpc import BoltCodec
    from mosn_sofarpc.frames import Serialization, build_request, encode_header_map

    codec = BoltCodec()
    frame = build_request(1, codec=Serialization.PROTOBUF, timeout_ms=3000,
                          class_name=b"com.alipay.sofa.rpc.core.request.SofaRequest",
                          header=encode_header_map(headers), content=b"payload")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(frame)
        buffer = bytearray()
        while (reply := codec.decode(buffer)) is None:
            buffer += s.recv(65536)
    return reply


def test_bolt_joins_the_sofa_trace_and_carries_it_on(start_mosn, mock_rpc_server, receiver):
    from mosn.testing.process import rpc_proxy_config
    from mosn_sofarpc import BoltCodec

    server = mock_rpc_server(BoltCodec())
    port = free_port()
    config = rpc_proxy_config(port, "bolt", [server.address])
    config["tracing"] = tracing(receiver)
    mosn = start_mosn(config)
    sofa = "0a1fe0c51518659590447100137474"  # SOFA tracer's form: IP, ms time, seq, pid
    service = [("service", "com.example.Echo:1.0"), ("sofa_head_method_name", "hello")]
    joined = bolt_call(port, service + [(SOFA_TRACE_ID, sofa), (SOFA_RPC_ID, "0.1")])
    fresh = bolt_call(port, service)
    assert joined.status == 0 and fresh.status == 0
    mosn.stop()
    got_joined, got_fresh = (frame.headers for frame in server.requests)
    servers = by_kind(receiver.spans, KIND_SERVER)
    clients = by_kind(receiver.spans, KIND_CLIENT)
    assert len(servers) == len(clients) == 2
    mapped = int(sofa, 16)
    (server_span,) = [s for s in servers if s.trace_id == mapped]
    (client_span,) = [s for s in clients if s.trace_id == mapped]
    assert server_span.parent_id == sofa_span_id(sofa, "0.1")
    assert client_span.parent_id == server_span.span_id
    assert server_span.name == "com.example.Echo:1.0/hello"
    assert server_span.attributes["rpc.service"] == "com.example.Echo:1.0"
    # the upstream keeps the caller's SOFA context and sees the proxy's try as parent
    assert (got_joined[SOFA_TRACE_ID], got_joined[SOFA_RPC_ID]) == (sofa, "0.1")
    assert got_joined["traceparent"] == f"00-{mapped:032x}-{client_span.span_id:016x}-01"
    assert got_joined["service"] == "com.example.Echo:1.0"
    # a request without SOFA context starts a trace the upstream's SOFA tracer can join
    (fresh_client,) = [s for s in clients if s.trace_id != mapped]
    assert got_fresh[SOFA_TRACE_ID] == f"{fresh_client.trace_id:032x}"
    assert got_fresh[SOFA_RPC_ID] == "0"
    assert sofa_trace_id(got_fresh[SOFA_TRACE_ID]) == fresh_client.trace_id


def test_sofa_trace_id_mapping():
    assert sofa_trace_id("0a1fe0c51518659590447100137474") == 0x0a1fe0c51518659590447100137474
    hashed = sofa_trace_id("not-hex-at-all")
    assert hashed == sofa_trace_id("not-hex-at-all") and 0 < hashed < 2 ** 128
    assert sofa_trace_id("0" * 30) not in (0, sofa_trace_id("not-hex-at-all"))
    assert sofa_trace_id("f" * 40) < 2 ** 128  # longer than an OpenTelemetry id: hashed
    assert sofa_span_id("t", "0.1") != sofa_span_id("t", "0.2")


def test_console_exporter_prints_spans(start_mosn, backend):  # noqa: F811
    port = free_port()
    mosn = start_mosn(http_config(port, backend, [], **tracing(exporter="console")))
    trace_id, caller_span = new_ids()
    httpx.get(f"http://127.0.0.1:{port}/ok/echo", timeout=5,
              headers={"traceparent": f"00-{trace_id:032x}-{caller_span:016x}-01"})
    mosn.stop()
    output = mosn.log_path.read_text()
    assert output.count(f'"trace_id": "0x{trace_id:032x}"') == 2  # the server and client spans
    assert '"kind": "SpanKind.SERVER"' in output and '"kind": "SpanKind.CLIENT"' in output
