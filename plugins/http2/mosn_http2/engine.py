"""The HTTP/2 engines behind the codecs, and which one runs.

An engine is the protocol's state machine for one connection, sans-IO: bytes from
the peer in (``receive``), bytes for the peer out (``send``), and calls that
submit heads, body, trailers and resets on streams. Two implement the same
interface:

- ``nghttp2`` (``engine_nghttp2``): libnghttp2, the HTTP/2 library of curl, Apache
  httpd and nghttpx, through a small C layer compiled with cffi when the plugin is
  installed. The default wherever it was built.
- ``python`` (``engine_h2``): h2, hpack and hyperframe, in pure Python: the
  fallback where no compiler or libnghttp2 headers were there at install, or where
  ``MOSN_NO_EXTENSIONS=1`` or ``extend_config.Http2.engine: python`` asks for it.

What an engine reports, it reports as events, each a call ``handlers[kind](stream_id,
end_stream, value)`` on the codec's table (the kinds are in ``wire``):

========== ==================================================================
REQUEST     a request head (server): ``value`` is its fields as a flat list of
            text, pseudo-header fields in fixed places (see ``frames``)
RESPONSE    a final response head (client), as REQUEST; interim (1xx) ones are
            not reported
TRAILERS    trailers, as REQUEST (they end the stream)
DATA        body bytes (``end_stream`` may come with an empty ``value``)
RESET       the peer reset the stream: ``value`` is its error code
CLOSED      the engine closed the stream with an error code (``value``): a
            malformed message (PROTOCOL_ERROR), or a request the peer never
            took (REFUSED_STREAM: sent after its GOAWAY, or never sent)
GOAWAY      the peer's GOAWAY: ``stream_id`` is its last stream id, ``value``
            its error code
SETTINGS    the peer's SETTINGS were applied
PING_ACK    the peer answered a PING
DRAINED     a stream that ``data`` said was above the buffer limit is at half
            of it again
========== ==================================================================

Receiving, an engine acknowledges DATA (reopens the flow-control windows) as soon
as it is reported, unless the stream is ``pause``\\ d; then it waits until the
stream is resumed. Sending, an engine queues body bytes per stream and sends them
as the peer's windows allow; ``data`` says when a stream holds more than
``stream_buffer_limit`` bytes.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol as TypingProtocol

from mosn.extensions import NO_EXTENSIONS_VARIABLE, extensions_enabled
from mosn_http2.engine_h2 import H2Engine
from mosn_http2.wire import Handler

NATIVE_MODULE = "mosn_http2._nghttp2"
"""The compiled module (engine_nghttp2_build.MODULE)."""

try:
    from mosn_http2.engine_nghttp2 import Nghttp2Engine
    _NATIVE_MISSING: str | None = None
except ImportError as _exc:
    if _exc.name != NATIVE_MODULE:
        raise
    # Installed without a C compiler or libnghttp2's headers (or its library gone).
    Nghttp2Engine = None  # type: ignore[assignment, misc]
    _NATIVE_MISSING = f"not built when the plugin was installed ({_exc})"

NATIVE = "nghttp2"
PYTHON = "python"
AUTO = "auto"
ENGINES = (AUTO, NATIVE, PYTHON)


class Engine(TypingProtocol):
    """What the codecs drive (see the module docstring)."""

    def receive(self, data: bytes, handlers: list[Handler]) -> bool:
        """Read ``data``, reporting events; False if the connection has to end now
        (its GOAWAY, if any, is queued: ``send`` it, then close)."""

    def send(self) -> bytes:
        """What is to be written to the peer now."""

    def report(self, handlers: list[Handler]) -> None:
        """Report the events sending caused (DRAINED, CLOSED)."""

    def request(self, pseudo: list[str], items: list[tuple[str, str]], end_stream: bool) -> int:
        """A request (client): its pseudo-header fields (``[":method", "GET", ...]``)
        and regular ones; the new stream's id, or a negative number if it cannot be
        opened (after a GOAWAY)."""

    def respond(self, stream_id: int, status: int, items: list[tuple[str, str]],
                end_stream: bool) -> int:
        """A response (server) on ``stream_id``; negative if the stream is gone."""

    def data(self, stream_id: int, data: bytes, end_stream: bool) -> bool:
        """Queue body bytes; True if the stream now holds more than the buffer limit."""

    def trailers(self, stream_id: int, items: list[tuple[str, str]]) -> None: ...
    def reset(self, stream_id: int, code: int) -> None: ...
    def pause(self, stream_id: int, paused: bool) -> None: ...

    def local_closed(self, stream_id: int) -> bool:
        """True once this side's END_STREAM on the stream went out."""

    def goaway(self, code: int) -> None:
        """NO_ERROR: GOAWAY naming the last stream taken; the streams up to it
        finish. Another code: the connection ends with it."""

    def ping(self) -> None: ...
    def remote_setting(self, setting: int) -> int: ...

    def finished(self) -> bool:
        """True when the connection has nothing more to do (a GOAWAY sent or
        received and no stream left, or a connection error sent)."""

    @property
    def failed(self) -> bool:
        """True once a GOAWAY with an error code ended the connection."""

    def close(self) -> None:
        """The connection is gone: free what the engine holds."""


def native_error() -> str | None:
    """Why the native engine cannot run here, or None if it can."""
    if not extensions_enabled():
        return f"extensions are turned off ({NO_EXTENSIONS_VARIABLE})"
    return _NATIVE_MISSING


def chosen_engine(name: str) -> str:
    """The engine ``name`` selects here (``auto``: the native one where it can run)."""
    if name == AUTO:
        return NATIVE if native_error() is None else PYTHON
    return name


def engine_factory(name: str) -> type:
    """The engine class ``name`` selects (``auto``: the native one where it can
    run); ValueError if the native one is asked for and cannot run."""
    if name == PYTHON or (name == AUTO and native_error() is not None):
        return H2Engine
    reason = native_error()
    if reason is not None:
        raise ValueError(f"the nghttp2 engine cannot run: {reason}")
    return Nghttp2Engine  # type: ignore[return-value]

