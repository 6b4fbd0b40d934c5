"""The example HTTP upstream (examples/http_upstream.py) served by hypercorn, which
speaks HTTP/2 over cleartext (prior knowledge and upgrade) as well as HTTP/1.1.

    python h2_upstream.py --port 8081 [--name blue] [--max-streams 100] [--max-requests 1000]

``--max-requests``: requests a connection serves before hypercorn ends it with GOAWAY
(its ``keep_alive_max_requests``; 1000 by default).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from hypercorn.asyncio import serve
from hypercorn.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "examples"))
from http_upstream import app_for  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="h2")
    parser.add_argument("--max-streams", type=int, default=100)
    parser.add_argument("--max-requests", type=int, default=Config.keep_alive_max_requests)
    args = parser.parse_args()
    config = Config()
    config.bind = [f"127.0.0.1:{args.port}"]
    config.h2_max_concurrent_streams = args.max_streams
    config.keep_alive_max_requests = args.max_requests
    config.loglevel = "WARNING"
    config.accesslog = None
    asyncio.run(serve(app_for(args.name), config))


if __name__ == "__main__":
    main()
