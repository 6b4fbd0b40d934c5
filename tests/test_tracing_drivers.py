"""MOSN's Zipkin and Jaeger tracing drivers end to end: a Zipkin receiver here
decoding the JSON v2 spans mosn posts, the OTLP receiver for Jaeger (Jaeger takes
OTLP), and the echoing uvicorn backend showing the context mosn sent upstream."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import httpx
import pytest

from conftest import free_port
from mosn.config import ConfigError, validate
from otlp_receiver import KIND_CLIENT, KIND_SERVER, OtlpReceiver
from test_access_log import backend, http_config  # noqa: F401 (a fixture)
from test_tracing import by_kind, new_ids

pytest.importorskip("opentelemetry.exporter.zipkin.json")
pytest.importorskip("opentelemetry.propagators.jaeger")


class ZipkinReceiver:
    """``POST /api/v2/spans``: Zipkin's JSON v2 span lists, kept decoded."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["content-length"]))
                assert self.path == "/api/v2/spans"
                receiver.spans += json.loads(body)
                self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}/api/v2/spans"

    def __enter__(self) -> "ZipkinReceiver":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def zipkin() -> Iterator[ZipkinReceiver]:
    with ZipkinReceiver() as r:
        yield r


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


def echoed(response: httpx.Response, name: str) -> list[str]:
    return [v for k, v in response.json()["headers"] if k == name]


def test_zipkin_driver_reads_and_writes_b3_and_posts_zipkin_spans(
        start_mosn, backend, zipkin):  # noqa: F811
    port = free_port()
    mosn = start_mosn(http_config(port, backend, [], enable=True, driver="Zipkin", config={
        "service_name": "edge", "endpoint": zipkin.endpoint, "batch_delay": "100ms"}))
    trace_id, caller = new_ids()
    with httpx.Client(timeout=5) as client:
        r = client.get(f"http://127.0.0.1:{port}/ok/echo", headers={
            "x-b3-traceid": f"{trace_id:032x}", "x-b3-spanid": f"{caller:016x}",
            "x-b3-parentspanid": "00000000000000aa", "x-b3-sampled": "1"})
    assert r.status_code == 200
    (sent_trace,) = echoed(r, "x-b3-traceid")
    (sent_span,) = echoed(r, "x-b3-spanid")
    assert echoed(r, "x-b3-sampled") == ["1"]
    assert echoed(r, "x-b3-parentspanid") == []  # the caller's parent is not passed on
    assert echoed(r, "traceparent") == []  # the driver speaks B3 only
    mosn.stop()  # shutdown posts what is left
    spans = {s["kind"]: s for s in zipkin.spans}
    server, client_span = spans["SERVER"], spans["CLIENT"]
    assert int(sent_trace, 16) == trace_id
    assert int(server["traceId"], 16) == int(client_span["traceId"], 16) == trace_id
    assert int(server["parentId"], 16) == caller
    assert client_span["parentId"] == server["id"]
    assert int(client_span["id"], 16) == int(sent_span, 16)  # the backend's parent
    assert server["localEndpoint"]["serviceName"] == "edge"
    assert server["tags"]["http.status_code"] == "200"


def test_zipkin_driver_takes_the_single_b3_header_when_told(start_mosn, backend, zipkin):  # noqa: F811
    port = free_port()
    mosn = start_mosn(http_config(port, backend, [], enable=True, driver="Zipkin", config={
        "endpoint": zipkin.endpoint, "batch_delay": "100ms", "propagation": ["b3"]}))
    trace_id, caller = new_ids()
    with httpx.Client(timeout=5) as client:
        r = client.get(f"http://127.0.0.1:{port}/ok/echo",
                       headers={"b3": f"{trace_id:032x}-{caller:016x}-1"})
    (sent,) = echoed(r, "b3")
    assert int(sent.split("-")[0], 16) == trace_id
    mosn.stop()
    (server,) = [s for s in zipkin.spans if s["kind"] == "SERVER"]
    assert int(server["parentId"], 16) == caller


def test_jaeger_driver_reads_and_writes_uber_trace_id_and_exports_otlp(
        start_mosn, backend, otlp):  # noqa: F811
    port = free_port()
    mosn = start_mosn(http_config(port, backend, [], enable=True, driver="Jaeger", config={
        "service_name": "edge", "endpoint": otlp.endpoint, "batch_delay": "100ms"}))
    trace_id, caller = new_ids()
    with httpx.Client(timeout=5) as client:
        r = client.get(f"http://127.0.0.1:{port}/ok/echo",
                       headers={"uber-trace-id": f"{trace_id:032x}:{caller:016x}:0:1"})
    assert r.status_code == 200
    (sent,) = echoed(r, "uber-trace-id")
    sent_trace, sent_span, _, flags = sent.split(":")
    mosn.stop()
    (server,) = by_kind(otlp.spans, KIND_SERVER)
    (client_span,) = by_kind(otlp.spans, KIND_CLIENT)
    assert int(sent_trace, 16) == server.trace_id == client_span.trace_id == trace_id
    assert server.parent_id == caller and client_span.parent_id == server.span_id
    assert int(sent_span, 16) == client_span.span_id and int(flags) & 1
    assert server.service == "edge"


@pytest.mark.parametrize(("tracing", "expected"), [
    ({"enable": True, "driver": "PluginDriver"}, "tracing: driver 'PluginDriver' is not supported"),
    ({"enable": True, "driver": "Zipkin", "config": {"propagation": ["b4"]}},
     "tracing.config: propagation 'b4'"),
    ({"enable": True, "driver": "Zipkin", "config": {"endpiont": "http://x"}},
     "tracing.config.endpiont: unknown field; did you mean 'endpoint'?"),
])
def test_a_bad_driver_config_is_refused_with_its_path(tracing, expected):  # noqa: F811
    config = http_config(free_port(), 1, [], **tracing)
    with pytest.raises(ConfigError) as info:
        validate(config)
    assert any(e.startswith(expected) for e in info.value.errors), info.value.errors
