"""A soak: mixed traffic from real clients through one mosn for a long time, while
upstreams are killed and restarted, hosts flip health and the config is reloaded.

    .venv/bin/python -P bench/soak.py [--duration 1800] [--event-every 30] [--json out.json]
                                      [--events kill-one,reload,upgrade,outage]

Traffic, each a closed loop whose every answer is checked against its request:
HTTP/1.1 and HTTP/2 (h2c) from httpx, gRPC from grpcio, bolt and Dubbo from
sofa-rpc-node (bench/soak_clients/). Behind mosn, two upstreams per protocol: the
example HTTP upstream (uvicorn), grpcio's echo server (bench/grpcpeer.py), and
sofa-rpc-node's bolt and Dubbo providers (the plugins' test peers). Clusters have
active health checks; routes retry connect failures and resets.

Every --event-every seconds, in turn: one upstream of a protocol killed (SIGKILL) and
restarted --down-for seconds later (its host flips unhealthy, then healthy: the other
host must carry every request); a config reload (SIGHUP, a route timeout changed:
applied in place with one process, by new workers with several); an upgrade (a second
``mosn start`` on the same config takes over, migrating the clients' connections,
docs/upgrade.md); and both upstreams of one protocol killed (an
outage: that protocol's requests may fail until its upstreams are back and the
clients' timeout has passed).

Reported: per protocol, requests sent, answered correctly, answered wrongly, failed
(by reason, split into failures inside an outage window and any other), mosn's RSS
over time (parent and workers), and the ERROR lines mosn logged. The goal: no wrong
answer, no failure outside an outage, RSS at the end within 10% of RSS at minute 5.
Exit status 1 when one of the first two is not met (RSS is reported, not judged).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, Processes, free_port, interrupted, raise_fd_limit, rss_kib  # noqa: E402

BENCH = Path(__file__).resolve().parent
CLIENTS = BENCH / "soak_clients"
SOFARPC_PEERS = ROOT / "plugins" / "sofarpc" / "tests" / "peers"
DUBBO_PEERS = ROOT / "plugins" / "dubbo" / "tests" / "peers"
PROTOCOLS = ("http1", "http2", "grpc", "bolt", "dubbo")
UPSTREAM_KIND = {"http1": "http", "http2": "http", "grpc": "grpc", "bolt": "bolt", "dubbo": "dubbo"}
"""Which upstream pair serves each client protocol (HTTP/1.1 and HTTP/2 share one)."""
START_TIMEOUT = 60.0
"""Seconds for an upstream or mosn to accept connections (node starts slowly on a busy CI)."""
CLIENT_TIMEOUT = 10.0
"""Seconds a client waits for an answer before it counts a failure."""
OUTAGE_GRACE = CLIENT_TIMEOUT + 3.0
"""Seconds after an outage's upstreams are back during which its failures still count
as the outage's: a request sent into the outage may time out that much later."""
HEALTH_INTERVAL = "1s"
HEALTH_TIMEOUT = "2s"
UNHEALTHY_THRESHOLD = 3
"""A host is flagged after 3 failed checks: a killed upstream refuses them at once (about
3 s; retries carry its requests meanwhile), while a machine that stalls for a second or
two (a loaded CI) does not flag healthy hosts. With 1 check and a 1 s timeout, every
host of every protocol was flagged at once in such stalls and requests failed 503."""
RSS_EVERY = 10.0
"""Seconds between samples of mosn's RSS."""


@dataclass
class Client:
    protocol: str
    proc: subprocess.Popen
    sent: int = 0
    ok: int = 0
    failures: list[tuple[float, str]] = field(default_factory=list)
    wrong: list[tuple[float, str]] = field(default_factory=list)

    def read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "S":
                sent, ok = rest.split()
                self.sent, self.ok = int(sent), int(ok)
            elif kind in ("F", "W"):
                when, _, what = rest.partition(" ")
                (self.failures if kind == "F" else self.wrong).append((float(when), what))


class Upstreams:
    """Two upstream processes per kind, each restartable on its own port."""

    def __init__(self, procs: Processes, workdir: Path) -> None:
        self.procs = procs
        self.workdir = workdir
        self.ports = {kind: (free_port(), free_port()) for kind in set(UPSTREAM_KIND.values())}
        self.running: dict[tuple[str, int], subprocess.Popen] = {}

    def argv(self, kind: str, index: int) -> list[str]:
        port = self.ports[kind][index]
        if kind == "http":
            return [sys.executable, str(ROOT / "examples" / "http_upstream.py"), "--port", str(port),
                    "--name", f"http{index}"]
        if kind == "grpc":
            return [sys.executable, str(BENCH / "grpcpeer.py"), "server", str(port)]
        peers = SOFARPC_PEERS if kind == "bolt" else DUBBO_PEERS
        return ["node", str(peers / "server.js"), str(port)]

    def start(self, kind: str, index: int) -> None:
        proc = self.procs.start(f"{kind}{index}", self.argv(kind, index), cpu=1)
        self.running[(kind, index)] = proc
        wait_for_port(self.ports[kind][index], proc)

    def kill(self, kind: str, index: int) -> None:
        proc = self.running.pop((kind, index))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.procs.running.remove(proc)


def wait_for_port(port: int, proc: subprocess.Popen) -> None:
    import socket

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not accept connections on {port}")


def mosn_config(listen: dict[str, int], upstreams: Upstreams, admin: int, timeout: str) -> dict:
    retry = {"retry_on": "connect-failure,reset", "num_retries": 2}

    def routes(name: str, cluster: str, match: dict) -> dict:
        return {"router_config_name": name, "virtual_hosts": [{
            "name": name, "domains": ["*"],
            "routers": [{"match": match, "route": {"cluster_name": cluster, "timeout": timeout,
                                                   "retry_policy": retry}}]}]}

    def listener(name: str, protocol: str, upstream: str | None) -> dict:
        config = {"downstream_protocol": protocol, "router_config_name": f"{name}_routes"}
        if upstream:
            config["upstream_protocol"] = upstream
        return {"name": name, "address": f"127.0.0.1:{listen[name]}", "bind_port": True,
                "filter_chains": [{"filters": [{"type": "proxy", "config": config}]}]}

    def cluster(kind: str) -> dict:
        return {"name": kind, "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "connect_timeout": "1s",
                "hosts": [{"address": f"127.0.0.1:{port}"} for port in upstreams.ports[kind]],
                "health_check": {"protocol": "tcp", "interval": HEALTH_INTERVAL,
                                 "timeout": HEALTH_TIMEOUT,
                                 "unhealthy_threshold": UNHEALTHY_THRESHOLD,
                                 "healthy_threshold": 1}}

    service = {"name": "service", "value": "com.example.EchoService"}
    return {
        "servers": [{
            "default_log_level": "WARN",
            "graceful_timeout": "5s",
            "routers": [
                routes("http_routes", "http", {"prefix": "/"}),
                routes("grpc_routes", "grpc", {"prefix": "/"}),
                routes("bolt_routes", "bolt", {"headers": [{"name": "service",
                                                            "value": "com.example.EchoService:1.0"}]}),
                routes("dubbo_routes", "dubbo", {"headers": [service]}),
            ],
            "listeners": [
                listener("http", "Auto", "Http1"),
                listener("grpc", "Http2", "Http2"),
                listener("bolt", "bolt", None),
                listener("dubbo", "dubbo", None),
            ],
        }],
        "cluster_manager": {"clusters": [cluster(kind) for kind in ("http", "grpc", "bolt", "dubbo")]},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
    }


EVENTS = ("kill-one", "reload", "upgrade", "outage")


def schedule(chosen: set[str]):
    """The ``chosen`` events, in turn, for ever: one upstream of each protocol kind
    killed, a reload, an upgrade, an outage of one kind."""
    kinds = ("http", "grpc", "bolt", "dubbo")
    round_ = 0
    while True:
        if "kill-one" in chosen:
            for kind in kinds:
                yield "kill-one", kind, round_ % 2
        if "reload" in chosen:
            yield "reload", "", 0
        if "upgrade" in chosen:
            yield "upgrade", "", 0
        if "outage" in chosen:
            yield "outage", kinds[round_ % len(kinds)], 0
        round_ += 1


def start_client(procs: Processes, protocol: str, port: int, concurrency: int) -> Client:
    if protocol in ("bolt", "dubbo"):
        argv = ["node", str(CLIENTS / "rpc.js"), protocol, f"127.0.0.1:{port}", str(concurrency),
                str(int(CLIENT_TIMEOUT * 1000))]
        peers = SOFARPC_PEERS if protocol == "bolt" else DUBBO_PEERS
        env = {**os.environ, "NODE_PATH": str(peers / "node_modules")}
    else:
        argv = [sys.executable, str(CLIENTS / "clients.py"), protocol, str(port),
                "--concurrency", str(concurrency), "--timeout", str(CLIENT_TIMEOUT)]
        env = None
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=open(procs.logs / f"client-{protocol}.log", "wb"), text=True, env=env)
    proc.name = f"client-{protocol}"
    procs.running.append(proc)
    client = Client(protocol, proc)
    threading.Thread(target=client.read, daemon=True).start()
    return client


def run(args: argparse.Namespace, workdir: Path) -> dict:
    procs = Processes(workdir)
    upstreams = Upstreams(procs, workdir)
    listen = {name: free_port() for name in ("http", "grpc", "bolt", "dubbo")}
    admin = free_port()
    config_path = workdir / "mosn.yaml"
    timeouts = ("5s", "6s")
    config_path.write_text(yaml.safe_dump(mosn_config(listen, upstreams, admin, timeouts[0])))
    events: list[dict] = []
    outages: dict[str, list[tuple[float, float]]] = {kind: [] for kind in upstreams.ports}
    rss: list[tuple[float, int]] = []
    try:
        for kind in upstreams.ports:
            for index in (0, 1):
                upstreams.start(kind, index)
        mosn_argv = [sys.executable, "-m", "mosn", "start", "-c", str(config_path),
                     "--workers", str(args.workers)]
        mosn = procs.start("mosn", mosn_argv, cpu=0)
        for port in listen.values():
            wait_for_port(port, mosn)
        clients = {p: start_client(procs, p, listen[UPSTREAM_KIND[p] if p != "http2" else "http"],
                                   args.concurrency) for p in PROTOCOLS}
        start = time.monotonic()
        begin = time.time()
        next_event = start + args.event_every
        next_rss = start
        plan = schedule(set(args.events))
        reloads = upgrades = 0
        while (now := time.monotonic()) < start + args.duration:
            if mosn.poll() is not None:
                raise RuntimeError(f"mosn exited with status {mosn.returncode}: {procs.log_tail(mosn)}")
            if now >= next_rss:
                rss.append((round(now - start, 1), rss_kib(mosn.pid)))
                next_rss += RSS_EVERY
            if now >= next_event and now + args.down_for < start + args.duration:
                what, kind, index = next(plan)
                at = time.time()
                if what == "reload":
                    reloads += 1
                    config_path.write_text(yaml.safe_dump(
                        mosn_config(listen, upstreams, admin, timeouts[reloads % 2])))
                    mosn.send_signal(signal.SIGHUP)
                    events.append({"t": round(at - begin, 1), "event": "reload"})
                elif what == "upgrade":
                    upgrades += 1
                    new = procs.start(f"mosn-{upgrades}", mosn_argv, cpu=0)
                    mosn.wait(timeout=START_TIMEOUT)  # it exits once it handed over
                    procs.running.remove(mosn)
                    if mosn.returncode != 0:
                        raise RuntimeError(f"the upgraded mosn exited with status "
                                           f"{mosn.returncode}: {procs.log_tail(mosn)}")
                    mosn = new
                    events.append({"t": round(at - begin, 1), "event": "upgrade",
                                   "handover_s": round(time.time() - at, 1)})
                else:
                    indexes = (index,) if what == "kill-one" else (0, 1)
                    for i in indexes:
                        upstreams.kill(kind, i)
                    time.sleep(args.down_for)
                    for i in indexes:
                        upstreams.start(kind, i)
                    back = time.time()
                    if what == "outage":
                        outages[kind].append((at, back + OUTAGE_GRACE))
                    events.append({"t": round(at - begin, 1), "event": what, "upstream": kind,
                                   "hosts": list(indexes), "down_s": round(back - at, 1)})
                next_event = time.monotonic() + args.event_every
            time.sleep(0.2)
        rss.append((round(time.monotonic() - start, 1), rss_kib(mosn.pid)))
        for client in clients.values():
            client.proc.send_signal(signal.SIGTERM)
        for client in clients.values():
            client.proc.wait(timeout=30)
        time.sleep(0.5)  # the readers take the last totals lines
        errors = [line for log in sorted(workdir.glob("mosn*.log"))
                  for line in log.read_text(errors="replace").splitlines()
                  if " ERROR " in line or "Traceback" in line]
    finally:
        procs.stop_all()
    return summarise(args, clients, outages, events, rss, errors, begin)


def summarise(args, clients: dict[str, Client], outages, events, rss, errors, begin: float) -> dict:
    protocols = {}
    for name, client in clients.items():
        windows = outages[UPSTREAM_KIND[name]]
        in_outage = Counter()
        other = Counter()
        other_at = []
        for when, reason in client.failures:
            inside = any(a <= when <= b for a, b in windows)
            (in_outage if inside else other)[reason] += 1
            if not inside:
                other_at.append(round(when - begin, 1))
        protocols[name] = {
            "sent": client.sent, "ok": client.ok, "wrong": len(client.wrong),
            "failed_in_outage": dict(in_outage), "failed_otherwise": dict(other),
            "failed_otherwise_at_s": sorted(set(other_at))[:20],
            "cut_at_stop": client.sent - client.ok - len(client.wrong) - len(client.failures),
            "wrong_examples": [w for _, w in client.wrong[:5]],
        }
    at_5min = next((kib for t, kib in rss if t >= min(300.0, args.duration / 6)), None)
    end = rss[-1][1] if rss else None
    return {
        "duration_s": args.duration, "workers": args.workers, "concurrency": args.concurrency,
        "protocols": protocols, "events": events, "rss_kib": rss,
        "rss_growth": round(end / at_5min - 1, 3) if at_5min and end else None,
        "mosn_error_lines": len(errors), "mosn_error_examples": errors[:10],
    }


def print_report(result: dict) -> None:
    print("events (s): " + ", ".join(f"{e['t']:.0f} {e['event']} {e.get('upstream', '')}".rstrip()
                                     for e in result["events"]))
    print(f"\nsoak: {result['duration_s']} s, mosn --workers {result['workers']}, "
          f"{result['concurrency']} requests in flight per client, {len(result['events'])} events")
    print(f"{'protocol':10}{'sent':>10}{'ok':>10}{'wrong':>7}{'failed (outage)':>17}"
          f"{'failed (other)':>16}{'cut at stop':>13}")
    for name, p in result["protocols"].items():
        print(f"{name:10}{p['sent']:>10}{p['ok']:>10}{p['wrong']:>7}"
              f"{sum(p['failed_in_outage'].values()):>17}{sum(p['failed_otherwise'].values()):>16}"
              f"{p['cut_at_stop']:>13}")
        for reason, count in p["failed_otherwise"].items():
            print(f"    failed outside an outage: {count} x {reason}")
        if p["failed_otherwise_at_s"]:
            print(f"    at (s): {p['failed_otherwise_at_s']}")
        for example in p["wrong_examples"]:
            print(f"    wrong: {example}")
    rss = result["rss_kib"]
    if rss:
        points = rss[:: max(1, len(rss) // 12)]
        print("mosn RSS (s: MiB): " + ", ".join(f"{t:.0f}: {kib / 1024:.1f}" for t, kib in points))
    print(f"RSS growth from minute 5 (or a sixth of the run) to the end: {result['rss_growth']}")
    print(f"mosn ERROR lines: {result['mosn_error_lines']}")
    for line in result["mosn_error_examples"]:
        print(f"    {line[:200]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds of traffic")
    parser.add_argument("--event-every", type=float, default=30.0, help="seconds between events")
    parser.add_argument("--down-for", type=float, default=5.0, help="seconds a killed upstream stays down")
    parser.add_argument("--workers", type=int, default=2, help="mosn --workers")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight per client")
    parser.add_argument("--events", default=",".join(EVENTS),
                        help=f"comma-separated kinds of event, of {', '.join(EVENTS)}")
    parser.add_argument("--json", type=Path, help="write the result here too")
    args = parser.parse_args()
    args.events = args.events.split(",")
    if not args.events or not set(args.events) <= set(EVENTS):
        parser.error(f"--events: a comma-separated list of {', '.join(EVENTS)}")
    signal.signal(signal.SIGTERM, interrupted)
    raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="mosn-soak-") as tmp:
        try:
            result = run(args, Path(tmp))
        except RuntimeError as exc:
            print(f"soak: {exc}", file=sys.stderr)
            for log in sorted(Path(tmp).glob("*.log")):
                tail = log.read_text(errors="replace").strip().splitlines()[-5:]
                print(f"--- {log.name}\n" + "\n".join(tail), file=sys.stderr)
            return 2
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    bad = any(p["wrong"] or p["failed_otherwise"] for p in result["protocols"].values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
