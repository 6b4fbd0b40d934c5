"""TLS benchmarks, side by side in one run (results for docs/benchmarks.md).

    .venv/bin/python bench/tls.py [--seconds 5] [--rounds 3] [--only handshake,https,h2,idle]

1. Full and resumed TLS 1.3 handshakes (ECDSA P-256 and RSA-2048 certificates): mosn,
   Envoy and ``openssl s_server`` (the OpenSSL floor: the same library in C, no proxy)
   each terminate TLS on an HTTP listener; parallel ``openssl s_time`` clients
   connect and close. Each server's CPU per handshake gives the rate one core of it
   sustains (the clients share the other core and bound the observed rate).
2. HTTPS keep-alive HTTP/1.1 (wrk, 1 and 50 connections) against the same mosn config
   in plaintext: two listeners of one process, TLS downstream, plaintext upstream to an
   nginx backend; mosn's CPU per request in each, and the difference. Envoy alike.
   With one connection every request is one turn of the proxy's loop in both modes;
   with 50, a mode served more slowly reads fewer requests per turn, so its loop's
   fixed cost per turn is shared by fewer requests and shows in the difference.
3. HTTP/2 over TLS (h2load -c10 -m10, ALPN h2) through mosn, Envoy, haproxy and nginx
   to the HTTP/1.1 nginx backend: requests/s and each proxy's CPU per request.
4. RSS per idle proxied pair with TLS downstream: 1000 TLS client connections held open
   through mosn's and Envoy's tcp_proxy to the backend; the proxy's RSS growth / 1000.

The proxy runs on the first CPU, clients and backend on the last (bench/common.py).
Certificates are made here (mosn.testing.certs); nothing is committed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    BIN,
    Processes,
    cpu_seconds,
    free_port,
    install_envoy,
    install_mosn,
    interrupted,
    nginx_command,
    proxy_and_load_cpus,
    raise_fd_limit,
    rss_kib,
    version,
)

from mosn.testing.certs import CertificateAuthority  # noqa: E402

START_TIMEOUT = 30.0  # seconds for a peer to accept connections
S_TIME_CLIENTS = 4  # parallel openssl s_time processes (each connects one at a time)
WRK_CONNECTIONS = (1, 50)
H2LOAD_CLIENTS, H2LOAD_STREAMS = 10, 10
IDLE_PAIRS = 1000
SETTLE = 1.0  # seconds after the idle connections are open before RSS is read


def wait_port(port: int, proc: subprocess.Popen, name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} not listening on {port}")


# -- peers ------------------------------------------------------------------------------------


def mosn_config(listeners: list[dict[str, Any]], backend_port: int) -> dict[str, Any]:
    return {
        "servers": [{"routers": [{"router_config_name": "r", "virtual_hosts": [{
            "name": "all", "domains": ["*"],
            "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "backend"}}]}]}],
            "listeners": listeners}],
        "cluster_manager": {"clusters": [{"name": "backend", "hosts": [
            {"address": f"127.0.0.1:{backend_port}"}]}]},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                 "port_value": free_port()}}},
    }


def mosn_listener(name: str, port: int, tls: dict[str, Any] | None, kind: str = "http",
                  protocol: str = "Http1") -> dict[str, Any]:
    if kind == "tcp":
        filters = [{"type": "tcp_proxy", "config": {"cluster": "backend"}}]
    else:
        filters = [{"type": "proxy", "config": {"downstream_protocol": protocol,
                                                "upstream_protocol": "Http1",
                                                "router_config_name": "r"}}]
    chain: dict[str, Any] = {"filters": filters}
    if tls:
        chain["tls_context"] = tls
    return {"name": name, "address": f"127.0.0.1:{port}", "filter_chains": [chain]}


def mosn_tls(cert: dict[str, str], alpn: str = "") -> dict[str, Any]:
    return {"status": True, "cert_chain": cert["cert"], "private_key": cert["key"], "alpn": alpn}


def start_mosn(procs: Processes, cpu: int, listeners: list[dict[str, Any]], backend: int,
               name: str = "mosn") -> subprocess.Popen:
    path = procs.logs / f"{name}.json"
    path.write_text(json.dumps(mosn_config(listeners, backend)))
    return procs.start(name, [str(BIN / "mosn"), "start", "-c", str(path)], cpu)


def envoy_tls_socket(cert: dict[str, str], alpn: list[str]) -> dict[str, Any]:
    return {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                 "DownstreamTlsContext",
        "common_tls_context": {
            "tls_certificates": [{"certificate_chain": {"filename": cert["cert"]},
                                  "private_key": {"filename": cert["key"]}}],
            "alpn_protocols": alpn}}}


def envoy_listener(name: str, port: int, cert: dict[str, str] | None, kind: str = "http",
                   alpn: list[str] | None = None) -> dict[str, Any]:
    if kind == "tcp":
        flt = {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": name, "cluster": "backend"}}
    else:
        flt = {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network."
                     "http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": name, "codec_type": "AUTO",
            "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                {"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}
    chain: dict[str, Any] = {"filters": [flt]}
    if cert:
        chain["transport_socket"] = envoy_tls_socket(cert, alpn or [])
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1",
                                                         "port_value": port}},
            "filter_chains": [chain]}


def start_envoy(procs: Processes, cpu: int, listeners: list[dict[str, Any]], backend: int,
                name: str = "envoy") -> subprocess.Popen:
    config = {"admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                       "port_value": free_port()}}},
              "static_resources": {"listeners": listeners, "clusters": [{
                  "name": "backend", "type": "STATIC", "connect_timeout": "5s",
                  "circuit_breakers": {"thresholds": [{"max_connections": 1000000,
                                                       "max_pending_requests": 1000000,
                                                       "max_requests": 1000000}]},
                  "load_assignment": {"cluster_name": "backend", "endpoints": [{"lb_endpoints": [{
                      "endpoint": {"address": {"socket_address": {
                          "address": "127.0.0.1", "port_value": backend}}}}]}]}}]}}
    path = procs.logs / f"{name}.json"
    path.write_text(json.dumps(config))
    return procs.start(name, [str(BIN / "envoy"), "-c", str(path), "--concurrency", "1",
                              "--disable-hot-restart", "--log-level", "warn",
                              "--base-id", str(free_port())], cpu)


# -- 1. handshakes ----------------------------------------------------------------------------


def s_time(port: int, seconds: int, cpu: int, reuse: bool) -> int:
    """Connections made by S_TIME_CLIENTS parallel ``openssl s_time`` in ``seconds``:
    full TLS 1.3 handshakes, or (``reuse``) TLS 1.2 resumptions by session ticket
    (s_time reads nothing after a TLS 1.3 handshake, so it never gets a 1.3 ticket)."""
    argv = ["taskset", "-c", str(cpu), "openssl", "s_time", "-connect", f"127.0.0.1:{port}",
            "-time", str(seconds), *(("-reuse", "-tls1_2") if reuse else ("-new",))]
    runs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(S_TIME_CLIENTS)]
    total = 0
    for run in runs:
        out, _ = run.communicate(timeout=seconds + 60)
        found = re.search(r"(\d+) connections in [\d.]+s", out)
        if not found:
            raise RuntimeError(f"s_time printed no count: {out[-300:]!r}")
        total += int(found.group(1))
    return total


def handshakes(procs: Processes, cpus: tuple[int, int], certs: dict[str, dict[str, str]],
               backend: int, seconds: int, rounds: int, envoy_ok: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, cert in certs.items():
        servers: dict[str, tuple[subprocess.Popen, int]] = {}
        port = free_port()
        servers["mosn"] = (start_mosn(procs, cpus[0], [mosn_listener("tls", port, mosn_tls(cert))],
                                      backend, f"mosn-hs-{key}"), port)
        if envoy_ok:
            port = free_port()
            servers["envoy"] = (start_envoy(procs, cpus[0], [envoy_listener("tls", port, cert)],
                                            backend, f"envoy-hs-{key}"), port)
        port = free_port()
        servers["openssl s_server"] = (procs.start(f"s_server-{key}", [
            "openssl", "s_server", "-quiet", "-accept", f"127.0.0.1:{port}", "-cert", cert["cert"],
            "-key", cert["key"], "-naccept", "100000000"], cpus[0]), port)
        for name, (proc, port) in servers.items():
            wait_port(port, proc, name)
        for reuse in (False, True):
            kind = f"{key} {'resumed TLS 1.2' if reuse else 'full TLS 1.3'}"
            rows: dict[str, list[tuple[float, float]]] = {n: [] for n in servers}
            for _ in range(rounds):
                for name, (proc, port) in servers.items():
                    before = cpu_seconds(proc.pid)
                    start = time.perf_counter()
                    count = s_time(port, seconds, cpus[1], reuse)
                    elapsed = time.perf_counter() - start
                    used = cpu_seconds(proc.pid) - before
                    rows[name].append((count / elapsed, used * 1e6 / max(count, 1)))
            out[kind] = {name: {"per_s": round(statistics.median(r[0] for r in runs)),
                                "cpu_us": round(statistics.median(r[1] for r in runs), 1),
                                "per_core_s": round(1e6 / statistics.median(r[1] for r in runs))}
                         for name, runs in rows.items()}
            print(kind, json.dumps(out[kind]), flush=True)
        for proc, _ in servers.values():
            procs.stop(proc)
    return out


def openssl_speed() -> dict[str, str]:
    """OpenSSL's own figures for the operations of a TLS 1.3 server handshake."""
    out = {}
    for algorithm in ("ecdsap256", "rsa2048", "ecdhx25519"):
        done = subprocess.run(["openssl", "speed", "-seconds", "2", algorithm],
                              capture_output=True, text=True, check=False)
        line = next((ln for ln in done.stdout.splitlines()
                     if re.match(r"\s*(rsa )?\d+ bits ", ln)), "")
        out[algorithm] = " ".join(line.split())
    return out


# -- 2. HTTPS keep-alive ------------------------------------------------------------------------


def wrk(url: str, seconds: int, cpu: int, connections: int = WRK_CONNECTIONS[-1]) -> int:
    done = subprocess.run(["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{connections}",
                           f"-d{seconds}s", url], capture_output=True, text=True, check=False,
                          timeout=seconds + 60)
    found = re.search(r"(\d+) requests in", done.stdout)
    if not found or "Non-2xx" in done.stdout:
        raise RuntimeError(f"wrk: {done.stdout[-300:]} {done.stderr[-300:]}")
    return int(found.group(1))


def keepalive(procs: Processes, cpus: tuple[int, int], cert: dict[str, str], backend: int,
              seconds: int, rounds: int, envoy_ok: bool) -> dict[str, Any]:
    plain, tls = free_port(), free_port()
    peers = {"mosn": (start_mosn(procs, cpus[0], [mosn_listener("plain", plain, None),
                                                  mosn_listener("tls", tls, mosn_tls(cert))],
                                 backend, "mosn-ka"), plain, tls)}
    if envoy_ok:
        eplain, etls = free_port(), free_port()
        peers["envoy"] = (start_envoy(procs, cpus[0], [envoy_listener("plain", eplain, None),
                                                       envoy_listener("tls", etls, cert)],
                                      backend, "envoy-ka"), eplain, etls)
    out: dict[str, Any] = {}
    for name, (proc, p_port, t_port) in peers.items():
        wait_port(t_port, proc, name)
        wrk(f"http://127.0.0.1:{p_port}/", 1, cpus[1])  # warm up
        wrk(f"https://127.0.0.1:{t_port}/", 1, cpus[1])
        row: dict[str, Any] = {}
        for connections in WRK_CONNECTIONS:
            runs: dict[str, list[tuple[float, float]]] = {"plaintext": [], "tls": []}
            for _ in range(rounds):
                for mode, url in (("plaintext", f"http://127.0.0.1:{p_port}/"),
                                  ("tls", f"https://127.0.0.1:{t_port}/")):
                    before, start = cpu_seconds(proc.pid), time.perf_counter()
                    count = wrk(url, seconds, cpus[1], connections)
                    elapsed, used = time.perf_counter() - start, cpu_seconds(proc.pid) - before
                    runs[mode].append((count / elapsed, used * 1e6 / count))
            one: dict[str, Any] = {
                mode: {"req_per_s": round(statistics.median(r[0] for r in rs)),
                       "cpu_us_per_req": round(statistics.median(r[1] for r in rs), 1)}
                for mode, rs in runs.items()}
            one["tls_adds_us"] = round(
                one["tls"]["cpu_us_per_req"] - one["plaintext"]["cpu_us_per_req"], 1)
            row[f"{connections} connections"] = one
        out[name] = row
        print("keep-alive", name, json.dumps(row), flush=True)
        procs.stop(proc)
    return out


# -- 3. HTTP/2 over TLS -----------------------------------------------------------------------


HAPROXY_H2_TLS = """global
    nbthread 1
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 1h
    timeout server 1h
listen web
    bind 127.0.0.1:{listen} ssl crt {pem} alpn h2
    server backend 127.0.0.1:{backend}
"""
NGINX_H2_TLS = """daemon off;
worker_processes 1;
pid nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000000;
    keepalive_timeout 1h;
    upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; keepalive_requests 1000000000; }}
    server {{
        listen 127.0.0.1:{listen} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ proxy_pass http://backend; proxy_http_version 1.1;
                     proxy_set_header Connection ""; }}
    }}
}}
"""


def h2load(port: int, seconds: int, cpu: int) -> int:
    done = subprocess.run(["taskset", "-c", str(cpu), "h2load", "-D", str(seconds),
                           "-c", str(H2LOAD_CLIENTS), "-m", str(H2LOAD_STREAMS),
                           f"https://127.0.0.1:{port}/"],
                          capture_output=True, text=True, check=False, timeout=seconds + 60)
    found = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", done.stdout)
    if not found or "Application protocol: h2" not in done.stdout:
        raise RuntimeError(f"h2load: {done.stdout[-400:]}")
    return int(found.group(2))


def http2(procs: Processes, cpus: tuple[int, int], cert: dict[str, str], backend: int,
          seconds: int, rounds: int, envoy_ok: bool) -> dict[str, Any]:
    peers: dict[str, tuple[subprocess.Popen, int]] = {}
    port = free_port()
    peers["mosn"] = (start_mosn(procs, cpus[0], [mosn_listener(
        "h2", port, mosn_tls(cert, "h2"), protocol="Auto")], backend, "mosn-h2"), port)
    if envoy_ok:
        port = free_port()
        peers["envoy"] = (start_envoy(procs, cpus[0], [envoy_listener(
            "h2", port, cert, alpn=["h2"])], backend, "envoy-h2"), port)
    if shutil.which("haproxy"):
        port = free_port()
        pem = procs.logs / "haproxy.pem"
        pem.write_bytes(Path(cert["cert"]).read_bytes() + Path(cert["key"]).read_bytes())
        cfg = procs.logs / "haproxy-h2.cfg"
        cfg.write_text(HAPROXY_H2_TLS.format(listen=port, pem=pem, backend=backend))
        peers["haproxy"] = (procs.start("haproxy-h2", ["haproxy", "-db", "-f", str(cfg)],
                                        cpus[0]), port)
    if shutil.which("nginx"):
        port = free_port()
        prefix = procs.logs / "nginx-h2"
        prefix.mkdir()
        cfg = procs.logs / "nginx-h2.conf"
        cfg.write_text(NGINX_H2_TLS.format(listen=port, backend=backend, cert=cert["cert"],
                                           key=cert["key"]))
        peers["nginx"] = (procs.start("nginx-h2", ["nginx", "-p", f"{prefix}/", "-e", "stderr",
                                                   "-c", str(cfg)], cpus[0]), port)
    out: dict[str, Any] = {}
    for name, (proc, port) in peers.items():
        wait_port(port, proc, name)
        h2load(port, 1, cpus[1])
    runs: dict[str, list[tuple[float, float]]] = {n: [] for n in peers}
    for _ in range(rounds):
        for name, (proc, port) in peers.items():
            before, start = cpu_seconds(proc.pid), time.perf_counter()
            count = h2load(port, seconds, cpus[1])
            elapsed, used = time.perf_counter() - start, cpu_seconds(proc.pid) - before
            runs[name].append((count / elapsed, used * 1e6 / count))
    for name, rs in runs.items():
        out[name] = {"req_per_s": round(statistics.median(r[0] for r in rs)),
                     "cpu_us_per_req": round(statistics.median(r[1] for r in rs), 1)}
    print("h2 over TLS", json.dumps(out), flush=True)
    for proc, _ in peers.values():
        procs.stop(proc)
    return out


# -- 4. idle pairs ------------------------------------------------------------------------------


async def _hold(port: int, count: int, ready: asyncio.Event, stop: asyncio.Event) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    held = []
    for _ in range(count):
        held.append(await asyncio.open_connection("127.0.0.1", port, ssl=ctx))
    ready.set()
    await stop.wait()
    for _, writer in held:
        writer.close()


def idle_client(port: int, count: int) -> None:
    """Hold ``count`` TLS connections open until killed (a child process)."""
    async def main() -> None:
        ready, stop = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(_hold(port, count, ready, stop))
        await ready.wait()
        print("ready", flush=True)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await task
    asyncio.run(main())


def idle_pairs(procs: Processes, cpus: tuple[int, int], cert: dict[str, str], backend: int,
               envoy_ok: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    starters = {"mosn": lambda port: start_mosn(procs, cpus[0], [mosn_listener(
        "idle", port, mosn_tls(cert), kind="tcp")], backend, "mosn-idle")}
    if envoy_ok:
        starters["envoy"] = lambda port: start_envoy(procs, cpus[0], [envoy_listener(
            "idle", port, cert, kind="tcp")], backend, "envoy-idle")
    for name, start in starters.items():
        port = free_port()
        proc = start(port)
        wait_port(port, proc, name)
        time.sleep(SETTLE)
        before = rss_kib(proc.pid)
        client = subprocess.Popen([sys.executable, __file__, "--idle-client", str(port),
                                   str(IDLE_PAIRS)], stdout=subprocess.PIPE, text=True)
        assert client.stdout is not None
        line = client.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"idle client: {line!r}")
        time.sleep(SETTLE)
        after = rss_kib(proc.pid)
        client.terminate()
        client.wait(30)
        out[name] = {"rss_before_kib": before, "rss_after_kib": after,
                     "kib_per_pair": round((after - before) / IDLE_PAIRS, 1)}
        print("idle", name, json.dumps(out[name]), flush=True)
        procs.stop(proc)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="per measurement window")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="handshake,https,h2,idle")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--idle-client", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.idle_client:
        idle_client(*args.idle_client)
        return 0
    only = set(args.only.split(","))
    raise_fd_limit()
    if reason := install_mosn(("http1", "http2")):
        print(reason)
        return 1
    envoy_ok = install_envoy() is None
    cpus = proxy_and_load_cpus()
    signal.signal(signal.SIGTERM, interrupted)
    results: dict[str, Any] = {"versions": {"openssl": ssl.OPENSSL_VERSION}}
    for program in ("envoy", "haproxy", "nginx", "h2load", "wrk"):
        if program == "envoy" and envoy_ok or shutil.which(program):
            results["versions"][program] = version(program)
    with tempfile.TemporaryDirectory(prefix="mosn-bench-tls-") as workdir:
        procs = Processes(Path(workdir))
        try:
            ca, rsa_ca = CertificateAuthority(), CertificateAuthority("rsa CA", key="rsa")
            certs = {"ECDSA P-256": ca.issue(dns=["localhost"], ips=["127.0.0.1"]).write(
                         Path(workdir) / "ecdsa"),
                     "RSA-2048": rsa_ca.issue(dns=["localhost"], ips=["127.0.0.1"], key="rsa"
                                              ).write(Path(workdir) / "rsa")}
            backend_port = free_port()
            backend = procs.start("backend", nginx_command("backend", procs.logs,
                                                           "http-backend.conf",
                                                           backend_port=backend_port), cpus[1])
            wait_port(backend_port, backend, "backend")
            ecdsa = certs["ECDSA P-256"]
            if "handshake" in only:
                results["handshakes"] = handshakes(procs, cpus, certs, backend_port,
                                                   args.seconds, args.rounds, envoy_ok)
                results["openssl_speed"] = openssl_speed()
            if "https" in only:
                results["keepalive"] = keepalive(procs, cpus, ecdsa, backend_port, args.seconds,
                                                 args.rounds, envoy_ok)
            if "h2" in only:
                results["h2_tls"] = http2(procs, cpus, ecdsa, backend_port, args.seconds,
                                          args.rounds, envoy_ok)
            if "idle" in only:
                results["idle"] = idle_pairs(procs, cpus, ecdsa, backend_port, envoy_ok)
        except KeyboardInterrupt:
            print("interrupted")
            return 130
        finally:
            procs.stop_all()
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
