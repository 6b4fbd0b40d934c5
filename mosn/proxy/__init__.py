"""The L7 proxy: the ``proxy`` network filter, downstream streams, stream filters, and
what a protocol tells the proxy about its streams."""

from mosn.proxy.config import ProxyConfig
from mosn.proxy.http import HTTP_SEMANTICS, HttpSemantics
from mosn.proxy.observer import StreamObserver
from mosn.proxy.semantics import FRAME_SEMANTICS, ProtocolSemantics
from mosn.proxy.stream import DownstreamStream
from mosn.proxy.stream_filter import (
    LB_METADATA_NAMESPACE,
    FilterStatus,
    Phase,
    StreamFilter,
    route_filter_config,
)
from mosn.proxy.upstream_request import UpstreamRequest

__all__ = ["FRAME_SEMANTICS", "HTTP_SEMANTICS", "LB_METADATA_NAMESPACE", "DownstreamStream",
           "FilterStatus", "HttpSemantics", "Phase", "ProtocolSemantics", "ProxyConfig",
           "StreamFilter", "StreamObserver", "UpstreamRequest", "route_filter_config"]
