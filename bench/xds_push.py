"""Where one xDS push's time goes, in process: mosn's runtime (the same managers
``mosn start`` serves with, sockets bound, no traffic) takes the snapshots that
``bench/control_plane.py`` pushes, and each push is timed and profiled.

    .venv/bin/python -P bench/xds_push.py [--pushes 5] [--profile eds_first|eds|eds_one|rds|held]
        [--top 25] [--fresh] [--gc] [--stages] [--census]

Push kinds: ``eds`` (all 1,000 endpoints of a cluster move, between two sets of
addresses; ``--fresh``: to addresses no push had before; the first push meets new
addresses either way: ``eds_first``), ``eds_one`` (one of them changes), ``rds`` (one
route of 1,000 changes), ``held`` (500 clusters of 20). Printed: per push kind, the
median wall and CPU time of taking a response (translate, compose, validate, apply);
with ``--gc`` each push with the garbage collector's passes in it; with ``--profile``,
cProfile's top functions of one push; with ``--stages``, the median CPU time of each
stage of an endpoint push (no profiler: each stage's functions timed as they run); with
``--census``, the resident memory along the endpoint pushes and after them the objects a
full collector pass walks (every object tracked and not frozen) by type; at the end, the objects frozen and how many of
them were garbage held for nothing.
"""

from __future__ import annotations

import argparse
import cProfile
import collections as counting
import functools
import gc
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the libraries: bench/h2.py, bench/http.py

import yaml  # noqa: E402
from envoy.service.discovery.v3 import discovery_pb2  # noqa: E402

from control_plane import endpoints, eds_cluster, listener, routes  # noqa: E402
from common import free_port, rss_kib  # noqa: E402
import mosn.xds.apply  # noqa: E402
import mosn.xds.client  # noqa: E402
import mosn.xds.cluster  # noqa: E402
from mosn.config.loader import load  # noqa: E402
from mosn.server import Runtime  # noqa: E402
from mosn.upgrade.managers import apply_in_place  # noqa: E402
from mosn.upstream.cluster import Cluster  # noqa: E402
from mosn.xds.snapshot import Snapshot  # noqa: E402
from mosn.xds.apply import Composer  # noqa: E402
from mosn.xds.client import Subscriber  # noqa: E402
from mosn.xds.resources import CLUSTERS, ENDPOINTS, LISTENERS, ROUTES, ResourceType  # noqa: E402


def response(kind: ResourceType, version: str, messages: list) -> discovery_pb2.DiscoveryResponse:
    out = discovery_pb2.DiscoveryResponse(version_info=version, type_url=kind.url)
    for m in messages:
        out.resources.add().Pack(m)
    return out


STAGES = (  # (stage, the object holding the function, its name); nested ones are inside the one before
    ("unpack (protobuf parse)", mosn.xds.client, "unpack"),
    ("translate endpoints", mosn.xds.cluster, "assignment_hosts"),
    ("compose", Snapshot, "compose"),
    ("validate", mosn.xds.apply, "validate"),
    ("hosts for new entries", Cluster, "listed_hosts"),
    ("host set (with the LB)", Cluster, "set_hosts"),
    ("  of it: LB rebuild", Cluster, "rebuild_lb"),
    ("remember entries", Cluster, "made_from"),
)


def time_stages(spent: dict[str, float]) -> None:
    """Wrap each stage's function so that its CPU time adds to ``spent``."""
    for stage, owner, name in STAGES:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, _original=original, _stage=stage, **kwargs):
            start = time.process_time()
            try:
                return _original(*args, **kwargs)
            finally:
                spent[_stage] = spent.get(_stage, 0.0) + time.process_time() - start

        setattr(owner, name, timed)


def load_bootstrap(prefix: str):
    """A config file naming a control plane (never reached: pushes are fed in process),
    loaded as `mosn start` loads it."""
    path = Path(tempfile.mkdtemp(prefix=prefix)) / "mosn.yaml"
    path.write_text(yaml.safe_dump({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}}},
        "dynamic_resources": {"ads_config": {"api_type": "GRPC", "grpc_services": [
            {"envoy_grpc": {"cluster_name": "xds"}}]}, "cds_config": {"ads": {}},
            "lds_config": {"ads": {}}},
        "cluster_manager": {"clusters": [{"name": "xds", "type": "STATIC",
                                          "hosts": [{"address": "127.0.0.1:1"}]}]}}))
    return load(path)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pushes", type=int, default=5)
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--routes", type=int, default=1000)
    parser.add_argument("--clusters", type=int, default=500)
    parser.add_argument("--held", type=int, default=10_000)
    parser.add_argument("--profile", choices=("eds_first", "eds", "eds_one", "rds", "held"))
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="cumulative", help="the profile's order (pstats keys)")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--gc", action="store_true", help="print each push with its collector passes")
    parser.add_argument("--stages", action="store_true",
                        help="print the median CPU time of each stage of an endpoint push")
    parser.add_argument("--census", action="store_true",
                        help="print what a full collector pass walks after the endpoint pushes")
    args = parser.parse_args()
    spent: dict[str, float] = {}
    stages: dict[str, list[dict[str, float]]] = {}  # push kind -> each push's stages
    if args.stages:
        time_stages(spent)
    loaded = load_bootstrap("xds-push-")
    path = Path(loaded.source)
    work = path.parent
    runtime = Runtime(loaded)
    runtime.store.allocate(1)  # as `mosn start` does: a host slot taken again is labelled from now
    gc.freeze()  # as `mosn start` does once it serves: what is built by now skips full passes

    def apply(new):  # what the server's control plane does with an accepted config
        runtime.listener_manager.reserve(c for _, c in new.config.listeners())
        apply_in_place(new.config, runtime.listener_manager, runtime.clusters, runtime.routers)

    composer = Composer(yaml.safe_load(path.read_text()), loaded.plugins, apply, work)
    client = Subscriber(composer.offer)
    port, up = free_port(), free_port()

    collections: list[tuple[int, float]] = []  # (generation, seconds) of each pass of a push
    began = [0.0]
    cpus: dict[str, list[float]] = {}  # CPU seconds of each push, by resource type

    def watch(phase: str, info: dict) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            collections.append((info["generation"], time.perf_counter() - began[0]))

    gc.callbacks.append(watch)

    def take(kind: ResourceType, version: str, messages: list, label: str = "") -> float:
        collections.clear()
        spent.clear()
        start, cpu = time.perf_counter(), time.process_time()
        errors = client.take_sotw(response(kind, version, messages))
        assert not errors, errors
        took = time.perf_counter() - start
        cpus.setdefault(kind.short, []).append(time.process_time() - cpu)
        if label:
            spent["all (CPU)"] = cpus[kind.short][-1]
            spent["  of it: collector passes (wall)"] = sum(t for _, t in collections)
            stages.setdefault(label, []).append(dict(spent))
        if args.gc and collections:
            passes = ", ".join(f"gen{g} {t * 1000:.1f} ms" for g, t in collections)
            print(f"  {kind.short} {version}: {took * 1000:.1f} ms; frozen {gc.get_freeze_count()}; collections: {passes}")
        return took

    take(CLUSTERS, "0", [eds_cluster("a"), eds_cluster("b")])
    take(ENDPOINTS, "0", [endpoints("a", up, args.endpoints), endpoints("b", up, 1)])
    take(LISTENERS, "0", [listener(port)])
    take(ROUTES, "0", [routes(args.routes, "a")])
    def first(i: int) -> int:
        return 1000 * (1 + (i if args.fresh else i % 2))

    eds_pushes = [[endpoints("a", up + 1 + i % 2, args.endpoints, first=first(i)),
                   endpoints("b", up, 1)] for i in range(args.pushes)]
    one_pushes = []  # one endpoint of the 1,000 moves each time
    last = args.pushes - 1  # the set of the last EDS push, one endpoint moved each time
    for i in range(args.pushes):
        one = endpoints("a", up + 1 + last % 2, args.endpoints, first=first(last))
        one.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address = f"127.3.0.{i + 1}"
        one_pushes.append([one, endpoints("b", up, 1)])
    rds_pushes = [[routes(args.routes, "b" if i % 2 == 0 else "a")] for i in range(args.pushes)]
    many_clusters = [eds_cluster(f"many-{c}") for c in range(args.clusters)]
    many_endpoints = [endpoints(f"many-{c}", 9, args.held // args.clusters, first=c * 20)
                      for c in range(args.clusters)]
    times: dict[str, list[float]] = {"eds": [], "eds_one": [], "rds": []}
    profile = cProfile.Profile()
    rss = []  # KiB resident after each endpoint push
    for i, messages in enumerate(eds_pushes):
        if (args.profile == "eds" and i == len(eds_pushes) - 1
                or args.profile == "eds_first" and i == 0):
            profile.enable()
        times["eds"].append(take(ENDPOINTS, f"e{i}", messages, "eds" if i else "eds_first"))
        profile.disable()
        if args.census:
            rss.append(rss_kib(os.getpid()))
    if args.census:
        gc.collect()  # what stays: what every full pass from now on walks
        walked = counting.Counter(type(o).__qualname__ for o in gc.get_objects())
        marks = sorted({0, len(rss) // 4, len(rss) // 2, 3 * len(rss) // 4, len(rss) - 1})
        print("resident MiB after endpoint push " + ", ".join(f"{i + 1}: {rss[i] / 1024:.1f}" for i in marks))
        print(f"after the endpoint pushes a full pass walks {walked.total()} objects: "
              + ", ".join(f"{name} {n}" for name, n in walked.most_common(12)))
    for i, messages in enumerate(one_pushes):
        if args.profile == "eds_one" and i == len(one_pushes) - 1:
            profile.enable()
        times["eds_one"].append(take(ENDPOINTS, f"o{i}", messages, "eds_one"))
    profile.disable()
    for i, messages in enumerate(rds_pushes):
        if args.profile == "rds" and i == len(rds_pushes) - 1:
            profile.enable()
        times["rds"].append(take(ROUTES, f"r{i}", messages))
    profile.disable()
    if args.profile == "held":
        profile.enable()
    start = time.perf_counter()
    take(CLUSTERS, "held", [eds_cluster("a"), eds_cluster("b"), *many_clusters])
    take(ENDPOINTS, "held", [*eds_pushes[-1], *many_endpoints])
    held = time.perf_counter() - start
    profile.disable()
    n = args.pushes
    eds_cpu = cpus["eds"][1:]  # after the setup's assignment
    print(f"eds: first push {times['eds'][0] * 1000:.1f} ms, CPU {eds_cpu[0] * 1000:.1f} ms")
    cpu_of = {"eds": eds_cpu[:n], "eds_one": eds_cpu[n:2 * n], "rds": cpus["rds"][1:n + 1]}
    for kind, values in times.items():
        cpu = cpu_of[kind]
        print(f"{kind}: median {statistics.median(values) * 1000:.1f} ms over {len(values)}"
              f" (min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f});"
              f" CPU median {statistics.median(cpu) * 1000:.1f} ms, min {min(cpu) * 1000:.1f},"
              f" max {max(cpu) * 1000:.1f}")
    print(f"held ({args.held} endpoints, {args.clusters} clusters): {held * 1000:.0f} ms")
    if args.stages:
        print("CPU ms per endpoint push, by stage (median over the pushes of each kind):")
        names = [stage for stage, _, _ in STAGES] + ["all (CPU)", "  of it: collector passes (wall)"]
        print(f"  {'stage':34}" + "".join(f"{kind:>11}" for kind in stages))
        for stage in names:
            row = [statistics.median(push.get(stage, 0.0) for push in pushes) * 1000
                   for pushes in stages.values()]
            print(f"  {stage:34}" + "".join(f"{v:11.2f}" for v in row))
    frozen = gc.get_freeze_count()
    gc.unfreeze()
    print(f"frozen: {frozen} objects; unreachable once unfrozen (held for nothing): {gc.collect()}")
    runtime.close_sockets()
    if args.profile:
        pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
