"""Load balancers beyond round robin: pure logic over host lists."""

from __future__ import annotations

import math
import random
import time
from collections import Counter

import pytest

from mosn.config.models import ClusterConfig
from mosn.config.types import Address
from mosn.upstream.cluster import Host
from mosn.upstream.hashing import hash64
from mosn.upstream.lb import (
    PEAK_EWMA_DECAY,
    LbContext,
    LeastConnection,
    LeastRequest,
    Maglev,
    PeakEwma,
    RequestRoundRobin,
    ResponseTimes,
    RingHash,
    SubsetLoadBalancer,
    WeightedRoundRobin,
)

PICKS = 20000


def hosts(*weights: int, base: int = 0) -> list[Host]:
    return [Host(Address(f"10.0.0.{base + i + 1}", 80), weight=w) for i, w in enumerate(weights)]


def shares(counts: Counter, hs: list[Host]) -> list[float]:
    total = sum(counts.values())
    return [counts[h] / total for h in hs]


def key(i: int) -> LbContext:
    return LbContext(hash_key=hash64(f"user-{i}"))


@pytest.mark.parametrize("lb_class", [LeastRequest, Maglev])
def test_weights_honoured_within_3_percent(lb_class):
    random.seed(1)
    hs = hosts(1, 2, 3, 4)
    lb = lb_class(hs, ClusterConfig(name="c"))
    picks = Counter(lb.choose_host((), key(i)) for i in range(PICKS))
    for h, share in zip(hs, shares(picks, hs)):
        assert abs(share - h.weight / 10) < 0.03, (h.weight, share)


def test_ring_hash_honours_weights_on_a_large_ring():
    hs = hosts(1, 2, 3, 4)
    config = ClusterConfig(name="c", lbconfig={"minimum_ring_size": 65536})
    lb = RingHash(hs, config)
    picks = Counter(lb.choose_host((), key(i)) for i in range(PICKS))
    for h, share in zip(hs, shares(picks, hs)):
        assert abs(share - h.weight / 10) < 0.03, (h.weight, share)


@pytest.mark.parametrize("lb_class", [RingHash, Maglev])
def test_consistent_hash_moves_few_keys_when_a_host_is_added(lb_class):
    before_hosts = hosts(1, 1, 1, 1)
    after_hosts = before_hosts + hosts(1, base=4)
    before = lb_class(before_hosts, ClusterConfig(name="c"))
    after = lb_class(after_hosts, ClusterConfig(name="c"))
    moved = sum(before.choose_host((), key(i)) is not after.choose_host((), key(i))
                for i in range(PICKS))
    assert moved / PICKS <= 1 / len(after_hosts) + 0.05


@pytest.mark.parametrize("lb_class", [RingHash, Maglev])
def test_consistent_hash_is_sticky_and_avoids_unhealthy_and_excluded(lb_class):
    hs = hosts(1, 1, 1)
    lb = lb_class(hs, ClusterConfig(name="c"))
    first = lb.choose_host((), key(7))
    assert all(lb.choose_host((), key(7)) is first for _ in range(10))
    assert lb.choose_host([first], key(7)) not in (first, None)
    first.healthy = False
    if hasattr(lb, "on_health_change"):
        lb.on_health_change()
    assert lb.choose_host((), key(7)) not in (first, None)
    # Keys of the healthy hosts stay where they were.
    fresh = lb_class(hosts(1, 1, 1), ClusterConfig(name="c"))
    others = [i for i in range(500) if str(fresh.choose_host((), key(i))) != str(first)]
    moved = sum(str(lb.choose_host((), key(i))) != str(fresh.choose_host((), key(i)))
                for i in others)
    assert moved <= len(others) * 0.02  # maglev's rebuilt table shifts a few


def test_consistent_hash_without_a_key_spreads_at_random():
    random.seed(3)
    hs = hosts(1, 1)
    lb = RingHash(hs, ClusterConfig(name="c"))
    assert set(lb.choose_host() for _ in range(100)) == set(hs)


def test_least_request_prefers_the_host_with_fewer_active_requests():
    random.seed(2)
    hs = hosts(1, 1, 1, 1)
    hs[0].active_requests = 10
    hs[1].active_requests = 10
    lb = LeastRequest(hs, ClusterConfig(name="c"))
    picks = Counter(lb.choose_host() for _ in range(4000))
    busy = (picks[hs[0]] + picks[hs[1]]) / 4000
    # Two distinct hosts are compared: a busy one wins only against the other busy one.
    assert busy < 0.2


def test_weighted_least_request_divides_weight_by_active_requests():
    random.seed(4)
    hs = hosts(2, 1)
    hs[0].active_requests = 3  # weight 2 / 4 = 0.5 against 1 / 1
    lb = LeastRequest(hs, ClusterConfig(name="c"))
    picks = Counter(lb.choose_host() for _ in range(3000))
    assert picks[hs[1]] > 1.6 * picks[hs[0]]


def test_slow_start_ramps_a_new_host_up():
    config = ClusterConfig(name="c", lb_type="LB_WEIGHTED_ROUNDROBIN",
                           slow_start={"mode": "duration", "slow_start_duration": "100s",
                                       "min_weight_percent": 0.1})
    hs = hosts(1, 1)
    hs[1].healthy_since = time.monotonic() - 10  # 10% of the way
    lb = WeightedRoundRobin(hs, config)
    picks = Counter(lb.choose_host() for _ in range(11000))
    assert abs(picks[hs[1]] / 11000 - 0.1 / 1.1) < 0.01
    hs[1].healthy_since = time.monotonic() - 100  # done ramping
    picks = Counter(lb.choose_host() for _ in range(10000))
    assert picks[hs[1]] == 5000


def test_slow_start_aggression_and_floor():
    config = ClusterConfig(name="c", slow_start={"mode": "duration", "slow_start_duration": "100s",
                                                 "aggression": 2, "min_weight_percent": 0.3})
    from mosn.upstream.lb import SlowStart
    ss = SlowStart(config.slow_start)
    h = hosts(1)[0]
    now = time.monotonic()
    h.healthy_since = now - 64
    assert ss.factor(h, now) == pytest.approx(0.8)  # (0.64) ** (1/2)
    h.healthy_since = now - 1
    assert ss.factor(h, now) == pytest.approx(0.3)
    h.healthy_since = 0.0
    assert ss.factor(h, now) == 1.0


def subset_hosts() -> list[Host]:
    hs = hosts(1, 1, 1, 1)
    hs[0].metadata = {"version": "v1", "zone": "a"}
    hs[1].metadata = {"version": "v1", "zone": "b"}
    hs[2].metadata = {"version": "v2", "zone": "a"}
    hs[3].metadata = {"zone": "b"}
    return hs


def subset_lb(hs: list[Host], **subset: object) -> SubsetLoadBalancer:
    config = ClusterConfig(name="c", lb_subset_config={
        "subset_selectors": [["version"], ["version", "zone"]], **subset})
    return SubsetLoadBalancer(hs, config, lambda h, c: WeightedRoundRobin(h, c))


def test_subset_picks_hosts_by_the_routes_metadata():
    hs = subset_hosts()
    lb = subset_lb(hs)
    v1 = {lb.choose_host((), LbContext(metadata_match={"version": "v1"})) for _ in range(10)}
    assert v1 == {hs[0], hs[1]}
    one = {lb.choose_host((), LbContext(metadata_match={"zone": "b", "version": "v1"}))
           for _ in range(10)}
    assert one == {hs[1]}
    # No criteria: every host (MOSN's rule).
    assert {lb.choose_host() for _ in range(8)} == set(hs)


def test_subset_fallback_policies():
    hs = subset_hosts()
    missing = LbContext(metadata_match={"version": "v9"})
    assert subset_lb(hs).choose_host((), missing) is None  # NO_FALLBACK
    assert {subset_lb(hs, fall_back_policy=1).choose_host((), missing) for _ in range(1)} <= set(hs)
    lb = subset_lb(hs, fall_back_policy="DEFAULT_SUBSET", default_subset={"zone": "b"})
    assert {lb.choose_host((), missing) for _ in range(10)} == {hs[1], hs[3]}
    # A subset whose hosts are all unhealthy falls back too.
    hs[2].healthy = False
    assert {lb.choose_host((), LbContext(metadata_match={"version": "v2"})) for _ in range(10)} \
        == {hs[1], hs[3]}


def test_config_names_mosn_fallback_numbers():
    assert ClusterConfig(name="c", lb_subset_config={"fall_back_policy": 2}) \
        .lb_subset_config.fall_back_policy == "DEFAULT_SUBSET"


def test_least_connection_prefers_the_host_with_fewer_connections():
    random.seed(3)
    hs = hosts(1, 1)
    hs[0].active_connections = 5
    hs[1].active_requests = 5  # requests do not count here
    lb = LeastConnection(hs, ClusterConfig(name="c", lb_type="LB_LEAST_CONNECTION"))
    assert Counter(lb.choose_host() for _ in range(100)) == {hs[1]: 100}


def test_weighted_least_connection_divides_weight_by_connections():
    hs = hosts(2, 1)
    hs[0].active_connections = 3  # 2 / 4 against 1 / 1
    lb = LeastConnection(hs, ClusterConfig(name="c"))
    picks = Counter(lb.choose_host() for _ in range(PICKS))
    assert picks[hs[1]] > 1.8 * picks[hs[0]], picks


def test_peak_ewma_tries_each_host_once_then_takes_the_fastest():
    hs = hosts(1, 1)
    lb = PeakEwma(hs, ClusterConfig(name="c"))
    tried = []
    for latency in (0.3, 0.001):
        host = lb.choose_host()
        tried.append(host)
        host.response_times.observe(latency, 200)
    assert tried == hs  # an untried host is tried before any other is reused
    assert {lb.choose_host() for _ in range(50)} == {hs[1]}


def test_peak_ewma_a_slow_response_counts_at_once_and_fades():
    rt = ResponseTimes()
    for _ in range(20):
        rt.observe(0.01, 200)
    rt.observe(1.0, 200)
    assert rt.latency == 1.0  # the peak replaces the average
    rt.stamp -= PEAK_EWMA_DECAY  # as if a decay time passed with no request
    assert rt.current_latency(time.monotonic()) == pytest.approx(1.0 / math.e, rel=0.01)


def test_peak_ewma_errors_and_active_requests_raise_the_cost():
    hs = hosts(1, 1)
    lb = PeakEwma(hs, ClusterConfig(name="c"))
    for h in hs:
        h.response_times.observe(0.01, 200)
    assert lb.cost(hs[0]) == pytest.approx(lb.cost(hs[1]), rel=0.01)
    hs[0].response_times.observe(0.01, 503)
    assert lb.cost(hs[0]) > 1.4 * lb.cost(hs[1])
    hs[1].active_requests = 3
    assert lb.cost(hs[1]) > 3.9 * lb.cost(hs[0]) / 1.5


def test_request_round_robin_starts_every_request_at_the_first_host():
    hs = hosts(1, 1, 1)
    lb = RequestRoundRobin(hs, ClusterConfig(name="c"))
    assert [lb.choose_host() for _ in range(3)] == [hs[0]] * 3
    assert lb.choose_host(exclude={hs[0]}) is hs[1]  # a retry moves on, in order
    hs[1].set_health_flag(1, True)
    assert lb.choose_host(exclude={hs[0]}) is hs[2]
    assert lb.choose_host(exclude={hs[0], hs[2]}) is None


class _Looked(set):
    """An exclusion set that counts the hosts a pick looked at."""

    looked = 0

    def __contains__(self, host: object) -> bool:
        self.looked += 1
        return super().__contains__(host)


def test_weighted_round_robin_of_equal_weights_picks_in_turn_without_a_pass_over_every_host():
    hs = hosts(*[1] * 1000)
    lb = WeightedRoundRobin(hs)
    excluded = _Looked({hs[1]})
    hs[2].healthy = False
    assert [lb.choose_host(excluded) for _ in range(3)] == [hs[0], hs[3], hs[4]]
    assert excluded.looked <= 6  # each pick looks at the hosts it passes, not all 1,000
    # unequal weights: the smooth order, over every host
    weighted = WeightedRoundRobin(hosts(3, 1))
    assert [str(weighted.choose_host()) for _ in range(4)] == [
        "10.0.0.1:80", "10.0.0.1:80", "10.0.0.2:80", "10.0.0.1:80"]
