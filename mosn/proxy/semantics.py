"""What a protocol tells the protocol-neutral proxy about its streams.

The proxy carries HTTP/1.1, HTTP/2, gRPC and the RPC protocols through one path
(:mod:`mosn.proxy.stream`); where they differ, it asks the protocol instead of
testing which one it is (MOSN keeps the same split: ``pkg/protocol/<name>`` maps
its own status codes and headers, the proxy in ``pkg/proxy`` does not look). A
protocol object (what a ``mosn_protocols`` extension's factory returns) names its
semantics in an optional ``semantics`` attribute; one without is
:data:`FRAME_SEMANTICS`: its messages are opaque frames, forwarded as they are.

Each method is called once per request or response on the proxy's path: it must be
cheap and must not raise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from mosn.stream.types import RequestHead, ResponseHead

if TYPE_CHECKING:
    from mosn.proxy.stream import DownstreamStream


class ProtocolSemantics:
    """The proxy's view of one protocol; this base is a protocol of opaque frames
    (the RPC engine's: bolt, Dubbo, declared codecs). Its requests keep their heads
    as they came; its local replies are a status and a text, which the protocol's
    server stream maps to its own status code (the codec's ``error_status``, from
    its ``mapping.py``), and its response heads are forwarded as they are."""

    __slots__ = ()

    def prepare_request(self, stream: "DownstreamStream", head: RequestHead,
                        ) -> Callable[[], None] | None:
        """The proxy's changes to a request's head before any filter or route sees it
        (an HTTP path normalized, forwarding fields added). None to go on; or, for a
        request refused, what answers it (the proxy calls it after the observers saw
        the request)."""
        return None

    def local_reply(self, request: RequestHead | None, status: int, body: bytes,
                    content_type: str, rpc_status: int | None,
                    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """A reply the proxy makes itself (an error, a direct response, a redirect)
        for HTTP-like ``status`` with ``body``: the status, fields and body to send,
        shaped by the protocol. ``rpc_status`` is the status an RPC-over-HTTP
        protocol (gRPC) should answer with instead of the one ``status`` maps to."""
        return status, [("content-type", content_type),
                        ("content-length", str(len(body)))], body

    def prepare_response(self, head: ResponseHead) -> None:
        """The proxy's changes to a response head from upstream before it is forwarded
        (HTTP: connection-specific fields dropped)."""

    def opens_tunnel(self, head: ResponseHead) -> bool:
        """True when the response turns the stream into a tunnel with no response end
        to wait for (HTTP's 101): the route's timeout stops."""
        return False

    def head_bytes(self, head: ResponseHead) -> int:
        """Bytes of a response head counted as response body in the access log: an
        RPC response is forwarded whole as its frame."""
        frame: Any = head.frame
        return len(frame.data) if frame is not None else 0


FRAME_SEMANTICS = ProtocolSemantics()
"""Of a protocol with no ``semantics`` of its own."""


def semantics_of(protocol: Any) -> ProtocolSemantics:
    """The semantics a protocol object names, else :data:`FRAME_SEMANTICS`."""
    semantics = getattr(protocol, "semantics", None)
    return semantics if isinstance(semantics, ProtocolSemantics) else FRAME_SEMANTICS


__all__ = ["FRAME_SEMANTICS", "ProtocolSemantics", "semantics_of"]
