"""MOSN's admin API shapes: ``/api/v1/stats`` and ``/api/v1/config_dump``.

``/api/v1/stats`` follows MOSN's console sink (``pkg/metrics/sink/console``): metric
type -> namespace -> key -> value as a string, where the type is ``downstream`` for
listeners and protocols and ``upstream`` for clusters and hosts, and the namespace is
the scope's labels joined (``listener.http``, ``cluster.backend``,
``cluster.backend.host.127.0.0.1:8080``). Keys take MOSN's name where MOSN counts
the same thing (``downstream_cx_total`` is ``connection_total``) and mosn's own name
otherwise. ``?key=<type>.<namespace>`` keeps one namespace, as MOSN's ``key``.

``/api/v1/config_dump`` follows MOSN's effective config (``pkg/configmanager``):
``mosn_config`` (the config without its listeners, routers and clusters),
``listener``, ``cluster`` and ``routers`` keyed by name; one query parameter picks a
part: ``mosnconfig``, ``alllisteners``, ``allclusters``, ``allrouters``,
``listener=NAME``, ``cluster=NAME``, ``router=NAME``.
"""

from __future__ import annotations

from typing import Any

from mosn.admin.stat_names import CLUSTER, HOST, LISTENER, PROTOCOL, StatNames

DOWNSTREAM, UPSTREAM = "downstream", "upstream"
_TYPE = {LISTENER: DOWNSTREAM, PROTOCOL: DOWNSTREAM, CLUSTER: UPSTREAM, HOST: UPSTREAM}

MOSN_KEYS = {
    DOWNSTREAM: {
        "downstream_cx_total": "connection_total",
        "downstream_cx_destroy": "connection_destroy",
        "downstream_cx_active": "connection_active",
        "downstream_cx_rx_bytes_total": "bytes_read_total",
        "downstream_cx_tx_bytes_total": "bytes_write_total",
        "downstream_rq_total": "request_total",
        "downstream_rq_active": "request_active",
    },
    UPSTREAM: {
        "upstream_cx_total": "connection_total",
        "upstream_cx_active": "connection_active",
        "upstream_cx_connect_fail": "connection_con_fail",
        "upstream_cx_destroy_local": "connection_local_close",
        "upstream_cx_destroy_remote": "connection_remote_close",
        "upstream_cx_rx_bytes_total": "connection_bytes_read_total",
        "upstream_cx_tx_bytes_total": "connection_bytes_write",
        "upstream_rq_total": "request_total",
        "upstream_rq_active": "request_active",
        "upstream_rq_timeout": "request_timeout",
        "upstream_rq_pending_overflow": "request_pending_overflow",
        "upstream_rq_retry": "request_retry",
        "upstream_rq_retry_overflow": "request_retry_overflow",
        "cx_total": "connection_total",
        "cx_active": "connection_active",
        "cx_connect_fail": "connection_con_fail",
        "rq_total": "request_total",
        "rq_active": "request_active",
        "rq_timeout": "request_timeout",
    },
}
"""mosn's stat -> MOSN's key (``pkg/metrics/downstream.go``, ``upstream.go``)."""


def stats(snapshot: dict[str, int], names: StatNames, key: str | None = None,
          ) -> dict[str, dict[str, dict[str, str]]]:
    out: dict[str, dict[str, dict[str, str]]] = {}
    for full, value in snapshot.items():
        split = names.split(full)
        kind = _TYPE.get(split.kind)
        if kind is None:
            continue
        namespace = split.namespace
        if key is not None and key != f"{kind}.{namespace}":
            continue
        stat = MOSN_KEYS[kind].get(split.stat, split.stat)
        out.setdefault(kind, {}).setdefault(namespace, {})[stat] = str(value)
    return out


def config_dump(dumped: dict[str, Any], query: dict[str, list[str]]) -> Any:
    """The effective config in MOSN's shape, or one part of it; None for an unknown
    part (``dumped`` is left as it is; secrets are redacted as the answer is written)."""
    servers = dumped.get("servers") or []
    listeners = {lc["name"] or lc["address"]: lc
                 for server in servers for lc in server.get("listeners", [])}
    routers = {rc["router_config_name"]: rc
               for server in servers for rc in server.get("routers", [])}
    clusters = {cc["name"]: cc for cc in dumped.get("cluster_manager", {}).get("clusters", [])}
    # new containers only where parts are left out: ``dumped`` is shared, not copied
    base = {**dumped, "servers": [{k: v for k, v in server.items()
                                   if k not in ("listeners", "routers")} for server in servers]}
    if "cluster_manager" in dumped:
        base["cluster_manager"] = {k: v for k, v in dumped["cluster_manager"].items()
                                   if k != "clusters"}
    if not query:
        return {"mosn_config": base, "listener": listeners, "cluster": clusters,
                "routers": routers}
    (name, values), = query.items()
    parts = {"mosnconfig": base, "alllisteners": listeners, "allclusters": clusters,
             "allrouters": routers}
    if name in parts:
        return parts[name]
    one = {"listener": listeners, "cluster": clusters, "router": routers}.get(name)
    return None if one is None else one.get(values[0])
