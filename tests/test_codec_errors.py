"""A stream-connection codec that raises (a plugin's bug) is answered in its protocol,
counted and logged, and nothing else is disturbed: the HTTP/1 and HTTP/2 plugins'
server codecs, made to raise on purpose by a test plugin (tests/plugins/faulty),
with curl, httpx and h2 as clients. (The RPC engine's codecs: tests/test_rpc_engine.py.)"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from typing import Any, Iterator

import h2.config
import h2.connection
import h2.errors
import h2.events
import httpx
import pytest

from conftest import ROOT, Mosn, free_port
from mosn.testing import pip_install_target

TRIGGER = "boom"
"""What makes the faulty codecs raise (tests/plugins/faulty)."""
READ_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site-faulty")
    pip_install_target(ROOT / "tests" / "plugins" / "faulty", target)
    return target


@pytest.fixture
def faulty_mosn(site: Path, tmp_path: Path) -> Iterator[Any]:
    """mosn speaking ``protocol`` on a listener whose every request is answered 200
    ``ok`` by the proxy itself."""
    started = []

    def start(protocol: str) -> tuple[int, Mosn]:
        port = free_port()
        config = {
            "servers": [{
                "routers": [{"router_config_name": "local", "virtual_hosts": [{
                    "name": "local", "domains": ["*"], "routers": [
                        {"match": {"prefix": "/"},
                         "direct_response": {"status": 200, "body": "ok"}}]}]}],
                "listeners": [{
                    "name": "web", "address": f"127.0.0.1:{port}",
                    "filter_chains": [{"filters": [{"type": "proxy", "config": {
                        "downstream_protocol": protocol, "router_config_name": "local"}}]}],
                }],
            }],
        }
        mosn = Mosn(config, tmp_path, env={**os.environ, "PYTHONPATH": str(site)})
        started.append(mosn)
        return port, mosn

    yield start
    for mosn in started:
        mosn.stop()


def test_http1_codec_raising_is_answered_500_and_other_connections_go_on(faulty_mosn):
    port, mosn = faulty_mosn("FaultyHttp1")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=READ_TIMEOUT) as client:
        assert client.get("/").text == "ok"
        failed = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
             f"http://127.0.0.1:{port}/{TRIGGER}"],
            capture_output=True, text=True, timeout=READ_TIMEOUT)
        assert client.get("/").text == "ok"  # the kept-alive connection too
    assert failed.stdout == "500"
    stats = mosn.wait_stat("protocol.FaultyHttp1.codec_error", 1)
    assert stats["protocol.FaultyHttp1.codec_error"] == 1
    log = mosn.output()
    assert "protocol FaultyHttp1 (plugin faulty): the codec raised RuntimeError in on_data" in log
    assert "Fatal error" not in log


class H2Client:
    """h2's client side on a blocking socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.flush()
        # The server's SETTINGS read and acknowledged before any request: nothing is
        # left to send once a request is out (bytes arriving after mosn closed would
        # be answered with a reset, which can overtake the GOAWAY under test).
        for event in self.events():
            if isinstance(event, h2.events.RemoteSettingsChanged):
                break

    def flush(self) -> None:
        self.sock.sendall(self.h2.data_to_send())

    def request(self, method: str, body: bytes = b"") -> int:
        sid = self.h2.get_next_available_stream_id()
        self.h2.send_headers(sid, [(":method", method), (":path", "/"), (":scheme", "http"),
                                   (":authority", "mosn")], end_stream=not body)
        if body:
            self.h2.send_data(sid, body, end_stream=True)
        self.flush()
        return sid

    def events(self) -> Iterator[Any]:
        while data := self.sock.recv(65536):
            for event in self.h2.receive_data(data):
                yield event
            self.flush()

    def get(self) -> bytes:
        sid = self.request("GET")
        body = b""
        for event in self.events():
            if isinstance(event, h2.events.DataReceived) and event.stream_id == sid:
                body += event.data
                self.h2.acknowledge_received_data(len(event.data), sid)
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id == sid:
                return body
        raise ConnectionError("closed before the response ended")

    def close(self) -> None:
        self.sock.close()


def test_http2_codec_raising_sends_goaway_internal_error(faulty_mosn):
    port, mosn = faulty_mosn("FaultyHttp2")
    other = H2Client(port)
    assert other.get() == b"ok"
    failing = H2Client(port)
    failing.request("POST", TRIGGER.encode())
    ended = [e for e in failing.events() if isinstance(e, h2.events.ConnectionTerminated)]
    failing.close()
    assert [e.error_code for e in ended] == [h2.errors.ErrorCodes.INTERNAL_ERROR]
    assert other.get() == b"ok"
    other.close()
    stats = mosn.wait_stat("protocol.FaultyHttp2.codec_error", 1)
    assert stats["protocol.FaultyHttp2.codec_error"] == 1
    assert "protocol FaultyHttp2 (plugin faulty): the codec raised" in mosn.output()
