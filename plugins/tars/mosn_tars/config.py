"""The tars protocol's config (``extend_config.tars``)."""

from __future__ import annotations

from pydantic import Field

from mosn.config.base import Model

DEFAULT_MAX_PACKET_SIZE = 10 * 1024 * 1024
"""The Tars framework's own default limit of one packet (10 MB, TarsCpp's
``MAX_PACKET_SIZE``); a packet is held whole before it is forwarded."""
MIN_MAX_PACKET_SIZE = 64 * 1024
"""The smallest limit a config may set: room for any request head and context."""
MAX_MAX_PACKET_SIZE = 1024 * 1024 * 1024
"""The largest: the length is a u32, and a packet is held in memory whole."""


class TarsConfig(Model):
    max_packet_size: int = Field(
        default=DEFAULT_MAX_PACKET_SIZE, ge=MIN_MAX_PACKET_SIZE, le=MAX_MAX_PACKET_SIZE)
    """Bytes of one packet, its length field included; a larger request is answered
    ``TARSSERVERDECODEERR`` and the connection closed."""
