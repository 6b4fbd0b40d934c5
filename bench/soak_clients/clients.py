"""The soak's Python clients: HTTP/1.1 and HTTP/2 (httpx) and gRPC (grpcio), each a
closed loop of requests whose answers are checked, reporting on stdout.

    python bench/soak_clients/clients.py http1|http2|grpc PORT [--concurrency N] [--timeout S]

Every request carries something only its answer can echo: HTTP requests alternate a GET
of /echo/TOKEN (the upstream answers the path it saw) and a POST of a random body to
/upload (the upstream answers the body's size and sha256); gRPC calls send random bytes
that the echo method returns. Output, one line each (read by bench/soak.py):

    F <unix time> <reason>     a request failed (no answer, an error status)
    W <unix time> <detail>     a wrong answer: one that is not this request's
    S <sent> <ok>              totals, every REPORT_INTERVAL seconds and on SIGTERM
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import signal
import sys
import time

REPORT_INTERVAL = 2.0
"""Seconds between totals lines (the soak samples them into its timeline)."""
MAX_BODY = 64 * 1024
"""The largest random POST body: several reads and writes through the proxy."""


class Tally:
    def __init__(self) -> None:
        self.sent = 0
        self.ok = 0

    def fail(self, reason: str) -> None:
        print(f"F {time.time():.3f} {reason}", flush=True)

    def wrong(self, detail: str) -> None:
        print(f"W {time.time():.3f} {detail[:200]}", flush=True)

    def report(self) -> None:
        print(f"S {self.sent} {self.ok}", flush=True)


async def http_worker(client, base: str, tally: Tally, index: int) -> None:
    import httpx

    n = 0
    while True:
        n += 1
        tally.sent += 1
        try:
            if n % 2:
                token = f"{os.getpid()}-{index}-{n}"
                r = await client.get(f"{base}/echo/{token}")
                if r.status_code != 200:
                    tally.fail(f"status {r.status_code}")
                elif r.json().get("path") != f"/echo/{token}":
                    tally.wrong(f"asked /echo/{token}, answered {r.text}")
                else:
                    tally.ok += 1
            else:
                body = random.randbytes(random.randint(0, MAX_BODY))
                r = await client.post(f"{base}/upload", content=body)
                if r.status_code != 200:
                    tally.fail(f"status {r.status_code}")
                elif r.json() != {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}:
                    tally.wrong(f"sent {len(body)} bytes, answered {r.text}")
                else:
                    tally.ok += 1
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            tally.fail(type(exc).__name__)
            await asyncio.sleep(0.05)  # a refused connection would otherwise spin


async def grpc_worker(channel, tally: Tally) -> None:
    import grpc

    call = channel.unary_unary("/bench.Echo/Call")
    while True:
        tally.sent += 1
        payload = random.randbytes(random.randint(1, 4096))
        try:
            reply = await call(payload)
        except grpc.aio.AioRpcError as exc:
            tally.fail(f"grpc {exc.code().name}")
            await asyncio.sleep(0.05)
            continue
        if reply != payload:
            tally.wrong(f"sent {len(payload)} bytes, got {len(reply)} other bytes")
        else:
            tally.ok += 1


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("http1", "http2", "grpc"))
    parser.add_argument("port", type=int)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()

    tally = Tally()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    closers = []
    if args.kind == "grpc":
        import grpc

        channel = grpc.aio.insecure_channel(f"127.0.0.1:{args.port}")
        closers.append(channel.close)
        workers = [grpc_worker(channel, tally) for _ in range(args.concurrency)]
    else:
        import httpx

        h2 = args.kind == "http2"
        # HTTP/1.1 keeps a connection per worker; HTTP/2 shares one (prior knowledge, h2c).
        client = httpx.AsyncClient(http1=not h2, http2=h2, timeout=args.timeout,
                                   limits=httpx.Limits(max_connections=args.concurrency))
        closers.append(client.aclose)
        base = f"http://127.0.0.1:{args.port}"
        workers = [http_worker(client, base, tally, i) for i in range(args.concurrency)]

    async def report() -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL)
            tally.report()

    tasks = [asyncio.create_task(w) for w in workers] + [asyncio.create_task(report())]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    tally.report()  # requests cut by the stop are sent but neither answered nor failed
    for close in closers:
        try:
            await close()
        except Exception:  # the proxy may be gone already
            pass


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
