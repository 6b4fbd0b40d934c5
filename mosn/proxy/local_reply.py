"""Replies the proxy makes itself: errors, direct responses, redirects (Envoy's
``LocalReply``). The words are the proxy's; the shape is the protocol's
(:meth:`mosn.proxy.semantics.ProtocolSemantics.local_reply`): plain text for HTTP, a
gRPC status for a gRPC call, the protocol's own error frame for an RPC request (its
codec maps the HTTP-like status, MOSN's ``mapping`` of each protocol)."""

from __future__ import annotations

from mosn.proxy.http import strip_forbidden_length
from mosn.proxy.semantics import ProtocolSemantics
from mosn.stream.types import Headers, RequestHead, ResponseHead

FAILURE_BODY = "upstream connect error or disconnect/reset before headers. reset reason: "
"""Envoy's words for a failure before the response began, followed by the reason."""


def local_reply(semantics: ProtocolSemantics, request: RequestHead | None,
                request_complete: bool, status: int, body: bytes,
                headers: list[tuple[str, str]] | None, content_type: str,
                rpc_status: int | None) -> tuple[ResponseHead, bytes]:
    """The head and body of a local reply to ``request``, as its protocol shapes it;
    ``headers`` (a route's or a filter's) come after the protocol's fields."""
    status, fields, data = semantics.local_reply(request, status, body, content_type,
                                                 rpc_status)
    if not request_complete:
        fields.append(("connection", "close"))  # the rest of the request is not read
    if headers:
        fields += headers
    head = ResponseHead(status, Headers(fields))
    strip_forbidden_length(head)
    return head, data


__all__ = ["FAILURE_BODY", "local_reply"]
