"""``Listener`` (LDS) into a MOSN listener, with its inline route configurations.

Network filters: Envoy's ``http_connection_manager`` becomes mosn's ``proxy`` filter
(its routes by RDS name or inline; its HTTP filters the listener's stream filters), ``tcp_proxy`` mosn's ``tcp_proxy``, and a
``TypedStruct`` whose ``type_url`` names a mosn network filter (``mosn.proxy``:
bolt, Dubbo and declared codecs) is that filter with the struct as its config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.listener.http_inspector.v3 import http_inspector_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.listener.proxy_protocol.v3 import proxy_protocol_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf.json_format import MessageToDict
from xds.type.v3 import typed_struct_pb2

from mosn.xds.fields import Fields, ads_source, translate
from mosn.xds.http_filters import http_filters
from mosn.xds.route import router_config
from mosn.xds.tls import DOWNSTREAM, transport_socket

HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
TCP_PROXY = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
TYPED_STRUCT = "xds.type.v3.TypedStruct"
NETWORK_FILTERS = {HCM: hcm_pb2.HttpConnectionManager, TCP_PROXY: tcp_proxy_pb2.TcpProxy,
                   TYPED_STRUCT: typed_struct_pb2.TypedStruct}
MOSN_FILTER_PREFIX = "mosn."
"""A TypedStruct's ``type_url`` ``mosn.NAME`` is mosn's network filter NAME."""
LISTENER_FILTERS = {
    "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector":
        ("tls_inspector", tls_inspector_pb2.TlsInspector),
    "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector":
        ("http_inspector", http_inspector_pb2.HttpInspector),
    "envoy.extensions.filters.listener.original_dst.v3.OriginalDst":
        ("original_dst", original_dst_pb2.OriginalDst),
    "envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol":
        ("proxy_protocol", proxy_protocol_pb2.ProxyProtocol),
}
CODECS = {"AUTO": "Auto", "HTTP1": "Http1", "HTTP2": "Http2"}
UPSTREAM_HTTP = "Http1"
"""Envoy speaks HTTP/1.1 to a cluster unless the cluster asks for HTTP/2 (the
snapshot sets a route's ``upstream_protocol`` from its cluster)."""
ESCAPED_SLASHES = {"IMPLEMENTATION_SPECIFIC_DEFAULT": "KEEP_UNCHANGED",
                   "KEEP_UNCHANGED": "KEEP_UNCHANGED", "REJECT_REQUEST": "REJECT_REQUEST",
                   "UNESCAPE_AND_REDIRECT": "UNESCAPE_AND_REDIRECT",
                   "UNESCAPE_AND_FORWARD": "UNESCAPE_AND_FORWARD"}


@dataclass
class TranslatedListener:
    listener: dict[str, Any]
    """MOSN's listener shape; TLS contexts may still hold SDS references."""
    routers: list[dict[str, Any]] = field(default_factory=list)
    """Route configurations given inline."""
    route_names: list[str] = field(default_factory=list)
    """Route configurations to fetch by RDS."""
    stream_filters: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    """Each connection manager's HTTP filters as stream filters, by its path."""


def listener(message: listener_pb2.Listener) -> TranslatedListener:
    return translate(message, "Listener", message.name, _listener)


def _listener(f: Fields) -> TranslatedListener:
    f.accept("stat_prefix", "traffic_direction", "metadata")  # names for stats and logs
    name = f.scalar("name")
    out: dict[str, Any] = {"name": name}
    result = TranslatedListener(out)
    address = f.child("address")
    out["address"] = socket_address(address) if address else ""
    if f.wrapped("use_original_dst", False):
        out["use_original_dst"] = "tproxy" if f.wrapped("transparent", False) else "redirect"
    elif f.wrapped("transparent", False):
        f.refuse("transparent", "mosn's transparent listeners are use_original_dst ones")
    if not f.wrapped("bind_to_port", True):
        out["bind_port"] = False
    limit = f.wrapped("per_connection_buffer_limit_bytes")
    if limit is not None:
        out["per_connection_buffer_limit_bytes"] = limit
    timeout = f.seconds("listener_filters_timeout")
    if timeout is not None:
        out["listener_filters_timeout"] = f"{timeout}s" if timeout else "0s"
    if f.scalar("continue_on_listener_filters_timeout"):
        out["continue_on_listener_filters_timeout"] = True
    filters = [listener_filter(lf) for lf in f.children("listener_filters")]
    if filters:
        out["listener_filters"] = [x for x in filters if x is not None]
    out["filter_chains"] = [filter_chain(c, name, result) for c in f.children("filter_chains")]
    if not out["filter_chains"]:
        f.error("a listener needs a filter chain", "filter_chains")
    if result.stream_filters:
        first_path, first = result.stream_filters[0]
        for path, filters in result.stream_filters[1:]:
            if filters != first:
                f.error(f"mosn's stream filters are the listener's: its connection managers "
                        f"need the same http filters ({first_path} has others)", path)
        if first:
            out["stream_filters"] = first
    return result


def socket_address(f: Fields) -> str:
    kind = f.which("address")
    if kind != "socket_address":
        if kind is not None:
            f.refuse(kind, "mosn takes socket_address")
        return ""
    sa = f.child("socket_address")
    assert sa is not None
    if sa.enum("protocol") != "TCP":
        sa.error("mosn's xDS listeners and clusters are TCP", "protocol")
    host = sa.scalar("address")
    port = sa.scalar("port_value")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listener_filter(f: Fields) -> dict[str, Any] | None:
    f.accept("name")
    if not f.has("typed_config"):
        f.error("a listener filter needs its typed_config")
        return None
    type_name = f.message.typed_config.type_url.rpartition("/")[2]
    known = LISTENER_FILTERS.get(type_name)
    config = f.typed("typed_config", {k: v[1] for k, v in LISTENER_FILTERS.items()})
    if config is None or known is None:
        return None
    return {"type": known[0], "config": {}}


def filter_chain(f: Fields, listener_name: str, result: TranslatedListener) -> dict[str, Any]:
    f.accept("name", "metadata")
    out: dict[str, Any] = {"name": f.scalar("name")}
    match = f.child("filter_chain_match")
    if match is not None:
        out["filter_chain_match"] = chain_match(match)
    socket = f.child("transport_socket")
    if socket is not None:
        tls = transport_socket(socket, DOWNSTREAM)
        if tls is not None:
            out["tls_context"] = tls
    out["filters"] = [network_filter(n, listener_name, result) for n in f.children("filters")]
    return out


def chain_match(f: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {}
    port = f.wrapped("destination_port")
    if port is not None:
        out["destination_port"] = port
    for name in ("prefix_ranges", "direct_source_prefix_ranges", "source_prefix_ranges"):
        ranges = [{"address_prefix": r.scalar("address_prefix"),
                   "prefix_len": r.wrapped("prefix_len", 0)} for r in f.children(name)]
        if ranges:
            out[name] = ranges
    for name in ("server_names", "application_protocols", "source_ports"):
        values = list(f.scalar(name))
        if values:
            out[name] = values
    if f.scalar("transport_protocol"):
        out["transport_protocol"] = f.scalar("transport_protocol")
    source = f.enum("source_type")
    if source != "ANY":
        out["source_type"] = source
    return out


def network_filter(f: Fields, listener_name: str, result: TranslatedListener) -> dict[str, Any]:
    f.accept("name")
    type_name = (f.message.typed_config.type_url.rpartition("/")[2]
                 if f.has("typed_config") else "")
    config = f.typed("typed_config", NETWORK_FILTERS)
    if config is None:
        if not type_name:
            f.error("a network filter needs its typed_config")
        return {"type": "", "config": {}}
    if type_name == HCM:
        return {"type": "proxy", "config": http_connection_manager(config, listener_name, result)}
    if type_name == TCP_PROXY:
        return {"type": "tcp_proxy", "config": tcp_proxy(config)}
    flt = mosn_filter(config)
    name = flt["config"].get("router_config_name")
    if flt["type"] == "proxy" and isinstance(name, str) and name:
        result.route_names.append(name)  # mosn's proxy takes its routes by RDS too
    return flt


def mosn_filter(f: Fields) -> dict[str, Any]:
    url = f.scalar("type_url").rpartition("/")[2]
    if not url.startswith(MOSN_FILTER_PREFIX):
        f.error(f"a TypedStruct names a mosn network filter as {MOSN_FILTER_PREFIX}NAME "
                f"(found {url!r})", "type_url")
    value = f.message.value if f.has("value") else None
    f.accept("value")
    return {"type": url.removeprefix(MOSN_FILTER_PREFIX),
            "config": MessageToDict(value) if value is not None else {}}


def http_connection_manager(f: Fields, listener_name: str,
                            result: TranslatedListener) -> dict[str, Any]:
    f.accept("stat_prefix")
    out: dict[str, Any] = {"downstream_protocol": CODECS.get(f.enum("codec_type"), "")}
    if not out["downstream_protocol"]:
        f.error(f"codec_type {f.enum('codec_type')} is not supported by mosn", "codec_type")
    out["upstream_protocol"] = UPSTREAM_HTTP
    kind = f.which("route_specifier")
    if kind == "rds":
        rds = f.child("rds")
        assert rds is not None
        name = rds.scalar("route_config_name")
        ads_source(rds.child("config_source"), "routes")
        out["router_config_name"] = name
        result.route_names.append(name)
    elif kind == "route_config":
        inline = router_config(f.child("route_config"), inline=True)  # type: ignore[arg-type]
        if not inline["router_config_name"]:
            inline["router_config_name"] = f"{listener_name}/inline"
        out["router_config_name"] = inline["router_config_name"]
        result.routers.append(inline)
    else:
        if kind is not None:
            f.refuse(kind, "mosn takes rds or route_config")
        f.error("an http_connection_manager needs rds or route_config")
    result.stream_filters.append((f.path, http_filters(f)))
    out["normalize_path"] = bool(f.wrapped("normalize_path", False))
    out["merge_slashes"] = bool(f.scalar("merge_slashes"))
    out["path_with_escaped_slashes_action"] = ESCAPED_SLASHES[
        f.enum("path_with_escaped_slashes_action")]
    idle = f.seconds("stream_idle_timeout")
    if idle is not None:
        out["stream_idle_timeout"] = f"{idle}s"
    headers = f.seconds("request_headers_timeout")
    if headers is not None:
        out["request_headers_timeout"] = f"{headers}s"
    common = f.child("common_http_protocol_options")
    if common is not None:
        duration = common.seconds("max_connection_duration")
        if duration:
            out["max_connection_duration"] = f"{duration}s"
    return out


def tcp_proxy(f: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {"stat_prefix": f.scalar("stat_prefix")}
    kind = f.which("cluster_specifier")
    if kind == "cluster":
        out["cluster"] = f.scalar("cluster")
    elif kind == "weighted_clusters":
        weighted = f.child(kind)
        assert weighted is not None
        out["weighted_clusters"] = {"clusters": [
            {"name": c.scalar("name"), "weight": c.scalar("weight")}
            for c in weighted.children("clusters")]}
    else:
        f.error("a tcp_proxy needs cluster or weighted_clusters")
    idle = f.seconds("idle_timeout")
    if idle is not None:
        out["idle_timeout"] = f"{idle}s"
    attempts = f.wrapped("max_connect_attempts")
    if attempts is not None:
        out["max_connect_attempts"] = attempts
    return out
