"""The example HTTP upstream (examples/http_upstream.py) served by hypercorn, which
speaks HTTP/2 over cleartext (prior knowledge and upgrade) as well as HTTP/1.1.

    python h2_upstream.py --port 8081 [--name blue] [--max-streams 100]

Adds to the example's endpoints:
  /progress          JSON: response body bytes of /bytes/N the server has taken so far
                     (hypercorn takes them only as the flow-control window allows)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "examples"))
from http_upstream import app_for, drain  # noqa: E402

progress = {"sent": 0}


def with_progress(app: Any) -> Any:
    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path == "/progress":
            await drain(receive)
            body = json.dumps(progress).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] == "http" and path.startswith("/bytes/"):
            async def counting_send(message: dict[str, Any]) -> None:
                await send(message)
                progress["sent"] += len(message.get("body", b""))
            await app(scope, receive, counting_send)
            return
        await app(scope, receive, send)
    return wrapped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="h2")
    parser.add_argument("--max-streams", type=int, default=100)
    args = parser.parse_args()
    config = Config()
    config.bind = [f"127.0.0.1:{args.port}"]
    config.h2_max_concurrent_streams = args.max_streams
    config.loglevel = "WARNING"
    config.accesslog = None
    asyncio.run(serve(with_progress(app_for(args.name)), config))


if __name__ == "__main__":
    main()
