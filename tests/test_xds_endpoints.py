"""EDS pushes into a cluster's host set, in process: the translation, the composed
config and the cluster manager a served config goes through (no sockets: nothing here
connects)."""

from __future__ import annotations

import gc
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2

from mosn.config.loader import LoadedConfig
from mosn.observability.stats import StatsStore
from mosn.plugins import PluginHost
from mosn.upstream.cluster import ClusterManager
import mosn.xds.client
from mosn.xds.apply import Composer
from mosn.xds.client import Subscriber
from mosn.xds.resources import CLUSTERS, ENDPOINTS, ResourceType
from xds_resources import assignment, eds_cluster, endpoint, message, outbound

NAME = outbound(9080, "hosts.default.svc.cluster.local")


class Served:
    """Applies each config served to one cluster manager, as ``mosn start`` does."""

    def __init__(self) -> None:
        self.plugins = PluginHost().load()
        self.store = StatsStore()
        self.manager: ClusterManager | None = None

    def __call__(self, loaded: LoadedConfig) -> None:
        if self.manager is None:
            self.manager = ClusterManager(loaded.config, self.plugins, self.store)
            self.store.allocate(1)
            return
        for cc in loaded.config.cluster_manager.clusters:
            self.manager.add_or_update(cc)

    def hosts(self) -> dict[str, Any]:
        assert self.manager is not None
        cluster = self.manager.get(NAME)
        assert cluster is not None
        return {str(h.address): h for h in cluster.hosts}


def push(client: Subscriber, kind: ResourceType, version: str, resources: list[Any]) -> list[str]:
    response = discovery_pb2.DiscoveryResponse(version_info=version, type_url=kind.url)
    for data in resources:
        response.resources.add().Pack(message(kind, data))
    return client.take_sotw(response)


def test_an_endpoint_push_keeps_the_hosts_that_remain_and_a_bad_one_changes_nothing():
    served = Served()
    client = Subscriber(Composer({}, served.plugins, served).offer)
    assert push(client, CLUSTERS, "1", [eds_cluster(9080, "hosts.default.svc.cluster.local",
                                                    lb_policy="ROUND_ROBIN")]) == []
    kept = endpoint("10.1.0.1:80", 2)
    assert push(client, ENDPOINTS, "1", [assignment(NAME, {"a": [
        kept, "10.1.0.2:80", "10.1.0.3:80"]})]) == []
    before = served.hosts()
    assert sorted(before) == ["10.1.0.1:80", "10.1.0.2:80", "10.1.0.3:80"]
    assert before["10.1.0.1:80"].weight == 2

    # one reweighted with subset keys, one the same, one draining (left out), one new
    reweighted = endpoint("10.1.0.1:80", 5)
    reweighted["metadata"] = {"filter_metadata": {"envoy.lb": {"version": "v2"}}}
    draining = endpoint("10.1.0.3:80", health="DRAINING")
    assert push(client, ENDPOINTS, "2", [assignment(NAME, {"a": [
        reweighted, "10.1.0.2:80"], "b": [draining, "10.1.0.4:80"]})]) == []
    after = served.hosts()
    assert sorted(after) == ["10.1.0.1:80", "10.1.0.2:80", "10.1.0.4:80"]
    assert after["10.1.0.1:80"] is before["10.1.0.1:80"]  # its connections, health, stats
    assert after["10.1.0.2:80"] is before["10.1.0.2:80"]
    assert after["10.1.0.1:80"].weight == 5
    assert after["10.1.0.1:80"].metadata == {"version": "v2"}
    assert before["10.1.0.3:80"].slot == -1  # gave its slot back
    shown = served.store.snapshot()
    host = f"cluster.{NAME}.host"
    assert f"{host}.10.1.0.4:80.cx_total" in shown
    assert f"{host}.10.1.0.3:80.cx_total" not in shown

    # a bad endpoint: NACKed naming the field; the host set stays as it was
    bad = endpoint("10.1.0.5:80")
    bad["load_balancing_weight"] = 0
    errors = push(client, ENDPOINTS, "3", [assignment(NAME, {"a": ["10.1.0.2:80", bad]})])
    assert errors == [f"ClusterLoadAssignment {NAME!r}: endpoints[0].lb_endpoints[1]."
                      "load_balancing_weight: a host weight is at least 1"]
    assert served.hosts() == after
    assert client.snapshot.versions[ENDPOINTS.url] == "2"


def test_the_first_config_with_each_kind_of_resource_is_frozen():
    served = Served()
    client = Subscriber(Composer({}, served.plugins, served).offer)
    frozen_before = gc.get_freeze_count()
    try:
        assert push(client, CLUSTERS, "1", [eds_cluster(9080, "hosts.default.svc.cluster.local")]) == []
        after_clusters = gc.get_freeze_count()
        assert after_clusters > frozen_before  # what the first clusters built, kept from full passes
        assert push(client, ENDPOINTS, "1", [assignment(NAME, {"a": ["10.1.0.1:80"]})]) == []
        after_endpoints = gc.get_freeze_count()
        assert after_endpoints > after_clusters
        # later pushes of kinds frozen before are not: what they replace can be collected
        assert push(client, ENDPOINTS, "2", [assignment(NAME, {"a": ["10.1.0.2:80"]})]) == []
        assert gc.get_freeze_count() <= after_endpoints
        assert sorted(served.hosts()) == ["10.1.0.2:80"]
    finally:
        if not frozen_before:
            gc.unfreeze()


def test_a_response_with_the_bytes_serving_is_not_decoded_again(monkeypatch):
    served = Served()
    client = Subscriber(Composer({}, served.plugins, served).offer)
    cluster = eds_cluster(9080, "hosts.default.svc.cluster.local")
    assert push(client, CLUSTERS, "1", [cluster]) == []
    assert push(client, ENDPOINTS, "1", [assignment(NAME, {"a": ["10.1.0.1:80"]})]) == []
    decoded: list[str] = []
    real = mosn.xds.client.unpack
    monkeypatch.setattr(mosn.xds.client, "unpack",
                        lambda kind, packed: decoded.append(kind.short) or real(kind, packed))
    # A state-of-the-world push repeats every type: the same bytes, a new version.
    assert push(client, CLUSTERS, "2", [cluster]) == []
    assert push(client, ENDPOINTS, "2", [assignment(NAME, {"a": ["10.1.0.1:80"]})]) == []
    assert decoded == [] and client.snapshot.versions[ENDPOINTS.url] == "2"
    # Other bytes are decoded; a refused response leaves the bytes serving as they were.
    bad = endpoint("10.1.0.2:80", 0)
    bad["load_balancing_weight"] = 0
    assert push(client, ENDPOINTS, "3", [assignment(NAME, {"a": [bad]})]) != []
    assert push(client, ENDPOINTS, "4", [assignment(NAME, {"a": ["10.1.0.1:80"]})]) == []
    assert decoded == ["eds"] and client.snapshot.versions[ENDPOINTS.url] == "4"
    assert sorted(served.hosts()) == ["10.1.0.1:80"]
