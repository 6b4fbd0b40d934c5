"""Registers the dubbo codec with the RPC engine, the dubbo protocol with the proxy,
the ``zookeeper`` cluster type (Dubbo's ZooKeeper registry) and the ``dubbo_triple``
stream filter (Dubbo's routing keys for Dubbo 3 Triple calls), and MOSN's
``dubbo_registry`` extends type (publishing and subscribing on ZooKeeper)."""

from __future__ import annotations

from typing import Any

from mosn.plugins import Extension, hookimpl
from mosn_dubbo.codec import DubboCodec
from mosn_dubbo.config import DubboConfig


def dubbo_codec(config: DubboConfig | None = None, *_: Any) -> DubboCodec:
    config = config or DubboConfig()
    return DubboCodec(config.max_body_size, config.attachments)


def dubbo_protocol(config: DubboConfig | None = None, *_: Any) -> Any:
    from mosn.rpc.engine import rpc_protocol  # the engine loads after the plugins

    return rpc_protocol(dubbo_codec(config))


@hookimpl
def mosn_xprotocol_codecs() -> list[Extension]:
    return [Extension("dubbo", dubbo_codec, DubboConfig,
                      description="Dubbo 2 frames; hessian2 bodies read for routing")]


@hookimpl
def mosn_protocols() -> list[Extension]:
    return [Extension("dubbo", dubbo_protocol, DubboConfig,
                      description="Dubbo 2 on the multiplexed RPC engine")]


@hookimpl
def mosn_cluster_types() -> list[Extension]:
    from mosn_dubbo.zookeeper import ZookeeperClusterConfig, zookeeper_cluster

    return [Extension("zookeeper", zookeeper_cluster, ZookeeperClusterConfig,
                      description="Dubbo providers registered in ZooKeeper, followed by a watch")]


@hookimpl
def mosn_stream_filters() -> list[Extension]:
    from mosn_dubbo.triple import TripleConfig, build

    return [Extension("dubbo_triple", build, TripleConfig,
                      description="Dubbo's routing keys (service, method, version, group) "
                                  "for Dubbo 3 Triple (gRPC) calls")]


@hookimpl
def mosn_extends() -> list[Extension]:
    from mosn_dubbo.extend import DubboRegistryConfig, build

    return [Extension("dubbo_registry", build, DubboRegistryConfig,
                      description="MOSN's Dubbo service registry: publish and subscribe "
                                  "on ZooKeeper over HTTP (/pub /unpub /sub /unsub)")]
