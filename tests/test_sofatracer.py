"""MOSN's SOFATracer driver: SOFATracer's JSON digest lines, read back from the files a
running mosn writes (an HTTP backend, the mock bolt server), with SOFA's HTTP and
bolt context."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import free_port
from mosn.config import ConfigError, validate
from mosn.testing.process import rpc_proxy_config
from test_access_log import backend, http_config, read_lines  # noqa: F401 (a fixture)
from test_tracing import bolt_call

SOFA_TRACE_ID = re.compile(r"^[0-9a-f]{8}\d{13}\d{4}\d+$")
"""SOFATracer's id: the IP in hex, the time in ms, a sequence, the pid."""


def sofa(config: dict[str, Any], kind: str, root: Path) -> dict[str, Any]:
    config["servers"][0]["listeners"][0]["type"] = kind
    config["tracing"] = {"enable": True, "driver": "SOFATracer",
                         "config": {"log_path": str(root)}}
    return config


def digest(path: Path, count: int) -> list[dict[str, str]]:
    return [json.loads(line) for line in read_lines(path, count)]


def test_egress_http_requests_write_client_digests_with_sofa_context(
        start_mosn, backend, tmp_path):  # noqa: F811
    port = free_port()
    mosn = start_mosn(sofa(http_config(port, backend, []), "egress", tmp_path))
    with httpx.Client(timeout=5) as client:
        assert client.get(f"http://127.0.0.1:{port}/ok/", headers={
            "SOFA-TraceId": "0a0fe8a71700000000001001234", "SOFA-RpcId": "0.1",
            "service": "com.example.Shop", "sofa_head_method_name": "buy"}).status_code == 200
        assert client.get(f"http://127.0.0.1:{port}/empty/").status_code == 503
    first, second = digest(tmp_path / "rpc-client-digest.log", 2)
    assert (first["traceId"], first["spanId"]) == ("0a0fe8a71700000000001001234", "0.1")
    assert (first["service"], first["method"], first["protocol"]) == (
        "com.example.Shop", "buy", "HTTP")
    assert first["span.kind"] == "client" and first["result.code"] == "00"
    assert first["remote.ip"] == f"127.0.0.1:{backend}"
    assert first["local.client.ip"] == "127.0.0.1" and first["invoke.type"] == "sync"
    assert int(first["client.elapse.time"]) >= 0 and int(first["resp.size"]) > 0
    assert SOFA_TRACE_ID.match(second["traceId"]) and second["spanId"] == "0"
    assert second["result.code"] == "02" and second["remote.ip"] == ""
    assert not (tmp_path / "rpc-server-digest.log").exists()
    assert mosn.stop() == 0


def test_ingress_bolt_requests_write_server_digests(start_mosn, mock_rpc_server, tmp_path):
    from mosn_sofarpc import BoltCodec

    server = mock_rpc_server(BoltCodec(), response_bytes=16)
    port = free_port()
    start_mosn(sofa(rpc_proxy_config(port, "bolt", [server.address]), "ingress", tmp_path))
    context = [("service", "com.example.Echo:1.0"), ("sofa_head_method_name", "hello"),
               ("rpc_trace_context.sofaTraceId", "0a0fe8a7170000000000100"),
               ("rpc_trace_context.sofaRpcId", "0.2")]
    assert all(bolt_call(port, context).status == 0 for _ in range(2))
    lines = digest(tmp_path / "rpc-server-digest.log", 2)
    for line in lines:
        assert (line["traceId"], line["spanId"]) == ("0a0fe8a7170000000000100", "0.2")
        assert (line["service"], line["method"], line["protocol"]) == (
            "com.example.Echo:1.0", "hello", "bolt")
        assert line["span.kind"] == "server" and line["result.code"] == "00"
        assert line["remote.ip"].startswith("127.0.0.1:")


def test_sofatracer_takes_log_path_only(tmp_path):
    config = sofa(http_config(free_port(), 1, []), "egress", tmp_path)
    config["tracing"]["config"]["exporter"] = "otlp"
    with pytest.raises(ConfigError) as info:
        validate(config)
    assert info.value.errors == [
        "tracing: config.exporter: the SOFATracer driver takes log_path only"]
