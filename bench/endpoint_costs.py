"""What an endpoint never seen costs, step by step, in this code and in another copy
of mosn's code (``--before``: an export of its ``mosn/``), in one process: the two
versions alternate run by run, so a loaded machine weighs on both alike.

    .venv/bin/python -P bench/endpoint_costs.py [--before /tmp/before/mosn] [--runs 40]

Printed, per endpoint or host (minimum and median over the runs, us):

- translate: ``assignment_hosts`` over an assignment of 1,000 endpoints never seen
  (no cache);
- first take: a host slot's stats taken for the first time and labelled;
- host set: ``Cluster.set_hosts`` replacing 1,000 hosts with 1,000 new ones (slots
  taken before), the ``Host`` objects made apart.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Callable

sys.path.append(str(Path(__file__).resolve().parent))  # after the libraries: bench/http.py

from control_plane import endpoints  # noqa: E402
import mosn.observability.stats  # noqa: E402
import mosn.upstream.cluster  # noqa: E402
import mosn.xds.cluster  # noqa: E402
from mosn.config.models import MosnConfig  # noqa: E402
from mosn.config.types import Address  # noqa: E402
from mosn.observability.stats import StatsStore  # noqa: E402
from mosn.plugins import PluginHost  # noqa: E402

ENDPOINTS = 1000


def load(name: str, path: Path) -> ModuleType:
    """A module of the other copy, under a name of its own (its imports of the rest of
    mosn are this copy's)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def translate(xds: ModuleType) -> Callable[[int], float]:
    def run(i: int) -> float:
        assignment = endpoints("a", 9000, ENDPOINTS, first=ENDPOINTS * (5 + i))
        start = time.process_time()
        xds.assignment_hosts(assignment, "", [], None)
        return time.process_time() - start
    return run


def first_take(stats: ModuleType) -> Callable[[int], float]:
    def run(i: int) -> float:
        store = stats.StatsStore()
        store.allocate(1)
        slots = store.slot_scopes("cluster.c.host", stats.HOST_STATS, ENDPOINTS)
        start = time.process_time()
        for n in range(ENDPOINTS):
            store.label(slots[n], f"cluster.c.host.10.0.{n // 250}.{n % 250}:80")
        return time.process_time() - start
    return run


def host_set(upstream: ModuleType) -> Callable[[int], float]:
    config = MosnConfig.model_validate({"cluster_manager": {"clusters": [{
        "name": "c", "hosts": [{"address": "10.0.0.1:80"}], "max_hosts": 2 * ENDPOINTS + 100}]}})
    store = StatsStore()
    cluster = upstream.Cluster(config.cluster_manager.clusters[0], [],
                               PluginHost(autoload=False).load(), store)
    store.allocate(1)
    for i in range(3):  # every slot taken once
        cluster.set_hosts([upstream.Host(Address(f"10.{200 + i}.{n // 250}.{n % 250}", 80))
                           for n in range(ENDPOINTS)])

    def run(i: int) -> float:
        hosts = [upstream.Host(Address(f"10.{i % 200}.{n // 250}.{n % 250}", 80))
                 for n in range(ENDPOINTS)]
        start = time.process_time()
        cluster.set_hosts(hosts)
        return time.process_time() - start
    return run


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", type=Path, help="another copy's mosn/ directory")
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    versions: dict[str, tuple[ModuleType, ModuleType, ModuleType]] = {
        "this": (mosn.xds.cluster, mosn.observability.stats, mosn.upstream.cluster)}
    if args.before is not None:
        versions["before"] = (load("before_xds_cluster", args.before / "xds" / "cluster.py"),
                              load("before_stats", args.before / "observability" / "stats.py"),
                              load("before_upstream", args.before / "upstream" / "cluster.py"))
    steps = {"translate": translate, "first take": first_take, "host set": host_set}
    for step, make in steps.items():
        runs = {name: make(mods[list(steps).index(step)]) for name, mods in versions.items()}
        took: dict[str, list[float]] = {name: [] for name in runs}
        names = list(runs)
        for i in range(args.runs):
            for name in names if i % 2 else reversed(names):
                took[name].append(runs[name](i) / ENDPOINTS * 1e6)
        for name, values in took.items():
            print(f"{step:10} {name:6}: min {min(values):.2f} us, median {statistics.median(values):.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
