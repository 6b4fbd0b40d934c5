"""``header_to_metadata`` (MOSN's and Envoy's) in a real mosn: request headers become
subset load balancing criteria, checked by which real upstream answers httpx."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from http_scripted import ScriptedHttpUpstream, proxy_config
from mosn.config.loader import ConfigError, validate
from mosn.testing import free_port
from test_upstream_e2e import Backend, http_config, loop_thread  # noqa: F401  (fixture)


def subset_cluster(v1: Backend, v2: Backend) -> dict[str, Any]:
    return {"name": "c", "lb_type": "LB_ROUNDROBIN",
            "hosts": [{"address": v1.address, "metadata": {"version": "1"}},
                      {"address": v2.address, "metadata": {"version": "2"}}],
            "lb_subset_config": {"subset_selectors": [["version"]], "fall_back_policy": 1}}


def with_filter(config: dict[str, Any], flt: dict[str, Any]) -> dict[str, Any]:
    config["servers"][0]["listeners"][0]["stream_filters"] = [flt]
    return config


MOSN_RULES = {"type": "header_to_metadata", "config": {"request_rules": [
    {"header": "x-version", "on_header_missing": {"key": "version", "value": "1"}},
    {"header": "x-version", "on_header_present": {"key": "version"}, "remove": True}]}}
ENVOY_RULES = {"type": "envoy.filters.http.header_to_metadata", "config": {"request_rules": [
    {"header": "x-release", "on_header_present": {
        "metadata_namespace": "envoy.lb", "key": "version", "type": "STRING",
        "regex_value_rewrite": {"pattern": {"regex": "^release-(\\d+)$"},
                                "substitution": "\\1"}}},
    {"cookie": "canary", "on_header_present": {"metadata_namespace": "envoy.lb",
                                               "key": "version", "value": "2"}}]}}


def upstreams(port: int, path: str = "/", n: int = 4, **headers: str) -> set[str]:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
        return {c.get(path, headers=headers).headers["x-upstream"] for _ in range(n)}


def test_mosn_rules_choose_the_subset(start_mosn, loop_thread) -> None:
    v1, v2 = Backend(loop_thread, "v1").start(), Backend(loop_thread, "v2").start()
    port = free_port()
    start_mosn(with_filter(http_config(port, [subset_cluster(v1, v2)]), MOSN_RULES))
    assert upstreams(port, **{"x-version": "2"}) == {"v2"}
    assert upstreams(port, **{"x-version": "1"}) == {"v1"}
    assert upstreams(port) == {"v1"}  # on_header_missing
    assert upstreams(port, **{"x-version": "7"}) == {"v1", "v2"}  # no such subset: any host


def test_envoy_rules_with_a_rewrite_and_a_cookie(start_mosn, loop_thread) -> None:
    v1, v2 = Backend(loop_thread, "v1").start(), Backend(loop_thread, "v2").start()
    port = free_port()
    start_mosn(with_filter(http_config(port, [subset_cluster(v1, v2)]), ENVOY_RULES))
    assert upstreams(port, **{"x-release": "release-2"}) == {"v2"}
    assert upstreams(port, **{"x-release": "release-1"}) == {"v1"}
    assert upstreams(port, cookie="a=b; canary=yes") == {"v2"}
    assert upstreams(port) == {"v1", "v2"}


def test_the_metadata_overrides_the_route_and_a_route_overrides_the_rules(
        start_mosn, loop_thread) -> None:
    v1, v2 = Backend(loop_thread, "v1").start(), Backend(loop_thread, "v2").start()
    port = free_port()
    routes = [
        {"match": {"prefix": "/fixed"}, "route": {"cluster_name": "c"},
         "per_filter_config": {"header_to_metadata": {"request_rules": []}}},
        {"match": {"prefix": "/"}, "route": {"cluster_name": "c", "metadata_match": {
            "version": "1"}}}]
    start_mosn(with_filter(http_config(port, [subset_cluster(v1, v2)], routes), MOSN_RULES))
    assert upstreams(port, **{"x-version": "2"}) == {"v2"}
    assert upstreams(port, "/fixed", **{"x-version": "2"}) == {"v1", "v2"}


def test_remove_drops_the_header(start_mosn) -> None:
    with ScriptedHttpUpstream() as upstream:
        port = free_port()
        start_mosn(proxy_config(port, upstream.port, listener={"stream_filters": [MOSN_RULES]}))
        with httpx.Client() as c:
            body = c.get(f"http://127.0.0.1:{port}/", headers={"x-version": "2",
                                                               "x-other": "kept"}).text
    assert "x-other: kept" in body.lower() and "x-version" not in body.lower()


@pytest.mark.parametrize("rule, message", [
    ({"header": "x"}, "one of on_header_present or on_header_missing needs to be specified"),
    ({"on_header_present": {"key": "k"}}, "set one of header or cookie"),
    ({"header": "x", "on_header_present": {"key": "k", "type": "NUMBER"}},
     "type NUMBER: mosn writes STRING values only"),
])
def test_bad_rules_are_refused(rule, message) -> None:
    config = proxy_config(free_port(), 1, listener={"stream_filters": [
        {"type": "header_to_metadata", "config": {"request_rules": [rule]}}]})
    with pytest.raises(ConfigError) as refused:
        validate(config)
    assert any(message in e and "stream_filters[0].config.request_rules[0]" in e
               for e in refused.value.errors), refused.value.errors
