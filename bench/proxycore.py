"""The protocol-neutral proxy core's CPU per request, compiled against pure, in one run:
what typing mosn/proxy's classes (their .pxd files, docs/extensions.md) gains.

    .venv/bin/python -P bench/proxycore.py [--n 20000] [--rounds 6]

(``-P``: bench/http.py must not stand in for the standard library's ``http``.)

One request as bench/http.py's mosn serves it, without the sockets and the codecs: a
real ``DownstreamStream`` with a do-nothing stream filter, the real route table of 100
routes (99 prefix routes that do not match, then ``/``), the real cluster manager,
load balancer and stats store, a real ``UpstreamRequest`` and the route timeout's
timer on a real (idle) event loop. Stand-ins: the server stream and the client stream
(they drop what they are sent), the connection, and a pool that hands over a client
stream at once (an idle connection kept alive). Each round runs --n requests in a
child process per build, the order turned every round: ``compiled`` (every listed
module compiled), ``untyped`` (the same, but the typed modules, those with a ``.pxd``
beside them, run from their ``.py``: the build before they were typed) and ``pure``
(``MOSN_NO_EXTENSIONS=1``). To measure a typed module, list it under ``[tool.mosn]
compile`` and reinstall (docs/extensions.md). The figure is the child's thread CPU
time per request, its median over the rounds. A thread's CPU time is what the machine's other load disturbs least, so
two builds compare in the same run even on a busy machine (give ``uptime`` beside).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WARMUP = 2000
"""Requests before the timing: the route table's caches, the allocator, the stats."""
CHILD_TIMEOUT = 600
"""One round of one build on a loaded 2-core machine."""

ROUTERS = [{"router_config_name": "web", "virtual_hosts": [{
    "name": "web", "domains": ["*"],
    "routers": [{"match": {"prefix": f"/svc{i}/"}, "route": {"cluster_name": "decoy"}}
                for i in range(99)]
    + [{"match": {"prefix": "/"}, "route": {"cluster_name": "backend"}}]}]}]
CLUSTERS = {
    "cluster_manager": {"clusters": [
        {"name": name, "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
         "hosts": [{"address": "127.0.0.1:8080"}]} for name in ("backend", "decoy")]},
}


class _FromSource:
    """Meta-path finder: the named modules load from their ``.py`` in this tree."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        import importlib.util

        if fullname not in self.names:
            return None
        return importlib.util.spec_from_file_location(
            fullname, ROOT.joinpath(*fullname.split(".")).with_suffix(".py"))


def typed_modules() -> list[str]:
    """The core's modules typed by a .pxd beside them and built (compiled): listed under
    ``[tool.mosn] compile`` when installed. None: ``untyped`` is ``compiled`` again."""
    import importlib.machinery

    typed = []
    for pxd in sorted((ROOT / "mosn").glob("**/*.pxd")):
        if any(pxd.with_suffix(suffix).exists() for suffix in importlib.machinery.EXTENSION_SUFFIXES):
            typed.append(".".join(pxd.relative_to(ROOT).with_suffix("").parts))
    return typed


def child(n: int, untyped: bool) -> float:
    """Thread CPU seconds per request over ``n`` requests after the warm-up."""
    if untyped:
        sys.meta_path.insert(0, _FromSource(set(typed_modules())))
    import asyncio
    import time
    from types import SimpleNamespace

    from mosn.config.models import MosnConfig
    from mosn.config.routers import route_timeout
    from mosn.network.filter import FilterStatus
    from mosn.observability.stats import StatsStore
    from mosn.plugins import PluginHost
    from mosn.proxy.http import HTTP_SEMANTICS
    from mosn.proxy.observer import ObserverHooks
    from mosn.proxy.stream import DownstreamStream
    from mosn.proxy.deadlines import Deadlines
    from mosn.proxy.stream_filter import StreamFilter
    from mosn.router import Routers, parse_routers
    from mosn.stream.types import Headers, RequestHead, ResponseHead
    from mosn.upstream.cluster import ClusterManager

    config = MosnConfig.model_validate(CLUSTERS)
    store = StatsStore()
    clusters = ClusterManager(config, PluginHost(autoload=False).load(), store)
    store.allocate(1)
    loop = asyncio.new_event_loop()

    class Idle(StreamFilter):
        """As bench/http.py's fault filter whose condition no request meets."""

        def on_request(self, stream):
            return FilterStatus.CONTINUE

    class Sink:
        """The server stream and the client stream: what they are sent goes nowhere."""

        def send_headers(self, head, end_stream):
            pass

        def send_data(self, data, end_stream):
            pass

        def send_trailers(self, trailers):
            pass

        def read_disable(self, disable):
            pass

        def reset(self, reason):
            pass

    sink = Sink()

    class Pool:
        def new_stream(self, handler, callbacks):
            callbacks.on_pool_ready(sink, None)

    pool = Pool()
    protocol = SimpleNamespace(name="Http1")
    ctx = SimpleNamespace(
        stream_filters=[Idle], max_request_bytes=None, observers=ObserverHooks(()),
        streams=None, deadlines=Deadlines(), route_table=Routers(parse_routers(ROUTERS))["web"], clusters=clusters,
        timeout=route_timeout(0), normalize_path=True, merge_slashes=False,
        escaped_slashes="KEEP_UNCHANGED", semantics={"Http1": HTTP_SEMANTICS},
        upstream_protocol=lambda route, name: protocol, pool=lambda c, h, p: pool)
    conn = SimpleNamespace(tls=None, loop=loop, remote_address=("127.0.0.1", 50000),
                           local_address=("127.0.0.1", 2045), hold=lambda delta: None)

    def one() -> None:
        stream = DownstreamStream(ctx, conn, sink, "Http1", HTTP_SEMANTICS)
        stream.on_headers(RequestHead("GET", "/", "127.0.0.1:2045", "http", Headers([
            ("host", "127.0.0.1:2045"), ("user-agent", "wrk")])), True)
        upstream = stream.upstream
        assert upstream is not None and stream.response_code == 0, "the request went upstream"
        upstream.on_headers(ResponseHead(200, Headers([
            ("server", "nginx"), ("content-type", "text/plain"), ("content-length", "6"),
            ("connection", "keep-alive")])), False)
        upstream.on_data(b"hello\n", True)
        assert stream.done and stream.response_code == 200, "the response went downstream"

    for _ in range(WARMUP):
        one()
    start = time.thread_time()
    for _ in range(n):
        one()
    spent = time.thread_time() - start
    loop.close()
    return spent / n


def run_child(n: int, build: str) -> float:
    env = {k: v for k, v in os.environ.items() if k != "MOSN_NO_EXTENSIONS"}
    if build == "pure":
        env["MOSN_NO_EXTENSIONS"] = "1"
    done = subprocess.run([sys.executable, "-P", __file__, "--child", str(n)]
                          + ["--untyped"] * (build == "untyped"), env=env,
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=True)
    return float(done.stdout.strip())


BUILDS = ("compiled", "untyped", "pure")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--untyped", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.child:
        print(child(args.child, args.untyped))
        return
    figures: dict[str, list[float]] = {build: [] for build in BUILDS}
    for n in range(args.rounds):
        for build in BUILDS[n % 3:] + BUILDS[:n % 3]:
            figures[build].append(run_child(args.n, build) * 1e6)
    print(f"proxy core, one HTTP/1.1 request ({args.n} a round, {args.rounds} rounds, "
          f"load {os.getloadavg()[0]:.1f})")
    for label, values in figures.items():
        print(f"  {label:<9} {statistics.median(values):6.1f} us/request   rounds: "
              + " ".join(f"{v:.1f}" for v in values))
    median = {build: statistics.median(values) for build, values in figures.items()}
    ratios = {"compiled/pure": median["compiled"] / median["pure"],
              "compiled/untyped": median["compiled"] / median["untyped"],
              "untyped/pure": median["untyped"] / median["pure"]}
    print("  " + "   ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    print("  typed modules compiled: " + (", ".join(typed_modules()) or "none (add one to the "
                                                "list and reinstall to measure it)"))
    if args.json:
        Path(args.json).write_text(json.dumps({"us_per_request": figures, "ratios": ratios}))


if __name__ == "__main__":
    main()
