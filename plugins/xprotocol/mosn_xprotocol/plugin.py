"""Registers the declarative codec (protocol and RPC codec ``xprotocol``) and the
no-unpack tunnel filters (``tunnel_entry``, ``tunnel_exit``)."""

from __future__ import annotations

from typing import Any

from mosn.plugins import Extension, hookimpl
from mosn.stream.types import MatchResult
from mosn_xprotocol.codec import PROTOCOL_NAME, DeclarativeCodec
from mosn_xprotocol.config import XProtocolConfig


def xprotocol_codec(config: XProtocolConfig | None = None, *_: Any) -> DeclarativeCodec:
    if config is None or config.codec is None:
        raise ValueError("xprotocol needs a codec description (extend_config.xprotocol.codec, "
                         "or --protocol-config FILE holding {codec: {...}})")
    return DeclarativeCodec(config.codec)


class UndeclaredProtocol:
    """What a proxy without ``extend_config.xprotocol.codec`` holds for xprotocol:
    it matches nothing under ``Auto``; naming it is refused by the config check."""

    name = PROTOCOL_NAME
    multiplexed = True

    def match(self, data: bytes) -> MatchResult:
        return MatchResult.NO_MATCH

    def server(self, conn: Any, new_stream: Any) -> Any:
        raise RuntimeError("xprotocol without a codec description")

    def client(self, conn: Any, on_idle: Any) -> Any:
        raise RuntimeError("xprotocol without a codec description")


class DeclaredProtocol:
    """A declared protocol for the proxy: the RPC engine over a codec of its own on
    each connection (``DeclarativeCodec.for_connection``), so that a delimited frame
    arriving in many reads is searched once."""

    name = PROTOCOL_NAME

    def __init__(self, codec: DeclarativeCodec) -> None:
        self.codec = codec
        self.multiplexed = codec.multiplexed

    def match(self, data: bytes) -> MatchResult:
        return self.codec.match(data)

    def server(self, conn: Any, new_stream: Any) -> Any:
        return _rpc_protocol(self.codec.for_connection()).server(conn, new_stream)

    def client(self, conn: Any, on_idle: Any) -> Any:
        return _rpc_protocol(self.codec.for_connection()).client(conn, on_idle)


def _rpc_protocol(codec: DeclarativeCodec) -> Any:
    from mosn.rpc.engine import rpc_protocol  # the engine loads after the plugins

    return rpc_protocol(codec)


def xprotocol_protocol(config: XProtocolConfig | None = None, *_: Any) -> Any:
    if config is None or config.codec is None:
        return UndeclaredProtocol()
    return DeclaredProtocol(DeclarativeCodec(config.codec))


@hookimpl
def mosn_network_filters() -> list[Extension]:
    from mosn_xprotocol.tunnel import TunnelEntryConfig, TunnelExitConfig, build_entry, build_exit

    return [
        Extension("tunnel_entry", build_entry, TunnelEntryConfig,
                  description="no-unpack forwarding into a tunnel naming the far cluster"),
        Extension("tunnel_exit", build_exit, TunnelExitConfig,
                  description="no-unpack forwarding out of a tunnel to the cluster it names"),
    ]


@hookimpl
def mosn_xprotocol_codecs() -> list[Extension]:
    return [Extension(PROTOCOL_NAME, xprotocol_codec, XProtocolConfig,
                      description="a private RPC protocol declared in config")]


@hookimpl
def mosn_protocols() -> list[Extension]:
    return [Extension(PROTOCOL_NAME, xprotocol_protocol, XProtocolConfig,
                      description="a private RPC protocol declared in extend_config.xprotocol")]
