"""A peer that breaks the HTTP protocol is answered in the protocol, its connection
closed, and counted in ``protocol.<name>.downstream_cx_protocol_error`` (a client) or
``upstream_cx_protocol_error`` (a host), while other connections go on. (The RPC
engine's protocols: tests/test_rpc_engine.py.)"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Iterator

import h2.connection
import h2.events
import httpx
import pytest

from conftest import Mosn, free_port

READ_TIMEOUT = 10.0
GARBAGE_RESPONSE = b"HTTP/1.1 ok-ish\r\n\x00\x01\r\n\r\n"
"""What the broken host answers every request with: not an HTTP/1.1 status line."""


@pytest.fixture
def broken_host() -> Iterator[int]:
    """A host that answers every request with ``GARBAGE_RESPONSE``; yields its port."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(READ_TIMEOUT)
                try:
                    conn.recv(65536)
                    conn.sendall(GARBAGE_RESPONSE)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    done.set()
    thread.join()
    server.close()


def _mosn(tmp_path: Path, protocol: str, upstream_port: int) -> tuple[int, Mosn]:
    """mosn on one ``protocol`` listener: ``/broken`` goes to the host on
    ``upstream_port`` (over HTTP/1.1), anything else is answered 200 ``ok``."""
    port = free_port()
    config = {
        "servers": [{
            "routers": [{"router_config_name": "r", "virtual_hosts": [{
                "name": "all", "domains": ["*"], "routers": [
                    {"match": {"prefix": "/broken"}, "route": {"cluster_name": "broken"}},
                    {"match": {"prefix": "/"},
                     "direct_response": {"status": 200, "body": "ok"}}]}]}],
            "listeners": [{
                "name": "web", "address": f"127.0.0.1:{port}",
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": protocol, "upstream_protocol": "Http1",
                    "router_config_name": "r"}}]}],
            }],
        }],
        "cluster_manager": {"clusters": [{
            "name": "broken", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
            "hosts": [{"address": f"127.0.0.1:{upstream_port}"}]}]},
    }
    return port, Mosn(config, tmp_path)


def _exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection and read until mosn closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_http1_malformed_requests_are_answered_and_counted(tmp_path, broken_host):
    port, mosn = _mosn(tmp_path, "Http1", broken_host)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=READ_TIMEOUT) as client:
            assert client.get("/").text == "ok"
            assert _exchange(port, b"GET / HTTP/1.1\r\nHost x\r\n\r\n").startswith(
                b"HTTP/1.1 400 ")
            fields = b"".join(b"x-f%d: v\r\n" % i for i in range(150))  # over 100
            assert _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n"
                             ).startswith(b"HTTP/1.1 431 ")
            assert client.get("/").text == "ok"  # the kept-alive connection goes on
        stats = mosn.wait_stat("protocol.Http1.downstream_cx_protocol_error", 2)
        assert stats["protocol.Http1.downstream_cx_protocol_error"] == 2
        assert stats["protocol.Http1.upstream_cx_protocol_error"] == 0
    finally:
        mosn.stop()


def test_http1_host_breaking_the_protocol_is_counted_upstream(tmp_path, broken_host):
    port, mosn = _mosn(tmp_path, "Http1", broken_host)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=READ_TIMEOUT) as client:
            assert client.get("/broken").status_code == 502
            assert client.get("/").text == "ok"
        stats = mosn.wait_stat("protocol.Http1.upstream_cx_protocol_error", 1)
        assert stats["protocol.Http1.upstream_cx_protocol_error"] >= 1  # and one per retry
        assert stats["protocol.Http1.downstream_cx_protocol_error"] == 0
    finally:
        mosn.stop()


def test_http2_connection_error_gets_goaway_and_is_counted(tmp_path, broken_host):
    port, mosn = _mosn(tmp_path, "Http2", broken_host)
    try:
        client = h2.connection.H2Connection()
        client.initiate_connection()
        # A DATA frame on stream 0 is a connection error (RFC 9113 6.1).
        bad_frame = b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x"
        answer = _exchange(port, client.data_to_send() + bad_frame)
        events = client.receive_data(answer)
        goaway = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
        assert goaway and goaway[0].error_code == 1  # PROTOCOL_ERROR
        with httpx.Client(http1=False, http2=True, timeout=READ_TIMEOUT) as other:
            assert other.get(f"http://127.0.0.1:{port}/").text == "ok"
        stats = mosn.wait_stat("protocol.Http2.downstream_cx_protocol_error", 1)
        assert stats["protocol.Http2.downstream_cx_protocol_error"] == 1
    finally:
        mosn.stop()
