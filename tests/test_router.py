"""The L7 router as pure logic: config validation, virtual host and route matching, actions."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mosn.config.loader import _pydantic_errors
from mosn.router import RouteRequest, Routers, RouteTable, check_references, parse_routers


def table(virtual_hosts: list[dict[str, Any]], **config: Any) -> RouteTable:
    return Routers(parse_routers([{"router_config_name": "r", "virtual_hosts": virtual_hosts,
                                   **config}]))["r"]


def vhost(domains: list[str], *routes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": domains[0], "domains": domains, "routers": list(routes), **extra}


def to(cluster: str, **match: Any) -> dict[str, Any]:
    return {"match": match, "route": {"cluster_name": cluster}}


def cluster(t: RouteTable, host: str = "", path: str = "", method: str = "GET",
            **headers: str) -> str | None:
    route = t.route(RouteRequest(host=host, path=path, method=method, headers=headers))
    return route.cluster_name(headers) if route else None


def errors(raw: Any) -> list[str]:
    with pytest.raises(ValidationError) as info:
        parse_routers(raw)
    return _pydantic_errors(info.value, "routers")


def one_route(route: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"router_config_name": "r", "virtual_hosts": [vhost(["*"], route)]}]


# -- virtual hosts by domain -------------------------------------------------------------------

DOMAINS = table([
    vhost(["www.foo.com"], to("exact")),
    vhost(["www.foo.com:8080"], to("exact-port")),
    vhost(["*.foo.com"], to("suffix")),
    vhost(["*.bar.foo.com"], to("longer-suffix")),
    vhost(["www.*"], to("prefix")),
    vhost(["www.b*"], to("longer-prefix")),
    vhost(["*"], to("any")),
])


@pytest.mark.parametrize("host, expected", [
    ("www.foo.com", "exact"),
    ("WWW.Foo.COM", "exact"),
    ("www.foo.com:9090", "exact"),
    ("www.foo.com:8080", "exact-port"),
    ("a.foo.com", "suffix"),
    ("a.foo.com:80", "suffix"),
    ("a.bar.foo.com", "longer-suffix"),
    ("bar.foo.com", "suffix"),
    (".foo.com", "any"),  # a wildcard stands for one character at least
    ("www.example.org", "prefix"),
    ("www.bar.org", "longer-prefix"),
    ("www.", "any"),
    ("example.org", "any"),
    ("", "any"),
])
def test_virtual_host_by_domain(host: str, expected: str) -> None:
    assert cluster(DOMAINS, host, "/") == expected


def test_suffix_wildcard_before_prefix_wildcard() -> None:
    t = table([vhost(["www.*"], to("prefix")), vhost(["*.com"], to("suffix"))])
    assert cluster(t, "www.a.com", "/") == "suffix"


def test_ipv6_host_without_port() -> None:
    t = table([vhost(["[::1]"], to("v6"))])
    assert cluster(t, "[::1]:8080", "/") == "v6"


def test_no_virtual_host_gives_no_route() -> None:
    t = table([vhost(["a.com"], to("a"))])
    assert cluster(t, "b.com", "/") is None


def test_a_default_only_table_ignores_host() -> None:
    t = table([vhost(["*"], to("any"))])
    assert cluster(t, "anything:1", "/") == "any"


# -- routes ------------------------------------------------------------------------------------


def test_prefix_path_and_regex() -> None:
    t = table([vhost(["*"], to("exact", path="/a"), to("regex", regex="^/a/[0-9]+$"),
                     to("prefix", prefix="/a"))])
    assert cluster(t, path="/a") == "exact"
    assert cluster(t, path="/a?x=1") == "exact"
    assert cluster(t, path="/a/12") == "regex"
    assert cluster(t, path="/a/12x") == "prefix"
    assert cluster(t, path="/b") is None


def test_regex_searches_unanchored_like_mosn() -> None:
    t = table([vhost(["*"], to("regex", regex="v[0-9]"))])
    assert cluster(t, path="/api/v2/users") == "regex"


def test_path_case_sensitivity() -> None:
    t = table([vhost(["*"], to("sensitive", prefix="/A"),
                     to("insensitive", prefix="/b", case_sensitive=False))])
    assert cluster(t, path="/a") is None
    assert cluster(t, path="/B/x") == "insensitive"


def test_first_matching_route_wins() -> None:
    t = table([vhost(["*"], to("first", prefix="/"), to("second", prefix="/a"))])
    assert cluster(t, path="/a") == "first"


def test_headers_exact_regex_present_invert() -> None:
    t = table([vhost(["*"],
                     to("exact", headers=[{"name": "X-Env", "value": "prod"}]),
                     to("regex", headers=[{"name": "x-env", "value": "^st.*", "regex": True}]),
                     to("inverted", headers=[{"name": "x-env", "value": "dev", "invert_match": True}]),
                     to("present", headers=[{"name": "x-trace"}]),
                     to("absent", headers=[{"name": "x-trace", "present_match": False}]))])
    assert cluster(t, path="/", **{"x-env": "prod"}) == "exact"
    assert cluster(t, path="/", **{"x-env": "staging"}) == "regex"
    assert cluster(t, path="/", **{"x-env": "qa"}) == "inverted"
    assert cluster(t, path="/", **{"x-env": "dev", "x-trace": ""}) == "present"
    assert cluster(t, path="/", **{"x-env": "dev"}) == "absent"


def test_inverted_match_needs_the_header() -> None:
    t = table([vhost(["*"], to("inverted", headers=[{"name": "x", "value": "a", "invert_match": True}]))])
    assert cluster(t, path="/") is None


def test_all_headers_must_match() -> None:
    t = table([vhost(["*"], to("both", headers=[{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]))])
    assert cluster(t, path="/", a="1", b="2") == "both"
    assert cluster(t, path="/", a="1") is None


def test_method_header_reads_the_request_method() -> None:
    t = table([vhost(["*"], to("post", prefix="/", headers=[{"name": "method", "value": "POST"}]))])
    assert cluster(t, path="/", method="POST") == "post"
    assert cluster(t, path="/", method="GET") is None


def test_rpc_route_with_headers_only_and_no_path() -> None:
    t = table([vhost(["*"],
                     to("users", headers=[{"name": "service", "value": "com.a.UserService:1.0"}]),
                     to("any-service", headers=[{"name": "service", "value": ".*"}]))])
    assert cluster(t, service="com.a.UserService:1.0") == "users"
    assert cluster(t, service="com.a.Other:1.0") == "any-service"  # MOSN's ".*" without regex
    assert cluster(t) is None


def test_query_parameters() -> None:
    t = table([vhost(["*"],
                     to("exact", prefix="/", query_parameters=[
                         {"name": "v", "string_match": {"exact": "2"}}]),
                     to("regex", prefix="/", query_parameters=[
                         {"name": "v", "string_match": {"safe_regex": {"regex": "[0-9]+"}}}]),
                     to("ci-prefix", prefix="/", query_parameters=[
                         {"name": "v", "string_match": {"prefix": "be", "ignore_case": True}}]),
                     to("present", prefix="/", query_parameters=[{"name": "debug"}]))])
    assert cluster(t, path="/x?v=2") == "exact"
    assert cluster(t, path="/x?v=2&v=3") == "exact"  # the first value counts
    assert cluster(t, path="/x?v=10") == "regex"
    assert cluster(t, path="/x?v=1a") is None  # safe_regex matches the whole value
    assert cluster(t, path="/x?v=BETA") == "ci-prefix"
    assert cluster(t, path="/x?debug") == "present"
    assert cluster(t, path="/x") is None


# -- clusters ----------------------------------------------------------------------------------


def test_weighted_clusters_follow_weights() -> None:
    weighted = [{"cluster": {"name": n, "weight": w}} for n, w in (("a", 70), ("b", 20), ("c", 10))]
    t = table([vhost(["*"], {"match": {"prefix": "/"}, "route": {"weighted_clusters": weighted}})])
    route = t.route(RouteRequest(path="/"))
    rng = random.Random(7)
    picks = Counter(route.cluster_name(rng=rng) for _ in range(20_000))
    for name, share in (("a", 0.70), ("b", 0.20), ("c", 0.10)):
        assert abs(picks[name] / 20_000 - share) < 0.03


def test_weighted_cluster_metadata_match() -> None:
    t = table([vhost(["*"], {"match": {"prefix": "/"}, "route": {
        "metadata_match": {"filter_metadata": {"mosn.lb": {"zone": "a"}}},
        "weighted_clusters": [
            {"cluster": {"name": "v1", "weight": 1,
                         "metadata_match": {"filter_metadata": {"mosn.lb": {"version": "1"}}}}},
            {"cluster": {"name": "v2", "weight": 1}}]}})])
    route = t.route(RouteRequest(path="/"))
    assert route.metadata_match_for("v1") == {"version": "1"}
    assert route.metadata_match_for("v2") == {}
    assert route.metadata_match == {"zone": "a"}


def test_cluster_header() -> None:
    t = table([vhost(["*"], {"match": {"prefix": "/"}, "route": {"cluster_header": "X-Cluster"}})])
    route = t.route(RouteRequest(path="/"))
    assert route.cluster_name({"x-cluster": "blue"}) == "blue"
    assert route.cluster_name({}) == ""


# -- actions -----------------------------------------------------------------------------------


def add(key: str, value: str, append: bool = True) -> dict[str, Any]:
    return {"header": {"key": key, "value": value}, "append": append}


def test_header_mutations_route_then_virtual_host_then_router_config() -> None:
    t = table(
        [vhost(["*"], {"match": {"prefix": "/"}, "route": {
            "cluster_name": "c",
            "request_headers_to_add": [add("x-level", "route"), add("x-route", "1")],
            "request_headers_to_remove": ["X-Drop-Route"],
            "response_headers_to_add": [add("x-resp", "route", append=False)]}},
            request_headers_to_add=[add("x-level", "vhost")],
            request_headers_to_remove=["x-route"],
            response_headers_to_add=[add("x-resp", "vhost", append=False)])],
        request_headers_to_add=[add("x-level", "config", append=False)],
        response_headers_to_remove=["server"])
    route = t.route(RouteRequest(path="/"))
    request = {"x-level": "client", "x-drop-route": "1", "x-keep": "1"}
    route.apply_request_headers(request)
    assert request == {"x-level": "config", "x-keep": "1"}
    response = {"server": "upstream"}
    route.apply_response_headers(response)
    assert response == {"x-resp": "vhost"}


def test_appended_header_joins_with_a_comma() -> None:
    t = table([vhost(["*"], {"match": {"prefix": "/"}, "route": {
        "cluster_name": "c", "request_headers_to_add": [add("via", "mosn")]}})])
    headers = {"via": "proxy-a"}
    t.route(RouteRequest(path="/")).apply_request_headers(headers)
    assert headers == {"via": "proxy-a,mosn"}


def test_remove_then_add_within_a_level_replaces() -> None:
    t = table([vhost(["*"], to("c", prefix="/"),
                     request_headers_to_add=[add("x", "new")], request_headers_to_remove=["x"])])
    headers = {"x": "old"}
    t.route(RouteRequest(path="/")).apply_request_headers(headers)
    assert headers == {"x": "new"}


def test_direct_response() -> None:
    t = table([vhost(["*"], {"match": {"path": "/health"},
                             "direct_response": {"status": 200, "body": "ok"}})])
    route = t.route(RouteRequest(path="/health"))
    assert (route.direct_response.status, route.direct_response.body) == (200, "ok")
    assert route.cluster_name() == ""


@pytest.mark.parametrize("redirect, request_url, location", [
    ({"scheme_redirect": "HTTPS"}, ("http", "a.com:80", "/p?q=1"), "https://a.com/p?q=1"),
    ({"scheme_redirect": "https"}, ("http", "a.com:8080", "/p"), "https://a.com:8080/p"),
    ({"host_redirect": "b.com"}, ("http", "a.com", "/p?q=1"), "http://b.com/p?q=1"),
    ({"path_redirect": "/new"}, ("https", "a.com", "/old?q=1"), "https://a.com/new?q=1"),
    ({"path_redirect": "/new?z=2"}, ("http", "a.com", "/old?q=1"), "http://a.com/new?z=2"),
])
def test_redirect_location(redirect: dict[str, Any], request_url: tuple[str, str, str],
                           location: str) -> None:
    t = table([vhost(["*"], {"match": {"prefix": "/"}, "redirect": redirect})])
    scheme, host, path = request_url
    request = RouteRequest(scheme=scheme, host=host, path=path)
    rule = t.route(request).redirect
    assert rule.code == 301
    assert rule.location(request) == location


def test_rewrites() -> None:
    t = table([vhost(["*"], {"match": {"prefix": "/api/"}, "route": {
        "cluster_name": "c", "prefix_rewrite": "/v2/", "host_rewrite": "internal"}},
        {"match": {"prefix": "/"}, "route": {"cluster_name": "c",
                                             "auto_host_rewrite_header": "X-Host"}})])
    api = t.route(RouteRequest(path="/api/users?id=1"))
    assert api.rewrite_path("/api/users?id=1") == "/v2/users?id=1"
    assert api.rewrite_host("a.com") == "internal"
    other = t.route(RouteRequest(path="/x"))
    assert other.rewrite_path("/x") == "/x"
    assert other.rewrite_host("a.com", {"x-host": "b.com"}) == "b.com"
    assert other.rewrite_host("a.com", {}) == "a.com"


def test_regex_rewrite_in_mosn_s_and_envoy_s_group_syntax() -> None:
    t = table([vhost(["*"], {"match": {"prefix": "/api/"}, "route": {
        "cluster_name": "c", "regex_rewrite": {
            "pattern": {"regex": "^/api/(\\w+)/(?P<id>\\d+)$"},
            "substitution": "/v2/$1/${id}"}}},
        {"match": {"prefix": "/"}, "route": {"cluster_name": "c", "regex_rewrite": {
            "pattern": {"regex": "o", "google_re2": {}}, "substitution": "0\\g<0>"}}})])
    api = t.route(RouteRequest(path="/api/users/42"))
    assert api.rewrite_path("/api/users/42?o=1") == "/v2/users/42?o=1"  # not the query
    assert api.rewrite_path("/api/users/x") == "/api/users/x"  # no match: as it was
    other = t.route(RouteRequest(path="/foo"))
    assert other.rewrite_path("/foo?o") == "/f0o0o?o"  # every match


@pytest.mark.parametrize("action, error", [
    ({"prefix_rewrite": "/b", "regex_rewrite": {"pattern": {"regex": "a"}}},
     "set prefix_rewrite or regex_rewrite, not both"),
    ({"regex_rewrite": {"pattern": {"regex": "(a"}}}, "pattern.regex '(a'"),
    ({"regex_rewrite": {"pattern": {"regex": "a"}, "substitution": "$2"}}, "invalid group"),
])
def test_bad_regex_rewrites_are_refused(action: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_routers(one_route({"match": {"prefix": "/"},
                                 "route": {"cluster_name": "c", **action}}))
    assert error in str(info.value)


def test_timeout_retry_and_mirror_policies() -> None:
    t = table([vhost(["*"], {
        "match": {"prefix": "/mosn"},
        "route": {"cluster_name": "c", "timeout": "1.5s",
                  "retry_policy": {"retry_on": True, "retry_timeout": "200ms", "num_retries": 2}},
        "request_mirror_policies": {"cluster": "shadow", "percent": 10}}, {
        "match": {"prefix": "/envoy"},
        "route": {"cluster_name": "c", "retry_policy": {
            "retry_on": "connect-failure,retriable-status-codes", "retriable_status_codes": [503],
            "per_try_timeout": 0.25}}})])
    mosn = t.route(RouteRequest(path="/mosn"))
    assert mosn.timeout == 1.5
    assert mosn.retry_policy.retry_on == {"connect-failure", "reset", "5xx"}
    assert (mosn.retry_policy.num_retries, mosn.retry_policy.per_try_timeout) == (2, 0.2)
    assert [(m.cluster, m.percent) for m in mosn.mirror_policies] == [("shadow", 10)]
    envoy = t.route(RouteRequest(path="/envoy"))
    assert envoy.timeout is None
    assert envoy.retry_policy.retry_on == {"connect-failure", "retriable-status-codes"}
    assert envoy.retry_policy.retriable_status_codes == {503}
    assert envoy.retry_policy.per_try_timeout == 0.25


def test_mosn_retry_on_with_status_codes_retries_those_codes() -> None:
    t = table([vhost(["*"], {"match": {"prefix": "/"}, "route": {
        "cluster_name": "c", "retry_policy": {"retry_on": True, "status_codes": [502, 504]}}})])
    policy = t.route(RouteRequest(path="/")).retry_policy
    assert policy.retry_on == {"connect-failure", "reset", "retriable-status-codes"}
    assert policy.retriable_status_codes == {502, 504}


# -- config errors -----------------------------------------------------------------------------


BASE = "routers[0].virtual_hosts[0].routers[0]"


@pytest.mark.parametrize("route, expected", [
    ({"match": {"prefix": "/"}},
     f"{BASE}: a route needs exactly one of route, redirect, direct_response"),
    ({"route": {"cluster_name": "a"}, "direct_response": {"status": 200}},
     f"{BASE}: a route needs exactly one of route, redirect, direct_response (found route, direct_response)"),
    ({"match": {"regex": "("}, "route": {"cluster_name": "a"}},
     f"{BASE}.match.regex: invalid regex '(': missing ), unterminated subpattern at position 0"),
    ({"match": {"headers": [{"name": "x", "value": "[", "regex": True}]}, "route": {"cluster_name": "a"}},
     f"{BASE}.match.headers[0]: invalid regex '[': unterminated character set at position 0"),
    ({"match": {"prefix": "/", "path": "/a"}, "route": {"cluster_name": "a"}},
     f"{BASE}.match: set only one of prefix, path, regex (found prefix, path)"),
    ({"route": {"weighted_clusters": [{"cluster": {"name": "a", "weight": 0}}]}},
     f"{BASE}.route.weighted_clusters[0].cluster.weight: Input should be greater than or equal to 1"),
    ({"route": {"cluster_name": "a", "cluster_header": "x"}},
     f"{BASE}.route: set exactly one of cluster_name, cluster_header, weighted_clusters,"
     " cluster_variable (found cluster_name, cluster_header)"),
    ({"match": {"variables": [{"name": "x", "value": "1"}]}, "route": {"cluster_name": "a"}},
     f"{BASE}.match.variables[0].name: unknown variable %x%"),
    ({"match": {"variables": [{"name": "x-mosn-method", "value": "1", "model": "xor"}]},
      "route": {"cluster_name": "a"}},
     f"{BASE}.match.variables[0].model: model is and or or, not 'xor'"),
    ({"route": {"cluster_variable": "no_such"}},
     f"{BASE}.route.cluster_variable: unknown variable %no_such%"),
    ({"route": {"cluster_name": "a", "request_headers_to_add": [
        {"header": {"key": "x-a", "value": "%no_such%"}}]}},
     f"{BASE}.route.request_headers_to_add[0].header.value: unknown variable %no_such%"),
    ({"match": {"dsl_expressions": [{"expression": "x"}]}, "route": {"cluster_name": "a"}},
     f"{BASE}.match.dsl_expressions: not supported by mosn yet; remove it (or leave it empty)"),
    ({"redirect": {"response_code": 200}},
     f"{BASE}.redirect.response_code: response_code must be one of 301, 302, 303, 307, 308"),
    ({"route": {"cluster_name": "a", "retry_policy": {"retry_on": "5xx,sometimes"}}},
     f"{BASE}.route.retry_policy.retry_on: unknown retry condition 'sometimes'"),
    ({"match": {"regex": "/a"}, "route": {"cluster_name": "a", "prefix_rewrite": "/b"}},
     f"{BASE}: route.prefix_rewrite needs match.prefix or match.path"),
])
def test_route_config_errors(route: dict[str, Any], expected: str) -> None:
    assert any(e.startswith(expected) for e in errors(one_route(route))), errors(one_route(route))


def test_domain_errors() -> None:
    raw = [{"router_config_name": "r", "virtual_hosts": [
        vhost(["*", "a.com"]), vhost(["b.com", "A.com"]), vhost(["*"])]}]
    assert errors(raw) == ["routers[0].virtual_hosts: domain 'a.com' of virtual_hosts[1]"
                           " is already in virtual_hosts[0]"]
    raw = [{"router_config_name": "r", "virtual_hosts": [vhost(["*"]), vhost(["*"])]}]
    assert errors(raw) == ["routers[0].virtual_hosts: domain '*' of virtual_hosts[1]"
                           " is already in virtual_hosts[0]"]
    raw = [{"router_config_name": "r", "virtual_hosts": [vhost(["a.*.com"])]}]
    assert errors(raw) == ["routers[0].virtual_hosts[0].domains:"
                           " domain 'a.*.com': one '*' at most, at its start or end"]


def test_duplicate_router_config_name() -> None:
    raw = [{"router_config_name": "r"}, {"router_config_name": "r"}]
    assert errors(raw) == ["routers: router_config_name 'r' of [1] is already used by [0]"]


def test_check_references() -> None:
    configs = parse_routers(one_route({"route": {"weighted_clusters": [
        {"cluster": {"name": "known", "weight": 1}}, {"cluster": {"name": "gone", "weight": 1}}]},
        "request_mirror_policies": {"cluster": "shadow"}}))
    assert check_references(configs, {"known"}) == [
        (f"{BASE}.route.weighted_clusters[1].cluster.name", "unknown cluster 'gone'"),
        (f"{BASE}.request_mirror_policies[0].cluster", "unknown cluster 'shadow'"),
    ]


MOSN_ROUTERS = """
[
  {
    "router_config_name": "server_router",
    "virtual_hosts": [
      {
        "name": "serverHost",
        "domains": ["*"],
        "routers": [
          {
            "match": {"headers": [{"name": "service", "value": "com.alipay.test.TestService:1.0"}]},
            "route": {"cluster_name": "serverCluster", "timeout": "3s"}
          },
          {
            "match": {"prefix": "/", "headers": [{"name": "X-Version", "value": "v2"}]},
            "route": {
              "weighted_clusters": [
                {"cluster": {"name": "v2_a", "weight": 90,
                             "metadata_match": {"filter_metadata": {"mosn.lb": {"label": "a"}}}}},
                {"cluster": {"name": "v2_b", "weight": 10}}
              ],
              "retry_policy": {"retry_on": true, "retry_timeout": "1s", "num_retries": 3}
            }
          },
          {
            "match": {"prefix": "/"},
            "route": {"cluster_name": "serverCluster"},
            "Per_Filter_Config": {"fault": {"delay_percent": 0}}
          }
        ]
      }
    ]
  }
]
"""


def test_mosn_routers_block_loads() -> None:
    configs = parse_routers(json.loads(MOSN_ROUTERS))
    assert list(configs[0].extra_keys()) == []
    t = Routers(configs)["server_router"]
    bolt = t.route(RouteRequest(headers={"service": "com.alipay.test.TestService:1.0"}))
    assert (bolt.cluster_name(), bolt.timeout) == ("serverCluster", 3.0)
    http = t.route(RouteRequest(host="a.com", path="/x", headers={"x-version": "v2"}))
    assert http.cluster_name(rng=random.Random(1)) in {"v2_a", "v2_b"}
    assert http.retry_policy.num_retries == 3
    fallback = t.route(RouteRequest(host="a.com", path="/x"))
    assert fallback.per_filter_config == {"fault": {"delay_percent": 0}}
    assert check_references(configs, {"serverCluster", "v2_a", "v2_b"}) == []


# -- robustness --------------------------------------------------------------------------------

FUZZ_TABLE = table([
    vhost(["a.com", "a.com:8080"], to("a", prefix="/a", headers=[{"name": "x", "value": "^1", "regex": True}])),
    vhost(["*.b.com", "[::1]"], to("b", path="/b", case_sensitive=False,
                                  query_parameters=[{"name": "q", "string_match": {"suffix": "z"}}])),
    vhost(["c.*"], to("c", regex="c+", headers=[{"name": "method", "present_match": True}])),
    vhost(["*"], to("rpc", headers=[{"name": "service", "value": ".*"}]),
          {"match": {"prefix": "/"}, "route": {"cluster_header": "x-cluster"}}),
])


@settings(max_examples=300)
@given(host=st.text(), path=st.text(), method=st.text(max_size=8),
       headers=st.dictionaries(st.sampled_from(["x", "service", "method", "x-cluster", "other"]),
                               st.text(max_size=20)))
def test_matching_never_raises(host: str, path: str, method: str, headers: dict[str, str]) -> None:
    route = FUZZ_TABLE.route(RouteRequest(host=host, path=path, method=method, headers=headers))
    if route is not None:
        assert isinstance(route.cluster_name(headers), str)
        route.apply_request_headers(dict(headers))
        assert isinstance(route.rewrite_path(path), str)


def test_large_tables_are_indexed_by_first_segment_and_keep_config_order():
    routes = [{"match": {"prefix": f"/svc{i}/"}, "route": {"cluster_name": f"c{i}"}}
              for i in range(50)]
    routes.insert(10, {"match": {"prefix": "/svc3"}, "route": {"cluster_name": "early"}})
    routes.insert(20, {"match": {"path": "/svc7/exact"}, "route": {"cluster_name": "exact"}})
    routes.append({"match": {"regex": "^/svc9/.*x$"}, "route": {"cluster_name": "regex"}})
    routes.append({"match": {"prefix": "/"}, "route": {"cluster_name": "fallback"}})
    table = Routers(parse_routers([{"router_config_name": "big", "virtual_hosts": [
        {"name": "all", "domains": ["*"], "routers": routes}]}]))["big"]

    def cluster(path: str) -> str:
        return table.route(RouteRequest(host="a", path=path)).cluster_name()

    assert cluster("/svc1/a") == "c1"
    assert cluster("/svc3/a") == "c3"         # /svc3/ comes before the /svc3 prefix route
    assert cluster("/svc30/a") == "early"     # /svc3 (no slash) is tried for every path
    assert cluster("/svc7/exact") == "c7"     # /svc7/ is listed before the exact route
    assert cluster("/svc9x") == "fallback"
    assert cluster("/other") == "fallback"
    assert cluster("/") == "fallback"
    assert cluster("/svc49/q?x=1") == "c49"


def test_an_update_sharing_parts_with_the_last_config_builds_only_what_changed():
    routes = [to("a", path=f"/r{i}") for i in range(20)]
    first = parse_routers([{"router_config_name": "r", "virtual_hosts": [
        vhost(["a.com"], *routes), vhost(["b.com"], to("b", prefix="/"))]}])[0]
    routers = Routers([first])
    t = routers["r"]
    old_a, old_b = t.virtual_hosts
    changed = first.virtual_hosts[0].model_copy(update={"routers": [
        *first.virtual_hosts[0].routers[:19],
        parse_routers([{"router_config_name": "x", "virtual_hosts": [
            vhost(["*"], to("c", path="/r19"))]}])[0].virtual_hosts[0].routers[0]]})
    second = first.model_copy(update={"virtual_hosts": [changed, first.virtual_hosts[1]]})
    assert routers.add_or_update(second) == "updated"
    assert t.virtual_hosts[1] is old_b  # the same config: the same virtual host
    assert t.virtual_hosts[0] is not old_a
    kept = t.virtual_hosts[0].routes
    assert all(r.virtual_host is t.virtual_hosts[0] for r in kept)
    assert [cluster(t, "a.com", f"/r{i}") for i in (0, 18, 19)] == ["a", "a", "c"]
    assert cluster(t, "b.com", "/x") == "b"
    # a route taken over is the old one's compiled state in the new virtual host
    assert kept[0]._path_test is old_a.routes[0]._path_test
    assert kept[19]._path_test is not old_a.routes[19]._path_test
    # the old table's routes still answer for requests already routed by them
    assert old_a.routes[19].cluster_name({}) == "a"
