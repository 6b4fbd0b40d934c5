"""The Http1 protocol's config (``extend_config.Http1`` of a ``proxy`` filter) and the
plain limits object the codecs read on the request path."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from mosn.config.base import Model

DEFAULT_MAX_HEADERS_KB = 60
"""Request line and header block size, in KiB, before ``431`` (Envoy's default
``max_request_headers_kb``); the same bound applies to upstream response heads."""
MAX_HEADERS_KB_LIMIT = 8192
"""The largest head a config may allow, in KiB (Envoy's ceiling for the same field)."""
DEFAULT_MAX_HEADERS_COUNT = 100
"""Fields in one head or trailer block before ``431`` (Envoy's ``max_headers_count``)."""
DEFAULT_MAX_PIPELINED_REQUESTS = 16
"""Requests of one connection handed to the proxy before their responses are done;
later ones wait parsed and the connection is not read meanwhile. Each costs an
upstream connection (no pipelining upstream), so it is kept small."""
DEFAULT_MAX_HELD_RESPONSE_BYTES = 1024 * 1024
"""Bytes of a pipelined response held while an earlier one is still being sent,
before its producer is told to pause (a connection's write buffer limit)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits in bytes and counts, as the codecs use them."""

    max_request_head_bytes: int = DEFAULT_MAX_HEADERS_KB * 1024
    max_response_head_bytes: int = DEFAULT_MAX_HEADERS_KB * 1024
    max_headers_count: int = DEFAULT_MAX_HEADERS_COUNT
    max_pipelined_requests: int = DEFAULT_MAX_PIPELINED_REQUESTS
    max_held_response_bytes: int = DEFAULT_MAX_HELD_RESPONSE_BYTES


class Http1Config(Model):
    max_request_headers_kb: int = Field(
        default=DEFAULT_MAX_HEADERS_KB, ge=1, le=MAX_HEADERS_KB_LIMIT)
    """Request line and headers; a larger head is answered ``431`` and the
    connection closed."""
    max_response_headers_kb: int = Field(
        default=DEFAULT_MAX_HEADERS_KB, ge=1, le=MAX_HEADERS_KB_LIMIT)
    """Status line and headers of an upstream response; a larger one resets the stream."""
    max_headers_count: int = Field(default=DEFAULT_MAX_HEADERS_COUNT, ge=1)
    max_pipelined_requests: int = Field(default=DEFAULT_MAX_PIPELINED_REQUESTS, ge=1)
    max_held_response_bytes: int = Field(default=DEFAULT_MAX_HELD_RESPONSE_BYTES, ge=0)

    def limits(self) -> Limits:
        return Limits(
            max_request_head_bytes=self.max_request_headers_kb * 1024,
            max_response_head_bytes=self.max_response_headers_kb * 1024,
            max_headers_count=self.max_headers_count,
            max_pipelined_requests=self.max_pipelined_requests,
            max_held_response_bytes=self.max_held_response_bytes,
        )
