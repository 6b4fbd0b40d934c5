"""Envoy v3 resources into mosn's config: pure translation, on istiod-shaped resources."""

from __future__ import annotations

import gc

import pytest
from envoy.config.endpoint.v3 import endpoint_components_pb2
from google.protobuf import json_format

from mosn.config.models import HostConfig
from mosn.config.types import Address
from mosn.xds.cluster import (
    ENDPOINT_CACHE_SIZE,
    ENDPOINTS as ENDPOINT_CACHE,
    cluster,
    lb_endpoint,
    load_assignment,
    plain_endpoint,
)
from mosn.xds.fields import PartCache, Refused
from mosn.xds.listener import listener
from mosn.xds.resources import CLUSTERS, ENDPOINTS, LISTENERS, ROUTES, SECRETS
from mosn.xds.route import route_configuration
from mosn.xds.tls import fill_secrets, secret
from xds_resources import (
    FAULT,
    LOCAL_RATELIMIT,
    RBAC,
    RBAC_PER_ROUTE,
    ROUTER_FILTER,
    assignment,
    ca_secret,
    eds_cluster,
    endpoint,
    http_filter,
    http_listener,
    inbound_http_chain,
    message,
    outbound,
    passthrough_cluster,
    route,
    route_configuration as route_config,
    service,
    static_cluster,
    tls_secret,
    virtual_host,
    virtual_inbound,
    virtual_outbound,
)

REVIEWS = service("reviews")


def dumped(hosts) -> list[dict]:
    """Translated host entries as a config file would write them (defaults left out)."""
    return [h.model_dump(mode="json", exclude_defaults=True) for h in hosts]


def refused(call, *args) -> list[str]:
    with pytest.raises(Refused) as info:
        call(*args)
    return info.value.errors


# -- clusters and endpoints ------------------------------------------------------------


def test_istio_eds_cluster_with_mtls():
    tc = cluster(message(CLUSTERS, eds_cluster(9080, REVIEWS, mtls="bookinfo-reviews")))
    c = tc.cluster
    assert c["name"] == "outbound|9080||reviews.default.svc.cluster.local"
    assert (c["type"], c["lb_type"], c["connect_timeout"]) == ("SIMPLE", "LB_LEAST_REQUEST", "10.0s")
    assert tc.eds_name == c["name"]
    assert c["circuit_breakers"]["thresholds"][0]["max_requests"] == 4294967295
    tls = c["tls_context"]
    assert tls["sds"] == {"certificate": "default", "validation": "ROOTCA"}
    assert tls["server_name"] == "outbound_.9080_._.reviews.default.svc.cluster.local"
    assert (tls["min_version"], tls["max_version"], tls["alpn"]) == ("TLSv1_2", "TLSv1_3", "h2,http/1.1")
    sans = tls["match_typed_subject_alt_names"]
    assert {s["san_type"] for s in sans} == {"DNS", "URI", "EMAIL", "IP_ADDRESS"}
    assert sans[0]["matcher"]["exact"] == "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"


def test_cluster_defaults_follow_envoy():
    tc = cluster(message(CLUSTERS, static_cluster("backend", ["127.0.0.1:8080"])))
    assert tc.cluster["lb_type"] == "LB_WEIGHTED_ROUNDROBIN"  # Envoy's round robin is weighted
    assert tc.cluster["circuit_breakers"]["thresholds"] == [
        {"max_connections": 1024, "max_pending_requests": 1024, "max_requests": 1024,
         "max_retries": 3}]
    assert dumped(tc.cluster["hosts"]) == [{"address": "127.0.0.1:8080"}]
    assert tc.protocol == "Http1"


def test_http2_cluster_as_istio_asks_for_it():
    tc = cluster(message(CLUSTERS, eds_cluster(50051, service("grpc"), http2=True)))
    assert tc.protocol == "Http2"


def test_original_dst_cluster():
    tc = cluster(message(CLUSTERS, passthrough_cluster()))
    assert (tc.cluster["type"], tc.cluster["lb_type"]) == ("ORIGINAL_DST", "LB_ORIGINAL_DST")


def test_health_check_and_outlier_detection():
    tc = cluster(message(CLUSTERS, static_cluster(
        "backend", ["127.0.0.1:8080"],
        health_checks=[{"timeout": "1s", "interval": "2s", "unhealthy_threshold": 3,
                        "healthy_threshold": 1,
                        "http_health_check": {"path": "/healthz",
                                              "expected_statuses": [{"start": 200, "end": 300}]}}],
        outlier_detection={"consecutive_5xx": 3, "interval": "5s",
                           "base_ejection_time": "30s", "max_ejection_percent": 50})))
    hc = tc.cluster["health_check"]
    assert hc["protocol"] == "http" and hc["unhealthy_threshold"] == 3
    assert hc["check_config"]["http_check_config"] == {
        "path": "/healthz", "codes": [{"start": 200, "end": 299}]}
    assert tc.cluster["outlier_detection"] == {
        "consecutive_5xx": 3, "max_ejection_percent": 50, "interval": "5.0s",
        "base_ejection_time": "30.0s"}


def test_unsupported_cluster_fields_are_named():
    errors = refused(cluster, message(CLUSTERS, eds_cluster(
        9080, REVIEWS, common_lb_config={"locality_weighted_lb_config": {}},
        max_requests_per_connection=1, lb_policy="CLUSTER_PROVIDED")))
    name = "Cluster 'outbound|9080||reviews.default.svc.cluster.local'"
    assert f"{name}: lb_policy: lb_policy CLUSTER_PROVIDED is not supported by mosn" in errors
    assert f"{name}: common_lb_config: field not supported by mosn" in errors
    assert f"{name}: max_requests_per_connection: field not supported by mosn" in errors


def test_load_assignment_with_localities_weights_and_health():
    name = outbound(9080, REVIEWS)
    hosts = load_assignment(message(ENDPOINTS, assignment(name, {
        "us-central1-a": [endpoint("10.0.0.1:9080", 3), endpoint("10.0.0.2:9080", health="UNHEALTHY")],
        "us-central1-b": [endpoint("10.0.1.1:9080", health="HEALTHY"),
                          endpoint("10.0.1.2:9080", health="DRAINING")],
    })))
    assert dumped(hosts) == [{"address": "10.0.0.1:9080", "weight": 3},
                             {"address": "10.0.1.1:9080"}]


def test_endpoint_subset_metadata():
    ep = endpoint("10.0.0.1:9080")
    ep["metadata"] = {"filter_metadata": {"envoy.lb": {"version": "v2"},
                                          "istio": {"workload": "reviews-v2"}}}
    hosts = load_assignment(message(ENDPOINTS, assignment("c", {"": [ep]})))
    assert hosts[0].metadata == {"filter_metadata": {"mosn.lb": {"version": "v2"}}}


def test_priorities_beyond_zero_are_refused():
    data = assignment("c", {"": ["10.0.0.1:80"]})
    data["endpoints"][0]["priority"] = 1
    assert refused(load_assignment, message(ENDPOINTS, data)) == [
        "ClusterLoadAssignment 'c': endpoints[0].priority: mosn has one priority (0)"]


def test_assignment_policy_is_refused():
    data = assignment("c", {"": ["10.0.0.1:80"]}, policy={"overprovisioning_factor": 140})
    assert refused(load_assignment, message(ENDPOINTS, data)) == [
        "ClusterLoadAssignment 'c': policy: field not supported by mosn"]


def test_each_unsupported_endpoint_field_is_named_with_its_path():
    heavy = endpoint("10.0.0.1:80", 200)
    heavy["endpoint"]["health_check_config"] = {"port_value": 81}
    udp = endpoint("10.0.0.2:80")
    udp["endpoint"]["address"]["socket_address"].update(protocol="UDP", resolver_name="dns")
    named = {"endpoint_name": "ep"}
    piped = {"endpoint": {"address": {"pipe": {"path": "/tmp/x"}}}}
    data = assignment("c", {"": [heavy, udp, named, piped]})
    data["endpoints"][0]["proximity"] = 2
    errors = refused(load_assignment, message(ENDPOINTS, data))
    at = "ClusterLoadAssignment 'c': endpoints[0]"
    assert sorted(errors) == sorted([
        f"{at}.proximity: field not supported by mosn",
        f"{at}.lb_endpoints[0].endpoint.health_check_config: field not supported by mosn",
        f"{at}.lb_endpoints[0].load_balancing_weight: mosn's host weights go up to 128",
        f"{at}.lb_endpoints[1].endpoint.address.socket_address.resolver_name: field not supported by mosn",
        f"{at}.lb_endpoints[1].endpoint.address.socket_address.protocol: mosn's xDS listeners and clusters are TCP",
        f"{at}.lb_endpoints[2].endpoint_name: mosn takes endpoint",
        f"{at}.lb_endpoints[3].endpoint.address.pipe: mosn takes socket_address",
    ])


def test_an_endpoint_a_host_entry_could_not_hold_is_refused_naming_its_field():
    zero = endpoint("10.0.0.1:80")
    zero["load_balancing_weight"] = 0
    far = endpoint("10.0.0.2:80")
    far["endpoint"]["address"]["socket_address"]["port_value"] = 70000
    colons = endpoint("10.0.0.3:80")
    colons["endpoint"]["address"]["socket_address"]["address"] = "fe80::zz"
    empty = endpoint("10.0.0.4:80")
    empty["endpoint"]["address"]["socket_address"]["address"] = ""
    nowhere = {"endpoint": {"hostname": "a.svc"}}
    data = assignment("c", {"": [zero, far, colons, empty, nowhere, "10.0.0.5:80"]})
    at = "ClusterLoadAssignment 'c': endpoints[0].lb_endpoints"
    assert refused(load_assignment, message(ENDPOINTS, data)) == [
        f"{at}[0].load_balancing_weight: a host weight is at least 1",
        f"{at}[1].endpoint.address.socket_address.port_value: 70000 is not a port (0 to 65535)",
        f"{at}[2].endpoint.address.socket_address.address: 'fe80::zz' is neither a name "
        "nor an IPv4 or IPv6 address",
        f"{at}[3].endpoint.address.socket_address.address: an endpoint needs an address",
        f"{at}[4].endpoint.address: an endpoint needs an address",
    ]
    # the one refused is not kept: the same endpoint is refused again, not taken as before
    assert refused(load_assignment, message(ENDPOINTS, data))[0].endswith("at least 1")


def test_endpoint_entries_are_the_models_a_config_file_makes():
    ep = endpoint("10.0.0.1:9080", 7)
    ep["endpoint"]["hostname"] = "a.svc"
    ep["metadata"] = {"filter_metadata": {"envoy.lb": {"version": "v2"}}}
    six = endpoint("10.0.0.2:80")
    six["endpoint"]["address"]["socket_address"]["address"] = "fe80::1"
    data = assignment("entries", {"": [ep, six]})
    hosts = load_assignment(message(ENDPOINTS, data))
    written = [{"address": "10.0.0.1:9080", "hostname": "a.svc", "weight": 7,
                "metadata": {"filter_metadata": {"mosn.lb": {"version": "v2"}}}},
               {"address": "[fe80::1]:80"}]
    assert hosts == [HostConfig.model_validate(h) for h in written]
    assert dumped(hosts) == written
    assert hosts[1].address.host == "fe80::1" and hosts[1].address.port == 80


def test_an_endpoint_seen_before_in_any_assignment_is_the_same_entry():
    first = load_assignment(message(ENDPOINTS, assignment("one", {"": ["10.9.0.1:80"]})))
    other = load_assignment(message(ENDPOINTS, assignment("two", {"": ["10.9.0.1:80"]})))
    back = load_assignment(message(ENDPOINTS, assignment("one", {"": ["10.9.0.1:80"]})))
    assert first[0] is other[0] is back[0]


def test_a_plain_endpoint_read_from_its_bytes_is_the_entry_its_fields_make():
    plain = [endpoint(f"10.0.0.1:{port}") for port in (1, 80, 127, 128, 16383, 16384, 65535)]
    plain += [endpoint("reviews.default.svc.cluster.local:9080"), endpoint("a-b.c:80")]
    other = [endpoint("10.0.0.1:80", weight=7), endpoint("10.0.0.1:80", health="HEALTHY"),
             endpoint("10.0.0.1:80", health="UNHEALTHY"), endpoint("10.0.0.1:0"),
             endpoint("10.0.0.1:70000"), endpoint("fe80::1:80"), endpoint("a_b:80"),
             endpoint(("a" * 130) + ":80"), endpoint(":80")]
    named = endpoint("10.0.0.1:80")
    named["endpoint"]["hostname"] = "a.svc"
    tagged = endpoint("10.0.0.1:80")
    tagged["metadata"] = {"filter_metadata": {"envoy.lb": {"version": "v2"}}}
    udp = endpoint("10.0.0.1:80")
    udp["endpoint"]["address"]["socket_address"]["protocol"] = "UDP"
    other += [named, tagged, udp, endpoint("10.0.0.1:80", weight=1), {"endpoint_name": "x"}]
    for data in plain:
        lb = json_format.ParseDict(data, endpoint_components_pb2.LbEndpoint())
        errors: list[str] = []
        read = plain_endpoint(lb.SerializeToString())
        assert read is not None and read == lb_endpoint(lb, errors) and not errors
    for data in other:
        lb = json_format.ParseDict(data, endpoint_components_pb2.LbEndpoint())
        assert plain_endpoint(lb.SerializeToString()) is None, data
    bytes_ = json_format.ParseDict(plain[1], endpoint_components_pb2.LbEndpoint()).SerializeToString()
    assert plain_endpoint(bytes_ + bytes_) is None  # two endpoints' bytes are no endpoint
    assert plain_endpoint(bytes_[:-1]) is None


def test_a_checked_host_entry_is_the_validated_one():
    made = HostConfig.checked(Address("10.0.0.1", 80), "a.svc", 3, {"k": "v"})
    validated = HostConfig.model_validate({"address": "10.0.0.1:80", "hostname": "a.svc",
                                           "weight": 3, "metadata": {"k": "v"}})
    assert made == validated
    assert made.model_dump() == validated.model_dump()
    assert HostConfig.checked(Address("10.0.0.1", 80)).model_dump(exclude_defaults=True) == {
        "address": "10.0.0.1:80"}


def test_a_static_clusters_inline_assignment_is_read_like_eds():
    data = static_cluster("s", ["10.0.0.1:80"])
    data["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["hostname"] = "a.svc"
    data["load_assignment"]["policy"] = {"overprovisioning_factor": 140}
    errors = refused(cluster, message(CLUSTERS, data))
    assert errors == ["Cluster 's': load_assignment.policy: field not supported by mosn"]
    del data["load_assignment"]["policy"]
    assert dumped(cluster(message(CLUSTERS, data)).cluster["hosts"]) == [
        {"address": "10.0.0.1:80", "hostname": "a.svc"}]


# -- routes -----------------------------------------------------------------------------


def test_istio_route_configuration():
    reviews = outbound(9080, REVIEWS)
    rc = route_configuration(message(ROUTES, route_config("9080", [
        virtual_host(REVIEWS, 9080, [
            route({"prefix": "/api", "headers": [
                {"name": "end-user", "string_match": {"exact": "jason"}}]},
                weighted_clusters={"clusters": [
                    {"name": outbound(9080, REVIEWS, "v2"), "weight": 90},
                    {"name": outbound(9080, REVIEWS, "v3"), "weight": 10},
                    {"name": outbound(9080, REVIEWS, "v1"), "weight": 0}]}),
            route({"safe_regex": {"regex": "/items/[0-9]+"}}, reviews, prefix_rewrite="/x"),
            route({"path": "/exact", "case_sensitive": False,
                   "query_parameters": [{"name": "debug", "present_match": True}]}, reviews,
                  timeout="2.5s", host_rewrite_literal="backend.local"),
            route({"prefix": "/", "headers": [
                {"name": "x-tier", "string_match": {"prefix": "gold", "ignore_case": True}},
                {"name": "x-canary", "present_match": True, "invert_match": True}]}, reviews),
        ])])))
    assert rc["router_config_name"] == "9080"
    vh = rc["virtual_hosts"][0]
    assert vh["domains"] == [REVIEWS, f"{REVIEWS}:9080", "reviews", "reviews:9080"]
    first, regex, exact, fallback = vh["routers"]
    assert first["match"] == {"prefix": "/api", "headers": [{"name": "end-user", "value": "jason"}]}
    assert first["route"]["weighted_clusters"] == [
        {"cluster": {"name": outbound(9080, REVIEWS, "v2"), "weight": 90}},
        {"cluster": {"name": outbound(9080, REVIEWS, "v3"), "weight": 10}}]
    assert first["route"]["timeout"] == "disabled"  # Envoy's 0s: no timeout
    assert first["route"]["retry_policy"] == {
        "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
        "num_retries": 2, "retriable_status_codes": [503]}
    assert regex["match"] == {"regex": "^(?:/items/[0-9]+)$"}
    assert regex["route"]["prefix_rewrite"] == "/x"
    assert exact["match"]["case_sensitive"] is False
    assert exact["match"]["query_parameters"] == [{"name": "debug", "present_match": True}]
    assert (exact["route"]["timeout"], exact["route"]["host_rewrite"]) == ("2.5s", "backend.local")
    assert fallback["match"]["headers"] == [
        {"name": "x-tier", "value": "(?i)^(?:gold.*)$", "regex": True},
        {"name": "x-canary", "invert_match": True, "present_match": True}]


def test_redirect_direct_response_and_header_mutations():
    rc = route_configuration(message(ROUTES, route_config("r", [{
        "name": "vh", "domains": ["*"],
        "request_headers_to_add": [{"header": {"key": "x-vh", "value": "1"},
                                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
        "routes": [
            {"match": {"prefix": "/old"}, "redirect": {
                "path_redirect": "/new", "host_redirect": "example.com",
                "https_redirect": True, "response_code": "TEMPORARY_REDIRECT"}},
            {"match": {"path": "/health"}, "direct_response": {
                "status": 200, "body": {"inline_string": "ok"}}},
            {"match": {"prefix": "/"}, "route": {"cluster": "backend"},
             "response_headers_to_add": [{"header": {"key": "x-served-by", "value": "mosn"}}],
             "response_headers_to_remove": ["server"]},
        ]}])))
    vh = rc["virtual_hosts"][0]
    assert vh["request_headers_to_add"] == [{"header": {"key": "x-vh", "value": "1"}, "append": False}]
    old, health, default = vh["routers"]
    assert old["redirect"] == {"response_code": 307, "scheme_redirect": "https",
                               "host_redirect": "example.com", "path_redirect": "/new"}
    assert health["direct_response"] == {"status": 200, "body": "ok"}
    assert default["route"]["response_headers_to_add"] == [
        {"header": {"key": "x-served-by", "value": "mosn"}, "append": True}]
    assert default["route"]["response_headers_to_remove"] == ["server"]


def test_unsupported_route_fields_are_named():
    data = route_config("9080", [virtual_host(REVIEWS, 9080, [
        route({"prefix": "/"}, "c", retry_policy={
            "retry_on": "5xx", "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts"}]}),
        {"match": {"prefix": "/", "grpc": {}}, "route": {"cluster": "c"}, "decorator": {"operation": "x"}},
    ])])
    data["virtual_hosts"][0]["include_request_attempt_count"] = True
    errors = refused(route_configuration, message(ROUTES, data))
    assert sorted(errors) == [
        "RouteConfiguration '9080': virtual_hosts[0].include_request_attempt_count: field not supported by mosn",
        "RouteConfiguration '9080': virtual_hosts[0].routes[0].route.retry_policy.retry_host_predicate: field not supported by mosn",
        "RouteConfiguration '9080': virtual_hosts[0].routes[1].decorator: field not supported by mosn",
        "RouteConfiguration '9080': virtual_hosts[0].routes[1].match.grpc: field not supported by mosn",
    ]


# -- listeners ---------------------------------------------------------------------------


def test_istio_outbound_listeners():
    virtual = listener(message(LISTENERS, virtual_outbound(15001)))
    lc = virtual.listener
    assert (lc["name"], lc["address"], lc["use_original_dst"]) == ("virtualOutbound", "0.0.0.0:15001", "redirect")
    assert lc["listener_filters"] == [{"type": "original_dst", "config": {}}]
    assert lc["filter_chains"][0]["filters"] == [{"type": "tcp_proxy", "config": {
        "stat_prefix": "PassthroughCluster", "cluster": "PassthroughCluster"}}]
    port = listener(message(LISTENERS, http_listener(9080)))
    assert port.route_names == ["9080"]
    lc = port.listener
    assert (lc["name"], lc["bind_port"]) == ("0.0.0.0_9080", False)
    proxy = lc["filter_chains"][0]["filters"][0]
    assert proxy["type"] == "proxy"
    assert proxy["config"]["router_config_name"] == "9080"
    assert (proxy["config"]["downstream_protocol"], proxy["config"]["upstream_protocol"]) == ("Auto", "Http1")
    assert (proxy["config"]["normalize_path"], proxy["config"]["merge_slashes"]) == (False, False)


def test_inline_route_config():
    inline = route_config("local", [{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}])
    tl = listener(message(LISTENERS, http_listener(8080, inline=inline, bind=True)))
    assert tl.route_names == []
    assert [r["router_config_name"] for r in tl.routers] == ["local"]


def test_filter_chain_match_and_tls():
    data = http_listener(8443, "r", bind=True)
    data["filter_chains"][0]["filter_chain_match"] = {
        "server_names": ["a.example.com"], "transport_protocol": "tls",
        "prefix_ranges": [{"address_prefix": "10.0.0.0", "prefix_len": 8}],
        "destination_port": 8443}
    data["filter_chains"][0]["transport_socket"] = {"name": "tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "require_client_certificate": True,
        "common_tls_context": {"tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": {"ads": {}}}],
                               "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": {"ads": {}}}}}}
    chain = listener(message(LISTENERS, data)).listener["filter_chains"][0]
    assert chain["filter_chain_match"] == {
        "destination_port": 8443, "prefix_ranges": [{"address_prefix": "10.0.0.0", "prefix_len": 8}],
        "server_names": ["a.example.com"], "transport_protocol": "tls"}
    tls = chain["tls_context"]
    assert (tls["status"], tls["verify_client"], tls["require_client_cert"]) == (True, True, True)
    missing = fill_secrets(tls, {"default": {"cert_chain": "C", "private_key": "K"}})
    assert missing == ["ROOTCA"]
    assert (tls["cert_chain"], tls["private_key"]) == ("C", "K")


def test_unsupported_http_filter_is_named():
    data = http_listener(9080, http_filters=[
        {"name": "envoy.filters.http.cors",
         "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}},
        {"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}])
    from envoy.extensions.filters.http.cors.v3 import cors_pb2  # noqa: F401 - registers the type

    errors = refused(listener, message(LISTENERS, data))
    assert len(errors) == 1
    assert errors[0].startswith(
        "Listener '0.0.0.0_9080': filter_chains[0].filters[0].typed_config.http_filters[0]"
        ".typed_config: type 'envoy.extensions.filters.http.cors.v3.Cors' is not supported by mosn")


def test_unsupported_listener_and_manager_fields_are_named():
    data = http_listener(9080)
    data["filter_chains"][0]["filters"][0]["typed_config"]["use_remote_address"] = True
    data["default_filter_chain"] = data["filter_chains"][0]
    errors = refused(listener, message(LISTENERS, data))
    assert "Listener '0.0.0.0_9080': default_filter_chain: field not supported by mosn" in errors
    assert ("Listener '0.0.0.0_9080': filter_chains[0].filters[0].typed_config.use_remote_address: "
            "field not supported by mosn") in errors


# -- HTTP filters and their per-route configs ------------------------------------------------

HCM_FILTERS = "Listener '0.0.0.0_9080': filter_chains[0].filters[0].typed_config.http_filters"


def stream_filters(*filters: dict) -> list[dict]:
    data = http_listener(9080, http_filters=[*filters, ROUTER_FILTER])
    return listener(message(LISTENERS, data)).listener.get("stream_filters", [])


def filter_errors(*filters: dict) -> list[str]:
    return refused(listener, message(LISTENERS, http_listener(
        9080, http_filters=[*filters, ROUTER_FILTER])))


def istio_fault(**config) -> dict:
    """What istiod writes for a VirtualService's fault: delay and abort with a percentage."""
    return http_filter("fault", FAULT, **config)


def test_fault_rbac_and_local_rate_limit_become_the_listeners_stream_filters_in_order():
    policies = {"ns[default]-policy[deny-admin]-rule[0]": {
        "permissions": [{"and_rules": {"rules": [{"url_path": {"path": {"prefix": "/admin"}}}]}}],
        "principals": [{"and_ids": {"ids": [{"direct_remote_ip": {
            "address_prefix": "10.0.0.0", "prefix_len": 8}}]}}]}}
    filters = stream_filters(
        istio_fault(),
        http_filter("rbac", RBAC, rules={"action": "DENY", "policies": policies}),
        http_filter("local_ratelimit", LOCAL_RATELIMIT, stat_prefix="http_local_rate_limiter",
                    token_bucket={"max_tokens": 10, "tokens_per_fill": 5, "fill_interval": "1s"},
                    filter_enabled={"default_value": {"numerator": 100}, "runtime_key": "on"},
                    status={"code": "TooManyRequests"}))
    assert [f["type"] for f in filters] == ["fault", "rbac", "local_ratelimit"]
    assert filters[0]["config"] == {}  # istiod's: the faults are per route
    assert filters[1]["config"] == {"rules": {"action": "DENY", "policies": policies}}
    assert filters[2]["config"] == {
        "stat_prefix": "http_local_rate_limiter", "status": {"code": "TooManyRequests"},
        "token_bucket": {"max_tokens": 10, "tokens_per_fill": 5, "fill_interval": "1s"},
        "filter_enabled": {"default_value": {"numerator": 100}, "runtime_key": "on"},
        # Envoy's defaults, which are not mosn's: 0% enforced, UNAVAILABLE for gRPC
        "filter_enforced": {"default_value": {"numerator": 0}},
        "rate_limited_as_resource_exhausted": False}


def test_a_listener_with_the_router_alone_has_no_stream_filters():
    assert stream_filters() == []


def test_fault_delay_abort_headers_and_cluster():
    [fault] = stream_filters(istio_fault(
        delay={"fixed_delay": "0.5s", "percentage": {"numerator": 250_000, "denominator": "MILLION"}},
        abort={"http_status": 503, "percentage": {"numerator": 100}},
        headers=[{"name": "x-fault", "string_match": {"exact": "yes"}}],
        upstream_cluster="outbound|9080||reviews", abort_percent_runtime="fault.abort",
        disable_downstream_cluster_stats=True))
    assert fault["config"] == {
        "delay": {"fixed_delay": "0.5s", "percentage": 25},
        "abort": {"status": 503, "percentage": 100},
        "upstream_cluster": "outbound|9080||reviews",
        "headers": [{"name": "x-fault", "value": "yes"}]}


def test_a_fault_without_a_percentage_is_injected_in_none_of_the_requests():
    [fault] = stream_filters(istio_fault(abort={"http_status": 500}))
    assert fault["config"] == {"abort": {"status": 500, "percentage": 0}}  # Envoy's 0%


def test_a_percentage_above_its_denominator_is_every_request():
    [fault] = stream_filters(istio_fault(abort={"http_status": 500, "percentage": {
        "numerator": 150}}))
    assert fault["config"]["abort"]["percentage"] == 100


def test_a_fault_percentage_mosn_cannot_say_in_whole_percents_is_refused():
    errors = filter_errors(istio_fault(
        delay={"fixed_delay": "1s", "percentage": {"numerator": 1, "denominator": "TEN_THOUSAND"}},
        abort={"http_status": 503, "percentage": {"numerator": 12_345, "denominator": "MILLION"}}))
    assert errors == [
        f"{HCM_FILTERS}[0].typed_config.delay.percentage: mosn's fault filter takes a whole "
        "percent (1/10000 is not)",
        f"{HCM_FILTERS}[0].typed_config.abort.percentage: mosn's fault filter takes a whole "
        "percent (12345/1000000 is not)"]


def test_fault_fields_mosn_cannot_honour_are_named():
    errors = filter_errors(istio_fault(
        delay={"header_delay": {}, "percentage": {"numerator": 10}},
        abort={"grpc_status": 14},
        downstream_nodes=["frontend"], max_active_faults=10,
        response_rate_limit={"fixed_limit": {"limit_kbps": 1}},
        filter_metadata={"fields": {"k": {"string_value": "v"}}}))
    at = f"{HCM_FILTERS}[0].typed_config"
    assert sorted(errors) == sorted([
        f"{at}.delay.header_delay: mosn's fault delay takes fixed_delay only",
        f"{at}.abort.grpc_status: mosn's fault abort takes http_status only",
        f"{at}.downstream_nodes: mosn does not read x-envoy-downstream-service-node",
        f"{at}.max_active_faults: mosn does not limit the faults active at once",
        f"{at}.response_rate_limit: mosn's fault filter does not slow responses",
        f"{at}.filter_metadata: mosn's fault filter sets no dynamic metadata"])


def test_a_fault_without_its_delay_or_status_is_refused():
    errors = filter_errors(istio_fault(delay={"percentage": {"numerator": 1}},
                                       abort={"percentage": {"numerator": 1}}))
    at = f"{HCM_FILTERS}[0].typed_config"
    assert errors == [f"{at}.delay: a fault delay needs fixed_delay",
                      f"{at}.abort: a fault abort needs http_status"]


def test_rbac_fields_mosn_cannot_honour_are_named():
    errors = filter_errors(http_filter("rbac", RBAC, rules={"policies": {"p": {
        "permissions": [{"destination_port_range": {"start": 1, "end": 2}}],
        "principals": [{"any": True}],
        "condition": {"const_expr": {"bool_value": True}}}}}, track_per_rule_stats=True))
    at = f"{HCM_FILTERS}[0].typed_config"
    assert sorted(errors) == [
        f"{at}.rules.policies.p.condition: field not supported by mosn",
        f"{at}.rules.policies.p.permissions[0].destination_port_range: field not supported by mosn",
        f"{at}.track_per_rule_stats: field not supported by mosn"]


def test_an_rbac_cidr_range_without_a_length_is_a_slash_zero_as_in_envoy():
    [rbac] = stream_filters(http_filter("rbac", RBAC, rules={"policies": {"p": {
        "permissions": [{"any": True}],
        "principals": [{"remote_ip": {"address_prefix": "10.1.2.3"}}]}}}))
    principal = rbac["config"]["rules"]["policies"]["p"]["principals"][0]
    assert principal == {"remote_ip": {"address_prefix": "10.1.2.3", "prefix_len": 0}}


def test_local_rate_limit_fields_mosn_cannot_honour_are_named():
    errors = filter_errors(http_filter(
        "local_ratelimit", LOCAL_RATELIMIT, stat_prefix="rl",
        token_bucket={"max_tokens": 1, "fill_interval": "1s"},
        local_cluster_rate_limit={}, max_dynamic_descriptors=5))
    at = f"{HCM_FILTERS}[0].typed_config"
    assert sorted(errors) == [
        f"{at}.local_cluster_rate_limit: field not supported by mosn",
        f"{at}.max_dynamic_descriptors: field not supported by mosn"]
    errors = filter_errors(http_filter(
        "local_ratelimit", LOCAL_RATELIMIT, stat_prefix="rl",
        token_bucket={"max_tokens": 1, "fill_interval": "1s"},
        descriptors=[{"entries": [{"key": "k", "value": "v"}],
                      "token_bucket": {"max_tokens": 1, "fill_interval": "1s"}}]))
    assert errors == [f"{at}.descriptors: field not supported by mosn"]


def test_a_local_rate_limit_without_a_bucket_is_refused():
    errors = filter_errors(http_filter("local_ratelimit", LOCAL_RATELIMIT, stat_prefix="rl"))
    assert errors == [f"{HCM_FILTERS}[0].typed_config.token_bucket: Field required"]


def test_the_router_is_the_last_http_filter():
    data = http_listener(9080, http_filters=[ROUTER_FILTER, istio_fault()])
    errors = refused(listener, message(LISTENERS, data))
    assert sorted(errors) == [f"{HCM_FILTERS}[0]: the router is the last http filter",
                              f"{HCM_FILTERS}[1]: the last http filter is the router"]


def test_two_filters_of_one_type_are_refused():
    errors = filter_errors(istio_fault(), istio_fault(abort={"http_status": 500}))
    assert errors == [f"{HCM_FILTERS}[1]: mosn runs one fault filter in a connection manager "
                      "(its per-route configs are keyed by its type)"]


def test_a_filter_disabled_until_a_route_enables_it_is_refused():
    flt = istio_fault()
    flt["disabled"] = True
    assert filter_errors(flt) == [
        f"{HCM_FILTERS}[0].disabled: mosn runs every http filter on every route (enabling "
        "one per route is not supported)"]


def test_the_connection_managers_of_a_listener_need_the_same_http_filters():
    plain, faulty = inbound_http_chain(9080), inbound_http_chain(9090)
    faulty["filters"][0]["typed_config"]["http_filters"] = [istio_fault(), ROUTER_FILTER]
    errors = refused(listener, message(LISTENERS, virtual_inbound(15006, [plain, faulty])))
    assert errors == [
        "Listener 'virtualInbound': filter_chains[1].filters[0].typed_config: mosn's stream "
        "filters are the listener's: its connection managers need the same http filters "
        "(filter_chains[0].filters[0].typed_config has others)"]
    faulty["filters"][0]["typed_config"]["http_filters"] = [istio_fault(), ROUTER_FILTER]
    plain["filters"][0]["typed_config"]["http_filters"] = [istio_fault(), ROUTER_FILTER]
    same = listener(message(LISTENERS, virtual_inbound(15006, [plain, faulty])))
    assert [f["type"] for f in same.listener["stream_filters"]] == ["fault"]


def test_per_route_configs_are_keyed_by_the_filter_type():
    fault = {"@type": FAULT, "abort": {"http_status": 503, "percentage": {"numerator": 50}}}
    ratelimit = {"@type": LOCAL_RATELIMIT, "stat_prefix": "route",
                 "token_bucket": {"max_tokens": 1, "fill_interval": "60s"}}
    rbac_off = {"@type": RBAC_PER_ROUTE}
    rbac_own = {"@type": RBAC_PER_ROUTE, "rbac": {"rules": {"action": "DENY", "policies": {
        "p": {"permissions": [{"any": True}], "principals": [{"any": True}]}}}}}
    rc = route_configuration(message(ROUTES, route_config("r", [{
        "name": "vh", "domains": ["*"],
        "typed_per_filter_config": {"envoy.filters.http.rbac": rbac_off},
        "routes": [
            {"match": {"prefix": "/ratings"}, "route": {"cluster": "c"}, "typed_per_filter_config": {
                "envoy.filters.http.fault": fault, "envoy.filters.http.local_ratelimit": ratelimit,
                "envoy.filters.http.rbac": rbac_own}},
            {"match": {"prefix": "/"}, "route": {"cluster": "c"}}]}])))
    vh = rc["virtual_hosts"][0]
    assert vh["per_filter_config"] == {"rbac": {}}
    ratings, default = vh["routers"]
    assert ratings["per_filter_config"] == {
        "fault": {"abort": {"status": 503, "percentage": 50}},
        "local_ratelimit": {
            "stat_prefix": "route", "token_bucket": {"max_tokens": 1, "fill_interval": "60s"},
            "filter_enabled": {"default_value": {"numerator": 0}},
            "filter_enforced": {"default_value": {"numerator": 0}},
            "rate_limited_as_resource_exhausted": False},
        "rbac": {"rbac": {"rules": {"action": "DENY", "policies": {
            "p": {"permissions": [{"any": True}], "principals": [{"any": True}]}}}}}}
    assert "per_filter_config" not in default


def test_per_route_configs_mosn_cannot_take_are_named():
    from envoy.extensions.filters.http.cors.v3 import cors_pb2  # noqa: F401 - registers the type

    rc = route_config("r", [{"name": "vh", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": "c"}, "typed_per_filter_config": {
            "envoy.filters.http.cors": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"},
            "envoy.filters.http.fault": {"@type": FAULT, "abort": {"http_status": 503, "percentage": {
                "numerator": 1, "denominator": "TEN_THOUSAND"}}},
            "my-fault": {"@type": FAULT}}}]}])
    errors = refused(route_configuration, message(ROUTES, rc))
    at = "RouteConfiguration 'r': virtual_hosts[0].routes[0].typed_per_filter_config"
    assert len(errors) == 3, errors
    assert errors[0].startswith(
        f"{at}['envoy.filters.http.cors']: type 'envoy.extensions.filters.http.cors.v3.CorsPolicy'"
        " is not supported by mosn (supported here: ")
    assert errors[1] == (f"{at}['envoy.filters.http.fault'].abort.percentage: mosn's fault filter "
                         "takes a whole percent (1/10000 is not)")
    assert errors[2] == (f"{at}['my-fault']: a second fault config (mosn keys per-route configs "
                         "by the filter's type)")


def test_mosn_proxy_for_rpc_through_a_typed_struct():
    data = http_listener(12200, bind=True)
    data["filter_chains"][0]["filters"] = [{"name": "mosn.proxy", "typed_config": {
        "@type": "type.googleapis.com/xds.type.v3.TypedStruct",
        "type_url": "type.googleapis.com/mosn.proxy",
        "value": {"downstream_protocol": "bolt", "router_config_name": "bolt_routes"}}}]
    chain = listener(message(LISTENERS, data)).listener["filter_chains"][0]
    assert chain["filters"] == [{"type": "proxy", "config": {
        "downstream_protocol": "bolt", "router_config_name": "bolt_routes"}}]


def test_a_manager_without_typed_config_is_refused():
    data = http_listener(9080)
    del data["filter_chains"][0]["filters"][0]["typed_config"]
    assert refused(listener, message(LISTENERS, data)) == [
        "Listener '0.0.0.0_9080': filter_chains[0].filters[0]: a network filter needs its typed_config"]


# -- secrets -----------------------------------------------------------------------------


def test_secrets():
    assert secret(message(SECRETS, tls_secret("default", "CERT", "KEY"))) == {
        "cert_chain": "CERT", "private_key": "KEY"}
    assert secret(message(SECRETS, ca_secret("ROOTCA", "CA"))) == {"ca_cert": "CA"}
    assert refused(secret, message(SECRETS, {"name": "s", "generic_secret": {
        "secret": {"inline_string": "x"}}})) == [
        "Secret 's': generic_secret: mosn takes tls_certificate and validation_context secrets"]


def test_a_push_translates_only_the_routes_whose_bytes_changed():
    table = [route({"path": f"/r{i}"}, "a") for i in range(50)]
    first = route_configuration(message(ROUTES, route_config("big", [
        virtual_host(REVIEWS, 9080, table), virtual_host(service("ratings"), 9080, table[:3])])))
    table[49] = route({"path": "/r49"}, "b")
    second = route_configuration(message(ROUTES, route_config("big", [
        virtual_host(REVIEWS, 9080, table), virtual_host(service("ratings"), 9080, table[:3])])))
    old, new = first["virtual_hosts"][0]["routers"], second["virtual_hosts"][0]["routers"]
    assert all(a is b for a, b in zip(old[:49], new[:49]))  # the same translation, kept
    assert new[49]["route"]["cluster_name"] == "b" and old[49]["route"]["cluster_name"] == "a"
    assert first["virtual_hosts"][1] is second["virtual_hosts"][1]  # a virtual host unchanged


def test_a_refused_route_is_refused_again_on_the_next_push():
    bad = {"match": {"prefix": "/", "grpc": {}}, "route": {"cluster": "c"}}
    data = route_config("again", [virtual_host(REVIEWS, 9080, [bad])])
    for _ in range(2):
        assert refused(route_configuration, message(ROUTES, data)) == [
            "RouteConfiguration 'again': virtual_hosts[0].routes[0].match.grpc: field not supported by mosn"]


def test_the_next_version_of_an_assignment_translates_only_the_endpoints_that_changed():
    addresses = [f"10.0.0.{i}:80" for i in range(1, 21)]
    first = load_assignment(message(ENDPOINTS, assignment("kept", {"": addresses})))
    addresses[-1] = "10.0.1.1:80"
    second = load_assignment(message(ENDPOINTS, assignment("kept", {"": addresses})))
    assert all(a is b for a, b in zip(first[:19], second[:19]))  # taken as they were
    assert str(second[19].address) == "10.0.1.1:80" and second[19] is not first[19]
    assert [str(h.address) for h in second] == addresses


def test_assignments_of_new_endpoints_leave_at_most_the_cache_size_of_host_entries():
    gc.collect()
    before = sum(isinstance(o, HostConfig) for o in gc.get_objects())
    for push in range(ENDPOINT_CACHE_SIZE // 1000 + 2):  # more endpoints never seen than it keeps
        addresses = [f"10.{push}.{i // 250}.{i % 250}:80" for i in range(1000)]
        hosts = load_assignment(message(ENDPOINTS, assignment("fresh", {"": addresses})))
    assert [str(h.address) for h in hosts] == addresses
    del hosts
    gc.collect()
    kept = sum(isinstance(o, HostConfig) for o in gc.get_objects()) - before
    assert len(ENDPOINT_CACHE) == ENDPOINT_CACHE_SIZE and kept <= ENDPOINT_CACHE_SIZE


def test_the_translation_cache_lets_the_oldest_go_first_once_full():
    cache = PartCache(size=2)
    for key in (b"a", b"b", b"c"):
        cache.keep(key, key.decode())
    assert (cache.get(b"a"), cache.get(b"b"), cache.get(b"c")) == (None, "b", "c")
    assert len(cache) == 2
