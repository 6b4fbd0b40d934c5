"""The ``%variable%`` registry in routing, in a real mosn with curl: route header
values expanded per request, routes matched on variables (MOSN's ``variables``),
and a route's cluster named by a variable (``cluster_variable``)."""

from __future__ import annotations

from typing import Any

import pytest

from http_scripted import ScriptedHttpUpstream, proxy_config
from test_ratelimit import curl
from mosn.config.loader import ConfigError, validate
from mosn.testing import free_port
from mosn.variables import Template, variable

def upstream_fields(body: str) -> dict[str, str]:
    """The request head the scripted upstream echoed, as a dict of its fields."""
    out = {}
    for line in body.split("\n")[1:]:
        name, _, value = line.partition(":")
        out[name.strip().lower()] = value.strip()
    return out


def header(key: str, value: str, append: bool = False) -> dict[str, Any]:
    return {"header": {"key": key, "value": value}, "append": append}


def test_route_header_values_are_expanded_per_request(start_mosn) -> None:
    with ScriptedHttpUpstream() as upstream:
        port = free_port()
        config = proxy_config(port, upstream.port, route={
            "request_headers_to_add": [
                header("x-method", "%x-mosn-method%"),
                header("x-who", "user=%request_header_x-user% from "
                                "%downstream_remote_address_without_port%"),
                header("x-arg", "%request_arg_q%"),
                header("x-literal", "100% sure")],
            "response_headers_to_add": [header("x-path", "%x-mosn-path%"),
                                        header("x-cluster", "%upstream_cluster%")]})
        start_mosn(config)
        status, fields, body = curl(port, "/a/b?q=42", "x-user: alice")
        sent = upstream_fields(body)
        status2, fields2, body2 = curl(port, "/c", "x-user: bob")
    assert status == status2 == 200
    assert sent["x-method"] == "GET"
    assert sent["x-who"] == "user=alice from 127.0.0.1"
    assert sent["x-arg"] == "42"
    assert sent["x-literal"] == "100% sure"
    assert fields["x-path"] == "/a/b" and fields["x-cluster"] == "up"
    assert upstream_fields(body2)["x-who"] == "user=bob from 127.0.0.1"
    assert upstream_fields(body2)["x-arg"] == ""
    assert fields2["x-path"] == "/c"


def test_routes_match_on_variables(start_mosn) -> None:
    with ScriptedHttpUpstream() as default, ScriptedHttpUpstream() as gold:
        port = free_port()
        config = proxy_config(port, default.port, routes=[{
            "match": {"prefix": "/", "variables": [
                {"name": "request_header_x-tier", "value": "gold", "model": "or"},
                {"name": "x-mosn-querystring", "regex": "tier=gold"}]},
            "route": {"cluster_name": "gold"}}])
        config["cluster_manager"]["clusters"].append(
            {"name": "gold", "hosts": [{"address": f"127.0.0.1:{gold.port}"}]})
        start_mosn(config)
        for path, headers in (("/", ("x-tier: gold",)), ("/?tier=gold", ()),
                              ("/", ("x-tier: silver",)), ("/", ())):
            assert curl(port, path, *headers)[0] == 200
        assert (len(gold.heads), len(default.heads)) == (2, 2)


def test_cluster_variable_names_the_cluster(start_mosn) -> None:
    with ScriptedHttpUpstream() as one, ScriptedHttpUpstream() as two:
        port = free_port()
        config = proxy_config(port, one.port, routes=[{
            "match": {"prefix": "/pick"},
            "route": {"cluster_variable": "request_header_x-cluster"}}])
        config["cluster_manager"]["clusters"].append(
            {"name": "two", "hosts": [{"address": f"127.0.0.1:{two.port}"}]})
        start_mosn(config)
        assert curl(port, "/pick", "x-cluster: two")[0] == 200
        assert curl(port, "/pick", "x-cluster: up")[0] == 200
        assert curl(port, "/pick", "x-cluster: nowhere")[0] == 503
        assert curl(port, "/pick")[0] == 503
        assert (len(one.heads), len(two.heads)) == (1, 1)


@pytest.mark.parametrize("route, path, message", [
    ({"request_headers_to_add": [header("x", "%nope%")]},
     "route.request_headers_to_add[0].header.value", "unknown variable %nope%"),
    ({"response_headers_to_add": [header("x", "a %request_header_% b")]},
     "route.response_headers_to_add[0].header.value", "unknown variable %request_header_%"),
])
def test_an_unknown_variable_is_refused_with_its_path(route, path, message) -> None:
    config = proxy_config(free_port(), 1, route=route)
    with pytest.raises(ConfigError) as refused:
        validate(config)
    want = f"servers[0].routers[0].virtual_hosts[0].routers[0].{path}: {message}"
    assert any(e.startswith(want) for e in refused.value.errors), refused.value.errors


def test_a_feature_registers_its_variables() -> None:
    """The TLS layer's variables are in the one registry (no stream without TLS has a value)."""
    assert variable("downstream_peer_uri_san").meaning.startswith("the client certificate")
    assert Template("%request_header_x-a%-%cookie_sid%").parts[1] == "-"
