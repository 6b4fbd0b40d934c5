"""``Cluster`` (CDS) and ``ClusterLoadAssignment`` (EDS) into MOSN's cluster shape.

An ``EDS`` cluster is a mosn cluster of listed hosts (``SIMPLE``) whose hosts come
from its load assignment; the snapshot keeps it warming until the assignment has
arrived. Endpoints that Envoy would not send traffic to (``UNHEALTHY``,
``DRAINING``, ``TIMEOUT``) are left out of the host set, as Envoy leaves them out of
load balancing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from mosn.config.models import MAX_HOST_WEIGHT
from mosn.xds.fields import Fields, ads_source, translate
from mosn.xds.listener import socket_address
from mosn.xds.tls import UPSTREAM, transport_socket

EDS = "EDS"
TYPES = {"STATIC": "SIMPLE", "STRICT_DNS": "STRICT_DNS", "EDS": EDS,
         "ORIGINAL_DST": "ORIGINAL_DST"}
LB_POLICIES = {
    "ROUND_ROBIN": "LB_WEIGHTED_ROUNDROBIN",  # Envoy's round robin honours weights
    "LEAST_REQUEST": "LB_LEAST_REQUEST",
    "RANDOM": "LB_RANDOM",
    "RING_HASH": "LB_RING_HASH",
    "MAGLEV": "LB_MAGLEV",
}
ENVOY_THRESHOLDS = {"max_connections": 1024, "max_pending_requests": 1024,
                    "max_requests": 1024, "max_retries": 3}
"""Envoy's circuit breaker defaults, applied when a cluster leaves a field unset."""
DNS_FAMILIES = {"AUTO": "", "V4_ONLY": "V4_ONLY", "V6_ONLY": "V6_ONLY", "ALL": "ALL"}
SERVING = ("UNKNOWN", "HEALTHY", "DEGRADED")
"""Endpoint health statuses Envoy balances load over."""
LB_METADATA = "envoy.lb"
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
HTTP2 = "Http2"
HTTP1 = "Http1"


@dataclass
class TranslatedCluster:
    cluster: dict[str, Any]
    """MOSN's cluster shape; an EDS cluster's ``hosts`` come from its assignment."""
    eds_name: str = ""
    """The assignment to fetch (EDS clusters)."""
    protocol: str = HTTP1
    """What the cluster's hosts speak to mosn (HTTP/2 with ``http2_protocol_options``)."""


def cluster(message: cluster_pb2.Cluster) -> TranslatedCluster:
    return translate(message, "Cluster", message.name, _cluster)


def _cluster(f: Fields) -> TranslatedCluster:
    f.accept("metadata")  # opaque data for filters; mosn has none that read it
    name = f.scalar("name")
    out: dict[str, Any] = {"name": name}
    result = TranslatedCluster(out)
    kind = f.which("cluster_discovery_type")
    envoy_type = f.enum("type") if kind in (None, "type") else ""
    if kind == "cluster_type":
        f.refuse(kind, "custom cluster types are not supported by mosn")
    mosn_type = TYPES.get(envoy_type)
    if mosn_type is None and envoy_type:
        f.error(f"type {envoy_type} is not supported by mosn", "type")
    if mosn_type == EDS:
        out["type"] = "SIMPLE"
        eds = f.child("eds_cluster_config")
        result.eds_name = name
        if eds is not None:
            result.eds_name = eds.scalar("service_name") or name
            ads_source(eds.child("eds_config"), "endpoints")
    elif mosn_type:
        out["type"] = mosn_type
    timeout = f.seconds("connect_timeout")
    if timeout is not None:
        out["connect_timeout"] = f"{timeout}s"
    policy = f.enum("lb_policy")
    if mosn_type == "ORIGINAL_DST":
        if policy not in ("CLUSTER_PROVIDED", "ROUND_ROBIN"):
            f.error("an ORIGINAL_DST cluster takes lb_policy CLUSTER_PROVIDED", "lb_policy")
        out["lb_type"] = "LB_ORIGINAL_DST"
        cleanup = f.seconds("cleanup_interval")
        if cleanup is not None:
            out["cleanup_interval"] = f"{cleanup}s"
    elif policy in LB_POLICIES:
        out["lb_type"] = LB_POLICIES[policy]
    else:
        f.error(f"lb_policy {policy} is not supported by mosn", "lb_policy")
    assignment = f.child("load_assignment")
    if assignment is not None:
        if mosn_type == EDS:
            assignment.error("an EDS cluster's endpoints come by EDS")
        out["hosts"] = endpoints(assignment)
    limits = f.child("circuit_breakers")
    out["circuit_breakers"] = {"thresholds": [circuit_breakers(limits)]}
    detection = f.child("outlier_detection")
    if detection is not None:
        out["outlier_detection"] = outlier_detection(detection)
    checks = f.children("health_checks")
    if len(checks) > 1:
        f.error("mosn runs one health check per cluster", "health_checks")
    if checks:
        out["health_check"] = health_check(checks[0])
    socket = f.child("transport_socket")
    if socket is not None:
        tls = transport_socket(socket, UPSTREAM)
        if tls is not None:
            out["tls_context"] = tls
    h2 = f.child("http2_protocol_options")
    if h2 is not None:
        result.protocol = HTTP2
    for key, options in f.message.typed_extension_protocol_options.items():
        result.protocol = http_protocol_options(f, key, options) or result.protocol
    f.accept("typed_extension_protocol_options")
    if f.has("dns_refresh_rate"):
        out["dns_refresh_rate"] = f"{f.seconds('dns_refresh_rate')}s"
    if f.scalar("respect_dns_ttl"):
        out["respect_dns_ttl"] = True
    family = f.enum("dns_lookup_family")
    if family not in DNS_FAMILIES:
        f.error(f"dns_lookup_family {family} is not supported by mosn", "dns_lookup_family")
    elif DNS_FAMILIES[family]:
        out["dns_lookup_family"] = DNS_FAMILIES[family]
    return result


def http_protocol_options(f: Fields, key: str, packed: Any) -> str:
    """Envoy's ``HttpProtocolOptions`` (how Istio asks for HTTP/2 to a cluster)."""
    path = f"typed_extension_protocol_options[{key!r}]"
    if packed.type_url.rpartition("/")[2] != HTTP_OPTIONS:
        f.error(f"{packed.type_url} is not supported by mosn", path)
        return ""
    options = http_protocol_options_pb2.HttpProtocolOptions()
    packed.Unpack(options)
    sub = Fields(options, f"{f.path}.{path}" if f.path else path, f.errors)
    f._children.append(sub)  # noqa: SLF001 - a child this module made itself
    kind = sub.which("upstream_protocol_options")
    protocol = ""
    if kind == "explicit_http_config":
        explicit = sub.child(kind)
        assert explicit is not None
        which = explicit.which("protocol_config")
        if which == "http2_protocol_options":
            explicit.child(which)
            protocol = HTTP2
        elif which == "http_protocol_options":
            explicit.child(which)
            protocol = HTTP1
        elif which is not None:
            explicit.refuse(which, "mosn speaks HTTP/1.1 or HTTP/2 to a cluster")
    elif kind is not None:
        sub.refuse(kind, "mosn takes explicit_http_config")
    return protocol


def circuit_breakers(f: Fields | None) -> dict[str, int]:
    limits = dict(ENVOY_THRESHOLDS)
    if f is None:
        return limits
    for t in f.children("thresholds"):
        if t.enum("priority") != "DEFAULT":
            t.error("mosn has one priority (DEFAULT)", "priority")
            continue
        for name in ENVOY_THRESHOLDS:
            value = t.wrapped(name)
            if value is not None:
                limits[name] = value
    return limits


OUTLIER_FIELDS = ("consecutive_5xx", "consecutive_gateway_failure", "max_ejection_percent",
                  "enforcing_consecutive_5xx", "enforcing_consecutive_gateway_failure",
                  "enforcing_success_rate", "success_rate_minimum_hosts",
                  "success_rate_request_volume", "success_rate_stdev_factor")
OUTLIER_DURATIONS = ("interval", "base_ejection_time", "max_ejection_time")


def outlier_detection(f: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in OUTLIER_FIELDS:
        value = f.wrapped(name)
        if value is not None:
            out[name] = value
    for name in OUTLIER_DURATIONS:
        value = f.seconds(name)
        if value is not None:
            out[name] = f"{value}s"
    return out


def health_check(f: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("timeout", "interval"):
        value = f.seconds(name)
        if value is not None:
            out[name] = f"{value}s"
    jitter = f.seconds("interval_jitter")
    if jitter:
        out["interval_jitter"] = f"{jitter}s"
    for name in ("healthy_threshold", "unhealthy_threshold"):
        value = f.wrapped(name)
        if value is not None:
            out[name] = value
    kind = f.which("health_checker")
    if kind == "tcp_health_check":
        f.child(kind)  # send/receive payloads, when set, are refused as unread
        out["protocol"] = "tcp"
    elif kind == "http_health_check":
        http = f.child(kind)
        assert http is not None
        check: dict[str, Any] = {"path": http.scalar("path")}
        if http.scalar("host"):
            check["domain"] = http.scalar("host")
        codes = [{"start": r.scalar("start"), "end": r.scalar("end") - 1}
                 for r in http.children("expected_statuses")]
        if codes:
            check["codes"] = codes
        out["protocol"] = "http"
        out["check_config"] = {"http_check_config": check}
    elif kind is not None:
        f.refuse(kind, "mosn runs tcp and http health checks")
    return out


def load_assignment(message: endpoint_pb2.ClusterLoadAssignment) -> list[dict[str, Any]]:
    """A ClusterLoadAssignment as MOSN's ``hosts``."""
    return translate(message, "ClusterLoadAssignment", message.cluster_name, endpoints)


def endpoints(f: Fields) -> list[dict[str, Any]]:
    f.accept("cluster_name")
    hosts = []
    for group in f.children("endpoints"):
        group.accept("locality", "load_balancing_weight")  # used only by locality-weighted LB
        if group.scalar("priority"):
            group.error("mosn has one priority (0)", "priority")
        for lb in group.children("lb_endpoints"):
            host = lb_endpoint(lb)
            if host is not None:
                hosts.append(host)
    return hosts


def lb_endpoint(f: Fields) -> dict[str, Any] | None:
    status = f.enum("health_status")
    kind = f.which("host_identifier")
    if kind != "endpoint":
        if kind is not None:
            f.refuse(kind, "mosn takes endpoint")
        return None
    endpoint = f.child("endpoint")
    assert endpoint is not None
    address = endpoint.child("address")
    out: dict[str, Any] = {"address": socket_address(address) if address else ""}
    if endpoint.scalar("hostname"):
        out["hostname"] = endpoint.scalar("hostname")
    weight = f.wrapped("load_balancing_weight", 1)
    if weight > MAX_HOST_WEIGHT:
        f.error(f"mosn's host weights go up to {MAX_HOST_WEIGHT}", "load_balancing_weight")
    out["weight"] = weight
    metadata = _filter_metadata(f)
    if metadata:
        out["metadata"] = {"filter_metadata": {"mosn.lb": metadata}}
    return out if status in SERVING else None


def _filter_metadata(f: Fields) -> dict[str, Any]:
    """An endpoint's subset keys (``envoy.lb``); other keys are opaque to mosn."""
    meta = f.child("metadata")
    if meta is None:
        return {}
    meta.accept("typed_filter_metadata")
    data = meta.struct_map("filter_metadata")
    return {str(k): str(v) for k, v in data.get(LB_METADATA, {}).items()}
