"""``Cluster`` (CDS) and ``ClusterLoadAssignment`` (EDS) into MOSN's cluster shape.

An ``EDS`` cluster is a mosn cluster of listed hosts (``SIMPLE``) whose hosts come
from its load assignment; the snapshot keeps it warming until the assignment has
arrived. Endpoints that Envoy would not send traffic to (``UNHEALTHY``,
``DRAINING``, ``TIMEOUT``) are left out of the host set, as Envoy leaves them out of
load balancing.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from google.protobuf.json_format import MessageToDict

from mosn.config.models import MAX_HOST_WEIGHT, HostConfig
from mosn.config.types import Address
from mosn.xds.fields import (
    Fields,
    PartCache,
    Refused,
    ads_source,
    field_numbers,
    translate,
    unsupported,
)
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
    f.accept("load_assignment")
    if f.has("load_assignment"):
        if mosn_type == EDS:
            f.error("an EDS cluster's endpoints come by EDS", "load_assignment")
        out["hosts"] = assignment_hosts(f.message.load_assignment, "load_assignment", f.errors)
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
    sub = f.adopt(options, f"{f.path}.{path}" if f.path else path)
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


def load_assignment(message: endpoint_pb2.ClusterLoadAssignment) -> list[HostConfig]:
    """A ClusterLoadAssignment as MOSN's ``hosts``; :class:`Refused` names each field
    mosn cannot honour.

    Read field by field from the message (an assignment holds thousands of endpoints,
    and a push may change them all), each endpoint checked here for what
    :class:`HostConfig` checks and made one without a second validation; an endpoint
    whose bytes were translated before (in any assignment) is that entry again."""
    errors: list[str] = []
    hosts = assignment_hosts(message, "", errors, ENDPOINTS)
    if errors:
        name = message.cluster_name
        raise Refused([f"ClusterLoadAssignment {name!r}: {line}" for line in errors])
    return hosts


ENDPOINT_CACHE_SIZE = 4_000
"""Endpoints whose translations are kept by their bytes, the oldest going first: twice
the two sets of a cluster of 1,000 moving between them, so such a push translates
none twice (the oldest going first, a cache just the size of what comes back
would miss every endpoint in turn). Not more: a host entry is three objects (the
model, its field dict, its address) that the garbage collector's full passes walk
while it is kept, and a pass lands in whichever push's allocations trip it; 20,000
entries made those passes 4-11 ms (docs/benchmarks.md, "Control plane (xDS)"). An
endpoint older than that is read again from its bytes (some 2 us)."""
ENDPOINTS = PartCache(ENDPOINT_CACHE_SIZE)


def assignment_hosts(message: endpoint_pb2.ClusterLoadAssignment, at: str,
                     errors: list[str], cache: PartCache | None = None) -> list[HostConfig]:
    """The hosts of an assignment at ``at`` in its resource; its errors to ``errors``.
    ``cache``: endpoint translations by their bytes (taken as they were, and kept)."""
    unsupported(message, _ASSIGNMENT, at, errors)
    hosts = []
    append = hosts.append
    own: list[str] = []  # an endpoint's errors, by paths within it
    for i, group in enumerate(message.endpoints):
        path = f"{at}.endpoints[{i}]" if at else f"endpoints[{i}]"
        unsupported(group, _LOCALITY, path, errors)  # locality and its weight: used
        if group.priority:                            # only by locality-weighted LB
            errors.append(f"{path}.priority: mosn has one priority (0)")
        for j, lb in enumerate(group.lb_endpoints):
            key = b""
            if cache is not None:
                # Its bytes as they come: the same bytes are the same endpoint (a map
                # serialized in another order only misses the cache); the cheapest key
                # there is (some 0.4 us, against some 2.6 us to read the fields that matter).
                key = lb.SerializeToString()
                host = cache.get(key)
                if host is not None:
                    append(host)
                    continue
            host = plain_endpoint(key) if key else None
            if host is None:
                host = lb_endpoint(lb, own)
            if own:  # the endpoint's path is written only for an error
                errors += [f"{path}.lb_endpoints[{j}].{line}" for line in own]
                own.clear()
            elif cache is not None and host is not None:
                cache.keep(key, host)
            if host is not None:
                append(host)
    return hosts


def lb_endpoint(lb: endpoint_pb2.LbEndpoint, errors: list[str]) -> HostConfig | None:
    """An endpoint as a host entry (None: one Envoy sends no traffic to, or refused);
    its errors to ``errors``, each naming its field's path within the endpoint.

    Each message's set fields are listed once (``ListFields``) and their numbers
    compared with those read here."""
    weight = 1
    metadata: dict[str, Any] = {}
    endpoint = None
    for field, value in lb.ListFields():
        number = field.number
        if number == _ENDPOINT_FIELD:
            endpoint = value
        elif number == _WEIGHT_FIELD:
            weight = value.value
        elif number == _METADATA_FIELD:
            metadata = lb_metadata(value, "metadata", errors)
        elif field.containing_oneof is not None:  # the host identifier's other kinds
            errors.append(f"{field.name}: mosn takes endpoint")
        elif number not in _LB_ENDPOINT:
            errors.append(f"{field.name}: field not supported by mosn")
    if weight > MAX_HOST_WEIGHT:
        errors.append(f"load_balancing_weight: mosn's host weights go up to {MAX_HOST_WEIGHT}")
    elif weight < 1:
        errors.append("load_balancing_weight: a host weight is at least 1")
    if endpoint is None:
        return None
    host_address = None
    has_address = False
    for field, value in endpoint.ListFields():
        number = field.number
        if number == _ADDRESS_FIELD:
            has_address = True
            host_address = address(value, "endpoint.address", errors)
        elif number not in _ENDPOINT:
            errors.append(f"endpoint.{field.name}: field not supported by mosn")
    if not has_address:
        errors.append("endpoint.address: an endpoint needs an address")
    if host_address is None or lb.health_status not in _SERVING:
        return None
    # Checked above as HostConfig's fields check (address, weight bounds): made
    # without validating again, as a config file's hosts are made by validation.
    return HostConfig.checked(host_address, endpoint.hostname, weight, metadata)


_PLAIN_ENDPOINT = re.compile(
    rb"\x0a([\x00-\x7f])\x0a([\x00-\x7f])\x0a([\x00-\x7f])"
    rb"\x12([\x00-\x7f])([0-9A-Za-z.-]+)\x18([\x80-\xff]{0,2}[\x00-\x7f])", re.S)
"""The bytes of an endpoint that sets an address and a port and nothing else (most
endpoints of a mesh): ``LbEndpoint.endpoint`` (1) > ``Endpoint.address`` (1) >
``Address.socket_address`` (1) > ``SocketAddress.address`` (2), ``port_value`` (3),
each length in one byte, the address a name or an IPv4 address."""


def plain_endpoint(data: bytes) -> HostConfig | None:
    """The host entry of an endpoint's serialized bytes when they are a plain address
    and port (:data:`_PLAIN_ENDPOINT`), read from the bytes in one match instead of
    three messages' fields (some 1.7 us less an endpoint); None for any
    other endpoint (read by :func:`lb_endpoint`). Its fields are those
    :func:`lb_endpoint` accepts with every other field unset: weight 1, serving."""
    match = _PLAIN_ENDPOINT.fullmatch(data)
    if match is None:
        return None
    lb, endpoint, address_, socket, host, varint = match.groups()
    size = len(data)
    if (lb[0] != size - 2 or endpoint[0] != size - 4 or address_[0] != size - 6
            or socket[0] != len(host)):
        return None  # the lengths say the bytes nest otherwise: not a plain endpoint
    port = 0
    for shift, byte in enumerate(varint):
        port |= (byte & 0x7F) << (7 * shift)
    if not 0 < port <= MAX_PORT:
        return None
    return HostConfig.checked(Address(host.decode(), port))


def lb_metadata(metadata: base_pb2.Metadata, path: str, errors: list[str]) -> dict[str, Any]:
    """An endpoint's subset keys (``envoy.lb``) as MOSN's; other keys are opaque to mosn."""
    unsupported(metadata, _METADATA, path, errors)
    subset = metadata.filter_metadata.get(LB_METADATA)
    if subset is None:
        return {}
    keys = {str(k): str(v) for k, v in MessageToDict(subset).items()}
    return {"filter_metadata": {"mosn.lb": keys}}


def address(message: address_pb2.Address, path: str, errors: list[str]) -> Address | None:
    """An endpoint's ``Address`` (what :func:`mosn.xds.listener.socket_address` reads,
    field by field), checked as :func:`mosn.config.types.parse_address` checks."""
    kind = message.WhichOneof("address")
    if kind != "socket_address":
        errors.append(f"{path}.{kind}: mosn takes socket_address" if kind is not None
                      else f"{path}: an endpoint needs a socket_address")
        return None
    sa = message.socket_address
    host, port, protocol = "", 0, TCP
    for field, value in sa.ListFields():
        number = field.number
        if number == _HOST_FIELD:
            host = value
        elif number == _PORT_FIELD:
            port = value
        elif number == _PROTOCOL_FIELD:
            protocol = value
        else:
            errors.append(f"{path}.socket_address.{field.name}: field not supported by mosn")
    if protocol != TCP:
        errors.append(f"{path}.socket_address.protocol: mosn's xDS listeners and clusters are TCP")
    if not host:
        errors.append(f"{path}.socket_address.address: an endpoint needs an address")
        return None
    if port > MAX_PORT:
        errors.append(f"{path}.socket_address.port_value: {port} is not a port (0 to {MAX_PORT})")
        return None
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            errors.append(f"{path}.socket_address.address: {host!r} is neither a name nor an "
                          "IPv4 or IPv6 address")
            return None
    return Address(host, port)


MAX_PORT = 65535  # a TCP port is 16 bits (Envoy's port_value is a uint32 bounded by validation)
_ASSIGNMENT = field_numbers(endpoint_pb2.ClusterLoadAssignment, "cluster_name", "endpoints")
_LOCALITY = field_numbers(endpoint_components_pb2.LocalityLbEndpoints, "locality",
                          "load_balancing_weight", "priority", "lb_endpoints")
_LB_ENDPOINT = field_numbers(endpoint_components_pb2.LbEndpoint, "health_status", "endpoint",
                             "endpoint_name", "load_balancing_weight", "metadata")
_ENDPOINT = field_numbers(endpoint_components_pb2.Endpoint, "address", "hostname")
_SOCKET_ADDRESS = field_numbers(address_pb2.SocketAddress, "protocol", "address", "port_value")
_ENDPOINT_FIELD, = field_numbers(endpoint_components_pb2.LbEndpoint, "endpoint")
_WEIGHT_FIELD, = field_numbers(endpoint_components_pb2.LbEndpoint, "load_balancing_weight")
_METADATA_FIELD, = field_numbers(endpoint_components_pb2.LbEndpoint, "metadata")
_ADDRESS_FIELD, = field_numbers(endpoint_components_pb2.Endpoint, "address")
_HOST_FIELD, = field_numbers(address_pb2.SocketAddress, "address")
_PORT_FIELD, = field_numbers(address_pb2.SocketAddress, "port_value")
_PROTOCOL_FIELD, = field_numbers(address_pb2.SocketAddress, "protocol")
TCP = address_pb2.SocketAddress.TCP
_METADATA = field_numbers(base_pb2.Metadata, "filter_metadata", "typed_filter_metadata")
_SERVING = frozenset(health_check_pb2.HealthStatus.Value(name) for name in SERVING)
