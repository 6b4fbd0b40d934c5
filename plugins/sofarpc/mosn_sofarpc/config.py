"""The bolt protocols' config (``extend_config.bolt`` / ``extend_config.boltv2``)."""

from __future__ import annotations

from pydantic import Field

from mosn.config.base import Model

DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024
"""A frame is held whole before it is forwarded, and bolt's content length is a u32
(4 GiB), so a frame larger than this is refused with CODEC_EXCEPTION. 16 MiB is twice
SOFARPC's own default payload limit (``transport.payload.max``, 8 MiB)."""
MIN_MAX_FRAME_SIZE = 64 * 1024
"""The smallest limit a config may set: any header map (u16 length) plus a small body."""
MAX_MAX_FRAME_SIZE = 1024 * 1024 * 1024
"""The largest limit a config may set: MOSN logs frames above 1 GiB as suspect
(``bolt.BigFrameFlagSize``)."""


class SofaRpcConfig(Model):
    max_frame_size: int = Field(
        default=DEFAULT_MAX_FRAME_SIZE, ge=MIN_MAX_FRAME_SIZE, le=MAX_MAX_FRAME_SIZE)
    """Bytes of one frame (header, class, header map, content, CRC); a larger one is
    answered CODEC_EXCEPTION and the connection closed."""
