"""The dubbo-thrift protocol's config (``extend_config.dubbo-thrift``)."""

from __future__ import annotations

from pydantic import Field

from mosn.config.base import Model

DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024
"""Thrift's own default frame limit (``TFramedTransport``'s 16 MB); a frame is held
whole before it is forwarded."""
MIN_MAX_FRAME_SIZE = 64 * 1024
"""The smallest limit a config may set: room for any header and method name."""
MAX_MAX_FRAME_SIZE = 1024 * 1024 * 1024
"""The largest: a frame is held in memory whole."""


class DubboThriftConfig(Model):
    max_frame_size: int = Field(
        default=DEFAULT_MAX_FRAME_SIZE, ge=MIN_MAX_FRAME_SIZE, le=MAX_MAX_FRAME_SIZE)
    """Bytes of one frame after its size field; a larger request is answered
    ``PROTOCOL_ERROR`` and the connection closed."""
