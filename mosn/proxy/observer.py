"""Stream observers: what stats, access logs and tracing learn of each L7 stream.

An observer is a plain object built once per listener (before any worker forks) and
handed to the ``proxy`` filter through :class:`mosn.plugins.BuildContext`. The
proxy calls it at four points of every downstream stream (HTTP, HTTP/2, gRPC and
RPC alike); it must be cheap and must not raise. Every method has a default that
does nothing, so an observer overrides only what it needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from mosn.proxy.stream import DownstreamStream
    from mosn.proxy.upstream_request import UpstreamRequest


# Listener events (``on_listener_event``), named by their stats (Envoy's names).
REQUEST_HEADERS_TIMEOUT = "downstream_rq_header_timeout"
MAX_CONNECTION_DURATION = "downstream_cx_max_duration_reached"
FAILED_PATH_NORMALIZATION = "downstream_rq_failed_path_normalization"
REDIRECTED_WITH_NORMALIZED_PATH = "downstream_rq_redirected_with_normalized_path"
REFUSED_AFTER_GOAWAY = "downstream_rq_refused_after_goaway"
LISTENER_EVENTS = (REQUEST_HEADERS_TIMEOUT, MAX_CONNECTION_DURATION,
                   FAILED_PATH_NORMALIZATION, REDIRECTED_WITH_NORMALIZED_PATH,
                   REFUSED_AFTER_GOAWAY)


class StreamObserver:
    def on_request(self, stream: "DownstreamStream") -> None:
        """The request head arrived (``stream.request``), before any stream filter or
        route ran; the headers may still be changed (a tracer reads or adds its
        context here)."""

    def on_upstream_request(self, stream: "DownstreamStream",
                            upstream: "UpstreamRequest") -> None:
        """A try upstream is about to start (the first, or a retry): ``stream.host``
        is chosen and ``stream.request`` is what will be sent."""

    def on_upstream_end(self, stream: "DownstreamStream", upstream: "UpstreamRequest") -> None:
        """A try upstream ended (response complete, failed, reset, or replaced by a
        retry); ``upstream.response_code`` is the status it got, 0 if none."""

    def on_stream_end(self, stream: "DownstreamStream") -> None:
        """The downstream stream ended (``stream.response_code``, ``.response_flags``,
        ``.start_time``, ``.bytes_received``, ``.bytes_sent`` are final)."""

    def on_listener_event(self, event: str) -> None:
        """Something the proxy did on the listener beside a stream's own outcome, one
        of :data:`LISTENER_EVENTS`: a request head took longer than
        ``request_headers_timeout``, a connection reached ``max_connection_duration``,
        a path failed normalization or was redirected to its normalized form, a
        stream was refused for coming after the connection's last GOAWAY."""


class ObserverHooks:
    """A listener's observers' methods by point, each tuple holding only the observers
    that override that method: the proxy calls these, and a point no observer uses
    costs a request nothing (a call to a method that does nothing costs ~0.1 µs)."""

    __slots__ = ("request", "upstream_request", "upstream_end", "stream_end", "listener_event")

    def __init__(self, observers: "Iterable[StreamObserver]") -> None:
        observers = tuple(observers)
        for point in self.__slots__:
            name = f"on_{point}"
            base = getattr(StreamObserver, name)
            setattr(self, point, tuple(getattr(o, name) for o in observers
                                       if getattr(type(o), name) is not base))


__all__ = [
    "FAILED_PATH_NORMALIZATION", "LISTENER_EVENTS", "MAX_CONNECTION_DURATION",
    "ObserverHooks", "REDIRECTED_WITH_NORMALIZED_PATH", "REFUSED_AFTER_GOAWAY",
    "REQUEST_HEADERS_TIMEOUT", "StreamObserver",
]
