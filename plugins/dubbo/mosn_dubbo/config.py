"""The dubbo protocol's config (``extend_config.dubbo``)."""

from __future__ import annotations

from pydantic import Field

from mosn.config.base import Model

DEFAULT_MAX_BODY_SIZE = 8 * 1024 * 1024
"""Dubbo's own default ``payload`` limit (8 MiB of body); a frame is held whole before
it is forwarded, so a larger one is refused with BAD_REQUEST."""
MIN_MAX_BODY_SIZE = 64 * 1024
"""The smallest limit a config may set: room for any request head and attachments."""
MAX_MAX_BODY_SIZE = 1024 * 1024 * 1024
"""The largest: the body length is a u32, and a frame is held in memory whole."""


class DubboConfig(Model):
    max_body_size: int = Field(
        default=DEFAULT_MAX_BODY_SIZE, ge=MIN_MAX_BODY_SIZE, le=MAX_MAX_BODY_SIZE)
    """Bytes of one frame's body; a larger one is answered BAD_REQUEST and the
    connection closed."""
    attachments: bool = True
    """Read a request's attachments (``group``, ``interface``, ``timeout`` ...) for
    routing: the arguments before them are stepped over, not decoded. False: only the
    first four strings are read (MOSN's cheap decoder) and ``group`` is unknown."""
