"""Clusters without IO: host-set updates, slots and their stats, shared health,
outlier detection rules, the DNS codec, config validation."""

from __future__ import annotations

import struct

import pytest

from mosn.config import ConfigError, validate
from mosn.config.models import ClusterConfig, MosnConfig
from mosn.config.types import Address
from mosn.observability.stats import HOST_STATS, StatsStore
from mosn.plugins import PluginHost
from mosn.upstream.cluster import FAILED_ACTIVE_HC, ClusterManager, Host, SharedHealth
from mosn.upstream.dns import TYPE_A, decode_answer, encode_query
from mosn.upstream.outlier import OutlierDetector

PLUGINS = PluginHost(autoload=False).load()


def manager(**cluster: object) -> tuple[ClusterManager, StatsStore]:
    config = MosnConfig.model_validate({"cluster_manager": {"clusters": [{
        "name": "c", "hosts": [{"address": "10.0.0.1:80"}, {"address": "10.0.0.2:80"}],
        **cluster}]}})
    store = StatsStore()
    cm = ClusterManager(config, PLUGINS, store)
    store.allocate(1)
    return cm, store


def host(ip: str, **kw: object) -> Host:
    return Host(Address(ip, 80), **kw)  # type: ignore[arg-type]


def test_set_hosts_keeps_known_hosts_and_reuses_slots():
    cm, store = manager(max_hosts=3)
    c = cm.get("c")
    first, second = c.hosts
    second_slot = second.slot
    first.active_requests = 5
    removed: list[list[Host]] = []
    c.on_hosts_removed.append(removed.append)
    c.set_hosts([host("10.0.0.1", weight=7), host("10.0.0.3")])
    kept, new = c.hosts
    assert kept is first and kept.weight == 7 and kept.active_requests == 5
    assert removed == [[second]]
    # The freed slot is taken before the unused one; its old counts are not the new host's.
    assert new.slot == second_slot and second.slot == -1
    assert new.healthy_since > 0  # a new host ramps (slow start)
    stats = store.snapshot()
    assert "cluster.c.host.10.0.0.3:80.cx_total" in stats
    assert "cluster.c.host.10.0.0.2:80.cx_total" not in stats
    store.values[new.stats.rq_total] += 4  # type: ignore[index, union-attr]
    c.set_hosts([kept, host("10.0.0.4")])
    assert c.hosts[-1].slot == second_slot and new.slot == -1
    assert store.snapshot()["cluster.c.host.10.0.0.4:80.rq_total"] == 0
    c.set_hosts([*c.hosts, host("10.0.0.5")])  # no slot given back: an unused one
    assert c.hosts[-1].slot == 2


def test_a_reused_slot_shows_its_new_hosts_counters_and_the_gauges_it_inherits():
    cm, store = manager(max_hosts=2)
    c = cm.get("c")
    gone = c.hosts[1]
    store.values[gone.stats.rq_total] += 4  # type: ignore[index, union-attr]
    store.values[gone.stats.cx_active] += 1  # a connection still open  # type: ignore[index, union-attr]
    c.set_hosts([c.hosts[0], host("10.0.0.3")])
    new = c.hosts[1]
    assert new.stats is gone.stats  # the one free slot
    shown = "cluster.c.host.10.0.0.3:80."
    stats = store.snapshot()
    assert stats[shown + "rq_total"] == 0 and stats[shown + "cx_active"] == 1
    store.values[new.stats.rq_total] += 2  # type: ignore[index, union-attr]
    assert store.snapshot()[shown + "rq_total"] == 2


def test_host_slots_cost_stats_only_once_taken():
    cm, store = manager(max_hosts=1000)
    registered = len(store.names)
    c = cm.get("c")
    c.set_hosts([*c.hosts, host("10.0.0.3")])  # one slot more: one host's stats more
    assert len(store.names) == registered + len(c.hosts[-1].stats.indices)
    names = [store.name(i) for i in range(len(store.names))]
    assert not any("#3." in name or "#999." in name for name in names)
    assert store.snapshot()["cluster.c.host.10.0.0.3:80.cx_total"] == 0
    registered = len(store.names)
    c.set_hosts([host(f"10.0.1.{i}") for i in range(1, 4)])  # every host moves
    assert len(store.names) == registered  # the three slots given back are taken again


def test_an_endpoint_update_makes_hosts_only_for_entries_it_did_not_have():
    cm, _ = manager()
    c = cm.get("c")
    a, b = c.config.hosts
    kept = c.hosts[0]
    assert cm.add_or_update(c.config.model_copy(update={"hosts": [a]})) == "updated"
    assert c.hosts == [kept]
    # the same entry object (an endpoint whose bytes did not change) is the same host
    hosts = c.listed_hosts(c.config.model_copy(update={"hosts": [a, b]}))
    assert hosts[0] is kept and hosts[1] is not kept
    assert c.listed_hosts(c.config.model_copy(update={"hosts": [a.model_copy()]}))[0] is not kept


def test_a_slot_scope_is_one_block_named_when_read():
    store = StatsStore()
    store.allocate(1)
    scope = store.slot_scopes("cluster.c.host", HOST_STATS, 4)[2]
    assert store.name(scope.cx_active) == "cluster.c.host#2.cx_active"
    # a cluster replaced under the same name: its slot 2 is the same stats
    again = store.slot_scopes("cluster.c.host", HOST_STATS, 4)[2]
    assert again.indices == scope.indices
    store.label(again, "cluster.c.host.10.0.0.1:80")
    store.values[again.rq_total] += 3  # type: ignore[index]
    store.values[again.cx_active] += 1  # type: ignore[index]
    shown = store.snapshot()
    assert shown["cluster.c.host.10.0.0.1:80.rq_total"] == 3
    assert shown["cluster.c.host.10.0.0.1:80.cx_active"] == 1
    assert not any("#" in name for name in shown)
    assert not any("#" in name for name in store.export_counters())
    store.zero_gauges()
    assert store.values[again.cx_active] == 0 and store.values[again.rq_total] == 3  # type: ignore[index]
    store.label(again, None)
    assert not any(".host." in name for name in store.snapshot())


def test_host_slots_are_all_registered_before_workers_fork():
    config = MosnConfig.model_validate({"cluster_manager": {"clusters": [{
        "name": "c", "hosts": [{"address": "10.0.0.1:80"}], "max_hosts": 50}]}})
    store = StatsStore()
    cm = ClusterManager(config, PLUGINS, store)
    store.allocate(2)  # two workers: no stat can be registered once they run
    per_host = len(cm.get("c").hosts[0].stats.indices)
    assert sum(".host#" in store.name(i) for i in range(len(store.names))) == 50 * per_host


def test_set_hosts_beyond_max_hosts_keeps_the_first():
    cm, _ = manager(max_hosts=2)
    c = cm.get("c")
    c.set_hosts([host("10.0.0.1"), host("10.0.0.2"), host("10.0.0.3")])
    assert [str(h) for h in c.hosts] == ["10.0.0.1:80", "10.0.0.2:80"]


def test_shared_health_reaches_other_processes_hosts():
    cm, _ = manager()
    c = cm.get("c")
    # What the process that runs the checks writes ...
    c.health.set(c.slot_base + c.hosts[1].slot, FAILED_ACTIVE_HC)
    # ... a worker takes on its next look.
    cm.sync_health()
    assert [h.healthy for h in c.hosts] == [True, False]
    assert c.choose_host() is c.hosts[0]
    c.health.set(c.slot_base + c.hosts[1].slot, 0)
    cm.sync_health()
    assert c.hosts[1].healthy and c.hosts[1].healthy_since > 0


def test_shared_health_ranges_are_given_back_and_taken_again():
    health = SharedHealth(4, room=12)
    assert [health.take(4, clear=True), health.take(4, clear=True),
            health.take(4, clear=True), health.take(4, clear=True)] == [0, 4, 8, 12]
    assert health.take(1, clear=True) is None  # the room is used up
    health.give(4, 4)
    health.give(8, 4)  # merged with the one before: one range of 8
    assert health.taken == 8
    assert health.take(6, clear=True) == 4
    health.give(12, 4)
    health.give(4, 6)
    assert health.taken == 4 and health.take(12, clear=True) == 4  # all after 4 again


def test_a_reused_range_is_cleared_by_the_process_that_writes_health_only():
    health = SharedHealth(0, room=8)
    start = health.take(8, clear=True)
    health.set(start + 3, FAILED_ACTIVE_HC)
    health.give(start, 8)
    generation = health.generation
    assert health.take(8, clear=False) == start  # a worker's take: the writer's bytes
    assert health.flags[start + 3] == FAILED_ACTIVE_HC
    health.give(start, 8)
    assert health.take(8, clear=True) == start  # the writer's: healthy again, and told
    assert health.flags[start + 3] == 0 and health.generation > generation


def test_clusters_added_while_serving_share_the_managers_health():
    """A cluster added (an xDS push, a reload in place) takes its host slots' health in
    the manager's shared health, after the file's; a removed one gives them back, and
    the next cluster takes them: workers find every cluster's bytes where the parent's
    checks write them."""
    cm, _ = manager(max_hosts=4)
    added = ClusterConfig.model_validate({"name": "d", "max_hosts": 8,
                                          "hosts": [{"address": "10.0.0.3:80"}]})
    cm.add_or_update(added)
    d = cm.get("d")
    assert d.health is cm.health and d.slot_base == 4
    cm.health.set(d.slot_base + d.hosts[0].slot, FAILED_ACTIVE_HC)
    cm.sync_health()
    assert not d.hosts[0].healthy
    cm.remove("d")
    cm.add_or_update(added.model_copy(update={"name": "e"}))
    e = cm.get("e")
    assert e.slot_base == 4 and e.hosts[0].healthy  # a cleared range
    assert cm.health.taken == 12


def test_host_sets_travel_with_their_slots():
    control, _ = manager()
    worker, _ = manager()
    sent = []
    control.publishers.append(sent.append)
    control.update_hosts("c", [host("10.0.0.2"), host("10.0.0.9")])
    worker.apply(sent[0])
    assert [(str(h), h.slot) for h in worker.get("c").hosts] == \
        [(str(h), h.slot) for h in control.get("c").hosts] == [("10.0.0.2:80", 1), ("10.0.0.9:80", 0)]


def test_consecutive_gateway_failures_and_max_ejection_percent():
    cm, store = manager(outlier_detection={"consecutive_gateway_failure": 2,
                                           "enforcing_consecutive_gateway_failure": 100,
                                           "max_ejection_percent": 10})
    c = cm.get("c")
    a, b = c.hosts
    a.outlier.put_gateway_failure()
    a.outlier.put_status(502)
    assert not a.healthy
    b.outlier.put_gateway_failure()
    b.outlier.put_gateway_failure()
    assert b.healthy  # one of two is already more than 10%
    stats = store.snapshot()
    assert stats["cluster.c.outlier_detection.ejections_enforced_consecutive_gateway_failure"] == 1
    assert stats["cluster.c.outlier_detection.ejections_overflow"] == 1


def test_success_rate_ejects_the_outlier():
    hosts = [{"address": f"10.0.0.{i}:80"} for i in range(1, 6)]
    cm, store = manager(hosts=hosts, outlier_detection={
        "success_rate_minimum_hosts": 5, "success_rate_request_volume": 10,
        "consecutive_5xx": 0, "max_ejection_percent": 50})
    c = cm.get("c")
    for i, h in enumerate(c.hosts):
        for n in range(20):
            h.outlier.put_status(500 if i == 4 and n % 2 else 200)
    c.outlier.check(now=0.0)
    assert [h.healthy for h in c.hosts] == [True, True, True, True, False]
    assert store.snapshot()["cluster.c.outlier_detection.ejections_enforced_success_rate"] == 1


def test_ejection_time_grows_with_each_ejection():
    cm, _ = manager(outlier_detection={"consecutive_5xx": 1, "base_ejection_time": "10s",
                                       "max_ejection_percent": 100})
    c = cm.get("c")
    d: OutlierDetector = c.outlier
    h = c.hosts[0]
    h.outlier.put_status(500)
    start = h.outlier.ejected_at
    d.check(start + 9)
    assert not h.healthy
    d.check(start + 10)
    assert h.healthy
    h.outlier.put_status(500)
    start = h.outlier.ejected_at
    d.check(start + 19)
    assert not h.healthy  # second ejection: 2 x 10 s
    d.check(start + 20)
    assert h.healthy


def test_dns_codec_round_trip():
    query = encode_query("svc.example.com", TYPE_A, 0x1234)
    assert query[12:29] == b"\x03svc\x07example\x03com\x00"
    answer = (struct.pack("!HHHHHH", 0x1234, 0x8180, 1, 2, 0, 0) + query[12:]
              + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + bytes([10, 0, 0, 1])
              + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 10, 4) + bytes([10, 0, 0, 2]))
    assert decode_answer(answer, 0x1234) == (["10.0.0.1", "10.0.0.2"], 10)
    nxdomain = struct.pack("!HHHHHH", 0x1234, 0x8183, 1, 0, 0, 0) + query[12:]
    assert decode_answer(nxdomain, 0x1234) == ([], 0)


def test_config_refuses_unknown_health_checkers_and_bad_check_config():
    def errors(hc: dict[str, object]) -> list[str]:
        raw = {"cluster_manager": {"clusters": [{"name": "c", "health_check": hc}]}}
        with pytest.raises(ConfigError) as exc:
            validate(raw, PLUGINS)
        return exc.value.errors

    assert errors({"protocol": "smtp"})[0].startswith(
        "cluster_manager.clusters[0].health_check.protocol: unknown health checker 'smtp'")
    assert errors({"protocol": "http", "check_config": {"http_check_config": {"codes": [{"start": 99}]}}})[0] \
        .startswith("cluster_manager.clusters[0].health_check.check_config.http_check_config.codes[0]")


def test_cluster_config_defaults_follow_mosn():
    c = ClusterConfig.model_validate({"name": "c", "health_check": {"protocol": ""},
                                     "circuit_breakers": None, "slow_start": {"aggression": 0}})
    assert c.health_check.protocol == "tcp" and c.health_check.interval == 15.0
    assert c.circuit_breakers.limits.max_requests == 0  # no limit
    assert c.slow_start.aggression == 1.0 and not c.slow_start.enabled
    assert ClusterConfig.model_validate({"name": "c", "health_check": {}}).health_check is None


def test_strict_dns_resolves_with_the_system_resolver_before_serving():
    cm, _ = manager(type="STRICT_DNS", hosts=[{"address": "localhost:8080", "weight": 3},
                                              {"address": "127.0.0.9:81"}])
    hosts = {str(h.address): h for h in cm.get("c").hosts}
    assert hosts["127.0.0.1:8080"].hostname == "localhost"
    assert hosts["127.0.0.1:8080"].weight == 3
    assert "127.0.0.9:81" in hosts  # an IP literal is its own answer
    assert "c" in cm.discovery


def test_health_checker_contract_and_thresholds():
    import anyio

    from mosn.upstream.health import ClusterHealthChecker, HealthCheckFailed

    cm, store = manager(health_check={
        "interval": "0.01s", "interval_jitter": "1ms", "initial_delay_seconds": "0.01s",
        "timeout": "0.05s", "unhealthy_threshold": 2, "healthy_threshold": 3})
    c = cm.get("c")
    a = c.hosts[0]
    script = [False, True, False, "slow", "wrong", True, True, True]
    verdicts: list[bool] = []
    set_active_health = c.set_active_health

    def record(host: Host, healthy: bool) -> None:
        verdicts.append(healthy)
        set_active_health(host, healthy)

    c.set_active_health = record  # type: ignore[method-assign]

    class Scripted:  # what a plugin's checker looks like
        async def check(self, host: Host) -> bool:
            if host is not a or not script:
                return True
            answer = script.pop(0)
            if answer == "slow":
                await anyio.sleep(1)
            if answer == "wrong":
                raise HealthCheckFailed("bad answer")
            return bool(answer)

    async def run() -> None:
        with anyio.move_on_after(2):
            async with anyio.create_task_group() as tg:
                tg.start_soon(ClusterHealthChecker(c, Scripted()).run)
                while script:
                    await anyio.sleep(0.01)
                await anyio.sleep(0.05)
                tg.cancel_scope.cancel()

    anyio.run(run)
    # Unhealthy after the 2nd failure in a row, healthy after the 3rd success in a row.
    assert verdicts == [False, True]
    assert a.healthy
    stats = store.snapshot()
    assert stats["cluster.c.health_check.network_failure"] == 1  # the slow one
    assert stats["cluster.c.health_check.failure"] == 4
    assert stats["cluster.c.health_check.healthy"] == 2


def test_a_host_set_that_moves_every_host_then_keeps_some():
    cm, store = manager(max_hosts=6)
    c = cm.get("c")
    old = list(c.hosts)
    moved = [host("10.0.1.1"), host("10.0.1.2")]
    c.set_hosts(moved)  # every present host leaves
    assert c.hosts == moved and all(h.slot == -1 for h in old)
    c.set_hosts([host("10.0.1.2"), host("10.0.1.3")])  # one stays: the same host
    assert c.hosts[0] is moved[1] and c.hosts[1].address == Address("10.0.1.3", 80)
    assert moved[0].slot == -1 and moved[1].slot >= 0
    c.hosts = [moved[1]]  # replaced from outside: the next set reads it
    c.set_hosts([host("10.0.1.2")])
    assert c.hosts == [moved[1]]
