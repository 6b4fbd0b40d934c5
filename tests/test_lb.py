"""Built-in load balancers: pure logic over host lists."""

from __future__ import annotations

import random
from collections import Counter

from mosn.config.types import Address
from mosn.upstream.cluster import Host
from mosn.upstream.lb import Random, RoundRobin, WeightedRoundRobin


def hosts(*weights: int) -> list[Host]:
    return [Host(Address("127.0.0.1", 8000 + i), weight=w) for i, w in enumerate(weights)]


def test_round_robin_takes_each_host_in_turn():
    hs = hosts(1, 1, 1)
    lb = RoundRobin(hs)
    assert [lb.choose_host() for _ in range(6)] == hs + hs


def test_round_robin_skips_excluded_and_unhealthy():
    hs = hosts(1, 1, 1)
    hs[1].healthy = False
    lb = RoundRobin(hs)
    assert {lb.choose_host(exclude=[hs[0]]) for _ in range(4)} == {hs[2]}
    assert lb.choose_host(exclude=[hs[0], hs[2]]) is None


def test_weighted_round_robin_is_exact_and_smooth():
    hs = hosts(5, 1, 1)
    lb = WeightedRoundRobin(hs)
    picks = [lb.choose_host() for _ in range(7 * 1000)]
    assert Counter(picks) == {hs[0]: 5000, hs[1]: 1000, hs[2]: 1000}
    # Smooth: nginx's order for 5,1,1 is a a b a c a a, so at most 4 in a row across
    # two cycles, where a plain weighted round robin gives runs of 5.
    run = longest = 0
    for h in picks:
        run = run + 1 if h is hs[0] else 0
        longest = max(longest, run)
    assert longest == 4


def test_weighted_round_robin_within_3_percent_over_20000_picks():
    hs = hosts(1, 2, 3, 4)
    lb = WeightedRoundRobin(hs)
    counts = Counter(lb.choose_host() for _ in range(20000))
    for h in hs:
        assert abs(counts[h] / 20000 - h.weight / 10) < 0.03


def test_weighted_round_robin_excludes():
    hs = hosts(3, 1)
    lb = WeightedRoundRobin(hs)
    assert {lb.choose_host(exclude=[hs[0]]) for _ in range(5)} == {hs[1]}


def test_random_is_uniform_and_honours_exclude():
    random.seed(7)
    hs = hosts(1, 1, 1, 1)
    lb = Random(hs)
    counts = Counter(lb.choose_host() for _ in range(20000))
    assert all(abs(counts[h] / 20000 - 0.25) < 0.03 for h in hs)
    assert {lb.choose_host(exclude=hs[:3]) for _ in range(20)} == {hs[3]}
    assert Random([]).choose_host() is None
