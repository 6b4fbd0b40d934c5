"""Built-in load balancers, under MOSN's ``lb_type`` names.

A load balancer is built for a cluster's host list and answers
``choose_host(exclude)``: a healthy host not in ``exclude`` (the hosts a caller
already failed to reach), or None.
"""

from __future__ import annotations

import random
from typing import Any, Collection, Sequence

from mosn.plugins import Extension, hookimpl
from mosn.upstream.cluster import Host


class RoundRobin:
    """Each healthy host in turn."""

    def __init__(self, hosts: Sequence[Host], config: Any = None) -> None:
        self.hosts = list(hosts)
        self._next = 0

    def choose_host(self, exclude: Collection[Host] = ()) -> Host | None:
        hosts = self.hosts
        n = len(hosts)
        for _ in range(n):
            host = hosts[self._next % n]
            self._next += 1
            if host.healthy and host not in exclude:
                return host
        return None


class Random:
    """A healthy host picked uniformly at random."""

    def __init__(self, hosts: Sequence[Host], config: Any = None) -> None:
        self.hosts = list(hosts)

    def choose_host(self, exclude: Collection[Host] = ()) -> Host | None:
        if not exclude and all(h.healthy for h in self.hosts):
            return random.choice(self.hosts) if self.hosts else None
        candidates = [h for h in self.hosts if h.healthy and h not in exclude]
        return random.choice(candidates) if candidates else None


class WeightedRoundRobin:
    """Smooth weighted round robin (nginx's): over any run of sum(weights) picks each
    host is chosen exactly ``weight`` times, spread out rather than in bursts."""

    def __init__(self, hosts: Sequence[Host], config: Any = None) -> None:
        self.hosts = list(hosts)
        self._current = [0] * len(self.hosts)

    def choose_host(self, exclude: Collection[Host] = ()) -> Host | None:
        best, total = -1, 0
        current = self._current
        for i, host in enumerate(self.hosts):
            if not host.healthy or host in exclude:
                continue
            current[i] += host.weight
            total += host.weight
            if best < 0 or current[i] > current[best]:
                best = i
        if best < 0:
            return None
        current[best] -= total
        return self.hosts[best]


@hookimpl
def mosn_load_balancers() -> list[Extension]:
    return [
        Extension("LB_ROUNDROBIN", RoundRobin, description=RoundRobin.__doc__ or ""),
        Extension("LB_RANDOM", Random, description=Random.__doc__ or ""),
        Extension("LB_WEIGHTED_ROUNDROBIN", WeightedRoundRobin,
                  description="smooth weighted round robin"),
    ]
