"""Built-in load balancers, under MOSN's ``lb_type`` names.

A load balancer is built for a cluster's host list (again whenever the list
changes) and answers ``choose_host(exclude=(), context=None)``: a healthy host not in
``exclude`` (the hosts a caller already failed to reach), or None. ``context`` is an
:class:`LbContext` (the request's hash key and metadata criteria) or None; a load
balancer that takes no ``context`` parameter still works (the cluster adapts it).

A host is healthy when ``host.healthy`` is true: no active health check failed it and
outlier detection has not ejected it. Most balancers read that at each pick; one that
needs to know when it changes (maglev builds its table from healthy hosts) defines
``on_health_change()``, which the cluster calls.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
import time
from typing import Any, Callable, Collection, Sequence

from mosn.plugins import Extension, hookimpl
from mosn.upstream.cluster import Host
from mosn.upstream.hashing import combine, hash64

DEFAULT_CHOICE_COUNT = 2
"""Hosts sampled per pick by the least request balancer (Envoy's and MOSN's)."""
MAGLEV_TABLE_SIZE = 65537
"""Entries in a maglev lookup table: a prime far above the host count, so each host's
share is within a fraction of a percent of its weight (Envoy's default)."""
PEAK_EWMA_DECAY = 10.0
"""Seconds over which a host's past response times fade in ``LB_PEAK_EWMA`` (a
sample's weight falls to 1/e): Finagle's default decay time, and MOSN's default
duration for a host with no samples (``defaultPeakEwmaDuration``)."""
MIN_PEAK_EWMA_SUCCESS = 0.1
"""The floor of a host's success rate in its peak EWMA cost, so a failing host's
cost is at most ten times its latency's (MOSN's ``minPeakEwmaSuccessRate``)."""
MIN_PEAK_EWMA_COST = 1e-6
"""Seconds: the least cost a weighted ``LB_PEAK_EWMA`` pick divides a weight by (an
untried host costs 0)."""
MAX_RING_WALK = 64
"""Ring entries a ring hash pick walks past unhealthy or excluded hosts before it
falls back to scanning the hosts (a long walk means most hosts are down)."""


class LbContext:
    """What a request tells the load balancer: its hash key (``LB_RING_HASH``,
    ``LB_MAGLEV``; None picks at random), its subset criteria (the route's
    ``metadata_match``; None or empty uses every host), and, for a balancer that
    asks for them (``uses_downstream``: ``LB_ORIGINAL_DST``), the downstream
    connection and the request's headers (None for a TCP connection)."""

    __slots__ = ("hash_key", "metadata_match", "downstream", "headers")

    def __init__(self, hash_key: int | None = None,
                 metadata_match: dict[str, str] | None = None,
                 downstream: Any = None, headers: Any = None) -> None:
        self.hash_key = hash_key
        self.metadata_match = metadata_match
        self.downstream = downstream
        self.headers = headers


class SlowStart:
    """MOSN's ``slow_start`` (mode ``duration``): a host added to a running cluster, or
    back from failing health checks or an ejection, gets a weight growing over the
    window (``host.healthy_since`` says since when)."""

    __slots__ = ("window", "exponent", "floor")

    def __init__(self, config: Any) -> None:
        self.window: float = config.slow_start_duration
        self.exponent = 1.0 / config.aggression
        self.floor: float = config.min_weight_percent

    def factor(self, host: Host, now: float) -> float:
        since = host.healthy_since
        if not since:
            return 1.0
        elapsed = now - since
        if elapsed >= self.window:
            return 1.0
        f = max(1.0, elapsed) / self.window  # MOSN counts the first second as one
        if self.exponent != 1.0:
            f = f ** self.exponent
        return max(f, self.floor)


def slow_start_of(config: Any) -> SlowStart | None:
    ss = getattr(config, "slow_start", None)
    return SlowStart(ss) if ss is not None and ss.enabled else None


def _pick_any(hosts: Sequence[Host], exclude: Collection[Host]) -> Host | None:
    candidates = [h for h in hosts if h.healthy and h not in exclude]
    return random.choice(candidates) if candidates else None


class RoundRobin:
    """Each healthy host in turn."""

    def __init__(self, hosts: Sequence[Host], config: Any = None) -> None:
        self.hosts = list(hosts)
        self._next = 0

    def choose_host(self, exclude: Collection[Host] = (), context: Any = None) -> Host | None:
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

    def choose_host(self, exclude: Collection[Host] = (), context: Any = None) -> Host | None:
        hosts = self.hosts
        if hosts:
            host = random.choice(hosts)
            if host.healthy and host not in exclude:
                return host
        return _pick_any(hosts, exclude)


class WeightedRoundRobin:
    """Smooth weighted round robin (nginx's): over any run of sum(weights) picks each
    host is chosen exactly ``weight`` times, spread out rather than in bursts. With
    ``slow_start``, a ramping host counts with its reduced weight.

    Hosts of one weight and no slow start are taken in turn (:class:`RoundRobin`,
    what the smooth order is then), a pick in constant time instead of a pass over
    every host: Envoy's round robin also drops to unweighted picks when all weights
    are equal (``EdfLoadBalancerBase``). Weights change only with a new host set,
    which builds a new balancer."""

    def __init__(self, hosts: Sequence[Host], config: Any = None) -> None:
        self.hosts = list(hosts)
        self._current = [0.0] * len(self.hosts)
        self._slow_start = slow_start_of(config)
        self._in_turn: RoundRobin | None = None
        if self._slow_start is None and len({h.weight for h in self.hosts}) <= 1:
            self._in_turn = RoundRobin(self.hosts)

    def choose_host(self, exclude: Collection[Host] = (), context: Any = None) -> Host | None:
        if self._in_turn is not None:
            return self._in_turn.choose_host(exclude)
        best, total = -1, 0.0
        current = self._current
        slow_start = self._slow_start
        now = time.monotonic() if slow_start is not None else 0.0
        for i, host in enumerate(self.hosts):
            if not host.healthy or host in exclude:
                continue
            weight = host.weight
            if slow_start is not None and host.healthy_since:
                weight *= slow_start.factor(host, now)
            current[i] += weight
            total += weight
            if best < 0 or current[i] > current[best]:
                best = i
        if best < 0:
            return None
        current[best] -= total
        return self.hosts[best]


class LeastRequest:
    """Fewest active requests (MOSN's ``LB_LEAST_REQUEST``, Envoy's algorithm).

    Equal weights: the best of ``choice_count`` distinct healthy hosts sampled at
    random (power of two choices). Unequal weights, or a slow start: earliest deadline
    first where a host's weight is ``weight / (active + 1) ** active_request_bias``,
    so an idle cluster is balanced exactly by weight and a busy host is passed over.
    Active requests are counted per worker (``host.active_requests``).

    Subclasses change what "busy" is: :meth:`cost` (lower is better).
    """

    def __init__(self, hosts: Sequence[Host], config: Any = None) -> None:
        self.hosts = list(hosts)
        lbc = getattr(config, "lbconfig", None)
        self.choice_count = lbc.choice_count if lbc is not None else DEFAULT_CHOICE_COUNT
        self.bias = lbc.active_request_bias if lbc is not None else 1.0
        self._slow_start = slow_start_of(config)
        self._setup(config)
        weights = {h.weight for h in self.hosts}
        self._weighted = len(weights) > 1 or self._slow_start is not None
        self._queue: list[tuple[float, int, Host]] = []
        self._seq = 0
        if self._weighted:
            # A random start so workers built at the same moment do not pick in step.
            for h in self.hosts:
                self._push(h, random.random() / self._weight(h, time.monotonic()))

    def _setup(self, config: Any) -> None:
        """Anything a subclass needs before the first pick."""

    def cost(self, host: Host) -> float:
        """How busy the host is (the unweighted pick takes the lowest)."""
        return host.active_requests

    def _biased(self, load: float) -> float:
        """``(load + 1) ** active_request_bias``."""
        if not load or not self.bias:
            return 1.0
        return (load + 1) ** self.bias if self.bias != 1.0 else load + 1

    def _divisor(self, host: Host) -> float:
        """What the host's weight is divided by for the weighted pick."""
        return self._biased(host.active_requests)

    def _weight(self, host: Host, now: float) -> float:
        w = float(host.weight)
        if self._slow_start is not None and host.healthy_since:
            w *= self._slow_start.factor(host, now)
        return w / self._divisor(host)

    def _push(self, host: Host, deadline: float) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (deadline, self._seq, host))

    def choose_host(self, exclude: Collection[Host] = (), context: Any = None) -> Host | None:
        if self._weighted:
            return self._choose_edf(exclude)
        hosts = self.hosts
        n = len(hosts)
        if n == 0:
            return None
        best: Host | None = None
        if n <= self.choice_count:
            sample: Sequence[Host] = hosts
        else:
            sample = random.sample(hosts, self.choice_count)
        cost = self.cost
        best_cost = 0.0
        for host in sample:
            if host.healthy and host not in exclude:
                c = cost(host)
                if best is None or c < best_cost:
                    best, best_cost = host, c
        if best is None:
            candidates = [h for h in hosts if h.healthy and h not in exclude]
            if candidates:
                best = min(candidates, key=cost)
        return best

    def _choose_edf(self, exclude: Collection[Host]) -> Host | None:
        queue = self._queue
        skipped = []
        chosen = None
        now = time.monotonic()
        while queue:
            deadline, _, host = heapq.heappop(queue)
            if host.healthy and host not in exclude:
                chosen = host
                self._push(host, deadline + 1.0 / self._weight(host, now))
                break
            skipped.append((deadline, host))
        for deadline, host in skipped:
            self._push(host, deadline + 1.0 / self._weight(host, now))
        return chosen


class LeastConnection(LeastRequest):
    """Fewest open connections (MOSN's ``LB_LEAST_CONNECTION``): as ``LB_LEAST_REQUEST``
    with a host's connections from this worker (``host.active_connections``) in place
    of its requests; ``lbconfig.active_request_bias`` biases the connections (MOSN's)."""

    def cost(self, host: Host) -> float:
        return host.active_connections

    def _divisor(self, host: Host) -> float:
        return self._biased(host.active_connections)


class ResponseTimes:
    """A host's recent response times and error rates for ``LB_PEAK_EWMA``: moving
    averages that fade over ``PEAK_EWMA_DECAY`` seconds, where a response slower than
    the average replaces it at once (the "peak", Finagle's). The latency also fades
    toward zero while the host gets no request, so a host that was slow is tried again
    in time: avoided from its first slow response, forgiven gradually."""

    __slots__ = ("latency", "total", "client_errors", "server_errors", "stamp")

    def __init__(self) -> None:
        self.latency = 0.0
        self.total = self.client_errors = self.server_errors = 0.0
        self.stamp = 0.0

    def _keep(self, now: float) -> float:
        return math.exp(-(now - self.stamp) / PEAK_EWMA_DECAY) if self.stamp else 0.0

    def observe(self, seconds: float, status: int) -> None:
        """One request ended after ``seconds`` with ``status`` (HTTP-like; 0: no
        response, counted as a server error)."""
        now = time.monotonic()
        keep = self._keep(now)
        self.stamp = now
        latency = self.latency * keep
        self.latency = seconds if seconds >= latency else latency + (seconds - latency) * (1 - keep)
        self.total = self.total * keep + 1.0
        self.client_errors = self.client_errors * keep + (400 <= status < 500)
        self.server_errors = self.server_errors * keep + (status >= 500 or status == 0)

    def current_latency(self, now: float) -> float:
        return self.latency * self._keep(now)


class PeakEwma(LeastRequest):
    """The lowest expected cost (MOSN's ``LB_PEAK_EWMA``): a host's cost is its peak
    EWMA response time x ``(active requests + 1) ** active_request_bias`` / its
    success rate, the rate ``(1 - client errors) ** client_error_bias x (1 - server
    errors) ** server_error_bias`` (at least ``MIN_PEAK_EWMA_SUCCESS``). A host with
    no response yet costs nothing while it has no request in flight (it is tried
    once), then as much as the best host. Equal weights: the cheapest of
    ``choice_count`` random hosts (all when there are no more); unequal: earliest
    deadline first by ``weight / cost``."""

    def _setup(self, config: Any) -> None:
        lbc = getattr(config, "lbconfig", None)
        self.client_bias = lbc.client_error_bias if lbc is not None else 1.0
        self.server_bias = lbc.server_error_bias if lbc is not None else 1.0
        for host in self.hosts:
            if host.response_times is None:
                host.response_times = ResponseTimes()

    def cost(self, host: Host) -> float:
        rt: ResponseTimes = host.response_times
        now = time.monotonic()
        if not rt.total:
            if not host.active_requests:
                return 0.0
            latency = self._best(now)
        else:
            latency = rt.current_latency(now)
        success = ((1.0 - rt.client_errors / (rt.total + 1.0)) ** self.client_bias
                   * (1.0 - rt.server_errors / (rt.total + 1.0)) ** self.server_bias)
        return latency * self._biased(host.active_requests) / max(success, MIN_PEAK_EWMA_SUCCESS)

    def _best(self, now: float) -> float:
        sampled = [h.response_times.current_latency(now) for h in self.hosts
                   if h.response_times.total]
        return min(sampled) if sampled else PEAK_EWMA_DECAY

    def _divisor(self, host: Host) -> float:
        return max(self.cost(host), MIN_PEAK_EWMA_COST)


class RequestRoundRobin:
    """MOSN's ``LB_REQUEST_ROUNDROBIN``: every request starts at the first host, and
    each retry of it moves on to the next healthy host in the listed order (failover
    in a fixed order, as opposed to spreading requests)."""

    def __init__(self, hosts: Sequence[Host], config: Any = None) -> None:
        self.hosts = list(hosts)

    def choose_host(self, exclude: Collection[Host] = (), context: Any = None) -> Host | None:
        for host in self.hosts:
            if host.healthy and host not in exclude:
                return host
        return None


def _random_key(context: Any) -> int:
    key = context.hash_key if context is not None else None
    return key if key is not None else random.getrandbits(64)


class RingHash:
    """Consistent hashing on a ring (Envoy's ``RING_HASH``): each host owns points on
    a 64-bit ring in proportion to its weight; a request goes to the owner of the
    first point at or after its hash key, skipping unhealthy and excluded hosts.
    Adding one host to N moves about 1/(N+1) of the keys. Ring size: at least
    ``lbconfig.minimum_ring_size`` points, at most ``maximum_ring_size`` (Envoy's 1024
    and 8M)."""

    def __init__(self, hosts: Sequence[Host], config: Any = None) -> None:
        self.hosts = list(hosts)
        lbc = getattr(config, "lbconfig", None)
        min_size = lbc.minimum_ring_size if lbc is not None else 1024
        max_size = lbc.maximum_ring_size if lbc is not None else 8 * 1024 * 1024
        points: list[tuple[int, int]] = []
        if self.hosts:
            # weight x P points per host, P a power of two: the ring has at least
            # minimum_ring_size points, and adding or removing a host changes no other
            # host's points unless P itself has to change (the total halves or doubles).
            total = sum(h.weight for h in self.hosts)
            per_weight = 1 << max(0, math.ceil(math.log2(min_size / total)))
            while per_weight > 1 and per_weight * total > max_size:
                per_weight >>= 1
            for i, host in enumerate(self.hosts):
                name = str(host.address)
                for n in range(host.weight * per_weight):
                    points.append((hash64(f"{name}_{n}"), i))
        points.sort()
        self._hashes = [p[0] for p in points]
        self._owners = [self.hosts[p[1]] for p in points]

    def choose_host(self, exclude: Collection[Host] = (), context: Any = None) -> Host | None:
        hashes = self._hashes
        if not hashes:
            return None
        key = _random_key(context)
        n = len(hashes)
        i = bisect.bisect_left(hashes, key)
        owners = self._owners
        for step in range(min(n, MAX_RING_WALK)):
            host = owners[(i + step) % n]
            if host.healthy and host not in exclude:
                return host
        return _pick_any(self.hosts, exclude)


class Maglev:
    """Maglev consistent hashing (Google's paper, Envoy's and MOSN's ``LB_MAGLEV``): a
    lookup table of ``MAGLEV_TABLE_SIZE`` entries filled from each host's permutation
    in proportion to its weight, built over the healthy hosts (rebuilt when health
    changes); a request's hash key indexes it. An excluded host's keys (on a retry)
    go to the next host of the table."""

    def __init__(self, hosts: Sequence[Host], config: Any = None) -> None:
        self.hosts = list(hosts)
        self._table: list[Host] = []
        self._built_for: tuple[bool, ...] = ()
        self.on_health_change()

    def on_health_change(self) -> None:
        health = tuple(h.healthy for h in self.hosts)
        if health == self._built_for and self._table:
            return
        self._built_for = health
        healthy = [h for h in self.hosts if h.healthy]
        self._table = build_maglev_table(healthy, MAGLEV_TABLE_SIZE)

    def choose_host(self, exclude: Collection[Host] = (), context: Any = None) -> Host | None:
        table = self._table
        if not table:
            return None
        key = _random_key(context)
        size = len(table)
        host = table[key % size]
        if host.healthy and host not in exclude:
            return host
        for attempt in range(1, 8):  # a few more places the same key would have gone
            host = table[combine(key, attempt) % size]
            if host.healthy and host not in exclude:
                return host
        return _pick_any(self.hosts, exclude)


def build_maglev_table(hosts: Sequence[Host], size: int) -> list[Host]:
    """Fill ``size`` entries (a prime) from each host's permutation ``(offset + j *
    skip) % size``, a host taking a turn while its entries are below its weight's
    share (Envoy's weighted variant)."""
    if not hosts:
        return []
    offsets, skips = [], []
    for h in hosts:
        name = str(h.address)
        offsets.append(hash64(name + "#offset") % size)
        skips.append(hash64(name + "#skip") % (size - 1) + 1)
    weights = [h.weight for h in hosts]
    top = max(weights)
    table: list[int] = [-1] * size
    nexts = [0] * len(hosts)
    counts = [0] * len(hosts)
    filled = 0
    iteration = 0
    order = range(len(hosts))
    while filled < size:
        iteration += 1
        for i in order:
            if counts[i] * top >= weights[i] * iteration:
                continue  # ahead of its share this round
            offset, skip, j = offsets[i], skips[i], nexts[i]
            c = (offset + j * skip) % size
            while table[c] >= 0:
                j += 1
                c = (offset + j * skip) % size
            table[c] = i
            nexts[i] = j + 1
            counts[i] += 1
            filled += 1
            if filled == size:
                break
    return [hosts[i] for i in table]


# -- subsets ------------------------------------------------------------------------


class SubsetLoadBalancer:
    """MOSN's subset load balancing (``lb_subset_config``): for each selector (a list
    of metadata keys), hosts are grouped by their values for those keys and each group
    gets its own load balancer of the cluster's ``lb_type``. A request whose criteria
    (the route's ``metadata_match``) name exactly a selector's keys goes to its group;
    otherwise, or when that group has no healthy host, the fallback policy applies:
    ``NO_FALLBACK`` (no host), ``ANY_ENDPOINT`` (every host), ``DEFAULT_SUBSET`` (the
    hosts matching ``default_subset``). A request with no criteria uses every host
    (MOSN's rule)."""

    def __init__(self, hosts: Sequence[Host], config: Any,
                 factory: Callable[[Sequence[Host], Any], Any],
                 on_selected: Callable[[], None] = lambda: None,
                 on_fallback: Callable[[], None] = lambda: None) -> None:
        self.hosts = list(hosts)
        subset = config.lb_subset_config
        self._on_selected = on_selected
        self._on_fallback = on_fallback
        self.full = factory(self.hosts, config)
        self._subsets: dict[tuple[tuple[str, str], ...], Any] = {}
        self._keysets = {tuple(sorted(set(keys))) for keys in subset.subset_selectors}
        groups: dict[tuple[tuple[str, str], ...], list[Host]] = {}
        for keys in self._keysets:
            for host in self.hosts:
                md = host.metadata
                if all(k in md for k in keys):
                    groups.setdefault(tuple((k, str(md[k])) for k in keys), []).append(host)
        self._subsets = {k: factory(v, config) for k, v in groups.items()}
        policy = subset.fall_back_policy
        if policy == "ANY_ENDPOINT":
            self.fallback: Any = self.full
        elif policy == "DEFAULT_SUBSET":
            default = {k: str(v) for k, v in subset.default_subset.items()}
            members = [h for h in self.hosts
                       if all(k in h.metadata and str(h.metadata[k]) == v
                              for k, v in default.items())]
            self.fallback = factory(members, config)
        else:
            self.fallback = None

    def choose_host(self, exclude: Collection[Host] = (), context: Any = None) -> Host | None:
        criteria = context.metadata_match if context is not None else None
        if not criteria:
            return self.full.choose_host(exclude, context)
        key = tuple(sorted((k, str(v)) for k, v in criteria.items()))
        lb = self._subsets.get(key)
        if lb is not None:
            host = lb.choose_host(exclude, context)
            if host is not None:
                self._on_selected()
                return host
        if self.fallback is None:
            return None
        self._on_fallback()
        return self.fallback.choose_host(exclude, context)

    def on_health_change(self) -> None:
        for lb in (self.full, self.fallback, *self._subsets.values()):
            hook = getattr(lb, "on_health_change", None)
            if hook is not None:
                hook()


@hookimpl
def mosn_load_balancers() -> list[Extension]:
    return [
        Extension("LB_ROUNDROBIN", RoundRobin, description=RoundRobin.__doc__ or ""),
        Extension("LB_RANDOM", Random, description=Random.__doc__ or ""),
        Extension("LB_WEIGHTED_ROUNDROBIN", WeightedRoundRobin,
                  description="smooth weighted round robin"),
        Extension("LB_LEAST_REQUEST", LeastRequest,
                  description="fewest active requests of two random hosts, weight-aware"),
        Extension("LB_LEAST_CONNECTION", LeastConnection,
                  description="fewest open connections of two random hosts, weight-aware"),
        Extension("LB_PEAK_EWMA", PeakEwma,
                  description="lowest peak-EWMA response time x active requests / "
                              "success rate of two random hosts"),
        Extension("LB_REQUEST_ROUNDROBIN", RequestRoundRobin,
                  description=RequestRoundRobin.__doc__ or ""),
        Extension("LB_RING_HASH", RingHash,
                  description="consistent hashing on a ring by the route's hash_policy"),
        Extension("LB_MAGLEV", Maglev,
                  description="maglev consistent hashing by the route's hash_policy"),
    ]
