"""The ``payload_limit`` stream filter: MOSN's request size limit
(``pkg/filter/stream/payloadlimit``).

A request whose body is larger than ``max_entity_size`` bytes is answered
``http_status`` (413 by default) before it goes upstream: an HTTP request that says
its length (``content-length``) at once; one that does not (chunked, HTTP/2 without
``content-length``) as soon as the bytes received pass the limit (the proxy's own
413, as ``max_request_bytes``); an RPC call by its frame's size. gRPC callers get
RESOURCE_EXHAUSTED; RPC callers the protocol's status for ``http_status``.
"""

from __future__ import annotations

from typing import Any, Callable

from pydantic import Field

from mosn.config.base import Model
from mosn.network.filter import FilterStatus
from mosn.plugins import BuildContext, Extension, hookimpl
from mosn.proxy.stream_filter import Phase, StreamFilter

PAYLOAD_TOO_LARGE = 413
GRPC_RESOURCE_EXHAUSTED = 8
"""gRPC's status for a message over a size limit (grpc/doc/statuscodes.md)."""


class PayloadLimitConfig(Model):
    """MOSN's config: ``max_entity_size`` (bytes; 0 turns the filter off) and the
    status to answer."""

    max_entity_size: int = Field(default=0, ge=0)
    http_status: int = Field(default=PAYLOAD_TOO_LARGE, ge=200, le=599)


class PayloadLimit(StreamFilter):
    """Runs after routing, so its limit holds over a route's ``max_request_bytes``."""

    phase = Phase.AFTER_ROUTE

    def __init__(self, config: PayloadLimitConfig) -> None:
        self.limit = config.max_entity_size
        self.status = config.http_status

    def on_request(self, stream: Any) -> FilterStatus:
        if not self.limit:
            return FilterStatus.CONTINUE
        head = stream.request
        if head.frame is not None:
            size = len(head.frame.data)
        else:
            length = head.headers.get("content-length")
            size = int(length) if length is not None and length.isdigit() else 0
            if stream.limit_request_body(self.limit):  # held meanwhile, already past it
                size = stream.bytes_received
        if size > self.limit:
            stream.send_local_reply(self.status, "request entity too large\n",
                                    grpc_status=GRPC_RESOURCE_EXHAUSTED)
            return FilterStatus.STOP
        return FilterStatus.CONTINUE


def build(config: PayloadLimitConfig, context: BuildContext) -> Callable[[], StreamFilter]:
    flt = PayloadLimit(config)
    return lambda: flt


@hookimpl
def mosn_stream_filters() -> list[Extension]:
    return [Extension("payload_limit", build, PayloadLimitConfig,
                      description="MOSN's request size limit")]
