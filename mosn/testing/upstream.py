"""Conformance suites for the upstream kinds of plugin: load balancers, health
checkers and cluster types. Each is a base class a test subclasses (see
docs/plugins.md); pytest runs its tests on the plugin, part of them on the plugin's
objects directly (real :class:`mosn.upstream.Host` objects, real sockets), part
through a real mosn (``tcp_proxy`` traffic to TCP backends that name themselves, or
the health check stats).

- :class:`LoadBalancerConformance`: picks follow the declared weights; unhealthy and
  excluded hosts are never chosen; no host gives None; a host back to health is
  chosen again; host sets rebuilt while picks go on; traffic through mosn follows a
  host set that changes under it with no connection lost.
- :class:`HealthCheckerConformance`: a healthy answer passes, a wrong one fails, a
  refused or closed connection is a network failure, a silent host times out and its
  connection is closed, no connection is left open; through mosn a host turns
  unhealthy, does not flap back on alternating answers, and recovers.
- :class:`ClusterTypeConformance`: the hosts the source lists, and (for a type that
  follows changes) each change, through mosn's loader and in traffic.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import random
import socketserver
import threading
import time
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

import pytest

from mosn.config import ClusterConfig, parse_address, validate
from mosn.plugins import BuildContext, PluginHost
from mosn.testing.probes import PROBES
from mosn.testing.process import (
    MosnProcess,
    assert_reported,
    env_with_path,
    free_port,
    plugin_site,
)
from mosn.testing.traffic import NamedBackend, _Counting, _Served, which_backend
from mosn.upstream import HealthCheckFailed, Host, LbContext

__all__ = ["ClusterTypeConformance", "HealthCheckerConformance", "HealthTarget",
           "LoadBalancerConformance", "wait_until"]

WAIT = 10.0
"""Seconds a test waits for mosn to act on a change (a loaded CI machine)."""
POLL = 0.05
"""Seconds between looks at what a test waits for."""
WEIGHTS = (1, 2, 3, 4)
"""The hosts' weights in the distribution tests."""
REBUILDS = 20
"""Host sets a balancer is built for in a row (maglev and ring hash take ~0.1 s each)."""


def wait_until(condition: Callable[[], Any], timeout: float = WAIT, what: str = "") -> Any:
    """``condition()`` once it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what or condition}")
        time.sleep(POLL)


@functools.lru_cache(maxsize=None)
def _extension(kind: str, name: str) -> Any:
    """The installed extension (looked up once: a failed look-up is not kept)."""
    host = PluginHost().load()
    ext = host.get(kind, name)
    if ext is None:
        pytest.fail(f"no {kind.replace('_', ' ')} {name!r} is installed (known: "
                    f"{', '.join(host.names(kind))}); pip install -e it")
    return ext


def _hosts(*weights: int) -> list[Host]:
    return [Host(parse_address(f"127.0.0.{i + 1}:{9000 + i}"), weight=w)
            for i, w in enumerate(weights)]


def _cluster_model(**fields: Any) -> ClusterConfig:
    return ClusterConfig.model_validate({"name": "kit", **fields})


def with_listener(cluster: dict[str, Any], port: int = 0) -> dict[str, Any]:
    """A whole config for ``cluster``: a ``tcp_proxy`` listener to it (a config that
    serves nothing is refused); ``port`` 0 when it is only validated."""
    return {"servers": [{"graceful_timeout": "1s", "listeners": [{
        "name": "kit", "address": f"127.0.0.1:{port}",
        "filter_chains": [{"filters": [{"type": "tcp_proxy",
                                        "config": {"cluster": cluster["name"]}}]}]}]}],
        "cluster_manager": {"clusters": [cluster]}}


class _TrafficMesh:
    """mosn with a ``tcp_proxy`` listener in front of one cluster, and a client."""

    def __init__(self, workdir: Path, cluster: dict[str, Any], site: Path | None = None) -> None:
        self.port = free_port()
        config = with_listener({"name": "kit", **cluster}, self.port)
        self.mosn = MosnProcess(config, workdir, env=env_with_path(site) if site else None)

    def hits(self, n: int) -> collections.Counter[str]:
        """Which backend each of ``n`` connections reached ("" for none)."""
        return collections.Counter(which_backend(self.port) for _ in range(n))


class _Traffic:
    """Connections through a mesh on a thread, one after another, until stopped."""

    def __init__(self, mesh: _TrafficMesh) -> None:
        self.mesh = mesh
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen.append(which_backend(self.mesh.port))

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(WAIT)
        return self.seen


# -- load balancers -----------------------------------------------------------------------------


class LoadBalancerConformance:
    """The suite; a subclass sets ``lb_type`` (and ``weighted``, ``cluster``...)."""

    lb_type: ClassVar[str] = ""
    """The name the plugin registers with ``mosn_load_balancers`` (a cluster's ``lb_type``)."""
    weighted: ClassVar[bool] = True
    """The balancer honours host weights; False: it spreads picks evenly."""
    cluster: ClassVar[dict[str, Any]] = {}
    """More of the cluster's config the balancer reads (``lbconfig`` ...)."""
    picks: ClassVar[int] = 20_000
    """Picks per distribution test."""
    tolerance: ClassVar[float] = 0.1
    """How far (relative) each host's share may be from what its weight says."""

    def make(self, hosts: list[Host]) -> Any:
        ext = _extension("load_balancer", self.lb_type)
        return ext.factory(hosts, _cluster_model(lb_type=self.lb_type, **self.cluster))

    def pick(self, lb: Any, exclude: tuple[Host, ...] = ()) -> Host | None:
        return lb.choose_host(exclude, LbContext(random.getrandbits(64)))

    def shares(self, lb: Any, n: int, exclude: tuple[Host, ...] = ()) -> dict[Host, float]:
        counts: collections.Counter[Host | None] = collections.Counter(
            self.pick(lb, exclude) for _ in range(n))
        return {h: c / n for h, c in counts.items()}  # type: ignore[misc]

    def expect(self, hosts: list[Host], shares: dict[Host, float]) -> None:
        weights = {h: (h.weight if self.weighted else 1) for h in hosts}
        total = sum(weights.values())
        for host in hosts:
            wanted = weights[host] / total
            got = shares.get(host, 0.0)
            assert abs(got - wanted) <= self.tolerance * wanted, (
                f"{self.lb_type}: host of weight {host.weight} got {got:.3f} of the picks, "
                f"expected {wanted:.3f} (+-{self.tolerance:.0%}); all: "
                f"{ {h.weight: round(s, 3) for h, s in shares.items() if h} }")
        assert set(shares) <= set(hosts), f"{self.lb_type} chose a host not offered"

    @staticmethod
    def set_health(lb: Any, host: Host, healthy: bool) -> None:
        """What the cluster does when a host's health changes."""
        host.healthy = healthy
        hook = getattr(lb, "on_health_change", None)
        if hook is not None:
            hook()

    def test_registered(self) -> None:
        assert self.lb_type, f"{type(self).__name__}: set lb_type to the balancer's name"
        lb = self.make(_hosts(1))
        assert callable(getattr(lb, "choose_host", None)), "choose_host(exclude, context)"

    def test_the_distribution_follows_the_weights(self) -> None:
        hosts = _hosts(*WEIGHTS)
        self.expect(hosts, self.shares(self.make(hosts), self.picks))

    def test_unhealthy_hosts_are_never_chosen(self) -> None:
        hosts = _hosts(*WEIGHTS)
        lb = self.make(hosts)
        self.set_health(lb, hosts[0], False)
        self.set_health(lb, hosts[2], False)
        self.expect([hosts[1], hosts[3]], self.shares(lb, self.picks))

    def test_excluded_hosts_are_not_chosen(self) -> None:
        hosts = _hosts(*WEIGHTS)
        lb = self.make(hosts)
        picked = {self.pick(lb, (hosts[1], hosts[3])) for _ in range(self.picks // 10)}
        assert picked == {hosts[0], hosts[2]}, f"{self.lb_type} chose {picked}"

    def test_no_host_to_choose_is_none(self) -> None:
        assert self.pick(self.make([])) is None, "an empty host set gives None"
        hosts = _hosts(1, 2)
        lb = self.make(hosts)
        assert self.pick(lb, tuple(hosts)) is None, "every host excluded gives None"
        for host in hosts:
            self.set_health(lb, host, False)
        assert all(self.pick(lb) is None for _ in range(100)), "no healthy host gives None"

    def test_a_host_back_to_health_is_chosen_again(self) -> None:
        hosts = _hosts(1, 1)
        lb = self.make(hosts)
        self.set_health(lb, hosts[0], False)
        assert {self.pick(lb) for _ in range(200)} == {hosts[1]}
        self.set_health(lb, hosts[0], True)
        assert hosts[0] in {self.pick(lb) for _ in range(self.picks // 10)}

    def test_host_sets_rebuilt_while_picking(self) -> None:
        """The cluster builds a new balancer for each new host set, while requests
        are in flight on the hosts that stay (``active_requests``)."""
        pool = _hosts(*(random.choice(WEIGHTS) for _ in range(12)))
        in_flight: list[Host] = []
        for _ in range(REBUILDS):
            hosts = random.sample(pool, random.randint(1, len(pool)))
            lb = self.make(hosts)
            for host in random.sample(hosts, len(hosts) // 3):
                self.set_health(lb, host, False)
            healthy = {h for h in hosts if h.healthy}
            for _ in range(40):
                host = self.pick(lb)
                assert (host in healthy) if healthy else host is None, (
                    f"{self.lb_type} chose {host} outside the current healthy hosts")
                if host is not None:
                    host.active_requests += 1
                    in_flight.append(host)
                if in_flight and random.random() < 0.5:
                    in_flight.pop(random.randrange(len(in_flight))).active_requests -= 1
            for host in hosts:
                host.healthy = True

    def test_traffic_follows_a_changing_host_set_through_mosn(
            self, tmp_path: Path) -> None:
        """A cluster whose hosts change (the kit's ``kit_hosts`` file) while
        connections go through mosn one after another: none is lost, a removed host
        gets no more, an added one gets its share."""
        backends = {name: NamedBackend(name) for name in "abc"}
        hosts_file = tmp_path / "hosts.json"

        def write(names: str) -> None:
            hosts_file.write_text(json.dumps([{"address": backends[n].address, "weight": 1}
                                              for n in names]))

        write("ab")
        site = plugin_site(tmp_path / "site", [PROBES])
        mesh = _TrafficMesh(tmp_path, {"type": "kit_hosts", "lb_type": self.lb_type,
                                       "cluster_config": {"path": str(hosts_file)},
                                       **self.cluster}, site)
        traffic = _Traffic(mesh)
        try:
            wait_until(lambda: {"a", "b"} <= set(traffic.seen), what="traffic to a and b")
            write("bc")
            wait_until(lambda: "c" in traffic.seen, what="traffic to the added host c")
            after = len(traffic.seen)
            wait_until(lambda: len(traffic.seen) >= after + 100, what="100 more connections")
        finally:
            seen = traffic.stop()
            mesh.mosn.stop()
            for backend in backends.values():
                backend.stop()
        assert "" not in seen, f"{seen.count('')} connection(s) reached no host"
        assert "a" not in seen[after:], "the removed host a still got connections"
        assert {"b", "c"} <= set(seen[after:])


# -- health checkers ----------------------------------------------------------------------------


class _TargetHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        target: _TargetServer = self.server  # type: ignore[assignment]
        target.counted()
        target.opened(+1)
        try:
            self._serve(target)
        except OSError:
            pass
        finally:
            target.opened(-1)

    def _serve(self, target: "_TargetServer") -> None:
        mode = target.mode
        if mode == "close":
            return
        buffer = b""
        while data := self.request.recv(65536):
            if mode == "silent":
                continue
            buffer += data
            healthy = target.flap() if mode == "flapping" else mode == "healthy"
            answer = target.respond(buffer, healthy)
            if answer is not None:
                self.request.sendall(answer)
                buffer = b""
            elif mode == "flapping":
                target.unflap()


class _TargetServer(_Counting, socketserver.ThreadingTCPServer):
    mode = "healthy"
    respond: Callable[[bytes, bool], bytes | None]

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.open = 0
        self.healthy_next = True

    def opened(self, n: int) -> None:
        with self.lock:
            self.open += n

    def flap(self) -> bool:
        with self.lock:
            healthy, self.healthy_next = self.healthy_next, not self.healthy_next
            return healthy

    def unflap(self) -> None:
        """The answer was not given yet: the next one is the same."""
        with self.lock:
            self.healthy_next = not self.healthy_next


class HealthTarget(_Served):
    """A host for a health checker to probe: reads what the checker sends and, in
    ``mode`` ``healthy`` or ``unhealthy``, answers with ``respond(received, healthy)``
    (None: wait for more bytes); ``flapping`` alternates the two answer by answer;
    ``silent`` never answers; ``close`` closes each connection at once.
    ``connections`` counts them; ``open`` is how many are open now."""

    def __init__(self, respond: Callable[[bytes, bool], bytes | None]) -> None:
        server = _TargetServer(("127.0.0.1", 0), _TargetHandler)
        server.respond = respond
        super().__init__(server)

    @property
    def mode(self) -> str:
        return self._server.mode

    @mode.setter
    def mode(self, value: str) -> None:
        assert value in ("healthy", "unhealthy", "flapping", "silent", "close"), value
        self._server.mode = value

    @property
    def connections(self) -> int:
        return self._server.count

    @property
    def open(self) -> int:
        return self._server.open


class HealthCheckerConformance:
    """The suite; a subclass sets ``checker_type`` (and ``checker_config``) and says
    how a host of its protocol answers a probe (``respond``)."""

    checker_type: ClassVar[str] = ""
    """The name the plugin registers with ``mosn_health_checkers`` (a cluster's
    ``health_check.protocol``)."""
    checker_config: ClassVar[dict[str, Any]] = {}
    """The cluster's ``health_check.check_config``."""
    probe_timeout: ClassVar[float] = 0.5
    """Seconds a probe is given in the timeout test (mosn's ``health_check.timeout``)."""

    def respond(self, received: bytes, healthy: bool) -> bytes | None:
        """What a host of the protocol answers to the probe bytes ``received`` so far,
        healthy or not; None while more bytes are needed."""
        raise NotImplementedError(f"{type(self).__name__}: say how a host answers a probe")

    @pytest.fixture
    def target(self) -> Iterator[HealthTarget]:
        target = HealthTarget(self.respond)
        yield target
        target.stop()

    def make(self) -> Any:
        ext = _extension("health_checker", self.checker_type)
        config = (ext.config_model.model_validate(self.checker_config)
                  if ext.config_model is not None else None)
        return ext.factory(config, _cluster_model())

    def probe(self, address: str, timeout: float | None = None) -> Any:
        """One ``check(host)``, as mosn runs it (the result, or the exception raised)."""
        checker = self.make()
        host = Host(parse_address(address))

        async def run() -> Any:
            if timeout is None:
                return await checker.check(host)
            async with asyncio.timeout(timeout):
                return await checker.check(host)

        try:
            return asyncio.run(run())
        except Exception as exc:
            return exc

    @staticmethod
    def failed(outcome: Any, network: bool) -> bool:
        """A failure as mosn counts one: False, HealthCheckFailed, or (a network
        failure) OSError or TimeoutError."""
        kinds: tuple[type, ...] = (HealthCheckFailed,)
        if network:
            kinds += (OSError, TimeoutError)
        return outcome is False or isinstance(outcome, kinds)

    def test_registered(self) -> None:
        assert self.checker_type, f"{type(self).__name__}: set checker_type"
        assert callable(getattr(self.make(), "check", None)), "async check(host) -> bool"

    def test_a_healthy_host_passes(self, target: HealthTarget) -> None:
        assert self.probe(target.address) is True

    def test_a_wrong_answer_fails(self, target: HealthTarget) -> None:
        target.mode = "unhealthy"
        outcome = self.probe(target.address)
        assert self.failed(outcome, network=False), (
            f"an unhealthy answer gave {outcome!r}, not False or HealthCheckFailed")

    def test_no_listener_is_a_network_failure(self) -> None:
        outcome = self.probe(f"127.0.0.1:{free_port()}")
        assert self.failed(outcome, network=True), f"a refused connection gave {outcome!r}"

    def test_a_closed_connection_is_a_failure(self, target: HealthTarget) -> None:
        target.mode = "close"
        outcome = self.probe(target.address)
        assert outcome is not True and self.failed(outcome, network=True), (
            f"a connection closed at once gave {outcome!r} (mosn counts only False, "
            "HealthCheckFailed, OSError and TimeoutError as failures; anything else is "
            "logged as a bug of the checker)")

    def test_a_silent_host_times_out_and_its_connection_is_closed(
            self, target: HealthTarget) -> None:
        target.mode = "silent"
        outcome = self.probe(target.address, timeout=self.probe_timeout)
        assert isinstance(outcome, TimeoutError), f"a host that never answers gave {outcome!r}"
        wait_until(lambda: target.open == 0, what="the probe's connection closed")

    def test_no_connection_is_left_open(self, target: HealthTarget) -> None:
        for _ in range(20):
            assert self.probe(target.address) is True
        wait_until(lambda: target.open == 0, what="every probe's connection closed")

    def test_through_mosn_a_host_turns_unhealthy_does_not_flap_and_recovers(
            self, target: HealthTarget, tmp_path: Path) -> None:
        health_check = {"protocol": self.checker_type, "check_config": self.checker_config,
                        "timeout": f"{self.probe_timeout}s", "interval": "100ms",
                        "interval_jitter": "10ms", "initial_delay_seconds": "50ms",
                        "healthy_threshold": 2, "unhealthy_threshold": 2}
        mesh = _TrafficMesh(tmp_path, {"hosts": [{"address": target.address}],
                                       "health_check": health_check})
        prefix = "cluster.kit.health_check."

        def stats() -> dict[str, int]:
            return {k[len(prefix):]: v for k, v in mesh.mosn.stats().items()
                    if k.startswith(prefix)}

        try:
            wait_until(lambda: stats()["success"] >= 2, what="two successful probes")
            assert stats()["healthy"] == 1
            target.mode = "unhealthy"
            wait_until(lambda: stats()["turned_unhealthy"] == 1, what="the host turned unhealthy")
            assert stats()["healthy"] == 0
            target.mode = "flapping"
            attempts = stats()["attempt"]
            wait_until(lambda: stats()["attempt"] >= attempts + 6, what="six flapping probes")
            assert stats()["turned_healthy"] == 0, "one good answer in two brought it back"
            target.mode = "healthy"
            wait_until(lambda: stats()["turned_healthy"] == 1, what="the host recovered")
            assert stats()["healthy"] == 1
            target.mode = "silent"
            failures = stats()["network_failure"]
            wait_until(lambda: stats()["turned_unhealthy"] == 2, what="a silent host out")
            assert stats()["network_failure"] >= failures + 2, "timeouts are network failures"
        finally:
            mesh.mosn.stop()


# -- cluster types ------------------------------------------------------------------------------


class ClusterTypeConformance:
    """The suite; a subclass sets ``cluster_type`` and says how to make the source of
    hosts list some (``cluster``, and ``change`` for a type that follows changes)."""

    cluster_type: ClassVar[str] = ""
    """The name the plugin registers with ``mosn_cluster_types`` (a cluster's ``type``)."""
    dynamic: ClassVar[bool] = True
    """The type follows changes of its source (a discovery object with ``run``)."""

    def cluster(self, hosts: list[str], workdir: Path) -> dict[str, Any]:
        """The cluster's config (beside its name and type: ``cluster_config`` ...)
        for a source listing ``hosts`` (``HOST:PORT`` each), set up in ``workdir``."""
        raise NotImplementedError(f"{type(self).__name__}: say how a cluster lists hosts")

    def change(self, hosts: list[str], workdir: Path) -> None:
        """Make the source set up by ``cluster`` list ``hosts`` instead."""
        raise NotImplementedError(f"{type(self).__name__}: say how the source changes")

    def loaded(self, hosts: list[str], workdir: Path) -> tuple[ClusterConfig, PluginHost]:
        """The cluster as mosn's loader checks and parses it."""
        loaded = validate(with_listener(
            {"name": "kit", "type": self.cluster_type, **self.cluster(hosts, workdir)}))
        return loaded.config.cluster_manager.clusters[0], loaded.plugins

    def build(self, hosts: list[str], workdir: Path) -> Any:
        cluster, plugins = self.loaded(hosts, workdir)
        ext = plugins.get("cluster_type", self.cluster_type)
        assert ext is not None
        return ext.factory(cluster, BuildContext(host=plugins))

    @staticmethod
    def addresses(hosts: list[Host]) -> list[str]:
        return sorted(str(h.address) for h in hosts)

    def test_registered(self) -> None:
        assert self.cluster_type, f"{type(self).__name__}: set cluster_type"
        _extension("cluster_type", self.cluster_type)

    def test_an_unknown_config_key_is_reported(self, tmp_path: Path) -> None:
        cluster = self.cluster(["127.0.0.1:1"], tmp_path)
        cluster["cluster_config"] = {**(cluster.get("cluster_config") or {}),
                                     "kit_unknown_key": 1}
        config = with_listener({"name": "kit", "type": self.cluster_type, **cluster})
        assert_reported(config, "cluster_manager.clusters[0].cluster_config.kit_unknown_key")

    def test_the_hosts_the_source_lists(self, tmp_path: Path) -> None:
        listed = ["127.0.0.1:7001", "127.0.0.1:7002"]
        made = self.build(listed, tmp_path)
        hosts = made if isinstance(made, list) else made.hosts
        assert all(isinstance(h, Host) for h in hosts), "hosts are mosn.upstream.Host"
        assert self.addresses(hosts) == listed
        if self.dynamic:
            assert not isinstance(made, list) and callable(getattr(made, "run", None)), (
                "a type that follows changes returns an object with hosts and async run()")

    def test_discovery_follows_each_change(self, tmp_path: Path) -> None:
        if not self.dynamic:
            pytest.skip("the type does not follow changes (dynamic = False)")
        discovery = self.build(["127.0.0.1:7001"], tmp_path)
        updates: list[list[str]] = []
        failures: list[int] = []

        async def run() -> None:
            task = asyncio.create_task(discovery.run(
                lambda hosts: updates.append(self.addresses(hosts)), failures.append))
            try:
                for wanted in (["127.0.0.1:7001", "127.0.0.1:7002"], ["127.0.0.1:7002"], []):
                    await asyncio.to_thread(self.change, wanted, tmp_path)
                    deadline = time.monotonic() + WAIT
                    while not updates or updates[-1] != wanted:
                        assert time.monotonic() < deadline, (
                            f"no update to {wanted} within {WAIT}s (got {updates})")
                        await asyncio.sleep(POLL)
            finally:
                task.cancel()
                done, _ = await asyncio.wait([task], timeout=WAIT)
                assert done, "run() did not end when cancelled"

        asyncio.run(run())

    def test_traffic_follows_the_hosts_through_mosn(self, tmp_path: Path) -> None:
        backends = {name: NamedBackend(name) for name in "ab"}
        try:
            first = "ab" if not self.dynamic else "a"
            mesh = _TrafficMesh(tmp_path, {"type": self.cluster_type, **self.cluster(
                [backends[n].address for n in first], tmp_path)})
            try:
                assert set(mesh.hits(20)) == set(first)
                if self.dynamic:
                    self.change([backends["a"].address, backends["b"].address], tmp_path)
                    wait_until(lambda: mesh.hits(4)["b"], what="traffic to the added host")
                    self.change([backends["b"].address], tmp_path)
                    wait_until(lambda: set(mesh.hits(4)) == {"b"}, what="only b left")
                    assert set(mesh.hits(20)) == {"b"}
            finally:
                mesh.mosn.stop()
        finally:
            for backend in backends.values():
                backend.stop()
