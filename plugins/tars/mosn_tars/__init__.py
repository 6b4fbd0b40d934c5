"""mosn's Tars plugin: a Tars frame codec for the multiplexed RPC engine."""

from mosn_tars.codec import TarsCodec
from mosn_tars.config import DEFAULT_MAX_PACKET_SIZE, TarsConfig
from mosn_tars.frames import Ret, request_packet, response_packet
from mosn_tars.mapping import error_status, http_status
from mosn_tars.matcher import match

__all__ = [
    "DEFAULT_MAX_PACKET_SIZE",
    "Ret",
    "TarsCodec",
    "TarsConfig",
    "error_status",
    "http_status",
    "match",
    "request_packet",
    "response_packet",
]
