"""Envoy v3 resources shaped the way istiod writes them (as ``istioctl proxy-config
... -o json`` shows them), built as JSON and parsed into the real messages.

The names follow Istio's: clusters ``outbound|PORT||HOST``, route configurations
named by port, listeners ``0.0.0.0_PORT`` (virtual: ``bind_to_port: false``) behind
the ``virtualOutbound`` listener on 15001 that hands connections over by their
original destination, SDS secrets ``default`` (the workload certificate) and
``ROOTCA``. Two things differ from istiod's output, both said in docs/xds.md: the
secrets come over the same ADS stream (istiod's sidecars take them from the
istio-agent's SDS socket), and ALPN lists ``h2,http/1.1`` (istio's own ALPN ids,
``istio-peer-exchange``, mean nothing to mosn and are refused).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from mosn.xds.resources import CLUSTERS, ENDPOINTS, LISTENERS, ROUTES, SECRETS, ResourceType

TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3"
HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
       "HttpConnectionManager")
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
FAULT = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
RBAC = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
RBAC_PER_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute"
LOCAL_RATELIMIT = ("type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3."
                   "LocalRateLimit")
TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
ORIGINAL_DST = "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"
HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
ADS = {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}
DOMAIN = "svc.cluster.local"


def message(kind: ResourceType, data: dict[str, Any]) -> Message:
    """The resource ``data`` (protobuf JSON, ``@type`` in each Any) as its message."""
    return json_format.ParseDict(data, kind.message())


def outbound(port: int, host: str, subset: str = "") -> str:
    return f"outbound|{port}|{subset}|{host}"


def service(name: str, namespace: str = "default") -> str:
    return f"{name}.{namespace}.{DOMAIN}"


def sds(name: str) -> dict[str, Any]:
    return {"name": name, "sds_config": ADS}


def upstream_mtls(host: str, port: int, account: str) -> dict[str, Any]:
    """Istio's ``ISTIO_MUTUAL`` transport socket of an outbound cluster."""
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": f"{TLS}.UpstreamTlsContext",
            "common_tls_context": {
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2",
                               "tls_maximum_protocol_version": "TLSv1_3"},
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_certificate_sds_secret_configs": [sds("default")],
                "combined_validation_context": {
                    "default_validation_context": {"match_subject_alt_names": [
                        {"exact": f"spiffe://cluster.local/ns/default/sa/{account}"}]},
                    "validation_context_sds_secret_config": sds("ROOTCA"),
                },
            },
            "sni": f"outbound_.{port}_._.{host}",
        },
    }


def eds_cluster(port: int, host: str, *, mtls: str = "", http2: bool = False,
                lb_policy: str = "LEAST_REQUEST", **extra: Any) -> dict[str, Any]:
    name = outbound(port, host)
    cluster: dict[str, Any] = {
        "name": name,
        "type": "EDS",
        "eds_cluster_config": {"eds_config": ADS, "service_name": name},
        "connect_timeout": "10s",
        "lb_policy": lb_policy,
        "circuit_breakers": {"thresholds": [{
            "max_connections": 4294967295, "max_pending_requests": 4294967295,
            "max_requests": 4294967295, "max_retries": 4294967295}]},
        "metadata": {"filter_metadata": {"istio": {"services": [
            {"host": host, "name": host.split(".")[0], "namespace": "default"}]}}},
    }
    if mtls:
        cluster["transport_socket"] = upstream_mtls(host, port, mtls)
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": HTTP_OPTIONS,
                "explicit_http_config": {"http2_protocol_options": {}}}}
    cluster.update(extra)
    return cluster


def static_cluster(name: str, addresses: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": assignment(name, {"": addresses}), **extra}


def passthrough_cluster() -> dict[str, Any]:
    """Istio's ``PassthroughCluster``: to wherever the connection was going."""
    return {"name": "PassthroughCluster", "type": "ORIGINAL_DST", "connect_timeout": "10s",
            "lb_policy": "CLUSTER_PROVIDED"}


def endpoint(address: str, weight: int = 0, health: str = "") -> dict[str, Any]:
    ip, _, port = address.rpartition(":")
    out: dict[str, Any] = {"endpoint": {"address": {"socket_address": {
        "address": ip, "port_value": int(port)}}}}
    if weight:
        out["load_balancing_weight"] = weight
    if health:
        out["health_status"] = health
    return out


def assignment(name: str, zones: dict[str, list[Any]], **extra: Any) -> dict[str, Any]:
    """``zones``: zone -> endpoints (``ip:port`` or :func:`endpoint` dicts)."""
    groups = []
    for zone, endpoints in zones.items():
        group: dict[str, Any] = {"lb_endpoints": [
            endpoint(e) if isinstance(e, str) else e for e in endpoints]}
        if zone:
            group["locality"] = {"region": "us-central1", "zone": zone}
            group["load_balancing_weight"] = len(endpoints)
        groups.append(group)
    return {"cluster_name": name, "endpoints": groups, **extra}


def route_configuration(name: str, hosts: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"name": name, "virtual_hosts": hosts, "validate_clusters": False, **extra}


def virtual_host(host: str, port: int, routes: list[dict[str, Any]]) -> dict[str, Any]:
    """Istio's virtual host of a service: its names with and without the port."""
    short = host.split(".")[0]
    return {"name": f"{host}:{port}",
            "domains": [host, f"{host}:{port}", short, f"{short}:{port}"],
            "routes": routes}


def route(match: dict[str, Any], cluster: str = "", **action: Any) -> dict[str, Any]:
    """Istio's default route: no timeout (``0s``), retries on connect failures."""
    act: dict[str, Any] = {"timeout": "0s", "retry_policy": {
        "retry_on": "connect-failure,refused-stream,unavailable,cancelled,"
                    "retriable-status-codes",
        "num_retries": 2, "retriable_status_codes": [503]}}
    if cluster:
        act["cluster"] = cluster
    act.update(action)
    return {"name": "default", "match": match, "route": act}


def http_filter(name: str, type_url: str, **config: Any) -> dict[str, Any]:
    """An entry of ``http_filters``: Istio names them ``envoy.filters.http.<kind>``."""
    return {"name": f"envoy.filters.http.{name}", "typed_config": {"@type": type_url, **config}}


ROUTER_FILTER = http_filter("router", ROUTER)


def http_listener(port: int, route_name: str = "", *, inline: dict[str, Any] | None = None,
                  address: str = "0.0.0.0", bind: bool = False, codec: str = "AUTO",
                  http_filters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Istio's outbound listener of a port: virtual, an HTTP connection manager on RDS."""
    manager: dict[str, Any] = {
        "@type": HCM, "stat_prefix": f"outbound_{address}_{port}", "codec_type": codec,
        "http_filters": http_filters or [{"name": "envoy.filters.http.router",
                                          "typed_config": {"@type": ROUTER}}],
    }
    if inline is not None:
        manager["route_config"] = inline
    else:
        manager["rds"] = {"config_source": ADS, "route_config_name": route_name or str(port)}
    listener: dict[str, Any] = {
        "name": f"{address}_{port}",
        "address": {"socket_address": {"address": address, "port_value": port}},
        "traffic_direction": "OUTBOUND",
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                        "typed_config": manager}]}],
    }
    if not bind:
        listener["bind_to_port"] = False
    return listener


def virtual_outbound(port: int, address: str = "0.0.0.0") -> dict[str, Any]:
    """Istio's ``virtualOutbound``: takes redirected connections, hands each to the
    listener of its original destination, else passes it through."""
    return {
        "name": "virtualOutbound",
        "address": {"socket_address": {"address": address, "port_value": port}},
        "use_original_dst": True,
        "traffic_direction": "OUTBOUND",
        "listener_filters": [{"name": "envoy.filters.listener.original_dst",
                              "typed_config": {"@type": ORIGINAL_DST}}],
        "filter_chains": [{"name": "virtualOutbound-catchall-tcp", "filters": [{
            "name": "envoy.filters.network.tcp_proxy",
            "typed_config": {"@type": TCP_PROXY, "stat_prefix": "PassthroughCluster",
                             "cluster": "PassthroughCluster"}}]}],
    }


def virtual_inbound(port: int, chains: list[dict[str, Any]]) -> dict[str, Any]:
    """Istio's ``virtualInbound``: takes the connections redirected into the pod, picks
    a filter chain by their original destination port, else passes them through."""
    passthrough = {"name": "virtualInbound-catchall-tcp", "filters": [{
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {"@type": TCP_PROXY, "stat_prefix": "InboundPassthroughClusterIpv4",
                         "cluster": "InboundPassthroughClusterIpv4"}}]}
    return {
        "name": "virtualInbound",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
        "traffic_direction": "INBOUND",
        "listener_filters": [{"name": "envoy.filters.listener.original_dst",
                              "typed_config": {"@type": ORIGINAL_DST}}],
        "filter_chains": [*chains, passthrough],
    }


def inbound_http_chain(port: int) -> dict[str, Any]:
    """The chain of ``virtualInbound`` for the workload's HTTP port: its own inline route
    to the ``inbound|PORT||`` cluster."""
    cluster = f"inbound|{port}||"
    manager = {
        "@type": HCM, "stat_prefix": f"inbound_0.0.0.0_{port}", "codec_type": "AUTO",
        "route_config": {"name": cluster, "validate_clusters": False, "virtual_hosts": [{
            "name": f"inbound|http|{port}", "domains": ["*"],
            "routes": [{"name": "default", "match": {"prefix": "/"},
                        "route": {"cluster": cluster, "timeout": "0s"}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
    }
    return {"name": f"0.0.0.0_{port}", "filter_chain_match": {"destination_port": port},
            "filters": [{"name": "envoy.filters.network.http_connection_manager",
                         "typed_config": manager}]}


def tls_secret(name: str, cert: str, key: str) -> dict[str, Any]:
    return {"name": name, "tls_certificate": {
        "certificate_chain": {"inline_string": cert}, "private_key": {"inline_string": key}}}


def ca_secret(name: str, ca: str) -> dict[str, Any]:
    return {"name": name, "validation_context": {"trusted_ca": {"inline_string": ca}}}


KINDS = {"listener": LISTENERS, "cluster": CLUSTERS, "route": ROUTES,
         "endpoints": ENDPOINTS, "secret": SECRETS}
