"""What each stream filter costs: proxy CPU per request with the filter configured but
not acting, and acting (refusing), side by side in one run.

    python bench/filters.py [--duration S] [--rounds N] [--json FILE]

One nginx backend answering ``hello\\n`` (bench/peers/http-backend.conf) and one mosn
(``--workers 1``, pinned to CPU 0) per variant, all started together; wrk (one thread,
50 keep-alive connections, pinned to CPU 1 with the backend) loads each in turn, the
variants taking turns over --rounds windows (bench/common.py's harness). The figure
to read is CPU us/req: the proxy's CPU time over the window divided by the requests
wrk completed, and the difference to ``none`` is what the filter adds.

Variants (one listener, one route to the backend):

  none            no stream filter
  ratelimit_pass  local_ratelimit keyed by a header, a bucket no request empties
  ratelimit_429   local_ratelimit whose bucket is empty: every request answered 429
  rbac_pass       rbac ALLOW with a path-prefix and a source-IP policy that matches
  rbac_403        rbac DENY matching every request: answered 403
  ip_access_pass  ip_access allow list holding 127.0.0.1
  jwt_pass        jwt_authn (ES256, local JWKS) verifying a token on every request
  jwt_401         jwt_authn with no token sent: answered 401
  gzip_idle       gzip configured, the client not accepting gzip
  gzip            gzip compressing every response (the client sends accept-encoding)
  h2m_idle        header_to_metadata whose header is never sent
  h2m             header_to_metadata writing subset metadata from a header every request
  dsl_idle        dsl whose condition is false (an absent header with a default)
  dsl             dsl adding a request header on every request (condition true)
  mirror_idle     mirror configured, the route without a mirror policy
  mirror          mirror with amplification 2 to the backend (three requests upstream each)
  grpc_metric_idle grpc_metric, plain HTTP requests (not counted)
  grpc_metric     grpc_metric counting every request (sent as gRPC content, path /svc/m)
  route_vars      no filter; the route adds two headers made of %variables%

``--only a,b`` runs those variants (and ``none``).

Needs nginx and wrk (installed with apt-get when missing); every process started here
is stopped by PID at the end.
"""

from __future__ import annotations

import sys

_BENCH = sys.path.pop(0)  # bench/: its http.py would hide the standard library's http,
import http.client  # noqa: E402  which pyjwt needs: the real one is imported first
import jwt  # noqa: E402
sys.path.insert(0, _BENCH)

import argparse
import importlib.util
import json
import shutil
import time
from pathlib import Path

from common import (
    BIN,
    FIGURE_COLUMNS,
    Processes,
    apt_install,
    free_port,
    nginx_command,
    print_results,
    proxy_and_load_cpus,
    raise_fd_limit,
    run_load,
    run_measure,
    start_peers,
    summarise,
    take_turns,
    whole_seconds,
    with_cpu,
    write_json,
)

_spec = importlib.util.spec_from_file_location("bench_http", Path(__file__).with_name("http.py"))
bench_http = importlib.util.module_from_spec(_spec)  # bench/http.py (its name hides the stdlib's)
_spec.loader.exec_module(bench_http)
parse_wrk, wait_ready = bench_http.parse_wrk, bench_http.wait_ready

CONNECTIONS = 50
ROUNDS = 5
WARMUP = 1
WRK_GRACE = 30.0
COUNTS = ("requests", "non_2xx", "socket_errors")
HOUR = "3600s"
START_TIMEOUT = 120.0  # seconds for a mosn to serve: eight start at once on a busy machine


def jwt_material(workdir: Path) -> tuple[str, str]:
    """A JWKS (written to a file) and a token it verifies."""
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = "bench"
    path = workdir / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    token = jwt.encode({"iss": "bench", "sub": "user", "exp": int(time.time()) + 86400}, key,
                       algorithm="ES256", headers={"kid": "bench"})
    return str(path), token


def variants(jwks: str) -> dict[str, tuple[list[dict], list[str]]]:
    """name -> (stream_filters, wrk headers); what else a variant changes is in
    ROUTE_EXTRA and PATHS."""
    jwt_filter = {"type": "jwt_authn", "config": {
        "providers": {"p": {"issuer": "bench", "local_jwks": {"filename": jwks}}},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]}}
    bucket = {"max_tokens": 10**9, "tokens_per_fill": 10**9, "fill_interval": HOUR}
    gzip = {"type": "gzip", "config": {"content_types": ["text/plain"]}}
    h2m = {"type": "header_to_metadata", "config": {"request_rules": [
        {"header": "x-version", "on_header_present": {"key": "version"}}]}}
    dsl = {"type": "dsl", "config": {"before_router_by_dsl": (
        'conditional(request.headers["x-dsl"] | "" == "yes", '
        'ctx.add_request_header("x-dsl-seen", "1"), true)')}}
    mirror = {"type": "mirror", "config": {"amplification": 2}}
    grpc_metric = {"type": "grpc_metric", "config": {}}
    return {
        "none": ([], []),
        "ratelimit_pass": ([{"type": "local_ratelimit", "config": {
            "key": "%request_header_x-user%", "token_bucket": bucket}}], ["x-user: bench"]),
        "ratelimit_429": ([{"type": "local_ratelimit", "config": {"token_bucket": {
            "max_tokens": 1, "tokens_per_fill": 1, "fill_interval": HOUR}}}], []),
        "rbac_pass": ([{"type": "rbac", "config": {"rules": {"action": "ALLOW", "policies": {
            "p": {"permissions": [{"url_path": {"path": {"prefix": "/"}}}],
                  "principals": [{"source_ip": {"address_prefix": "127.0.0.0",
                                                "prefix_len": 8}}]}}}}}], []),
        "rbac_403": ([{"type": "rbac", "config": {"rules": {"action": "DENY", "policies": {
            "all": {"permissions": [{"any": True}], "principals": [{"any": True}]}}}}}], []),
        "ip_access_pass": ([{"type": "ip_access", "config": {"default_action": "deny", "ips": [
            {"action": "allow", "addrs": ["127.0.0.1"]}]}}], []),
        "jwt_pass": ([jwt_filter], ["authorization: Bearer {token}"]),
        "jwt_401": ([jwt_filter], []),
        "gzip_idle": ([gzip], []),
        "gzip": ([gzip], ["accept-encoding: gzip"]),
        "h2m_idle": ([h2m], []),
        "h2m": ([h2m], ["x-version: 2"]),
        "dsl_idle": ([dsl], []),
        "dsl": ([dsl], ["x-dsl: yes"]),
        "mirror_idle": ([mirror], []),
        "mirror": ([mirror], []),
        "grpc_metric_idle": ([grpc_metric], []),
        "grpc_metric": ([grpc_metric], ["content-type: application/grpc"]),
        "route_vars": ([], ["x-user: bench"]),
    }


ROUTE_EXTRA: dict[str, dict] = {
    "mirror": {"request_mirror_policies": {"cluster": "backend", "percent": 100}},
    "route_vars": {"route": {"cluster_name": "backend", "request_headers_to_add": [
        {"header": {"key": "x-method", "value": "%x-mosn-method%"}, "append": False},
        {"header": {"key": "x-who", "value": "user=%request_header_x-user%"},
         "append": False}]}},
}
"""What a variant adds to (or changes in) its one route."""
PATHS = {"grpc_metric": "/bench.Service/Call"}
"""The request path of a variant (``/`` otherwise)."""


def mosn_config(listen: int, backend: int, filters: list[dict],
                route: dict | None = None) -> dict:
    return {
        "servers": [{"routers": [{"router_config_name": "r", "virtual_hosts": [{
            "name": "all", "domains": ["*"], "routers": [
                {"match": {"prefix": "/"}, "route": {"cluster_name": "backend"},
                 **(route or {})}]}]}],
            "listeners": [{"name": "http", "address": f"127.0.0.1:{listen}",
                           "stream_filters": filters,
                           "filter_chains": [{"filters": [{"type": "proxy", "config": {
                               "downstream_protocol": "Http1", "upstream_protocol": "Http1",
                               "router_config_name": "r"}}]}]}]}],
        "cluster_manager": {"clusters": [{"name": "backend", "hosts": [
            {"address": f"127.0.0.1:{backend}"}]}]},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                 "port_value": free_port()}}},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=25.0, help="seconds of load per variant")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--only", help="comma-separated variants to run (with none)")
    args = parser.parse_args()
    chosen = set(args.only.split(",")) | {"none"} if args.only else None
    window = whole_seconds(args, "wrk")
    cpus = proxy_and_load_cpus()
    raise_fd_limit()
    apt_install([d for d in ("nginx", "wrk") if not shutil.which(d)])

    def measure(procs: Processes) -> dict:
        jwks, token = jwt_material(procs.logs)
        table = {k: v for k, v in variants(jwks).items() if chosen is None or k in chosen}
        backend_port = free_port()
        backend = procs.start("backend", nginx_command("backend", procs.logs, "http-backend.conf",
                                                       backend_port=backend_port), cpus[1])
        wait_ready(procs, backend, backend_port)

        def command(name: str, listen: int) -> list[str]:
            path = procs.logs / f"{name}.json"
            path.write_text(json.dumps(mosn_config(listen, backend_port, table[name][0],
                                                   ROUTE_EXTRA.get(name))))
            return [str(BIN / "mosn"), "start", "-c", str(path), "--workers", "1"]

        peers = start_peers(list(table), procs, backend_port, command, cpus[0])

        def wrk(peer, seconds: int, pid: int | None) -> dict:
            argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
            for h in table[peer.name][1]:
                argv += ["-H", h.format(token=token)]
            url = f"http://127.0.0.1:{peer.port}{PATHS.get(peer.name, '/')}"
            run = run_load([*argv, url], cpus[1],
                           seconds + WRK_GRACE, pid, [backend.pid])
            return with_cpu(parse_wrk(run.output), run, pid)

        def prepare(peer) -> None:
            deadline = time.monotonic() + START_TIMEOUT
            while True:  # ready when the admin API answers (a refusing variant never 200s)
                try:
                    wrk(peer, WARMUP, None)
                    return
                except RuntimeError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)

        return summarise(take_turns(peers, procs, [backend], {}, args.rounds, prepare,
                                    lambda peer, pid: wrk(peer, window, pid)), COUNTS)

    names = [n for n in variants("") if chosen is None or n in chosen]
    results = run_measure(names, {}, cpus[1], measure)
    if isinstance(results, int):
        return results
    base = results.get("none", {}).get("cpu_us_per_req")
    for row in results.values():
        if base and row.get("cpu_us_per_req"):
            row["added_us"] = round(row["cpu_us_per_req"] - base, 2)
    columns = (*FIGURE_COLUMNS, ("added_us", "+us/req", "{:.1f}"), ("non_2xx", "non-2xx", "{:.0f}"))
    print(f"\nmosn --workers 1 on CPU {cpus[0]}; wrk (1 thread, {CONNECTIONS} connections) and "
          f"nginx on CPU {cpus[1]}; {args.duration:g} s per variant in {args.rounds} rounds\n")
    print_results(results, {}, {}, columns, len(FIGURE_COLUMNS))
    write_json(args.json, results=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
