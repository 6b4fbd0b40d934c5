"""Registers the tars codec with the RPC engine and the tars protocol with the proxy."""

from __future__ import annotations

from typing import Any

from mosn.plugins import Extension, hookimpl
from mosn_tars.codec import TarsCodec
from mosn_tars.config import TarsConfig


def tars_codec(config: TarsConfig | None = None, *_: Any) -> TarsCodec:
    config = config or TarsConfig()
    return TarsCodec(config.max_packet_size)


def tars_protocol(config: TarsConfig | None = None, *_: Any) -> Any:
    from mosn.rpc.engine import rpc_protocol  # the engine loads after the plugins

    return rpc_protocol(tars_codec(config))


@hookimpl
def mosn_xprotocol_codecs() -> list[Extension]:
    return [Extension("tars", tars_codec, TarsConfig,
                      description="Tars packets; servant and function read for routing")]


@hookimpl
def mosn_protocols() -> list[Extension]:
    return [Extension("tars", tars_protocol, TarsConfig,
                      description="Tars on the multiplexed RPC engine")]
