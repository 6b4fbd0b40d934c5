"""The L7 proxy with the HTTP/1.1 plugin, end to end: curl and httpx as clients,
uvicorn (examples/http_upstream.py) as the backend, real sockets on 127.0.0.1."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from contextlib import closing
from typing import Any, Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, free_port, wait_for_port
from mosn.testing.process import serving

HTTP_UPSTREAM = ROOT / "examples" / "http_upstream.py"


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, int]]:
    """Three named HTTP upstreams: blue, green and shadow."""
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(serving(
            lambda port, name=name: [sys.executable, str(HTTP_UPSTREAM), "--port", str(port),
                                     "--name", name]))
            for name in ("blue", "green", "shadow")}


def cluster(name: str, *ports: int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "lb_type": "LB_ROUNDROBIN",
            "hosts": [{"address": f"127.0.0.1:{p}"} for p in ports], **extra}


def http_config(port: int, upstreams: dict[str, int], routes: list[dict[str, Any]],
                virtual_hosts: list[dict[str, Any]] | None = None,
                proxy: dict[str, Any] | None = None, stream_filters: list[Any] | None = None,
                clusters: list[dict[str, Any]] | None = None, **router: Any) -> dict[str, Any]:
    vhosts = virtual_hosts or [{"name": "all", "domains": ["*"], "routers": routes}]
    return {
        "servers": [{
            "graceful_timeout": "1s",
            "routers": [{"router_config_name": "main", "virtual_hosts": vhosts, **router}],
            "listeners": [{
                "name": "http",
                "address": f"127.0.0.1:{port}",
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": "Http1", "router_config_name": "main",
                    **(proxy or {})}}]}],
                "stream_filters": stream_filters or [],
            }],
        }],
        "cluster_manager": {"clusters": [
            cluster("blue", upstreams["blue"]), cluster("green", upstreams["green"]),
            cluster("shadow", upstreams["shadow"]), *(clusters or [])]},
    }


def to(cluster_name: str, prefix: str = "/", **route: Any) -> dict[str, Any]:
    return {"match": {"prefix": prefix}, "route": {"cluster_name": cluster_name, **route}}


@pytest.fixture
def proxy(start_mosn, upstreams):
    """Start mosn with routes (or a whole config); returns (base URL, mosn)."""
    def start(routes: list[dict[str, Any]] | None = None, **kwargs: Any) -> tuple[str, Any]:
        port = free_port()
        mosn = start_mosn(http_config(port, upstreams, routes or [to("blue")], **kwargs))
        return f"http://127.0.0.1:{port}", mosn
    return start


def server_of(response: httpx.Response) -> str:
    return response.headers["x-upstream"]


# -- routing ---------------------------------------------------------------------------


def test_routing_matrix(proxy):
    url, _ = proxy(virtual_hosts=[
        {"name": "exact", "domains": ["api.example.com"], "routers": [to("blue")]},
        {"name": "suffix", "domains": ["*.example.com"], "routers": [to("green")]},
        {"name": "prefix", "domains": ["shop.*"], "routers": [to("shadow")]},
        {"name": "any", "domains": ["*"], "routers": [
            {"match": {"path": "/exact"}, "route": {"cluster_name": "green"}},
            {"match": {"regex": "^/re/[0-9]+$"}, "route": {"cluster_name": "shadow"}},
            {"match": {"prefix": "/h", "headers": [{"name": "x-canary", "value": "yes"}]},
             "route": {"cluster_name": "green"}},
            {"match": {"prefix": "/h", "headers": [{"name": "x-version", "value": "^v[23]$",
                                                   "regex": True}]},
             "route": {"cluster_name": "shadow"}},
            {"match": {"prefix": "/h", "headers": [{"name": "x-debug", "present_match": True}]},
             "route": {"cluster_name": "shadow"}},
            {"match": {"prefix": "/inv", "headers": [{"name": "x-team", "value": "a",
                                                     "invert_match": True}]},
             "route": {"cluster_name": "green"}},
            {"match": {"prefix": "/q", "query_parameters": [
                {"name": "beta", "string_match": {"exact": "1"}}]},
             "route": {"cluster_name": "green"}},
            to("blue"),
        ]},
    ])
    with httpx.Client(base_url=url) as c:
        def where(path: str, host: str = "other", **headers: str) -> str:
            return server_of(c.get(path, headers={"host": host, **headers}))

        assert where("/", host="api.example.com") == "blue"
        assert where("/", host="API.example.com:8080") == "blue"
        assert where("/", host="www.example.com") == "green"
        assert where("/", host="shop.local") == "shadow"
        assert where("/exact") == "green"
        assert where("/exact/more") == "blue"
        assert where("/re/42") == "shadow"
        assert where("/re/x") == "blue"
        assert where("/h", **{"x-canary": "yes"}) == "green"
        assert where("/h", **{"x-version": "v3"}) == "shadow"
        assert where("/h", **{"x-version": "v4"}) == "blue"
        assert where("/h", **{"x-debug": ""}) == "shadow"
        assert where("/inv", **{"x-team": "b"}) == "green"
        assert where("/inv", **{"x-team": "a"}) == "blue"
        assert where("/q?beta=1") == "green"
        assert where("/q?beta=2") == "blue"


def test_no_route_is_404(proxy):
    url, _ = proxy(routes=[to("blue", prefix="/only")])
    r = httpx.get(url + "/elsewhere")
    assert r.status_code == 404


def test_weighted_clusters_and_cluster_header(proxy):
    url, _ = proxy(routes=[
        {"match": {"prefix": "/pick"}, "route": {"cluster_header": "x-cluster"}},
        {"match": {"prefix": "/"}, "route": {"weighted_clusters": [
            {"cluster": {"name": "blue", "weight": 80}},
            {"cluster": {"name": "green", "weight": 20}}]}},
    ])
    with httpx.Client(base_url=url) as c:
        assert server_of(c.get("/pick", headers={"x-cluster": "green"})) == "green"
        picks = [server_of(c.get("/")) for _ in range(300)]
    assert 0.65 < picks.count("blue") / 300 < 0.92


# -- headers ---------------------------------------------------------------------------


def test_header_rules_at_every_level_and_forwarding_headers(proxy):
    url, _ = proxy(
        routes=[to("blue", request_headers_to_add=[
            {"header": {"key": "x-level", "value": "route"}, "append": False}],
            response_headers_to_add=[{"header": {"key": "x-resp", "value": "r"}}],
            response_headers_to_remove=["x-upstream-secret"],
            request_headers_to_remove=["x-drop"])],
        virtual_hosts=None,
        request_headers_to_add=[{"header": {"key": "x-router", "value": "main"}}],
    )
    r = httpx.get(url + "/echo", headers={"x-drop": "1", "x-forwarded-for": "10.1.1.1",
                                          "connection": "keep-alive, x-hop", "x-hop": "h"})
    seen = dict(json.loads(r.text)["headers"])
    assert seen["x-level"] == "route"
    assert seen["x-router"] == "main"
    assert "x-drop" not in seen
    assert "x-hop" not in seen  # named in Connection: hop-by-hop
    assert seen["x-forwarded-for"] == "10.1.1.1, 127.0.0.1"
    assert uuid.UUID(seen["x-request-id"])
    assert r.headers["x-resp"] == "r"
    # With no connection-specific field (httpx sends one, http.client does not): the
    # first x-forwarded-for extended and the others dropped, the client's id and proto kept.
    where = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
    conn.putrequest("GET", "/echo")
    for name, value in (("x-forwarded-for", "10.0.0.1"), ("x-forwarded-for", "10.0.0.2"),
                        ("x-request-id", "given"), ("x-forwarded-proto", "https")):
        conn.putheader(name, value)
    conn.endheaders()
    fields = json.loads(conn.getresponse().read())["headers"]
    conn.close()
    assert [(k, v) for k, v in fields if k.startswith("x-")] == [
        ("x-request-id", "given"), ("x-forwarded-proto", "https"),
        ("x-forwarded-for", "10.0.0.1, 127.0.0.1"), ("x-level", "route"), ("x-router", "main")]


# -- replies from the proxy ------------------------------------------------------------


def test_direct_response_and_redirect(proxy):
    url, _ = proxy(routes=[
        {"match": {"path": "/health"}, "direct_response": {"status": 200, "body": "fine\n"}},
        {"match": {"prefix": "/old"}, "redirect": {"path_redirect": "/new", "response_code": 308}},
        to("blue"),
    ])
    r = httpx.get(url + "/health")
    assert (r.status_code, r.text) == (200, "fine\n")
    r = httpx.get(url + "/old", headers={"host": "svc.local"})
    assert r.status_code == 308
    assert r.headers["location"] == "http://svc.local/new"


def test_fault_filter_aborts_and_delays(proxy):
    url, _ = proxy(routes=[to("blue")], stream_filters=[
        {"type": "fault", "config": {"abort": {"status": 418, "percentage": 100},
                                     "headers": [{"name": "x-fault"}]}},
        {"type": "fault", "config": {"delay": {"fixed_delay": "300ms", "percentage": 100},
                                     "headers": [{"name": "x-slow"}]}},
    ])
    assert httpx.get(url + "/", headers={"x-fault": "1"}).status_code == 418
    started = time.monotonic()
    assert httpx.get(url + "/", headers={"x-slow": "1"}).status_code == 200
    assert time.monotonic() - started >= 0.3
    assert httpx.get(url + "/").status_code == 200


def test_a_routes_fault_config_replaces_the_filters_own(proxy):
    aborted = dict(to("blue", "/aborted"), per_filter_config={"fault": {
        "abort": {"status": 503}}})
    spared = dict(to("blue", "/spared"), per_filter_config={"fault": {}})
    url, _ = proxy(routes=[aborted, spared, to("blue")], stream_filters=[
        {"type": "fault", "config": {"abort": {"status": 418}}}])
    assert httpx.get(url + "/aborted").status_code == 503
    assert httpx.get(url + "/spared").status_code == 200  # an empty config: no fault
    assert httpx.get(url + "/other").status_code == 418


# -- upstream failures -----------------------------------------------------------------


def test_retry_on_5xx_until_it_succeeds(proxy):
    url, _ = proxy(routes=[to("blue", retry_policy={"retry_on": "5xx", "num_retries": 2})])
    key = uuid.uuid4().hex
    r = httpx.get(url + f"/fail-then-ok/{key}")
    assert r.status_code == 200


def test_no_retry_without_a_policy(proxy):
    url, _ = proxy()
    assert httpx.get(url + f"/fail-then-ok/{uuid.uuid4().hex}").status_code == 503


def test_retry_moves_to_another_host_after_connect_failure(proxy, upstreams):
    dead = free_port()
    url, mosn = proxy(routes=[to("mixed", retry_policy={"retry_on": "connect-failure",
                                                        "num_retries": 1})],
                      clusters=[cluster("mixed", dead, upstreams["green"])])
    for _ in range(4):
        assert httpx.get(url + "/").status_code == 200
    assert mosn.stats()["cluster.mixed.upstream_cx_connect_fail"] >= 1


def test_connect_failure_is_503_and_no_host_is_503(proxy):
    url, _ = proxy(routes=[to("dead", prefix="/dead"), to("empty")],
                   clusters=[cluster("dead", free_port()), cluster("empty")])
    assert httpx.get(url + "/dead").status_code == 503
    assert httpx.get(url + "/").status_code == 503


def _closing_server(port: int, stop_event: threading.Event) -> None:
    """Reads a request, then closes without answering."""
    with closing(socket.socket()) as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", port))
        srv.listen()
        srv.settimeout(0.2)
        while not stop_event.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            conn.recv(65536)
            conn.close()


def test_upstream_reset_is_502(proxy):
    port, done = free_port(), threading.Event()
    t = threading.Thread(target=_closing_server, args=(port, done), daemon=True)
    t.start()
    wait_for_port(port)
    try:
        url, _ = proxy(routes=[to("rude")], clusters=[cluster("rude", port)])
        assert httpx.get(url + "/").status_code == 502
    finally:
        done.set()
        t.join(2)


def test_route_timeout_is_504(proxy):
    url, _ = proxy(routes=[to("blue", timeout="300ms")])
    started = time.monotonic()
    assert httpx.get(url + "/delay/3", timeout=10).status_code == 504
    assert time.monotonic() - started < 2


def test_body_over_the_limit_is_413(proxy):
    url, _ = proxy(routes=[to("blue", max_request_bytes=1000)])
    assert httpx.post(url + "/upload", content=b"x" * 999).status_code == 200
    assert httpx.post(url + "/upload", content=b"x" * 5000).status_code == 413


# -- HTTP/1.1 behaviour ----------------------------------------------------------------


def raw_exchange(url: str, data: bytes, timeout: float = 5) -> bytes:
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


def test_keep_alive_reuses_the_connection(proxy):
    url, mosn = proxy()
    with httpx.Client(base_url=url) as c:
        for _ in range(10):
            assert c.get("/").status_code == 200
    stats = mosn.stats()
    assert stats["listener.http.downstream_cx_total"] == 1
    assert stats["cluster.blue.upstream_cx_total"] == 1  # the upstream pool kept it too


def test_pipelined_requests_are_answered_in_order(proxy):
    url, _ = proxy(routes=[to("blue", prefix="/delay"), to("green")])
    data = (b"GET /delay/0.3 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /two HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    out = raw_exchange(url, data)
    assert out.count(b"HTTP/1.1 200") == 3
    assert out.index(b"late") < out.index(b'"/one"') < out.index(b'"/two"')


def test_regex_rewrite_reaches_the_upstream(proxy):
    url, _ = proxy(routes=[to("blue", prefix="/api/", regex_rewrite={
        "pattern": {"regex": "^/api/(\\w+)$"}, "substitution": "/echo/$1"})])
    r = httpx.get(url + "/api/users?x=1")
    seen = json.loads(r.text)
    assert (seen["path"], seen["query"]) == ("/echo/users", "x=1")  # the query kept


def test_http_1_0(proxy):
    url, _ = proxy()
    out = raw_exchange(url, b"GET /echo HTTP/1.0\r\nHost: a\r\n\r\n")
    assert out.startswith(b"HTTP/1.")
    assert b" 200 " in out.split(b"\r\n", 1)[0]
    assert b'"path": "/echo"' in out


def test_chunked_upload_and_expect_100_continue_with_curl(proxy, tmp_path):
    url, _ = proxy()
    body = tmp_path / "body"
    body.write_bytes(b"c" * (3 * 1024 * 1024))
    out = subprocess.run(
        ["curl", "-sS", "-H", "Transfer-Encoding: chunked", "-H", "Expect: 100-continue",
         "--data-binary", f"@{body}", url + "/upload"],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["size"] == 3 * 1024 * 1024
    assert got["sha256"] == hashlib.sha256(body.read_bytes()).hexdigest()


def test_malformed_request_gets_400_and_others_carry_on(proxy):
    url, _ = proxy()
    with httpx.Client(base_url=url) as healthy:
        assert healthy.get("/").status_code == 200
        out = raw_exchange(url, b"GET / HTTP/1.1\r\nHost a\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400")
        assert healthy.get("/").status_code == 200


def test_headers_too_large_is_431(proxy):
    url, _ = proxy()
    out = raw_exchange(url, b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 100_000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.binary(min_size=1, max_size=300))
def test_fuzzed_requests_never_hang_or_crash_the_proxy(proxy_for_fuzz, junk):
    url = proxy_for_fuzz
    out = raw_exchange(url, junk + b"\r\n\r\n", timeout=3)
    assert out == b"" or out.startswith(b"HTTP/1.1 ")
    assert httpx.get(url + "/", timeout=5).status_code == 200


@pytest.fixture(scope="module")
def proxy_for_fuzz(upstreams, tmp_path_factory) -> Iterator[str]:
    from conftest import Mosn

    port = free_port()
    mosn = Mosn(http_config(port, upstreams, [to("blue")]), tmp_path_factory.mktemp("fuzz"))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        assert mosn.proc.poll() is None, mosn.output()
        mosn.stop()


def test_websocket_upgrade_is_tunnelled(proxy):
    import websockets.sync.client as ws_client

    url, _ = proxy()
    with ws_client.connect(url.replace("http", "ws") + "/ws") as ws:
        ws.send("hello over a tunnel")
        assert ws.recv(timeout=5) == "hello over a tunnel"
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=5) == b"\x00\x01binary"


def test_auto_detects_http(start_mosn, upstreams):
    port = free_port()
    start_mosn(http_config(port, upstreams, [to("green")],
                           proxy={"downstream_protocol": "Auto"}))
    assert server_of(httpx.get(f"http://127.0.0.1:{port}/")) == "green"


# -- mirroring -------------------------------------------------------------------------


def test_mirror_sends_a_copy_to_the_shadow_cluster(proxy, upstreams):
    url, _ = proxy(routes=[{**to("blue"), "request_mirror_policies": {"cluster": "shadow"}}])
    key = uuid.uuid4().hex
    # The primary answers; its shadow copy marks KEY as seen on the shadow upstream.
    assert httpx.get(url + f"/fail-then-ok/{key}").status_code == 503
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        direct = httpx.get(f"http://127.0.0.1:{upstreams['shadow']}/fail-then-ok/{key}")
        if direct.status_code == 200:
            break
        time.sleep(0.1)
    assert direct.status_code == 200


# -- big bodies, bounded memory --------------------------------------------------------


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


GIB = 1024 ** 3


def test_1_gib_upload_and_download_with_bounded_memory(proxy):
    url, mosn = proxy(proxy={"timeout": "120s"})
    peak = [_rss_kib(mosn.proc.pid)]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            peak.append(_rss_kib(mosn.proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    block = bytes(range(256)) * 4096  # 1 MiB

    def body() -> Iterator[bytes]:
        for _ in range(GIB // len(block)):
            yield block

    try:
        with httpx.Client(base_url=url, timeout=120) as c:
            up = c.post("/upload", content=body()).json()
            assert up["size"] == GIB
            expected = hashlib.sha256()
            for _ in range(GIB // len(block)):
                expected.update(block)
            assert up["sha256"] == expected.hexdigest()
            size = 0
            with c.stream("GET", f"/bytes/{GIB}") as r:
                for chunk in r.iter_raw():
                    size += len(chunk)
            assert size == GIB
    finally:
        sampling.set()
        sampler.join()
    grown = max(peak) - peak[0]
    assert grown < 64 * 1024, f"proxy RSS grew {grown} KiB while streaming 2 GiB"


def test_request_ids_are_version_4_uuids_and_differ_per_worker(start_mosn, upstreams):
    from mosn.proxy.http import request_id

    ids = {request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(uuid.UUID(i).version == 4 for i in ids)
    port = free_port()
    start_mosn(http_config(port, upstreams, [to("blue")]), "--workers", "2")
    seen = set()
    for _ in range(40):  # fresh connections: both workers answer some
        with httpx.Client() as c:
            headers = dict(json.loads(c.get(f"http://127.0.0.1:{port}/echo").text)["headers"])
            seen.add(headers["x-request-id"])
    assert len(seen) == 40
