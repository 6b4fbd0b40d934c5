"""Outlier detection: passive health checking from the traffic itself (Envoy's rules).

The proxy reports each upstream response status and each failure before a response
(connect failure, reset, timeout); the TCP proxy reports connects. A host is ejected
(taken out of load balancing, in this worker) when it returns ``consecutive_5xx``
5xx in a row, ``consecutive_gateway_failure`` gateway failures (502, 503, 504 and the
failures above) in a row, or, once per ``interval``, a success rate far below the
others' (``mean - stdev * success_rate_stdev_factor / 1000``, among hosts with at
least ``success_rate_request_volume`` requests, when at least
``success_rate_minimum_hosts`` have). Each ``enforcing_*`` percentage is the chance
a detection is acted on. An ejected host returns after ``base_ejection_time`` times
the number of times it was ejected (capped by ``max_ejection_time``), checked every
``interval``; the multiplier shrinks by one for each interval it stays in. No more
than ``max_ejection_percent`` of the hosts are ejected at once, but always one may be.

Each worker process judges from its own traffic: a host can be ejected in one worker
and not (yet) in another; the stats are summed over the workers.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from typing import Any

from mosn.upstream.cluster import FAILED_OUTLIER_CHECK, Host

_GATEWAY = frozenset({502, 503, 504})


class HostMonitor:
    """One host's counts in one worker."""

    __slots__ = ("detector", "host", "consecutive_5xx", "consecutive_gateway", "ok", "total",
                 "ejected", "ejected_at", "multiplier")

    def __init__(self, detector: "OutlierDetector", host: Host) -> None:
        self.detector = detector
        self.host = host
        self.consecutive_5xx = 0
        self.consecutive_gateway = 0
        self.ok = 0
        self.total = 0
        self.ejected = False
        self.ejected_at = 0.0
        self.multiplier = 0

    def put_status(self, status: int) -> None:
        self.total += 1
        if status < 500:
            self.ok += 1
            self.consecutive_5xx = 0
            self.consecutive_gateway = 0
            return
        d = self.detector
        self.consecutive_5xx += 1
        if status in _GATEWAY:
            self.consecutive_gateway += 1
        else:
            self.consecutive_gateway = 0
        if d.consecutive_5xx and self.consecutive_5xx >= d.consecutive_5xx:
            self.consecutive_5xx = 0
            d.detected(self, d.enforcing_5xx, d.stats.outlier_detection_ejections_enforced_consecutive_5xx)
        elif d.consecutive_gateway and self.consecutive_gateway >= d.consecutive_gateway:
            self.consecutive_gateway = 0
            d.detected(self, d.enforcing_gateway,
                       d.stats.outlier_detection_ejections_enforced_consecutive_gateway_failure)

    def put_gateway_failure(self) -> None:
        """A connect failure, reset or timeout: counted as a 503 (Envoy does so when
        local-origin errors are not split out)."""
        self.put_status(503)

    def put_success(self) -> None:
        self.put_status(200)


class OutlierDetector:
    """A cluster's outlier detection in this worker."""

    def __init__(self, cluster: Any, config: Any) -> None:
        self.cluster = cluster
        self.config = config
        self.stats = cluster.more
        self.consecutive_5xx = config.consecutive_5xx
        self.consecutive_gateway = config.consecutive_gateway_failure
        self.enforcing_5xx = config.enforcing_consecutive_5xx
        self.enforcing_gateway = config.enforcing_consecutive_gateway_failure
        self._timer: asyncio.TimerHandle | None = None

    def track(self, host: Host) -> None:
        host.outlier = HostMonitor(self, host)

    def forget(self, host: Host) -> None:
        monitor = host.outlier
        if monitor is not None and monitor.ejected:
            self._values()[self.stats.outlier_detection_ejections_active] -= 1
            self._values()[host.stats.outlier_ejected] -= 1  # type: ignore[union-attr]
        host.outlier = None

    def _values(self) -> Any:
        return self.cluster.store.values

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.config.interval, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- ejecting and returning --------------------------------------------------------

    def detected(self, monitor: HostMonitor, enforcing: int, reason_index: int) -> None:
        if monitor.ejected or not enforcing or random.randrange(100) >= enforcing:
            return
        hosts = self.cluster.hosts
        ejected = sum(1 for h in hosts if h.outlier is not None and h.outlier.ejected)
        v = self._values()
        if ejected and ejected * 100 >= self.config.max_ejection_percent * len(hosts):
            v[self.stats.outlier_detection_ejections_overflow] += 1
            return
        monitor.ejected = True
        monitor.ejected_at = time.monotonic()
        monitor.multiplier += 1
        v[self.stats.outlier_detection_ejections_enforced_total] += 1
        v[self.stats.outlier_detection_ejections_active] += 1
        v[reason_index] += 1
        host = monitor.host
        v[host.stats.outlier_ejections] += 1  # type: ignore[union-attr]
        v[host.stats.outlier_ejected] += 1  # type: ignore[union-attr]
        if host.set_health_flag(FAILED_OUTLIER_CHECK, True):
            self.cluster.health_changed()

    def _tick(self) -> None:
        self._timer = None
        try:
            self.check(time.monotonic())
        finally:
            self.start()

    def check(self, now: float) -> None:
        """One interval: return hosts whose time is up, apply the success rate rule."""
        config = self.config
        changed = False
        v = self._values()
        monitors = [h.outlier for h in self.cluster.hosts if h.outlier is not None]
        for m in monitors:
            if m.ejected:
                span = config.base_ejection_time * m.multiplier
                span = min(span, max(config.base_ejection_time, config.max_ejection_time))
                if now - m.ejected_at >= span:
                    m.ejected = False
                    v[self.stats.outlier_detection_ejections_active] -= 1
                    v[self.stats.outlier_detection_ejections_returned_total] += 1
                    v[m.host.stats.outlier_ejected] -= 1  # type: ignore[union-attr]
                    changed |= m.host.set_health_flag(FAILED_OUTLIER_CHECK, False)
            elif m.multiplier > 0:
                m.multiplier -= 1
        if changed:
            self.cluster.health_changed()
        self._success_rate(monitors)
        for m in monitors:
            m.ok = m.total = 0

    def _success_rate(self, monitors: list[HostMonitor]) -> None:
        config = self.config
        if not config.enforcing_success_rate:
            return
        volume = [m for m in monitors if not m.ejected and m.total >= config.success_rate_request_volume]
        if len(volume) < config.success_rate_minimum_hosts:
            return
        rates = [m.ok / m.total for m in volume]
        mean = sum(rates) / len(rates)
        stdev = math.sqrt(sum((r - mean) ** 2 for r in rates) / len(rates))
        threshold = mean - stdev * config.success_rate_stdev_factor / 1000.0
        for m, rate in zip(volume, rates):
            if rate < threshold:
                self.detected(m, config.enforcing_success_rate,
                              self.stats.outlier_detection_ejections_enforced_success_rate)
