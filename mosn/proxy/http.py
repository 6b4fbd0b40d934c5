"""HTTP's semantics for the proxy (HTTP/1.1 and HTTP/2, gRPC over either): what the
``Http1`` and ``Http2`` protocols name as their ``semantics``.

On the way in, a request's path is normalized (:mod:`mosn.proxy.path`),
connection-specific fields are dropped and the forwarding fields added
(``x-request-id``, ``x-forwarded-for``, ``x-forwarded-proto``; ``grpc-timeout`` read),
as Envoy's HTTP connection manager does for every HTTP codec. The proxy's own replies
are plain text, or to a gRPC call a gRPC status (:mod:`mosn.proxy.grpc`). A response
from upstream loses its connection-specific fields and, where it may not have one,
its ``content-length``; a 101 opens a tunnel.
"""

from __future__ import annotations

import functools
import random
from typing import TYPE_CHECKING, Callable

from mosn.proxy import grpc
from mosn.proxy.observer import FAILED_PATH_NORMALIZATION, REDIRECTED_WITH_NORMALIZED_PATH
from mosn.proxy.path import PathAction, normalize
from mosn.proxy.semantics import ProtocolSemantics
from mosn.stream.types import Headers, RequestHead, ResponseHead

if TYPE_CHECKING:
    from mosn.proxy.stream import DownstreamStream

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
    "upgrade", "trailer", "proxy-authenticate", "proxy-authorization",
})
"""Connection-specific fields (RFC 9110 7.6.1) a proxy must not forward; ``te:
trailers`` excepted (see ``strip_hop_by_hop``)."""

_UPGRADE_FIELDS = frozenset({"connection", "upgrade"})
"""Kept on a request that asks for an upgrade: the upstream is asked for it too."""

_FORWARDING_FIELDS = frozenset({
    "x-request-id", "x-forwarded-for", "x-forwarded-proto", "grpc-timeout"})
"""The request fields the proxy reads or adds to before routing."""
_NO_FIELDS: frozenset[str] = frozenset()
_CONTINUE = PathAction.CONTINUE

_UUID4_CLEAR = ~((0xF << 76) | (0x3 << 62))
_UUID4_SET = (0x4 << 76) | (0x2 << 62)


def request_id() -> str:
    """A random (version 4) UUID for ``x-request-id``, as Envoy makes one. Drawn from
    :mod:`random` (reseeded in each forked worker): ids need to be unique, not secret,
    and ``uuid.uuid4()`` costs a system call per request."""
    h = "%032x" % (random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def strip_hop_by_hop(headers: Headers, keep_upgrade: bool) -> None:
    items = headers.items()
    found = False
    named: set[str] | None = None  # what ``connection`` names beyond HOP_BY_HOP
    for k, v in items:
        if k in HOP_BY_HOP:
            found = True
            if k == "connection":
                for name in v.split(","):
                    name = name.strip().lower()
                    if name not in HOP_BY_HOP:
                        if named is None:
                            named = set()
                        named.add(name)
    if not found:  # no connection-specific field, so no ``connection`` naming others either
        return
    drop = HOP_BY_HOP if named is None else HOP_BY_HOP | named
    if keep_upgrade:
        drop = drop - _UPGRADE_FIELDS
        if not any(k in drop for k, _ in items):
            return
    # ``te: trailers`` says the client takes trailers, which gRPC needs end to end
    # over HTTP/2 (the one ``te`` HTTP/2 allows, RFC 9113 8.2.2): kept, as Envoy does.
    headers.retain(lambda k, v: k not in drop or (k == "te" and v.strip().lower() == "trailers"))


def _forwarding_fields(headers: Headers, stop_at: frozenset[str] = HOP_BY_HOP,
                       ) -> dict[str, str] | None:
    """One pass over a request's fields: the first value of each of
    ``_FORWARDING_FIELDS`` present, or None at a field of ``stop_at`` (a
    connection-specific one: those are stripped before anything is read)."""
    seen: dict[str, str] = {}
    for k, v in headers.items():
        if k in _FORWARDING_FIELDS:
            if k not in seen:
                seen[k] = v
        elif k in stop_at:
            return None
    return seen


def strip_forbidden_length(head: ResponseHead) -> None:
    """A 1xx or 204 response has no content and must not say it has a length (RFC
    9110 8.6): a ``content-length`` on one, from an upstream or a config, is dropped."""
    if head.status < 200 or head.status == 204:
        head.headers.remove("content-length")


class HttpSemantics(ProtocolSemantics):
    """HTTP's answers to the proxy (see the module's docstring)."""

    __slots__ = ()

    def prepare_request(self, stream: "DownstreamStream", head: RequestHead,
                        ) -> Callable[[], None] | None:
        action = _CONTINUE
        if head.method != "CONNECT":
            ctx = stream.ctx
            head.path, action = normalize(head.path, ctx.normalize_path, ctx.merge_slashes,
                                          ctx.escaped_slashes)
        headers = head.headers
        seen = _forwarding_fields(headers)
        if seen is None:  # a connection-specific field: stripped first, then looked at again
            stream.upgrade = "upgrade" in headers
            strip_hop_by_hop(headers, stream.upgrade)
            seen = _forwarding_fields(headers, _NO_FIELDS)
            assert seen is not None
        if "x-request-id" not in seen:
            headers.add("x-request-id", request_id())
        peer = stream.conn.remote_address
        if isinstance(peer, tuple):
            xff = seen.get("x-forwarded-for")
            if xff is None:
                headers.add("x-forwarded-for", peer[0])
            else:  # every earlier one replaced by one at the end, as ``set`` does
                headers.set("x-forwarded-for", f"{xff}, {peer[0]}" if xff else peer[0])
        if "x-forwarded-proto" not in seen:
            headers.add("x-forwarded-proto", head.scheme)
        grpc_timeout = seen.get("grpc-timeout")
        if grpc_timeout is not None and head.timeout is None:
            head.timeout = grpc.parse_timeout(grpc_timeout)
        if action is _CONTINUE:
            return None
        return functools.partial(_refuse_path, stream, action)

    def local_reply(self, request: RequestHead | None, status: int, body: bytes,
                    content_type: str, rpc_status: int | None,
                    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Plain text, or to a gRPC call a trailers-only gRPC error: ``rpc_status``,
        or the one ``status`` maps to, with the body as its message."""
        if request is not None and grpc.is_grpc(request.headers):
            if rpc_status is None:
                rpc_status = grpc.grpc_status(status)
            message = body.decode("utf-8", "replace").strip()
            return 200, grpc.trailers_only(rpc_status, message), b""
        return status, [("content-type", content_type),
                        ("content-length", str(len(body)))], body

    def prepare_response(self, head: ResponseHead) -> None:
        strip_forbidden_length(head)
        if head.status != 101:
            strip_hop_by_hop(head.headers, False)

    def opens_tunnel(self, head: ResponseHead) -> bool:
        return head.status == 101

    def head_bytes(self, head: ResponseHead) -> int:
        return 0


def _refuse_path(stream: "DownstreamStream", action: PathAction) -> None:
    """A path that normalization refused (400), or that the client is asked to
    request again unescaped (307 to the normalized path; a gRPC client cannot follow
    a redirect, so it gets the 400's INTERNAL, as from Envoy)."""
    request = stream.request
    assert request is not None
    if action is PathAction.REDIRECT and not grpc.is_grpc(request.headers):
        stream.ctx.count(REDIRECTED_WITH_NORMALIZED_PATH)
        stream.send_local_reply(307, "", [("location", request.path)])
    else:
        stream.ctx.count(FAILED_PATH_NORMALIZATION)
        stream.send_local_reply(400, "path normalization failed\n")


HTTP_SEMANTICS = HttpSemantics()
"""What the ``Http1`` and ``Http2`` protocols name as their ``semantics``."""

__all__ = ["HOP_BY_HOP", "HTTP_SEMANTICS", "HttpSemantics", "request_id",
           "strip_forbidden_length", "strip_hop_by_hop"]
