"""MOSN's ``metrics`` block: the Prometheus sink on a port of its own, scraped by a
real HTTP client (httpx) and parsed by prometheus-client's parser, and
``stats_matcher`` over every view of the stats."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port
from mosn.config import ConfigError, validate


def direct_config(port: int, metrics: dict[str, Any]) -> dict[str, Any]:
    """An HTTP listener whose route answers itself (no backend needed)."""
    return {
        "servers": [{
            "graceful_timeout": "1s",
            "routers": [{"router_config_name": "r", "virtual_hosts": [{
                "domains": ["*"], "routers": [{"match": {"prefix": "/"},
                                               "direct_response": {"status": 200,
                                                                   "body": "ok"}}]}]}],
            "listeners": [{"name": "web", "address": f"127.0.0.1:{port}", "filter_chains": [
                {"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": "Http1", "router_config_name": "r"}}]}]}],
        }],
        "cluster_manager": {"clusters": [
            {"name": "backend", "hosts": [{"address": "127.0.0.1:9"}]}]},
        "metrics": metrics,
    }


def sink(port: int, **config: Any) -> dict[str, Any]:
    return {"type": "prometheus", "config": {"port": port, "address": "127.0.0.1", **config}}


def scrape(url: str) -> dict[str, Any]:
    r = httpx.get(url)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def samples(families: dict[str, Any], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value
            for s in families[name].samples if s.name == name or s.name == name + "_total"}


def serve_requests(port: int, n: int) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
        for _ in range(n):
            assert c.get("/").text == "ok"


def test_the_prometheus_sink_serves_the_stats_on_its_own_port(start_mosn):
    port, metrics_port = free_port(), free_port()
    # MOSN's sample fields: shm_zone, shm_size, flush_interval (Go runtime, warned)
    start_mosn(direct_config(port, {
        "shm_zone": "metrics", "shm_size": "10MB", "flush_interval": "500ms",
        "sinks": [sink(metrics_port, endpoint="/stats/prometheus", percentiles=[50, 99])]}))
    serve_requests(port, 5)
    families = scrape(f"http://127.0.0.1:{metrics_port}/stats/prometheus")
    rq = samples(families, "mosn_listener_downstream_rq_2xx")
    assert rq == {(("listener", "web"),): 5.0}
    # the histogram's percentiles, as MOSN's sink writes them (a gauge per percentile)
    assert {dict(k)["percentile"] for k in samples(
        families, "mosn_listener_downstream_rq_time_percentile")} == {"50", "99"}
    # the process and Python runtime collectors (MOSN: process and Go)
    assert "process_cpu_seconds" in families and "python_gc_objects_collected" in families
    other = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert other.status_code == 404 and "/stats/prometheus" in other.text


def test_sink_defaults_to_mosn_s_metrics_path_and_runtime_collectors_can_be_left_out(
        start_mosn):
    port, metrics_port = free_port(), free_port()
    start_mosn(direct_config(port, {"sinks": [sink(
        metrics_port, disable_collect_process=True, disable_collect_go=True)]}))
    serve_requests(port, 1)
    families = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
    assert "mosn_listener_downstream_rq_2xx" in families
    assert not any(n.startswith(("process_", "python_")) for n in families)


def test_stats_matcher_reject_all_shows_no_stat_anywhere(start_mosn):
    port, metrics_port = free_port(), free_port()
    mosn = start_mosn(direct_config(port, {"stats_matcher": {"reject_all": True},
                                           "sinks": [sink(metrics_port)]}))
    serve_requests(port, 3)
    families = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
    assert not any(n.startswith("mosn_") for n in families)
    assert "process_cpu_seconds" in families  # the runtime's own metrics are not stats
    assert mosn.admin("/stats").text == ""
    assert "mosn_" not in mosn.admin("/stats/prometheus").text
    assert mosn.admin("/api/v1/stats").json() == {}


def test_stats_matcher_lists_choose_the_stats_shown(start_mosn):
    port, metrics_port = free_port(), free_port()
    mosn = start_mosn(direct_config(port, {
        "stats_matcher": {"inclusion_list": {"patterns": [{"prefix": "listener."}]}},
        "sinks": [sink(metrics_port)]}))
    serve_requests(port, 2)
    names = [n for n in scrape(f"http://127.0.0.1:{metrics_port}/metrics")
             if n.startswith("mosn_")]
    assert names and all(n.startswith("mosn_listener_") for n in names)
    assert all(line.startswith("listener.") for line in mosn.admin("/stats").text.splitlines())


def test_stats_matcher_mosn_s_exclusion_keys_and_labels(start_mosn):
    port, metrics_port = free_port(), free_port()
    mosn = start_mosn(direct_config(port, {
        "stats_matcher": {"exclusion_keys": ["downstream_rq_2xx"],
                          "exclusion_labels": ["cluster"]},
        "sinks": [sink(metrics_port)]}))
    serve_requests(port, 2)
    families = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
    assert "mosn_listener_downstream_rq_2xx" not in families
    assert "mosn_listener_downstream_rq" in families  # downstream_rq_total, kept
    assert not any(n.startswith(("mosn_cluster_", "mosn_host_")) for n in families)
    assert "cluster.backend." not in mosn.admin("/stats").text


@pytest.mark.parametrize(("metrics", "expected"), [
    ({"sinks": [{"type": "console", "config": {"port": 1}}]},
     "metrics.sinks[0]: sink type 'console': mosn has MOSN's 'prometheus' sink only"),
    ({"sinks": [{"type": "prometheus", "config": {"port": 9100, "endpont": "/m"}}]},
     "metrics.sinks[0].config.endpont: unknown field; did you mean 'endpoint'?"),
    ({"sinks": [{"type": "prometheus", "config": {"port": 9100,
                                                  "export_url": "http://gw:9091"}}]},
     "metrics.sinks[0].config.export_url: not supported by mosn yet"),
    ({"stats_matcher": {"reject_all": True,
                        "inclusion_list": {"patterns": [{"prefix": "a"}]}}},
     "metrics.stats_matcher: set one of reject_all, inclusion_list"),
    ({"sinks": [{"type": "prometheus", "config": {"port": 9100, "percentiles": [0]}}]},
     "metrics.sinks[0].config: percentiles: 0 is not in (0, 100]"),
])
def test_a_bad_metrics_block_is_refused_with_its_path(metrics, expected):
    with pytest.raises(ConfigError) as info:
        validate(direct_config(free_port(), metrics))
    assert any(e.startswith(expected) for e in info.value.errors), info.value.errors


def test_mosn_s_go_runtime_metrics_fields_are_accepted_with_a_warning():
    loaded = validate(direct_config(free_port(), {"shm_zone": "metrics", "sinks": []}))
    assert loaded.warnings == ["metrics.shm_zone: accepted and not used: the shared memory "
                               "zone of MOSN's Go metrics; mosn's stats have their own "
                               "shared memory (docs/compat.md)"]
