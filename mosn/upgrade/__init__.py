"""Changing what a running mosn serves, and handing it over to a new mosn process.

The managers (:mod:`mosn.upgrade.managers`) are the one way to add, update (with
draining) and remove listeners, clusters (and a cluster's endpoints) and routes while
mosn serves; a config reload applies a new config through them, and the control
plane applies its resources the same way (docs/upgrade.md, "The managers")::

    listeners.add_or_update(listener_config)   # "added" | "updated" | "unchanged"
    listeners.remove("name")                   # True | False
    clusters.add_or_update(cluster_config)
    clusters.update_hosts("name", [Host(...)])
    clusters.remove("name")
    routers.add_or_update(router_configuration)
    routers.remove("router_config_name")
    apply_in_place(new_config, listeners, clusters, routers)
"""

from mosn.router import Routers
from mosn.upgrade.managers import (
    ListenerManager,
    RouteManager,
    StartError,
    apply_in_place,
    drain,
    in_place_blockers,
    listener_name,
    socket_key,
)
from mosn.upstream.cluster import ClusterManager, Host

__all__ = [
    "ClusterManager",
    "Host",
    "ListenerManager",
    "RouteManager",
    "Routers",
    "StartError",
    "apply_in_place",
    "drain",
    "in_place_blockers",
    "listener_name",
    "socket_key",
]
