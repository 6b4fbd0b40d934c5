"""The bootstrap sections for a control plane: Envoy's blocks load as they are."""

from __future__ import annotations

import os
import signal

import pytest
import yaml

from mosn.config import ConfigError, validate

ENVOY_BOOTSTRAP = """
node:
  id: sidecar~10.1.2.3~reviews-v1-5c6f8b9d7-abcde.default~default.svc.cluster.local
  cluster: reviews.default
  metadata: {ISTIO_VERSION: "1.24.0", CLUSTER_ID: Kubernetes}
  locality: {region: us-central1, zone: us-central1-a}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    set_node_on_first_message_only: true
    grpc_services:
    - envoy_grpc: {cluster_name: xds-grpc}
  cds_config: {ads: {}, initial_fetch_timeout: 0s, resource_api_version: V3}
  lds_config: {ads: {}, initial_fetch_timeout: 0s, resource_api_version: V3}
"""
XDS_CLUSTER = {"cluster_manager": {"clusters": [
    {"name": "xds-grpc", "type": "STATIC", "hosts": [{"address": "127.0.0.1:15010"}]}]}}


def load(text: str, **more):
    return validate({**yaml.safe_load(text), **XDS_CLUSTER, **more})


def test_envoy_bootstrap_sections_load_unchanged():
    config = load(ENVOY_BOOTSTRAP).config
    assert config.node.id.startswith("sidecar~10.1.2.3~")
    assert config.node.locality.zone == "us-central1-a"
    ads = config.dynamic_resources.ads_config
    assert (ads.api_type, ads.grpc_services[0].envoy_grpc.cluster_name) == ("GRPC", "xds-grpc")
    assert config.dynamic_resources.lds_config.initial_fetch_timeout == 0


def test_rest_sources():
    config = load("""
dynamic_resources:
  lds_config:
    resource_api_version: V3
    api_config_source: {api_type: REST, transport_api_version: V3, cluster_names: [xds-grpc],
                        refresh_delay: 2s}
  cds_config:
    api_config_source: {api_type: REST, cluster_names: [xds-grpc]}
""").config
    assert config.dynamic_resources.lds_config.api_config_source.refresh_delay == 2


@pytest.mark.parametrize("text, error", [
    ("dynamic_resources: {lds_config: {ads: {}}}",
     "dynamic_resources: Value error, lds_config uses ads: {} but there is no ads_config"),
    ("dynamic_resources: {lds_config: {ads: {}, watched: 1}, ads_config: {api_type: GRPC, "
     "grpc_services: [{envoy_grpc: {cluster_name: xds-grpc}}]}}",
     "dynamic_resources.lds_config.watched: Extra inputs are not permitted"),
    ("dynamic_resources: {lds_config: {ads: {}}, ads_config: {api_type: GRPC, "
     "grpc_services: [{envoy_grpc: {cluster_name: nowhere}}]}}",
     "dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name: unknown cluster "
     "'nowhere' (the control plane's cluster is one of cluster_manager.clusters)"),
    ("dynamic_resources: {cds_config: {api_config_source: {api_type: REST, "
     "transport_api_version: V2, cluster_names: [xds-grpc]}}}",
     "dynamic_resources.cds_config.api_config_source.transport_api_version: Value error, "
     "'V2': mosn speaks the v3 xDS API only (V3)"),
    ("node: {id: a, user_agent_build_version: {}}",
     "node.user_agent_build_version: Extra inputs are not permitted"),
])
def test_bad_bootstrap_is_refused_with_its_path(text, error):
    with pytest.raises(ConfigError) as info:
        load(text)
    assert [e.replace("Value error, ", "") for e in info.value.errors] == [
        error.replace("Value error, ", "")]


def test_a_reload_with_workers_that_changes_the_control_plane_is_refused(start_mosn):
    """A parent with workers holds one subscription, which a reload keeps: a config
    whose ``dynamic_resources`` changed is refused with why, the old one serving."""
    config = {**yaml.safe_load(ENVOY_BOOTSTRAP), **XDS_CLUSTER}
    mosn = start_mosn(config, "--workers", "2")
    changed = yaml.safe_load(mosn.config_path.read_text())
    changed["dynamic_resources"]["ads_config"]["api_type"] = "DELTA_GRPC"
    mosn.config_path.write_text(yaml.safe_dump(changed))
    os.kill(mosn.proc.pid, signal.SIGHUP)
    assert mosn.wait_stat("server.reload_failed", 1)["server.reload_failed"] == 1
    assert "config reload refused, still serving the old config: dynamic_resources " \
        "changed" in mosn.output()
    assert mosn.admin("/ready").status_code == 200
