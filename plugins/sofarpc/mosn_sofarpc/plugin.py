"""Registers the bolt codecs with the RPC engine, the bolt protocols with the proxy,
and MOSN's HTTP-to-bolt transcoder with the stream filters."""

from __future__ import annotations

from typing import Any

from mosn.plugins import Extension, hookimpl
from mosn.upstream import HeartbeatChecker
from mosn_sofarpc.codec import BoltCodec, BoltV2Codec
from mosn_sofarpc.config import SofaRpcConfig
from mosn_sofarpc.transcoder import TranscoderConfig, build as build_transcoder


def bolt_codec(config: SofaRpcConfig | None = None, *_: Any) -> BoltCodec:
    return BoltCodec((config or SofaRpcConfig()).max_frame_size)


def boltv2_codec(config: SofaRpcConfig | None = None, *_: Any) -> BoltV2Codec:
    return BoltV2Codec((config or SofaRpcConfig()).max_frame_size)


def bolt_protocol(config: SofaRpcConfig | None = None, *_: Any) -> Any:
    from mosn.rpc.engine import rpc_protocol  # the engine loads after the plugins

    return rpc_protocol(bolt_codec(config))


def boltv2_protocol(config: SofaRpcConfig | None = None, *_: Any) -> Any:
    from mosn.rpc.engine import rpc_protocol

    return rpc_protocol(boltv2_codec(config))


@hookimpl
def mosn_xprotocol_codecs() -> list[Extension]:
    return [
        Extension("bolt", bolt_codec, SofaRpcConfig,
                  description="SOFARPC bolt v1 frames (and v2 on the same connection)"),
        Extension("boltv2", boltv2_codec, SofaRpcConfig,
                  description="SOFARPC bolt v2 frames with CRC32 (and v1 on the same connection)"),
    ]


@hookimpl
def mosn_protocols() -> list[Extension]:
    return [
        Extension("bolt", bolt_protocol, SofaRpcConfig,
                  description="SOFARPC bolt v1 on the multiplexed RPC engine"),
        Extension("boltv2", boltv2_protocol, SofaRpcConfig,
                  description="SOFARPC bolt v2 on the multiplexed RPC engine"),
    ]


def bolt_health_checker(*_: Any) -> HeartbeatChecker:
    return HeartbeatChecker(BoltCodec())


def boltv2_health_checker(*_: Any) -> HeartbeatChecker:
    return HeartbeatChecker(BoltV2Codec())


@hookimpl
def mosn_health_checkers() -> list[Extension]:
    return [
        Extension("bolt", bolt_health_checker,
                  description="a bolt v1 heartbeat, answered with SUCCESS"),
        Extension("boltv2", boltv2_health_checker,
                  description="a bolt v2 heartbeat, answered with SUCCESS"),
    ]

@hookimpl
def mosn_stream_filters() -> list[Extension]:
    return [Extension("transcoder", build_transcoder, TranscoderConfig,
                      description="MOSN's transcoder: HTTP to SOFARPC bolt (http2bolt_simple)")]
