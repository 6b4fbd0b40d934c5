"""MOSN's ``payload_limit`` stream filter in a real mosn: curl with bodies that say
their length and chunked ones, and a bolt client with large and small calls."""

from __future__ import annotations

import subprocess
from typing import Iterator

import pytest

from http_scripted import proxy_config
from mosn.rpc.tools import codec_named
from mosn.testing import HttpBackend, MockServer, free_port, rpc_request
from mosn.testing.process import rpc_proxy_config

LIMIT = 1024
CURL_TIMEOUT = "10"


def limit(**config: object) -> dict[str, object]:
    return {"stream_filters": [{"type": "payload_limit",
                                "config": {"max_entity_size": LIMIT, **config}}]}


@pytest.fixture(scope="module")
def backend() -> Iterator[HttpBackend]:
    server = HttpBackend()
    yield server
    server.stop()


def post(port: int, size: int, *args: str) -> int:
    done = subprocess.run(["curl", "-sS", "-m", CURL_TIMEOUT, "-o", "/dev/null", "-w",
                           "%{http_code}", "--data-binary", "@-", *args,
                           f"http://127.0.0.1:{port}/upload"],
                          input=b"x" * size, capture_output=True, check=True)
    return int(done.stdout)


def test_a_body_over_the_limit_is_refused(start_mosn, backend) -> None:
    port = free_port()
    start_mosn(proxy_config(port, int(backend.address.rpartition(":")[2]),
                            listener=limit(http_status=400)))
    before = backend.requests
    assert post(port, LIMIT) == 200
    assert post(port, LIMIT + 1) == 400  # its content-length says so at once
    assert post(port, LIMIT * 8, "-H", "transfer-encoding: chunked") == 413  # counted as it comes
    assert post(port, LIMIT // 2, "-H", "transfer-encoding: chunked") == 200
    assert backend.requests - before == 2


def test_an_rpc_call_over_the_limit_is_refused(start_mosn) -> None:
    codec = codec_named("bolt")
    upstream = MockServer(codec).start()
    try:
        port = free_port()
        config = rpc_proxy_config(port, "bolt", [upstream.address])
        config["servers"][0]["listeners"][0].update(limit())
        start_mosn(config)
        small = rpc_request(codec, port, "com.example.EchoService", body=b"x" * 100)
        large = rpc_request(codec, port, "com.example.EchoService", body=b"x" * LIMIT * 2)
    finally:
        upstream.stop()
    assert small.http_status == 200
    assert large.status == codec.error_status(413, ())
    assert len(upstream.requests) == 1
