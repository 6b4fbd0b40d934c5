"""The admin API against a real mosn: MOSN's /api/v1 shapes, redaction of secrets in
the config dumps, /logging, /healthcheck/fail and /ok, the index page."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest

from conftest import free_port, tcp_proxy_config
from test_tcp_proxy import echo_once
from mosn.admin.redact import Redactor
from mosn.admin.server import quantile
from mosn.testing.process import AdminResponse, MosnProcess


def post(mosn: MosnProcess, path: str) -> AdminResponse:
    request = urllib.request.Request(mosn.url(path), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return AdminResponse(r.status, r.read().decode())
    except urllib.error.HTTPError as exc:
        return AdminResponse(exc.code, exc.read().decode())


def pids_saying(mosn: MosnProcess, levels: str) -> set[str]:
    """The processes whose log says they set ``levels``."""
    return {line.split("(pid ")[1].split(")")[0] for line in mosn.output().splitlines()
            if "log levels set" in line and line.endswith(levels)}


@pytest.fixture
def tcp_mosn(start_mosn, echo_server) -> tuple[MosnProcess, int, str]:
    port = free_port()
    mosn = start_mosn(tcp_proxy_config(port, [f"127.0.0.1:{echo_server}"]))
    return mosn, port, f"127.0.0.1:{echo_server}"


def test_mosn_api_v1_stats_shape(tcp_mosn):
    mosn, port, host = tcp_mosn
    assert echo_once(port, b"12345") == b"12345"
    mosn.wait_stat("listener.proxy.downstream_cx_destroy", 1)
    shown = mosn.admin("/api/v1/stats").json()
    assert set(shown) == {"downstream", "upstream"}
    listener = shown["downstream"]["listener.proxy"]
    assert listener["connection_total"] == "1"  # MOSN's key for downstream_cx_total
    assert listener["bytes_read_total"] == "5"
    assert listener["downstream_cx_overflow"] == "0"  # no MOSN key: mosn's own name
    assert "protocol.bolt" in shown["downstream"]
    assert shown["upstream"]["cluster.backend"]["connection_total"] == "1"
    assert shown["upstream"][f"cluster.backend.host.{host}"]["connection_total"] == "1"
    assert all(isinstance(v, str) for ns in shown.values() for kv in ns.values()
               for v in kv.values())
    one = mosn.admin("/api/v1/stats?key=upstream.cluster.backend").json()
    assert list(one) == ["upstream"] and list(one["upstream"]) == ["cluster.backend"]
    assert mosn.admin("/api/v1/stats?key=upstream.cluster.nope").text.startswith("no metrics key")
    assert mosn.admin("/api/v1/stats?key=a&other=b").status_code == 400


def test_mosn_api_v1_config_dump_shape(tcp_mosn):
    mosn, port, host = tcp_mosn
    whole = mosn.admin("/api/v1/config_dump").json()
    assert set(whole) == {"mosn_config", "listener", "cluster", "routers"}
    assert whole["listener"]["proxy"]["address"] == f"127.0.0.1:{port}"
    assert whole["cluster"]["backend"]["hosts"][0]["address"] == host
    assert "listeners" not in whole["mosn_config"]["servers"][0]
    assert "clusters" not in whole["mosn_config"]["cluster_manager"]
    assert mosn.admin("/api/v1/config_dump?allclusters").json() == whole["cluster"]
    assert mosn.admin("/api/v1/config_dump?alllisteners").json() == whole["listener"]
    assert mosn.admin("/api/v1/config_dump?mosnconfig").json() == whole["mosn_config"]
    assert mosn.admin("/api/v1/config_dump?cluster=backend").json() == whole["cluster"]["backend"]
    assert mosn.admin("/api/v1/config_dump?listener=nope").status_code == 404
    assert mosn.admin("/api/v1/config_dump?cluster=backend&listener=proxy").status_code == 400


def test_config_dumps_redact_secrets_at_any_depth(start_mosn, echo_server):
    port = free_port()
    secrets = {"private_key": "-----BEGIN PRIVATE KEY-----", "nested": [
        {"password": "hunter2", "max_tokens": 5, "certificate": "-----BEGIN CERTIFICATE-----"},
        {"api_token": {"inline": "tok-123"}}]}
    config = {
        "servers": [{
            "routers": [{"router_config_name": "main", "virtual_hosts": [{
                "name": "all", "domains": ["*"], "routers": [{
                    "match": {"prefix": "/"}, "route": {
                        "cluster_name": "backend", "request_headers_to_add": [
                            {"header": {"key": "Authorization", "value": "Bearer abc.def"}},
                            {"header": {"key": "x-team", "value": "blue"}}]}}]}]}],
            "listeners": [{"name": "http", "address": f"127.0.0.1:{port}",
                           "filter_chains": [{"filters": [{"type": "proxy", "config": {
                               "router_config_name": "main"}}]}]}],
        }],
        "cluster_manager": {"clusters": [{"name": "backend", "hosts": [
            {"address": f"127.0.0.1:{echo_server}", "metadata": {"tls": secrets}}]}]},
    }
    mosn = start_mosn(config)
    for path in ("/config_dump", "/api/v1/config_dump", "/api/v1/config_dump?allclusters",
                 "/api/v1/config_dump?allrouters"):
        text = mosn.admin(path).text
        for secret in ("BEGIN PRIVATE KEY", "hunter2", "tok-123", "abc.def"):
            assert secret not in text, (path, secret)
    dump = mosn.admin("/config_dump").json()
    tls = dump["cluster_manager"]["clusters"][0]["hosts"][0]["metadata"]["tls"]
    assert tls["private_key"] == "[redacted]"
    assert tls["nested"][0] == {"password": "[redacted]", "max_tokens": 5,
                                "certificate": "-----BEGIN CERTIFICATE-----"}
    headers = dump["servers"][0]["routers"][0]["virtual_hosts"][0]["routers"][0]["route"][
        "request_headers_to_add"]
    assert [h["header"]["value"] for h in headers] == ["[redacted]", "blue"]


def test_redact_leaves_empty_values_and_plain_keys():
    redact = Redactor().redact
    assert redact({"password": "", "token_bucket": {"max_tokens": 3}, "name": "x"}) == \
        {"password": "", "token_bucket": {"max_tokens": 3}, "name": "x"}
    assert redact([{"name": "cookie", "value": "s=1"}]) == [{"name": "cookie",
                                                            "value": "[redacted]"}]


def test_quantile_interpolates_within_a_bucket():
    buckets = [[1, 0], [10, 10], [100, 20], [None, 20]]
    assert quantile(buckets, 0.5) == 10
    assert quantile(buckets, 0.75) == pytest.approx(55)
    assert quantile([[1, 0], [None, 4]], 0.5) == 1  # in the overflow bucket
    assert quantile([[1, 0], [None, 0]], 0.5) is None


@pytest.mark.parametrize("workers", ["1", "2"])
def test_logging_lists_and_changes_levels(start_mosn, echo_server, workers):
    port = free_port()
    mosn = start_mosn(tcp_proxy_config(port, [f"127.0.0.1:{echo_server}"]), "--workers", workers)
    levels = mosn.admin("/logging?format=json").json()["loggers"]
    assert levels["mosn.upstream"] == "info"
    assert "mosn.admin: info" in mosn.admin("/logging").text
    changed = post(mosn, "/logging?mosn.upstream=debug")
    assert changed.status_code == 200 and "mosn.upstream: debug" in changed.text
    levels = mosn.admin("/logging?format=json").json()["loggers"]
    assert levels["mosn.upstream"] == "debug" and levels["mosn.admin"] == "info"
    post(mosn, "/logging?level=warning")
    levels = mosn.admin("/logging?format=json").json()["loggers"]
    assert set(levels.values()) == {"warning"}
    post(mosn, "/logging?mosn.network=off")
    assert mosn.admin("/logging?format=json").json()["loggers"]["mosn.network"] == "off"
    assert post(mosn, "/logging?level=loud").status_code == 400
    assert post(mosn, "/logging?no.such.logger=debug").status_code == 404
    assert post(mosn, "/logging").status_code == 400
    assert echo_once(port, b"still serving") == b"still serving"
    # the parent and each worker say they took the change (the workers a moment later)
    processes = int(workers) + (workers != "1")
    deadline = time.monotonic() + 5
    while len(said := pids_saying(mosn, "mosn.upstream=debug")) < processes \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(said) == processes


def test_healthcheck_fail_makes_ready_503_until_ok(tcp_mosn):
    mosn, port, _ = tcp_mosn
    assert mosn.admin("/ready").status_code == 200
    assert mosn.admin("/healthcheck/fail").status_code == 405  # changes need a POST
    assert post(mosn, "/healthcheck/fail").status_code == 200
    assert mosn.admin("/ready").status_code == 503
    assert echo_once(port, b"draining, not closed") == b"draining, not closed"
    assert post(mosn, "/healthcheck/ok").status_code == 200
    assert mosn.admin("/ready").text == "LIVE\n"


def test_index_links_every_endpoint(tcp_mosn):
    mosn, _, _ = tcp_mosn
    page = mosn.admin("/").text
    for path in ("/dashboard", "/stats/prometheus", "/api/v1/stats", "/logging",
                 "/healthcheck/fail"):
        assert f'href="{path}"' in page
    assert mosn.admin("/dashboard").text.startswith("<!doctype html>")
    assert mosn.admin("/stats?filter=^cluster\\.backend\\.upstream_cx_total$").text == \
        "cluster.backend.upstream_cx_total: 0\n"
