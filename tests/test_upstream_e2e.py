"""Upstream management end to end: real mosn processes, real HTTP backends and a real
DNS server (all on 127.0.0.x, in this test process's threads), real sockets."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections import Counter
from typing import Any, Callable, Iterator

import httpx
import pytest
from conftest import free_port

# -- backends ---------------------------------------------------------------------------


class Backend:
    """A small HTTP/1.1 keep-alive server: every request gets ``status`` after
    ``delay`` seconds, with ``x-upstream: NAME`` and ``x-host:`` the request's ``Host``. ``stop()`` closes the listener and
    every connection; ``start()`` listens again on the same address."""

    def __init__(self, loop: "LoopThread", name: str, host: str = "127.0.0.1",
                 port: int | None = None, delay: float = 0.0, status: int = 200) -> None:
        self.loop = loop
        self.name = name
        self.host = host
        self.port = port or free_port()
        self.delay = delay
        self.status = status
        self.served = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "Backend":
        self.loop.run(self._start())
        return self

    def stop(self) -> None:
        self.loop.run(self._stop())

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  reuse_address=True)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length, host = 0, b""
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                    elif name.strip().lower() == b"host":
                        host = value.strip()
                if length:
                    await reader.readexactly(length)
                if self.delay:
                    await asyncio.sleep(self.delay)
                self.served += 1
                body = f"{self.name}\n".encode()
                writer.write(b"HTTP/1.1 %d X\r\nx-upstream: %s\r\nx-host: %s\r\n"
                             b"content-length: %d\r\n\r\n%s"
                             % (self.status, self.name.encode(), host, len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


class DnsServer(asyncio.DatagramProtocol):
    """Answers A queries for any name with ``addresses`` (TTL 1), over UDP."""

    def __init__(self) -> None:
        self.addresses: list[str] = []
        self.transport: Any = None
        self.queries = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queries += 1
        (qid,) = struct.unpack_from("!H", data)
        end = data.index(b"\0", 12) + 5  # the question: name, type, class
        question = data[12:end]
        answers = b"".join(
            b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 1, 4) + socket.inet_aton(a)
            for a in self.addresses)
        header = struct.pack("!HHHHHH", qid, 0x8180, 1, len(self.addresses), 0, 0)
        self.transport.sendto(header + question + answers, addr)


class LoopThread:
    """An event loop in a thread for the backends and the DNS server."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def dns(self) -> tuple[DnsServer, int]:
        port = free_port()

        async def start() -> DnsServer:
            _, proto = await self.loop.create_datagram_endpoint(
                DnsServer, local_addr=("127.0.0.1", port))
            return proto  # type: ignore[return-value]

        return self.run(start()), port

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


def http_config(port: int, clusters: list[dict[str, Any]],
                routes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    routes = routes or [{"match": {"prefix": "/"}, "route": {"cluster_name": clusters[0]["name"]}}]
    return {
        "servers": [{
            "graceful_timeout": "1s",
            "routers": [{"router_config_name": "main", "virtual_hosts": [
                {"name": "all", "domains": ["*"], "routers": routes}]}],
            "listeners": [{
                "name": "http", "address": f"127.0.0.1:{port}",
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": "Http1", "router_config_name": "main"}}]}],
            }],
        }],
        "cluster_manager": {"clusters": clusters},
    }


def cluster(name: str, backends: list[Backend], **extra: Any) -> dict[str, Any]:
    return {"name": name, "lb_type": "LB_ROUNDROBIN",
            "hosts": [{"address": b.address} for b in backends], **extra}


def load(url: str, seconds: float, concurrency: int, path: str = "/",
         headers: Callable[[int], dict[str, str]] | None = None,
         at_least: int = 0, into: list[tuple[int, str, float]] | None = None,
         ) -> list[tuple[int, str, float]]:
    """``concurrency`` clients sending requests for ``seconds``, and on until ``at_least``
    requests are answered (a busy machine serves fewer in the time): (status, upstream,
    latency) of each, appended to ``into`` as they come if it is given."""
    async def client(i: int, results: list[tuple[int, str, float]], deadline: float) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            n = 0
            while time.monotonic() < deadline or len(results) < at_least:
                start = time.monotonic()
                r = await c.get(path, headers=headers(i * 100000 + n) if headers else None)
                n += 1
                results.append((r.status_code, r.headers.get("x-upstream", ""),
                                time.monotonic() - start))

    async def run() -> list[tuple[int, str, float]]:
        results = [] if into is None else into
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(client(i, results, deadline) for i in range(concurrency)))
        return results

    return asyncio.run(run())


def hosts_of(mosn: Any, name: str) -> dict[str, dict[str, Any]]:
    clusters = mosn.admin("/clusters").json()["clusters"]
    c = next(c for c in clusters if c["name"] == name)
    return {h["address"]: h for h in c["hosts"]}


def wait_until(test: Callable[[], bool], timeout: float, step: float = 0.05) -> float:
    """Seconds until ``test()`` held; fails after ``timeout``."""
    start = time.monotonic()
    while not test():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not true within {timeout}s")
        time.sleep(step)
    return time.monotonic() - start


# -- load balancing -----------------------------------------------------------------------


def test_least_request_prefers_the_idle_host_under_skewed_latency(start_mosn, loop_thread):
    slow = Backend(loop_thread, "slow", delay=0.2).start()
    fast = Backend(loop_thread, "fast").start()
    port = free_port()
    start_mosn(http_config(port, [cluster("c", [slow, fast], lb_type="LB_LEAST_REQUEST")]))
    results = load(f"http://127.0.0.1:{port}", 2.0, 8, at_least=100)
    assert all(status == 200 for status, _, _ in results)
    served = Counter(name for _, name, _ in results)
    # Round robin would send half; two-choice least request sends the slow host a
    # request only when it has none in flight and the fast one is busy too.
    assert served["slow"] / len(results) < 0.15, served


def test_peak_ewma_sends_requests_to_the_host_that_answers_faster(start_mosn, loop_thread):
    slow = Backend(loop_thread, "slow", delay=0.2).start()
    fast = Backend(loop_thread, "fast").start()
    port = free_port()
    start_mosn(http_config(port, [cluster("c", [slow, fast], lb_type="LB_PEAK_EWMA")]))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
        served = Counter(c.get("/").headers["x-upstream"] for _ in range(20))
    # Each host is tried once; then the slow one costs 200 times the fast one's.
    assert served == {"slow": 1, "fast": 19}, served


def test_request_round_robin_starts_each_request_at_the_first_host(start_mosn, loop_thread):
    first, second = Backend(loop_thread, "first").start(), Backend(loop_thread, "second").start()
    port = free_port()
    routes = [{"match": {"prefix": "/"}, "route": {"cluster_name": "c", "retry_policy": {
        "retry_on": True, "num_retries": 1}}}]
    start_mosn(http_config(port, [cluster("c", [first, second],
                                          lb_type="LB_REQUEST_ROUNDROBIN")], routes))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
        assert {c.get("/").headers["x-upstream"] for _ in range(6)} == {"first"}
        first.stop()
        # The first host refuses: each request's retry moves on to the next host.
        assert {c.get("/").headers["x-upstream"] for _ in range(4)} == {"second"}


def test_hash_policy_keeps_a_user_on_one_host(start_mosn, loop_thread):
    backends = [Backend(loop_thread, f"b{i}").start() for i in range(3)]
    port = free_port()
    routes = [{"match": {"prefix": "/"}, "route": {
        "cluster_name": "c", "hash_policy": [{"header": {"key": "x-user"}}]}}]
    start_mosn(http_config(port, [cluster("c", backends, lb_type="LB_MAGLEV")], routes))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
        homes = {}
        for user in range(30):
            seen = {c.get("/", headers={"x-user": f"u{user}"}).headers["x-upstream"]
                    for _ in range(4)}
            assert len(seen) == 1
            homes[user] = seen.pop()
    assert len(set(homes.values())) == 3  # the users are spread over every host


def test_a_cookie_hash_policy_with_ttl_makes_the_cookie_that_keeps_a_client_on_one_host(
        start_mosn, loop_thread):
    backends = [Backend(loop_thread, f"b{i}").start() for i in range(3)]
    port = free_port()
    routes = [{"match": {"prefix": "/"}, "route": {"cluster_name": "c", "hash_policy": [
        {"cookie": {"name": "sticky", "path": "/", "ttl": "60s"}}]}}]
    start_mosn(http_config(port, [cluster("c", backends, lb_type="LB_RING_HASH")], routes))
    homes = set()
    for _ in range(12):  # a new client (connection) each time: a new cookie each time
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            first = c.get("/")
            made = first.headers.get_list("set-cookie")
            assert len(made) == 1 and made[0].startswith('sticky="')
            assert made[0].endswith("; Max-Age=60; Path=/; HttpOnly"), made
            home = first.headers["x-upstream"]
            for _ in range(4):  # httpx sends the cookie back; no new one is made
                again = c.get("/")
                assert again.headers["x-upstream"] == home
                assert "set-cookie" not in again.headers
            homes.add(home)
    assert len(homes) > 1  # made cookies differ between clients and spread them


def test_a_cookie_hash_policy_without_ttl_makes_no_cookie(start_mosn, loop_thread):
    backend = Backend(loop_thread, "b").start()
    port = free_port()
    routes = [{"match": {"prefix": "/"}, "route": {"cluster_name": "c", "hash_policy": [
        {"cookie": {"name": "sticky"}}]}}]
    start_mosn(http_config(port, [cluster("c", [backend], lb_type="LB_RING_HASH")], routes))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
        assert "set-cookie" not in c.get("/").headers


def test_auto_host_rewrite_sends_the_chosen_host_s_hostname(start_mosn, loop_thread):
    named = Backend(loop_thread, "named").start()
    bare = Backend(loop_thread, "bare").start()
    port = free_port()
    clusters = [{"name": "c", "lb_type": "LB_ROUNDROBIN", "hosts": [
        {"address": named.address, "hostname": "orders.internal"},
        {"address": bare.address}]}]
    routes = [{"match": {"prefix": "/"}, "route": {"cluster_name": "c",
                                                   "auto_host_rewrite": True}}]
    start_mosn(http_config(port, clusters, routes))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
        seen = {}
        for _ in range(4):
            r = c.get("/", headers={"host": "shop.example"})
            seen[r.headers["x-upstream"]] = r.headers["x-host"]
    # a host with a hostname gets it; one without keeps the client's Host (Envoy's rule)
    assert seen == {"named": "orders.internal", "bare": "shop.example"}


def test_subset_by_route_metadata(start_mosn, loop_thread):
    v1, v2 = Backend(loop_thread, "v1").start(), Backend(loop_thread, "v2").start()
    port = free_port()
    clusters = [{
        "name": "c", "lb_type": "LB_ROUNDROBIN",
        "hosts": [{"address": v1.address, "metadata": {"filter_metadata": {"mosn.lb": {"version": "1"}}}},
                  {"address": v2.address, "metadata": {"version": "2"}}],
        "lb_subset_config": {"subset_selectors": [["version"]], "fall_back_policy": 1},
    }]
    routes = [
        {"match": {"prefix": "/v2"}, "route": {"cluster_name": "c", "metadata_match": {
            "filter_metadata": {"mosn.lb": {"version": "2"}}}}},
        {"match": {"prefix": "/v9"}, "route": {"cluster_name": "c", "metadata_match": {"version": "9"}}},
        {"match": {"prefix": "/"}, "route": {"cluster_name": "c", "metadata_match": {"version": "1"}}},
    ]
    mosn = start_mosn(http_config(port, clusters, routes))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
        assert {c.get("/v2").headers["x-upstream"] for _ in range(6)} == {"v2"}
        assert {c.get("/").headers["x-upstream"] for _ in range(6)} == {"v1"}
        assert {c.get("/v9").headers["x-upstream"] for _ in range(6)} == {"v1", "v2"}  # any host
    stats = mosn.stats()
    assert stats["cluster.c.lb_subsets_selected"] == 12
    assert stats["cluster.c.lb_subsets_fallback"] == 6


# -- active health checks -------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
def test_http_health_check_takes_a_dead_host_out_and_back(start_mosn, loop_thread, workers):
    a = Backend(loop_thread, "a").start()
    b = Backend(loop_thread, "b").start()
    port = free_port()
    interval, unhealthy, healthy = 0.3, 2, 2
    hc = {"protocol": "http", "interval": f"{interval}s", "timeout": "0.2s",
          "interval_jitter": "10ms", "initial_delay_seconds": "0.1s",
          "unhealthy_threshold": unhealthy, "healthy_threshold": healthy,
          "check_config": {"http_check_config": {"path": "/health", "codes": [{"Start": 200, "End": 299}]}}}
    mosn = start_mosn(http_config(port, [cluster("c", [a, b], health_check=hc)]), "--workers", workers)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: mosn.stats()["cluster.c.health_check.success"] >= 4, 5)

    b.stop()
    took = wait_until(lambda: not hosts_of(mosn, "c")[b.address]["healthy"], 5)
    # The first failing probe comes within an interval, the deciding one
    # (unhealthy_threshold - 1) intervals later; 0.3 s of slack for a busy machine.
    assert took <= interval * unhealthy + 0.3
    time.sleep(0.2)  # workers look at the shared health every 0.1 s
    with httpx.Client(base_url=url) as c:
        assert {c.get("/").headers["x-upstream"] for _ in range(10)} == {"a"}
    assert mosn.stats()["cluster.c.health_check.healthy"] == 1

    b.start()
    took = wait_until(lambda: hosts_of(mosn, "c")[b.address]["healthy"], 5)
    assert took <= interval * healthy + 0.3
    time.sleep(0.2)
    with httpx.Client(base_url=url) as c:
        assert {c.get("/").headers["x-upstream"] for _ in range(10)} == {"a", "b"}
    stats = mosn.stats()
    assert stats["cluster.c.health_check.failure"] >= unhealthy
    assert stats["cluster.c.health_check.network_failure"] >= unhealthy
    assert stats["cluster.c.health_check.turned_unhealthy"] == 1  # the flips, out and back
    assert stats["cluster.c.health_check.turned_healthy"] == 1


def test_tcp_health_check_for_the_tcp_proxy(start_mosn, loop_thread):
    a = Backend(loop_thread, "a").start()
    b = Backend(loop_thread, "b").start()
    port = free_port()
    config = {
        "servers": [{"graceful_timeout": "1s", "listeners": [{
            "name": "tcp", "address": f"127.0.0.1:{port}",
            "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "c"}}]}]}]}],
        "cluster_manager": {"clusters": [cluster("c", [a, b], health_check={
            "interval": "0.2s", "initial_delay_seconds": "0.1s"})]},  # protocol: tcp
    }
    mosn = start_mosn(config)
    b.stop()
    wait_until(lambda: not hosts_of(mosn, "c")[b.address]["healthy"], 3)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
        assert {c.get("/", headers={"connection": "close"}).headers["x-upstream"]
                for _ in range(6)} == {"a"}
    assert mosn.stats()["cluster.c.upstream_cx_connect_fail"] == 0  # never tried b


# -- outlier detection ------------------------------------------------------------------------


def test_outlier_detection_ejects_a_host_answering_5xx(start_mosn, loop_thread):
    good = Backend(loop_thread, "good").start()
    bad = Backend(loop_thread, "bad", status=503).start()
    port = free_port()
    od = {"consecutive_5xx": 3, "interval": "0.2s", "base_ejection_time": "1s",
          "max_ejection_percent": 50}
    mosn = start_mosn(http_config(port, [cluster("c", [good, bad], outlier_detection=od)]))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
        first = [c.get("/").status_code for _ in range(6)]
        assert first.count(503) == 3  # round robin: the bad host's three 5xx eject it
        assert {c.get("/").headers["x-upstream"] for _ in range(10)} == {"good"}
        stats = mosn.stats()
        assert stats["cluster.c.outlier_detection.ejections_enforced_total"] == 1
        assert stats["cluster.c.outlier_detection.ejections_enforced_consecutive_5xx"] == 1
        assert stats["cluster.c.outlier_detection.ejections_active"] == 1
        host = hosts_of(mosn, "c")[bad.address]
        assert host["ejections"] == 1 and not host["healthy"]
        # Back after base_ejection_time (checked every interval) ...
        wait_until(lambda: mosn.stats()["cluster.c.outlier_detection.ejections_returned_total"] == 1, 3)
        assert hosts_of(mosn, "c")[bad.address]["healthy"]
        # ... and out again after three more 5xx, for twice as long.
        results = [c.get("/").headers["x-upstream"] for _ in range(6)]
        assert results.count("bad") == 3
        assert mosn.stats()["cluster.c.outlier_detection.ejections_enforced_total"] == 2


# -- circuit breakers ----------------------------------------------------------------------------


def test_max_requests_overflow_is_answered_at_once(start_mosn, loop_thread):
    slow = Backend(loop_thread, "slow", delay=1.0).start()
    other = Backend(loop_thread, "other").start()
    port = free_port()
    routes = [{"match": {"prefix": "/other"}, "route": {"cluster_name": "other"}},
              {"match": {"prefix": "/"}, "route": {"cluster_name": "slow"}}]
    mosn = start_mosn(http_config(port, [
        cluster("slow", [slow], circuit_breakers=[{"max_requests": 2}]),
        cluster("other", [other])], routes))
    url = f"http://127.0.0.1:{port}"

    async def run() -> tuple[list[tuple[int, str, float]], list[int]]:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            async def one(path: str) -> tuple[int, str, float]:
                start = time.monotonic()
                r = await c.get(path)
                return r.status_code, r.text, time.monotonic() - start

            slow_calls = [asyncio.create_task(one("/")) for _ in range(2)]
            await asyncio.sleep(0.3)  # both are in flight
            overflow = await asyncio.gather(*(one("/") for _ in range(3)))
            other_status = [(await c.get("/other")).status_code for _ in range(3)]
            return list(overflow) + list(await asyncio.gather(*slow_calls)), other_status

    results, other_status = asyncio.run(run())
    rejected, served = results[:3], results[3:]
    assert all(s == 503 and "overflow" in text and t < 0.5 for s, text, t in rejected)
    assert all(s == 200 for s, _, _ in served)
    assert other_status == [200, 200, 200]  # the proxy keeps serving
    stats = mosn.stats()
    assert stats["cluster.slow.upstream_rq_pending_overflow"] == 3
    assert stats["cluster.slow.upstream_rq_active"] == 0


def test_max_connections_and_pending_requests(start_mosn, loop_thread):
    slow = Backend(loop_thread, "slow", delay=0.5).start()
    port = free_port()
    mosn = start_mosn(http_config(port, [cluster("c", [slow], circuit_breakers={"thresholds": [
        {"max_connections": 1, "max_pending_requests": 1}]})]))
    url = f"http://127.0.0.1:{port}"

    async def run() -> list[tuple[int, float]]:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            async def one(delay: float) -> tuple[int, float]:
                await asyncio.sleep(delay)
                start = time.monotonic()
                r = await c.get("/")
                return r.status_code, time.monotonic() - start
            # One on the only connection, one waiting for it, one too many.
            return list(await asyncio.gather(one(0), one(0.1), one(0.2)))

    (s1, _), (s2, t2), (s3, t3) = asyncio.run(run())
    assert (s1, s2, s3) == (200, 200, 503)
    assert t2 > 0.8  # waited for the first to finish on the one connection
    assert t3 < 0.3
    stats = mosn.stats()
    assert stats["cluster.c.upstream_cx_overflow"] >= 1
    assert stats["cluster.c.upstream_rq_pending_overflow"] == 1
    assert stats["cluster.c.upstream_cx_total"] == 1


def test_max_retries_overflow(start_mosn, loop_thread):
    bad = Backend(loop_thread, "bad", status=503, delay=0.3).start()
    port = free_port()
    routes = [{"match": {"prefix": "/"}, "route": {"cluster_name": "c", "retry_policy": {
        "retry_on": "5xx", "num_retries": 1}}}]
    mosn = start_mosn(http_config(port, [cluster("c", [bad], circuit_breakers=[{"max_retries": 1}])],
                                  routes))

    async def run() -> list[int]:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            return [r.status_code for r in await asyncio.gather(*(c.get("/") for _ in range(3)))]

    assert asyncio.run(run()) == [503, 503, 503]
    stats = mosn.stats()
    assert stats["cluster.c.upstream_rq_retry"] == 1
    assert stats["cluster.c.upstream_rq_retry_overflow"] == 2


# -- host-set updates -------------------------------------------------------------------------


def test_strict_dns_host_set_changes_under_load_lose_no_request(start_mosn, loop_thread):
    dns, dns_port = loop_thread.dns()
    backend_port = free_port()
    # Each request takes 20 ms, so every change finds requests in flight on the hosts
    # it removes.
    backends = {ip: Backend(loop_thread, ip, host=ip, port=backend_port, delay=0.02).start()
                for ip in ("127.0.0.2", "127.0.0.3", "127.0.0.4")}
    dns.addresses = ["127.0.0.2", "127.0.0.3"]
    port = free_port()
    mosn = start_mosn(http_config(port, [{
        "name": "svc", "type": "STRICT_DNS", "lb_type": "LB_ROUNDROBIN",
        "hosts": [{"address": f"svc.test:{backend_port}"}],
        "dns_refresh_rate": "0.2s",
        "dns_resolvers": {"servers": ["127.0.0.1"], "port": str(dns_port), "timeout": 1},
    }]), "--workers", "2")
    url = f"http://127.0.0.1:{port}"
    assert set(hosts_of(mosn, "svc")) == {f"127.0.0.2:{backend_port}", f"127.0.0.3:{backend_port}"}

    phases = [["127.0.0.3", "127.0.0.4"], ["127.0.0.4"], ["127.0.0.2", "127.0.0.4"]]
    results: list[tuple[int, str, float]] = []  # appended to as answers come
    per_phase = 60
    loader = threading.Thread(target=lambda: load(
        url, 4.0, 8, at_least=per_phase * (len(phases) + 1), into=results))
    loader.start()
    for n, addresses in enumerate(phases, 1):
        time.sleep(1.0)
        wait_until(lambda: len(results) >= per_phase * n, 60)  # a busy machine serves fewer
        dns.addresses = addresses
    loader.join()
    assert len(results) >= per_phase * (len(phases) + 1)
    assert Counter(status for status, _, _ in results) == {200: len(results)}
    # Every phase's hosts were used, and the last phase's only at the end.
    assert {name for _, name, _ in results} == set(backends)
    wait_until(lambda: set(hosts_of(mosn, "svc")) == {f"127.0.0.2:{backend_port}",
                                                      f"127.0.0.4:{backend_port}"}, 3)
    with httpx.Client(base_url=url) as c:
        assert {c.get("/").headers["x-upstream"] for _ in range(10)} == {"127.0.0.2", "127.0.0.4"}
    stats = mosn.stats()
    assert stats["cluster.svc.membership_change"] >= 3 * 3  # parent and both workers
    assert f"cluster.svc.host.127.0.0.3:{backend_port}.rq_total" not in stats  # gone
    assert stats[f"cluster.svc.host.127.0.0.4:{backend_port}.rq_total"] > 0
