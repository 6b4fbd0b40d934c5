"""A flooding client and well-behaved ones through one rate limit: the others' latency.

    python bench/ratelimit_flood.py [--seconds S] [--limit N] [--clients C] [--rate R]

mosn (``--workers 1``, CPU 0) in front of an nginx backend (CPU 1) with a
``local_ratelimit`` keyed by the ``x-client`` header: each client may send ``--limit``
requests a second. ``--clients`` calm clients (each its own key) send ``--rate``
requests a second each, well under their limit, on one keep-alive connection each,
at fixed times (an open loop: a late response does not delay the next request's
start, and its latency counts from when it was due). Twice, for ``--seconds`` each:
alone, then with a flooder (another process, open loop too: ``--flood-factor`` (10)
times the limit, over ``FLOOD_CONNECTIONS`` connections, all under the key
``flood``, so about nine in ten of its requests are answered 429). Figures: the calm
clients' p50 and p99 latency in each phase and their ratio, every calm response's
status (all must be 200), and the flooder's requests and share refused.
"""

from __future__ import annotations

import sys

_BENCH = sys.path.pop(0)  # bench/: its http.py would hide the standard library's
import http.client  # noqa: E402
sys.path.insert(0, _BENCH)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

from common import BIN, Processes, free_port, nginx_command, proxy_and_load_cpus, run_measure  # noqa: E402

FLOOD_CONNECTIONS = 10
READ_LIMIT = 65536


async def calm_client(port: int, name: str, rate: float, seconds: float,
                      latencies: list[float], statuses: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=READ_LIMIT)
    request = (f"GET / HTTP/1.1\r\nHost: bench\r\nx-client: {name}\r\n\r\n").encode()
    start = time.perf_counter()
    n = 0
    while (due := start + n / rate) < start + seconds:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"content-length: *(\d+)", head, re.I)[1])
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - due)
        statuses.append(int(head.split()[1]))
        n += 1
    writer.close()


def phase(port: int, names: list[str], rate: float,
          seconds: float) -> tuple[list[float], list[int]]:
    latencies: list[float] = []
    statuses: list[int] = []

    async def run() -> None:
        await asyncio.gather(*(calm_client(port, name, rate, seconds, latencies, statuses)
                               for name in names))
    asyncio.run(run())
    return latencies, statuses


def flood_worker(port: int, rate: float, seconds: float) -> None:
    """The flooder's process: prints how many requests it sent and how many got 429."""
    _, statuses = phase(port, ["flood"] * FLOOD_CONNECTIONS, rate / FLOOD_CONNECTIONS, seconds)
    print(json.dumps({"requests": len(statuses), "refused": statuses.count(429)}))


def pct(values: list[float], q: float) -> float:
    return round(statistics.quantiles(values, n=100)[q - 1] * 1e6) if len(values) > 1 else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--limit", type=int, default=100, help="requests a second per client")
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--rate", type=float, default=20.0, help="each calm client's requests a second")
    parser.add_argument("--flood-factor", type=float, default=10.0)
    parser.add_argument("--flood-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood_worker:
        flood_worker(args.flood_worker, args.limit * args.flood_factor, args.seconds + 2)
        return 0
    calm = [f"calm{i}" for i in range(args.clients)]
    cpus = proxy_and_load_cpus()

    def measure(procs: Processes) -> dict:
        backend_port, port, admin = free_port(), free_port(), free_port()
        backend = procs.start("backend", nginx_command("backend", procs.logs, "http-backend.conf",
                                                       backend_port=backend_port), cpus[1])
        config = {"servers": [{"routers": [{"router_config_name": "r", "virtual_hosts": [{
            "name": "all", "domains": ["*"], "routers": [
                {"match": {"prefix": "/"}, "route": {"cluster_name": "b"}}]}]}],
            "listeners": [{"name": "http", "address": f"127.0.0.1:{port}", "stream_filters": [
                {"type": "local_ratelimit", "config": {"key": "%request_header_x-client%",
                 "token_bucket": {"max_tokens": args.limit, "tokens_per_fill": args.limit,
                                  "fill_interval": "1s"}}}],
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": "Http1", "router_config_name": "r"}}]}]}]}],
            "cluster_manager": {"clusters": [{"name": "b", "hosts": [
                {"address": f"127.0.0.1:{backend_port}"}]}]},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}}}
        path = procs.logs / "mosn.json"
        path.write_text(json.dumps(config))
        procs.start("mosn", [str(BIN / "mosn"), "start", "-c", str(path), "--workers", "1"], cpus[0])
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or backend.poll() is not None:
                    raise
                time.sleep(0.2)
        alone = phase(port, calm, args.rate, args.seconds)
        flood = subprocess.Popen(["taskset", "-c", str(cpus[1]), sys.executable, __file__,
                                  "--flood-worker", str(port), "--limit", str(args.limit),
                                  "--flood-factor", str(args.flood_factor),
                                  "--seconds", str(args.seconds)],
                                 stdout=subprocess.PIPE, text=True)
        time.sleep(1)  # the flood under way before the calm clients start
        flooded = phase(port, calm, args.rate, args.seconds)
        out, _ = flood.communicate(timeout=args.seconds + 60)
        sent = json.loads(out)
        return {"alone": alone, "flooded": flooded,
                "flood_rps": sent["requests"] / (args.seconds + 2),
                "flood_refused": sent["refused"] / max(1, sent["requests"])}

    r = run_measure(["mosn"], {}, cpus[1], measure)
    if isinstance(r, int):
        return r
    rows = {}
    for name in ("alone", "flooded"):
        lat, statuses = r[name]
        rows[name] = {"p50_us": pct(lat, 50), "p99_us": pct(lat, 99), "requests": len(lat),
                      "non_200": sum(1 for s in statuses if s != 200)}
    ratio = rows["flooded"]["p99_us"] / rows["alone"]["p99_us"] if rows["alone"]["p99_us"] else 0
    print(f"calm clients: {args.clients} x {args.rate:g} req/s (limit {args.limit}/s each), "
          f"{args.seconds:g} s per phase")
    for name, row in rows.items():
        print(f"  {name:<8} p50 {row['p50_us']} us  p99 {row['p99_us']} us  "
              f"requests {row['requests']}  non-200 {row['non_200']}")
    print(f"flooder: {r['flood_rps']:.0f} req/s ({r['flood_rps'] / args.limit:.0f}x its limit), "
          f"{r['flood_refused']:.1%} refused")
    print(f"calm p99 flooded / alone: {ratio:.2f} (target: at most 2)")
    return 0 if ratio <= 2 and not any(row["non_200"] for row in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
