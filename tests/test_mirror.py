"""MOSN's ``mirror`` stream filter in a real mosn: httpx and curl (HTTP/2) requests,
copies counted on real mirror upstreams (waited for with a deadline)."""

from __future__ import annotations

import subprocess
import time
from typing import Any, Callable

import httpx

from mosn.rpc.tools import codec_named
from mosn.testing import MockServer, free_port, rpc_request
from mosn.testing.process import rpc_proxy_config
from test_upstream_e2e import Backend, cluster, http_config, loop_thread  # noqa: F401

DEADLINE = 10.0
"""Seconds to wait for the copies to reach the mirror hosts (their responses are dropped,
so nothing tells the client when they arrived)."""


def wait_for(test: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + DEADLINE
    while not test():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def mirrored(port: int, main: Backend, shadows: list[Backend], flt: dict[str, Any],
             downstream: str = "Http1") -> dict[str, Any]:
    routes = [{"match": {"prefix": "/"}, "route": {"cluster_name": "main"},
               "request_mirror_policies": {"cluster": "shadow", "percent": 100}}]
    config = http_config(port, [cluster("main", [main]), cluster("shadow", shadows)], routes)
    listener = config["servers"][0]["listeners"][0]
    listener["stream_filters"] = [flt]
    listener["filter_chains"][0]["filters"][0]["config"].update(
        downstream_protocol=downstream, upstream_protocol="Http1")
    return config


def test_amplification_sends_that_many_copies(start_mosn, loop_thread) -> None:
    main = Backend(loop_thread, "main").start()
    shadows = [Backend(loop_thread, f"s{i}").start() for i in range(2)]
    port = free_port()
    mosn = start_mosn(mirrored(port, main, shadows, {"type": "mirror",
                                                     "config": {"amplification": 5}}))
    with httpx.Client() as c:
        answers = [c.post(f"http://127.0.0.1:{port}/x", content=b"body") for _ in range(3)]
    assert {(r.status_code, r.headers["x-upstream"]) for r in answers} == {(200, "main")}
    assert wait_for(lambda: sum(s.served for s in shadows) >= 15)
    assert main.served == 3
    assert [s.served for s in shadows] == [8, 7] or [s.served for s in shadows] == [7, 8]
    assert mosn.stats()["mirror.mirrored"] == 3


def test_http2_requests_are_amplified(start_mosn, loop_thread) -> None:
    main = Backend(loop_thread, "main").start()
    shadow = Backend(loop_thread, "s").start()
    port = free_port()
    start_mosn(mirrored(port, main, [shadow], {"type": "mirror", "config": {"amplification": 3}},
                        downstream="Http2"))
    done = subprocess.run(["curl", "-sS", "-m", "10", "--http2-prior-knowledge", "-o",
                           "/dev/null", "-w", "%{http_code} %{http_version}",
                           f"http://127.0.0.1:{port}/h2"], capture_output=True, text=True,
                          check=True)
    assert done.stdout == "200 2"
    assert wait_for(lambda: shadow.served >= 3)
    assert main.served == 1


def test_broadcast_copies_to_every_host_and_answers_itself(start_mosn, loop_thread) -> None:
    main = Backend(loop_thread, "main").start()
    shadows = [Backend(loop_thread, f"s{i}").start() for i in range(3)]
    port = free_port()
    mosn = start_mosn(mirrored(port, main, shadows, {"type": "mirror",
                                                     "config": {"broadcast": True}}))
    with httpx.Client() as c:
        answer = c.get(f"http://127.0.0.1:{port}/event")
    assert answer.status_code == 200 and "x-upstream" not in answer.headers
    assert wait_for(lambda: [s.served for s in shadows] == [1, 1, 1])
    assert main.served == 0
    assert mosn.stats()["mirror.broadcast"] == 1


def test_a_bolt_call_is_mirrored_with_amplification(start_mosn) -> None:
    codec = codec_named("bolt")
    main, shadow = MockServer(codec).start(), MockServer(codec).start()
    try:
        port = free_port()
        config = rpc_proxy_config(port, "bolt", [main.address])
        server = config["servers"][0]
        server["routers"][0]["virtual_hosts"][0]["routers"][0]["request_mirror_policies"] = {
            "cluster": "shadow", "percent": 100}
        server["listeners"][0]["stream_filters"] = [{"type": "mirror",
                                                      "config": {"amplification": 3}}]
        config["cluster_manager"]["clusters"].append(
            {"name": "shadow", "hosts": [{"address": shadow.address}]})
        start_mosn(config)
        answer = rpc_request(codec, port, "com.example.EchoService", body=b"ping")
        assert answer.http_status == 200
        assert wait_for(lambda: len(shadow.requests) >= 3)
        assert len(main.requests) == 1
    finally:
        main.stop()
        shadow.stop()
