"""mosn's Dubbo-Thrift plugin: Dubbo's thrift protocol on the multiplexed RPC engine."""

from mosn_dubbothrift.codec import DubboThriftCodec
from mosn_dubbothrift.config import DEFAULT_MAX_FRAME_SIZE, DubboThriftConfig
from mosn_dubbothrift.frames import ApplicationError, MessageType, build_frame, message_begin
from mosn_dubbothrift.mapping import error_status, http_status
from mosn_dubbothrift.matcher import match

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "ApplicationError",
    "DubboThriftCodec",
    "DubboThriftConfig",
    "MessageType",
    "build_frame",
    "error_status",
    "http_status",
    "match",
    "message_begin",
]
