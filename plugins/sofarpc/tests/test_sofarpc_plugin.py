"""The plugin as mosn loads it: entry point, extensions, configs, factories."""

from __future__ import annotations

import types

import pytest
from pydantic import ValidationError

from mosn.plugins import PluginHost
from mosn.rpc.codec import FrameKind
from mosn_sofarpc import BoltCodec, BoltV2Codec, SofaRpcConfig
from mosn_sofarpc.config import DEFAULT_MAX_FRAME_SIZE


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost().load()


def test_installed_plugin_is_loaded(host: PluginHost) -> None:
    info = next(p for p in host.plugins if p.name == "sofarpc")
    assert info.distribution == "mosn-plugin-sofarpc"
    assert info.error is None
    assert set(info.registers["xprotocol_codec"]) == {"bolt", "boltv2"}
    assert set(info.registers["protocol"]) == {"bolt", "boltv2"}


@pytest.mark.parametrize("name, cls", [("bolt", BoltCodec), ("boltv2", BoltV2Codec)])
def test_codec_factories(host: PluginHost, name: str, cls: type) -> None:
    ext = host.get("xprotocol_codec", name)
    assert ext.config_model is SofaRpcConfig
    codec = ext.factory(SofaRpcConfig(max_frame_size=100_000))
    assert type(codec) is cls and codec.name == name
    assert codec.max_frame_size == 100_000
    assert ext.factory(None).max_frame_size == DEFAULT_MAX_FRAME_SIZE


@pytest.mark.parametrize("name, cls", [("bolt", BoltCodec), ("boltv2", BoltV2Codec)])
def test_protocol_factories_build_on_the_engine(host: PluginHost, name: str, cls: type,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    engine = types.ModuleType("mosn.rpc.engine")
    engine.rpc_protocol = lambda codec: ("rpc protocol", codec)
    monkeypatch.setitem(__import__("sys").modules, "mosn.rpc.engine", engine)
    built, codec = host.get("protocol", name).factory(SofaRpcConfig())
    assert built == "rpc protocol" and type(codec) is cls


def test_config_keys_match_without_case() -> None:
    assert SofaRpcConfig.model_validate({"Max_Frame_Size": 70_000}).max_frame_size == 70_000


@pytest.mark.parametrize("size", [0, 1024, 2 * 1024 ** 3])
def test_config_refuses_a_silly_limit(size: int) -> None:
    with pytest.raises(ValidationError):
        SofaRpcConfig(max_frame_size=size)


def test_the_rpc_tools_find_the_codec() -> None:
    from mosn.rpc.tools import codec_named

    codec = codec_named("boltv2")
    assert codec.decode(bytearray(codec.request("a:1.0", "m", b""))).kind is FrameKind.REQUEST
