"""Registers the dubbo-thrift codec with the RPC engine and the protocol with the proxy."""

from __future__ import annotations

from typing import Any

from mosn.plugins import Extension, hookimpl
from mosn_dubbothrift.codec import DubboThriftCodec
from mosn_dubbothrift.config import DubboThriftConfig


def dubbo_thrift_codec(config: DubboThriftConfig | None = None, *_: Any) -> DubboThriftCodec:
    config = config or DubboThriftConfig()
    return DubboThriftCodec(config.max_frame_size)


def dubbo_thrift_protocol(config: DubboThriftConfig | None = None, *_: Any) -> Any:
    from mosn.rpc.engine import rpc_protocol  # the engine loads after the plugins

    return rpc_protocol(dubbo_thrift_codec(config))


@hookimpl
def mosn_xprotocol_codecs() -> list[Extension]:
    return [Extension("dubbo-thrift", dubbo_thrift_codec, DubboThriftConfig,
                      description="Dubbo's thrift frames; service and method read for routing")]


@hookimpl
def mosn_protocols() -> list[Extension]:
    return [Extension("dubbo-thrift", dubbo_thrift_protocol, DubboThriftConfig,
                      description="Dubbo-Thrift on the multiplexed RPC engine")]
