"""The floor of a Python proxy on mosn's stack: minimal forwarders beside mosn and its peers.

    python bench/floor.py http [--duration S] [--rounds N] [--only PEERS] [--json FILE]
    python bench/floor.py tcp  [--duration S] [--rounds N] [--only PEERS] [--json FILE]
    python bench/floor.py h2   [--duration S] [--rounds N] [--only PEERS] [--json FILE]
    python bench/floor.py profile PEER [--h2 | --grpc] [--seconds S] [--rate HZ] [--syscalls S]
                                       [--json FILE] [--raw FILE]

How little CPU per request can any proxy built on Python 3.11 + uvloop + httptools
spend on this machine, with no routing, stats or filters? The forwarders in
bench/forwarders/ are each a small script run as its own process:

  py-tcp      forwarders/tcp.py: a uvloop Protocol pair, each read written to the other side.
  py-pass     forwarders/http1.py --mode pass: httptools parses requests and responses,
              the bytes go on unchanged; one upstream keep-alive connection per client one.
  py-l7       forwarders/http1.py --mode l7: the same plus the least an L7 proxy does
              (headers into a dict, a cluster picked by prefix over 100 routes, one header
              added, both heads written anew, bodies re-framed).
  py-h2c      forwarders/h2c.py: mosn's own HTTP/2 codecs (mosn_http2's ServerConnection
              and ClientConnection on libnghttp2) used as a library over uvloop transports,
              each downstream stream relayed to one upstream stream; no routing.
  cy-*        the same file compiled with Cython (cythonize -3, pure-Python mode, no type
              declarations added), so the Python parts run as C on the same uvloop loop.

`http` runs them in bench/http.py's harness, beside its peers (direct, nginx, envoy,
haproxy and mosn with its benchmark config: 100 routes and a fault filter), the same
wrk load (1 thread, 50 keep-alive connections, GET / for a 6-byte body) and the same CPU
accounting (utime + stime of the proxy's processes from /proc over each wrk run, per
request); `tcp` runs py-tcp and cy-tcp in bench/tcp.py's harness beside haproxy, envoy
and mosn's tcp_proxy, ping-pong only (50 connections, 1 KiB round trips from
bench/loadgen.c), CPU per round trip; `h2` runs py-h2c in bench/h2.py's harness
(h2load, 10 connections x 10 streams, nghttpd backend) beside Envoy, nginx, haproxy and
mosn. Proxies on CPU 0, load and upstreams on CPU 1; peers take turns in rounds,
figures are medians over the rounds, and each row carries the machine's 1-minute load
average (median of its rounds' ends) because the machine is shared. Printed beside
each: the proxy's CPU per request over Envoy's, haproxy's (and nginx's).

`profile PEER` (mosn or any forwarder above) runs the HTTP/1.1 load (with --h2, the h2c
load and mosn's h2c config; with --grpc, bench/h2.py --mode grpc's grpcio calls) against that one peer while py-spy samples it (`py-spy
record --native -f raw`), then splits the samples by where the proxy was: each sample
goes to the innermost frame that names a part (a
system call wrapper in libc, uvloop, httptools, or a Python module of mosn by package:
codec, proxy stream, router, pool, stats, filter, headers, network...), and the shares
are turned into µs with the CPU per request measured over the same window. The table
is printed and, with --json, written with the raw counts. With --syscalls S it then
counts the peer's system calls per request under `strace -c -f` for S seconds.

Cython is installed with pip into this interpreter's environment when missing (it is
no dependency of mosn); py-spy likewise. Every process started here is stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib.util
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import (
    BIN,
    Processes,
    cpu_seconds,
    descendants,
    free_port,
    nginx_command,
    peer_arguments,
    pip_install,
    print_notes,
    print_versions,
    proxy_and_load_cpus,
    raise_fd_limit,
    run_measure,
    table,
    version,
    wanted_peers,
    whole_seconds,
    write_json,
)

HERE = Path(__file__).resolve().parent
FORWARDERS = HERE / "forwarders"


def load_harness(name: str):
    """bench/NAME.py as a module (bench/http.py shares its name with the standard library's
    http package, so it is loaded by path, under another name)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


http_bench = load_harness("http")
tcp_bench = load_harness("tcp")
h2_bench = load_harness("h2")

FORWARDER_PEERS = {  # name: (script, its arguments before the ports)
    "py-pass": ("http1", ["--mode", "pass"]),
    "py-l7": ("http1", ["--mode", "l7", "--decoys", str(http_bench.DECOY_ROUTES)]),
    "cy-pass": ("http1", ["--mode", "pass"]),
    "cy-l7": ("http1", ["--mode", "l7", "--decoys", str(http_bench.DECOY_ROUTES)]),
    "py-tcp": ("tcp", []),
    "cy-tcp": ("tcp", []),
    "py-h2c": ("h2c", []),
}
HTTP_PEERS = (*http_bench.PEERS, "py-pass", "py-l7", "cy-pass", "cy-l7")
TCP_PEERS = ("direct", "haproxy", "envoy", "mosn", "py-tcp", "cy-tcp")
H2_PEERS = (*h2_bench.PEERS, "py-h2c")
PROFILE_SECONDS = 20  # py-spy's window: at 200 Hz, 4,000 samples, each share known to ~1%
PROFILE_RATE = 200  # samples per second (py-spy's default is 100)
PROFILE_GRACE = 60.0  # seconds py-spy may take past its window to write its output
STRACE_ATTACH = 5.0  # seconds for strace to attach to the proxy before the load starts
COMPILE_TIMEOUT = 300.0  # seconds for cythonize and the C compiler on a loaded machine


# --- the forwarders ----------------------------------------------------------

def compile_forwarders(workdir: Path, scripts: set[str]) -> dict[str, str]:
    """Each script of bench/forwarders/ compiled with Cython into workdir as SCRIPT_cy;
    {script: why not} for those that could not be."""
    failed = {}
    if scripts and not (BIN / "cythonize").exists() and not pip_install(["cython"]):
        return {script: "cython not installed (pip install cython failed)" for script in scripts}
    for script in sorted(scripts):
        module = workdir / f"{script}_cy.py"
        shutil.copy(FORWARDERS / f"{script}.py", module)
        done = subprocess.run([str(BIN / "cythonize"), "-i", "-3", "-q", module.name], cwd=workdir,
                              capture_output=True, text=True, check=False, timeout=COMPILE_TIMEOUT)
        module.unlink()  # what runs must be the extension module, not the source beside it
        if done.returncode or not list(workdir.glob(f"{script}_cy.*.so")):
            failed[script] = f"cythonize failed: {(done.stdout + done.stderr).strip()[-200:]}"
    return failed


def forwarder_command(name: str, workdir: Path, ports: list[str]) -> list[str]:
    script, arguments = FORWARDER_PEERS[name]
    if name.startswith("py-"):
        return [sys.executable, str(FORWARDERS / f"{script}.py"), *arguments, *ports]
    module = f"{script}_cy"
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(workdir)!r}); import {module}; "
            f"{module}.main(sys.argv[1:])", *arguments, *ports]


def http_command(name: str, workdir: Path, listen: int, backend_port: int) -> list[str]:
    if name in FORWARDER_PEERS:
        return forwarder_command(name, workdir, [str(listen), str(backend_port)])
    return http_bench.peer_command(name, workdir, listen, backend_port)


def h2_command(name: str, workdir: Path, listen: int, backend_port: int, mode: str) -> list[str]:
    if name in FORWARDER_PEERS:
        return forwarder_command(name, workdir, [str(listen), str(backend_port)])
    return h2_bench.peer_command(name, workdir, listen, backend_port, mode)


def tcp_command(name: str, workdir: Path, ports, fd_limit: int) -> list[str]:
    if name in FORWARDER_PEERS:
        return forwarder_command(name, workdir, [f"{ports.echo_listen}:{ports.echo_port}",
                                                 f"{ports.sink_listen}:{ports.sink_port}"])
    return tcp_bench.peer_command(name, workdir, ports, fd_limit)


def prepare(wanted: list[str], workdir: Path, install) -> dict[str, str]:
    """The harness's own installs for its peers, then the Cython builds; {peer: why not}."""
    skipped = install([name for name in wanted if name not in FORWARDER_PEERS])
    compiled = {FORWARDER_PEERS[name][0] for name in wanted if name.startswith("cy-")}
    failed = compile_forwarders(workdir, compiled)
    skipped |= {name: failed[FORWARDER_PEERS[name][0]] for name in wanted
                if name.startswith("cy-") and FORWARDER_PEERS[name][0] in failed}
    return skipped


# --- report ------------------------------------------------------------------

def versus(results: dict, cpu_key: str, references: tuple[str, ...]) -> dict:
    """Each row's CPU per request (or round trip) over each reference's, as "/ref" columns."""
    for row in results.values():
        for ref in references:
            if row.get(cpu_key) and results.get(ref, {}).get(cpu_key):
                row[f"/{ref}"] = round(row[cpu_key] / results[ref][cpu_key], 2)
    return results


def print_table(results: dict, columns, cpu_key: str, references: tuple[str, ...]) -> None:
    columns = (*columns, ("load_avg", "load avg", "{:.2f}"),
               *((f"/{ref}", f"/{ref}", "{:.2f}") for ref in references))
    print(table(versus(results, cpu_key, references), "peer", columns))


# --- http and tcp ------------------------------------------------------------

def bench_requests(args, wanted: list[str], harness, load_generator: str, install, command, title: str,
                   load_side: str) -> int:
    """The forwarders in an HTTP harness (bench/http.py or bench/h2.py): its measure() with
    command for the peers' command lines, its table with the CPU ratios and load averages."""
    window = whole_seconds(args, load_generator)
    cpus = proxy_and_load_cpus()
    raise_fd_limit()

    def measure(procs: Processes) -> dict:
        skipped.update(prepare(wanted, procs.logs, install))
        if len(skipped) == len(wanted):
            return {}
        return harness.measure(args, wanted, skipped, procs, cpus, window, command)

    skipped: dict[str, str] = {}
    results = run_measure(wanted, skipped, cpus[1], measure)
    if isinstance(results, int):
        return results
    bad = harness.flagged(results)
    print(f"\n{title} on CPU {cpus[0]}; {load_side} on CPU {cpus[1]}; {args.duration:g} s per peer "
          f"in {args.rounds} rounds\n")
    print_table(results, harness.COLUMNS, "cpu_us_per_req", ("envoy", "haproxy", "nginx"))
    print_notes(results, bad, cpus[1], load_side)
    versions = {name: version(name) for name in (load_generator, *results)
                if name != "direct" and name not in FORWARDER_PEERS}
    versions |= {"uvloop": version("uvloop"), "httptools": version("httptools")}
    if any(name.startswith("cy-") for name in results):
        versions["cython"] = version("cython")
    print_versions(versions, skipped)
    write_json(args.json, setup={"test": args.test, "duration_s": args.duration, "rounds": args.rounds,
                                 "proxy_cpu": cpus[0], "load_cpu": cpus[1], "versions": versions},
               results=results, flagged=bad, skipped=skipped)
    return 0 if results and not bad else 1


def bench_http(args, wanted: list[str]) -> int:
    return bench_requests(args, wanted, http_bench, "wrk", http_bench.install, http_command, "HTTP/1.1 proxies",
                          f"wrk ({http_bench.THREADS} thread, {http_bench.CONNECTIONS} keep-alive connections) "
                          "and the nginx backend")


def bench_h2(args, wanted: list[str]) -> int:
    args.mode = "h2"
    return bench_requests(args, wanted, h2_bench, "h2load", lambda peers: h2_bench.install(peers, "h2"),
                          h2_command, "h2c proxies", "h2load (-c 10 -m 10 -t 1) and nghttpd")


def bench_tcp(args, wanted: list[str]) -> int:
    cpus = proxy_and_load_cpus()
    fd_limit = raise_fd_limit()

    async def measure(procs: Processes) -> dict:
        gen = await tcp_bench.LoadGenerator.start(procs.logs, cpus[1])
        try:
            return await tcp_bench.measure_peers(args, wanted, skipped, procs, fd_limit, cpus, gen,
                                                 tcp_command, ("ping-pong",))
        finally:
            await gen.stop()

    def run(procs: Processes) -> dict:
        skipped.update(prepare(wanted, procs.logs, tcp_bench.install))
        if len(skipped) == len(wanted):
            return {}
        try:
            return asyncio.run(measure(procs))
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None

    skipped: dict[str, str] = {}
    results = run_measure(wanted, skipped, cpus[1], run)
    if isinstance(results, int):
        return results
    print(f"\nTCP proxies on CPU {cpus[0]}; load generator and upstreams on CPU {cpus[1]}; "
          f"{args.duration:g} s per peer in {args.rounds} rounds; {tcp_bench.PINGPONG_CONNECTIONS} x "
          f"{tcp_bench.MESSAGE_SIZE} B ping-pong\n")
    columns = [column for column in tcp_bench.COLUMNS if column[0] in ("rt_per_s", "p50_us", "p99_us",
                                                                         "cpu_us_per_rt")]
    print_table(results, columns, "cpu_us_per_rt", ("envoy", "haproxy"))
    versions = {name: version(name) for name in results if name != "direct" and name not in FORWARDER_PEERS}
    versions |= {"uvloop": version("uvloop")}
    print_versions(versions, skipped)
    write_json(args.json, setup={"test": "tcp", "duration_s": args.duration, "rounds": args.rounds,
                                 "proxy_cpu": cpus[0], "load_cpu": cpus[1], "versions": versions},
               results=results, skipped=skipped)
    return 0 if results else 1


# --- profile -----------------------------------------------------------------

# Where a sample is counted: the innermost frame matching one of these (checked in order
# for each frame, from the innermost out). In py-spy's raw output (root first, leaf last)
# a native frame is "function (file.c:line)" or "function (library.so)", a Python one
# "function (path.py:line)"; uvloop's and httptools' Cython code is loop.c and parser.c,
# libuv's functions are uv_*, llhttp's llhttp_*. CPython's own C frames (object.h,
# ceval.c ...) match nothing, so their time goes to the code that ran them.
PARTS = (
    ("system calls", re.compile(r"^(write|read|writev|readv|send|recv|sendmsg|recvmsg|epoll_pwait|epoll_wait|"
                                r"epoll_ctl|connect|accept4?|setsockopt|getsockopt|getpeername|getsockname|"
                                r"close|syscall) \(libc")),
    ("libuv", re.compile(r"^uv_")),
    ("uvloop", re.compile(r"\((loop\.c|.*uvloop/)")),
    ("libnghttp2 and mosn_http2's C layer", re.compile(r"^nghttp2_|\((nghttp2_\w+\.c|engine_nghttp2\.c|_nghttp2\.c)")),
    ("cffi", re.compile(r"\(_cffi_backend|^_cffi_|\(.*cffi")),
    ("http2 codec and engine Python (mosn_http2)", re.compile(r"\(mosn_http2/")),
    ("httptools", re.compile(r"\((parser\.c|url_parser\.c|llhttp\.c|api\.c|http\.c)|^llhttp")),
    ("the forwarder's own code", re.compile(r"\((http1\.py:|http1_cy\.c|tcp\.py:|tcp_cy\.c)")),
    ("http1 codec (mosn_http1)", re.compile(r"\(mosn_http1/")),
    ("forwarded headers (x-forwarded-*, hop-by-hop, request id)",
     re.compile(r"^(strip_hop_by_hop|strip_forbidden_length|request_id|.*forward).*\(mosn/proxy/")),
    ("headers and path", re.compile(r"\(mosn/(stream/types|proxy/path)\.py")),
    ("proxy stream", re.compile(r"\(mosn/proxy/")),
    ("router", re.compile(r"\(mosn/router/")),
    ("pool and cluster", re.compile(r"\(mosn/(stream/pool|upstream/)")),
    ("stats and observers", re.compile(r"\(mosn/observability/")),
    ("stream filters", re.compile(r"\(mosn/filters/")),
    ("network (connection, budget)", re.compile(r"\(mosn/network/")),
    ("other mosn", re.compile(r"\((mosn/|mosn_)")),
    ("asyncio (Python)", re.compile(r"\(asyncio/")),
    ("libc (other)", re.compile(r"\(libc")),
    ("other Python", re.compile(r"\.py:\d+\)$")),
)
INTERPRETER = "interpreter and other native code"


def part_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        for part, pattern in PARTS:
            if pattern.search(frame):
                return part
    return INTERPRETER


def split_samples(raw: str) -> tuple[collections.Counter, collections.Counter]:
    """py-spy's raw (collapsed) stacks: samples by part, and by innermost Python function."""
    parts, functions = collections.Counter(), collections.Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        parts[part_of(frames)] += int(count)
        python = [frame for frame in frames if re.search(r"\.py:\d+\)$", frame)]
        functions[python[-1] if python else "(no Python frame)"] += int(count)
    return parts, functions


def profile(args) -> int:
    cpus = proxy_and_load_cpus()
    raise_fd_limit()
    if not (BIN / "py-spy").exists() and not pip_install(["py-spy"]):
        print("error: py-spy is not installed (pip install py-spy failed)")
        return 1
    skipped: dict[str, str] = {}

    def measure(procs: Processes) -> dict:
        mode = "grpc" if args.grpc else "h2"
        install = (lambda peers: h2_bench.install(peers, mode)) if args.h2 or args.grpc else http_bench.install
        skipped.update(prepare([args.peer], procs.logs, install))
        if skipped:
            return {}
        backend_port, listen = free_port(), free_port()
        if args.grpc:
            backend = procs.start("backend", [sys.executable, str(h2_bench.GRPCPEER), "server", str(backend_port)],
                                  cpus[1])
            h2_bench.wait_listening(procs, backend, backend_port)
            proxy = procs.start(args.peer, h2_command(args.peer, procs.logs, listen, backend_port, mode), cpus[0])
            h2_bench.wait_ready(procs, proxy, listen, mode)

            def load(seconds: int, pid: int | None) -> dict:
                return h2_bench.run_grpc(listen, seconds, cpus[1], pid, [backend.pid])
        elif args.h2:
            docroot = procs.logs / "htdocs"
            docroot.mkdir()
            (docroot / h2_bench.PATH.lstrip("/")).write_bytes(h2_bench.BODY)
            backend = procs.start("backend", ["nghttpd", "--no-tls", "-a", "127.0.0.1", "-d", str(docroot),
                                              str(backend_port)], cpus[1])
            h2_bench.wait_listening(procs, backend, backend_port)
            proxy = procs.start(args.peer, h2_command(args.peer, procs.logs, listen, backend_port, "h2"), cpus[0])
            h2_bench.wait_ready(procs, proxy, listen, "h2")

            def load(seconds: int, pid: int | None) -> dict:
                return h2_bench.run_h2load(listen, seconds, cpus[1], pid, [backend.pid], procs.logs)
        else:
            backend = procs.start("backend", nginx_command("backend", procs.logs, "http-backend.conf",
                                                           backend_port=backend_port), cpus[1])
            http_bench.wait_ready(procs, backend, backend_port)
            proxy = procs.start(args.peer, http_command(args.peer, procs.logs, listen, backend_port), cpus[0])
            http_bench.wait_ready(procs, proxy, listen)

            def load(seconds: int, pid: int | None) -> dict:
                return http_bench.run_wrk(listen, seconds, cpus[1], pid, backend.pid)
        load(2, None)  # warm-up
        # the process whose Python runs the requests: mosn's one worker, or the forwarder
        workers = [pid for pid in [proxy.pid, *descendants(proxy.pid)] if is_python(pid)]
        target = workers[-1]
        out = procs.logs / "profile.raw"
        spy = procs.start("py-spy", [str(BIN / "py-spy"), "record", "-r", str(args.rate), "-d", str(args.seconds),
                                     "-f", "raw", "--native", "-o", str(out), "-p", str(target)], cpus[1])
        before = cpu_seconds(proxy.pid)
        run = load(args.seconds, proxy.pid)
        spent = cpu_seconds(proxy.pid) - before
        spy.wait(PROFILE_GRACE)
        if not out.exists():
            raise RuntimeError(f"py-spy wrote no profile: {procs.log_tail(spy)}")
        if args.raw:
            shutil.copy(out, args.raw)
        parts, functions = split_samples(out.read_text())
        result = {"peer": args.peer, "pid": target, "wrk": run, "cpu_s": spent, "parts": dict(parts),
                  "functions": dict(functions.most_common(40))}
        if args.syscalls:
            result["syscalls"] = count_syscalls(procs, target, lambda: load(args.syscalls, None), cpus[1])
        return result

    result = run_measure([args.peer], skipped, cpus[1], measure)
    if isinstance(result, int) or not result:
        print_versions({}, skipped)
        return result or 1
    cpu_us = result["wrk"]["cpu_us_per_req"]
    total = sum(result["parts"].values())
    load = ("grpcio (10 channels x 10 calls)" if args.grpc else "h2load (-c 10 -m 10)" if args.h2
            else f"wrk ({http_bench.CONNECTIONS} connections)")
    print(f"\n{args.peer} under {load} for {args.seconds} s with py-spy "
          f"at {args.rate} Hz: {result['wrk']['req_per_s']} req/s, {cpu_us} CPU us/req (with py-spy "
          f"attached), {total} samples, load average {result['wrk']['load_avg']:.2f}\n")
    rows = {part: {"samples": count, "share": count * 100 / total, "us": count * cpu_us / total}
            for part, count in sorted(result["parts"].items(), key=lambda item: -item[1])}
    print(table(rows, "part", (("samples", "samples", "{:.0f}"), ("share", "%", "{:.1f}"),
                               ("us", "us/req", "{:.2f}"))))
    print("\ninnermost Python function, top 20:")
    for function, count in collections.Counter(result["functions"]).most_common(20):
        print(f"  {count * 100 / total:5.1f}%  {count * cpu_us / total:5.2f} us  {function}")
    if "syscalls" in result:
        calls = result["syscalls"]
        print(f"\nsystem calls per request under strace ({calls.get('requests', 0)} requests): "
              + (calls.get("error") or ", ".join(f"{name} {n:.2f}" for name, n in calls["per_request"].items()
                                                 if n >= 0.01)))
    write_json(args.json, **result)
    return 0


def count_syscalls(procs: Processes, pid: int, load, cpu: int) -> dict:
    """System calls of pid per request while load() runs, by name, from `strace -c -f`
    (strace slows the proxy down many times, but what it makes per request is the count)."""
    if not shutil.which("strace"):
        return {"error": "strace not installed"}
    out = procs.logs / "strace.txt"
    tracer = procs.start("strace", ["strace", "-c", "-f", "-q", "-o", str(out), "-p", str(pid)], cpu)
    deadline = time.monotonic() + STRACE_ATTACH
    while not out.exists() and time.monotonic() < deadline:  # strace opens -o once attached
        time.sleep(0.05)
    run = load()
    procs.stop(tracer)  # strace detaches on SIGTERM and writes its summary
    calls = {}
    for line in out.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1] != "total":
            calls[fields[-1]] = int(fields[3])
    return {"requests": run["requests"], "per_request": {name: round(n / run["requests"], 3)
                                                         for name, n in sorted(calls.items(), key=lambda c: -c[1])}}


def is_python(pid: int) -> bool:
    try:
        return "python" in Path(f"/proc/{pid}/exe").resolve().name or b"mosn" in \
            Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    tests = parser.add_subparsers(dest="test", required=True)
    for name, peers in (("http", HTTP_PEERS), ("tcp", TCP_PEERS), ("h2", H2_PEERS)):
        sub = tests.add_parser(name, help=f"the {name} forwarders beside the {name} harness's peers")
        peer_arguments(sub, peers, http_bench.ROUNDS)
        sub.set_defaults(peers=peers)
    sub = tests.add_parser("profile", help="py-spy over one HTTP peer under wrk")
    sub.add_argument("peer", choices=("mosn", "py-pass", "py-l7", "cy-pass", "cy-l7", "py-h2c"))
    sub.add_argument("--h2", action="store_true", help="h2load and nghttpd (bench/h2.py's load) instead of wrk")
    sub.add_argument("--grpc", action="store_true",
                     help="grpcio calls and server (bench/h2.py --mode grpc's load) instead of wrk")
    sub.add_argument("--seconds", type=int, default=PROFILE_SECONDS)
    sub.add_argument("--rate", type=int, default=PROFILE_RATE)
    sub.add_argument("--json", type=Path, help="also write the counts to this file")
    sub.add_argument("--raw", type=Path, help="also keep py-spy's raw output in this file")
    sub.add_argument("--syscalls", type=int, default=0, metavar="S",
                     help="then count the system calls per request under strace for S seconds")
    args = parser.parse_args()
    if args.test == "profile":
        return profile(args)
    wanted = wanted_peers(parser, args, args.peers)
    return {"http": bench_http, "tcp": bench_tcp, "h2": bench_h2}[args.test](args, wanted)


if __name__ == "__main__":
    sys.exit(main())
