"""The Http2 protocol's config (``extend_config.Http2`` of a ``proxy`` filter) and the
plain limits object the codecs read.

The SETTINGS values are advertised to every peer, downstream and upstream alike, and
enforced on what the peer sends (RFC 9113 6.5.2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from mosn.config.base import Model
from mosn.config.types import Duration
from mosn_http2.engine import AUTO, NATIVE, native_error

MIN_MAX_FRAME_SIZE = 16384
"""The smallest SETTINGS_MAX_FRAME_SIZE a peer may advertise (RFC 9113 6.5.2)."""
MAX_MAX_FRAME_SIZE = 16777215
"""The largest frame payload HTTP/2 can express (2^24-1, RFC 9113 6.5.2)."""
MAX_WINDOW_SIZE = 2**31 - 1
"""The largest flow-control window HTTP/2 allows (RFC 9113 6.9.1)."""

DEFAULT_MAX_CONCURRENT_STREAMS = 1024
"""Streams a peer may have open on one connection; the same as the upstream pool's
streams per connection, so a mosn in front of a mosn never refuses its streams."""
DEFAULT_MAX_HEADER_LIST_SIZE = 60 * 1024
"""Bytes of a decoded header block (RFC 9113 6.5.2 size: names + values + 32 per
field); Envoy's default ``max_request_headers_kb``."""
DEFAULT_MAX_FRAME_SIZE = MIN_MAX_FRAME_SIZE
"""Largest frame payload accepted; the protocol's default (a larger one saves little
on a body and lets a peer make the proxy hold bigger frames)."""
DEFAULT_INITIAL_WINDOW_SIZE = 256 * 1024
"""Bytes a peer may send on one stream before the proxy acknowledges them: enough to
keep a LAN link busy, small enough that a paused stream holds little."""
DEFAULT_CONNECTION_WINDOW_SIZE = 4 * 1024 * 1024
"""Bytes a peer may send on a whole connection unacknowledged: sixteen full stream
windows, so a few paused streams never stall the others."""
DEFAULT_STREAM_BUFFER_LIMIT = 256 * 1024
"""Bytes of one stream waiting for the peer's flow-control window before its source is
paused (the other side stops acknowledging); resumed at half."""
DEFAULT_IDLE_TIMEOUT = 3600.0
"""Seconds a connection may carry no stream before it is closed (GOAWAY first, to a
client); Envoy's default ``idle_timeout``, and the upstream pools'."""


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits in bytes and counts, as the codecs use them."""

    max_concurrent_streams: int = DEFAULT_MAX_CONCURRENT_STREAMS
    max_header_list_size: int = DEFAULT_MAX_HEADER_LIST_SIZE
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    initial_window_size: int = DEFAULT_INITIAL_WINDOW_SIZE
    connection_window_size: int = DEFAULT_CONNECTION_WINDOW_SIZE
    stream_buffer_limit: int = DEFAULT_STREAM_BUFFER_LIMIT
    engine: str = AUTO
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    """0: none."""
    keepalive_interval: float = 0.0
    """Seconds between PINGs on a connection; 0: none."""
    keepalive_timeout: float = 0.0
    """Seconds to wait for the PING's answer (or any frame) before closing."""


STRICT = ConfigDict(extra="forbid", populate_by_name=True)
"""A key these models do not know is an error with its path, not a field ignored."""


class ConnectionKeepalive(Model):
    """PINGs that check an idle peer is still there (Envoy's ``connection_keepalive``)."""

    model_config = STRICT

    interval: Duration = Field(gt=0)
    """How often a PING is sent."""
    timeout: Duration = Field(gt=0)
    """How long to wait for its answer before the connection is closed (its streams
    reset); any frame received meanwhile counts as an answer, as Envoy has it, so a
    busy connection is not closed for a PING queued behind data."""


class Http2Config(Model):
    model_config = STRICT

    max_concurrent_streams: int = Field(default=DEFAULT_MAX_CONCURRENT_STREAMS, ge=1,
                                        le=MAX_WINDOW_SIZE)
    """SETTINGS_MAX_CONCURRENT_STREAMS: a stream above it is refused (RST_STREAM
    REFUSED_STREAM); upstream, the peer's own value is respected."""
    max_header_list_size: int = Field(default=DEFAULT_MAX_HEADER_LIST_SIZE, ge=1024)
    """SETTINGS_MAX_HEADER_LIST_SIZE: a larger header block ends the connection
    (GOAWAY ENHANCE_YOUR_CALM: its HPACK state cannot be trusted after it)."""
    max_frame_size: int = Field(default=DEFAULT_MAX_FRAME_SIZE, ge=MIN_MAX_FRAME_SIZE,
                                le=MAX_MAX_FRAME_SIZE)
    """SETTINGS_MAX_FRAME_SIZE: a larger frame is a connection error (FRAME_SIZE_ERROR)."""
    initial_stream_window_size: int = Field(default=DEFAULT_INITIAL_WINDOW_SIZE, ge=65535,
                                            le=MAX_WINDOW_SIZE)
    """SETTINGS_INITIAL_WINDOW_SIZE (Envoy's name for it)."""
    initial_connection_window_size: int = Field(default=DEFAULT_CONNECTION_WINDOW_SIZE,
                                                ge=65535, le=MAX_WINDOW_SIZE)
    """The connection-level window, opened with a WINDOW_UPDATE right after SETTINGS."""
    stream_buffer_limit: int = Field(default=DEFAULT_STREAM_BUFFER_LIMIT, ge=16384)
    """Bytes queued on one stream for the peer before its source is paused."""
    engine: Literal["auto", "nghttp2", "python"] = AUTO
    """The HTTP/2 engine: ``nghttp2`` (libnghttp2, compiled at install), ``python``
    (h2), or ``auto``: nghttp2 where it was built and ``MOSN_NO_EXTENSIONS`` is not set."""
    idle_timeout: Duration = DEFAULT_IDLE_TIMEOUT
    """A connection with no stream for this long is closed; 0: never."""
    connection_keepalive: ConnectionKeepalive | None = None
    """PING keepalive; none by default."""

    @field_validator("engine")
    @classmethod
    def _engine_can_run(cls, value: str) -> str:
        if value == NATIVE and (reason := native_error()) is not None:
            raise ValueError(f"the nghttp2 engine cannot run here: {reason}")
        return value

    def limits(self) -> Limits:
        return Limits(
            max_concurrent_streams=self.max_concurrent_streams,
            max_header_list_size=self.max_header_list_size,
            max_frame_size=self.max_frame_size,
            initial_window_size=self.initial_stream_window_size,
            connection_window_size=self.initial_connection_window_size,
            stream_buffer_limit=self.stream_buffer_limit,
            engine=self.engine,
            idle_timeout=self.idle_timeout,
            keepalive_interval=self.connection_keepalive.interval if self.connection_keepalive else 0.0,
            keepalive_timeout=self.connection_keepalive.timeout if self.connection_keepalive else 0.0,
        )
