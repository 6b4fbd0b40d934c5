"""Upstream: hosts, clusters, the cluster manager and load balancers."""

from mosn.upstream.cluster import Cluster, ClusterManager, Host, UpstreamConnection

__all__ = ["Cluster", "ClusterManager", "Host", "UpstreamConnection"]
