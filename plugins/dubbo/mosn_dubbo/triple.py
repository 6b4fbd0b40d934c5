"""Dubbo 3's Triple protocol: Dubbo calls as gRPC over HTTP/2, served by the Http2
plugin; this stream filter gives them Dubbo's routing keys, so one route table routes
Dubbo 2 and Triple calls alike (``{type: dubbo_triple}`` in a listener's
``stream_filters``).

A Triple call is a gRPC call (``POST /{interface}/{method}``, ``content-type:
application/grpc[+proto|+json]``) with Dubbo's metadata in headers (Dubbo's
``TripleHeaderEnum``): ``tri-service-version``, ``tri-service-group``,
``tri-consumer-appname``, ``tri-req-id``. Before routing the filter sets, when the
request has none of its own: ``service`` and ``interface`` (the path's first part),
``method`` (its second), ``version`` and ``group`` (from the ``tri-`` headers) — the
names the Dubbo 2 codec gives the same fields. A request that is neither gRPC nor
carries a ``tri-`` header is left alone. The headers go upstream with the call (gRPC
servers, Dubbo's among them, ignore headers they do not know).
"""

from __future__ import annotations

from typing import Any, Callable

from mosn.config.base import Model
from mosn.plugins import BuildContext
from mosn.proxy import FilterStatus, Phase, StreamFilter

TRI_VERSION = "tri-service-version"
TRI_GROUP = "tri-service-group"
TRI_HEADERS = (TRI_VERSION, TRI_GROUP, "tri-consumer-appname", "tri-req-id")
"""Headers only a Triple client sends (Dubbo's ``TripleHeaderEnum``)."""
GRPC_CONTENT_TYPE = "application/grpc"
"""gRPC's content type, alone or with a ``+codec`` or parameters."""


class TripleConfig(Model):
    """No settings: the filter only reads what a Triple call carries."""


class TripleRouting(StreamFilter):
    """Stateless: one instance serves every stream of a listener."""

    phase = Phase.BEFORE_ROUTE

    def on_request(self, stream: Any) -> FilterStatus:
        head = stream.request
        if head.frame is not None:
            return FilterStatus.CONTINUE  # an RPC frame already has its routing keys
        headers = head.headers
        if not _is_grpc(headers.get("content-type", "")) and not any(
                name in headers for name in TRI_HEADERS):
            return FilterStatus.CONTINUE
        service, method = _service_and_method(head.path)
        if not service:
            return FilterStatus.CONTINUE
        for name, value in (("service", service), ("interface", service), ("method", method),
                            ("version", headers.get(TRI_VERSION, "")),
                            ("group", headers.get(TRI_GROUP, ""))):
            if value and name not in headers:
                headers.set(name, value)
        return FilterStatus.CONTINUE


def _is_grpc(content_type: str) -> bool:
    return content_type.split(";", 1)[0].split("+", 1)[0].strip() == GRPC_CONTENT_TYPE


def _service_and_method(path: str) -> tuple[str, str]:
    """``/{interface}/{method}`` (a query string, if any, is not part of either)."""
    parts = path.split("?", 1)[0].split("/")
    if len(parts) != 3 or parts[0]:
        return "", ""
    return parts[1], parts[2]


def build(config: TripleConfig, context: BuildContext) -> Callable[[], StreamFilter]:
    routing = TripleRouting()
    return lambda: routing
