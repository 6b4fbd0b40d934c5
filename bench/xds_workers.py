"""What a push costs each process of a ``--workers N`` mosn under a control plane: the
parent takes the response (translate, compose, validate, apply) and packs what
changed for its workers; each worker unpacks it, translates the changed resources
again and composes, validates and applies as the parent did. In process, on two
runtimes (the parent's and one worker's) built as ``mosn start`` builds them, sockets
bound, no traffic.

    .venv/bin/python -P bench/xds_workers.py [--pushes 5] [--endpoints 1000]

Printed per push kind (``eds``: all 1,000 endpoints of a cluster move; ``eds_one``:
one of them; ``rds``: one route of 1,000 changes): the median CPU milliseconds in the
parent (taking the response, then packing), in a worker, and the bytes sent to each
worker; then the bytes of a whole snapshot of ``--held`` endpoints (what a worker
forked before any push is sent first, and the channel's blob limit must hold).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # after the libraries

import yaml  # noqa: E402

from common import free_port  # noqa: E402
from control_plane import endpoints, eds_cluster, listener, routes  # noqa: E402
from mosn.network.fdpass import MAX_BLOB  # noqa: E402
from mosn.server import Runtime  # noqa: E402
from mosn.upgrade.managers import apply_in_place  # noqa: E402
from mosn.xds.apply import Composer  # noqa: E402
from mosn.xds.client import Subscriber  # noqa: E402
from mosn.xds.resources import CLUSTERS, ENDPOINTS, LISTENERS, ROUTES, ResourceType  # noqa: E402
from mosn.xds.snapshot import pack  # noqa: E402
from mosn.xds.workers import Follower, Outbox  # noqa: E402
from xds_push import load_bootstrap, response  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pushes", type=int, default=5)
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--routes", type=int, default=1000)
    parser.add_argument("--held", type=int, default=10_000)
    args = parser.parse_args()
    loaded = load_bootstrap("xds-workers-")
    path = Path(loaded.source)
    work = path.parent
    parent = Runtime(loaded)
    worker = Runtime(loaded, admin_sock=parent.admin_sock)
    for runtime in (parent, worker):
        runtime.store.allocate(1)

    def applier(runtime: Runtime):
        def apply(new):  # what the server does with an accepted config
            runtime.listener_manager.reserve(c for _, c in new.config.listeners())
            apply_in_place(new.config, runtime.listener_manager, runtime.clusters,
                           runtime.routers)
        return apply

    composer = Composer(yaml.safe_load(path.read_text()), loaded.plugins, applier(parent), work)
    follower = Follower.start(loaded, applier(worker))
    outbox = Outbox()
    cpu: dict[str, list[float]] = {}

    def offer(candidate):  # the parent's ControlPlane.offer with one worker to send to
        errors = composer.offer(candidate)
        if not errors:
            start = time.process_time()
            header, blob = outbox.delta(candidate)
            outbox.sent = candidate
            cpu["pack"].append(time.process_time() - start)
            sent.append(len(blob))
            for key, sock in parent.listener_manager.sockets.items():  # sent with the message
                worker.listener_manager.sockets.setdefault(key, sock)
            start = time.process_time()
            assert not follower.offer(header, blob)
            cpu["worker"].append(time.process_time() - start)
        return errors

    client = Subscriber(offer)
    sent: list[int] = []

    def take(kind: ResourceType, version: str, messages: list) -> None:
        for key in ("pack", "worker"):
            cpu.setdefault(key, [])
        start = time.process_time()
        assert not client.take_sotw(response(kind, version, messages))
        whole = time.process_time() - start
        cpu.setdefault("parent", []).append(whole - cpu["pack"][-1] - cpu["worker"][-1])

    port, up = free_port(), free_port()
    take(CLUSTERS, "0", [eds_cluster("a"), eds_cluster("b")])
    take(ENDPOINTS, "0", [endpoints("a", up, args.endpoints), endpoints("b", up, 1)])
    take(LISTENERS, "0", [listener(port)])
    take(ROUTES, "0", [routes(args.routes, "a")])
    kinds = {
        "eds": (ENDPOINTS, [[endpoints("a", up + 1 + i % 2, args.endpoints, first=1000 * (1 + i % 2)),
                             endpoints("b", up, 1)] for i in range(args.pushes)]),
        "rds": (ROUTES, [[routes(args.routes, "b" if i % 2 == 0 else "a")]
                         for i in range(args.pushes)]),
    }
    ones = []
    for i in range(args.pushes):
        one = endpoints("a", up + 1, args.endpoints, first=1000)
        one.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address = f"127.3.0.{i + 1}"
        ones.append([one, endpoints("b", up, 1)])
    kinds["eds_one"] = (ENDPOINTS, ones)
    print(f"{'push':8} {'parent ms':>10} {'pack ms':>8} {'worker ms':>10} {'bytes sent':>11}")
    for label, (kind, pushes) in kinds.items():
        for series in cpu.values():
            series.clear()
        sent.clear()
        for i, messages in enumerate(pushes):
            take(kind, f"{label}{i}", messages)
        print(f"{label:8} {statistics.median(cpu['parent']) * 1000:10.1f} "
              f"{statistics.median(cpu['pack']) * 1000:8.2f} "
              f"{statistics.median(cpu['worker']) * 1000:10.1f} {statistics.median(sent):11.0f}")
    held = [endpoints(f"held-{c}", 9, 20, first=c * 20) for c in range(args.held // 20)]
    for kind, messages in ((CLUSTERS, [eds_cluster("a"), eds_cluster("b"),
                                       *(eds_cluster(f"held-{c}") for c in range(args.held // 20))]),
                           (ENDPOINTS, [*kinds["eds"][1][-1], *held])):
        take(kind, "held", messages)
    _, blob = pack(client.snapshot)
    print(f"a whole snapshot with {args.held:,} more endpoints: {len(blob):,} bytes "
          f"(the channel's limit: {MAX_BLOB:,})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
