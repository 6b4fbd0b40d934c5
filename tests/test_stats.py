"""Stats equal the traffic sent: real clients through a real mosn (one process and
two workers), counted per listener, protocol, cluster and host, and the same figures
read back through ``/stats/prometheus`` with prometheus-client's parser."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
from collections import Counter
from typing import Any, Iterator

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, free_port, tcp_proxy_config
from test_tcp_proxy import echo_once
from test_upstream_e2e import http_config as one_listener_http_config
from mosn.config import load
from mosn.observability.stats import HISTOGRAM_BUCKETS_MS, StatsStore
from mosn.server import Runtime, follow_snapshot
from mosn.testing.process import serving

HTTP_UPSTREAM = ROOT / "examples" / "http_upstream.py"
UPSTREAM_STATUSES = [200] * 7 + [404] * 3 + [503] * 2
"""Statuses asked of the upstream (``/status/CODE``), one request each."""
NO_ROUTE = 4
"""Requests for a path no route matches (mosn answers 404 itself)."""
REDIRECTS = 2
"""Requests answered by a redirect route (308, from mosn)."""


@pytest.fixture(scope="module")
def http_upstream() -> Iterator[int]:
    with serving(lambda port: [sys.executable, str(HTTP_UPSTREAM), "--port", str(port)],
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as port:
        yield port


def http_config(port: int, upstream: int) -> dict[str, Any]:
    """Listener ``http``: ``/status/`` to the cluster ``backend`` (the upstream), ``/old``
    redirected by mosn, anything else no route."""
    routes = [
        {"match": {"prefix": "/status/"}, "route": {"cluster_name": "backend"}},
        {"match": {"prefix": "/old"}, "redirect": {"path_redirect": "/new",
                                                   "response_code": 308}},
    ]
    backend = {"name": "backend", "lb_type": "LB_ROUNDROBIN",
               "hosts": [{"address": f"127.0.0.1:{upstream}"}]}
    return one_listener_http_config(port, [backend], routes)


def send_http(port: int) -> Counter[int]:
    """The traffic, one connection per request (so workers share it); returns the
    statuses the client saw."""
    seen: Counter[int] = Counter()
    paths = ([f"/status/{code}" for code in UPSTREAM_STATUSES] + ["/none"] * NO_ROUTE
             + ["/old"] * REDIRECTS)
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", limits=limits) as client:
        for path in paths:
            seen[client.get(path).status_code] += 1
    return seen


def run_http(start_mosn: Any, upstream: int, *args: str) -> tuple[dict[str, Any], Counter[int]]:
    port = free_port()
    mosn = start_mosn(http_config(port, upstream), *args)
    seen = send_http(port)
    n = sum(seen.values())
    mosn.wait_stat("listener.http.downstream_cx_destroy", n)
    return mosn.admin("/stats?format=json").json(), seen


@pytest.mark.parametrize("workers", ["1", "2"])
def test_http_requests_counted_by_status_class(start_mosn, http_upstream, workers):
    body, seen = run_http(start_mosn, http_upstream, "--workers", workers)
    stats, hist = body["stats"], body["histograms"]
    assert seen == {200: 7, 404: 3 + NO_ROUTE, 503: 2, 308: REDIRECTS}
    n = sum(seen.values())
    by_class = Counter({k // 100: v for k, v in seen.items()})
    for prefix in ("listener.http", "protocol.Http1"):
        assert stats[f"{prefix}.downstream_rq_total"] == n
        assert stats[f"{prefix}.downstream_rq_active"] == 0
        for k in range(1, 6):
            assert stats[f"{prefix}.downstream_rq_{k}xx"] == by_class[k], (prefix, k)
        assert hist[f"{prefix}.downstream_rq_time"]["count"] == n
    assert stats["listener.http.downstream_cx_total"] == n
    upstream = Counter(code // 100 for code in UPSTREAM_STATUSES)
    for k in range(1, 6):
        assert stats[f"cluster.backend.upstream_rq_{k}xx"] == upstream[k]
        host = f"cluster.backend.host.127.0.0.1:{http_upstream}"
        assert stats[f"{host}.rq_{k}xx"] == upstream[k]
    assert stats["cluster.backend.upstream_rq_total"] == len(UPSTREAM_STATUSES)
    assert hist["cluster.backend.upstream_rq_time"]["count"] == len(UPSTREAM_STATUSES)


def test_histogram_buckets_add_up_to_the_requests(start_mosn, http_upstream):
    body, seen = run_http(start_mosn, http_upstream)
    h = body["histograms"]["listener.http.downstream_rq_time"]
    bounds = [bound for bound, _ in h["buckets"]]
    counts = [count for _, count in h["buckets"]]
    assert bounds == [*HISTOGRAM_BUCKETS_MS, None]
    assert counts == sorted(counts)  # cumulative
    assert counts[-1] == h["count"] == sum(seen.values())
    assert 0 < h["sum_ms"] < 10_000 * h["count"]
    q = h["quantiles"]
    assert 0 < q["p50"] <= q["p90"] <= q["p99"]


def test_prometheus_exposition_matches_the_stats(start_mosn, http_upstream):
    port = free_port()
    mosn = start_mosn(http_config(port, http_upstream))
    seen = send_http(port)
    mosn.wait_stat("listener.http.downstream_cx_destroy", sum(seen.values()))
    text = mosn.admin("/stats/prometheus").text
    body = mosn.admin("/stats?format=json").json()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    http = (("listener", "http"),)
    assert samples[("mosn_listener_downstream_rq_total", http)] == sum(seen.values())
    assert samples[("mosn_listener_downstream_rq_4xx_total", http)] == seen[404]
    assert samples[("mosn_listener_downstream_cx_active", http)] == \
        body["stats"]["listener.http.downstream_cx_active"]
    backend = (("cluster", "backend"),)
    assert samples[("mosn_cluster_upstream_rq_total", backend)] == len(UPSTREAM_STATUSES)
    host = (("cluster", "backend"), ("host", f"127.0.0.1:{http_upstream}"))
    assert samples[("mosn_host_rq_5xx_total", host)] == 2
    assert samples[("mosn_protocol_downstream_rq_3xx_total", (("protocol", "Http1"),))] \
        == REDIRECTS
    h = body["histograms"]["listener.http.downstream_rq_time"]
    assert samples[("mosn_listener_downstream_rq_time_count", http)] == h["count"]
    assert samples[("mosn_listener_downstream_rq_time_sum", http)] == pytest.approx(h["sum_ms"])
    for bound, count in h["buckets"]:
        le = "+Inf" if bound is None else f"{bound:g}"
        labels = tuple(sorted((*http, ("le", le))))
        assert samples[("mosn_listener_downstream_rq_time_bucket", labels)] == count
    # every stat of the JSON view is in the exposition, under one family or another
    assert len([k for k in samples if not k[0].endswith(("_bucket", "_count", "_sum",
                                                         "_created"))]) \
        == len(body["stats"])


@pytest.mark.parametrize("workers", ["1", "2"])
def test_tcp_connections_and_bytes(start_mosn, echo_server, workers):
    port = free_port()
    mosn = start_mosn(tcp_proxy_config(port, [f"127.0.0.1:{echo_server}"]), "--workers", workers)
    sizes = [1, 100, 1000, 10_000, 65_536, 7, 300, 5000]
    for size in sizes:
        assert echo_once(port, bytes(size)) == bytes(size)
    n, total = len(sizes), sum(sizes)
    stats = mosn.wait_stat("listener.proxy.downstream_cx_destroy", n)
    assert stats["listener.proxy.downstream_cx_total"] == n
    assert stats["listener.proxy.downstream_cx_active"] == 0
    assert stats["listener.proxy.downstream_cx_rx_bytes_total"] == total
    assert stats["listener.proxy.downstream_cx_tx_bytes_total"] == total
    stats = mosn.wait_stat("cluster.backend.upstream_cx_active", 0)
    assert stats["cluster.backend.upstream_cx_total"] == n
    assert stats["cluster.backend.upstream_cx_tx_bytes_total"] == total
    assert stats["cluster.backend.upstream_cx_rx_bytes_total"] == total
    assert stats[f"cluster.backend.host.127.0.0.1:{echo_server}.cx_total"] == n
    assert stats["listener.proxy.downstream_rq_total"] == 0  # no L7 proxy: no requests


def test_timeouts_and_retries(start_mosn, http_upstream):
    port = free_port()
    config = http_config(port, http_upstream)
    config["servers"][0]["routers"][0]["virtual_hosts"][0]["routers"][:0] = [
        {"match": {"prefix": "/delay/"}, "route": {"cluster_name": "backend",
                                                   "timeout": "200ms"}},
        {"match": {"prefix": "/fail-then-ok/"}, "route": {
            "cluster_name": "backend", "retry_policy": {"retry_on": "5xx", "num_retries": 1}}},
    ]
    mosn = start_mosn(config)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        assert client.get("/delay/1").status_code == 504
        assert client.get("/fail-then-ok/stats").status_code == 200
    stats = mosn.wait_stat("listener.http.downstream_rq_active", 0)
    host = f"cluster.backend.host.127.0.0.1:{http_upstream}"
    assert stats["cluster.backend.upstream_rq_timeout"] == 1
    assert stats[f"{host}.rq_timeout"] == 1
    assert stats["listener.http.downstream_rq_5xx"] == 1  # the 504
    assert stats["listener.http.downstream_rq_2xx"] == 1
    assert stats["cluster.backend.upstream_rq_retry"] == 1
    assert stats["cluster.backend.upstream_rq_total"] == 3  # the timed out try, 503, 200
    assert stats["cluster.backend.upstream_rq_5xx"] == 1
    assert stats["cluster.backend.upstream_rq_2xx"] == 1


def test_client_gone_before_the_response_is_a_rx_reset(start_mosn, http_upstream):
    port = free_port()
    config = http_config(port, http_upstream)
    config["servers"][0]["routers"][0]["virtual_hosts"][0]["routers"][0]["match"]["prefix"] = "/"
    mosn = start_mosn(config)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /delay/0.5 HTTP/1.1\r\nhost: x\r\n\r\n")
        mosn.wait_stat("listener.http.downstream_rq_active", 1)
        # closed with a reset (a FIN alone is a half-close: the response would still go)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stats = mosn.wait_stat("listener.http.downstream_rq_rx_reset", 1)
    assert stats["listener.http.downstream_rq_rx_reset"] == 1
    assert stats["listener.http.downstream_rq_active"] == 0
    assert stats["listener.http.downstream_rq_tx_reset"] == 0
    assert sum(stats[f"listener.http.downstream_rq_{k}xx"] for k in range(1, 6)) == 0


def test_a_store_for_workers_takes_new_stats_in_a_step_and_sums_their_rows():
    """Stats registered after the fork (what a control plane's push adds): refused
    outside a step, which every process takes alike; slot scopes registered at once;
    every row summed."""
    store = StatsStore()
    store.register("server.reload_success")
    store.allocate(3)  # two workers and the parent
    with pytest.raises(RuntimeError, match="outside a step"):
        store.register("cluster.new.upstream_rq_total")
    with store.in_step():
        index = store.register("cluster.new.upstream_rq_total")
        slots = store.slot_scopes("cluster.new.host", ("rq_total", "cx_active"), 4)
    assert len(store.names) == 2 + 4 * 2  # each slot's stats already there
    for row, count in ((0, 2), (1, 3), (2, 0)):
        store.use_row(row)
        store.values[index] += count
        store.values[slots[1].rq_total] += count
    store.label(slots[1], "cluster.new.host.127.0.0.1:8080")
    stats = store.snapshot()
    assert stats["cluster.new.upstream_rq_total"] == 5
    assert stats["cluster.new.host.127.0.0.1:8080.rq_total"] == 5


def test_a_worker_whose_stats_differ_from_the_parents_says_so(tmp_path):
    """The parent sends its count of stats (and of host slots of shared health taken)
    with each snapshot; a worker that has another count after serving it logs it and
    counts it (``follower`` stands in for the control plane part: the check is this
    test's subject)."""

    class Served:
        def offer(self, header: dict[str, Any], blob: bytes) -> list[str]:
            return []

    path = tmp_path / "mosn.yaml"
    path.write_text(yaml.safe_dump(tcp_proxy_config(free_port(), ["127.0.0.1:1"])))
    runtime = Runtime(load(path))
    try:
        runtime.store.allocate(3)
        runtime.store.use_row(0)
        same, taken = len(runtime.store.names), runtime.clusters.health.taken
        follow_snapshot(runtime, Served(), {"xds": {}, "stats": same, "health": taken}, b"")
        assert runtime.store.snapshot()["server.worker_stats_diverged"] == 0
        follow_snapshot(runtime, Served(), {"xds": {}, "stats": same + 14, "health": taken},
                        b"")
        assert runtime.store.snapshot()["server.worker_stats_diverged"] == 1
        assert runtime.store.snapshot()["server.worker_health_diverged"] == 0
        follow_snapshot(runtime, Served(), {"xds": {}, "stats": same + 14, "health": taken + 64},
                        b"")
        assert runtime.store.snapshot()["server.worker_health_diverged"] == 1
    finally:
        runtime.close_sockets()
