"""The L7 proxy: the ``proxy`` network filter, downstream streams, stream filters."""

from mosn.proxy.config import ProxyConfig
from mosn.proxy.observer import StreamObserver
from mosn.proxy.stream import DownstreamStream
from mosn.proxy.stream_filter import (
    LB_METADATA_NAMESPACE,
    FilterStatus,
    Phase,
    StreamFilter,
    route_filter_config,
)

__all__ = ["LB_METADATA_NAMESPACE", "DownstreamStream", "FilterStatus", "Phase", "ProxyConfig",
           "StreamFilter", "StreamObserver", "route_filter_config"]
