"""The resource types mosn subscribes to: type URLs, messages and translators."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.message import DecodeError, Message

from mosn.xds.cluster import cluster, load_assignment
from mosn.xds.fields import Refused
from mosn.xds.listener import listener
from mosn.xds.route import route_configuration
from mosn.xds.tls import secret

TYPE_PREFIX = "type.googleapis.com/"


@dataclass(frozen=True)
class ResourceType:
    short: str
    """Envoy's stat and ``/config_dump`` name: ``lds``, ``cds`` ..."""
    url: str
    message: type[Message]
    translate: Callable[[Any], Any]
    wildcard: bool
    """Subscribed as a whole (LDS, CDS), not by name (RDS, EDS, SDS)."""


LISTENERS = ResourceType("lds", TYPE_PREFIX + "envoy.config.listener.v3.Listener",
                         listener_pb2.Listener, listener, True)
CLUSTERS = ResourceType("cds", TYPE_PREFIX + "envoy.config.cluster.v3.Cluster",
                        cluster_pb2.Cluster, cluster, True)
ROUTES = ResourceType("rds", TYPE_PREFIX + "envoy.config.route.v3.RouteConfiguration",
                      route_pb2.RouteConfiguration, route_configuration, False)
ENDPOINTS = ResourceType("eds", TYPE_PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment",
                         endpoint_pb2.ClusterLoadAssignment, load_assignment, False)
SECRETS = ResourceType("sds", TYPE_PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret",
                       secret_pb2.Secret, secret, False)
TYPES = (CLUSTERS, ENDPOINTS, LISTENERS, ROUTES, SECRETS)
"""In Envoy's order of subscription: clusters before their endpoints, listeners
before their routes (a listener warms until its routes arrive)."""
BY_URL = {t.url: t for t in TYPES}


def resource_name(message: Message) -> str:
    """A resource's name (a load assignment's is its ``cluster_name``)."""
    if isinstance(message, endpoint_pb2.ClusterLoadAssignment):
        return message.cluster_name
    return message.name  # type: ignore[attr-defined, no-any-return]


def unpack(kind: ResourceType, packed: AnyMessage) -> Message:
    """A resource from its ``Any``; :class:`Refused` when it is of another type or
    does not decode."""
    if packed.type_url != kind.url:
        raise Refused([f"a resource of type {packed.type_url!r} in a {kind.url} response"])
    message = kind.message()
    try:
        packed.Unpack(message)
    except DecodeError as exc:
        raise Refused([f"a {kind.message.DESCRIPTOR.name} that does not decode: {exc}"]) from None
    return message
