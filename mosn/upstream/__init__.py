"""Upstream: hosts, clusters, the cluster manager, load balancers, health checking,
outlier detection, circuit breakers and host discovery (see docs/upstream.md)."""

from mosn.upstream.cluster import Cluster, ClusterManager, Host, UpstreamConnection
from mosn.upstream.health import HealthCheckFailed, HeartbeatChecker
from mosn.upstream.lb import LbContext

__all__ = [
    "Cluster",
    "ClusterManager",
    "HealthCheckFailed",
    "HeartbeatChecker",
    "Host",
    "LbContext",
    "UpstreamConnection",
]
