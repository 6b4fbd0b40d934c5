"""``/config_dump`` under a control plane, in Envoy's shape (``envoy.admin.v3``)."""

from __future__ import annotations

import time
from typing import Any

from google.protobuf.json_format import MessageToDict

from mosn.xds.resources import CLUSTERS, ENDPOINTS, LISTENERS, ROUTES, SECRETS
from mosn.xds.snapshot import Accepted, Snapshot

ADMIN = "type.googleapis.com/envoy.admin.v3."


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + \
        f".{int(seconds % 1 * 1000):03d}Z"


def _resource(accepted: Accepted) -> dict[str, Any]:
    data = MessageToDict(accepted.message, preserving_proto_field_name=True)
    return {"@type": f"type.googleapis.com/{accepted.message.DESCRIPTOR.full_name}", **data}


def config_dump(snapshot: Snapshot, warming: list[str]) -> list[dict[str, Any]]:
    """Envoy's ``configs`` entries for the dynamic resources: each resource as the
    control plane sent it, with ``version_info`` and ``last_updated``; a listener or
    cluster that waits for its routes, endpoints or secrets is in its warming list."""
    waiting = {line.split(" waits for ")[0] for line in warming}

    def entry(accepted: Accepted) -> dict[str, Any]:
        return {"version_info": accepted.version, "last_updated": _when(accepted.last_updated)}

    listeners, clusters = [], {"dynamic_active_clusters": [], "dynamic_warming_clusters": []}
    for name, a in sorted(snapshot.of(LISTENERS).items()):
        state = "warming_state" if f"Listener {name!r}" in waiting else "active_state"
        listeners.append({"name": name, state: {**entry(a), "listener": _resource(a)}})
    for name, a in sorted(snapshot.of(CLUSTERS).items()):
        key = ("dynamic_warming_clusters" if f"Cluster {name!r}" in waiting
               else "dynamic_active_clusters")
        clusters[key].append({**entry(a), "cluster": _resource(a)})
    return [
        {"@type": ADMIN + "ClustersConfigDump",
         "version_info": snapshot.versions.get(CLUSTERS.url, ""), **clusters},
        {"@type": ADMIN + "ListenersConfigDump",
         "version_info": snapshot.versions.get(LISTENERS.url, ""),
         "dynamic_listeners": listeners},
        {"@type": ADMIN + "RoutesConfigDump", "dynamic_route_configs": [
            {**entry(a), "route_config": _resource(a)}
            for _, a in sorted(snapshot.of(ROUTES).items())]},
        {"@type": ADMIN + "EndpointsConfigDump", "dynamic_endpoint_configs": [
            {**entry(a), "endpoint_config": _resource(a)}
            for _, a in sorted(snapshot.of(ENDPOINTS).items())]},
        {"@type": ADMIN + "SecretsConfigDump", "dynamic_active_secrets": [
            {"name": name, **entry(a), "secret": _resource(a)}
            for name, a in sorted(snapshot.of(SECRETS).items())]},
    ]
