"""The kit's upstream suites (mosn.testing) run on the built-in load balancers, the
built-in ``http`` health checker, and two cluster types: ``SIMPLE`` (fixed hosts) and
the kit's own ``kit_hosts`` (a file that changes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mosn.testing import (
    ClusterTypeConformance,
    HealthCheckerConformance,
    LoadBalancerConformance,
    plugin_site,
)
from mosn.testing.probes import PROBES

pytest_plugins = ["pytester"]


class TestRoundRobin(LoadBalancerConformance):
    lb_type = "LB_ROUNDROBIN"
    weighted = False


class TestRandom(LoadBalancerConformance):
    lb_type = "LB_RANDOM"
    weighted = False


class TestWeightedRoundRobin(LoadBalancerConformance):
    lb_type = "LB_WEIGHTED_ROUNDROBIN"


class TestLeastRequest(LoadBalancerConformance):
    lb_type = "LB_LEAST_REQUEST"


class TestRingHash(LoadBalancerConformance):
    lb_type = "LB_RING_HASH"
    cluster = {"lbconfig": {"minimum_ring_size": 8192}}  # the default 1024 strays ~15%


class TestMaglev(LoadBalancerConformance):
    lb_type = "LB_MAGLEV"


class TestHttpChecker(HealthCheckerConformance):
    checker_type = "http"
    checker_config = {"http_check_config": {"path": "/health"}}

    def respond(self, received: bytes, healthy: bool) -> bytes | None:
        if b"\r\n\r\n" not in received:
            return None
        assert received.startswith(b"GET /health HTTP/1.1\r\n")
        status = b"200 OK" if healthy else b"503 Service Unavailable"
        return b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\n\r\n"


class TestStaticCluster(ClusterTypeConformance):
    cluster_type = "SIMPLE"
    dynamic = False

    def cluster(self, hosts: list[str], workdir: Path) -> dict[str, Any]:
        return {"hosts": [{"address": h} for h in hosts]}

    def test_an_unknown_config_key_is_reported(self, tmp_path: Path) -> None:
        pytest.skip("SIMPLE takes no cluster_config (tests/test_config.py refuses one)")


class TestKitHostsFile(ClusterTypeConformance):
    cluster_type = "kit_hosts"

    @pytest.fixture(autouse=True)
    def _probes(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        site = plugin_site(tmp_path / "site", [PROBES])
        monkeypatch.syspath_prepend(str(site))  # this process's plugin host
        monkeypatch.setenv("PYTHONPATH", str(site))  # mosn's

    def cluster(self, hosts: list[str], workdir: Path) -> dict[str, Any]:
        self.change(hosts, workdir)
        return {"cluster_config": {"path": str(workdir / "hosts.json")}}

    def change(self, hosts: list[str], workdir: Path) -> None:
        path = workdir / "hosts.json"
        path.with_suffix(".tmp").write_text(json.dumps([{"address": h} for h in hosts]))
        path.with_suffix(".tmp").replace(path)


BROKEN = '''
import asyncio

from mosn.plugins import Extension, hookimpl


class Sticky:
    """Always the first host: ignores health and exclusions."""

    def __init__(self, hosts, config):
        self.hosts = list(hosts)

    def choose_host(self, exclude=(), context=None):
        return self.hosts[0] if self.hosts else None


class Optimist:
    """Connects, never reads the answer: every host is healthy."""

    def __init__(self, config, cluster):
        pass

    async def check(self, host):
        reader, writer = await asyncio.open_connection(host.address.host, host.address.port)
        writer.write(b"GET / HTTP/1.1\\r\\n\\r\\n")
        return True


@hookimpl
def mosn_load_balancers():
    return [Extension("KIT_STICKY", Sticky)]


@hookimpl
def mosn_health_checkers():
    return [Extension("kit_optimist", Optimist)]
'''


def test_the_suites_fail_broken_plugins(pytester: pytest.Pytester, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A balancer that ignores health and exclusions, a checker that never reads the
    answer: the suites say so."""
    (tmp_path / "kit_broken.py").write_text(BROKEN)
    site = plugin_site(tmp_path / "site", [("kit_broken", "kit_broken")], "kit-broken")
    monkeypatch.setenv("PYTHONPATH", f"{site}:{tmp_path}")
    pytester.makepyfile(test_broken='''
        from mosn.testing import HealthCheckerConformance, LoadBalancerConformance


        class TestSticky(LoadBalancerConformance):
            lb_type = "KIT_STICKY"


        class TestOptimist(HealthCheckerConformance):
            checker_type = "kit_optimist"

            def respond(self, received, healthy):
                return b"HTTP/1.1 200 OK\\r\\n\\r\\n" if healthy else b"HTTP/1.1 503 No\\r\\n\\r\\n"
    ''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "not through_mosn")
    result.assert_outcomes(passed=5, failed=9)
    for test in ("TestSticky::test_the_distribution_follows_the_weights",
                 "TestSticky::test_unhealthy_hosts_are_never_chosen",
                 "TestSticky::test_excluded_hosts_are_not_chosen",
                 "TestSticky::test_no_host_to_choose_is_none",
                 "TestSticky::test_host_sets_rebuilt_while_picking",
                 "TestSticky::test_a_host_back_to_health_is_chosen_again",
                 "TestOptimist::test_a_wrong_answer_fails",
                 "TestOptimist::test_a_closed_connection_is_a_failure",
                 "TestOptimist::test_a_silent_host_times_out_and_its_connection_is_closed"):
        result.stdout.fnmatch_lines([f"FAILED test_broken.py::{test}*"])
