"""The client a config's ``dynamic_resources`` asks for, and where it connects."""

from __future__ import annotations

from typing import Any

from mosn.config.bootstrap import ApiConfigSourceConfig
from mosn.config.models import MosnConfig
from mosn.xds.client import AdsClient, Offer, Subscriber
from mosn.xds.resources import CLUSTERS, ENDPOINTS, LISTENERS, ROUTES, SECRETS, ResourceType
from mosn.xds.rest import RestClient
from mosn.xds.snapshot import Snapshot
from mosn.xds.stats import XdsStats


def subscribed_types(config: MosnConfig) -> list[ResourceType]:
    """CDS brings EDS and SDS with it; LDS brings RDS and SDS."""
    dynamic = config.dynamic_resources
    assert dynamic is not None
    types: list[ResourceType] = []
    if dynamic.cds_config is not None:
        types += [CLUSTERS, ENDPOINTS, SECRETS]
    if dynamic.lds_config is not None:
        types += [LISTENERS, ROUTES, SECRETS]
    return list(dict.fromkeys(types))


def control_plane_address(config: MosnConfig, api: ApiConfigSourceConfig) -> str:
    """``host:port`` of the control plane: a ``google_grpc`` target, or the first host
    of the cluster an ``envoy_grpc`` (or REST ``cluster_names``) names."""
    if api.grpc_services and api.grpc_services[0].google_grpc is not None:
        return api.grpc_services[0].google_grpc.target_uri
    if api.grpc_services:
        name = api.grpc_services[0].envoy_grpc.cluster_name  # type: ignore[union-attr]
    else:
        name = api.cluster_names[0]
    cluster = next(c for c in config.cluster_manager.clusters if c.name == name)
    if not cluster.hosts:
        raise ValueError(f"cluster {name!r} of the control plane lists no hosts")
    return str(cluster.hosts[0].address)


def build_client(config: MosnConfig, offer: Offer, stats: XdsStats | None = None,
                 snapshot: Snapshot | None = None) -> Subscriber:
    dynamic = config.dynamic_resources
    assert dynamic is not None
    api = dynamic.api()
    target = control_plane_address(config, api)
    common: dict[str, Any] = {"node": config.node, "types": subscribed_types(config),
                              "stats": stats, "snapshot": snapshot}
    if api.api_type == "REST":
        return RestClient(f"http://{target}", offer, refresh_delay=api.refresh_delay,
                          request_timeout=api.request_timeout, **common)
    metadata = [(h.key.lower(), h.value) for s in api.grpc_services for h in s.initial_metadata]
    return AdsClient(target, offer, delta=api.api_type == "DELTA_GRPC", metadata=metadata,
                     **common)
