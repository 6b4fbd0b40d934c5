"""MOSN's own sample configs, as MOSN ships them (``configs/`` and ``examples/codes/`` of
mosn/mosn at 707d635b, in tests/data/mosn_samples/): each in-scope one loads, or is
refused only for the reasons docs/compat.md gives, each error with its path. Out of
scope and not kept here: the configs that need Go plugins, ``.so`` extensions, WASM
or a ``third_part_codec`` (15 of MOSN's 65)."""

from __future__ import annotations

import pytest

from conftest import ROOT
from mosn.config import ConfigError, load

SAMPLES = ROOT / "tests" / "data" / "mosn_samples"

XDS = ("dynamic_resources", "static_resources")
"""Envoy's v2-era xDS sections as MOSN's istio samples write them: ``static_resources``
(mosn's static config is MOSN's) and ``dynamic_resources`` shapes mosn does not speak
(``cluster_names``, REST ``api_config_source``, a duration as an object)."""
TLS_FILES = ("tls_context.ca_cert",)
"""MOSN's TLS samples name certificates on MOSN's machine (docs/tls.md loads its own)."""
GO_STREAM_FILTER = ("stream_filters[0].type",)
"""MOSN's stream filters mosn has no counterpart of yet (seata's)."""
NACOS = ("stream_filters[0].config.dynamic_data_resources",)
"""flowControlFilter's rules from a Nacos data source (mosn reads them from the config)."""
TRACER = ("tracing",)
"""The ``PluginDriver`` tracing driver: a tracer built as a Go plugin."""
TUNNEL_AGENT = ("extends[0].type",)
"""MOSN's tunnel agent, an ``extends`` type mosn has no counterpart of (the error
names it and lists the types mosn has)."""

REFUSED: dict[str, tuple[str, ...]] = {
    "configs/istio152/mosn_config_mirror_xds.json": ("static_resources",),
    "configs/istio152/mosn_xds.json": XDS,
    "filter/dubbo/install/build/mosn_config_dubbo_xds.json": XDS,
    "flowcontrol-sample/datasource-nacos/server_config_nacos.json": NACOS,
    "flowcontrol-sample/datasource-nacos/tls_server_config_nacos.json": NACOS + TLS_FILES,
    "flowcontrol-sample/tls_client_config.json": TLS_FILES,
    "flowcontrol-sample/tls_server_config.json": TLS_FILES,
    "http-sample/tls_client_config.json": TLS_FILES,
    "http-sample/tls_server_config.json": TLS_FILES,
    "protocol-auto-sample/tls_client_config.json": TLS_FILES,
    "protocol-auto-sample/tls_server_config.json": TLS_FILES,
    "seata/server_a/service_a_config.json": GO_STREAM_FILTER,
    "seata/server_b/service_b_config.json": GO_STREAM_FILTER,
    "seata/server_c/service_c_config.json": GO_STREAM_FILTER,
    "sofarpc-with-xprotocol-sample/tls_client_config.json": TLS_FILES,
    "sofarpc-with-xprotocol-sample/tls_server_config.json": TLS_FILES,
    "trace/skywalking-plugin/http/config.json": TRACER,
    "tunnel-sample/agent_config.json": TUNNEL_AGENT,
    "tunnel-sample/client_config.json": ("filters[0].type",) + TLS_FILES,
    "xds-server-sample/config.json":
        XDS + ("admin.access_log_path", "layered_runtime"),
}
"""Each refused sample, and the part of each of its errors' paths that says why."""

ALL = sorted(str(p.relative_to(SAMPLES)) for p in SAMPLES.rglob("*.json"))


def test_every_in_scope_sample_is_here():
    assert len(ALL) == 50
    assert set(REFUSED) <= set(ALL)


@pytest.mark.parametrize("name", [n for n in ALL if n not in REFUSED])
def test_sample_loads(name):
    loaded = load(SAMPLES / name)
    for warning in loaded.warnings:  # only what a MOSN sample may carry
        assert ("accepted and not used" in warning
                or warning.startswith("admin.address.socket_address.address: ")), warning


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_sample_is_refused_only_for_its_known_reasons(name):
    with pytest.raises(ConfigError) as info:
        load(SAMPLES / name)
    reasons = REFUSED[name]
    for error in info.value.errors:
        path = error.split(": ", 1)[0]
        assert any(reason in path for reason in reasons), error
    for reason in reasons:  # and each reason is still one
        assert any(reason in e.split(": ", 1)[0] for e in info.value.errors), reason
