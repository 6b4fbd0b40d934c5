"""``RouteConfiguration`` (RDS, or inline in a listener) into MOSN's ``routers`` shape.

Envoy's matchers map onto mosn's router (:mod:`mosn.config.routers`) through
:mod:`mosn.xds.matchers`; Python's ``re`` stands in for RE2: a pattern that does not
compile in it is refused. ``typed_per_filter_config`` becomes ``per_filter_config``
(:mod:`mosn.xds.http_filters`).
"""

from __future__ import annotations

from typing import Any

from envoy.config.route.v3 import route_pb2

from mosn.xds.fields import Fields, PartCache, translate
from mosn.xds.http_filters import per_filter_configs
from mosn.xds.matchers import anchored, header_matcher, regex, string_matcher, whole_percent

REDIRECT_CODES = {"MOVED_PERMANENTLY": 301, "FOUND": 302, "SEE_OTHER": 303,
                  "TEMPORARY_REDIRECT": 307, "PERMANENT_REDIRECT": 308}
LB_METADATA = "envoy.lb"  # Envoy's filter_metadata key of subset load balancing
APPEND_ACTIONS = {"APPEND_IF_EXISTS_OR_ADD": True, "OVERWRITE_IF_EXISTS_OR_ADD": False}
"""Envoy's ``append_action`` values mosn's ``append`` can say (``ADD_IF_ABSENT`` it cannot)."""


def route_configuration(message: route_pb2.RouteConfiguration) -> dict[str, Any]:
    """A RouteConfiguration as a MOSN router configuration; :class:`Refused` names
    each field mosn cannot honour."""
    return translate(message, "RouteConfiguration", message.name, router_config)


def router_config(f: Fields, inline: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"router_config_name": f.scalar("name")}
    out.update(header_mutations(f))
    out["virtual_hosts"] = [VIRTUAL_HOSTS.part(f, m, path, virtual_host)
                            for m, path in f.parts("virtual_hosts")]
    # Envoy checks the clusters of a route configuration given inline, not of one
    # from RDS, unless validate_clusters says otherwise.
    if f.wrapped("validate_clusters", inline):
        out[VALIDATE_CLUSTERS] = True
    return out


VALIDATE_CLUSTERS = "validate_clusters"
"""In a translated router: the clusters it names must be known when it is applied
(taken out by the snapshot before the loader sees it)."""


def cluster_names(router: dict[str, Any]) -> list[str]:
    """The clusters a translated router's routes name (not a ``cluster_header``'s)."""
    names = []
    for host in router.get("virtual_hosts", []):
        for r in host.get("routers", []):
            action = r.get("route") or {}
            if action.get("cluster_name"):
                names.append(action["cluster_name"])
            names += [w["cluster"]["name"] for w in action.get("weighted_clusters", [])]
    return names


def virtual_host(f: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {"name": f.scalar("name"), "domains": list(f.scalar("domains"))}
    out.update(header_mutations(f))
    out["routers"] = [ROUTES.part(f, m, path, route) for m, path in f.parts("routes")]
    configs = per_filter_configs(f)
    if configs:
        out["per_filter_config"] = configs
    return out


VIRTUAL_HOSTS = PartCache()
ROUTES = PartCache()
"""Virtual hosts and routes translated before, by their bytes: a push of a table
where one route changed translates that route (and its virtual host's own fields)."""


def route(f: Fields) -> dict[str, Any]:
    f.accept("name", "metadata")  # names and opaque metadata for filters: mosn reads neither
    out: dict[str, Any] = {"match": route_match(f.child("match"))}
    kind = f.which("action")
    if kind == "route":
        action = route_action(f.child("route"))  # type: ignore[arg-type]
        action.update(header_mutations(f))
        mirrors = action.pop(MIRRORS, None)
        if mirrors:
            out["request_mirror_policies"] = mirrors
        out["route"] = action
    elif kind == "redirect":
        out["redirect"] = redirect(f.child("redirect"))  # type: ignore[arg-type]
    elif kind == "direct_response":
        out["direct_response"] = direct_response(f.child("direct_response"))  # type: ignore[arg-type]
    elif kind is not None:
        f.refuse(kind, "this route action is not supported by mosn")
    else:
        f.error("a route needs route, redirect or direct_response")
    if kind != "route" and any(f.has(n) for n in HEADER_FIELDS):
        header_mutations(f)
        f.error("header mutations on a redirect or direct response are not supported by mosn")
    configs = per_filter_configs(f)
    if configs:
        out["per_filter_config"] = configs
    return out


def route_match(f: Fields | None) -> dict[str, Any]:
    if f is None:
        return {}
    out: dict[str, Any] = {}
    kind = f.which("path_specifier")
    if kind in ("prefix", "path"):
        value = f.scalar(kind)
        if kind == "path" or value not in ("", "/"):
            out[kind] = value
        elif value == "/":
            out["prefix"] = "/"
    elif kind == "safe_regex":
        out["regex"] = anchored(regex(f.child("safe_regex")))  # type: ignore[arg-type]
    elif kind is not None:
        f.refuse(kind, "this path match is not supported by mosn")
    sensitive = f.wrapped("case_sensitive")
    if sensitive is not None:
        out["case_sensitive"] = sensitive
    headers = [header_matcher(h) for h in f.children("headers")]
    if headers:
        out["headers"] = headers
    queries = [query_matcher(q) for q in f.children("query_parameters")]
    if queries:
        out["query_parameters"] = queries
    return out


def query_matcher(f: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {"name": f.scalar("name")}
    kind = f.which("query_parameter_match_specifier")
    if kind == "string_match":
        out["string_match"] = string_matcher(f.child(kind))  # type: ignore[arg-type]
    elif kind == "present_match":
        out["present_match"] = f.scalar(kind)
    return out


def route_action(f: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kind = f.which("cluster_specifier")
    if kind == "cluster":
        out["cluster_name"] = f.scalar("cluster")
    elif kind == "cluster_header":
        out["cluster_header"] = f.scalar("cluster_header")
    elif kind == "weighted_clusters":
        out["weighted_clusters"] = weighted_clusters(f.child(kind))  # type: ignore[arg-type]
    elif kind is not None:
        f.refuse(kind, "this cluster specifier is not supported by mosn")
    else:
        f.error("a route action needs cluster, cluster_header or weighted_clusters")
    if f.enum("cluster_not_found_response_code") != "SERVICE_UNAVAILABLE":
        f.error("mosn answers 503 to a route whose cluster is not known",
                "cluster_not_found_response_code")
    timeout = f.seconds("timeout")
    if timeout is not None:
        out["timeout"] = "disabled" if timeout == 0 else f"{timeout}s"
    if f.has("metadata_match"):
        out["metadata_match"] = lb_metadata(f.child("metadata_match"))  # type: ignore[arg-type]
    if f.has("prefix_rewrite"):
        out["prefix_rewrite"] = f.scalar("prefix_rewrite")
    host = f.which("host_rewrite_specifier")
    if host == "host_rewrite_literal":
        out["host_rewrite"] = f.scalar(host)
    elif host == "host_rewrite_header":
        out["auto_host_rewrite_header"] = f.scalar(host)
    elif host is not None:
        f.refuse(host, "this host rewrite is not supported by mosn")
    if f.has("retry_policy"):
        out["retry_policy"] = retry_policy(f.child("retry_policy"))  # type: ignore[arg-type]
    hashes = [hash_policy(h) for h in f.children("hash_policy")]
    if hashes:
        out["hash_policy"] = hashes
    mirrors = [mirror_policy(m) for m in f.children("request_mirror_policies")]
    if mirrors:
        out[MIRRORS] = mirrors  # a Route field in MOSN's shape: route() moves it up
    if f.has("max_stream_duration"):
        limits = f.child("max_stream_duration")
        assert limits is not None
        for name in ("max_stream_duration", "grpc_timeout_header_max",
                     "grpc_timeout_header_offset"):
            if limits.seconds(name, 0.0):
                limits.refuse(name, "stream duration limits are not supported by mosn "
                                    "(0s, no limit, is)")
    return out


def weighted_clusters(f: Fields) -> list[dict[str, Any]]:
    out = []
    for c in f.children("clusters"):
        weight = c.wrapped("weight", 0)
        name = c.scalar("name")
        if weight:  # a cluster of weight 0 takes no traffic (Envoy's meaning)
            item: dict[str, Any] = {"name": name, "weight": weight}
            if c.has("metadata_match"):
                item["metadata_match"] = lb_metadata(c.child("metadata_match"))  # type: ignore[arg-type]
            out.append({"cluster": item})
        for name in HEADER_FIELDS:
            if c.has(name):
                c.refuse(name, "header mutations per weighted cluster are not supported by mosn")
    if not out:
        f.error("weighted_clusters has no cluster with a weight above 0")
    return out


def lb_metadata(f: Fields) -> dict[str, str]:
    """Envoy's subset keys live under ``filter_metadata["envoy.lb"]``."""
    metadata = f.struct_map("filter_metadata")
    for key in metadata:
        if key != LB_METADATA:
            f.error(f"only {LB_METADATA} (subset keys) is supported", f"filter_metadata[{key!r}]")
    return {str(k): str(v) for k, v in metadata.get(LB_METADATA, {}).items()}


def retry_policy(f: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {"retry_on": f.scalar("retry_on"),
                           "num_retries": f.wrapped("num_retries", 1)}
    per_try = f.seconds("per_try_timeout")
    if per_try:
        out["per_try_timeout"] = f"{per_try}s"
    codes = list(f.scalar("retriable_status_codes"))
    if codes:
        out["retriable_status_codes"] = codes
    return out


def hash_policy(f: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if f.scalar("terminal"):
        out["terminal"] = True
    kind = f.which("policy_specifier")
    if kind == "header":
        h = f.child("header")
        assert h is not None
        out["header"] = {"header_name": h.scalar("header_name")}
    elif kind == "cookie":
        c = f.child("cookie")
        assert c is not None
        out["cookie"] = {"name": c.scalar("name"), "path": c.scalar("path")}
    elif kind == "connection_properties":
        c = f.child("connection_properties")
        assert c is not None
        out["connection_properties"] = {"source_ip": c.scalar("source_ip")}
    elif kind is not None:
        f.refuse(kind, "this hash policy is not supported by mosn")
    return out


def mirror_policy(f: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {"cluster": f.scalar("cluster")}
    fraction = f.child("runtime_fraction")
    if fraction is not None:
        fraction.accept("runtime_key")  # mosn has no runtime: the default value holds
        value = fraction.child("default_value")
        if value is not None:
            out["percent"] = whole_percent(value, "mosn mirrors a whole percent of requests")
    return out


def redirect(f: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {"response_code": REDIRECT_CODES[f.enum("response_code")]}
    scheme = f.which("scheme_rewrite_specifier")
    if scheme == "https_redirect":
        if f.scalar("https_redirect"):
            out["scheme_redirect"] = "https"
    elif scheme == "scheme_redirect":
        out["scheme_redirect"] = f.scalar("scheme_redirect")
    if f.has("host_redirect"):
        out["host_redirect"] = f.scalar("host_redirect")
    path = f.which("path_rewrite_specifier")
    if path == "path_redirect":
        out["path_redirect"] = f.scalar("path_redirect")
    elif path is not None:
        f.refuse(path, "this path rewrite of a redirect is not supported by mosn")
    return out


def direct_response(f: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {"status": f.scalar("status")}
    body = f.child("body")
    if body is not None:
        kind = body.which("specifier")
        if kind == "inline_string":
            out["body"] = body.scalar(kind)
        elif kind == "inline_bytes":
            try:
                out["body"] = body.scalar(kind).decode()
            except UnicodeDecodeError:
                body.refuse(kind, "mosn's direct response body is UTF-8 text")
        elif kind is not None:
            body.refuse(kind, "a direct response body is inline_string or inline_bytes in mosn")
    return out


MIRRORS = "request_mirror_policies"
HEADER_FIELDS = ("request_headers_to_add", "request_headers_to_remove",
                 "response_headers_to_add", "response_headers_to_remove")


def header_mutations(f: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for side in ("request", "response"):
        added = [header_value_option(h) for h in f.children(f"{side}_headers_to_add")]
        if added:
            out[f"{side}_headers_to_add"] = added
        removed = list(f.scalar(f"{side}_headers_to_remove"))
        if removed:
            out[f"{side}_headers_to_remove"] = removed
    return out


def header_value_option(f: Fields) -> dict[str, Any]:
    header = f.child("header")
    key = value = ""
    if header is not None:
        key, value = header.scalar("key"), header.scalar("value")
    append = f.wrapped("append")
    action = f.enum("append_action")
    if append is None:
        if action not in APPEND_ACTIONS:
            f.error(f"{action} is not supported by mosn", "append_action")
            append = True
        else:
            append = APPEND_ACTIONS[action]
    return {"header": {"key": key, "value": value}, "append": append}
