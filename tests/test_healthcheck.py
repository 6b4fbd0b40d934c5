"""The ``healthcheck`` stream filter: MOSN's sofarpc sample (bolt heartbeats answered by
mosn itself, requests proxied) and HTTP health checks answered locally, 503 once a
cluster has too few healthy hosts."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from http_scripted import proxy_config
from mosn.config import ConfigError, validate
from mosn.rpc.codec import FrameKind
from mosn.rpc.tools import codec_named
from mosn.testing import HttpBackend, MockServer, free_port, rpc_request
from mosn_sofarpc import CmdCode
from mosn_sofarpc.frames import build_request

SAMPLE = (Path(__file__).parent / "data" / "mosn_samples" / "sofarpc-with-xprotocol-sample"
          / "server_config.json")
IO_TIMEOUT = 10.0
DEADLINE = 10.0
"""Seconds for the health checker to find a dead host on a loaded machine."""


def test_mosns_sofarpc_sample_answers_heartbeats_and_proxies(start_mosn) -> None:
    codec = codec_named("bolt")
    upstream = MockServer(codec).start()
    try:
        config = json.loads(SAMPLE.read_text())
        port = free_port()
        config["servers"][0]["listeners"][0]["address"] = f"127.0.0.1:{port}"
        config["cluster_manager"]["clusters"][0]["hosts"] = [{"address": upstream.address}]
        config["admin"]["address"]["socket_address"] = {"address": "127.0.0.1",
                                                        "port_value": free_port()}
        start_mosn(config)
        with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
            sock.sendall(build_request(41, cmd_code=CmdCode.HEARTBEAT))
            buffer = bytearray()
            while (reply := codec.decode(buffer)) is None:
                buffer += sock.recv(65536)
        assert (reply.kind, reply.request_id) == (FrameKind.HEARTBEAT_REPLY, 41)
        assert upstream.requests == []  # answered by mosn, not the server
        assert rpc_request(codec, port, "com.example.EchoService").http_status == 200
    finally:
        upstream.stop()


def curl(port: int, path: str) -> tuple[int, str]:
    done = subprocess.run(["curl", "-sS", "-m", "10", "-o", "-", "-w", "\n%{http_code}",
                           f"http://127.0.0.1:{port}{path}"],
                          capture_output=True, text=True, check=True)
    body, _, code = done.stdout.rpartition("\n")
    return int(code), body


def test_http_health_checks_are_answered_locally(start_mosn) -> None:
    backend = HttpBackend()
    try:
        port = free_port()
        dead = free_port()
        hc = {"protocol": "tcp", "interval": "0.2s", "timeout": "0.2s",
              "initial_delay_seconds": "0.1s", "unhealthy_threshold": 1,
              "healthy_threshold": 1}
        config = proxy_config(port, int(backend.address.rpartition(":")[2]), listener={
            "stream_filters": [{"type": "healthcheck", "config": {
                "path": "/healthz",
                "cluster_min_healthy_percentages": {"db": {"value": 50}}}}]})
        config["cluster_manager"]["clusters"].append(
            {"name": "db", "health_check": hc, "hosts": [{"address": f"127.0.0.1:{dead}"}]})
        config["servers"][0]["listeners"].append({
            "name": "plain", "address": f"127.0.0.1:{free_port()}",
            "stream_filters": [{"type": "healthcheck", "config": {"path": "/ping"}}],
            "filter_chains": config["servers"][0]["listeners"][0]["filter_chains"]})
        start_mosn(config)
        plain = int(config["servers"][0]["listeners"][1]["address"].rpartition(":")[2])
        before = backend.requests
        assert curl(plain, "/ping") == (200, "OK\n")
        assert backend.requests == before
        assert curl(plain, "/other")[0] == 200
        assert backend.requests == before + 1
        deadline = time.monotonic() + DEADLINE
        while (status := curl(port, "/healthz")[0]) != 503 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status == 503  # the db cluster's only host is dead
    finally:
        backend.stop()


def test_an_unknown_cluster_is_refused() -> None:
    config = proxy_config(1, 2, listener={"stream_filters": [{"type": "healthcheck", "config": {
        "cluster_min_healthy_percentages": {"nowhere": {"value": 50}}}}]})
    with pytest.raises(ConfigError) as exc:
        validate(config)
    assert any("cluster_min_healthy_percentages.nowhere" in e for e in exc.value.errors)

