"""A stream's stream filters (Envoy's ``FilterManager``): built per stream from the
listener's factories, sorted by phase, run on the request phase by phase (each may
stop the request and go on later) and on the response head.

A proxy with no stream filters makes no :class:`FilterManager`: its streams go
straight from the request head to the route, the host and upstream.
"""

from __future__ import annotations

import logging
import operator
from typing import TYPE_CHECKING, Any, Callable, Sequence

from mosn.network.filter import FilterStatus
from mosn.proxy.stream_filter import Phase, StreamFilter
from mosn.stream.types import ResponseHead

if TYPE_CHECKING:
    from mosn.proxy.stream import DownstreamStream

log = logging.getLogger("mosn.proxy")
_phase_of = operator.attrgetter("phase")
_STOP = FilterStatus.STOP


class _Broken(StreamFilter):
    """Stands for the filters of a stream whose factory raised: fails the request."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def on_request(self, stream: Any) -> FilterStatus:
        raise self.error


def make_filters(factories: Sequence[Callable[[], Any]]) -> list[StreamFilter]:
    """One stream's filters, by phase (within one, in the config's order). A factory
    that raises fails the stream's request, as any filter error."""
    try:
        filters: list[StreamFilter] = []
        for make in factories:
            made = make()
            if type(made) is tuple:  # one config's filters at several phases (dsl)
                filters += made
            else:
                filters.append(made)
    except Exception as exc:
        filters = [_Broken(exc)]
    if len(filters) > 1:
        filters.sort(key=_phase_of)
    return filters


class FilterManager:
    """The filters of one stream and how far the request has gone through them."""

    __slots__ = ("filters", "index")

    def __init__(self, filters: list[StreamFilter]) -> None:
        self.filters = filters
        self.index = 0
        """The next filter to run on the request."""

    def run_request(self, stream: "DownstreamStream", phase: Phase) -> bool:
        """Run the request through the filters of ``phase`` not run yet; False when
        one stopped it (it calls ``stream.continue_request()`` later, or answered) or
        failed (the stream is answered)."""
        filters = self.filters
        while self.index < len(filters):
            f = filters[self.index]
            if f.phase is not phase:
                return True
            self.index += 1
            try:
                status = f.on_request(stream)
            except Exception:
                stream.filter_failed(f, "on_request")
                return False
            if status is _STOP or stream.done:
                return False
        return True

    def run_response(self, stream: "DownstreamStream", head: ResponseHead) -> bool:
        """Each filter's ``on_response``; False when one failed (nothing of the
        response was sent: the stream is answered 500 instead)."""
        for f in self.filters:
            try:
                f.on_response(stream, head)
            except Exception:
                stream.filter_failed(f, "on_response")
                return False
        return True


__all__ = ["FilterManager", "make_filters"]
